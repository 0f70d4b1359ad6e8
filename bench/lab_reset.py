"""`lab reset` against `lab down` + `lab up`, measured in one run on the same machine.

    python bench/lab_reset.py [--rounds 3]

Each round changes what a class changes (a node label, a taint, a namespace with a two-Pod
Deployment, a deleted ClusterRole), then times `reset` (the replay) and `reset --full` (snapshot
restore and control-plane restart); the clock stops when the apiserver serves the baseline. The
reference is a fresh lab: `down`, then `up` (certificates, five components, three nodes Ready).
Prints each round and the ratios of medians (goal: reset <= 2 s and <= 0.3x down + up).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from kubernetes import client

from kubebook import lab as labs
from kubebook.waits import wait_for

QUIET = dict(log=lambda m: None)


def change_things(lab: labs.Lab) -> None:
    api = lab.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.patch_node("k8s-slave1", {"metadata": {"labels": {"disktype": "ssd"}}})
    core.patch_node("k8s-slave2", {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})
    core.create_namespace({"metadata": {"name": "student"}})
    wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace="student", timeout=60, what="default SA")
    apps.create_namespaced_deployment("student", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    wait_for(api, "pods", lambda ps: len(ps) == 2 and all(p["status"].get("phase") == "Running" for p in ps.values()),
             namespace="student", timeout=120, what="2 Running Pods")
    client.RbacAuthorizationV1Api(api).delete_cluster_role("view")


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    name = f"bench-reset-{os.getpid()}"
    lab = labs.get(name)
    replay, full, rebuild = [], [], []
    try:
        lab.up(nodes=3, timeout=240, **QUIET)
        for i in range(args.rounds):
            change_things(lab)
            replay.append(timed(lambda: lab.reset(**QUIET)))
            change_things(lab)
            full.append(timed(lambda: lab.reset(full=True, **QUIET)))
            rebuild.append(timed(lambda: (lab.down(**QUIET), lab.up(nodes=3, timeout=240, **QUIET))))
            print(f"round {i + 1}: reset {replay[-1]:.2f}s   reset --full {full[-1]:.2f}s   "
                  f"down + up {rebuild[-1]:.2f}s", flush=True)
    finally:
        lab.down(**QUIET)
    r, f, b = (statistics.median(x) for x in (replay, full, rebuild))
    print(f"median: reset {r:.2f}s ({r / b:.2f}x of down + up; goal <= 2 s and <= 0.3x), "
          f"reset --full {f:.2f}s ({f / b:.2f}x), down + up {b:.2f}s")
    return [{"figure": "lab reset vs lab down + lab up", "value": f"{r:.2f} s vs {b:.2f} s", "ratio": r / b,
             "goal": "<= 2 s and <= 0.3x", "met": r <= 2 and r / b <= 0.3},
            {"figure": "lab reset --full (snapshot restore) vs down + up", "value": f"{f:.2f} s", "ratio": f / b,
             "goal": "(for comparison)", "met": None}]


if __name__ == "__main__":
    main()
