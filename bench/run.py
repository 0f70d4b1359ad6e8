"""Every benchmark in this directory, one after the other, then one table: figure, value, ratio, goal.

    python bench/run.py [--only lab_start,lab_reset] [--quick]

Each benchmark measures its figures within its own run (both sides of a ratio interleaved on the
same machine, which is noisy) and prints its details as it goes; this table is the summary.
``--quick`` runs the long ones smaller (fewer objects, labs and rounds) for a smoke check.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

# module -> (arguments for a full run, arguments for --quick)
BENCHMARKS = {
    "lab_start": ([], ["--rounds", "1"]),
    "lab_reset": ([], ["--rounds", "1"]),
    "lab_memory": ([], ["--idle", "20", "--labs", "2"]),
    "namespace_recovery": ([], ["--objects", "200"]),
    "access_matrix": ([], ["--subjects", "5", "--resources", "5", "--verbs", "4", "--rounds", "1"]),
    "run_records": ([], ["--saves", "50", "--rounds", "1"]),
    "why_pending": ([], ["--nodes", "10", "--pods", "600", "--running", "100", "--runs", "2"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b in args.only.split(",")]
    rows = []
    for name in chosen:
        print(f"=== {name}", flush=True)
        started = time.monotonic()
        try:
            found = importlib.import_module(name).main(BENCHMARKS[name][1 if args.quick else 0])
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            found = [{"figure": name, "value": f"failed: {type(exc).__name__}: {exc}"[:160], "ratio": None,
                      "goal": "", "met": False}]
        rows += [{**r, "benchmark": name, "seconds": round(time.monotonic() - started)} for r in found]
    table = pd.DataFrame(rows, columns=["benchmark", "figure", "value", "ratio", "goal", "met", "seconds"])
    table["ratio"] = table["ratio"].map(lambda r: "" if r is None or pd.isna(r) else f"{r:.2f}x")
    table["met"] = table["met"].map(lambda m: "" if m is None or pd.isna(m) else ("yes" if m else "NO"))
    with pd.option_context("display.max_colwidth", None, "display.width", 250):
        print("\n" + table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
