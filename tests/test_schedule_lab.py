"""Schedules on the lab: the CronJob, its ServiceAccount and least-privilege roles, proven.

kwok runs no containers, so the job's Pod never runs here. Instead the manifests go through a
server-side dry run and a real apply, and the job's own command runs on this machine with a
TokenRequest token of the job's ServiceAccount: it must succeed with the declared roles and be
Forbidden without them, and SubjectAccessReviews show what else the account cannot do.
"""
from __future__ import annotations

import json
import time

import pytest
from kubernetes import client

from kubebook import cli, drift, records
from kubebook.auth.access import Resource, can
from kubebook.schedule import build, cluster, history

pytestmark = pytest.mark.lab

NAMESPACE = "kubebook-test"
BOOKS = ["etcd/snapshot", "auth/cluster-admin-audit", "auth/certificate-expiry"]


def _cronjob(api, name):
    try:
        return client.BatchV1Api(api).read_namespaced_cron_job(name, NAMESPACE)
    except client.ApiException as exc:
        assert exc.status == 404
        return None


def _wait_until(api, subject, verb, resource, namespace, name, allowed: bool, timeout: float = 15.0) -> None:
    """Authorization cannot be watched: ask again until the RBAC cache has the change."""
    deadline, pause = time.monotonic() + timeout, 0.1
    while can(api, subject, verb, Resource.parse(resource), namespace=namespace, name=name)["allowed"] != allowed:
        assert time.monotonic() < deadline, f"{subject} {verb} {resource}: still not {allowed}"
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _table(notebook, name):
    return drift.tables(notebook)[name].frame()


@pytest.mark.parametrize("ref", BOOKS)
def test_schedule_creates_a_least_privilege_job_whose_token_runs_the_runbook(lab, tmp_path, monkeypatch, capsys, ref):
    api = lab.api_client()
    name = "t-" + ref.split("/")[1]
    base = ["schedule", ref, "--cron", "0 */6 * * *", "--lab", lab.name, "--name", name, "--namespace", NAMESPACE]

    # a dry run: every manifest validated by the apiserver, nothing made
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert out.count("valid (server dry run)") >= 4 and "CronJob kubebook-test/" + name in out
    assert _cronjob(api, name) is None

    assert cli.main([*base, "--confirm", name]) == 0
    out = capsys.readouterr().out
    schedule = build(ref, "0 */6 * * *", {}, lab=lab, name=name, namespace=NAMESPACE)
    cj = _cronjob(api, name)
    assert cj.spec.concurrency_policy == "Forbid" and cj.spec.job_template.spec.active_deadline_seconds == 3600
    pod = cj.spec.job_template.spec.template.spec
    assert pod.service_account_name == schedule.service_account
    assert client.CoreV1Api(api).read_namespaced_service_account(schedule.service_account, NAMESPACE)
    if ref == "etcd/snapshot":
        assert pod.host_network and pod.node_selector == {"node-role.kubernetes.io/control-plane": ""}
        read_only = {m.mount_path for m in pod.containers[0].volume_mounts if m.read_only}
        assert str(lab.etcd_ca.parent) in read_only

    # SubjectAccessReview: every declared request allowed; Secrets, deletes and escalation denied
    proof = cluster.check_access(api, schedule)
    assert proof["ok"].all()
    denied = proof[proof["expected"] == "denied"]
    assert {"get", "list", "watch"} <= set(denied[denied["resource"] == "secrets"]["verb"])
    assert {"kube-system", "(all / cluster)", NAMESPACE} <= set(denied[denied["resource"] == "secrets"]["namespace"])
    assert len(denied[denied["verb"] == "delete"]) >= 10 and (denied["apiserver"] == "denied").all()
    assert f"{len(proof) - len(denied)} needed request(s) allowed" in out

    # the job's own command, here, as the job's ServiceAccount
    conf = cluster.service_account_kubeconfig(api, schedule, tmp_path / "sa.conf", server=lab.server,
                                              ca_file=lab.pki.root / "ca.crt")
    monkeypatch.setenv("KUBECONFIG", str(conf))
    argv = schedule.arguments(output_dir=str(tmp_path / "out"))
    if "kubeconfig" in schedule.book.parameters:
        argv += ["--kubeconfig", str(conf)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    run = records.select(runbook=ref)[-1]
    assert run.status == "ok"
    [kept] = history.read(api, NAMESPACE, schedule.records_configmap)
    assert (kept["id"], kept["status"]) == (run.id, "ok")
    if ref == "auth/cluster-admin-audit":
        assert "Group:system:masters" in set(_table(run.notebook, "cluster-admins")["subject"])
    elif ref == "auth/certificate-expiry":
        found = _table(run.notebook, "certificates")
        assert any(s.startswith("serving certificate of 127.0.0.1") and st == "ok"
                   for s, st in zip(found["source"], found["status"]))
        assert any(s.startswith("kube-system/extension-apiserver-authentication") for s in found["source"])
    else:
        taken = _table(run.notebook, "snapshot-taken")
        assert (tmp_path / "out").is_dir() and taken["size"][0] > 0

    # without its roles the same command is Forbidden
    for obj in cluster.owned(api, name, NAMESPACE):
        if obj["kind"] in ("Role", "ClusterRole"):
            cluster.raw_request(api, "DELETE", cluster.object_path(obj))
    _wait_until(api, schedule.grant.subject, "get", "configmaps", NAMESPACE, schedule.records_configmap, False)
    assert cli.main(argv) == 1
    assert "Forbidden" in capsys.readouterr().err
    failed = records.select(runbook=ref)[-1]
    assert failed.exit_code == 1 and "Forbidden" in failed.error
    if ref != "etcd/snapshot":   # the runbook itself was refused, not only the record keeping
        nb = json.loads(open(failed.notebook).read())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert errors and "Forbidden" in errors[0]["evalue"]

    # applying again restores the roles; delete is a dry run until confirmed, then removes only its objects
    assert cli.main([*base, "--confirm", name]) == 0
    assert cli.main(["schedule", "delete", name, "--lab", lab.name, "--namespace", NAMESPACE]) == 0
    assert _cronjob(api, name) is not None
    assert cli.main(["schedule", "list", "--lab", lab.name, "--namespace", NAMESPACE]) == 0
    assert name in capsys.readouterr().out
    assert cli.main(["schedule", "delete", name, "--lab", lab.name, "--namespace", NAMESPACE, "--confirm", name]) == 0
    assert cluster.owned(api, name, NAMESPACE) == [] and _cronjob(api, name) is None
    client.CoreV1Api(api).read_namespace(NAMESPACE)   # the namespace stays


def test_runs_and_diff_name_exactly_the_new_cluster_admin(lab, tmp_path, capsys):
    api = lab.api_client()
    rbac = client.RbacAuthorizationV1Api(api)
    argv = ["run", "auth/cluster-admin-audit", "--lab", lab.name, "--output-dir", str(tmp_path), "--no-progress",
            "--fail-on", "cluster-admins:added"]
    assert cli.main(argv) == 0
    binding = {"metadata": {"name": "drift-test-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "User", "name": "drift-test-user", "apiGroup": "rbac.authorization.k8s.io"}]}
    rbac.create_cluster_role_binding(binding)
    try:
        assert cli.main(argv) == 3                     # the scheduled audit's rule caught it
    finally:
        rbac.delete_cluster_role_binding("drift-test-admin")
    capsys.readouterr()
    assert cli.main(["runs", "--runbook", "auth/cluster-admin-audit", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in listed[-2:]] == ["ok", "drift"]
    assert cli.main(["diff", listed[-2]["run"], listed[-1]["run"]]) == 0
    out = capsys.readouterr().out
    report = drift.report(listed[-2]["run"], listed[-1]["run"])
    admins = report.changes[report.changes["table"] == "cluster-admins"]
    assert list(admins["change"]) == ["added"]
    assert admins["row"].iloc[0] == ("subject User:drift-test-user, binding ClusterRoleBinding/drift-test-admin, "
                                     "scope cluster")
    assert "cluster-admins: +1 row (subject User:drift-test-user, binding ClusterRoleBinding/drift-test-admin" in out
    assert cli.main(["diff", listed[-2]["run"], listed[-1]["run"], "--fail-on", "cluster-admins:added"]) == 3


def test_certificate_expiry_reads_every_place_and_fails_within_the_limit(lab, tmp_path, capsys):
    argv = ["run", "auth/certificate-expiry", "--lab", lab.name, "--output-dir", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    run = records.find("auth/certificate-expiry~0")
    found = _table(run.notebook, "certificates")
    sources = list(found["source"])
    assert f"file {lab.pki.root / 'apiserver.crt'}" in sources
    assert any(s.startswith("kubeconfig CA of cluster") for s in sources)
    assert any(s.startswith("kubeconfig user") for s in sources)
    serving = found[found["source"].str.startswith("serving certificate of 127.0.0.1")]
    on_disk = found[found["source"] == f"file {lab.pki.root / 'apiserver.crt'}"]
    assert list(serving["serial"]) == list(on_disk["serial"])        # the handshake saw the file's certificate
    assert not any(k.endswith(".key") for k in sources)              # private keys are never read
    days = [float(d) for d in found["days left"]]
    assert days == sorted(days) and all(d > 300 for d in days)       # the lab's certificates are new
    capsys.readouterr()
    assert cli.main([*argv, "-p", "fail_within_days", "400"]) == 1   # every leaf has about 365 days left
    assert "fewer than 400 days left" in capsys.readouterr().err


@pytest.mark.parametrize("ref", ["auth/cluster-admin-audit", "auth/certificate-expiry"])
def test_every_declared_permission_is_needed(lab, tmp_path, monkeypatch, capsys, ref):
    """Least privilege, measured: take away any one declared resource and the job's run is Forbidden."""
    from kubebook.schedule.permissions import Grant, Rule
    api = lab.api_client()
    name = "n-" + ref.split("/")[1]
    base = ["schedule", ref, "--cron", "0 3 * * *", "--lab", lab.name, "--name", name, "--namespace", NAMESPACE]
    assert cli.main([*base, "--confirm", name]) == 0
    schedule = build(ref, "0 3 * * *", {}, lab=lab, name=name, namespace=NAMESPACE)
    conf = cluster.service_account_kubeconfig(api, schedule, tmp_path / "sa.conf", server=lab.server,
                                              ca_file=lab.pki.root / "ca.crt")
    argv = [*schedule.arguments(output_dir=str(tmp_path / "out"), record=False), "--kubeconfig", str(conf)]
    declared = [(i, group, resource) for i, rule in enumerate(schedule.grant.rules[:-1])   # the last: its records
                for group in rule.api_groups for resource in rule.resources]
    try:
        for index, group, resource in declared:
            rules = []
            for i, rule in enumerate(schedule.grant.rules):
                kept = tuple(r for r in rule.resources if i != index or r != resource)
                if kept:
                    rules.append(Rule(rule.api_groups, kept, rule.verbs, rule.scope, rule.namespace,
                                      rule.resource_names, rule.why))
            labels = {"kubebook.io/schedule": name}
            reduced = [o for o in Grant(schedule.service_account, NAMESPACE, rules).objects(labels)
                       if o["kind"] in ("Role", "ClusterRole")]
            for obj in reduced:
                cluster.apply(api, obj, dry_run=False)
            for obj in schedule.grant.objects(labels):   # a role left with no rule goes
                if obj["kind"] in ("Role", "ClusterRole") and cluster.object_path(obj) not in \
                        {cluster.object_path(o) for o in reduced}:
                    cluster.raw_request(api, "DELETE", cluster.object_path(obj))
            taken = schedule.grant.rules[index]
            _wait_until(api, schedule.grant.subject, taken.verbs[0], f"{resource}.{group}" if group else resource,
                        taken.in_namespace(NAMESPACE), (taken.resource_names or ("",))[0], False)
            assert cli.main(argv) == 1, f"{ref} ran without {resource}"
            assert "forbidden" in capsys.readouterr().err.lower(), resource
            assert cli.main([*base, "--confirm", name]) == 0          # all rules back
            capsys.readouterr()
        _wait_until(api, schedule.grant.subject, "list", "apiservices.apiregistration.k8s.io" if "cert" in ref
                    else "roles.rbac.authorization.k8s.io", "", "", True)
        assert cli.main(argv) == 0                                    # and with all of them it runs
    finally:
        cli.main(["schedule", "delete", name, "--lab", lab.name, "--namespace", NAMESPACE, "--confirm", name])
    assert len(declared) == {"auth/cluster-admin-audit": 5, "auth/certificate-expiry": 5}[ref]
