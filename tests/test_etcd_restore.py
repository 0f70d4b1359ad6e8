"""Full restore and new-machine restore, run through the runbooks on a lab of their own
(a full restore rolls back the whole cluster, so it must not touch the shared test lab)."""
from __future__ import annotations

import json
import os

import pytest
from kubernetes import client

from kubebook import lab as labs, runner
from kubebook.etcd import restore, snapshot

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def own_lab():
    with labs.running(f"pytest-restore-{os.getpid()}", nodes=1, timeout=240, keep=False) as lab:
        yield lab


def _configmaps(lab) -> set[str]:
    return {c.metadata.name for c in client.CoreV1Api(lab.api_client()).list_namespaced_config_map("default").items}


def test_full_restore_brings_back_deleted_objects_and_serves_writes(own_lab, tmp_path):
    core = client.CoreV1Api(own_lab.api_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": "kept-by-snapshot"}, "data": {"v": "1"}})
    with restore.LabControlPlane(own_lab.name).etcd() as etcd:
        taken = snapshot.save(etcd, tmp_path / "snaps", progress=False)
    core.delete_namespaced_config_map("kept-by-snapshot", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "made-after"}, "data": {"v": "1"}})
    book = runner.find("etcd/full-restore")

    dry = runner.run(book, {"lab": own_lab.name, "snapshot": taken.path}, output_dir=tmp_path, progress=False)
    assert "DRY RUN" in dry.notebook.read_text() and "made-after" in _configmaps(own_lab)

    result = runner.run(book, {"lab": own_lab.name, "snapshot": taken.path, "confirm": own_lab.name,
                               "backup_dir": str(tmp_path / "backups")}, output_dir=tmp_path, progress=False)
    assert result.status == "ok"
    names = _configmaps(own_lab)
    assert "kept-by-snapshot" in names and "made-after" not in names
    client.CoreV1Api(own_lab.api_client()).create_namespaced_config_map(
        "default", {"metadata": {"name": "written-after-restore"}, "data": {"v": "1"}})
    assert "written-after-restore" in _configmaps(own_lab)
    assert own_lab.is_running()
    # the old data was moved aside, and the state before the restore was snapshotted first
    assert list(own_lab.dir.glob("etcd-data.before-restore-*"))
    assert list((tmp_path / "backups").glob("k8s-master-before-restore-etcd_*.db"))
    text = result.notebook.read_text()
    assert "--bump-revision=1000000000" in text and "--mark-compacted" in text


def test_confirm_naming_another_target_is_refused(own_lab, tmp_path):
    from kubebook.errors import RunbookFailed
    with pytest.raises(RunbookFailed, match="ConfirmationRequired"):
        runner.run(runner.find("etcd/full-restore"), {"lab": own_lab.name, "rehearse": True, "confirm": "prod"},
                   output_dir=tmp_path, progress=False)
    assert own_lab.is_running()


def test_new_machine_restore_lists_the_keys_without_touching_the_cluster(own_lab, tmp_path):
    pids = {c: p.pid for c, p in own_lab.refresh().processes.items()}
    with restore.LabControlPlane(own_lab.name).etcd() as etcd:
        taken = snapshot.save(etcd, tmp_path, progress=False)
    result = runner.run(runner.find("etcd/new-machine-restore"),
                        {"snapshot": taken.path, "directory": str(tmp_path / "restored")},
                        output_dir=tmp_path, progress=False)
    text = json.dumps(json.loads(result.notebook.read_text()))
    assert "clusterroles" in text and "kube-system" in text
    assert {c: p.pid for c, p in own_lab.refresh().processes.items()} == pids
    with restore.restore_scratch(taken.path, tmp_path / "again") as scratch, scratch.etcd() as etcd:
        summary = restore.key_summary(etcd)
        assert summary.set_index("resource").loc["namespaces", "keys"] >= 4
    assert scratch._proc.poll() is not None, "the scratch etcd is stopped on exit"


def test_restore_refuses_a_non_empty_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "member").write_text("x")
    member = restore.Member(name="m", data_dir=tmp_path / "data", initial_cluster="m=http://127.0.0.1:1",
                            initial_advertise_peer_urls="http://127.0.0.1:1")
    with pytest.raises(restore.RestoreError, match="not empty"):
        restore.run_restore(tmp_path / "x.db", member)
