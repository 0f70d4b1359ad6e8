"""Schedules without a cluster: checks before anything is made, the manifests, and the host units."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from croniter import croniter

from kubebook import cli
from kubebook.errors import ParameterError
from kubebook.schedule import build, cron, host
from kubebook.schedule.permissions import Grant, PermissionDeclarationError, Rule


def _cronjob(schedule) -> dict:
    [cj] = [o for o in schedule.manifests() if o["kind"] == "CronJob"]
    return cj


def test_an_etcd_runbook_runs_on_the_control_plane_with_its_host_paths():
    schedule = build("etcd/snapshot", "0 */6 * * *", {"confirm": "k8s-master"})
    spec = _cronjob(schedule)["spec"]
    assert (spec["concurrencyPolicy"], spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == \
        ("Forbid", 3, 5)
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 3600 and job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert pod["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane" and pod["hostNetwork"] is True
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    pki = mounts["/etc/kubernetes/pki/etcd"]
    assert pki["readOnly"] is True and volumes[pki["name"]]["hostPath"]["path"] == "/etc/kubernetes/pki/etcd"
    data = mounts["/var/backups/etcd"]
    assert "readOnly" not in data and volumes[data["name"]]["hostPath"]["type"] == "DirectoryOrCreate"
    args = pod["containers"][0]["args"]
    assert args[:2] == ["run", "etcd/snapshot"] and "--record-configmap" in args
    assert ["-p", "cert", "/etc/kubernetes/pki/etcd/healthcheck-client.crt"] == args[args.index("cert") - 1:args.index("cert") + 2]


def test_a_claim_replaces_the_snapshot_hostpath():
    pod = _cronjob(build("etcd/snapshot", "@daily", {}, data_claim="etcd-backups", output_claim="runs"))[
        "spec"]["jobTemplate"]["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"etcd-backups", "runs"}


def test_an_api_runbook_runs_anywhere_as_non_root_with_only_its_declared_rules():
    schedule = build("auth/cluster-admin-audit", "0 2 * * *", {})
    pod = _cronjob(schedule)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "hostNetwork" not in pod and pod["securityContext"]["runAsNonRoot"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in schedule.manifests()}
    assert ("ClusterRole", "kubebook:schedule:kubebook:kubebook-auth-cluster-admin-audit") in kinds
    [cluster_role] = [o for o in schedule.manifests() if o["kind"] == "ClusterRole"]
    granted = {(v, r) for rule in cluster_role["rules"] for v in rule["verbs"] for r in rule["resources"]}
    declared = {(v, r) for rule in schedule.book.permissions for v in rule["verbs"] for r in rule["resources"]}
    assert granted == declared and all("*" not in rule["verbs"] for rule in cluster_role["rules"])


def test_secret_parameters_and_the_webhook_go_into_the_secret_only(tmp_path, monkeypatch):
    import fixture_books
    monkeypatch.setenv("KUBEBOOK_RUNBOOKS", str(fixture_books.make(tmp_path / "runbooks")))
    schedule = build("demo/table", "0 2 * * *", {"password": "hunter2-S3cr3t", "rows": "[]"},
                     notify="https://hooks.example.invalid/T0K3N")
    assert schedule.secret_values == {"password": "hunter2-S3cr3t"} and schedule.values == {"rows": []}
    manifests = schedule.manifests()
    [secret] = [o for o in manifests if o["kind"] == "Secret"]
    assert "hunter2-S3cr3t" in secret["stringData"]["parameters.yaml"]
    assert secret["stringData"]["notify-url"].strip() == "https://hooks.example.invalid/T0K3N"
    others = yaml.safe_dump_all([o for o in manifests if o["kind"] != "Secret"])
    assert "hunter2" not in others and "T0K3N" not in others
    assert "hunter2" not in schedule.show() and "T0K3N" not in schedule.show()
    args = _cronjob(schedule)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--parameters-file" in args and "@/etc/kubebook/secret/notify-url" in args


@pytest.mark.parametrize("change, message", [
    ({"cron_expression": "61 * * * *"}, "five fields"),
    ({"cron_expression": "0 0 L * *"}, "five fields"),
    ({"name": "Bad_Name"}, "schedule name"),
    ({"name": "x" * 53}, "schedule name"),
    ({"values": {"keep": "many"}}, "not an integer"),
    ({"values": {"nope": "1"}}, "unknown parameter"),
    ({"notify": "ftp://x"}, "http(s) URL"),
    ({"fail_on": ("admins:grew",)}, "TABLE:grew:COLUMN:FACTOR"),
    ({"retries": -1}, "--retries"),
    ({"ref": "etcd/operations"}, "declares no permissions"),
])
def test_bad_input_is_refused_before_anything(change, message):
    args = {"ref": "etcd/snapshot", "cron_expression": "0 * * * *", "values": {}, **change}
    with pytest.raises(Exception, match=re.escape(message)) as info:
        build(args.pop("ref"), args.pop("cron_expression"), args.pop("values"), **args)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("rule", [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
    {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["steal"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "scope": "cluster", "namespace": "x"},
    {"resources": ["pods"], "verbs": ["get"]},
])
def test_wildcards_and_malformed_permissions_are_refused(rule):
    with pytest.raises(PermissionDeclarationError):
        Rule.parse(rule)


def test_the_denied_sample_never_contains_a_declared_permission():
    grant = Grant("sa", "jobs", [Rule.parse({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"],
                                             "namespace": "kube-system"})])
    needed = {(c["verb"], c["resource"], c["namespace"]) for c in grant.needed()}
    outside = grant.outside()
    assert needed == {("get", "configmaps", "kube-system"), ("update", "configmaps", "kube-system")}
    assert not any((c["verb"], c["resource"], c["namespace"]) in needed for c in outside)
    assert {("get", "secrets"), ("delete", "configmaps"), ("create", "pods/exec")} <= \
        {(c["verb"], c["resource"]) for c in outside}
    assert ("update", "configmaps", "jobs") in {(c["verb"], c["resource"], c["namespace"]) for c in outside}


# ---- cron and systemd -----------------------------------------------------------------------
EXPRESSIONS = ["0 */6 * * *", "*/15 9-17 * * 1-5", "30 2 1 * *", "0 0 * * 0", "5 4 * 2,8 *", "@hourly", "@weekly"]


def _systemd_next(calendar: str, base: dt.datetime, n: int) -> list[dt.datetime]:
    out = subprocess.run(["systemd-analyze", "calendar", f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC",
                          f"--iterations={n}", calendar], capture_output=True, text=True, env={**os.environ, "TZ": "UTC"},
                         check=True).stdout
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)
    return [dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc) for s in stamps]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_timer_fires_when_cron_would(expression):
    base = dt.datetime(2026, 3, 14, 15, 9, 26, tzinfo=dt.timezone.utc)
    it = croniter(cron.MACROS.get(expression, expression), base)
    expected = [it.get_next(dt.datetime) for _ in range(6)]
    assert _systemd_next(cron.on_calendar(expression), base, 6) == expected


def test_either_day_of_month_or_day_of_week_is_refused_for_a_timer():
    with pytest.raises(ParameterError, match="OR the day-of-week"):
        cron.on_calendar("0 0 1 * 1")


def test_percent_signs_are_escaped_in_the_crontab_line_only(tmp_path):
    schedule = build("auth/cluster-admin-audit", "0 2 * * *", {"context": "ignored"})
    schedule.values["kubeconfig"] = "/tmp/50%-off.conf"
    line = host.crontab_line(schedule, tmp_path)
    assert "50\\%-off" in line and line.startswith("0 2 * * * cd ")
    assert "50%-off" in host.command_of_crontab_line(line)
    units = host.systemd_units(schedule, tmp_path)
    assert "50%%-off" in units["kubebook-auth-cluster-admin-audit.service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_host_units_pass_systemd_analyze_verify(tmp_path, capsys):
    code = cli.main(["schedule", "auth/cluster-admin-audit", "--cron", "*/30 * * * *", "--host", "--unit-dir",
                     str(tmp_path / "units"), "--notify", "http://127.0.0.1:9/hook",
                     "--confirm", "auth-cluster-admin-audit"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "systemd-analyze verify: passed" in out
    written = sorted(p.name for p in (tmp_path / "units").iterdir())
    assert written == ["kubebook-auth-cluster-admin-audit.crontab", "kubebook-auth-cluster-admin-audit.service",
                       "kubebook-auth-cluster-admin-audit.timer", "notify-url"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "units").iterdir())
    assert "127.0.0.1:9" not in out    # the webhook URL is a secret file, not shown


def test_host_dry_run_writes_nothing(tmp_path, capsys):
    assert cli.main(["schedule", "etcd/snapshot", "--cron", "0 3 * * *", "--host", "--unit-dir",
                     str(tmp_path / "units")]) == 0
    assert "DRY RUN" in capsys.readouterr().out and not (tmp_path / "units").exists()


def test_the_dockerfile_builds_the_default_image_with_the_pinned_etcdutl_and_the_runbooks():
    from kubebook import versions
    from kubebook.schedule import DEFAULT_IMAGE
    from kubebook.schedule.job import VERSION
    text = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    assert f"ARG ETCD_VERSION={versions.ETCD}" in text
    assert "KUBEBOOK_RUNBOOKS=/opt/kubebook/runbooks" in text and "COPY runbooks /opt/kubebook/runbooks" in text
    assert DEFAULT_IMAGE == f"kubebook:{VERSION}" and 'ENTRYPOINT ["kubebook"]' in text
