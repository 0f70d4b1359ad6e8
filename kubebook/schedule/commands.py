"""``kubebook schedule RUNBOOK``, ``schedule list`` and ``schedule delete NAME``: what each prints and does.

Every change is a :class:`kubebook.plan.Plan` whose target is the schedule's name: without
``--confirm NAME`` nothing is created, deleted or written (in a cluster the manifests are still
sent as a server-side dry run, so the apiserver checks them).
"""
from __future__ import annotations

import sys

import pandas as pd

from .. import paths
from ..errors import ParameterError
from ..plan import Plan
from . import cluster, host
from .job import DEFAULT_IMAGE, DEFAULT_NAMESPACE, build


def _print(text: str = "") -> None:
    print(text, file=sys.stdout)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False) if len(frame) else "(none)"


def _cluster_api(args):
    from ..connect import api_client, current_context
    if args.lab:
        from .. import lab as labs
        lab = labs.get(args.lab)
        return lab.api_client(), f"lab {lab.name} ({lab.server})"
    api = api_client(args.kubeconfig or None, args.context or None)
    context = args.context or current_context(args.kubeconfig or None) or "in-cluster"
    return api, f"context {context} ({api.configuration.host})"


def main(args) -> int:
    if args.what == "list":
        return list_schedules(args)
    if args.what == "delete":
        return delete(args)
    return create(args)


def create(args) -> int:
    if not args.cron:
        raise ParameterError("--cron is needed: when to run, e.g. --cron \"0 */6 * * *\"")
    lab = None
    if args.lab:
        from .. import lab as labs
        lab = labs.get(args.lab)
    schedule = build(args.what, args.cron, dict(args.parameter), name=args.schedule_name, namespace=args.namespace or DEFAULT_NAMESPACE,
                     lab=lab, image=args.image or DEFAULT_IMAGE,
                     retries=args.retries, retry_delay=args.retry_delay, notify=_notify(args.notify),
                     notify_on=args.notify_on, fail_on=tuple(args.fail_on), deadline_seconds=args.deadline,
                     output_claim=args.output_pvc, data_claim=args.data_pvc, time_zone=args.time_zone,
                     output_url=args.output_url)
    if args.host:
        return _create_on_host(schedule, args)
    _print(f"schedule {schedule.name}: {schedule.book.id} at \"{schedule.cron}\" in namespace {schedule.namespace}")
    _print(f"\npermissions of ServiceAccount {schedule.namespace}/{schedule.service_account} "
           f"(declared by the runbook, plus its run records):\n{_table(schedule.grant.table())}")
    _print(f"\nmanifests (Secret values masked):\n---\n{schedule.show()}")
    api, where = _cluster_api(args)
    _print(f"cluster: {where}")
    plan = Plan(target=schedule.name, confirm=args.confirm or None, kind="schedule")
    made = cluster.make(api, schedule, plan=plan)
    _print(_table(made))
    if plan.dry_run:
        _print(f"\nnothing was created; the apiserver validated every manifest. Run again with "
               f"--confirm {schedule.name} to create them.")
        return 0
    access = cluster.check_access(api, schedule)
    needed = access[access["expected"] == "allowed"]
    _print(f"\nSubjectAccessReview for {schedule.grant.subject}: {len(needed)} needed request(s) allowed, "
           f"{len(access) - len(needed)} others denied (Secrets, deletes, escalation):")
    _print(_table(needed))
    if args.lab:
        _print("\nkwok runs no containers: on a lab the CronJob makes Jobs whose Pods never run "
               "(README, Scheduled jobs, says how the tests run the job's command instead).")
    return 0


def _notify(value: str) -> str:
    from ..unattended import notify_url
    return notify_url(value) if value else ""


def _create_on_host(schedule, args) -> int:
    directory = host.unit_dir(schedule.name, args.unit_dir)
    files = host.files(schedule, directory)
    secret = set(schedule.secret_files())
    _print(f"schedule {schedule.name}: {schedule.book.id} at \"{schedule.cron}\" on this host; files in {directory}")
    for name, text in files.items():
        _print(f"\n# {name}" + (" (0600, not shown: it holds secret values)" if name in secret else ""))
        if name not in secret:
            _print(text.rstrip())
    plan = Plan(target=schedule.name, confirm=args.confirm or None, kind="schedule")
    written = plan.step("write-units", f"write {len(files)} file(s) (0600) to {directory}",
                        lambda: host.write(schedule, directory))
    if plan.dry_run:
        return 0
    status, output = host.verify(written)
    _print(f"\nsystemd-analyze verify: {status}" + (f"\n{output}" if output else ""))
    _print("\nto install (nothing was installed):\n" + "\n".join(host.install_hint(schedule, directory)))
    return 0 if status != "failed" else 1


def _host_schedules() -> pd.DataFrame:
    rows = []
    root = paths.state_root() / "schedules"
    for timer in sorted(root.glob("*/kubebook-*.timer")) if root.is_dir() else []:
        calendar = next((l.split("=", 1)[1] for l in timer.read_text().splitlines() if l.startswith("OnCalendar=")), "")
        rows.append({"schedule": timer.stem.removeprefix("kubebook-"), "namespace": "", "runbook": "",
                     "cron": calendar, "where": f"host {timer.parent}"})
    return pd.DataFrame(rows)


def list_schedules(args) -> int:
    api, where = _cluster_api(args)
    table = cluster.listing(api, args.namespace or "")
    hosts = _host_schedules()
    if len(hosts):
        table = pd.concat([table, hosts], ignore_index=True).fillna("")
    _print(f"schedules made by kubebook in {where}:\n{_table(table)}")
    return 0


def delete(args) -> int:
    if not args.name:
        raise ParameterError("schedule delete NAME: name the schedule (`kubebook schedule list` shows them)")
    if args.host:
        directory = host.unit_dir(args.name, args.unit_dir)
        ours = [directory / n for n in (f"kubebook-{args.name}.service", f"kubebook-{args.name}.timer",
                                        f"kubebook-{args.name}.crontab", "parameters.yaml", "notify-url")]
        ours = [p for p in ours if p.exists()]
        plan = Plan(target=args.name, confirm=args.confirm or None, kind="schedule")
        def remove() -> str:
            for path in ours:
                path.unlink()
            return f"removed {len(ours)} file(s)"
        plan.step("remove-units", f"remove {', '.join(p.name for p in ours) or 'nothing'} from {directory} "
                  f"(disable the timer or crontab line first)", remove)
        _print(_table(plan.table()))
        return 0
    api, where = _cluster_api(args)
    objects = cluster.owned(api, args.name, args.namespace or DEFAULT_NAMESPACE)
    _print(f"schedule {args.name} in {where}: {len(objects)} object(s) carry its label")
    plan = Plan(target=args.name, confirm=args.confirm or None, kind="schedule")
    plan.step("backup", "back up its run records (ConfigMap, YAML 0600)",
              lambda: str(cluster.backup(objects, args.name) or "no records to back up"))
    _print(_table(cluster.remove(api, objects, plan=plan)))
    _print(_table(plan.table()))
    return 0
