"""A host schedule's crontab line, run by hand, runs the job; a real transient failure is retried
and alerts once; an off-host copy of a snapshot is verified."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess

import pytest

from kubebook import cli, drift, records
from kubebook.etcd import snapshot
from kubebook.schedule import build, cluster, host
from test_unattended import Webhook

pytestmark = pytest.mark.lab


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_crontab_line_runs_the_snapshot_job_when_executed_by_hand(lab, tmp_path, capsys):
    units = tmp_path / "units"
    copies = tmp_path / "off-host"
    assert cli.main(["schedule", "etcd/snapshot", "--cron", "17 */6 * * *", "--lab", lab.name, "--host",
                     "--unit-dir", str(units), "-p", "copy_to", str(copies), "--fail-on", "snapshot-taken:grew:size:10",
                     "--confirm", "etcd-snapshot"]) == 0
    out = capsys.readouterr().out
    if shutil.which("systemd-analyze"):
        assert "systemd-analyze verify: passed" in out
    line = (units / "kubebook-etcd-snapshot.crontab").read_text().strip()
    assert line.startswith("17 */6 * * * ")
    before = set(snapshot.listing(lab.dir / "snapshots"))
    done = subprocess.run(["/bin/sh", "-c", host.command_of_crontab_line(line)], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (units / "cron.log").read_text()
    [new] = set(snapshot.listing(lab.dir / "snapshots")) - before
    run = records.select(runbook="etcd/snapshot")[-1]
    assert (run.status, run.schedule) == ("ok", "etcd-snapshot") and run.notebook.startswith(str(units / "runs"))
    assert "ok in" in (units / "cron.log").read_text()
    # the copy off the host: same bytes, private, and the run's table says it was verified
    copy = copies / new.name
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == hashlib.sha256(new.read_bytes()).hexdigest()
    assert _mode(copy) == 0o600 and _mode(copies) == 0o700 and (copies / new.with_suffix(".json").name).is_file()
    copied = drift.tables(run.notebook)["snapshot-copy"].frame()
    assert list(copied["verified"]) == ["sha256 matches"] and list(copied["copied to"]) == [str(copy)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_scheduled_audit_that_cannot_reach_its_cluster_retries_twice_then_alerts_once(lab, tmp_path, capsys):
    api = lab.api_client()
    schedule = build("auth/cluster-admin-audit", "0 2 * * *", {}, lab=lab, name="t-retry", namespace="kubebook-test",
                     retries=2, retry_delay=0.2)
    assert cli.main(["schedule", "auth/cluster-admin-audit", "--cron", "0 2 * * *", "--lab", lab.name, "--name",
                     "t-retry", "--namespace", "kubebook-test", "--confirm", "t-retry"]) == 0
    conf = cluster.service_account_kubeconfig(api, schedule, tmp_path / "sa.conf", server=lab.server,
                                              ca_file=lab.pki.root / "ca.crt")
    token = [l.split(":", 1)[1].strip() for l in conf.read_text().splitlines() if l.strip().startswith("token:")][0]
    unreachable = tmp_path / "unreachable.conf"
    unreachable.write_text(conf.read_text().replace(lab.server, f"https://127.0.0.1:{_closed_port()}"))
    hook = Webhook()
    try:
        argv = [*schedule.arguments(output_dir=str(tmp_path / "out"), record=False), "--kubeconfig", str(unreachable),
                "--notify", hook.url]
        assert cli.main(argv) == 1
        attempts = [r for r in records.select(runbook="auth/cluster-admin-audit")
                    if r.parameters.get("kubeconfig") == str(unreachable)]
        assert [r.attempt for r in attempts] == [1, 2, 3]
        assert capsys.readouterr().err.count("retrying in") == 2
        [message] = hook.received
        body = message["body"]
        assert (body["status"], body["attempts"], body["record"]) == ("failed", 3, attempts[-1].path)
        assert "Connection refused" in body["error"] or "Max retries" in body["error"]
        assert token not in json.dumps(body) and token[:40] not in json.dumps(body)

        # bad input with the same options: one attempt, exit 2, one more alert
        assert cli.main([*argv, "-p", "no_such_parameter", "1"]) == 2
        assert len(hook.received) == 2 and hook.received[1]["body"]["attempts"] == 1
        assert hook.received[1]["body"]["status"] == "bad input"
    finally:
        hook.close()
        cli.main(["schedule", "delete", "t-retry", "--lab", lab.name, "--namespace", "kubebook-test",
                  "--confirm", "t-retry"])
