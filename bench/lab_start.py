"""Lab start-up: full lab to Ready versus etcd + kube-apiserver alone, measured in one run.

    python bench/lab_start.py [--rounds 2]

The baseline starts the same etcd and kube-apiserver (same binaries, flags and certificates)
and stops the clock at the apiserver's /readyz. The lab's figure is a fresh `lab up`: PKI,
kubeconfigs, all five components, three nodes Ready and the default ServiceAccount.
Prints each round and the ratio of medians (goal: <= 1.3).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from kubebook import lab as labs


def baseline(name: str) -> float:
    lab = labs.get(name)
    # certificates, ports and kubeconfigs are not part of the baseline's clock
    lab.up(phases=["binaries", "certs", "ports", "kubeconfigs"], log=lambda m: None)
    started = time.monotonic()
    deadline = started + 120
    lab.start_component("etcd")
    lab.wait_ready("etcd", deadline=deadline)
    lab.start_component("kube-apiserver")
    lab.wait_ready("kube-apiserver", deadline=deadline)
    took = time.monotonic() - started
    lab.down(log=lambda m: None)
    return took


def full_lab(name: str) -> float:
    lab = labs.get(name)
    started = time.monotonic()
    lab.up(nodes=3, timeout=180, log=lambda m: None)
    took = time.monotonic() - started
    lab.down(log=lambda m: None)
    return took


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    base, full = [], []
    for i in range(args.rounds):  # interleaved, so machine noise hits both alike
        base.append(baseline(f"bench-base-{os.getpid()}-{i}"))
        full.append(full_lab(f"bench-full-{os.getpid()}-{i}"))
        print(f"round {i + 1}: etcd+apiserver ready {base[-1]:.2f}s   lab Ready {full[-1]:.2f}s")
    b, f = statistics.median(base), statistics.median(full)
    print(f"median: etcd+apiserver {b:.2f}s, full lab {f:.2f}s, ratio {f / b:.2f}x (goal <= 1.3x)")
    return [{"figure": "lab up to Ready vs etcd + apiserver alone", "value": f"{f:.2f} s vs {b:.2f} s",
             "ratio": f / b, "goal": "<= 1.3x", "met": f / b <= 1.3}]


if __name__ == "__main__":
    main()
