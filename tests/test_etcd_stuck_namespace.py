"""A namespace stuck on finalizers, diagnosed and finished on the lab."""
from __future__ import annotations

import pytest

from kubebook import etcd
from kubebook.etcd import stuck_namespace as stuck

pytestmark = pytest.mark.lab


def test_diagnose_then_finish_through_finalize(api):
    diagnosis = stuck.stage_stuck(api, "stuck-test")
    assert diagnosis["phase"] == "Terminating"
    assert stuck.DEMO_FINALIZER in diagnosis["spec.finalizers"]
    held = diagnosis["remaining"]
    assert held[["kind", "name", "finalizers"]].values.tolist() == [["ConfigMap", "held", stuck.DEMO_FINALIZER]]
    conditions = diagnosis["conditions"].set_index("type")["status"].to_dict()
    assert conditions["NamespaceFinalizersRemaining"] == "True"
    assert "finalizers remain" in diagnosis["verdict"]

    dry = stuck.fix(api, "stuck-test")
    assert set(dry.table()["status"]) == {"planned"}
    assert stuck.namespace_state(api, "stuck-test") is not None, "a dry run changes nothing"

    done = stuck.fix(api, "stuck-test", confirm="stuck-test")
    assert done.table()["status"].tolist() == ["done", "done", "done"]
    assert stuck.namespace_state(api, "stuck-test") is None


def test_etcd_key_deletion_is_a_last_resort_with_snapshot_and_orphans(api, lab, tmp_path):
    stuck.stage_stuck(api, "stuck-etcd")
    with etcd.Etcd(**lab.etcd_params()) as client:
        dry = stuck.fix(api, "stuck-etcd", remove_finalizers=False, use_finalize=False, etcd_delete=True,
                        etcd=client, backup_dir=tmp_path, timeout=3)
        assert dry.table()["step"].tolist() == ["wait", "etcd-delete"] and not list(tmp_path.iterdir())
        done = stuck.fix(api, "stuck-etcd", confirm="stuck-etcd", remove_finalizers=False, use_finalize=False,
                         etcd_delete=True, etcd=client, backup_dir=tmp_path, timeout=3)
        detail = done.table().set_index("step")["detail"]
        assert "going on to the last resort" in detail["wait"]
        assert list(tmp_path.glob("*-etcd_*.db")), "a snapshot is taken before the key is deleted"
        assert "1 key(s) of its objects are orphaned" in detail["etcd-delete"]
        assert stuck.namespace_state(api, "stuck-etcd") is None
        assert client.count("/registry/configmaps/stuck-etcd/") == 1  # the orphan the warning names
        client.delete("/registry/configmaps/stuck-etcd/held")
