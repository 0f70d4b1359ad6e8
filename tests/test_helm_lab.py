"""A release's whole life on the lab with the real helm binary, checked through the Kubernetes API:
ownership (a release that existed is put back, never uninstalled), values never on a command line,
and rollouts that say why within their 10 s timeout instead of timing out."""
from __future__ import annotations

import base64
import secrets
import uuid

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook import connect, helm, kubeconfig
from kubebook.errors import KubebookError
from kubebook.plan import Plan, StepFailed
from kubebook.waits import WaitBlocked

pytestmark = pytest.mark.lab

CHART = helm.CHARTS / "eladmin-web"


@pytest.fixture
def namespace(api):
    """A namespace for one test, deleted afterwards with whatever helm left in it."""
    name = f"helm-t-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


def _helm(lab, namespace, tmp_path, **kwargs):
    return helm.Helm(lab.kubeconfig, lab.context, namespace=namespace, home=tmp_path / "helm-home", **kwargs)


def _plan(api, release, namespace, *, confirm=True):
    return Plan(target=release, kind="release", also=[f"namespace/{namespace}"], cluster=api,
                confirm=f"{release}, namespace/{namespace}" if confirm else "", log=lambda m: None)


def _deployment(api, namespace, release="web"):
    return client.AppsV1Api(api).read_namespaced_deployment(f"{release}-eladmin-web", namespace)


def _password(api, namespace, release="web") -> str:
    # the chart's fullname: the release name alone when it holds the chart's name already
    name = release if "eladmin-web" in release else f"{release}-eladmin-web"
    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    return base64.b64decode(secret.data["admin-password"]).decode()


def _until(check, timeout: float = 20):
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except helm.HelmError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.2)


def _revisions_stored(api, namespace, release="web") -> list[int]:
    """The revisions helm keeps, read from its storage Secrets (owner=helm, name=<release>)."""
    found = client.CoreV1Api(api).list_namespaced_secret(namespace, label_selector=f"owner=helm,name={release}")
    return sorted(int(s.metadata.labels["version"]) for s in found.items)


def test_dry_run_changes_nothing(lab, api, namespace, run):
    web = helm.Release(_plan(api, "web", namespace, confirm=False), _helm(lab, namespace, run), "web")
    preview = web.install(CHART, {"replicaCount": 2})
    assert preview["dry_run"] and preview["revision"] == 1 and preview["values"] == {"replicaCount": 2}
    assert "Deployment" in set(helm.objects_table(preview["manifest"])["kind"])
    assert web.rollback().startswith("dry run") and web.uninstall().startswith("dry run")
    web.plan.cleanup()
    assert set(web.plan.table()["status"]) == {"planned"}
    assert not web.h.exists("web") and _revisions_stored(api, namespace) == []


def test_a_release_this_run_installs_is_uninstalled_and_nothing_is_left(lab, api, namespace, run):
    plan = _plan(api, "web", namespace)
    web = helm.Release(plan, _helm(lab, namespace, run, timeout=60), "web")
    installed = web.install(CHART, {"replicaCount": 2, "config.LOG_LEVEL": "info"})
    assert installed["revision"] == 1 and installed["previous_manifest"] is None and web.installed
    assert _deployment(api, namespace).status.available_replicas == 2
    password = _password(api, namespace)
    assert len(password) == 20

    same = web.install(CHART, {"replicaCount": 2, "config.LOG_LEVEL": "info"})
    assert same["revision"] == 2 and not same["changed"] and "no manifest change" in helm.describe_change(same)
    assert _password(api, namespace) == password          # lookup kept the generated password

    upgraded = web.upgrade(CHART, {"replicaCount": 2}, {"replicaCount": 3, "config.LOG_LEVEL": "debug"})
    assert upgraded["revision"] == 3 and upgraded["changed"]
    assert "+  replicas: 3" in upgraded["diff"] and "+  LOG_LEVEL: debug" in upgraded["diff"]
    assert password not in upgraded["diff"]
    assert _deployment(api, namespace).status.available_replicas == 3

    assert web.rollback(1).startswith("revision 4 redeploys revision 1; manifest diff between them: none")
    assert _deployment(api, namespace).spec.replicas == 2
    history = web.history()
    assert list(history["revision"]) == [1, 2, 3, 4] and history.iloc[-1]["description"] == "Rollback to 1"

    said = web.uninstall()
    assert said.startswith("uninstalled; manifest and values saved as ")
    manifest_file = next((run / "state").rglob("helm-*-web-r4-uninstall.manifest.yaml"))
    assert manifest_file.stat().st_mode & 0o777 == 0o600
    assert {o["kind"] for o in yaml.safe_load_all(manifest_file.read_text()) if o} == \
        {"Secret", "ConfigMap", "Service", "Deployment"}
    with pytest.raises(ApiException) as gone:
        _deployment(api, namespace)
    assert gone.value.status == 404 and _revisions_stored(api, namespace) == []

    plan.cleanup()
    assert plan.table().set_index("step").loc["restore-release-web", "detail"].endswith(
        "already gone (this run installed it)")
    assert set(plan.table()["status"]) == {"done"}


def test_a_release_that_existed_is_rolled_back_to_its_revision_never_uninstalled(lab, api, namespace, run):
    h = _helm(lab, namespace, run, timeout=60)
    h.install("web", CHART, values={"replicaCount": 1, "config.LOG_LEVEL": "warn"})
    h.install("web", CHART, values={"replicaCount": 1, "config.LOG_LEVEL": "error"})   # theirs: revision 2
    theirs = h.manifest("web")
    plan = _plan(api, "web", namespace)
    web = helm.Release(plan, h, "web")
    assert web.before["revision"] == 2

    web.install(CHART, {"replicaCount": 2})
    web.upgrade(CHART, {"replicaCount": 3})
    assert "revision 5 redeploys revision 3" in web.rollback()
    assert web.uninstall() == "kept: this run did not install it"
    assert h.exists("web") and _deployment(api, namespace).spec.replicas == 2

    values_backup = next((run / "state").rglob("helm-*-web-r2-before.values.yaml"))
    assert values_backup.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(values_backup.read_text()) == {"replicaCount": 1, "config": {"LOG_LEVEL": "error"}}

    plan.cleanup()
    assert h.revision("web") == 6 and h.history("web").iloc[-1]["description"] == "Rollback to 2"
    assert h.values("web") == {"replicaCount": 1, "config": {"LOG_LEVEL": "error"}}
    assert h.manifest("web") == theirs
    assert _deployment(api, namespace).status.available_replicas == 1


def test_a_password_value_reaches_the_cluster_secret_but_no_output(lab, api, namespace, run, capsys):
    canary = "canary-" + secrets.token_hex(8)
    lines = []
    plan = Plan(target="web", kind="release", also=[f"namespace/{namespace}"], cluster=api,
                confirm=f"web, namespace/{namespace}", log=lines.append)
    web = helm.Release(plan, _helm(lab, namespace, run, timeout=60), "web")
    shown = [web.preview(CHART, {"replicaCount": 1}, secrets={"auth.adminPassword": canary}).to_string()]
    installed = web.install(CHART, {"replicaCount": 1}, secrets={"auth.adminPassword": canary})
    assert _password(api, namespace) == canary
    shown += [helm.describe_change(installed), str(installed["values"]), installed["notes"], installed["diff"],
              plan.table().to_string(), web.status().to_string(), "\n".join(lines), capsys.readouterr().out]
    assert not [s for s in shown if canary in s or base64.b64encode(canary.encode()).decode() in s]
    web.uninstall()


def test_an_unschedulable_deployment_is_reported_within_the_timeout(lab, api, namespace, run):
    web = helm.Release(_plan(api, "web", namespace), _helm(lab, namespace, run, timeout=10), "web")
    with pytest.raises(StepFailed) as failed:
        web.install(CHART, {"nodeSelector": {"kubebook.io/no-such-node": "true"}})
    assert isinstance(failed.value.cause, WaitBlocked)
    message = str(failed.value.cause)
    assert "cannot be scheduled" in message and "node affinity/selector" in message
    web.plan.cleanup()
    assert not web.h.exists("web")


def test_a_webhook_refusing_the_pods_is_reported_within_the_timeout(lab, api, namespace, run):
    from denying_webhook import refusing_pods
    with refusing_pods(api, namespace) as refusal:
        web = helm.Release(_plan(api, "web", namespace), _helm(lab, namespace, run, timeout=10), "web")
        with pytest.raises(StepFailed) as failed:
            web.install(CHART, {"replicaCount": 1})
        assert isinstance(failed.value.cause, WaitBlocked)
        assert "cannot create its Pods" in str(failed.value.cause) and refusal in str(failed.value.cause)
        web.plan.cleanup()


def test_rbac_forbidding_the_install_is_said_before_helm_runs(lab, api, namespace, run):
    """A user who may only read: the dry run already says the step will fail, acting refuses at once."""
    pair = lab.pki.client("helm-reader")
    ca = lab.pki.ca_crt.read_bytes()
    path = kubeconfig.write(run / "reader.conf", kubeconfig.build(
        server=lab.server, ca_pem=ca, cert_pem=pair.cert_pem, key_pem=pair.key_pem, cluster="lab", user="helm-reader",
        context="reader"))
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "viewer"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                    "name": "view"},
        "subjects": [{"kind": "User", "name": "helm-reader", "apiGroup": "rbac.authorization.k8s.io"}]})
    reader_api = connect.api_client(path)
    reader = helm.Helm(path, namespace=namespace, home=run / "helm-home", timeout=10)
    quiet = Plan(target="web", kind="release", also=[f"namespace/{namespace}"], cluster=reader_api, log=lambda m: None)
    with pytest.raises(KubebookError, match="RBAC forbids reading release .*secrets is forbidden"):
        helm.Release(quiet, reader, "web")       # view does not read Secrets, where helm keeps releases

    rbac.create_namespaced_role(namespace, {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "reader"},
        "subjects": [{"kind": "User", "name": "helm-reader", "apiGroup": "rbac.authorization.k8s.io"}]})
    _until(lambda: reader.status("web") is None)   # RBAC is read from an informer: the new Role takes a moment

    dry = Plan(target="web", kind="release", also=[f"namespace/{namespace}"], cluster=reader_api, log=lambda m: None)
    helm.Release(dry, reader, "web").install(CHART)
    assert "it will fail: RBAC forbids installing release web" in dry.table().loc[0, "what"]

    acting = Plan(target="web", kind="release", also=[f"namespace/{namespace}"], cluster=reader_api,
                  confirm=f"web, namespace/{namespace}", log=lambda m: None)
    with pytest.raises(StepFailed) as failed:
        helm.Release(acting, reader, "web").install(CHART)
    assert "RBAC forbids installing release web: this kubeconfig's user may not" in str(failed.value.cause)
    assert not helm.Helm(lab.kubeconfig, lab.context, namespace=namespace, home=run / "helm-home").exists("web")


def test_rollback_to_a_missing_revision_is_a_helm_error(lab, namespace, run):
    h = _helm(lab, namespace, run)
    h.install("web", CHART)
    try:
        with pytest.raises(helm.HelmError, match="helm rollback: release has no 9 version"):
            h.rollback("web", 9)
    finally:
        h.uninstall("web")


def _outputs(notebook) -> str:
    """Every cell output of an executed notebook, as text (never its source)."""
    import json
    cells = json.loads(notebook.read_text())["cells"]
    return json.dumps([c.get("outputs", []) for c in cells])


def test_issue_8_values_and_a_password_reach_the_cluster_but_no_output(lab, api, run):
    """``kubebook run helm/release-lifecycle -p set_values '{"auth.adminPassword": ...}'``: the value is
    installed, and neither the notebook, its HTML nor the plan's commands carry it."""
    from kubebook import runner
    namespace = f"helm-r-{uuid.uuid4().hex[:6]}"
    canary, password = "canary-" + secrets.token_hex(8), "pw-" + secrets.token_hex(8)
    book = runner.find("helm/release-lifecycle")
    values = {**runner.lab_values(book, lab), "namespace": namespace, "confirm": f"eladmin-web, namespace/{namespace}",
              "set_values": {"auth.adminPassword": canary, "replicaCount": 1}, "uninstall": False, "cleanup": False}
    try:
        result = runner.run(book, values, output_dir=run / "runs", progress=False)
        assert _password(api, namespace, "eladmin-web") == canary      # it reached the chart's Secret
        outputs = _outputs(result.notebook)
        assert "upgrade --install eladmin-web" in outputs and "-f values.yaml" in outputs
        assert "--set" not in outputs
        for secret in (canary, base64.b64encode(canary.encode()).decode()):
            assert secret not in result.notebook.read_text() and secret not in result.html.read_text()
        assert oct(result.notebook.stat().st_mode & 0o777) == "0o600"

        again = runner.run(book, {**values, "admin_password": password, "set_values": {"replicaCount": 1},
                                  "cleanup": True}, output_dir=run / "runs", progress=False)
        assert password not in again.notebook.read_text() + again.html.read_text()
        assert "rolled back to revision 3" in _outputs(again.notebook)   # the first run's release, put back
        assert _password(api, namespace, "eladmin-web") == canary
    finally:
        if namespace in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}:
            helm.Helm(lab.kubeconfig, lab.context, namespace=namespace, home=run / "h").uninstall("eladmin-web")
            client.CoreV1Api(api).delete_namespace(namespace)
