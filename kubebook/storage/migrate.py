"""Volume kinds side by side, and moving a Deployment's data volume onto a claim (the course's mysql step).

    pod = volume_demo_pod("volume-demo", host_path="/tmp/kubebook-storage/demo", nfs=("127.0.0.1", "/data"),
                          claim_name="volume-demo-data")
    create_pod(plan, "kubebook-volumes", pod)                       # a step, then a wait until it runs
    prepare_claim(plan, "kubebook-volumes", "mysql", "1Gi", pv_host_path="/tmp/kubebook-storage/mysql")
    move_onto_claim(plan, "kubebook-volumes", "mysql", "mysql-data", "mysql")  # scale 0, copy, swap, scale back

The swap scales the Deployment to 0 first: a ReadWriteOnce claim cannot be used by the old and new
Pods at once, and a database must not run twice on the same files.
"""
from __future__ import annotations

import pandas as pd

from ..errors import KubebookError
from ..objects import Ref, objects
from ..plan import Plan
from ..scheduling import workloads
from ..scheduling.workloads import IMAGE
from ..waits import wait_for
from . import volumes
from .volumes import validate_name

LIFETIMES = pd.DataFrame([
    {"type": "emptyDir", "data lives": "with the Pod (survives container restarts)", "shared by":
     "the Pod's containers", "typical use": "scratch space, cache, files passed between containers"},
    {"type": "hostPath", "data lives": "on the node, after the Pod", "shared by": "Pods on the same node",
     "typical use": "node agents; pin the Pod with nodeSelector or its data stays behind"},
    {"type": "nfs", "data lives": "on the NFS server", "shared by": "any Pod on any node",
     "typical use": "shared files; the Pod spec names the server and path"},
    {"type": "persistentVolumeClaim", "data lives": "in the bound PV, as its reclaim policy says",
     "shared by": "as the access modes allow", "typical use": "application data; the Pod names only the claim"},
])


def volume_demo_pod(name: str, *, host_path: str, claim_name: str, nfs: tuple[str, str] | None = None,
                    image: str = IMAGE) -> dict:
    """A Pod with an emptyDir shared by two containers, a hostPath, a claim, and an nfs volume if given."""
    validate_name(name, "Pod name")
    vols = [{"name": "cache", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
    mounts = [{"name": "cache", "mountPath": "/cache"}, {"name": "host", "mountPath": "/host"},
              {"name": "data", "mountPath": "/data"}]
    if nfs:
        vols.append({"name": "share", "nfs": {"server": nfs[0], "path": nfs[1]}})
        mounts.append({"name": "share", "mountPath": "/share"})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 0, "volumes": vols,
                     "containers": [{"name": "web", "image": image, "volumeMounts": mounts},
                                    {"name": "sidecar", "image": image,
                                     "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]}}


def nfs_source(server: str, path: str) -> tuple[str, str] | None:
    """``(server, path)`` for :func:`volume_demo_pod`, or None to leave the nfs volume out (no server)."""
    return (server, path) if server else None


def scope(namespace: str, pod: str, claim: str, storage_class: str = "") -> list[str]:
    """What the runbook's plan names besides its namespace: the static PVs it creates (cluster-scoped)."""
    names = [demo_volume_name(namespace, pod)] + ([] if storage_class else [static_volume_name(namespace, claim)])
    return [Ref("PersistentVolume", n).scope for n in names]


def demo_volume_name(namespace: str, pod: str) -> str:
    return f"{namespace}-{pod}-data"


def static_volume_name(namespace: str, claim: str) -> str:
    return f"{namespace}-{claim}"


def demo_claim_volume(plan: Plan, namespace: str, pod: str, *, host_path: str, timeout: float = 90) -> None:
    """Steps: a small static PV pre-bound to the claim ``<pod>-data``, the claim naming it, a wait until Bound.

    The PV is waited for first: a claim naming a PV the controller has not seen yet waits for its
    next resync (15 s by default, 5 s on a kubebook lab) instead of binding at once."""
    name, claim_name = demo_volume_name(namespace, pod), f"{pod}-data"
    volumes.apply_volume(plan, volumes.persistent_volume(name, "100Mi", ["ReadWriteOnce"], host_path=f"{host_path}-pv",
                                                         claim_ref=(namespace, claim_name)))
    volumes.wait_available(plan, name, timeout=timeout)
    volumes.apply_claim(plan, namespace, volumes.claim(claim_name, "100Mi", ["ReadWriteOnce"], volume_name=name))
    volumes.wait_bound(plan, namespace, claim_name, timeout=timeout)


def create_pod(plan: Plan, namespace: str, body: dict, *, timeout: float = 90) -> str | None:
    """Create the Pod (kept if it exists), then wait until it runs."""
    name = body["metadata"]["name"]
    created = plan.create(body, namespace, step=f"create-pod-{name}", command=f"kubectl -n {namespace} apply -f {name}.yaml")
    wait_pod_running(plan, namespace, name, timeout=timeout)
    return created


def mysql_deployment(name: str = "mysql", *, host_path: str = "/opt/mysql/data", node: str = "",
                     image: str = "mysql:8.0") -> dict:
    """The course's starting point: mysql keeps its files in a hostPath, pinned to one node."""
    spec = {"terminationGracePeriodSeconds": 0,
            "containers": [{"name": name, "image": image,
                            "volumeMounts": [{"name": "mysql-data", "mountPath": "/var/lib/mysql"}]}],
            "volumes": [{"name": "mysql-data", "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}}]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def volume_sources(api, namespace: str, deployment: str, *, planned: dict | None = None) -> pd.DataFrame:
    """The Deployment's volumes and what backs each (the ``planned`` body's while it does not exist)."""
    d = objects(api).get(Ref("Deployment", deployment, namespace)) or planned or {"spec": {"template": {"spec": {}}}}
    rows = []
    for v in d["spec"]["template"]["spec"].get("volumes") or []:
        kind = next(k for k in v if k != "name")
        rows.append({"deployment": deployment, "volume": v["name"], "type": kind, "source": v[kind]})
    return pd.DataFrame(rows, columns=["deployment", "volume", "type", "source"])


def ensure_deployment(plan: Plan, namespace: str, name: str, *, create: bool = True, timeout: float = 90) -> None:
    """The Deployment whose data moves: the course's mysql (hostPath data) applied as a demo when
    ``create`` (one that existed is backed up, replaced and put back at clean-up), else the existing
    one, which must be there. Then a wait until its replicas are placed."""
    if create:
        workloads.apply_deployment(plan, namespace, mysql_deployment(name))
    elif objects(plan.api).get(Ref("Deployment", name, namespace)) is None:
        raise KubebookError(f"Deployment {namespace}/{name} not found: set create_deployment to make the demo one")
    workloads.settle(plan, namespace, name, timeout=timeout)


def prepare_claim(plan: Plan, namespace: str, claim: str, request: str, *, storage_class: str = "",
                  pv_host_path: str = "", timeout: float = 90) -> None:
    """Steps: the claim that receives the data, and a wait until it is Bound. Without ``storage_class``
    a static PV (``pv_host_path``) is made for it and the claim names it; with one, the class's
    provisioner makes the PV."""
    modes = ["ReadWriteOnce"]
    if storage_class:
        volumes.apply_claim(plan, namespace, volumes.claim(claim, request, modes, storage_class=storage_class))
    else:
        name = static_volume_name(namespace, claim)
        volumes.apply_volume(plan, volumes.persistent_volume(name, request, modes, host_path=pv_host_path,
                                                             claim_ref=(namespace, claim)))
        volumes.wait_available(plan, name, timeout=timeout)
        volumes.apply_claim(plan, namespace, volumes.claim(claim, request, modes, volume_name=name))
    volumes.wait_bound(plan, namespace, claim, timeout=timeout)


def copy_instructions(source: dict, claim: str, namespace: str) -> str:
    """How to move the files: the API cannot, so this is a manual step (stop writers first)."""
    if "hostPath" in source:
        where = f"the node's {source['hostPath']['path']}"
    elif "emptyDir" in source:
        where = "the emptyDir (lost when the Pod goes: copy out of the running Pod first with kubectl cp)"
    else:
        where = f"the current volume ({next(iter(source))})"
    return (f"copy the files from {where} into the volume bound to claim {namespace}/{claim} "
            "(e.g. tar on the node, untar into the PV's directory or NFS export)")


def copy_step(plan: Plan, namespace: str, deployment: str, volume: str, claim: str) -> None:
    """The manual copy as a plan step (always only described: the API cannot move files)."""
    d = objects(plan.api).get(Ref("Deployment", deployment, namespace)) or mysql_deployment(deployment)
    source = next((v for v in d["spec"]["template"]["spec"].get("volumes") or [] if v["name"] == volume),
                  {"name": volume, "unknown": {}})
    source = {k: v for k, v in source.items() if k != "name"}
    plan.step("copy-data", copy_instructions(source, claim, namespace) + " [manual step]", None,
              command="tar czf - -C <old dir> . | tar xzf - -C <new volume dir>")


def swap_volume_to_claim(plan: Plan, namespace: str, deployment: str, volume: str, claim: str) -> str | None:
    """Replace the Deployment's volume ``volume`` (hostPath, emptyDir...) by the claim ``claim``, as a step.

    The Deployment must already be scaled to 0. A Deployment that existed before the run is backed
    up first and put back at clean-up. The patch carries the whole volume list (a JSON merge patch
    replaces lists; a strategic merge would keep the old source beside the new one), conditional on
    the version read, so no concurrent change is lost.
    """
    def edit(d: dict) -> dict | None:
        vols = d["spec"]["template"]["spec"].get("volumes") or []
        index = next((i for i, v in enumerate(vols) if v["name"] == volume), None)
        if index is None:
            raise KubebookError(f"Deployment {namespace}/{deployment} has no volume {volume!r}; "
                                f"it has {[v['name'] for v in vols]}")
        if vols[index].get("persistentVolumeClaim", {}).get("claimName") == claim:
            return None
        if (d["spec"].get("replicas") or 0) != 0:
            raise KubebookError(f"scale Deployment {namespace}/{deployment} to 0 first: its Pods still write")
        new = [*vols[:index], {"name": volume, "persistentVolumeClaim": {"claimName": claim}}, *vols[index + 1:]]
        return {"spec": {"template": {"spec": {"volumes": new}}}}

    return plan.modify(Ref("Deployment", deployment, namespace), edit, step=f"swap-{deployment}-{volume}",
                       description=f"point Deployment {namespace}/{deployment}'s volume {volume} at claim {claim}",
                       command=f"kubectl -n {namespace} patch deployment {deployment} --type json -p "
                       f"'[{{\"op\":\"replace\",\"path\":\"/spec/template/spec/volumes/<i>\",\"value\":"
                       f"{{\"name\":\"{volume}\",\"persistentVolumeClaim\":{{\"claimName\":\"{claim}\"}}}}}}]'")


def move_onto_claim(plan: Plan, namespace: str, deployment: str, volume: str, claim: str, *,
                    timeout: float = 90) -> None:
    """The course's move, as steps: stop the writers (scale to 0, wait until no Pod is left), copy
    the files (manual), point the volume at the claim, scale back to the count it had, wait until placed."""
    current = objects(plan.api).get(Ref("Deployment", deployment, namespace))
    replicas = ((current or {}).get("spec") or {}).get("replicas") or 1
    workloads.scale(plan, namespace, deployment, 0)
    wait_scaled_down(plan, namespace, deployment, timeout=timeout)
    copy_step(plan, namespace, deployment, volume, claim)
    swap_volume_to_claim(plan, namespace, deployment, volume, claim)
    workloads.scale(plan, namespace, deployment, replicas)
    workloads.settle(plan, namespace, deployment, timeout=timeout)


def stop_writers(plan: Plan, namespace: str, deployment: str, *, when: bool = True, timeout: float = 90) -> None:
    """The first clean-up steps: scale the Deployment to 0 and wait until its Pods are gone, so the
    claim it mounts can be deleted (a pre-existing Deployment gets its count back from the backup)."""
    if when:
        workloads.scale(plan, namespace, deployment, 0)
        wait_scaled_down(plan, namespace, deployment, timeout=timeout)


def wait_pod_running(plan: Plan, namespace: str, name: str, *, timeout: float = 90) -> str | None:
    """Wait until the Pod is Running (on the lab kwok reports it so; volumes are not really mounted)."""
    def act() -> str:
        pods = wait_for(plan.api, "pods", lambda ps: (ps.get(name, {}).get("status") or {}).get("phase") == "Running",
                        namespace=namespace, field_selector=f"metadata.name={name}", timeout=timeout,
                        what=f"Pod {namespace}/{name} Running")
        return f"Pod {name} Running on {pods[name]['spec'].get('nodeName')}"

    return plan.wait(f"running-{name}", f"Pod {namespace}/{name} is Running", act)


def wait_scaled_down(plan: Plan, namespace: str, deployment: str, *, timeout: float = 90) -> str | None:
    """Wait until no Pod of the Deployment is left (its writers stopped)."""
    def act() -> str:
        wait_for(plan.api, "pods", lambda ps: not ps, namespace=namespace, label_selector=f"app={deployment}",
                 timeout=timeout, what=f"Pods of {namespace}/{deployment} gone")
        return f"no Pod of {deployment} left"

    return plan.wait(f"scaled-down-{deployment}", f"no Pod of {namespace}/{deployment} is left", act)
