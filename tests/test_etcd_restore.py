"""Full restore and new-machine restore, run through the runbooks on a lab of their own
(a full restore rolls back the whole cluster, so it must not touch the shared test lab)."""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import nbformat
import pytest
from kubernetes import client

from kubebook import lab as labs, process, runner
from kubebook.errors import RunbookFailed
from kubebook.etcd import restore, snapshot

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def own_lab():
    with labs.running(f"pytest-restore-{os.getpid()}", nodes=1, timeout=240, keep=False) as lab:
        yield lab


def _configmaps(lab) -> set[str]:
    return {c.metadata.name for c in client.CoreV1Api(lab.api_client()).list_namespaced_config_map("default").items}


def _text(result_or_path) -> str:
    """Every output of the executed notebook, as text (never its source)."""
    path = getattr(result_or_path, "notebook", result_or_path)
    nb = json.loads(Path(path).read_text())
    return json.dumps([o for c in nb["cells"] for o in c.get("outputs", [])])


def test_full_restore_brings_back_deleted_objects_and_serves_writes(own_lab, tmp_path):
    core = client.CoreV1Api(own_lab.api_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": "kept-by-snapshot"}, "data": {"v": "1"}})
    with restore.LabControlPlane(own_lab).etcd() as etcd:
        taken = snapshot.save(etcd, tmp_path / "snaps", progress=False)
    core.delete_namespaced_config_map("kept-by-snapshot", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "made-after"}, "data": {"v": "1"}})
    book = runner.find("etcd/full-restore")

    dry = runner.run(book, {"lab": own_lab.name, "snapshot": taken.path}, output_dir=tmp_path, progress=False)
    assert "DRY RUN" in _text(dry) and "made-after" in _configmaps(own_lab)

    result = runner.run(book, {"lab": own_lab.name, "snapshot": taken.path, "confirm": own_lab.name,
                               "backup_dir": str(tmp_path / "backups")}, output_dir=tmp_path, progress=False)
    assert result.status == "ok"
    names = _configmaps(own_lab)
    assert "kept-by-snapshot" in names and "made-after" not in names
    client.CoreV1Api(own_lab.api_client()).create_namespaced_config_map(
        "default", {"metadata": {"name": "written-after-restore"}, "data": {"v": "1"}})
    assert "written-after-restore" in _configmaps(own_lab)
    assert own_lab.is_running()
    # the old data was moved aside, and the state before the restore was snapshotted first, privately
    assert list(own_lab.dir.glob("etcd-data.before-restore-*"))
    backups = list((tmp_path / "backups").glob("k8s-master-before-restore-etcd_*.db"))
    assert backups and all(b.stat().st_mode & 0o777 == 0o600 for b in backups)
    text = _text(result)
    assert "--bump-revision=1000000000" in text and "--mark-compacted" in text


def test_a_failed_backup_stops_the_restore_before_anything_is_stopped(own_lab, tmp_path):
    pids = {c: p.pid for c, p in own_lab.refresh().processes.items()}
    blocked = tmp_path / "a-file"
    blocked.write_text("a backup directory cannot be made under a file")
    with pytest.raises(RunbookFailed, match="BackupFailed|backup-current"):
        runner.run(runner.find("etcd/full-restore"),
                   {"lab": own_lab.name, "rehearse": True, "confirm": own_lab.name,
                    "backup_dir": str(blocked / "backups")}, output_dir=tmp_path, progress=False)
    out = sorted(tmp_path.glob("etcd-full-restore-*.ipynb"))[-1]
    assert "nothing was stopped or changed" in _text(out)
    assert {c: p.pid for c, p in own_lab.refresh().processes.items()} == pids, "no component was stopped"
    assert own_lab.is_running()


def test_confirm_naming_another_target_is_refused(own_lab, tmp_path):
    with pytest.raises(RunbookFailed, match="ConfirmationRequired"):
        runner.run(runner.find("etcd/full-restore"), {"lab": own_lab.name, "rehearse": True, "confirm": "prod"},
                   output_dir=tmp_path, progress=False)
    assert own_lab.is_running()


def test_new_machine_restore_lists_the_keys_without_touching_the_cluster(own_lab, tmp_path):
    pids = {c: p.pid for c, p in own_lab.refresh().processes.items()}
    with restore.LabControlPlane(own_lab).etcd() as etcd:
        taken = snapshot.save(etcd, tmp_path, progress=False)
    result = runner.run(runner.find("etcd/new-machine-restore"),
                        {"snapshot": taken.path, "directory": str(tmp_path / "restored")},
                        output_dir=tmp_path, progress=False)
    text = _text(result)
    assert "clusterroles" in text and "kube-system" in text
    assert re.search(r"stopped: pid \d+ is gone", text)
    assert (tmp_path / "restored").stat().st_mode & 0o777 == 0o700
    assert {c: p.pid for c, p in own_lab.refresh().processes.items()} == pids
    with restore.restore_scratch(taken.path, tmp_path / "again") as scratch, scratch.etcd() as etcd:
        summary = restore.key_summary(etcd)
        assert summary.set_index("resource").loc["namespaces", "keys"] >= 4
    assert not scratch.running and not scratch.child.record.alive(), "the scratch etcd is stopped on exit"


def _gone(pid: int, timeout: float = 10) -> bool:
    """No etcd has ``pid`` any more (the kernel stopped it, or its parent-death signal killed it)."""
    import time
    from pathlib import Path
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "etcd" not in Path(f"/proc/{pid}/cmdline").read_text():
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_the_scratch_etcd_is_gone_after_a_run_that_failed_half_way(own_lab, tmp_path):
    """A cell after the scratch member started fails: the run ends there, and the member (plain HTTP,
    every Secret of the snapshot) must not outlive it."""
    with restore.LabControlPlane(own_lab).etcd() as etcd:
        taken = snapshot.save(etcd, tmp_path, progress=False)
    book = runner.find("etcd/new-machine-restore")
    nb = nbformat.read(book.path, 4)
    started = next(i for i, c in enumerate(nb.cells) if "open_scratch" in c.source)
    nb.cells.insert(started + 1, nbformat.v4.new_code_cell("raise RuntimeError('a later step failed')"))
    broken = tmp_path / "book" / "etcd" / "new-machine-restore.ipynb"
    broken.parent.mkdir(parents=True)
    nbformat.write(nb, broken)
    with pytest.raises(RunbookFailed, match="a later step failed"):
        runner.run(runner.load(broken), {"snapshot": taken.path, "directory": str(tmp_path / "restored")},
                   output_dir=tmp_path, progress=False)
    out = sorted(tmp_path.glob("etcd-new-machine-restore-*.ipynb"))[-1]
    found = re.search(r"restored etcd: http://127\.0\.0\.1:(\d+) \(pid (\d+)\)", _text(out))
    assert found, "the run printed the scratch member's endpoint and PID"
    port, pid = int(found.group(1)), int(found.group(2))
    assert process.start_time(pid) is None, f"the scratch etcd (pid {pid}) outlived the failed run"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing serves the snapshot any more"


def test_restore_refuses_a_non_empty_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "member").write_text("x")
    member = restore.Member(name="m", data_dir=tmp_path / "data", initial_cluster="m=http://127.0.0.1:1",
                            initial_advertise_peer_urls="http://127.0.0.1:1")
    with pytest.raises(restore.RestoreError, match="not empty"):
        restore.run_restore(tmp_path / "x.db", member)
