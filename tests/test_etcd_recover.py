"""Selective namespace recovery, end to end on the lab: build, snapshot, delete, recover, compare."""
from __future__ import annotations

import pytest

import etcd_plans
from conftest import cluster_objects, remove_new_objects
from kubebook import connect
from kubebook.etcd import decode, recover, rehearsal

pytestmark = pytest.mark.lab

NAMESPACE = "recover-test"


def staged(lab, namespace: str):
    """A rehearsal's plan, confirmed, with the disaster staged: the snapshot taken, the namespace gone."""
    also = rehearsal.recovery_scope(connect.target(lab=lab.name), namespace)
    plan = etcd_plans.confirmed(lab, namespace, also=also)
    return plan, rehearsal.stage_recovery(plan, namespace)
KINDS = {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding",
         "PersistentVolumeClaim", "CronJob", "AppConfig"}


@pytest.fixture(scope="module")
def recovered(lab, api):
    before = cluster_objects(api)
    plan, taken = staged(lab, NAMESPACE)
    originals = {(r.kind, r.object["metadata"]["name"]): r.object for r in decode.read_snapshot(taken)
                 if r.object and r.object["metadata"].get("namespace") == NAMESPACE}
    items = recover.compare_snapshot(api, taken, NAMESPACE)
    before_actions = {(i.kind, i.name): i.action for i in items}
    recover.restore(plan, items, rehearse=True)
    settled = recover.settled(plan, items)
    yield {"snapshot": taken, "originals": originals, "before": before_actions, "items": items,
           "settled": settled, "cluster": recover.cluster_for(plan.api), "plan": plan}
    plan.cleanup()
    remove_new_objects(api, before)


def test_every_kind_was_absent_and_is_created(recovered):
    before = recovered["before"]
    for kind in KINDS:
        assert any(k == kind and a == "create" for (k, _), a in before.items()), kind
    results = {(i.kind, i.name): i.result for i in recovered["items"] if i.action == "create"}
    assert all(r == "created" for r in results.values()), results


def test_specs_and_data_equal_the_originals(recovered):
    cluster = recovered["cluster"]
    for item in recovered["items"]:
        if item.kind not in KINDS or item.action == "skip":
            continue
        live = cluster.get(item)
        assert live is not None, f"{item.kind} {item.name} missing"
        want, have = recover.comparable(recovered["originals"][(item.kind, item.name)]), recover.comparable(live)
        for field in ("spec", "data", "rules", "roleRef", "subjects", "type"):
            assert want.get(field) == have.get(field), f"{item.kind} {item.name}: {field} differs"
    secret = next(i for i in recovered["items"] if i.kind == "Secret" and i.name == "mysql-password")
    assert cluster.get(secret)["data"] == recovered["originals"][("Secret", "mysql-password")]["data"]


def test_claim_binds_to_its_restored_volume_and_the_deployment_is_available_again(recovered):
    rows = {r["name"]: r for r in recovered["settled"].to_dict("records")}
    assert rows["mysql-data"] == {"kind": "PersistentVolumeClaim", "namespace": NAMESPACE, "name": "mysql-data",
                                  "recorded": "Bound", "now": "Bound", "detail": f"{NAMESPACE}-mysql-data"}
    assert rows["eladmin-web"]["kind"] == "Deployment"
    assert int(rows["eladmin-web"]["now"].split()[0]) >= int(rows["eladmin-web"]["recorded"].split()[0])


def test_snapshots_are_private(recovered):
    from pathlib import Path
    snapshot = Path(recovered["snapshot"])
    assert snapshot.stat().st_mode & 0o777 == 0o600
    assert snapshot.with_suffix(".json").stat().st_mode & 0o777 == 0o600
    assert snapshot.parent.stat().st_mode & 0o777 == 0o700


def test_the_rehearsal_records_what_its_clean_up_removes(recovered):
    created = {(r.kind, r.name) for r in recovered["plan"].record.created}
    assert ("Namespace", NAMESPACE) in created and ("PersistentVolume", f"{NAMESPACE}-mysql-data") in created
    kinds = [r.kind for r in recovered["plan"].record.created]
    assert kinds.index("Namespace") > kinds.index("PersistentVolume"), "the namespace (and its claims) go first"


def test_controller_children_are_skipped_not_restored(recovered):
    reasons = {i.kind: i.reason for i in recovered["items"] if i.action == "skip"}
    assert "recreated by its Deployment" in reasons["ReplicaSet"]
    assert "recreated by its ReplicaSet" in reasons["Pod"]
    assert reasons["Event"] == recover.NEVER_RESTORED["Event"]


def test_second_run_changes_nothing(recovered, api):
    items, cluster = recover.plan_from_snapshot(recovered["snapshot"], NAMESPACE, api)
    changed = [(i.kind, i.name, i.action, i.diff) for i in items if i.action not in ("unchanged", "skip")]
    assert changed == []
    recover.apply(items, cluster, progress=False)
    assert all(i.result == "nothing to do" for i in items)
    assert recover.scope(connect.target(lab=recovered["plan"].cluster.lab.name), NAMESPACE,
                         snapshot=recovered["snapshot"]) == [], "nothing cluster-scoped is left to write"


def test_a_rehearsal_refuses_a_namespace_it_did_not_make(lab, api):
    from kubernetes import client
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "recover-not-a-drill"}})
    try:
        with pytest.raises(rehearsal.RehearsalRefused, match="was not made by a kubebook rehearsal"):
            recover.scope(connect.target(lab=lab.name), "recover-not-a-drill", rehearse=True)
        assert core.read_namespace("recover-not-a-drill").status.phase == "Active"
    finally:
        core.delete_namespace("recover-not-a-drill")


def test_a_rehearsal_refuses_a_cluster_that_is_not_a_lab(lab, api):
    target = connect.target(kubeconfig=str(lab.kubeconfig))  # the same cluster, but not named as a lab
    with pytest.raises(Exception, match="rehearses on a kubebook lab only"):
        recover.scope(target, "recover-elsewhere", rehearse=True)


def test_differing_object_is_kept_unless_overwrite(recovered, api):
    from kubernetes import client
    core = client.CoreV1Api(api)
    core.patch_namespaced_config_map("eladmin-config", NAMESPACE, {"data": {"DB_HOST": "changed"}})
    items, cluster = recover.plan_from_snapshot(recovered["snapshot"], NAMESPACE, api, include_kinds=["ConfigMap"])
    cm = next(i for i in items if i.name == "eladmin-config")
    assert cm.action == "differs" and "-  DB_HOST: changed" in cm.diff
    recover.apply(items, cluster, progress=False)
    assert core.read_namespaced_config_map("eladmin-config", NAMESPACE).data["DB_HOST"] == "changed"
    recover.apply(items, cluster, overwrite=True, progress=False)
    assert core.read_namespaced_config_map("eladmin-config", NAMESPACE).data["DB_HOST"] == "mysql"
    kinds = {i.kind for i in items if i.action != "skip"}
    assert kinds <= {"ConfigMap", "Namespace", "CustomResourceDefinition"}


def test_namespace_missing_from_snapshot_is_an_error(recovered):
    with pytest.raises(recover.RecoveryError, match="not in this snapshot"):
        recover.select(decode.read_snapshot(recovered["snapshot"]), "no-such-namespace")


def test_cleaning_rules_on_recorded_objects():
    svc = recover.clean({"kind": "Service", "metadata": {"name": "a", "uid": "u", "resourceVersion": "1"},
                         "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                                  "ports": [{"port": 80, "nodePort": 30080}]}, "status": {}})
    assert svc == {"kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}
    headless = recover.clean({"kind": "Service", "metadata": {"name": "h"}, "spec": {"clusterIP": "None"}})
    assert headless["spec"]["clusterIP"] == "None"
    pvc = recover.clean({"kind": "PersistentVolumeClaim", "metadata": {"name": "c", "annotations": {
        "pv.kubernetes.io/bind-completed": "yes", "team": "db"}, "finalizers": ["kubernetes.io/pvc-protection"]}})
    assert pvc["metadata"] == {"name": "c", "annotations": {"team": "db"}}


def test_a_rejected_object_is_reported_and_the_rest_still_applied(api):
    cluster = recover.Cluster(api)
    good = recover.Item(kind="ConfigMap", name="apply-ok", namespace="default", api_version="v1", action="create",
                        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "apply-ok"},
                              "data": {"k": "v"}}, rank=11)
    bad = recover.Item(kind="ConfigMap", name="Not_A_Valid_Name", namespace="default", api_version="v1",
                       action="create", body={"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "Not_A_Valid_Name"}}, rank=11)
    recover.apply([bad, good], cluster, progress=False)
    assert good.result == "created"
    assert bad.result.startswith("failed: 422") and "Not_A_Valid_Name" in bad.result
