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
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook import binaries, connect, runner, safety
from kubebook.auth import access, certificates, nodes, rbac, tokens, users
from kubebook.auth.subjects import Subject
from kubebook.errors import RunbookFailed
from kubebook.plan import Plan, StepFailed
from kubebook.waits import WaitBlocked

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def own_run(monkeypatch):
    """Each test is a run of its own: its plans record, and clean up, only what that test made."""
    monkeypatch.setenv("KUBEBOOK_RUN_ID", f"pytest-auth-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def target(lab):
    return connect.target(lab=lab.name)


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


def _plan(target, name: str, *, kind="user", also=(), confirm: str | None = None) -> Plan:
    """A plan for ``name``, acting (confirmed exactly) unless ``confirm=""``."""
    plan = Plan(target=name, kind=kind, also=list(also), cluster=target, log=lambda m: None)
    return Plan(target=name, kind=kind, also=list(also), cluster=target, log=lambda m: None,
                confirm=plan.confirm_text if confirm is None else confirm)


def _issue(target, user: users.NewUser, **kw):
    plan = _plan(target, user.name, also=user.touches)
    users.issue(plan, user, **kw)
    return plan, plan.table().set_index("step")


def _errors(notebook) -> list[dict]:
    """The error outputs of an executed notebook (what a reader of the run sees)."""
    nb = json.loads(notebook.read_text())
    return [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _outputs_text(notebook) -> str:
    nb = json.loads(notebook.read_text())
    return json.dumps([c.get("outputs", []) for c in nb["cells"]])


# ---- new users ------------------------------------------------------------------------------------
def test_new_user_through_csr_is_forbidden_then_allowed_in_its_namespace_only(lab, api, target, ns, tmp_path):
    name = f"pytest-user-{uuid.uuid4().hex[:6]}"
    user = users.NewUser.at(target, name, groups=["admin:luffy"], directory=tmp_path / "users" / name,
                            expiration_seconds=3600)
    plan, steps = _issue(target, user)
    assert set(steps["status"]) == {"done"} and list(steps.index) == ["key", "csr", "submit", "approve", "signed",
                                                                     "kubeconfig"]
    for path in (user.key_file, user.kubeconfig):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(user.directory.stat().st_mode) == stat.S_IMODE((tmp_path / "users").stat().st_mode) == 0o700
    issued = user.certificate().iloc[0]
    assert (issued["user (CN)"], issued["groups (O)"], issued["verify against CA"]) == (name, "admin:luffy", "OK")
    # the CSR API honoured expirationSeconds (the signer may only shorten it)
    from cryptography import x509
    not_after = x509.load_pem_x509_certificate(user.cert_file.read_bytes()).not_valid_after_utc.timestamp()
    assert 3000 < not_after - time.time() <= 3600
    csr = client.CertificatesV1Api(api).read_certificate_signing_request(user.csr_name)
    assert csr.metadata.annotations["kubebook.io/created-by"] == plan.record.run  # marked as this run's

    config = f"--kubeconfig={user.kubeconfig}"
    before = _kubectl(config, "get", "pods", "-n", ns)
    assert before.returncode == 1 and "Forbidden" in before.stderr and f'User "{name}"' in before.stderr

    grant = _plan(target, ns, kind="namespace", also=user.touches)
    rbac.apply_objects(grant, rbac.namespace_admin(f"User:{name}", namespace=ns, name=name))
    access.wait_effective(grant, f"User:{name}", "list", "pods", namespace=ns)
    after = _kubectl(config, "get", "pods", "-n", ns)
    assert after.returncode == 0, after.stderr
    elsewhere = _kubectl(config, "get", "pods", "-n", "default")
    assert elsewhere.returncode == 1 and "Forbidden" in elsewhere.stderr
    assert access.whoami(connect.api_client(user.kubeconfig)).iloc[0]["groups"].startswith("admin:luffy")

    # re-running changes nothing: same key, same certificate, same kubeconfig, no new CSR
    key, cert = user.key_file.read_bytes(), user.cert_file.read_bytes()
    _, again = _issue(target, user)
    assert "kept" in again.loc["key", "detail"] and "kept the valid certificate" in again.loc["certificate", "detail"]
    assert "submit" not in again.index and "unchanged" in again.loc["kubeconfig", "detail"]
    assert user.key_file.read_bytes() == key and user.cert_file.read_bytes() == cert

    # clean-up deletes what each run made: the Role, the RoleBinding, the CSR; the files stay
    grant.cleanup()  # one run: its plans share the record of what it made
    assert not client.RbacAuthorizationV1Api(api).list_namespaced_role(ns).items
    with pytest.raises(ApiException) as gone:
        client.CertificatesV1Api(api).read_certificate_signing_request(user.csr_name)
    assert gone.value.status == 404 and user.kubeconfig.is_file()


def test_new_user_signed_with_the_ca_key_works_with_kubectl(lab, api, target, ns, tmp_path):
    name = f"pytest-cakey-{uuid.uuid4().hex[:6]}"
    user = users.NewUser.at(target, name, groups=["dev", "qa"], directory=tmp_path, signer="ca-key")
    assert user.ca_key == lab.pki.root / "ca.key" and user.touches == []  # the lab's CA; no cluster object
    _issue(target, user)
    assert stat.S_IMODE(user.kubeconfig.stat().st_mode) == 0o600
    whoami = _kubectl(f"--kubeconfig={user.kubeconfig}", "auth", "whoami", "-o", "json")
    info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert info["username"] == name and {"dev", "qa"} <= set(info["groups"])
    assert _kubectl(f"--kubeconfig={user.kubeconfig}", "get", "pods", "-n", ns).returncode == 1


def test_dry_run_creates_no_file_and_no_csr(lab, api, target, tmp_path):
    name = f"pytest-dry-{uuid.uuid4().hex[:6]}"
    user = users.NewUser.at(target, name, directory=tmp_path / name)
    plan = _plan(target, name, also=user.touches, confirm="")
    users.issue(plan, user)
    table = plan.table()
    assert set(table["status"]) == {"planned"} and "submit" in set(table["step"])
    assert plan.objects().iloc[0][["kind", "name", "after"]].tolist() == \
        ["CertificateSigningRequest", user.csr_name, "created (deleted at clean-up)"]
    assert not (tmp_path / name).exists()
    with pytest.raises(ApiException) as missing:
        client.CertificatesV1Api(api).read_certificate_signing_request(user.csr_name)
    assert missing.value.status == 404


@pytest.fixture
def controller_manager_without_signing_files(lab):
    """The lab's kube-controller-manager restarted without --cluster-signing-*, as on a cluster whose
    controller-manager holds no CA key; put back afterwards."""
    lab.stop_component("kube-controller-manager")
    lab.start_component("kube-controller-manager", without=("--cluster-signing-",))
    try:
        lab.wait_ready("kube-controller-manager", timeout=60)
        yield lab
    finally:
        lab.stop_component("kube-controller-manager")
        lab.start_component("kube-controller-manager")
        lab.wait_ready("kube-controller-manager", timeout=60)


def test_a_request_nothing_signs_is_diagnosed_within_seconds(lab, api, controller_manager_without_signing_files,
                                                             tmp_path, cleanup):
    name = f"pytest-nosigner-{uuid.uuid4().hex[:6]}"
    cleanup[1].append(f"user-{name}")
    book = runner.find("auth/new-user")
    confirm = f"{name}, namespace/kubebook-auth, certificatesigningrequest/user-{name}"
    with pytest.raises(RunbookFailed):  # the wait may take at most 10 s: a timeout is not a diagnosis
        runner.run(book, {**runner.lab_values(book, lab), "user": name, "confirm": confirm, "timeout": 10},
                   output_dir=tmp_path, progress=False)
    notebook = next(tmp_path.glob("auth-new-user-*.ipynb"))
    [error] = _errors(notebook)
    reason = error["evalue"]
    assert error["ename"] == "StepFailed" and "\n" not in reason
    assert f"CSR user-{name} was approved but no signer issued a certificate" in reason
    assert "runs without --cluster-signing-cert-file" in reason and "signer=ca-key" in reason
    assert "timed out" not in reason
    # the same request is then served by signer=ca-key, as the reason suggests
    result = runner.run(book, {**runner.lab_values(book, lab), "user": name, "signer": "ca-key",
                               "confirm": f"{name}, namespace/kubebook-auth"}, output_dir=tmp_path, progress=False)
    assert not _errors(result.notebook) and "valid until" in _outputs_text(result.notebook)


def test_the_diagnosis_reads_the_lab_process_and_waits_no_longer_than_needed(lab, api, target,
                                                                          controller_manager_without_signing_files,
                                                                          tmp_path, cleanup):
    name = f"pytest-nosign2-{uuid.uuid4().hex[:6]}"
    cleanup[1].append(f"user-{name}")
    signs, evidence = users.signing_evidence(api, target)
    assert signs is False and "runs without" in evidence
    user = users.NewUser.at(target, name, directory=tmp_path)
    with pytest.raises(StepFailed) as failed:
        _issue(target, user, timeout=10)
    assert failed.value.step == "signed" and isinstance(failed.value.cause, WaitBlocked)


def test_rbac_refusing_the_runs_own_step_is_said_plainly(lab, api, target, tmp_path, cleanup):
    """A kubeconfig of a user without any binding: the run stops before its first change with one line."""
    nobody = users.NewUser.at(target, f"pytest-nobody-{uuid.uuid4().hex[:6]}", directory=tmp_path / "nobody",
                              signer="ca-key")
    _issue(target, nobody)
    name = f"pytest-refused-{uuid.uuid4().hex[:6]}"
    cleanup[1].append(f"user-{name}")
    as_nobody = connect.target(kubeconfig=nobody.kubeconfig)
    user = users.NewUser.at(as_nobody, name, directory=tmp_path / name)
    dry = _plan(as_nobody, name, also=user.touches, confirm="")
    users.issue(dry, user)  # a dry run says where the run would stop, and why
    stop = dry.table().set_index("step").loc["submit-refused", "what"]
    assert stop.startswith(f'stop here: RBAC refuses step submit to User "{nobody.name}"')
    book = runner.find("auth/new-user")
    values = {"kubeconfig": str(nobody.kubeconfig), "user": name, "directory": str(tmp_path / name),
              "confirm": f"{name}, namespace/kubebook-auth, certificatesigningrequest/user-{name}"}
    with pytest.raises(RunbookFailed):
        runner.run(book, values, output_dir=tmp_path / "acting", progress=False)
    [error] = _errors(next((tmp_path / "acting").glob("*.ipynb")))
    assert error["ename"] == "Forbidden" and "\n" not in error["evalue"]
    assert error["evalue"].startswith(f'RBAC refuses step submit to User "{nobody.name}": it may not get '
                                      f"certificatesigningrequests.certificates.k8s.io user-{name} (cluster-wide); "
                                      f"create certificatesigningrequests.certificates.k8s.io (cluster-wide)")
    assert "approve signers.certificates.k8s.io kubernetes.io/kube-apiserver-client" in error["evalue"]
    with pytest.raises(ApiException) as missing:  # refused before the request was made
        client.CertificatesV1Api(api).read_certificate_signing_request(f"user-{name}")
    assert missing.value.status == 404


# ---- RBAC objects and the matrix ----------------------------------------------------------------
def test_clusterrole_bound_by_a_rolebinding_stays_namespaced(lab, api, target, ns, cleanup):
    tag = uuid.uuid4().hex[:6]
    objects = rbac.course_examples(namespace=ns, user=f"dave-{tag}", group=f"manager-{tag}",
                                   cluster_role_name=f"secret-reader-{tag}",
                                   cluster_binding_name=f"read-secrets-global-{tag}")
    cleanup[0].extend(o for o in objects if "namespace" not in o["metadata"])
    with pytest.raises(Exception, match=f"does not name clusterrole/secret-reader-{tag}"):
        _plan(target, ns, kind="namespace", also=rbac.scopes(objects), confirm=ns)  # the finding of issue 8
    plan = _plan(target, ns, kind="namespace", also=rbac.scopes(objects))
    assert set(rbac.apply_objects(plan, objects)) == {"created"}
    again = _plan(target, ns, kind="namespace", also=rbac.scopes(objects))
    assert set(rbac.apply_objects(again, objects)) == {"kept"}  # idempotent, and no write at all
    dave, manager = f"User:dave-{tag}", f"Group:manager-{tag}"
    access.wait_allowed(api, manager, "get", "secrets", namespace="default")
    access.wait_allowed(api, dave, "get", "secrets", namespace=ns)
    assert access.can(api, dave, "get", "secrets", namespace=ns)["reason"].startswith(
        'RBAC: allowed by RoleBinding "read-secrets')
    assert not access.can(api, dave, "get", "secrets", namespace="default")["allowed"]
    assert not access.can(api, dave, "list", "secrets")["allowed"]  # not cluster-wide either
    assert access.can(api, manager, "list", "secrets")["allowed"]
    # a binding whose roleRef differs is refused in the dry run already
    changed = dict(objects[2], roleRef={**objects[2]["roleRef"], "name": "other"})
    with pytest.raises(rbac.RoleRefDrift, match="a roleRef cannot change"):
        rbac.apply(_plan(target, ns, kind="namespace", confirm=""), changed)
    plan.cleanup()
    assert not client.RbacAuthorizationV1Api(api).list_namespaced_role_binding(ns).items
    with pytest.raises(ApiException):
        client.RbacAuthorizationV1Api(api).read_cluster_role_binding(f"read-secrets-global-{tag}")


def test_an_existing_role_is_backed_up_replaced_and_restored(lab, api, target, ns):
    rbac_api = client.RbacAuthorizationV1Api(api)
    theirs = rbac.role("pod-reader", namespace=ns, rules=[rbac.rule(["get"], ["configmaps"])])
    rbac_api.create_namespaced_role(ns, theirs)
    ours = rbac.role("pod-reader", namespace=ns, rules=[rbac.rule(["get", "list"], ["pods"])])
    dry = _plan(target, ns, kind="namespace", confirm="")
    rbac.apply(dry, ours)
    assert dry.objects().iloc[0]["after"] == "backed up, replaced, restored at clean-up"
    assert rbac_api.read_namespaced_role("pod-reader", ns).rules[0].resources == ["configmaps"]  # dry: unchanged
    plan = _plan(target, ns, kind="namespace")
    assert "replaced (backup " in rbac.apply(plan, ours)
    assert rbac_api.read_namespaced_role("pod-reader", ns).rules[0].resources == ["pods"]
    backup = next(iter(plan.record.changed.values())).backup
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600 and "configmaps" in backup.read_text()
    plan.cleanup()
    restored = rbac_api.read_namespaced_role("pod-reader", ns)
    assert restored.rules[0].resources == ["configmaps"] and restored.rules[0].verbs == ["get"]


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
    assert access.verified(api, long)["agrees"].all()
    table = access.pivot(long)
    assert table.loc[(sa, "pods"), "list"] == "✓" and table.loc[(sa, "pods"), "delete"] == "·"
    assert table.loc[(f"Group:viewers-{tag}", "nodes"), "get"] == "✓"
    assert (table.loc["Group:system:masters"] == "✓").all().all()
    assert (table.loc[f"User:nobody-{tag}"] == "·").all().all()
    # sequential and concurrent answers are the same answers (reasons may name another matching binding)
    decisions = ["subject", "verb", "resource", "namespace", "allowed"]
    assert long[decisions].equals(access.checks(api, subjects, resources, verbs, namespace=ns, workers=1)[decisions])
    # a matrix that does not hold is refused, naming the cells
    wrong = long.assign(allowed=~long["allowed"]).head(2)
    with pytest.raises(Exception, match="2 of 2 cells disagree"):
        access.verified(api, wrong)


def test_reverse_lookups_name_the_binding_and_include_system_masters(lab, api, ns):
    tag = uuid.uuid4().hex[:6]
    rbac.apply_all(api, rbac.namespace_admin(f"User:boss-{tag}", namespace=ns, name="boss"))
    access.wait_allowed(api, f"User:boss-{tag}", "delete", "secrets", namespace=ns)
    who = rbac.who_can(api, "delete", "secrets", namespace=ns)
    by = dict(zip(who["subject"], who["reason"]))
    assert "Group:system:masters" in by and "built into the apiserver" in by["Group:system:masters"]
    assert by[f"User:boss-{tag}"].startswith(f'RBAC: allowed by RoleBinding "boss/{ns}"')
    assert not any(s.startswith("Group:system:authenticated") for s in by)
    assert f"User:boss-{tag}" not in set(rbac.who_can(api, "delete", "secrets", namespace=ns,
                                                      all_namespaces=True)["subject"])
    mine = rbac.bindings_for(api, f"User:boss-{tag}")
    assert (mine["binding"] == "RoleBinding/boss").any() and set(mine[mine["binding"] == "RoleBinding/boss"]["scope"]) \
        == {f"namespace {ns}"}
    assert rbac.bindings_for(api, "Group:system:masters").iloc[0]["binding"] == "(none: built into the apiserver)"


def test_cluster_admin_audit_finds_equivalents_and_the_apiserver_agrees(lab, api, target, cleanup):
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
    masters = certificates.system_masters(target)  # the lab's admin.conf is O=system:masters
    assert "system:masters" in masters.iloc[0]["groups (O)"]


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


def test_serviceaccount_token_is_a_dry_run_step_reads_pods_not_nodes_and_never_shows(lab, api, target, ns):
    dry = _plan(target, ns, kind="namespace", confirm="")
    assert tokens.create_token(dry, ns, "luffy-pods-admin") is None
    row = dry.table().set_index("step").loc["token"]
    assert row["status"] == "planned" and "TokenRequest" in row["what"] and "create token" in row["command"]
    plan = _plan(target, ns, kind="namespace")
    tokens.create_service_account(plan, ns, "luffy-pods-admin")
    sa = f"ServiceAccount:{ns}:luffy-pods-admin"
    rbac.apply_objects(plan, rbac.pod_admin(sa, namespace=ns, name="pods-reader-writer"))
    access.wait_effective(plan, sa, "list", "pods", namespace=ns)
    requested = time.time()
    token = tokens.create_token(plan, ns, "luffy-pods-admin", duration_seconds=900)
    lifetime = token.expiration.timestamp() - requested
    assert 800 < lifetime < 1000  # the expiry the server returned
    probe = tokens.probe(token, [f"/api/v1/namespaces/{ns}/pods", "/api/v1/nodes"]).set_index("GET")
    assert probe.loc[f"/api/v1/namespaces/{ns}/pods", "status"] == 200
    assert probe.loc["/api/v1/nodes", "status"] == 403
    assert f"system:serviceaccount:{ns}:luffy-pods-admin" in probe.loc["/api/v1/nodes", "message"]
    assert tokens.whoami(token).iloc[0]["user"] == f"system:serviceaccount:{ns}:luffy-pods-admin"
    assert token.api_client().configuration.ssl_ca_cert == api.configuration.ssl_ca_cert  # verified with the lab CA
    shown = repr(token) + tokens.summary(token).to_string() + probe.to_string() + plan.table().to_string()
    assert token._value not in shown and not re.search(r"eyJ[A-Za-z0-9_-]{20,}", shown)
    assert token._value not in safety.mask_text(f"x {token._value} y")  # registered: masked wherever it appears
    # a token for another audience is not accepted by the apiserver
    foreign = tokens.create_token(plan, ns, "luffy-pods-admin", audiences=["vault"])
    assert foreign.audiences == ("vault",) and tokens.whoami(foreign).iloc[0]["status"] == 401
    plan.cleanup()  # deletes the ServiceAccount, so its tokens stop working
    assert _rejected_eventually(token) == 401


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
def test_node_identity_is_limited_to_its_own_objects(lab, api, target):
    cert, ca = nodes.certificate_and_ca(target, node="k8s-slave1")
    facts = dict(zip(*nodes.explain(cert, ca=ca).T.values))
    assert facts["user (CN)"] == "system:node:k8s-slave1" and facts["groups (O)"] == "system:nodes"
    assert facts["verify against CA"] == "OK"
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
    user_book, token_book = runner.find("auth/new-user"), runner.find("auth/serviceaccount-token")
    new_user = runner.run(user_book, {**runner.lab_values(user_book, lab), "user": user, "namespace": namespace,
                                      "cleanup": False, "confirm": f"{user}, namespace/{namespace}, "
                                                                   f"certificatesigningrequest/user-{user}"},
                          output_dir=tmp_path, progress=False)
    token_run = runner.run(token_book, {**runner.lab_values(token_book, lab), "namespace": namespace,
                                        "service_account": sa, "cleanup": False, "confirm": namespace},
                           output_dir=tmp_path, progress=False)
    try:
        outputs = {r.runbook: _outputs_text(r.notebook) for r in (new_user, token_run)}
        files = {r.runbook: r.notebook.read_text() + r.html.read_text() for r in (new_user, token_run)}
        key_file = lab.dir / "users" / user / f"{user}.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        key_body = "".join(l for l in key_file.read_text().splitlines() if "-----" not in l)
        kubeconfig = lab.dir / "users" / user / f"{user}.kubeconfig"
        key_data = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["client-key-data"]
        # every token this apiserver signs starts with the same header; the payload names the SA
        sample = tokens.request_token(api, namespace, sa)._value
        for text in files.values():
            assert key_body[:60] not in text and key_body[-60:] not in text and key_data[:60] not in text
            assert sample.split(".")[0] not in text and not re.search(r"eyJhbGciOi[A-Za-z0-9_-]{10,}", text)
        assert "Forbidden" in outputs["auth/new-user"] and "No resources found" in outputs["auth/new-user"]
        assert "PodList" in outputs["auth/serviceaccount-token"]
        assert "nodes is forbidden" in outputs["auth/serviceaccount-token"]
    finally:
        client.CoreV1Api(api).delete_namespace(namespace)
        client.CertificatesV1Api(api).delete_certificate_signing_request(f"user-{user}")


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
