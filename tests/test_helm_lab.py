"""A release's whole life on the lab with the real helm binary, checked through the Kubernetes API."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebook import helm
from kubebook.plan import Plan
from kubebook.scheduling import workloads

pytestmark = pytest.mark.lab

NAMESPACE = "helm-lab-test"
RELEASE = "web"
CHART = helm.CHARTS / "eladmin-web"


@pytest.fixture(scope="module")
def h(lab, api, tmp_path_factory):
    """Helm on the lab, in a namespace of its own that is deleted afterwards."""
    workloads.ensure_namespace(api, NAMESPACE)
    yield helm.Helm(lab.kubeconfig, lab.context, namespace=NAMESPACE, home=tmp_path_factory.mktemp("helm-home"),
                    timeout=120)
    workloads.delete_namespace(api, NAMESPACE)


def _revisions_stored(api) -> list[int]:
    """The revisions helm keeps, read from its storage Secrets (owner=helm, name=<release>)."""
    secrets = client.CoreV1Api(api).list_namespaced_secret(NAMESPACE, label_selector=f"owner=helm,name={RELEASE}")
    return sorted(int(s.metadata.labels["version"]) for s in secrets.items)


def _deployment(api):
    return client.AppsV1Api(api).read_namespaced_deployment(f"{RELEASE}-eladmin-web", NAMESPACE)


def _password(api) -> str:
    secret = client.CoreV1Api(api).read_namespaced_secret(f"{RELEASE}-eladmin-web", NAMESPACE)
    return base64.b64decode(secret.data["admin-password"]).decode()


def test_dry_run_changes_nothing(h, api):
    plan = Plan(target=RELEASE, confirm="", kind="release", log=lambda m: None)
    assert h.install(RELEASE, CHART, set_values={"replicaCount": 2}, plan=plan) is None
    preview = h.dry_run(RELEASE, CHART, set_values={"replicaCount": 2})
    assert preview["revision"] == 1 and preview["values"] == {"replicaCount": 2}
    assert "Deployment" in set(helm.objects_table(preview["manifest"])["kind"])
    assert not h.exists(RELEASE) and _revisions_stored(api) == []


def test_install_upgrade_rollback_uninstall(h, api, tmp_path):
    plan = Plan(target=RELEASE, confirm=RELEASE, kind="release", log=lambda m: None)

    installed = h.install(RELEASE, CHART, set_values={"replicaCount": 2, "config.LOG_LEVEL": "info"}, plan=plan)
    assert installed["revision"] == 1 and installed["previous_manifest"] is None
    ready = helm.wait_ready(api, NAMESPACE, RELEASE, timeout=120)
    assert list(ready["available"]) == [2]
    password = _password(api)
    assert len(password) == 20
    assert list(h.releases()["name"]) == [RELEASE]
    assert h.status(RELEASE)["status"] == "deployed"

    same = h.install(RELEASE, CHART, set_values={"replicaCount": 2, "config.LOG_LEVEL": "info"}, plan=plan)
    assert same["revision"] == 2 and not same["changed"] and "no manifest change" in helm.describe_change(same)
    assert _password(api) == password          # lookup kept the generated password

    upgraded = h.install(RELEASE, CHART, set_values={"replicaCount": 3, "config.LOG_LEVEL": "debug"}, plan=plan,
                         step="upgrade")
    assert upgraded["revision"] == 3 and upgraded["changed"]
    assert "+  replicas: 3" in upgraded["diff"] and "+  LOG_LEVEL: debug" in upgraded["diff"]
    assert password not in upgraded["diff"]
    helm.wait_ready(api, NAMESPACE, RELEASE, timeout=120)
    assert _deployment(api).spec.replicas == 3
    cm = client.CoreV1Api(api).read_namespaced_config_map(f"{RELEASE}-eladmin-web", NAMESPACE)
    assert cm.data["LOG_LEVEL"] == "debug"
    assert _password(api) == password

    assert h.rollback(RELEASE, 1, plan=plan) == 4
    helm.wait_ready(api, NAMESPACE, RELEASE, timeout=120)
    assert _deployment(api).spec.replicas == 2
    history = h.history(RELEASE)
    assert list(history["revision"]) == [1, 2, 3, 4]
    assert history.iloc[-1]["description"] == "Rollback to 1" and history.iloc[-1]["status"] == "deployed"
    assert h.diff_revisions(RELEASE, 1, 4) == ""
    assert _revisions_stored(api) == [1, 2, 3, 4]
    assert h.values(RELEASE, revision=3) == {"replicaCount": 3, "config": {"LOG_LEVEL": "debug"}}

    saved = h.backup(RELEASE, tmp_path / "backup", plan=plan)
    manifest_file = Path(saved)
    assert manifest_file.parent == tmp_path / "backup"
    assert manifest_file.stat().st_mode & 0o777 == 0o600
    kinds = {o["kind"] for o in yaml.safe_load_all(manifest_file.read_text()) if o}
    assert kinds == {"Secret", "ConfigMap", "Service", "Deployment"}
    values_file = manifest_file.with_name(manifest_file.name.replace(".manifest.yaml", ".values.yaml"))
    assert yaml.safe_load(values_file.read_text()) == {"replicaCount": 2, "config": {"LOG_LEVEL": "info"}}

    assert h.uninstall(RELEASE, plan=plan) == "uninstalled"
    assert h.uninstall(RELEASE, plan=plan) == "already gone"
    with pytest.raises(ApiException) as gone:
        _deployment(api)
    assert gone.value.status == 404
    assert _revisions_stored(api) == [] and h.history(RELEASE).empty
    assert list(plan.table()["step"]) == [f"{s}-{RELEASE}" for s in
                                          ("install", "install", "upgrade", "rollback", "backup", "uninstall", "uninstall")]
    assert set(plan.table()["status"]) == {"done"}


def test_rollback_to_a_missing_revision_is_a_helm_error(h):
    h.install(RELEASE, CHART)
    try:
        with pytest.raises(helm.HelmError, match="helm rollback: release has no 9 version"):
            h.rollback(RELEASE, 9)
    finally:
        h.uninstall(RELEASE)
