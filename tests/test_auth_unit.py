"""kubebook.auth without a cluster: subjects, certificates, recorded RBAC objects, files, masking."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509

from kubebook import connect, kubeconfig as kcfg, pki
from kubebook.auth import access, certificates, rbac, tokens, users
from kubebook.errors import KubebookError
from kubebook.auth.subjects import Subject
from kubebook.plan import Plan

FIXTURES = Path(__file__).parent / "fixtures"


# ---- subjects and resources ------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, name, namespace, username", [
    ("User:luffy-admin", "User", "luffy-admin", "", "luffy-admin"),
    ("luffy-admin", "User", "luffy-admin", "", "luffy-admin"),
    ("Group:system:masters", "Group", "system:masters", "", ""),
    ("ServiceAccount:luffy:luffy-pods-admin", "ServiceAccount", "luffy-pods-admin", "luffy",
     "system:serviceaccount:luffy:luffy-pods-admin"),
    ("system:serviceaccount:luffy:luffy-pods-admin", "ServiceAccount", "luffy-pods-admin", "luffy",
     "system:serviceaccount:luffy:luffy-pods-admin"),
])
def test_subject_parse(text, kind, name, namespace, username):
    s = Subject.parse(text)
    assert (s.kind, s.name, s.namespace, s.username) == (kind, name, namespace, username)
    assert Subject.parse(str(s)) == s


def test_subject_groups_are_what_the_apiserver_adds():
    sa = Subject.parse("ServiceAccount:luffy:app")
    assert sa.groups() == ["system:serviceaccounts", "system:serviceaccounts:luffy", "system:authenticated"]
    assert Subject.parse("Group:manager").groups(authenticated=False) == ["manager"]
    node = Subject("User", "system:node:k8s-slave1", member_of=("system:nodes",))
    assert node.groups() == ["system:nodes", "system:authenticated"]


def test_subject_matches_bindings_through_groups():
    sa = Subject.parse("ServiceAccount:luffy:app")
    assert sa.matches(Subject.parse("Group:system:serviceaccounts:luffy"))
    assert not sa.matches(Subject.parse("Group:system:serviceaccounts:other"))
    assert sa.matches(Subject.parse("User:system:serviceaccount:luffy:app"))
    assert Subject.parse("User:dave").matches(Subject.parse("Group:system:authenticated"))
    assert not Subject.parse("User:dave").matches(Subject.parse("User:eve"))


def test_bad_subjects_are_refused():
    with pytest.raises(Exception, match="namespace"):
        Subject("ServiceAccount", "app")
    with pytest.raises(Exception, match="kind"):
        Subject("Robot", "r2")


@pytest.mark.parametrize("text, resource, group, sub", [
    ("pods", "pods", "", ""), ("deployments.apps", "deployments", "apps", ""), ("pods/log", "pods", "", "log"),
    ("leases.coordination.k8s.io", "leases", "coordination.k8s.io", ""), ("nodes/status", "nodes", "", "status"),
])
def test_resource_parse(text, resource, group, sub):
    r = access.Resource.parse(text)
    assert (r.resource, r.group, r.subresource) == (resource, group, sub)
    assert str(r) == text


def test_review_body_for_a_service_account():
    body = access.review_body(Subject.parse("ServiceAccount:luffy:app"), "list", access.Resource.parse("pods"),
                              namespace="luffy")
    assert body["spec"]["user"] == "system:serviceaccount:luffy:app"
    assert body["spec"]["resourceAttributes"] == {"verb": "list", "resource": "pods", "group": "", "namespace": "luffy"}
    group_only = access.review_body(Subject.parse("Group:manager"), "get", access.Resource.parse("secrets"))
    assert "user" not in group_only["spec"] and group_only["spec"]["groups"][0] == "manager"


def test_pivot_keeps_the_order_asked():
    long = pd.DataFrame([{"subject": s, "verb": v, "resource": r, "allowed": s == "User:a" and v == "get"}
                         for s in ("User:b", "User:a") for r in ("pods",) for v in ("list", "get")])
    table = access.pivot(long)
    assert list(table.columns) == ["list", "get"]
    assert list(table.index.get_level_values(0)) == ["User:b", "User:a"]
    assert table.loc[("User:a", "pods"), "get"] == "✓" and table.loc[("User:b", "pods"), "get"] == "·"


def test_widget_renders_reasons_and_builds_without_a_cluster():
    from widgets.access_matrix import AccessMatrix, render
    long = pd.DataFrame([{"subject": "User:a", "verb": "get", "resource": "pods", "allowed": True,
                          "reason": 'RBAC: allowed by RoleBinding "x/ns"'},
                         {"subject": "User:a", "verb": "list", "resource": "pods", "allowed": False, "reason": "<none>"}])
    html = render(long)
    assert "✓" in html and "·" in html and "RoleBinding &quot;x/ns&quot;" in html and "&lt;none&gt;" in html
    widget = AccessMatrix(None, subjects=["User:a"], resources=["pods"], verbs=["get"])
    assert widget.subjects.value == "User:a" and widget.verbs.value == ("get",)


# ---- recorded RBAC objects (from the lab) ------------------------------------------------------
@pytest.fixture(scope="module")
def recorded():
    data = json.loads((FIXTURES / "auth_rbac_objects.json").read_text())
    # one synthetic copy of cluster-admin under another name: "equivalent" must be found by rules, not name
    data["roles"].append({"kind": "ClusterRole", "metadata": {"name": "break-glass"},
                          "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
    data["bindings"].append({"kind": "ClusterRoleBinding", "metadata": {"name": "ops-root"},
                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                         "name": "break-glass"},
                             "subjects": [{"kind": "User", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"}]})
    return rbac.binding_rows(data["bindings"]), rbac.role_rules(data["roles"])


def test_admins_found_by_rules_with_their_binding_and_scope(recorded):
    table, roles = recorded
    admins = rbac.admins_from(table, roles)
    rows = {(r.subject, r.binding, r.scope) for r in admins.itertuples()}
    assert ("Group:system:masters", "(none: built into the apiserver)", "cluster") in rows
    assert ("Group:system:masters", "ClusterRoleBinding/cluster-admin", "cluster") in rows
    assert ("User:ops", "ClusterRoleBinding/ops-root", "cluster") in rows
    assert ("User:luffy-admin", "RoleBinding/luffy-admin", "namespace luffy") in rows
    assert not any("dave" in s or "manager" in s for s in admins["subject"])


def test_bindings_for_follows_groups_and_keeps_the_namespace(recorded):
    table, roles = recorded
    dave = rbac.bindings_for(None, "User:dave", all_bindings=table, all_roles=roles)
    assert set(dave["binding"]) >= {"RoleBinding/read-pods", "RoleBinding/read-secrets",
                                    "ClusterRoleBinding/system:basic-user"}
    secrets = dave[dave["binding"] == "RoleBinding/read-secrets"].iloc[0]
    assert secrets["role"] == "ClusterRole/secret-reader" and secrets["scope"] == "namespace luffy"
    assert "secrets" in secrets["resources"]
    manager = rbac.bindings_for(None, "Group:manager", all_bindings=table, all_roles=roles)
    assert "ClusterRoleBinding/read-secrets-global" in set(manager["binding"])
    masters = rbac.bindings_for(None, "Group:system:masters", all_bindings=table, all_roles=roles)
    assert masters.iloc[0]["binding"] == "(none: built into the apiserver)"


def test_builders_write_what_the_course_writes():
    objs = rbac.course_examples(namespace="demo", user="dave", group="manager")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert kinds == [("Role", "pod-reader"), ("ClusterRole", "secret-reader"), ("RoleBinding", "read-pods"),
                     ("RoleBinding", "read-secrets"), ("ClusterRoleBinding", "read-secrets-global")]
    read_secrets = objs[3]
    assert read_secrets["roleRef"]["kind"] == "ClusterRole" and read_secrets["metadata"]["namespace"] == "demo"
    assert objs[4]["subjects"] == [{"kind": "Group", "name": "manager", "apiGroup": "rbac.authorization.k8s.io"}]
    admin_role, binding = rbac.namespace_admin("User:luffy-admin", namespace="luffy", name="luffy-admin")
    assert rbac.grants_everything(admin_role["rules"]) and binding["roleRef"]["kind"] == "Role"
    assert "Role/luffy-admin → User:luffy-admin" in rbac.show([binding])["grants"][0]


# ---- certificates in kubeconfigs --------------------------------------------------------------
def _user(ca, cn, orgs=(), days=365):
    key = pki.new_key(pki.ECDSA_P256)
    return pki.KeyPair(pki.sign(ca, key.public_key(), cn, orgs=orgs, days=days), key)


def test_certificates_table_verifies_and_warns(tmp_path):
    ca, other_ca = pki.new_ca("kubernetes", pki.ECDSA_P256), pki.new_ca("someone-else", pki.ECDSA_P256)
    good, soon, stranger = _user(ca, "luffy-admin", ("admin:luffy",)), _user(ca, "short", days=3), \
        _user(other_ca, "intruder")
    config = kcfg.build(server="https://127.0.0.1:6443", ca_pem=ca.cert_pem, cert_pem=good.cert_pem,
                        key_pem=good.key_pem, cluster="lab", user="luffy-admin", context="luffy@lab")
    for name, pair in (("short", soon), ("intruder", stranger)):
        config["users"].append({"name": name, "user": {"client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
                                                       "client-key-data": base64.b64encode(pair.key_pem).decode()}})
        config["contexts"].append({"name": f"{name}@lab", "context": {"cluster": "lab", "user": name}})
    config["users"].append({"name": "robot", "user": {"token": "not-a-real-token-but-secret"}})
    path = kcfg.write(tmp_path / "config", config)
    table = certificates.certificates(path).set_index("user entry")
    assert table.loc["luffy-admin", "user (CN)"] == "luffy-admin"
    assert table.loc["luffy-admin", "groups (O)"] == "admin:luffy"
    assert table.loc["luffy-admin", "status"] == "ok"
    assert table.loc["short", "status"].startswith("WARNING: expires in")
    assert table.loc["intruder", "verify against CA"].startswith("issued by CN=someone-else")
    assert "bearer token" in table.loc["robot", "status"]
    text = table.to_string() + certificates.contexts(path).to_string()
    assert "not-a-real-token" not in text and "PRIVATE" not in text
    assert config["users"][0]["user"]["client-key-data"][:40] not in text


def test_verify_reports_expiry_and_missing_client_usage():
    ca = pki.new_ca("kubernetes", pki.ECDSA_P256)
    pair = _user(ca, "u")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)
    assert certificates.verify(pair.cert, ca.cert) == "OK"
    assert certificates.verify(pair.cert, ca.cert, at=later) == "expired"
    server = pki.sign(ca, pair.key.public_key(), "srv", usages=pki.SERVER)
    assert certificates.verify(server, ca.cert) == "no clientAuth extended key usage"


def _admin_kubeconfig(tmp_path, ca, *, cluster="prod"):
    pair = _user(ca, "admin", ("system:masters",))
    return kcfg.write(tmp_path / "admin.conf", kcfg.build(server="https://127.0.0.1:6443", ca_pem=ca.cert_pem,
                                                          cert_pem=pair.cert_pem, key_pem=pair.key_pem,
                                                          cluster=cluster, user="admin", context=f"admin@{cluster}"))


def test_cluster_of_reads_server_and_ca_of_the_target(tmp_path):
    ca = pki.new_ca("kubernetes", pki.ECDSA_P256)
    path = _admin_kubeconfig(tmp_path, ca)
    info = certificates.cluster_of(connect.target(kubeconfig=path))
    assert info["name"] == "prod" and info["server"] == "https://127.0.0.1:6443" and info["ca_pem"] == ca.cert_pem
    with pytest.raises(Exception, match="no context"):
        certificates.cluster_of(connect.target(kubeconfig=path, context="missing"))


def test_a_missing_kubeconfig_is_an_error_never_another_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "elsewhere"))
    with pytest.raises(KubebookError, match="kubeconfig not found"):
        certificates.certificates(tmp_path / "missing.conf")
    with pytest.raises(KubebookError, match="in-cluster"):
        certificates.contexts(connect.Target(None, None, "in-cluster ServiceAccount"))
    assert not hasattr(certificates, "kubeconfig_path")  # one resolution policy: kubebook.connect's


def test_system_masters_lists_only_certificates_in_that_group(tmp_path):
    ca = pki.new_ca("kubernetes", pki.ECDSA_P256)
    path = _admin_kubeconfig(tmp_path, ca)
    config = kcfg.load(path)
    dev = _user(ca, "dev", ("system:masters-not",))
    config["users"].append({"name": "dev", "user": {"client-certificate-data": base64.b64encode(dev.cert_pem).decode()}})
    kcfg.write(path, config)
    masters = certificates.system_masters(connect.target(kubeconfig=path))
    assert list(masters["user entry"]) == ["admin"]
    assert certificates.system_masters(connect.Target(None, None, "in-cluster ServiceAccount")).empty


# ---- a user signed with the CA key (the course's openssl path), without a cluster ---------------
def _ca_key_user(tmp_path, **kw):
    ca = pki.new_ca("kubernetes", pki.ECDSA_P256)
    pki.save(ca, tmp_path / "pki" / "ca")
    target = connect.target(kubeconfig=_admin_kubeconfig(tmp_path, ca, cluster="lab"))
    user = users.NewUser.at(target, "luffy-admin", groups=["admin:luffy"], directory=tmp_path / "users" / "u",
                            signer="ca-key", ca_crt=tmp_path / "pki" / "ca.crt", ca_key=tmp_path / "pki" / "ca.key",
                            key_algorithm=pki.ECDSA_P256, **kw)
    return ca, target, user


def _issue(target, user, confirm):
    plan = Plan(target="luffy-admin", confirm=confirm, kind="user", cluster=target, log=lambda m: None)
    users.issue(plan, user)
    return plan.table().set_index("step")


def test_new_user_with_ca_key_files_are_private_and_rerun_keeps_them(tmp_path):
    ca, target, user = _ca_key_user(tmp_path)
    dry = _issue(target, user, "")
    assert not (tmp_path / "users").exists() and set(dry["status"]) == {"planned"}
    first = _issue(target, user, "luffy-admin")["detail"]
    assert "created" in first["key"] and "valid until" in first["sign"]
    for path in (user.key_file, user.csr_file, user.cert_file, user.kubeconfig):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (tmp_path / "users", user.directory):  # made by kubebook: the owner's only
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    key, cert = user.key_file.read_bytes(), user.cert_file.read_bytes()
    issued = x509.load_pem_x509_certificate(cert)
    assert certificates.identity(issued) == ("luffy-admin", ["admin:luffy"])
    assert certificates.verify(issued, ca.cert) == "OK"
    second = _issue(target, user, "luffy-admin")["detail"]
    assert "kept" in second["key"] and "kept the valid certificate" in second["certificate"]
    assert "sign" not in second and "unchanged" in second["kubeconfig"]
    assert user.key_file.read_bytes() == key and user.cert_file.read_bytes() == cert
    assert user.certificate().iloc[0]["verify against CA"] == "OK"


@pytest.mark.parametrize("name", ["../..", "../x", "a/b", "..", "UPPER", "-x", ""])
def test_a_user_name_that_is_not_one_kubernetes_name_is_refused(tmp_path, name):
    with pytest.raises(KubebookError, match="user"):
        users.NewUser(name, directory=tmp_path)


def test_user_files_never_resolve_outside_their_directory(tmp_path):
    user = users.NewUser("luffy-admin", directory=tmp_path / "u")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "luffy-admin.key").symlink_to(tmp_path / "stolen.key")  # a planted link
    with pytest.raises(KubebookError, match="does not stay in"):
        user.key_file
    assert user.cert_file.parent == tmp_path / "u"


def test_the_csr_path_is_confirmed_by_the_user_namespace_and_csr(tmp_path):
    _, target, _ = _ca_key_user(tmp_path)
    user = users.NewUser.at(target, "luffy-admin")
    assert user.touches == ["certificatesigningrequest/user-luffy-admin"]
    assert user.directory == Path.home() / ".kube" / "users" / "luffy-admin"  # no lab: kubeadm's places
    assert user.ca_key == Path("/etc/kubernetes/pki/ca.key")
    also = ["namespace/kubebook-auth", *user.touches]
    with pytest.raises(Exception, match="does not name certificatesigningrequest/user-luffy-admin"):
        Plan(target="luffy-admin", kind="user", also=also, confirm="luffy-admin, namespace/kubebook-auth",
             log=lambda m: None)
    Plan(target="luffy-admin", kind="user", also=also, log=lambda m: None,
         confirm="luffy-admin, namespace/kubebook-auth, certificatesigningrequest/user-luffy-admin")


def test_confirm_naming_another_user_is_refused(tmp_path):
    with pytest.raises(Exception, match="does not name"):
        Plan(target="luffy-admin", confirm="someone-else", kind="user", log=lambda m: None)


# ---- why an approved request stays unsigned ---------------------------------------------------------
KCM = ["kube-controller-manager", "--kubeconfig=/x", "--cluster-signing-cert-file=/pki/ca.crt",
       "--cluster-signing-key-file", "/pki/ca.key"]


def test_signing_flags_are_read_in_both_spellings():
    assert users.signs_client_certificates(KCM)
    assert not users.signs_client_certificates(KCM[:3])  # a certificate without its key signs nothing
    assert not users.signs_client_certificates(["kube-controller-manager", "--cluster-signing-cert-file="])
    assert users.signs_client_certificates(["kcm", "--cluster-signing-kube-apiserver-client-cert-file=/c",
                                            "--cluster-signing-kube-apiserver-client-key-file=/k"])


def _csr(*conditions, certificate=""):
    return {"user-x": {"metadata": {"name": "user-x"},
                       "status": {"conditions": [{"type": t, "status": "True", "message": f"{t} by test"}
                                                 for t in conditions], **({"certificate": certificate}
                                                                          if certificate else {})}}}


def test_an_approved_request_nothing_signs_is_diagnosed_at_once_when_the_evidence_says_so():
    no_signer = users.UnsignedDiagnosis(None, "user-x", evidence=(False, "pid 7 runs without the flags"))
    assert no_signer(_csr()) is None                       # not approved yet: waiting makes sense
    assert no_signer(_csr("Approved", certificate="Y2VydA==")) is None
    reason = no_signer(_csr("Approved"))
    assert "approved but no signer issued a certificate" in reason and "pid 7" in reason
    assert "signer=ca-key" in reason and "\n" not in reason
    assert "was denied: Denied by test" in no_signer(_csr("Denied"))


def test_without_evidence_the_diagnosis_waits_out_the_grace_period():
    unknown = users.UnsignedDiagnosis(None, "user-x", evidence=(None, ""), grace=0.2)
    assert unknown(_csr("Approved")) is None
    time.sleep(0.25)  # the grace period is the point of this test
    assert "no signer issued a certificate" in unknown(_csr("Approved"))
    signing = users.UnsignedDiagnosis(None, "user-x", evidence=(True, "has the flags"), grace=0.1)
    assert signing(_csr("Approved")) is None               # it should sign: wait three times as long
    time.sleep(0.35)
    assert "still not signed although" in signing(_csr("Approved"))


def test_the_lab_evidence_is_its_recorded_controller_manager_process(tmp_path):
    class Process:
        pid = os.getpid()           # this test's own process: no signing flags on its command line

        def alive(self):
            return True

    class Lab:
        name, processes = "fake", {"kube-controller-manager": Process()}

        def refresh(self):
            return self

    signs, evidence = users.signing_evidence(None, type("Target", (), {"lab": Lab()})())
    assert signs is False and f"pid {os.getpid()}" in evidence and "without" in evidence
    Lab.processes = {}
    assert users.signing_evidence(None, type("Target", (), {"lab": Lab()})())[0] is False


# ---- tokens never show themselves -------------------------------------------------------------
def _fake_jwt(claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{enc({'alg': 'ES256', 'kid': 'k'})}.{enc(claims)}.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_token_repr_and_summary_hide_the_token():
    value = _fake_jwt({"sub": "system:serviceaccount:luffy:app", "aud": ["https://kubernetes.default.svc"],
                       "iat": 1700000000, "exp": 1700000600,
                       "kubernetes.io": {"namespace": "luffy", "secret": {"name": "bound", "uid": "u"}}})
    token = tokens.Token("luffy", "app", dt.datetime(2023, 11, 14, 22, 23, 20, tzinfo=dt.timezone.utc),
                         ("https://kubernetes.default.svc",), value, "https://127.0.0.1:6443", None)
    summary = tokens.summary(token)
    shown = repr(token) + str(token) + summary.to_string() + summary.to_json()
    assert value not in shown and value.split(".")[1][:20] not in shown
    fields = dict(zip(summary["field"], summary["value"]))
    assert fields["subject (user name)"] == "system:serviceaccount:luffy:app"
    assert fields["bound to"] == "Secret/bound" and fields["lifetime (s)"] == 600
    assert tokens.summary(None).empty and tokens.probe(None, ["/api/v1/nodes"]).empty
    configured = token.api_client().configuration
    assert configured.api_key_prefix["authorization"] == "Bearer" and not configured.cert_file


def test_kubectl_without_a_kubeconfig_says_so(tmp_path):
    row = access.kubectl(str(tmp_path / "none.kubeconfig"), "get", "pods").iloc[0]
    assert row["exit code"] is None and "no kubeconfig" in row["answer"]


def test_a_token_client_always_verifies_the_server():
    token = tokens.Token("ns", "sa", dt.datetime.now(dt.timezone.utc), (), _fake_jwt({"sub": "x"}),
                         "https://127.0.0.1:6443", None)
    configured = token.api_client().configuration
    assert configured.verify_ssl is True and configured.ssl_ca_cert is None  # the system trust store, never off
    from kubernetes import client
    insecure = client.Configuration()
    insecure.host, insecure.verify_ssl = "https://127.0.0.1:6443", False
    with pytest.raises(KubebookError, match="turns TLS verification off"):
        tokens.request_token(client.ApiClient(insecure), "ns", "sa")  # refused before any request is made


def test_the_rbac_runbooks_confirm_names_the_cluster_wide_objects():
    objects = rbac.course_examples(namespace="kubebook-auth", user="dave", group="manager")
    scopes = rbac.scopes(objects)
    assert scopes == ["namespace/kubebook-auth", "clusterrole/secret-reader", "clusterrolebinding/read-secrets-global"]
    with pytest.raises(Exception, match="does not name clusterrole/secret-reader, clusterrolebinding/read-secrets"):
        Plan(target="kubebook-auth", kind="namespace", also=scopes, confirm="kubebook-auth", log=lambda m: None)
    plan = Plan(target="kubebook-auth", kind="namespace", also=scopes, log=lambda m: None)
    assert plan.confirm_text == "kubebook-auth, clusterrole/secret-reader, clusterrolebinding/read-secrets-global"


def test_grants_lists_each_subject_and_binding_once():
    long = pd.DataFrame([{"subject": "User:a", "verb": v, "allowed": v != "delete", "reason": "RBAC: RoleBinding x"}
                         for v in ("get", "list", "delete")])
    assert access.grants(long).to_dict("records") == [{"subject": "User:a", "reason": "RBAC: RoleBinding x"}]


@pytest.mark.parametrize("value", ["../..", "a/b", "Luffy"])
def test_new_user_refuses_a_user_name_that_is_a_path_before_any_kernel(value):
    from kubebook import runner
    from kubebook.errors import ParameterError
    with pytest.raises(ParameterError, match="parameter user"):
        runner.find("auth/new-user").validate({"user": value})
