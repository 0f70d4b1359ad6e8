"""`lab reset` on a lab of its own: what a class changes goes, what it removed comes back, and the
lab still works (the API, its watch cache, the scheduler and kwok agree with etcd afterwards)."""
from __future__ import annotations

import os

import pytest
from kubernetes import client

from kubebook import lab as labs
from kubebook.lab import baseline
from kubebook.waits import wait_for

@pytest.fixture(scope="module")
def own_lab():
    with labs.running(f"pytest-reset-{os.getpid()}", nodes=3, timeout=240, keep=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def after_up(own_lab):
    """What the lab looked like when `up` returned: nodes, namespaces, the `view` ClusterRole's uid."""
    core = client.CoreV1Api(own_lab.api_client())
    return {"nodes": _nodes(core), "namespaces": {n.metadata.name for n in core.list_namespace().items},
            "view": client.RbacAuthorizationV1Api(own_lab.api_client()).read_cluster_role("view").metadata.uid}


def _nodes(core) -> dict[str, tuple[dict, list]]:
    return {n.metadata.name: (n.metadata.labels, [(t.key, t.value, t.effect) for t in n.spec.taints or []])
            for n in core.list_node().items}


def _change_what_a_class_changes(api) -> None:
    core, apps, rbac = client.CoreV1Api(api), client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    core.patch_node("k8s-slave1", {"metadata": {"labels": {"disktype": "ssd"}}})
    core.patch_node("k8s-slave2", {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})
    core.patch_node("k8s-master", {"spec": {"taints": None}})
    core.create_namespace({"metadata": {"name": "student"}})
    wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace="student", timeout=30, what="default SA")
    apps.create_namespaced_deployment("student", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    wait_for(api, "pods", lambda ps: len(ps) == 2 and all(p["status"].get("phase") == "Running" for p in ps.values()),
             namespace="student", timeout=60, what="the student's Pods Running")
    rbac.delete_cluster_role("view")  # something `up` made, gone


@pytest.mark.lab
@pytest.mark.parametrize("full", [False, True], ids=["replay", "snapshot-restore"])
def test_reset_returns_the_lab_to_its_state_after_up_and_it_still_works(own_lab, after_up, full):
    api = own_lab.api_client()
    core, apps, rbac = client.CoreV1Api(api), client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    nodes_before, namespaces_before, view_uid = after_up["nodes"], after_up["namespaces"], after_up["view"]
    pids = {c: p.pid for c, p in own_lab.processes.items()}

    _change_what_a_class_changes(api)
    assert _nodes(core) != nodes_before and "student" in {n.metadata.name for n in core.list_namespace().items}

    lines = []
    done = own_lab.reset(full=full, log=lines.append)
    assert done["method"] == ("snapshot restore" if full else "replay")
    assert any(line.startswith("[reset] lab ") and "is back to its baseline" in line for line in lines)

    assert _nodes(core) == nodes_before
    assert {n.metadata.name for n in core.list_namespace().items} == namespaces_before
    # the watch cache agrees (resourceVersion "0" is served from it, not from etcd)
    assert {n.metadata.name for n in core.list_namespace(resource_version="0").items} == namespaces_before
    assert not apps.list_deployment_for_all_namespaces().items
    assert rbac.read_cluster_role("view").metadata.uid == view_uid
    # certificates and, for a replay, every process were kept
    if not full:
        assert {c: p.pid for c, p in own_lab.refresh().processes.items()} == pids

    # the lab works: a new Pod is scheduled by the real scheduler and run by kwok
    core.create_namespace({"metadata": {"name": "after-reset"}})
    wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace="after-reset", timeout=60, what="default SA")
    core.create_namespaced_pod("after-reset", {"metadata": {"name": "probe"},
                                               "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}})
    pods = wait_for(api, "pods", lambda ps: ps.get("probe", {}).get("status", {}).get("phase") == "Running",
                    namespace="after-reset", timeout=60, what="the new Pod Running")
    assert pods["probe"]["spec"]["nodeName"] in ("k8s-slave1", "k8s-slave2")


def test_replay_plan_deletes_what_up_did_not_leave_and_keeps_heartbeats():
    base = {"/registry/namespaces/default": b"a", "/registry/leases/kube-node-lease/n1": b"old",
            "/registry/events/default/e1": b"e", "/registry/configmaps/default/c": b"c"}
    now = {"/registry/namespaces/default": b"a", "/registry/leases/kube-node-lease/n1": b"new",
           "/registry/events/default/e2": b"e2", "/registry/namespaces/student": b"s",
           "/registry/configmaps/default/c": b"changed"}
    deletes, puts = baseline.replay_plan(base, now)
    assert deletes == ["/registry/events/default/e2", "/registry/namespaces/student"]
    assert puts == ["/registry/configmaps/default/c"]  # the lease and the expired event are not written back


def test_reset_without_a_baseline_says_what_to_do(tmp_path, monkeypatch):
    from kubebook.errors import LabError
    monkeypatch.setenv("KUBEBOOK_LAB_ROOT", str(tmp_path))
    with pytest.raises(LabError, match="has no baseline"):
        labs.get("never-started").reset(log=lambda m: None)
