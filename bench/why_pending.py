"""Benchmark: explain every Pending Pod on a lab of 100 nodes and 5,000 Pods.

Starts (or reuses) the lab ``bench-sched``, creates Pods in groups that share a template, as
ReplicaSets do: most cannot be scheduled (a selector no node matches, more CPU than a node has,
a taint nobody tolerates, anti-affinity on top of a selector), a few hundred run. Then, in one
run, it times

- listing nodes, namespaces and Pods once (what any explanation has to read), and
- explaining ALL Pending Pods: the same listing plus every filter for every Pending Pod against
  every node, computed in memory from one indexed snapshot,

and prints both with their ratio (goal: explaining ≤ 2 s). For honesty it also prints the
explanation without the per-template memo (every Pod against every node).

    .venv/bin/python bench/why_pending.py [--nodes 100] [--pods 5000] [--keep]

Setting up takes minutes on 2 cores; it is not run by the tests.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client
from tqdm import tqdm

from kubebook import lab as labs
from kubebook.plan import Plan
from kubebook.scheduling import explain as ex
from kubebook.scheduling import nodes as node_verbs
from kubebook.scheduling import workloads
from kubebook.waits import wait_for

NAMESPACE = "bench"
GROUP = 100  # Pods per template, like the replicas of one ReplicaSet


def shapes(pending_groups: int) -> list[tuple[str, dict]]:
    """(group name, Pod spec fields) — one schedulable shape, the rest unschedulable in varied ways."""
    kinds = [
        ("selector", lambda i: {"nodeSelector": {"disktype": f"nvme-{i}"}}),
        ("cpu", lambda i: {"containers": [_container({"cpu": f"{3 + i % 5}"})]}),
        ("taint", lambda i: {"nodeSelector": {"bench-tainted": "yes"}}),
        ("affinity", lambda i: {"affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": [str(64 + i)]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": [f"zone-{i}"]}]}]}},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"group": f"affinity-{i}"}},
                 "topologyKey": "kubernetes.io/hostname"}]}}}),
        ("memory", lambda i: {"containers": [_container({"cpu": "100m", "memory": f"{5 + i % 3}Gi"})]}),
    ]
    result = []
    for i in range(pending_groups):
        kind, make = kinds[i % len(kinds)]
        result.append((f"{kind}-{i}", make(i)))
    return result


def _container(requests: dict) -> dict:
    return {"name": "app", "image": "nginx:1.27", "resources": {"requests": requests}}


def pod_body(group: str, fields: dict, index: int) -> dict:
    spec = {"containers": [_container({"cpu": "10m", "memory": "16Mi"})], "terminationGracePeriodSeconds": 0,
            **fields}
    return {"metadata": {"name": f"{group}-{index}", "labels": {"group": group}}, "spec": spec}


def create(api, bodies: list[dict], *, workers: int = 8) -> None:
    core = client.CoreV1Api(api)

    def one(body):
        try:
            core.create_namespaced_pod(NAMESPACE, body)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:  # already there from an earlier run: reuse it
                raise
    with ThreadPoolExecutor(workers) as pool:  # bounded: at most `workers` requests in flight
        for _ in tqdm(pool.map(one, bodies), total=len(bodies), desc="creating Pods", unit="pod"):
            pass


class AllTried:
    """Wait condition: every Pod bound or marked unschedulable; re-checks only those still waiting,
    so thousands of watch events do not cost thousands of passes over 5,000 Pods."""

    def __init__(self, count: int):
        self.count, self.waiting = count, None

    def __call__(self, pods: dict[str, dict]) -> bool:
        if len(pods) < self.count:
            return False
        names = pods if self.waiting is None else self.waiting
        self.waiting = {n for n in names if n in pods and not workloads._decided(pods[n])}
        return not self.waiting


def timed(fn, runs: int) -> tuple[float, object]:
    """Median seconds of ``runs`` calls, with the garbage collector paused as timeit does."""
    seconds, result = [], None
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            result = fn()
            seconds.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return statistics.median(seconds), result


def interleaved(first, second, runs: int) -> tuple[float, float, object, object]:
    """Time two calls alternately, so a busy moment of the machine hits both alike; medians."""
    a, b, ra, rb = [], [], None, None
    for _ in range(runs):
        s, ra = timed(first, 1)
        a.append(s)
        s, rb = timed(second, 1)
        b.append(s)
    return statistics.median(a), statistics.median(b), ra, rb


def main(argv: list[str] | None = None) -> list[dict]:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--nodes", type=int, default=100)
    args.add_argument("--pods", type=int, default=5000)
    args.add_argument("--running", type=int, default=500, help="how many of the Pods can be scheduled")
    args.add_argument("--runs", type=int, default=5, help="timed repetitions (median reported)")
    args.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    opts = args.parse_args(argv)

    print(f"starting lab bench-sched with {opts.nodes} nodes (reused if running)...", flush=True)
    with labs.running("bench-sched", nodes=opts.nodes, timeout=900, keep=opts.keep or None,
                      log=lambda m: print(m, flush=True)) as lab:
        api = lab.api_client()
        api.configuration.connection_pool_maxsize = 16
        # the namespace and its Pods stay (a kept lab is reused); the node changes are undone below
        plan = Plan(target=NAMESPACE, kind="namespace", also=["node/k8s-slave1"],
                    confirm=f"{NAMESPACE}, node/k8s-slave1", cluster=api, log=lambda m: None)
        workloads.ensure_namespace(plan, NAMESPACE)
        node_verbs.taint(plan, "k8s-slave1", "bench=yes:NoSchedule")
        node_verbs.label(plan, "k8s-slave1", "bench-tainted=yes")
        groups = [("running", {})] * (opts.running // GROUP) + shapes((opts.pods - opts.running) // GROUP)
        bodies = [pod_body(name if name != "running" else f"running-{g}", fields, i)
                  for g, (name, fields) in enumerate(groups) for i in range(GROUP)]
        # idempotent: a re-run on a kept lab creates only what is missing
        have = {p["metadata"]["name"] for p in ex._raw(client.CoreV1Api(api).list_namespaced_pod,
                                                       namespace=NAMESPACE)["items"]}
        create(api, [b for b in bodies if b["metadata"]["name"] not in have])
        print("waiting until the scheduler has tried every Pod (bound or PodScheduled=False)...", flush=True)
        wait_for(api, "pods", AllTried(len(bodies)), namespace=NAMESPACE, timeout=1800,
                 what="every bench Pod tried by the scheduler")

        core = client.CoreV1Api(api)

        def list_once():
            return (ex._raw(core.list_node), ex._raw(core.list_namespace), ex._raw(core.list_pod_for_all_namespaces))

        def explain_everything():
            snap = ex.Snapshot.take(api)
            return snap, ex.explain_all(snap)

        list_s, explain_s, (node_list, _, pod_list), (snap, table) = interleaved(list_once, explain_everything,
                                                                                 opts.runs)
        compute_s, _ = timed(lambda: ex.explain_all(snap), opts.runs)
        pending = snap.pending()
        started = time.perf_counter()
        for p in tqdm(pending, desc="without memo", unit="pod"):
            ex.check_rows(p, snap)
        no_memo_s = time.perf_counter() - started

        unfit = int((table["fit nodes"] == 0).sum())
        print()
        print(f"lab: {len(node_list['items'])} nodes, {len(pod_list['items'])} Pods, {len(pending)} Pending "
              f"({len(table)} explained; {unfit} with no node that fits)")
        print(f"list nodes+namespaces+Pods once:          {list_s:.3f} s   (median of {opts.runs}, interleaved)")
        print(f"explain ALL Pending Pods (list + compute): {explain_s:.3f} s   (median of {opts.runs}, interleaved; goal <= 2 s)")
        print(f"  of which computing in memory:           {compute_s:.3f} s")
        print(f"ratio explain / list:                      {explain_s / list_s:.2f}x")
        print(f"without the per-template memo (compute):   {no_memo_s:.3f} s "
              f"({len(pending)} Pods x {len(snap.nodes)} nodes)")
        print(f"distinct explanations: {table['explanation'].nunique()}; example: {table['explanation'].iloc[0]}")

        node_verbs.untaint(plan, "k8s-slave1", "bench-")
        node_verbs.label(plan, "k8s-slave1", "bench-tainted-")
    return [{"figure": f"why-pending: explain all {len(pending)} Pending Pods on {len(snap.nodes)} nodes",
             "value": f"{explain_s:.3f} s (listing alone {list_s:.3f} s)", "ratio": explain_s / list_s,
             "goal": "<= 2 s", "met": explain_s <= 2}]


if __name__ == "__main__":
    main()
