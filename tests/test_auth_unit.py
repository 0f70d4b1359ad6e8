"""kubebook.auth without a cluster: subjects, certificates, recorded RBAC objects, files, masking."""
from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509

from kubebook import kubeconfig as kcfg, pki
from kubebook.auth import access, certificates, rbac, tokens, users
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


def test_cluster_of_reads_server_and_ca(tmp_path):
    ca = pki.new_ca("kubernetes", pki.ECDSA_P256)
    pair = _user(ca, "admin", ("system:masters",))
    path = kcfg.write(tmp_path / "admin.conf", kcfg.build(server="https://127.0.0.1:6443", ca_pem=ca.cert_pem,
                                                          cert_pem=pair.cert_pem, key_pem=pair.key_pem,
                                                          cluster="prod", user="admin", context="admin@prod"))
    info = certificates.cluster_of(path)
    assert info["name"] == "prod" and info["server"] == "https://127.0.0.1:6443" and info["ca_pem"] == ca.cert_pem
    with pytest.raises(Exception, match="no context"):
        certificates.cluster_of(path, "missing")


# ---- a user signed with the CA key (the course's openssl path), without a cluster ---------------
def test_new_user_with_ca_key_files_are_private_and_rerun_keeps_them(tmp_path):
    ca = pki.new_ca("kubernetes", pki.ECDSA_P256)
    pki.save(ca, tmp_path / "pki" / "ca")
    user = users.NewUser(None, "luffy-admin", groups=["admin:luffy"], directory=tmp_path / "u", signer="ca-key",
                         ca_crt=tmp_path / "pki" / "ca.crt", ca_key=tmp_path / "pki" / "ca.key",
                         key_algorithm=pki.ECDSA_P256)
    dry = Plan(target="luffy-admin", confirm="", kind="user", log=lambda m: None)
    user.add_steps(dry, server="https://127.0.0.1:6443", ca_pem=ca.cert_pem, cluster="lab")
    assert not (tmp_path / "u").exists() and set(dry.table()["status"]) == {"planned"}

    def act():
        plan = Plan(target="luffy-admin", confirm="luffy-admin", kind="user", log=lambda m: None)
        user.add_steps(plan, server="https://127.0.0.1:6443", ca_pem=ca.cert_pem, cluster="lab")
        return plan.table().set_index("step")["detail"]
    first = act()
    assert "created" in first["key"] and "valid until" in first["sign"]
    for path in (user.key_file, user.kubeconfig):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key, cert = user.key_file.read_bytes(), user.cert_file.read_bytes()
    issued = x509.load_pem_x509_certificate(cert)
    assert certificates.identity(issued) == ("luffy-admin", ["admin:luffy"])
    assert certificates.verify(issued, ca.cert) == "OK"
    second = act()
    assert "kept" in second["key"] and "kept the valid certificate" in second["sign"]
    assert "unchanged" in second["kubeconfig"]
    assert user.key_file.read_bytes() == key and user.cert_file.read_bytes() == cert
    assert user.certificate().iloc[0]["verify against CA"] == "OK"


def test_confirm_naming_another_user_is_refused(tmp_path):
    with pytest.raises(Exception, match="does not name"):
        Plan(target="luffy-admin", confirm="someone-else", kind="user", log=lambda m: None)


def test_locations_default_to_kubeadm_paths():
    where = users.locations(user="luffy-admin")
    assert str(where["ca_key"]) == "/etc/kubernetes/pki/ca.key"
    assert where["directory"].name == "luffy-admin" and where["directory"].parent.name == "users"


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
