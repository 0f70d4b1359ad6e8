"""The plan's ownership rules on a real cluster: what existed before survives every step.

Each test plays two parties: someone else's objects made with the plain client, and a run's
Plan acting on the same names.
"""
from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from conftest import new_run_identity
from kubebook import ownership, paths, waits
from kubebook.objects import Ref, objects
from kubebook.plan import Plan, StepFailed

pytestmark = pytest.mark.lab


@pytest.fixture
def namespace(api):
    name = f"plan-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def run(run, monkeypatch):
    """Calling it starts another run (a fresh identity), as a second kernel would; returns its id."""
    return lambda: new_run_identity(monkeypatch)


def _deployment(name: str, replicas: int, image: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def _plan(namespace, api, **kw) -> Plan:
    return Plan(target=namespace, kind="namespace", confirm=namespace, cluster=api, log=lambda m: None, **kw)


def test_apply_over_someone_elses_object_backs_it_up_and_restores_it(api, namespace, run):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("web", 2, "theirs:1"))
    run()
    plan = _plan(namespace, api)
    plan.apply(_deployment("web", 5, "ours:2"), namespace)
    during = apps.read_namespaced_deployment("web", namespace)
    assert (during.spec.replicas, during.spec.template.spec.containers[0].image) == (5, "ours:2")
    backup = plan.record.changed[Ref("Deployment", "web", namespace)].backup
    assert backup.stat().st_mode & 0o777 == 0o600 and "theirs:1" in backup.read_text()
    plan.cleanup()
    after = apps.read_namespaced_deployment("web", namespace)
    assert (after.spec.replicas, after.spec.template.spec.containers[0].image) == (2, "theirs:1")
    assert ownership.CREATED_BY not in (after.metadata.annotations or {})


def test_create_keeps_what_exists_and_cleanup_deletes_only_what_the_run_made(api, namespace, run):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"}, "data": {"a": "1"}})
    run()
    plan = _plan(namespace, api)
    plan.create({"kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"a": "ours"}}, namespace)
    plan.create({"kind": "ConfigMap", "metadata": {"name": "ours"}, "data": {"b": "2"}}, namespace)
    mine = core.read_namespaced_config_map("ours", namespace)
    assert mine.metadata.annotations[ownership.CREATED_BY] == plan.record.run
    plan.cleanup()
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert "theirs" in names and "ours" not in names
    assert core.read_namespaced_config_map("theirs", namespace).data == {"a": "1"}


def test_a_later_run_does_not_delete_what_an_earlier_run_made(api, namespace, run):
    core = client.CoreV1Api(api)
    run()
    first = _plan(namespace, api)
    first.create({"kind": "ConfigMap", "metadata": {"name": "left-behind"}, "data": {}}, namespace)
    run()
    second = _plan(namespace, api)
    second.delete(Ref("ConfigMap", "left-behind", namespace))
    second.cleanup()
    assert core.read_namespaced_config_map("left-behind", namespace)
    assert second.objects()["after"].tolist()[0] == "kept: this run did not create it"


def test_deleting_someone_elses_object_needs_a_backup_and_can_be_undone(api, namespace, run):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"}, "data": {"a": "1"}})
    run()
    plan = _plan(namespace, api)
    plan.delete(Ref("ConfigMap", "theirs", namespace), existing="backup", restore=True)
    assert not [c for c in core.list_namespaced_config_map(namespace).items if c.metadata.name == "theirs"]
    plan.cleanup()
    assert core.read_namespaced_config_map("theirs", namespace).data == {"a": "1"}


def test_a_failed_backup_stops_the_change(api, namespace, run):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"}, "data": {"a": "1"}})
    run_id = run()
    paths.backups_root().mkdir(parents=True, exist_ok=True)
    (paths.backups_root() / run_id).write_text("a file where the backup directory should go")
    plan = _plan(namespace, api)
    with pytest.raises(StepFailed, match="backup of ConfigMap .* failed"):
        plan.apply({"kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"a": "ours"}}, namespace)
    assert core.read_namespaced_config_map("theirs", namespace).data == {"a": "1"}


def test_node_changes_are_put_back_field_by_field(api, lab, run):
    node = lab.nodes[-1]
    core = client.CoreV1Api(api)
    before = core.read_node(node)
    run()
    plan = Plan(target=node, kind="node", confirm=node, cluster=api, log=lambda m: None)
    plan.modify(Ref("Node", node), lambda n: {"metadata": {"labels": {"plan-test": "yes"}},
                                               "spec": {"taints": [{"key": "plan-test", "effect": "NoSchedule"}],
                                                        "unschedulable": True}},
                description="label, taint and cordon")
    assert core.read_node(node).spec.unschedulable
    plan.cleanup()
    after = core.read_node(node)
    assert after.metadata.labels == before.metadata.labels and not after.spec.unschedulable

    def taints(n) -> list[tuple]:
        return sorted((t["key"], t["effect"]) for t in (n.get("spec") or {}).get("taints") or [])
    wanted = sorted((t.key, t.effect) for t in before.spec.taints or [])
    # the node controller may still be adding its mirror of the cordon; it must be gone once it settles
    waits.wait_for(api, "nodes", lambda nodes: taints(nodes[node]) == wanted, timeout=30,
                   field_selector=f"metadata.name={node}", what=f"{node}'s taints as before")


def test_the_dry_run_lists_every_object_and_what_would_become_of_it(api, namespace, run):
    client.CoreV1Api(api).create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"}})
    run()
    plan = Plan(target=namespace, kind="namespace", cluster=api, log=lambda m: None)
    plan.apply({"kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"x": "1"}}, namespace)
    plan.create({"kind": "ConfigMap", "metadata": {"name": "new"}}, namespace)
    table = plan.objects().set_index("name")
    assert table.loc["theirs", "before"] == "existed before this run"
    assert table.loc["theirs", "after"].startswith("backed up, replaced")
    assert table.loc["new", "after"] == "created (deleted at clean-up)"
    assert objects(api).get(Ref("ConfigMap", "new", namespace)) is None


def test_a_run_that_stopped_half_way_is_undone_from_its_record(api, lab, namespace, run, capsys):
    from kubebook import cli
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"}, "data": {"a": "1"}})
    run_id = run()
    plan = _plan(namespace, api)
    plan.create({"kind": "ConfigMap", "metadata": {"name": "made"}}, namespace)
    plan.apply({"kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"a": "changed"}}, namespace)
    # ... and the run stops here, before its clean-up
    assert cli.main(["cleanup", run_id, "--lab", lab.name]) == 0  # a dry run: nothing happens
    assert core.read_namespaced_config_map("made", namespace)
    assert cli.main(["cleanup", run_id, "--lab", lab.name, "--confirm", run_id]) == 2  # the namespace unnamed
    assert cli.main(["cleanup", run_id, "--lab", lab.name, "--confirm", f"{run_id}, namespace/{namespace}"]) == 0
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert "made" not in names and core.read_namespaced_config_map("theirs", namespace).data == {"a": "1"}
    assert "namespace/" in capsys.readouterr().err


def test_a_deletion_held_by_a_finalizer_says_so_instead_of_timing_out(api, namespace):
    from kubebook.waits import WaitBlocked, wait_deleted
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "held",
                                                                    "finalizers": ["kubebook.io/test-hold"]}})
    core.delete_namespaced_service_account("held", namespace)
    try:
        with pytest.raises(WaitBlocked, match="finalizers kubebook.io/test-hold still hold it"):
            wait_deleted(api, Ref("ServiceAccount", "held", namespace), timeout=60, held=1)
    finally:
        core.patch_namespaced_service_account("held", namespace, {"metadata": {"finalizers": None}})


def test_a_deletion_whose_finalizer_is_still_working_is_waited_for(api, namespace):
    """Held by a finalizer, but changing (as a namespace does while its controller removes the
    content): the wait does not call that stuck, however long ago the deletion was."""
    import threading
    import time
    from kubebook.waits import wait_deleted
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "busy",
                                                                    "finalizers": ["kubebook.io/test-hold"]}})
    core.delete_namespaced_service_account("busy", namespace)

    def owner_at_work():  # changes the object for 5 s (each change under the 1 s patience), then lets go
        for step in range(20):
            core.patch_namespaced_service_account("busy", namespace, {"metadata": {"labels": {"step": str(step)}}})
            time.sleep(0.25)
        core.patch_namespaced_service_account("busy", namespace, {"metadata": {"finalizers": None}})
    worker = threading.Thread(target=owner_at_work, daemon=True)
    worker.start()
    try:
        assert wait_deleted(api, Ref("ServiceAccount", "busy", namespace), timeout=60, held=1) == "gone"
    finally:
        worker.join(30)


def test_a_clean_up_step_that_fails_does_not_stop_the_others(api, namespace, run, monkeypatch):
    """A deletion held by a finalizer fails its step; the clean-up still deletes the rest and puts back
    what the run changed, then raises that step's failure (once it stopped at the first one, leaving a
    node cordoned behind a namespace stuck in deletion)."""
    from kubebook import waits
    from kubebook.plan import StepFailed
    monkeypatch.setattr(waits, "HELD_SECONDS", 1.0)
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "theirs"}, "data": {"a": "1"}})
    run()
    plan = _plan(namespace, api)
    plan.apply({"kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"a": "changed"}}, namespace)
    plan.create({"kind": "ConfigMap", "metadata": {"name": "plain"}}, namespace)
    plan.create({"kind": "ServiceAccount", "metadata": {"name": "held", "finalizers": ["kubebook.io/test-hold"]}},
                namespace)
    try:
        with pytest.raises(StepFailed, match="clean-up-serviceaccount-held"):
            plan.cleanup()
        names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
        assert "plain" not in names, "the step after the failed one was not run"
        assert core.read_namespaced_config_map("theirs", namespace).data == {"a": "1"}
        assert plan.table().set_index("step").loc["clean-up-serviceaccount-held", "status"] == "failed"
    finally:
        core.patch_namespaced_service_account("held", namespace, {"metadata": {"finalizers": None}})


def test_a_clean_up_within_scope_leaves_what_other_plans_of_the_run_made(api, run):
    """A widget's plan covers one namespace while the kernel's run record holds every plan's objects:
    cleanup(within_scope=True) undoes only what the plan's confirmation names."""
    core = client.CoreV1Api(api)
    run()
    names = [f"plan-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    plans = [_plan(name, api) for name in names]
    for plan, name in zip(plans, names):
        plan.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        plan.create({"kind": "ConfigMap", "metadata": {"name": "made"}, "data": {}}, name)
    first = _plan(names[0], api)
    assert first.cleanup(within_scope=True)["namespace"].tolist() == ["", names[0]]  # the namespace, its ConfigMap
    remaining = {n.metadata.name for n in core.list_namespace().items}
    assert names[0] not in remaining and names[1] in remaining
    assert core.read_namespaced_config_map("made", names[1])
    assert Ref("Namespace", names[1]) in first.record.created  # still the run's to clean up
    _plan(names[1], api).cleanup()
    assert names[1] not in {n.metadata.name for n in core.list_namespace().items}
