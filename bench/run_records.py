"""Run records: the retention every save applies, with this process's read cache versus without, in one run.

    python bench/run_records.py [--runbooks 43] [--keep 50] [--saves 200] [--rounds 3]

Fills a private records directory with ``keep`` records for each of ``runbooks`` runbooks (the
most retention leaves on disk), then saves ``saves`` more records round-robin, each save pruning
its runbook back to ``keep``: once with the cache emptied before every save (every record parsed
again, as before the cache) and once with it warm. Rounds alternate the order so machine noise hits
both alike; both must leave the same records. Prints each round, the medians and the ratio.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time

from kubebook import records


def _record(book: int, n: int) -> records.RunRecord:
    started = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=n)
    return records.RunRecord(id=f"topic-book{book}-{started:%Y%m%d-%H%M%S}", runbook=f"topic/book{book}",
                             target="context bench", started=started.isoformat(), seconds=1.0, status="bad input",
                             exit_code=2, parameters={"namespace": "default", "confirm": ""},
                             error="ParameterError: namespace: not a Kubernetes name")


def _saves(opts, first: int, cold: bool) -> float:
    started = time.perf_counter()
    for i in range(opts.saves):
        if cold:
            records._read.clear()
        records.save(_record(i % opts.runbooks, first + i), keep=opts.keep)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> list[dict]:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--runbooks", type=int, default=43)
    args.add_argument("--keep", type=int, default=50)
    args.add_argument("--saves", type=int, default=200)
    args.add_argument("--rounds", type=int, default=3)
    opts = args.parse_args(argv)
    previous = os.environ.get("KUBEBOOK_RUNS_ROOT")
    with tempfile.TemporaryDirectory(prefix="kubebook-bench-records-") as directory:
        os.environ["KUBEBOOK_RUNS_ROOT"] = directory
        try:
            n = 0
            for book in range(opts.runbooks):
                for _ in range(opts.keep):
                    records.write_private(os.path.join(directory, f"seed-{n}.json"), _record(book, n).to_json())
                    n += 1
            print(f"{n} records on disk ({opts.runbooks} runbooks x {opts.keep}); {opts.saves} saves per side")
            timings: dict[str, list[float]] = {"cold": [], "cached": []}
            for rnd in range(opts.rounds):
                for side in (("cold", "cached") if rnd % 2 == 0 else ("cached", "cold")):
                    seconds = _saves(opts, n, cold=side == "cold")
                    n += opts.saves
                    timings[side].append(seconds)
                    print(f"round {rnd + 1} {side:>6}: {seconds / opts.saves * 1000:.2f} ms a save", flush=True)
            left = records.all_records()
            assert len(left) == opts.runbooks * opts.keep, len(left)
            records._read.clear()
            assert [r.id for r in records.all_records()] == [r.id for r in left]  # the cache saw what the disk has
        finally:
            records._read.clear()
            if previous is None:
                os.environ.pop("KUBEBOOK_RUNS_ROOT", None)
            else:
                os.environ["KUBEBOOK_RUNS_ROOT"] = previous
    cold, cached = (statistics.median(timings[s]) / opts.saves * 1000 for s in ("cold", "cached"))
    print(f"median: {cold:.2f} ms a save without the cache, {cached:.2f} ms with it: {cold / cached:.1f}x")
    return [{"figure": f"run record save + retention, {opts.runbooks * opts.keep} records on disk",
             "value": f"{cached:.2f} ms (without the read cache {cold:.2f} ms)", "ratio": cold / cached,
             "goal": ">= 3x", "met": cold / cached >= 3}]


if __name__ == "__main__":
    main()
