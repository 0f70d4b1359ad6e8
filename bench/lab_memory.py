"""Resident memory of an idle lab, and of ten labs side by side, measured from /proc in one run.

    python bench/lab_memory.py [--idle 60] [--labs 10]

One lab with the demo objects (``kubebook.samples.luffy``: a CRD, a namespace and one object of
each kind), left idle ``--idle`` seconds, then per process: RSS (what `ps` shows), the anonymous
part (heap and stacks, this lab's alone) and PSS (shared pages, mostly the binaries' code, divided
among every process that maps them). Then ``--labs`` labs started side by side with
`kubebook lab up --name student-01 ...`, each checked Ready, their memory summed and the drop of
the machine's MemAvailable read, and all of them stopped.
Goal: one idle lab <= 450 MiB RSS, so that 40 students fit on 24 GiB.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from kubebook import lab as labs, samples
from kubebook.lab import memory

GOAL_MIB = 450
QUIET = dict(log=lambda m: None)


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def create_all(api, manifests: list[dict]) -> None:
    """Create the demo objects in order; custom resources wait until their CRD is Established."""
    from kubebook.etcd.recover import wait_established
    from kubebook.objects import objects
    for body in manifests:
        objects(api).create(body)
        if body["kind"] == "CustomResourceDefinition":
            wait_established(api, [body["metadata"]["name"]], timeout=60)


def one_idle_lab(idle: float) -> pd.DataFrame:
    name = f"bench-memory-{os.getpid()}"
    with labs.running(name, nodes=3, timeout=240, keep=False) as lab:
        create_all(lab.api_client(), samples.luffy())
        time.sleep(idle)  # what a lab holds between a class's steps, not while it starts
        return pd.DataFrame(lab.memory())


def side_by_side(count: int, idle: float) -> dict:
    names = [f"student-{i:02d}" for i in range(1, count + 1)]
    taken = [n for n in names if labs.get(n).dir.exists()]
    if taken:
        raise SystemExit(f"labs {', '.join(taken)} exist already: not touching them")
    before = mem_available_mib()
    started = time.monotonic()
    try:
        for name in names:
            subprocess.run([sys.executable, "-m", "kubebook.cli", "lab", "up", "--name", name, "--nodes", "3"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        took = time.monotonic() - started
        ready = sum(labs.get(n).is_running() for n in names)
        time.sleep(idle)
        rows = [row for n in names for row in labs.get(n).memory()]
        return {"labs": count, "ready": ready, "seconds to start all": round(took, 1),
                "RSS sum (MiB)": memory.total(rows), "PSS sum (MiB)": memory.total(rows, "pss_mib"),
                "MemAvailable drop (MiB)": round(before - mem_available_mib(), 1)}
    finally:
        for name in names:
            subprocess.run([sys.executable, "-m", "kubebook.cli", "lab", "down", "--name", name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--labs", type=int, default=10)
    args = parser.parse_args(argv)
    table = one_idle_lab(args.idle)
    print(table[["process", "rss_mib", "anon_mib", "file_mib", "pss_mib"]].to_string(index=False))
    rss, pss = memory.total(table.to_dict("records")), memory.total(table.to_dict("records"), "pss_mib")
    print(f"one idle lab with the demo objects: RSS {rss} MiB ({rss / GOAL_MIB:.2f}x the {GOAL_MIB} MiB goal), "
          f"PSS {pss} MiB")
    rows = [{"figure": "one idle lab with the demo objects: RSS", "value": f"{rss} MiB", "ratio": rss / GOAL_MIB,
             "goal": f"<= {GOAL_MIB} MiB", "met": rss <= GOAL_MIB},
            {"figure": "the same lab: PSS (shared binary pages counted once)", "value": f"{pss} MiB", "ratio": None,
             "goal": "", "met": None}]
    if args.labs:
        many = side_by_side(args.labs, args.idle)
        print(", ".join(f"{k}: {v}" for k, v in many.items()))
        per_lab = many["MemAvailable drop (MiB)"] / args.labs
        print(f"per lab side by side: {per_lab:.0f} MiB of MemAvailable, PSS {many['PSS sum (MiB)'] / args.labs:.0f} "
              f"MiB; 40 labs ~ {40 * per_lab / 1024:.1f} GiB")
        rows.append({"figure": f"{args.labs} labs side by side, all Ready: memory each takes",
                     "value": f"{per_lab:.0f} MiB MemAvailable, {many['PSS sum (MiB)'] / args.labs:.0f} MiB PSS",
                     "ratio": None, "goal": "40 labs in 24 GiB", "met": 40 * per_lab / 1024 <= 24 and
                     many["ready"] == args.labs})
    return rows


if __name__ == "__main__":
    main()
