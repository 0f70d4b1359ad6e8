"""Authentication and RBAC on the lab's real apiserver (Node,RBAC enforced, CSR signing on). No mocks.

Each test uses its own namespace and names, and removes what it made.
"""
from __future__ import annotations

import json
import re
import stat
import subprocess
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook import binaries, runner
from kubebook.auth import access, certificates, nodes, rbac, tokens, users
from kubebook.auth.subjects import Subject
from kubebook.connect import api_client
from kubebook.plan import Plan

pytestmark = pytest.mark.lab


@pytest.fixture
def ns(api):
    name = f"pytest-auth-{uuid.uuid4().hex[:6]}"
    rbac.ensure_namespace(api, name)
    yield name
    client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def cleanup(api):
    """Objects to delete after the test (cluster-scoped RBAC objects, CSRs)."""
    objects, csrs = [], []
    yield objects, csrs
    for obj in objects:
        rbac.delete(api, obj)
    for name in csrs:
        try:
            client.CertificatesV1Api(api).delete_certificate_signing_request(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _kubectl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries.find("kubectl")), *args], capture_output=True, text=True, timeout=60)


def _can_i(lab, subject: Subject, verb: str, resource: str, namespace: str) -> bool:
    """`kubectl auth can-i` with the admin kubeconfig, impersonating the subject."""
    who = ["--as", "kubebook:member", "--as-group", subject.name] if subject.kind == "Group" \
        else ["--as", subject.username]
    scope = ["-n", namespace] if namespace and namespace != "*" else []
    done = _kubectl(f"--kubeconfig={lab.kubeconfig}", "auth", "can-i", verb, resource, *scope, *who)
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def _act(lab, api, user: users.NewUser, target: str):
    plan = Plan(target=target, confirm=target, kind="user", log=lambda m: None)
    cluster = certificates.cluster_of(lab.kubeconfig)
    user.add_steps(plan, server=cluster["server"], ca_pem=cluster["ca_pem"], cluster=cluster["name"])
    return plan.table().set_index("step")


# ---- new users ------------------------------------------------------------------------------------
def test_new_user_through_csr_is_forbidden_then_allowed_in_its_namespace_only(lab, api, ns, cleanup, tmp_path):
    name = f"pytest-user-{uuid.uuid4().hex[:6]}"
    user = users.NewUser(api, name, groups=["admin:luffy"], directory=tmp_path / name, expiration_seconds=3600)
    cleanup[1].append(user.csr_name)
    steps = _act(lab, api, user, name)
    assert set(steps["status"]) == {"done"}
    for path in (user.key_file, user.kubeconfig):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    issued = user.certificate().iloc[0]
    assert (issued["user (CN)"], issued["groups (O)"], issued["verify against CA"]) == (name, "admin:luffy", "OK")
    # the CSR API honoured expirationSeconds (the signer may only shorten it)
    from cryptography import x509
    not_after = x509.load_pem_x509_certificate(user.cert_file.read_bytes()).not_valid_after_utc.timestamp()
    assert 3000 < not_after - time.time() <= 3600

    config = f"--kubeconfig={user.kubeconfig}"
    before = _kubectl(config, "get", "pods", "-n", ns)
    assert before.returncode == 1 and "Forbidden" in before.stderr and f'User "{name}"' in before.stderr

    rbac.apply_all(api, rbac.namespace_admin(f"User:{name}", namespace=ns, name=name))
    access.wait_allowed(api, f"User:{name}", "list", "pods", namespace=ns)
    after = _kubectl(config, "get", "pods", "-n", ns)
    assert after.returncode == 0, after.stderr
    elsewhere = _kubectl(config, "get", "pods", "-n", "default")
    assert elsewhere.returncode == 1 and "Forbidden" in elsewhere.stderr
    assert access.whoami(api_client(user.kubeconfig)).iloc[0]["groups"].startswith("admin:luffy")

    # re-running changes nothing: same key, same certificate, same kubeconfig, no new CSR
    key, cert = user.key_file.read_bytes(), user.cert_file.read_bytes()
    again = _act(lab, api, user, name)
    assert "kept" in again.loc["key", "detail"] and "kept the valid certificate" in again.loc["submit", "detail"]
    assert "unchanged" in again.loc["kubeconfig", "detail"]
    assert user.key_file.read_bytes() == key and user.cert_file.read_bytes() == cert


def test_new_user_signed_with_the_ca_key_works_with_kubectl(lab, api, ns, tmp_path):
    name = f"pytest-cakey-{uuid.uuid4().hex[:6]}"
    user = users.NewUser(api, name, groups=["dev", "qa"], directory=tmp_path, signer="ca-key",
                         ca_crt=lab.pki.root / "ca.crt", ca_key=lab.pki.root / "ca.key")
    _act(lab, api, user, name)
    assert stat.S_IMODE(user.kubeconfig.stat().st_mode) == 0o600
    whoami = _kubectl(f"--kubeconfig={user.kubeconfig}", "auth", "whoami", "-o", "json")
    info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert info["username"] == name and {"dev", "qa"} <= set(info["groups"])
    assert _kubectl(f"--kubeconfig={user.kubeconfig}", "get", "pods", "-n", ns).returncode == 1


def test_dry_run_creates_no_file_and_no_csr(lab, api, tmp_path):
    name = f"pytest-dry-{uuid.uuid4().hex[:6]}"
    user = users.NewUser(api, name, directory=tmp_path / name)
    plan = Plan(target=name, confirm="", kind="user", log=lambda m: None)
    user.add_steps(plan, **{k: v for k, v in certificates.cluster_of(lab.kubeconfig).items() if k != "name"},
                   cluster="lab")
    assert not (tmp_path / name).exists()
    with pytest.raises(ApiException) as missing:
        client.CertificatesV1Api(api).read_certificate_signing_request(user.csr_name)
    assert missing.value.status == 404


# ---- RBAC objects and the matrix ----------------------------------------------------------------
def test_clusterrole_bound_by_a_rolebinding_stays_namespaced(lab, api, ns, cleanup):
    tag = uuid.uuid4().hex[:6]
    objects = rbac.course_examples(namespace=ns, user=f"dave-{tag}", group=f"manager-{tag}")
    for o in objects:  # cluster-scoped names must not collide with the runbooks' or other tests'
        if "namespace" not in o["metadata"]:
            o["metadata"]["name"] += f"-{tag}"
        if o.get("roleRef", {}).get("kind") == "ClusterRole":
            o["roleRef"]["name"] += f"-{tag}"
    cleanup[0].extend(o for o in objects if "namespace" not in o["metadata"])
    assert set(rbac.apply_all(api, objects).split(", ")) == {f"{o['kind']}/{o['metadata']['name']} created"
                                                              for o in objects}
    assert "created" not in rbac.apply_all(api, objects)  # idempotent
    dave, manager = f"User:dave-{tag}", f"Group:manager-{tag}"
    access.wait_allowed(api, manager, "get", "secrets", namespace="default")
    access.wait_allowed(api, dave, "get", "secrets", namespace=ns)
    assert access.can(api, dave, "get", "secrets", namespace=ns)["reason"].startswith(
        'RBAC: allowed by RoleBinding "read-secrets')
    assert not access.can(api, dave, "get", "secrets", namespace="default")["allowed"]
    assert not access.can(api, dave, "list", "secrets")["allowed"]  # not cluster-wide either
    assert access.can(api, manager, "list", "secrets")["allowed"]
    # drift in rules is repaired; a different roleRef is refused
    objects[0]["rules"][0]["verbs"] = ["get"]
    assert "Role/pod-reader updated" in rbac.apply_all(api, objects[:1])
    changed = dict(objects[2], roleRef={**objects[2]["roleRef"], "name": "other"})
    with pytest.raises(rbac.RoleRefDrift):
        rbac.apply(api, changed)


def test_matrix_agrees_with_kubectl_auth_can_i_on_every_cell(lab, api, ns, cleanup):
    tag = uuid.uuid4().hex[:6]
    sa = f"ServiceAccount:{ns}:robot"
    tokens.ensure_service_account(api, ns, "robot")
    objects = [*rbac.namespace_admin(f"User:admin-{tag}", namespace=ns, name="ns-admin"),
               rbac.role("pod-reader", namespace=ns, rules=[rbac.rule(["get", "list", "watch"], ["pods"])]),
               rbac.role_binding("robot-reads-pods", namespace=ns, role="pod-reader", subjects=[sa]),
               rbac.cluster_role(f"node-viewer-{tag}", rules=[rbac.rule(["get", "list"], ["nodes"])]),
               rbac.cluster_role_binding(f"node-viewers-{tag}", cluster_role=f"node-viewer-{tag}",
                                         subjects=[f"Group:viewers-{tag}"])]
    cleanup[0].extend(objects[-2:])
    rbac.apply_all(api, objects)
    access.wait_allowed(api, f"Group:viewers-{tag}", "list", "nodes")
    access.wait_allowed(api, sa, "list", "pods", namespace=ns)
    access.wait_allowed(api, f"User:admin-{tag}", "delete", "secrets", namespace=ns)
    subjects = [f"User:admin-{tag}", sa, f"Group:viewers-{tag}", "Group:system:masters", f"User:nobody-{tag}"]
    resources = ["pods", "secrets", "deployments.apps", "nodes"]
    verbs = ["get", "list", "create", "delete"]
    long = access.checks(api, subjects, resources, verbs, namespace=ns)
    assert len(long) == 80 and long["allowed"].any() and not long["allowed"].all()
    disagreements = [(r.subject, r.verb, r.resource) for r in long.itertuples()
                     if _can_i(lab, Subject.parse(r.subject), r.verb, r.resource, r.namespace) != r.allowed]
    assert disagreements == []
    assert access.verify(api, long)["agrees"].all()
    table = access.pivot(long)
    assert table.loc[(sa, "pods"), "list"] == "✓" and table.loc[(sa, "pods"), "delete"] == "·"
    assert table.loc[(f"Group:viewers-{tag}", "nodes"), "get"] == "✓"
    assert (table.loc["Group:system:masters"] == "✓").all().all()
    assert (table.loc[f"User:nobody-{tag}"] == "·").all().all()
    # sequential and concurrent answers are the same answers (reasons may name another matching binding)
    decisions = ["subject", "verb", "resource", "namespace", "allowed"]
    assert long[decisions].equals(access.checks(api, subjects, resources, verbs, namespace=ns, workers=1)[decisions])


def test_reverse_lookups_name_the_binding_and_include_system_masters(lab, api, ns):
    tag = uuid.uuid4().hex[:6]
    rbac.apply_all(api, rbac.namespace_admin(f"User:boss-{tag}", namespace=ns, name="boss"))
    access.wait_allowed(api, f"User:boss-{tag}", "delete", "secrets", namespace=ns)
    who = rbac.who_can(api, "delete", "secrets", namespace=ns)
    by = dict(zip(who["subject"], who["reason"]))
    assert "Group:system:masters" in by and "built into the apiserver" in by["Group:system:masters"]
    assert by[f"User:boss-{tag}"].startswith(f'RBAC: allowed by RoleBinding "boss/{ns}"')
    assert not any(s.startswith("Group:system:authenticated") for s in by)
    mine = rbac.bindings_for(api, f"User:boss-{tag}")
    assert (mine["binding"] == "RoleBinding/boss").any() and set(mine[mine["binding"] == "RoleBinding/boss"]["scope"]) \
        == {f"namespace {ns}"}
    assert rbac.bindings_for(api, "Group:system:masters").iloc[0]["binding"] == "(none: built into the apiserver)"


def test_cluster_admin_audit_finds_equivalents_and_the_apiserver_agrees(lab, api, cleanup):
    tag = uuid.uuid4().hex[:6]
    objects = [rbac.cluster_role(f"break-glass-{tag}", rules=[rbac.rule(["*"], ["*"], groups=("*",))]),
               rbac.cluster_role_binding(f"break-glass-{tag}", cluster_role=f"break-glass-{tag}",
                                         subjects=[f"User:root-{tag}"])]
    cleanup[0].extend(objects)
    rbac.apply_all(api, objects)
    access.wait_allowed(api, f"User:root-{tag}", "delete", "nodes")
    admins = rbac.cluster_admins(api)
    assert admins["allowed by apiserver"].all()
    row = admins[admins["subject"] == f"User:root-{tag}"].iloc[0]
    assert (row["binding"], row["scope"]) == (f"ClusterRoleBinding/break-glass-{tag}", "cluster")
    assert admins.iloc[0]["subject"] == "Group:system:masters"


# ---- ServiceAccount tokens -------------------------------------------------------------------------
def _rejected_eventually(token: tokens.Token, timeout: float = 30) -> int:
    """Status of a request with the token once the apiserver stops accepting it (401)."""
    deadline, pause = time.monotonic() + timeout, 0.05
    while True:
        code = access.whoami(token.api_client()).iloc[0]["status"]
        if code == 401 or time.monotonic() > deadline:
            return code
        time.sleep(pause)  # no watch exists on authentication results
        pause = min(pause * 2, 1)


def test_serviceaccount_token_reads_pods_not_nodes_and_never_shows(lab, api, ns):
    tokens.ensure_service_account(api, ns, "luffy-pods-admin")
    sa = f"ServiceAccount:{ns}:luffy-pods-admin"
    rbac.apply_all(api, [rbac.role("pods-reader-writer", namespace=ns, rules=[rbac.rule(["*"], ["pods"])]),
                         rbac.role_binding("pods-reader-writer", namespace=ns, role="pods-reader-writer",
                                           subjects=[sa])])
    access.wait_allowed(api, sa, "list", "pods", namespace=ns)
    requested = time.time()
    token = tokens.request_token(api, ns, "luffy-pods-admin", duration_seconds=900)
    lifetime = token.expiration.timestamp() - requested
    assert 800 < lifetime < 1000  # the expiry the server returned
    probe = tokens.probe(token, [f"/api/v1/namespaces/{ns}/pods", "/api/v1/nodes"]).set_index("GET")
    assert probe.loc[f"/api/v1/namespaces/{ns}/pods", "status"] == 200
    assert probe.loc["/api/v1/nodes", "status"] == 403
    assert f"system:serviceaccount:{ns}:luffy-pods-admin" in probe.loc["/api/v1/nodes", "message"]
    assert tokens.whoami(token).iloc[0]["user"] == f"system:serviceaccount:{ns}:luffy-pods-admin"
    shown = repr(token) + tokens.summary(token).to_string() + probe.to_string()
    assert token._value not in shown and not re.search(r"eyJ[A-Za-z0-9_-]{20,}", shown)
    # a token for another audience is not accepted by the apiserver
    foreign = tokens.request_token(api, ns, "luffy-pods-admin", audiences=["vault"])
    assert foreign.audiences == ("vault",) and tokens.whoami(foreign).iloc[0]["status"] == 401


def test_token_bound_to_a_secret_dies_with_it(lab, api, ns):
    tokens.ensure_service_account(api, ns, "bound")
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(ns, {"metadata": {"name": "anchor"}, "stringData": {"k": "v"}})
    token = tokens.request_token(api, ns, "bound", duration_seconds=600, bound_kind="Secret", bound_name="anchor")
    assert dict(zip(*tokens.summary(token).T.values))["bound to"] == "Secret/anchor"
    assert tokens.whoami(token).iloc[0]["status"] == 201
    core.delete_namespaced_secret("anchor", ns)
    assert _rejected_eventually(token) == 401


# ---- node identities ----------------------------------------------------------------------------------
def test_node_identity_is_limited_to_its_own_objects(lab, api):
    cert = nodes.lab_node_certificate(lab, "k8s-slave1")
    facts = dict(zip(*nodes.explain(cert).T.values))
    assert facts["user (CN)"] == "system:node:k8s-slave1" and facts["groups (O)"] == "system:nodes"
    table = nodes.node_checks(api, "k8s-slave1", other_node="k8s-slave2").set_index("request")
    assert table.loc["read its own Node", "allowed"] and table.loc["read its own Node", "decided by"] == "Node authorizer"
    assert not table.loc["read another Node", "allowed"]
    assert table.loc["list the Pods bound to it", "allowed"] and not table.loc["list every Pod", "allowed"]
    assert not table.loc["read a Secret no Pod on it uses", "allowed"]
    assert not table.loc["delete another Node", "allowed"]
    # and the certificate really authenticates as that node: kubectl with it may read its Node only
    assert _kubectl(f"--kubeconfig={lab.kubeconfig}", "auth", "can-i", "get", "nodes/k8s-slave1",
                    "--as", "system:node:k8s-slave1", "--as-group", "system:nodes").stdout.strip() == "yes"


# ---- executed notebooks keep secrets out ---------------------------------------------------------------
def test_executed_runbooks_show_neither_the_user_key_nor_the_token(lab, api, tmp_path):
    tag = uuid.uuid4().hex[:6]
    user, namespace, sa = f"nb-user-{tag}", f"pytest-nb-{tag}", f"nb-sa-{tag}"
    try:
        new_user = runner.run(runner.find("auth/new-user"),
                              {**runner.lab_values(runner.find("auth/new-user"), lab), "user": user,
                               "namespace": namespace, "confirm": user}, output_dir=tmp_path, progress=False)
        token_book = runner.find("auth/serviceaccount-token")
        token_run = runner.run(token_book, {**runner.lab_values(token_book, lab), "namespace": namespace,
                                            "service_account": sa, "confirm": sa},
                               output_dir=tmp_path, progress=False)
        texts = {r.runbook: r.notebook.read_text() + r.html.read_text() for r in (new_user, token_run)}
        key_file = lab.dir / "users" / user / f"{user}.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key_body = "".join(l for l in key_file.read_text().splitlines() if "-----" not in l)
        kubeconfig = lab.dir / "users" / user / f"{user}.kubeconfig"
        key_data = certificates.kcfg.load(kubeconfig)["users"][0]["user"]["client-key-data"]
        # every token this apiserver signs starts with the same header; the payload names the SA
        sample = tokens.request_token(api, namespace, sa)._value
        for text in texts.values():
            assert key_body[:60] not in text and key_body[-60:] not in text and key_data[:60] not in text
            assert sample.split(".")[0] not in text and not re.search(r"eyJhbGciOi[A-Za-z0-9_-]{10,}", text)
        assert "Forbidden" in texts["auth/new-user"] and "No resources found" in texts["auth/new-user"]
        assert "PodList" in texts["auth/serviceaccount-token"] and "nodes is forbidden" in texts["auth/serviceaccount-token"]
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)
        try:
            client.CertificatesV1Api(api).delete_certificate_signing_request(f"user-{user}")
        except ApiException:
            pass


def test_node_may_read_a_secret_only_once_a_pod_on_it_uses_it(lab, api, ns):
    from kubebook.waits import wait_for
    core = client.CoreV1Api(api)
    node, other = (Subject("User", f"system:node:{n}", member_of=("system:nodes",)) for n in ("k8s-slave1", "k8s-slave2"))
    core.create_namespaced_secret(ns, {"metadata": {"name": "db-password"}, "stringData": {"password": "x"}})
    assert not access.can(api, node, "get", "secrets", namespace=ns, name="db-password")["allowed"]
    wait_for(api, "serviceaccounts", lambda sas: "default" in sas, namespace=ns, timeout=30, what="default SA")
    core.create_namespaced_pod(ns, {"metadata": {"name": "uses-secret"}, "spec": {
        "nodeName": "k8s-slave1", "containers": [{"name": "app", "image": "busybox"}],
        "volumes": [{"name": "s", "secret": {"secretName": "db-password"}}]}})
    # the Node authorizer learns the Pod -> Secret edge from its informers, moments after the Pod exists
    row = access.wait_allowed(api, node, "get", "secrets", namespace=ns, name="db-password")
    assert row["reason"] == "Node authorizer"
    refused = access.can(api, other, "get", "secrets", namespace=ns, name="db-password")
    assert not refused["allowed"] and "no relationship" in refused["reason"]
