"""A namespace stuck on finalizers, staged by the rehearsal, diagnosed and finished on the lab."""
from __future__ import annotations

import time

import pytest
from kubernetes import client

import etcd_plans
from kubebook import connect, etcd
from kubebook.etcd import rehearsal, stuck_namespace as stuck
from kubebook.plan import StepFailed

pytestmark = pytest.mark.lab


def _plan(lab, namespace: str, confirm: str = ""):
    return etcd_plans.plan(lab, namespace, confirm=confirm)


def _staged(lab, namespace: str) -> dict:
    stuck.rehearsal(_plan(lab, namespace, namespace), namespace)
    return stuck.diagnose(lab.api_client(), namespace)


def test_diagnose_then_finish_through_finalize(lab, api):
    diagnosis = _staged(lab, "stuck-test")
    assert diagnosis["phase"] == "Terminating"
    assert stuck.DEMO_FINALIZER in diagnosis["spec.finalizers"]
    held = diagnosis["remaining"]
    assert held[["kind", "name", "finalizers"]].values.tolist() == [["ConfigMap", "held", stuck.DEMO_FINALIZER]]
    conditions = diagnosis["conditions"].set_index("type")["status"].to_dict()
    assert conditions["NamespaceFinalizersRemaining"] == "True"
    assert "finalizers remain" in diagnosis["verdict"]

    dry = stuck.fix(_plan(lab, "stuck-test"), "stuck-test")
    assert set(dry["status"]) == {"planned"}
    assert stuck.namespace_state(api, "stuck-test") is not None, "a dry run changes nothing"

    plan = _plan(lab, "stuck-test", "stuck-test")
    done = stuck.fix(plan, "stuck-test")
    assert done["status"].tolist() == ["done", "done", "done"]
    assert stuck.namespace_state(api, "stuck-test") is None
    backups = {c.ref.kind: c.backup for c in plan.record.changed.values()}
    assert set(backups) == {"ConfigMap", "Namespace"}, "what the fix changed was backed up first"
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in backups.values())


def test_a_finalizer_nobody_removes_is_named_within_seconds(lab, api):
    _staged(lab, "stuck-held")
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"held by finalizer\(s\) kubebook.io/hold .*remove_finalizers=True"):
        stuck.fix(_plan(lab, "stuck-held", "stuck-held"), "stuck-held", remove_finalizers=False, use_finalize=False,
                  timeout=60)
    assert time.monotonic() - started < 10, "the wait said why instead of running out its 60 s"
    stuck.fix(_plan(lab, "stuck-held", "stuck-held"), "stuck-held")  # and the safe route still finishes it
    assert stuck.namespace_state(api, "stuck-held") is None


def test_the_rehearsal_refuses_a_namespace_it_did_not_make(lab, api):
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "stuck-not-a-drill"}})
    try:
        with pytest.raises(rehearsal.RehearsalRefused, match="was not made by a kubebook rehearsal"):
            stuck.rehearsal(_plan(lab, "stuck-not-a-drill", "stuck-not-a-drill"), "stuck-not-a-drill")
        assert core.read_namespace("stuck-not-a-drill").status.phase == "Active"
    finally:
        core.delete_namespace("stuck-not-a-drill")


def test_the_rehearsal_runs_on_a_lab_only_and_under_confirm(lab, api):
    elsewhere = etcd_plans.plan(lab, "stuck-elsewhere", confirm="stuck-elsewhere",
                                cluster=connect.target(kubeconfig=str(lab.kubeconfig)))
    with pytest.raises(Exception, match="rehearses on a kubebook lab only"):
        stuck.rehearsal(elsewhere, "stuck-elsewhere")
    with pytest.raises(Exception, match="has never been started"):
        connect.target(lab="no-such-lab-h5")
    stuck.rehearsal(_plan(lab, "stuck-unconfirmed"), "stuck-unconfirmed")  # a dry run stages nothing
    assert stuck.namespace_state(api, "stuck-unconfirmed") is None


def test_etcd_key_deletion_is_a_last_resort_with_snapshot_and_orphans(api, lab, tmp_path):
    _staged(lab, "stuck-etcd")
    params = lab.etcd_params()
    dry = stuck.fix(_plan(lab, "stuck-etcd"), "stuck-etcd", remove_finalizers=False, use_finalize=False,
                    etcd_delete=True, etcd_params=params, backup_dir=str(tmp_path), timeout=3)
    assert dry["step"].tolist() == ["gone", "etcd-delete"] and not list(tmp_path.iterdir())
    done = stuck.fix(_plan(lab, "stuck-etcd", "stuck-etcd"), "stuck-etcd", remove_finalizers=False,
                     use_finalize=False, etcd_delete=True, etcd_params=params, backup_dir=str(tmp_path), timeout=3)
    detail = done.set_index("step")["detail"]
    assert "going on to the last resort" in detail["gone"]
    assert list(tmp_path.glob("*-etcd_*.db")), "a snapshot is taken before the key is deleted"
    assert "1 key(s) of its objects are orphaned" in detail["etcd-delete"]
    assert stuck.namespace_state(api, "stuck-etcd") is None
    with etcd.Etcd(**params) as client_:
        assert client_.count("/registry/configmaps/stuck-etcd/") == 1  # the orphan the warning names
        client_.delete("/registry/configmaps/stuck-etcd/held")
