"""Namespace recovery from a snapshot: kubebook versus the course's per-key way, in one run.

    python bench/namespace_recovery.py [--objects 1000]

Both restore the same namespace (ConfigMaps, Secrets, ServiceAccounts, Services) from the
same snapshot file into a lab where the namespace was deleted:

- kubebook: one decoding pass over the snapshot, one list per kind to compare, server-side
  apply with 8 workers (``kubebook.etcd.recover``);
- the course: one decode process per key (as etcdhelper is run per key from keys.txt), each
  object written to a YAML file, then ``kubectl apply -f`` on the directory.

- the floor: the same cleaned objects (decoded beforehand, so only writing is timed) POSTed by
  the plainest concurrent client, with no comparison and no ordering beyond the namespace first:
  what the apiserver and etcd on this machine allow at all.

Each method must bring back every object; the script checks the count and prints the times,
kubebook's ratio to the floor (goal <= 1.15) and the per-key way's ratio to kubebook (goal >= 10x),
and the CPU seconds each lab process spent during kubebook's restore: on a small machine the
apiserver and etcd use every core, and that, not the client, bounds how fast any restore can write.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from kubernetes import client
from tqdm import tqdm

from kubebook import binaries, lab as labs
from kubebook.etcd import Etcd, decode, recover, snapshot
from kubebook.waits import wait_for

NAMESPACE = "bench-recovery"
KINDS = ("ConfigMap", "Secret", "ServiceAccount", "Service")


def manifest(i: int) -> dict:
    kind = KINDS[i % len(KINDS)]
    meta = {"name": f"obj-{i:05d}", "namespace": NAMESPACE, "labels": {"bench": "recovery"}}
    if kind == "ConfigMap":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"index": str(i), "note": "x" * 200}}
    if kind == "Secret":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "type": "Opaque", "stringData": {"v": str(i)}}
    if kind == "Service":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "spec": {"selector": {"app": f"a{i}"}, "ports": [{"port": 80}]}}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def populate(api: client.ApiClient, count: int) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=NAMESPACE, timeout=60, what="namespace ready")
    creators = {"ConfigMap": core.create_namespaced_config_map, "Secret": core.create_namespaced_secret,
                "ServiceAccount": core.create_namespaced_service_account, "Service": core.create_namespaced_service}

    def create(i: int) -> None:
        m = manifest(i)
        creators[m["kind"]](NAMESPACE, m)
    with ThreadPoolExecutor(8) as pool:
        list(tqdm(pool.map(create, range(count)), total=count, desc="creating", unit="obj"))


def restored_count(api: client.ApiClient) -> int:
    core = client.CoreV1Api(api)
    sel = "bench=recovery"
    return sum(len(f(NAMESPACE, label_selector=sel).items) for f in (
        core.list_namespaced_config_map, core.list_namespaced_secret, core.list_namespaced_service_account,
        core.list_namespaced_service))


def delete_namespace(api: client.ApiClient) -> None:
    client.CoreV1Api(api).delete_namespace(NAMESPACE)
    wait_for(api, "namespaces", lambda ns: NAMESPACE not in ns, timeout=300, what="namespace deleted")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_by_process(lab: labs.Lab) -> dict[str, float]:
    own = os.times()
    return {**{c: cpu_seconds(p.pid) for c, p in lab.processes.items()}, "this client": own.user + own.system}


def kubebook_way(api: client.ApiClient, snap: Path) -> float:
    started = time.monotonic()
    items, cluster = recover.plan_from_snapshot(snap, NAMESPACE, api)
    recover.apply(items, cluster, progress=False)
    took = time.monotonic() - started
    failed = [i for i in items if i.result.startswith("failed")]
    assert not failed, failed[:3]
    return took


def floor_way(api: client.ApiClient, snap: Path, *, workers: int = 8) -> float:
    """POST the snapshot's cleaned objects as fast as a plain client can: the namespace, then all the
    rest at once, no list, no diff, no server-side apply."""
    from kubebook.connect import raw_request
    items = recover.select(recover._records(snap), NAMESPACE)
    bodies = [i.body for i in items if i.body is not None]
    paths = {"Namespace": "/api/v1/namespaces", "ConfigMap": f"/api/v1/namespaces/{NAMESPACE}/configmaps",
             "Secret": f"/api/v1/namespaces/{NAMESPACE}/secrets",
             "ServiceAccount": f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
             "Service": f"/api/v1/namespaces/{NAMESPACE}/services"}
    namespace = [b for b in bodies if b["kind"] == "Namespace"]
    rest = [b for b in bodies if b["kind"] in paths and b["kind"] != "Namespace"]

    def post(body: dict) -> int:
        status, _ = raw_request(api, "POST", paths[body["kind"]], body=body)
        return status

    started = time.monotonic()
    assert all(post(b) in (201, 409) for b in namespace)
    with ThreadPoolExecutor(workers) as pool:
        statuses = list(pool.map(post, rest))
    took = time.monotonic() - started
    assert all(s in (201, 409) for s in statuses), sorted(set(statuses))
    return took


def course_way(lab: labs.Lab, snap: Path) -> float:
    decoder = str(binaries.ensure_decoder())
    kubectl = str(binaries.find("kubectl"))
    started = time.monotonic()
    # keys.txt: the namespace's keys (plus the namespace itself), as `etcdctl get --keys-only` lists them
    keys = [r.key for r in decode.read_snapshot(snap, keys_only=True)
            if f"/{NAMESPACE}/" in r.key or r.key == f"/registry/namespaces/{NAMESPACE}"]
    out = Path(tempfile.mkdtemp(prefix="bench-course-"))
    for n, key in enumerate(tqdm(keys, desc="per-key decode", unit="key")):
        proc = subprocess.run([decoder, "snapshot", "-file", str(snap), "-prefix", key], capture_output=True,
                              text=True, check=True)
        record = json.loads(proc.stdout.splitlines()[0])
        obj = record.get("object")
        if not obj or obj.get("kind") in ("Event", "Endpoints", "EndpointSlice") or \
                obj["metadata"]["name"] in ("kube-root-ca.crt", "default"):
            continue
        (out / f"{n:05d}.yaml").write_text(yaml.safe_dump(recover.clean(obj)))  # json2yaml + hand cleaning
    # the Namespace first, then the rest, as one would by hand
    ns_file = next(p for p in out.iterdir() if "kind: Namespace" in p.read_text())
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig)}
    subprocess.run([kubectl, "apply", "-f", str(ns_file)], check=True, capture_output=True, env=env)
    ns_file.unlink()
    subprocess.run([kubectl, "apply", "-f", str(out)], check=True, capture_output=True, env=env)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args(argv)
    with labs.running(f"bench-recovery-{os.getpid()}", nodes=1, timeout=240) as lab:
        api = lab.api_client()
        api.configuration.connection_pool_maxsize = 16
        api = type(api)(api.configuration)  # a pool sized for the workers
        populate(api, args.objects)
        with Etcd(**lab.etcd_params()) as etcd:
            snap = Path(snapshot.save(etcd, lab.dir / "snapshots", progress=False).path)
        recover._records(snap)  # decoded once up front: the floor is timed on writing alone
        delete_namespace(api)
        floor = floor_way(api, snap)
        floor_count = restored_count(api)
        delete_namespace(api)
        cpu_before = cpu_by_process(lab)
        recover._DECODED.clear()  # kubebook's time includes decoding the snapshot
        ours = kubebook_way(api, snap)
        cpu_used = {k: v - cpu_before[k] for k, v in cpu_by_process(lab).items()}
        ours_count = restored_count(api)
        delete_namespace(api)
        theirs = course_way(lab, snap)
        theirs_count = restored_count(api)
    print(f"objects: {args.objects}; restored by the floor {floor_count}, kubebook {ours_count}, "
          f"the per-key way {theirs_count}")
    assert floor_count == ours_count == theirs_count == args.objects, "each must restore every object"
    print(f"floor (plain concurrent POSTs): {floor:.2f}s   kubebook: {ours:.2f}s ({ours / floor:.2f}x the floor, "
          f"goal <= 1.15)   per-key decode + kubectl apply: {theirs:.2f}s ({theirs / ours:.1f}x kubebook, goal >= 10x)")
    print(f"CPU seconds during kubebook's {ours:.2f}s on {os.cpu_count()} cores: " +
          ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu_used.items(), key=lambda kv: -kv[1])) +
          f"; total {sum(cpu_used.values()):.2f} of {ours * os.cpu_count():.2f} available")
    return [{"figure": f"namespace recovery of {args.objects} objects: kubebook / the plain-client floor",
             "value": f"{ours:.2f} s / {floor:.2f} s", "ratio": ours / floor, "goal": "<= 1.15",
             "met": ours / floor <= 1.15},
            {"figure": "the course's per-key decode + kubectl apply / kubebook", "value": f"{theirs:.2f} s / {ours:.2f} s",
             "ratio": theirs / ours, "goal": ">= 10x", "met": theirs / ours >= 10}]


if __name__ == "__main__":
    main()
