"""The ``kubebook`` command. It only parses arguments and maps errors to exit codes."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import KubebookError, RunbookFailed


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
    run.add_argument("--output-dir", default="runs", help="where executed notebooks go (default: runs)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    lab = sub.add_parser("lab", help="the local lab: a real control plane on loopback")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="start (or resume) the lab and wait until nodes are Ready")
    up.add_argument("--nodes", type=int, default=3, help="nodes in total (k8s-master + slaves; default 3)")
    up.add_argument("--timeout", type=float, default=180.0)
    down = lab_sub.add_parser("down", help="stop exactly the lab's own processes")
    down.add_argument("--keep-data", action="store_true", help="keep certificates and etcd data to resume later")
    lab_sub.add_parser("status", help="each component: running, crashed or stopped, with its log")
    lab_sub.add_parser("env", help="print export lines for kubectl and etcdctl")
    lab_sub.add_parser("build", help="build (or find) the upstream binaries the lab runs")
    for sp in (up, down, lab_sub.choices["status"], lab_sub.choices["env"]):
        sp.add_argument("--name", default="kubebook", help="lab name (several labs can run side by side)")

    demo = sub.add_parser("demo", help="start a lab and run every runbook on it headlessly")
    demo.add_argument("--name", default="demo")
    demo.add_argument("--output-dir", default="runs")
    demo.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    return p


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
    from . import runner
    book = runner.find(args.runbook)
    values: dict = dict(args.parameter)
    for name in ("kubeconfig", "context"):
        if getattr(args, name):
            values[name] = getattr(args, name)
    if args.lab:
        from . import lab as labs
        values = {**runner.lab_values(book, labs.get(args.lab)), **values}
    result = runner.run(book, values, output_dir=args.output_dir, progress=not args.no_progress)
    print(f"{result.runbook}: ok in {result.seconds:.1f}s\nnotebook: {result.notebook}\nhtml: {result.html}")
    return 0


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
        lab.up(nodes=args.nodes, timeout=args.timeout)
        print(f"lab {lab.name} is ready: nodes {', '.join(lab.nodes)}")
        print(_export_lines(lab.env()))
    elif args.lab_command == "down":
        stopped = lab.down(keep_data=args.keep_data)
        print(f"lab {lab.name}: stopped {', '.join(stopped) or 'nothing (no process was running)'}")
    elif args.lab_command == "status":
        import pandas as pd
        print(pd.DataFrame(lab.status()).to_string(index=False))
        return 0 if lab.is_running() else 3
    elif args.lab_command == "env":
        if not lab.ports:
            raise KubebookError(f"lab {lab.name} has never been started: run `kubebook lab up --name {lab.name}`")
        print(_export_lines(lab.env()))
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return 0 if run_demo(name=args.name, output_dir=args.output_dir, keep=args.keep) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"list": _cmd_list, "run": _cmd_run, "lab": _cmd_lab, "demo": _cmd_demo}
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
