"""Faults and diagnoses on a lab of this module's own (components are stopped and started by PID):

- etcd killed in the middle of a snapshot, the apiserver killed and restarted in the middle of a
  namespace recovery, the apiserver gone for longer than the recovery waits: each ends in a
  completed operation or one line that says how to resume, never a silent half state, and a
  second run completes;
- waits that cannot succeed say why within seconds (a claim whose volume is gone, a volume still
  reserved for the deleted claim, a Deployment that cannot be scheduled, a CRD whose names are
  taken, an unavailable APIService under a stuck namespace), and a claim that was Pending in the
  snapshot is not waited on to bind.
"""
from __future__ import annotations

import os

import threading
import time
from pathlib import Path

import pytest
from kubernetes import client

import etcd_plans
from conftest import until_pods_refused
from kubebook import connect, etcd, lab as labs
from kubebook.etcd import decode, recover, rehearsal, snapshot, stuck_namespace
from kubebook.objects import clean
from kubebook.plan import Plan, StepFailed
from kubebook.waits import WaitBlocked, wait_for

pytestmark = pytest.mark.lab

PATIENCE = 10.0  # a diagnosis must come within this many seconds


@pytest.fixture(scope="module")
def fault_lab():
    with labs.running(f"etcd-fault-{os.getpid()}", nodes=2, timeout=300, keep=False) as lab:
        yield lab


@pytest.fixture
def api(fault_lab):
    return fault_lab.api_client()


def _target(lab):
    return connect.target(lab=lab.name)


def _drill(lab, namespace: str):
    """A confirmed rehearsal plan with its disaster staged; returns (plan, snapshot path)."""
    also = rehearsal.recovery_scope(_target(lab), namespace)
    plan = etcd_plans.confirmed(lab, namespace, also=also)
    return plan, rehearsal.stage_recovery(plan, namespace)


def _restart_apiserver(lab, after: float) -> threading.Thread:
    def restart():
        time.sleep(after)
        lab.start_component("kube-apiserver")
        lab.wait_ready("kube-apiserver", timeout=120)
    thread = threading.Thread(target=restart)
    thread.start()
    return thread


# ---- etcd killed mid-snapshot ---------------------------------------------------------------
def test_etcd_killed_mid_snapshot_keeps_nothing_says_so_and_the_next_run_completes(fault_lab, tmp_path):
    with etcd.Etcd(**fault_lab.etcd_params()) as client_:
        for i in range(16):  # a database of ~16 MB: hundreds of 32 KiB chunks, the stream outlives the first
            client_.put(f"/kubebook-fault/pad-{i}", b"x" * 1_000_000)
        killed = []

        def kill_etcd(received: int) -> None:
            # SIGKILL at once: on SIGTERM etcd stops gracefully, which lets the open stream finish
            # (the client's transport keeps reading while this callback blocks), so nothing would fail
            if not killed:
                killed.append(received)
                fault_lab.stop_component("etcd", kill=True)

        try:
            with pytest.raises(snapshot.SnapshotError) as failure:
                snapshot.save(client_, tmp_path, progress=False, on_chunk=kill_etcd)
        finally:  # the module's other tests need etcd whatever happened here
            fault_lab.start_component("etcd")
            fault_lab.wait_ready("etcd")
    message = str(failure.value)
    assert killed and "\n" not in message
    assert "nothing was kept" in message and "run" in message and "again" in message
    assert list(tmp_path.iterdir()) == [], "no .db, no sidecar, no .partial"

    with etcd.Etcd(**fault_lab.etcd_params()) as client_:
        again = snapshot.save(client_, tmp_path, progress=False)
        client_.client().delete_prefix("/kubebook-fault/")
    assert snapshot.describe(again.path).total_keys > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(again.path).name, again.sidecar.name])
    wait_for(fault_lab.api_client(), "namespaces", lambda ns: "default" in ns, timeout=60,
             what="the apiserver back on the restarted etcd")


# ---- the apiserver killed mid-recovery --------------------------------------------------------
def test_apiserver_restarted_mid_recovery_is_waited_out_and_the_recovery_completes(fault_lab, api):
    plan, taken = _drill(fault_lab, "fault-restart")
    items = recover.compare_snapshot(api, taken, "fault-restart")
    restarted: list[threading.Thread] = []

    def kill_after_the_namespace(item) -> None:
        if item.kind == "Namespace" and not restarted:
            fault_lab.stop_component("kube-apiserver", timeout=1)  # TERM, then KILL: killed, not drained
            restarted.append(_restart_apiserver(fault_lab, after=3))

    table = recover.restore(plan, items, rehearse=True, timeout=120, on_applied=kill_after_the_namespace)
    assert restarted, "the apiserver was stopped in the middle"
    restarted[0].join()
    results = dict(zip(table["name"] + "/" + table["kind"], table["result"]))
    assert not [r for r in results.values() if r.startswith("failed")], results
    assert plan.table().set_index("step").loc["apply", "status"] == "done"
    settled = recover.settled(plan, items, timeout=120)
    assert settled.set_index("name").loc["mysql-data", "now"] == "Bound"

    again = recover.compare_snapshot(api, taken, "fault-restart")
    assert {i.action for i in again} <= {"unchanged", "skip"}, "a second run has nothing left to do"
    plan.cleanup()


def test_apiserver_gone_longer_than_the_wait_fails_in_one_line_and_a_second_run_finishes(fault_lab, api):
    plan, taken = _drill(fault_lab, "fault-gone")
    items = recover.compare_snapshot(api, taken, "fault-gone")
    stopped = []

    def kill_after_the_namespace(item) -> None:
        if item.kind == "Namespace" and not stopped:
            stopped.append(fault_lab.stop_component("kube-apiserver", timeout=1))  # killed, not drained

    try:
        with pytest.raises(StepFailed) as failure:
            recover.restore(plan, items, rehearse=True, timeout=5, on_applied=kill_after_the_namespace)
    finally:
        fault_lab.start_component("kube-apiserver")
        fault_lab.wait_ready("kube-apiserver", timeout=120)
    message = str(failure.value)
    assert "\n" not in message and "not applied" in message and "run the recovery again" in message, message
    assert plan.table().set_index("step").loc["apply", "status"] == "failed"

    second = recover.compare_snapshot(api, taken, "fault-gone")
    actions = {i.kind: i.action for i in second}
    assert actions["Namespace"] == "unchanged" and "create" in actions.values(), "half done, and it shows"
    recover.restore(plan, second, rehearse=True, timeout=60)
    assert recover.settled(plan, second, timeout=120).set_index("name").loc["mysql-data", "now"] == "Bound"
    assert {i.action for i in recover.compare_snapshot(api, taken, "fault-gone")} <= {"unchanged", "skip"}
    plan.cleanup()


# ---- waits that diagnose ----------------------------------------------------------------------
def _blocked_quickly(action, match: str) -> str:
    started = time.monotonic()
    with pytest.raises((StepFailed, WaitBlocked), match=match) as failure:
        action()
    took = time.monotonic() - started
    assert took < PATIENCE, f"the reason came after {took:.1f}s"
    return str(failure.value)


def test_a_claim_whose_volume_is_gone_is_named_within_seconds(fault_lab, api):
    plan, taken = _drill(fault_lab, "diag-no-volume")
    items = recover.compare_snapshot(api, taken, "diag-no-volume", exclude_kinds=["PersistentVolume"])
    recover.restore(plan, items, rehearse=True)
    message = _blocked_quickly(lambda: recover.settled(plan, items, timeout=60), "does not exist and was not restored")
    assert "diag-no-volume-mysql-data" in message
    plan.cleanup()


def test_a_volume_still_reserved_for_the_deleted_claim_is_named_within_seconds(fault_lab, api):
    plan, taken = _drill(fault_lab, "diag-reserved")
    # the volume as `kubectl delete namespace` leaves a Retain volume: still naming the deleted claim's uid
    volume = next(r.object for r in decode.read_snapshot(taken) if r.kind == "PersistentVolume"
                  and r.object["metadata"]["name"] == "diag-reserved-mysql-data")
    core = client.CoreV1Api(api)
    core.create_persistent_volume(clean(volume))
    try:
        items = recover.compare_snapshot(api, taken, "diag-reserved")
        assert {i.kind: i.action for i in items}["PersistentVolume"] == "unchanged"
        recover.restore(plan, items, rehearse=True)
        message = _blocked_quickly(lambda: recover.settled(plan, items, timeout=60), "still reserved for the deleted")
        assert "claimRef/uid" in message
    finally:
        plan.cleanup()
        core.delete_persistent_volume("diag-reserved-mysql-data")


def _snapshot_of(lab, api, namespace: str, bodies: list[dict], ready) -> Path:
    """A namespace with ``bodies``, snapshotted once ``ready(api)`` holds, then deleted."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace, "labels": {rehearsal.REHEARSAL_LABEL: "test"}}})
    wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=namespace, timeout=60, what="namespace ready")
    for body in bodies:
        recover.cluster_for(api).apply(recover.Item(kind=body["kind"], name=body["metadata"]["name"],
                                                    namespace=namespace, api_version=body["apiVersion"],
                                                    body=body), force=True)
    ready(api)
    with etcd.Etcd(**lab.etcd_params()) as client_:
        taken = Path(snapshot.save(client_, snapshot.resolve_dir("", _target(lab)), progress=False).path)
    core.delete_namespace(namespace)
    wait_for(api, "namespaces", lambda ns: namespace not in ns, timeout=120, what=f"{namespace} gone")
    return taken


def _plan_for(lab, namespace: str) -> Plan:
    return etcd_plans.confirmed(lab, namespace)


def test_a_claim_pending_in_the_snapshot_is_not_waited_on_to_bind(fault_lab, api):
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "never-bound"},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "kubebook-no-such-class",
                      "resources": {"requests": {"storage": "1Gi"}}}}
    taken = _snapshot_of(fault_lab, api, "diag-pending", [claim], lambda api: wait_for(
        api, "persistentvolumeclaims", lambda c: (c.get("never-bound", {}).get("status") or {}).get("phase") ==
        "Pending", namespace="diag-pending", timeout=60, what="claim Pending"))
    plan = _plan_for(fault_lab, "diag-pending")
    items = recover.compare_snapshot(api, taken, "diag-pending")
    recover.restore(plan, items)
    started = time.monotonic()
    settled = recover.settled(plan, items, timeout=60).set_index("name")
    assert time.monotonic() - started < PATIENCE
    assert (settled.loc["never-bound", "recorded"], settled.loc["never-bound", "now"]) == ("Pending", "Pending")
    client.CoreV1Api(api).delete_namespace("diag-pending")


def test_a_deployment_that_cannot_be_scheduled_is_named_within_seconds(fault_lab, api):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    taken = _snapshot_of(fault_lab, api, "diag-unschedulable", [deployment], lambda api: wait_for(
        api, "deployments", lambda d: (d.get("web", {}).get("status") or {}).get("availableReplicas") == 1,
        namespace="diag-unschedulable", timeout=120, what="web available"))
    core = client.CoreV1Api(api)
    for node in fault_lab.nodes:
        core.patch_node(node, {"spec": {"unschedulable": True}})
    try:
        plan = _plan_for(fault_lab, "diag-unschedulable")
        items = recover.compare_snapshot(api, taken, "diag-unschedulable")
        recover.restore(plan, items)
        message = _blocked_quickly(lambda: recover.settled(plan, items, timeout=60), "cannot be scheduled")
        assert "1 available replica(s) in the snapshot" in message and "unschedulable" in message
    finally:
        for node in fault_lab.nodes:
            core.patch_node(node, {"spec": {"unschedulable": None}})
        core.delete_namespace("diag-unschedulable")


def test_a_crd_whose_names_are_taken_is_named_within_seconds(api):
    ext = client.ApiextensionsV1Api(api)

    def crd(plural: str) -> dict:
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.h5.kubebook.io"},
                "spec": {"group": "h5.kubebook.io", "scope": "Namespaced",
                         "names": {"plural": plural, "singular": plural[:-1], "kind": "Gadget"},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                             "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    ext.create_custom_resource_definition(crd("gadgets"))
    try:
        recover.wait_established(api, ["gadgets.h5.kubebook.io"], 60)
        ext.create_custom_resource_definition(crd("widgets"))  # the same kind in the same group
        message = _blocked_quickly(lambda: recover.wait_established(api, ["widgets.h5.kubebook.io"], 60),
                                   "names not accepted")
        assert "widgets.h5.kubebook.io" in message
    finally:
        for name in ("widgets.h5.kubebook.io", "gadgets.h5.kubebook.io"):
            try:
                ext.delete_custom_resource_definition(name)
            except client.ApiException:
                pass


def test_an_unavailable_apiservice_under_a_stuck_namespace_is_named_within_seconds(fault_lab, api):
    stuck_namespace.rehearsal(etcd_plans.confirmed(fault_lab, "diag-apiservice"), "diag-apiservice")
    registration = client.ApiregistrationV1Api(api)
    registration.create_api_service({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.h5.kubebook.io"},
        "spec": {"group": "h5.kubebook.io", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "insecureSkipTLSVerify": True, "service": {"namespace": "kube-system", "name": "no-such-service"}}})
    try:
        wait_for(api, "namespaces", lambda ns: not stuck_namespace.unavailable_apiservices(api).empty, timeout=60,
                 what="the APIService marked unavailable")
        plan = etcd_plans.confirmed(fault_lab, "diag-apiservice")
        message = _blocked_quickly(lambda: stuck_namespace.fix(plan, "diag-apiservice", timeout=60),
                                   "APIService v1.h5.kubebook.io is unavailable")
        assert "make it available or delete it" in message
    finally:
        registration.delete_api_service("v1.h5.kubebook.io")
    done = stuck_namespace.fix(etcd_plans.confirmed(fault_lab, "diag-apiservice"), "diag-apiservice")
    assert set(done["status"]) == {"done"}


def test_a_replica_set_refused_pods_is_named_within_seconds(fault_lab, api):
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    taken = _snapshot_of(fault_lab, api, "diag-quota", [deployment], lambda api: wait_for(
        api, "deployments", lambda d: (d.get("web", {}).get("status") or {}).get("availableReplicas") == 1,
        namespace="diag-quota", timeout=120, what="web available"))
    core = client.CoreV1Api(api)

    def quota_once_the_namespace_is_back(item) -> None:  # someone's quota arrives before the workload
        if item.kind == "Namespace":
            core.create_namespaced_resource_quota("diag-quota", {"metadata": {"name": "no-pods"},
                                                                 "spec": {"hard": {"pods": "0"}}})
            # quota admission is eventually consistent (the apiserver's quota informer, and its cached
            # "no quota here" answer from the Pods made before the snapshot): wait until it refuses
            until_pods_refused(api, "diag-quota", "exceeded quota", timeout=30, what="the quota")
    plan = _plan_for(fault_lab, "diag-quota")
    items = recover.compare_snapshot(api, taken, "diag-quota")
    recover.restore(plan, items, on_applied=quota_once_the_namespace_is_back)
    message = _blocked_quickly(lambda: recover.settled(plan, items, timeout=60), "FailedCreate")
    assert "exceeded quota" in message
    core.delete_namespace("diag-quota")


def test_a_watch_that_breaks_says_so_within_seconds(fault_lab):
    with etcd.Etcd(**fault_lab.etcd_params()) as client_:
        watch = client_.watch_prefix("/kubebook-watch/")
        plan = etcd_plans.confirmed(fault_lab, "k8s-master", kind="etcd member")
        fault_lab.stop_component("etcd")
        try:
            _blocked_quickly(lambda: watch.collect(plan, events=3, timeout=60), "the watch on /kubebook-watch/ broke")
        finally:
            fault_lab.start_component("etcd")
            fault_lab.wait_ready("etcd")
