"""A rehearsal on the lab: build the sample namespace, snapshot it, then lose it.

Classrooms and tests need a disaster to recover from. This never runs against anything but
a kubebook lab: every function takes the lab's name and connects through the lab.
"""
from __future__ import annotations

from kubernetes import client

from .. import lab as labs, samples
from ..waits import wait_for
from .client import Etcd
from .snapshot import SnapshotInfo, resolve_dir, save


def prepare(lab_name: str, namespace: str, *, timeout: float = 120.0) -> SnapshotInfo:
    """Create ``namespace`` with the sample objects, snapshot etcd, then delete the namespace and its PV."""
    lab = labs.get(lab_name)
    if not lab.is_running():
        raise labs.LabError(f"lab {lab_name!r} is not running: kubebook lab up --name {lab_name}")
    api = lab.api_client()
    manifests = samples.luffy(namespace)
    samples.apply(api, manifests)
    wait_for(api, "persistentvolumeclaims", lambda p: (p.get("mysql-data", {}).get("status") or {})
             .get("phase") == "Bound", namespace=namespace, timeout=timeout, what="sample claim Bound")
    with Etcd(**lab.etcd_params()) as etcd:
        taken = save(etcd, resolve_dir("", lab_name), progress=False)
    core = client.CoreV1Api(api)
    core.delete_namespace(namespace)
    wait_for(api, "namespaces", lambda ns: namespace not in ns, timeout=timeout, what=f"namespace {namespace} gone")
    for m in manifests:
        if m["kind"] == "PersistentVolume":
            core.delete_persistent_volume(m["metadata"]["name"])
    return taken
