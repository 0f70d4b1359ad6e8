"""Volume kinds side by side, and moving a Deployment's data volume onto a claim (the course's mysql step).

    pod = volume_demo_pod("volume-demo", host_path="/tmp/kubebook-storage/demo", nfs=("127.0.0.1", "/data"),
                          claim_name="demo-data")
    swap_volume_to_claim(api, "luffy", "mysql", "mysql-data", "mysql", backup_dir=..., plan=plan)

The swap scales the Deployment to 0 first: a ReadWriteOnce claim cannot be used by the old and new
Pods at once, and a database must not run twice on the same files.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..connect import create_or_keep
from ..errors import KubebookError
from ..plan import Plan, perform
from ..scheduling.workloads import IMAGE
from .volumes import backup, validate_name

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


def create_pod(api, namespace: str, body: dict, *, plan: Plan | None = None) -> str | None:
    name = body["metadata"]["name"]

    def act() -> str:
        return create_or_keep(client.CoreV1Api(api).create_namespaced_pod, namespace, body)

    kinds = ", ".join(next(k for k in v if k != "name") for v in body["spec"]["volumes"])
    return perform(plan, f"create-pod-{name}", f"create Pod {namespace}/{name} with volumes: {kinds}", act,
                 f"kubectl -n {namespace} apply -f {name}.yaml")


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


def volume_sources(api, namespace: str, deployment: str) -> pd.DataFrame:
    """The Deployment's volumes and what backs each."""
    try:
        d = api.sanitize_for_serialization(client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace))
    except ApiException as exc:
        if exc.status != 404:
            raise
        d = {"spec": {"template": {"spec": {}}}}  # not there (yet): a dry run
    rows = []
    for v in d["spec"]["template"]["spec"].get("volumes") or []:
        kind = next(k for k in v if k != "name")
        rows.append({"deployment": deployment, "volume": v["name"], "type": kind, "source": v[kind]})
    return pd.DataFrame(rows, columns=["deployment", "volume", "type", "source"])


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


def copy_step(api, namespace: str, deployment: str, volume: str, claim: str, *, plan: Plan) -> None:
    """The manual copy as a plan step (always only described: the API cannot move files)."""
    try:
        d = api.sanitize_for_serialization(client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace))
        source = next((v for v in d["spec"]["template"]["spec"].get("volumes") or [] if v["name"] == volume),
                      {"name": volume, "unknown": {}})
    except ApiException as exc:
        if exc.status != 404:
            raise
        source = next(v for v in mysql_deployment(deployment)["spec"]["template"]["spec"]["volumes"])
    source = {k: v for k, v in source.items() if k != "name"}
    plan.step("copy-data", copy_instructions(source, claim, namespace) + " [manual step]", None,
              command="tar czf - -C <old dir> . | tar xzf - -C <new volume dir>")


def swap_volume_to_claim(api, namespace: str, deployment: str, volume: str, claim: str, *,
                         backup_dir: str | Path, plan: Plan | None = None) -> str | None:
    """Replace the Deployment's volume ``volume`` (hostPath, emptyDir...) by the claim ``claim``.

    The Deployment is backed up first and must already be scaled to 0. A JSON patch with a test on the
    volume's name replaces that one list entry; a strategic merge would keep the old source beside the new.
    """
    apps = client.AppsV1Api(api)

    def act() -> str:
        d = api.sanitize_for_serialization(apps.read_namespaced_deployment(deployment, namespace))
        vols = d["spec"]["template"]["spec"].get("volumes") or []
        index = next((i for i, v in enumerate(vols) if v["name"] == volume), None)
        if index is None:
            raise KubebookError(f"Deployment {namespace}/{deployment} has no volume {volume!r}; "
                                f"it has {[v['name'] for v in vols]}")
        if vols[index].get("persistentVolumeClaim", {}).get("claimName") == claim:
            return "already uses the claim"
        if (d["spec"].get("replicas") or 0) != 0:
            raise KubebookError(f"scale Deployment {namespace}/{deployment} to 0 first: its Pods still write")
        saved = backup(d, backup_dir)
        path = f"/spec/template/spec/volumes/{index}"
        apps.patch_namespaced_deployment(deployment, namespace, [
            {"op": "test", "path": f"{path}/name", "value": volume},
            {"op": "replace", "path": path, "value": {"name": volume, "persistentVolumeClaim": {"claimName": claim}}}])
        return f"volume {volume} now uses claim {claim}; backup: {saved}"

    return perform(plan, f"swap-{deployment}-{volume}", f"back up Deployment {namespace}/{deployment} into "
                 f"{backup_dir}, then point its volume {volume} at claim {claim}", act,
                 f"kubectl -n {namespace} patch deployment {deployment} --type json -p "
                 f"'[{{\"op\":\"replace\",\"path\":\"/spec/template/spec/volumes/<i>\",\"value\":"
                 f"{{\"name\":\"{volume}\",\"persistentVolumeClaim\":{{\"claimName\":\"{claim}\"}}}}}}]'")


def wait_pod_running(api, namespace: str, name: str, *, timeout: float = 90) -> str:
    """Watch until the Pod is Running (on the lab kwok reports it so; volumes are not really mounted)."""
    from ..waits import wait_for
    pods = wait_for(api, "pods", lambda ps: (ps.get(name, {}).get("status") or {}).get("phase") == "Running",
                    namespace=namespace, field_selector=f"metadata.name={name}", timeout=timeout,
                    what=f"Pod {namespace}/{name} Running")
    return f"Pod {name} Running on {pods[name]['spec'].get('nodeName')}"


def delete_pod(api, namespace: str, name: str, *, plan: Plan | None = None, timeout: float = 90) -> str | None:
    from ..waits import wait_for

    def act() -> str:
        try:
            client.CoreV1Api(api).delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status == 404:
                return "already gone"
            raise
        wait_for(api, "pods", lambda ps: name not in ps, namespace=namespace, field_selector=f"metadata.name={name}",
                 timeout=timeout, what=f"Pod {namespace}/{name} gone")
        return "deleted"

    return perform(plan, f"delete-pod-{name}", f"delete Pod {namespace}/{name}", act,
                 f"kubectl -n {namespace} delete pod {name}")


def wait_scaled_down(api, namespace: str, deployment: str, *, timeout: float = 90) -> str:
    """Watch until no Pod of the Deployment is left (its writers stopped)."""
    from ..waits import wait_for
    wait_for(api, "pods", lambda ps: not ps, namespace=namespace, label_selector=f"app={deployment}",
             timeout=timeout, what=f"Pods of {namespace}/{deployment} gone")
    return f"no Pod of {deployment} left"
