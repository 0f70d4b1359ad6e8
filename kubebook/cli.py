"""The ``kubebook`` command. It only parses arguments and maps errors to exit codes."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from .errors import KubebookError, RunbookFailed


# Built once a process: callers in-process (a notebook, the adversarial suite's thousands of refused
# runs) would otherwise spend most of a refusal building it again. parse_args does not change it,
# and the handlers only read the list defaults it hands out.
@functools.cache
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubebook", description="Jupyter runbooks for Kubernetes operations.")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list runbooks with their purpose and parameters")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    run = sub.add_parser("run", help="validate parameters, run a runbook, write notebook + HTML")
    run.add_argument("runbook", help="topic/name (e.g. etcd/operations) or a path to an .ipynb")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run.add_argument("--kubeconfig", help="kubeconfig file (sets the runbook's kubeconfig parameter)")
    run.add_argument("--context", help="kubeconfig context (sets the runbook's context parameter)")
    run.add_argument("--lab", help="run against the kubebook lab of this name (sets its lab parameters)")
    run.add_argument("--secrets-file", metavar="FILE",
                     help="JSON or YAML mapping of secret parameters to values (keep it 0600); values given "
                          "here never reach the notebook, a log or a command line")
    run.add_argument("--output-dir", default="runs", help="where executed notebooks go (default: runs, 0700)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    run.add_argument("-f", "--parameters-file", help="YAML file of parameters (-p values win); for secret ones")
    _unattended_options(run)
    run.add_argument("--record-configmap", default="", metavar="NAMESPACE/NAME",
                     help="also keep the run record in this ConfigMap (what scheduled jobs do)")

    runs = sub.add_parser("runs", help="run records: every run, its target, status and outputs")
    runs.add_argument("--runbook", default="", help="only runs of this runbook (topic/name)")
    runs.add_argument("--failed", action="store_true", help="only runs that did not exit 0")
    runs.add_argument("--last", type=int, default=0, help="only the newest N")
    runs.add_argument("--keep", type=int, default=0, help="retention now: keep the newest N per runbook")
    runs.add_argument("--json", action="store_true", help="machine-readable output")

    diff = sub.add_parser("diff", help="what changed between two runs' result tables")
    diff.add_argument("run_a", help="older run: record id, record or notebook path, or RUNBOOK~N (N-th newest)")
    diff.add_argument("run_b", help="newer run, the same ways")
    diff.add_argument("--fail-on", action="append", default=[], metavar="RULE",
                      help="exit 3 when drift matches (TABLE, TABLE:added|removed|changed[:COLUMN], "
                           "TABLE:grew:COLUMN:FACTOR)")

    sched = sub.add_parser("schedule", help="run a runbook on a schedule: CronJob (default) or --host units")
    sched.add_argument("what", help="RUNBOOK to schedule, or `list`, or `delete`")
    sched.add_argument("name", nargs="?", default="", help="with delete: the schedule's name")
    sched.add_argument("--cron", help='when, in cron\'s five fields (e.g. "0 */6 * * *")')
    sched.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    sched.add_argument("--kubeconfig", help="the cluster to create the CronJob in")
    sched.add_argument("--context", help="kubeconfig context")
    sched.add_argument("--lab", help="the kubebook lab of this name (its kubeconfig, and its etcd for etcd runbooks)")
    sched.add_argument("--name", dest="schedule_name", default="", help="schedule name (default: topic-name)")
    sched.add_argument("--namespace", default="", help="namespace of the CronJob (default: kubebook; list: all)")
    sched.add_argument("--image", default="", help="container image with kubebook (default: kubebook:VERSION, "
                                                    "built from the Dockerfile)")
    sched.add_argument("--confirm", default="", help="the schedule's name: create (or delete) it; else a dry run")
    sched.add_argument("--host", action="store_true", help="write a crontab line and systemd units instead")
    sched.add_argument("--unit-dir", default="", help="with --host: where the files go")
    sched.add_argument("--deadline", type=int, default=3600, help="seconds a run may take (activeDeadlineSeconds)")
    sched.add_argument("--output-pvc", default="", help="claim for outputs and records (default: an emptyDir)")
    sched.add_argument("--data-pvc", default="", help="claim for the runbook's data directory (default: hostPath)")
    sched.add_argument("--output-url", default="", help="executed notebooks to object storage (s3://...) "
                                                         "through papermill's handlers in the image")
    sched.add_argument("--time-zone", default="", help="CronJob timeZone (default: the controller's)")
    _unattended_options(sched)

    lab = sub.add_parser("lab", help="the local lab: a real control plane on loopback")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="start (or resume) the lab and wait until nodes are Ready")
    up.add_argument("--nodes", type=int, default=3, help="nodes in total (k8s-master + slaves; default 3)")
    up.add_argument("--timeout", type=float, default=180.0)
    down = lab_sub.add_parser("down", help="stop exactly the lab's own processes")
    down.add_argument("--keep-data", action="store_true", help="keep certificates and etcd data to resume later")
    reset = lab_sub.add_parser("reset", help="back to the state `lab up` left (nodes, labels, taints, objects)")
    reset.add_argument("--full", action="store_true", help="restore the etcd snapshot (slower; for a broken etcd)")
    lab_sub.add_parser("status", help="each component: running, crashed or stopped, with its log")
    lab_sub.add_parser("env", help="print export lines for kubectl and etcdctl")
    lab_sub.add_parser("build", help="build (or find) the upstream binaries the lab runs")
    for sp in (up, down, reset, lab_sub.choices["status"], lab_sub.choices["env"]):
        sp.add_argument("--name", default="kubebook", help="lab name (several labs can run side by side)")

    undo = sub.add_parser("cleanup", help="undo an earlier run from its record: delete what it created, put back "
                                          "what it changed (a dry run unless --confirm names the run)")
    undo.add_argument("run", nargs="?", help="the run's id (omit to list the runs on record)")
    undo.add_argument("--confirm", default="", help="the run id, then every scope the dry run lists")
    for sp in (undo,):
        sp.add_argument("--kubeconfig", default="")
        sp.add_argument("--context", default="")
        sp.add_argument("--lab", default="", help="the kubebook lab the run acted on")
    jupyter = sub.add_parser("jupyter", help="start (or reuse) a lab, then JupyterLab on 127.0.0.1 at the runbooks")
    jupyter.add_argument("--lab", default="kubebook", help="lab the runbooks act on (default: kubebook)")
    jupyter.add_argument("--port", type=int, default=0, help="JupyterLab's port (default: a free one)")
    jupyter.add_argument("--nodes", type=int, default=3, help="nodes if the lab is started now (default 3)")

    demo = sub.add_parser("demo", help="start a lab and run every runbook on it headlessly")
    demo.add_argument("--name", default="demo")
    demo.add_argument("--output-dir", default="runs")
    demo.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    return p


def _unattended_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, default=0, help="run again up to N times after a transient failure")
    p.add_argument("--retry-delay", type=float, default=30.0, help="seconds between attempts (default 30)")
    p.add_argument("--notify", default=os.environ.get("KUBEBOOK_NOTIFY_URL", ""), metavar="URL",
                   help="webhook for a JSON summary after the last attempt (@FILE: the URL is in FILE)")
    p.add_argument("--notify-on", default="failure", choices=["failure", "always"])
    p.add_argument("--fail-on", action="append", default=[], metavar="RULE",
                   help="exit 3 when the result tables drifted from the previous run (see `kubebook diff`)")


def _export_lines(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={v}" for k, v in env.items())


def _cmd_list(args) -> int:
    from . import runner
    books = [r.describe() for r in runner.discover()]
    if args.json:
        print(json.dumps(books, indent=2, default=str))
        return 0
    for b in books:
        print(f"{b['runbook']}: {b['purpose']}")
        for p in b["parameters"]:
            req = " (required)" if p["required"] else f" = {p['default']!r}"
            print(f"    {p['name']}: {p['type']}{req}  {p['help']}")
    return 0


def _cmd_run(args) -> int:
    from . import runner, unattended
    values: dict = {**unattended.parameters_file(args.parameters_file), **dict(args.parameter)}
    if args.secrets_file:
        values.update(runner.read_secrets_file(args.secrets_file))
    for name in ("kubeconfig", "context"):
        if getattr(args, name):
            values[name] = getattr(args, name)
    outcome = unattended.run(args.runbook, values, output_dir=args.output_dir, progress=not args.no_progress,
                             lab_name=args.lab or "", retries=args.retries, retry_delay=args.retry_delay,
                             notify=unattended.notify_url(args.notify), notify_on=args.notify_on,
                             fail_on=tuple(args.fail_on), record_configmap=args.record_configmap)
    print("\n".join(outcome.lines))
    if outcome.exit_code:
        print(f"kubebook: {outcome.message}", file=sys.stderr)
    return outcome.exit_code


def _cmd_runs(args) -> int:
    from . import records
    if args.keep:
        for book, removed in records.prune_all(keep=args.keep).items():
            print(f"{book}: removed {len(removed)} record(s) beyond the newest {args.keep}")
    table = records.table(runbook=args.runbook, failed=args.failed, last=args.last)
    print(table.to_json(orient="records", indent=2) if args.json else
          (table.to_string(index=False) if len(table) else "no recorded runs"))
    return 0


def _cmd_diff(args) -> int:
    from . import drift
    report = drift.report(args.run_a, args.run_b, fail_on=tuple(args.fail_on))
    print("\n".join(report.lines))
    if report.exit_code:
        print(f"kubebook: {report.message}", file=sys.stderr)
    return report.exit_code


def _cmd_schedule(args) -> int:
    from .schedule import commands
    return commands.main(args)


def _cmd_lab(args) -> int:
    from . import binaries, lab as labs
    if args.lab_command == "build":
        for name, path in binaries.ensure().items():
            print(f"{name:24} {path}")
        for name in binaries.TOOLS:
            print(f"{name:24} {binaries.ensure_tool(name)}")
        return 0
    lab = labs.get(args.name)
    if args.lab_command == "up":
        try:
            lab.up(nodes=args.nodes, timeout=args.timeout)
        except KeyboardInterrupt:
            print(f"kubebook: lab up interrupted; every process it started is recorded: `kubebook lab up --name "
                  f"{lab.name}` carries on, `kubebook lab down --name {lab.name}` removes it", file=sys.stderr)
            return 130
        print(f"lab {lab.name} is ready: nodes {', '.join(lab.nodes)}")
        print(_export_lines(lab.env()))
    elif args.lab_command == "down":
        stopped = lab.down(keep_data=args.keep_data)
        print(f"lab {lab.name}: stopped {', '.join(stopped) or 'nothing (no process was running)'}")
    elif args.lab_command == "reset":
        done = lab.reset(full=args.full)
        print(f"lab {lab.name} reset ({done['method']}) in {done['seconds']} s")
    elif args.lab_command == "status":
        import pandas as pd
        print(pd.DataFrame(lab.status()).to_string(index=False))
        return 0 if lab.is_running() else 3
    elif args.lab_command == "env":
        if not lab.ports:
            raise KubebookError(f"lab {lab.name} has never been started: run `kubebook lab up --name {lab.name}`")
        print(_export_lines(lab.env()))
    return 0


def _cmd_cleanup(args) -> int:
    import pandas as pd
    from . import connect, ownership
    from .plan import Plan
    if not args.run:
        rows = [{"run": r.run, "created": len(r.created), "changed": len(r.changed), "cleaned": r.cleaned}
                for r in ownership.records()]
        print(pd.DataFrame(rows, columns=["run", "created", "changed", "cleaned"]).to_string(index=False))
        return 0
    plan = Plan.undo(args.run, confirm=args.confirm or None,
                     cluster=connect.target(args.kubeconfig, args.context, args.lab))
    table = plan.cleanup()
    print(table.to_string(index=False))
    return 0


def _cmd_jupyter(args) -> int:
    from .classroom import serve
    return serve(args.lab, port=args.port, nodes=args.nodes)


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return 0 if run_demo(name=args.name, output_dir=args.output_dir, keep=args.keep) else 1


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a command as Ctrl-C does: cleanups run, no process is left unrecorded


def _take_parameters(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``-p NAME VALUE`` pairs taken out before argparse sees them, so a VALUE may start with ``-``
    (``-p keep -1``, ``-p timeout -inf``) and still reach the runbook's own check."""
    rest, pairs, i = [], [], 0
    while i < len(argv):
        if argv[i] in ("-p", "--parameter") and i + 2 < len(argv):
            pairs.append((argv[i + 1], argv[i + 2]))
            i += 3
        else:  # anything else, and a -p missing its values, is argparse's to judge
            rest.append(argv[i])
            i += 1
    return rest, pairs


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _main(argv)
    finally:  # called in-process (tests, a notebook), main must not leave its handler behind
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, pairs = _take_parameters(argv)
    args = _parser().parse_args(argv)
    if pairs:
        args.parameter = [*(getattr(args, "parameter", None) or []), *pairs]
    handlers = {"list": _cmd_list, "run": _cmd_run, "lab": _cmd_lab, "jupyter": _cmd_jupyter, "demo": _cmd_demo,
                "runs": _cmd_runs, "diff": _cmd_diff, "schedule": _cmd_schedule, "cleanup": _cmd_cleanup}
    try:
        return handlers[args.command](args)
    except RunbookFailed as exc:
        print(f"kubebook: {exc}\nexecuted notebook: {exc.output_path}", file=sys.stderr)
        return exc.exit_code
    except KubebookError as exc:
        print(f"kubebook: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
