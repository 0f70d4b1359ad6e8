"""PersistentVolumes and claims as objects, their phases watched, and the admin's Retain round trip.

    pv = persistent_volume("nfs-pv", "1Gi", ["ReadWriteMany"], nfs=("127.0.0.1", "/data/k8s/nginx"))
    apply_volume(api, pv, plan=plan)                     # kubectl create -f pv-nfs.yaml (kept if it exists)
    apply_claim(api, "luffy-storage", claim("pvc-nfs", "1Gi", ["ReadWriteMany"]), plan=plan)
    phases = PhaseLog(api, "nfs-pv")
    phases.wait("Bound")                                 # watch until the PV is Bound
    delete_claim(api, "luffy-storage", "pvc-nfs", backup_dir="backups/storage", plan=plan)
    phases.wait("Released"); make_available(api, "nfs-pv", plan=plan); phases.wait("Available")
    phases.plot()

Everything that changes the cluster is a step of a :class:`kubebook.plan.Plan` when given ``plan=``.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..connect import create_or_keep
from ..errors import KubebookError
from ..plan import Plan, perform
from ..safety import mask, write_private
from ..scheduling.workloads import IMAGE
from ..waits import wait_for

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Retain", "Delete", "Recycle")
VOLUME_MODES = ("Filesystem", "Block")
SHORT_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def validate_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or len(name) > 253 or not _NAME.match(name):
        raise KubebookError(f"{what} {name!r} is not a valid object name (lowercase letters, digits, '-', '.')")
    return name


def validate_quantity(size: str, what: str = "size") -> str:
    if not isinstance(size, str) or not _QUANTITY.match(size):
        raise KubebookError(f"{what} {size!r} is not a storage quantity like 1Gi or 500Mi")
    return size


def validate_access_modes(modes: list[str]) -> list[str]:
    modes = list(modes or [])
    if not modes:
        raise KubebookError("at least one access mode is needed (ReadWriteOnce, ReadOnlyMany, ReadWriteMany)")
    unknown = [m for m in modes if m not in ACCESS_MODES]
    if unknown:
        raise KubebookError(f"unknown access mode(s) {unknown}; known: {', '.join(ACCESS_MODES)}")
    return modes


def persistent_volume(name: str, capacity: str, access_modes: list[str], *, reclaim_policy: str = "Retain",
                      host_path: str = "", nfs: tuple[str, str] | None = None, storage_class: str = "",
                      volume_mode: str = "Filesystem", labels: dict | None = None,
                      claim_ref: tuple[str, str] | None = None) -> dict:
    """A PV backed by ``host_path`` or ``nfs=(server, path)`` (exactly one).

    ``claim_ref=(namespace, claim)`` pre-binds it: only that claim may take it.
    """
    validate_name(name, "PV name")
    validate_quantity(capacity, "capacity")
    if reclaim_policy not in RECLAIM_POLICIES:
        raise KubebookError(f"reclaim policy {reclaim_policy!r} is not one of {', '.join(RECLAIM_POLICIES)}")
    if volume_mode not in VOLUME_MODES:
        raise KubebookError(f"volumeMode {volume_mode!r} is not one of {', '.join(VOLUME_MODES)}")
    if bool(host_path) == bool(nfs):
        raise KubebookError("give exactly one volume source: host_path or nfs=(server, path)")
    spec: dict[str, Any] = {"capacity": {"storage": capacity}, "accessModes": validate_access_modes(access_modes),
                            "persistentVolumeReclaimPolicy": reclaim_policy, "volumeMode": volume_mode}
    if host_path:
        if not host_path.startswith("/"):
            raise KubebookError(f"hostPath {host_path!r} must be absolute")
        spec["hostPath"] = {"path": host_path, "type": "DirectoryOrCreate"}
    else:
        server, path = nfs
        spec["nfs"] = {"server": server, "path": path}
    if storage_class:
        spec["storageClassName"] = storage_class
    if claim_ref:
        spec["claimRef"] = {"namespace": claim_ref[0], "name": claim_ref[1]}
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = {str(k): str(v) for k, v in labels.items()}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": metadata, "spec": spec}


def claim(name: str, request: str, access_modes: list[str], *, storage_class: str | None = "",
          volume_mode: str = "Filesystem", selector: dict | None = None, volume_name: str = "") -> dict:
    """A PVC. ``storage_class=""`` asks for PVs without a class; ``None`` leaves the field out, so the
    DefaultStorageClass admission plugin fills in the default class (if the cluster has one)."""
    validate_name(name, "claim name")
    validate_quantity(request, "request")
    spec: dict[str, Any] = {"accessModes": validate_access_modes(access_modes),
                            "resources": {"requests": {"storage": request}}, "volumeMode": volume_mode}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if selector is not None:
        spec["selector"] = selector
    if volume_name:
        spec["volumeName"] = volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def deployment_with_claim(name: str, claim_name: str, *, mount_path: str = "/usr/share/nginx/html",
                          replicas: int = 1, image: str = IMAGE) -> dict:
    """The course's nginx Deployment with the claim mounted at ``mount_path``."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "Recreate"},  # a ReadWriteOnce claim cannot serve old and new Pods
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": name, "image": image,
                                         "volumeMounts": [{"name": "www", "mountPath": mount_path}]}],
                         "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": claim_name}}]}}}}


# ---- reading ---------------------------------------------------------------------------------------


def _get(read, *args) -> dict | None:
    try:
        return read(*args, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def get_volume(api, name: str) -> dict | None:
    response = _get(client.CoreV1Api(api).read_persistent_volume, name)
    return None if response is None else yaml.safe_load(response.data)


def get_claim(api, namespace: str, name: str) -> dict | None:
    response = _get(client.CoreV1Api(api).read_namespaced_persistent_volume_claim, name, namespace)
    return None if response is None else yaml.safe_load(response.data)


def _modes(spec: dict) -> str:
    return ",".join(SHORT_MODES.get(m, m) for m in spec.get("accessModes") or [])


def volume_table(api, names: list[str] | None = None) -> pd.DataFrame:
    """``kubectl get pv`` as a table (only ``names`` when given)."""
    rows = []
    for pv in client.CoreV1Api(api).list_persistent_volume().items:
        if names is not None and pv.metadata.name not in names:
            continue
        ref = pv.spec.claim_ref
        source = "hostPath " + pv.spec.host_path.path if pv.spec.host_path else \
            f"nfs {pv.spec.nfs.server}:{pv.spec.nfs.path}" if pv.spec.nfs else ""
        rows.append({"name": pv.metadata.name, "capacity": (pv.spec.capacity or {}).get("storage"),
                     "access modes": ",".join(SHORT_MODES.get(m, m) for m in pv.spec.access_modes or []),
                     "reclaim policy": pv.spec.persistent_volume_reclaim_policy, "status": pv.status.phase,
                     "claim": f"{ref.namespace}/{ref.name}" if ref else "",
                     "storageclass": pv.spec.storage_class_name or "", "source": source})
    return pd.DataFrame(rows, columns=["name", "capacity", "access modes", "reclaim policy", "status", "claim",
                                       "storageclass", "source"])


def claim_table(api, namespace: str) -> pd.DataFrame:
    """``kubectl -n <namespace> get pvc`` as a table."""
    rows = []
    for c in client.CoreV1Api(api).list_namespaced_persistent_volume_claim(namespace).items:
        rows.append({"name": c.metadata.name, "status": c.status.phase, "volume": c.spec.volume_name or "",
                     "capacity": (c.status.capacity or {}).get("storage", ""),
                     "access modes": ",".join(SHORT_MODES.get(m, m) for m in c.status.access_modes or []),
                     "storageclass": c.spec.storage_class_name if c.spec.storage_class_name is not None
                     else "(unset)", "request": c.spec.resources.requests.get("storage")})
    return pd.DataFrame(rows, columns=["name", "status", "volume", "capacity", "access modes", "storageclass",
                                       "request"])


# ---- waiting on phases ----------------------------------------------------------------------------


def wait_volume_phase(api, name: str, phase: str | tuple[str, ...] | None, *, timeout: float = 90) -> dict | None:
    """Watch the PV until its phase is ``phase`` (or one of several; ``None``: until it is gone); returns it."""
    wanted = (phase,) if isinstance(phase, str) else phase

    def done(pvs: dict[str, dict]) -> bool:
        pv = pvs.get(name)
        return pv is None if wanted is None else bool(pv) and (pv.get("status") or {}).get("phase") in wanted
    pvs = wait_for(api, "persistentvolumes", done, field_selector=f"metadata.name={name}", timeout=timeout,
                   what=f"PV {name} " + (f"in phase {' or '.join(wanted)}" if wanted else "gone"))
    return pvs.get(name)


def wait_claim_phase(api, namespace: str, name: str, phase: str | None, *, timeout: float = 90) -> dict | None:
    """Watch the claim until its phase is ``phase`` (``None``: until it is gone); returns it."""
    def done(pvcs: dict[str, dict]) -> bool:
        pvc = pvcs.get(name)
        return pvc is None if phase is None else bool(pvc) and (pvc.get("status") or {}).get("phase") == phase
    pvcs = wait_for(api, "persistentvolumeclaims", done, namespace=namespace,
                    field_selector=f"metadata.name={name}", timeout=timeout,
                    what=f"claim {namespace}/{name} " + (f"in phase {phase}" if phase else "gone"))
    return pvcs.get(name)


def wait_bound(api, namespace: str, name: str, *, timeout: float = 90) -> str:
    """Watch until the claim is Bound; says to which PV."""
    pvc = wait_claim_phase(api, namespace, name, "Bound", timeout=timeout)
    return f"claim {namespace}/{name} Bound to PV {pvc['spec']['volumeName']}"


def wait_available(api, name: str, *, timeout: float = 90) -> str:
    """Watch until the PV controller has seen the new PV (Available): a claim naming it before that
    waits for the controller's next resync (up to 15 s) instead of binding at once."""
    wait_volume_phase(api, name, ("Available", "Bound"), timeout=timeout)
    return f"PV {name} Available"


class PhaseLog:
    """The phases a PV went through, each observed by a watch, with seconds since the log started.

    The binder acts on events, but some transitions wait for its periodic resync
    (``--pvclaimbinder-sync-period``, 15 s by default): hence watches with generous timeouts.
    """

    def __init__(self, api, volume: str):
        self.api, self.volume = api, volume
        self.started = time.monotonic()
        self.rows: list[dict] = []

    def record(self, phase: str, note: str = "") -> None:
        self.rows.append({"seconds": round(time.monotonic() - self.started, 2), "type": phase,
                          "key": note or phase})

    def wait(self, phase: str | tuple[str, ...], note: str = "", *, timeout: float = 90) -> str:
        """Watch until the PV is in ``phase`` (or one of several) and log it; returns the phase seen."""
        pv = wait_volume_phase(self.api, self.volume, phase, timeout=timeout)
        seen = pv["status"]["phase"]
        ref = (pv.get("spec") or {}).get("claimRef")
        self.record(seen, note or (f"{ref['namespace']}/{ref['name']}" if ref else "no claim"))
        return f"PV {self.volume} is {seen}" + (f", claimed by {ref['namespace']}/{ref['name']}" if ref else "")

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["seconds", "type", "key"]).rename(
            columns={"type": "phase", "key": "observed"})

    def plot(self, title: str = ""):
        from ..show import timeline
        return timeline(pd.DataFrame(self.rows, columns=["seconds", "type", "key"]),
                        title=title or f"PV {self.volume}: phases as the watch saw them")


# ---- changing ----------------------------------------------------------------------------------------


def apply_volume(api, body: dict, *, plan: Plan | None = None) -> str | None:
    """Create the PV, or keep it when it exists (its source and capacity are not edited in place)."""
    name = body["metadata"]["name"]
    spec = body["spec"]

    def act() -> str:
        return create_or_keep(client.CoreV1Api(api).create_persistent_volume, body)

    return perform(plan, f"create-pv-{name}", f"create PV {name}: {spec['capacity']['storage']} {_modes(spec)}, "
                 f"reclaim {spec['persistentVolumeReclaimPolicy']}, class {spec.get('storageClassName') or '(none)'}",
                 act, f"kubectl create -f {name}.yaml")


def apply_claim(api, namespace: str, body: dict, *, plan: Plan | None = None) -> str | None:
    """Create the claim, or keep it when it exists (a claim's spec is immutable once bound)."""
    name = body["metadata"]["name"]
    spec = body["spec"]
    cls = spec.get("storageClassName")

    def act() -> str:
        return create_or_keep(client.CoreV1Api(api).create_namespaced_persistent_volume_claim, namespace, body)

    return perform(plan, f"create-pvc-{name}", f"create claim {namespace}/{name}: "
                 f"{spec['resources']['requests']['storage']} {_modes(spec)}, class "
                 f"{'(default, filled in by admission)' if cls is None else cls or '(none)'}",
                 act, f"kubectl -n {namespace} create -f {name}.yaml")


def resolve_backup_dir(backup_dir: str | Path = "") -> Path:
    """Where backups go: ``backup_dir`` made absolute, or by default ``$XDG_STATE_HOME/kubebook/backups/storage``
    (``~/.local/state/...``), outside any repository and kept across runs."""
    if backup_dir:
        return Path(backup_dir).expanduser().resolve()
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "kubebook" / "backups" / "storage"


def backup(obj: dict, backup_dir: str | Path) -> Path:
    """Write ``obj`` as YAML (server-set fields dropped, so it can be created again) into ``backup_dir``."""
    kept = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in obj["metadata"].items()
            if k in ("name", "namespace", "labels", "annotations")}
    kept["metadata"] = meta
    stamp = time.strftime("%Y%m%dT%H%M%S")
    ns = f"{meta['namespace']}-" if meta.get("namespace") else ""
    stem = Path(backup_dir) / f"{obj['kind'].lower()}-{ns}{meta['name']}-{stamp}"
    path, n = stem.with_name(stem.name + ".yaml"), 1
    while path.exists():  # two backups in one second: keep both
        path, n = stem.with_name(f"{stem.name}-{n}.yaml"), n + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_private(path, yaml.safe_dump(mask(kept), sort_keys=False))


def delete_claim(api, namespace: str, name: str, *, backup_dir: str | Path, plan: Plan | None = None,
                 timeout: float = 120) -> str | None:
    """Back up the claim and its PV, delete the claim and wait until it is gone.

    The pvc-protection finalizer keeps a claim while a Pod uses it: delete the Pods first.
    """
    def act() -> str:
        pvc = get_claim(api, namespace, name)
        if pvc is None:
            return "already gone"
        saved = [backup({"kind": "PersistentVolumeClaim", "apiVersion": "v1", **pvc}, backup_dir)]
        volume = (pvc.get("spec") or {}).get("volumeName")
        pv = get_volume(api, volume) if volume else None
        if pv:
            saved.append(backup({"kind": "PersistentVolume", "apiVersion": "v1", **pv}, backup_dir))
        try:
            client.CoreV1Api(api).delete_namespaced_persistent_volume_claim(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        wait_claim_phase(api, namespace, name, None, timeout=timeout)
        return "deleted; backup: " + ", ".join(str(p) for p in saved)

    return perform(plan, f"delete-pvc-{name}", f"back up claim {namespace}/{name} and its PV into {backup_dir}, "
                 "then delete the claim", act, f"kubectl -n {namespace} delete pvc {name}")


def delete_volume(api, name: str, *, backup_dir: str | Path, plan: Plan | None = None,
                  timeout: float = 120) -> str | None:
    """Back up the PV and delete the object (a Retain PV's data stays where it is)."""
    def act() -> str:
        pv = get_volume(api, name)
        if pv is None:
            return "already gone"
        saved = backup({"kind": "PersistentVolume", "apiVersion": "v1", **pv}, backup_dir)
        try:
            client.CoreV1Api(api).delete_persistent_volume(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        wait_volume_phase(api, name, None, timeout=timeout)
        return f"deleted; backup: {saved}"

    return perform(plan, f"delete-pv-{name}", f"back up PV {name} into {backup_dir}, then delete it", act,
                 f"kubectl delete pv {name}")


def make_available(api, name: str, *, plan: Plan | None = None) -> str | None:
    """The admin's step after a Retain PV was Released: drop its claimRef so the binder offers it again.

    Do it only once the data left by the old claim has been dealt with (kept, copied or wiped):
    the next claim gets the volume as it is.
    """
    def act() -> str:
        pv = get_volume(api, name)
        if pv is None:
            raise KubebookError(f"PV {name} not found")
        phase = (pv.get("status") or {}).get("phase")
        if phase == "Available":
            return "already Available"
        if phase != "Released":
            raise KubebookError(f"PV {name} is {phase}, not Released: its claim still exists")
        # JSON patch with a test: only this Released state is changed, never a PV someone re-bound meanwhile
        client.CoreV1Api(api).patch_persistent_volume(name, [
            {"op": "test", "path": "/metadata/resourceVersion", "value": pv["metadata"]["resourceVersion"]},
            {"op": "remove", "path": "/spec/claimRef"}])
        return "claimRef removed"

    return perform(plan, f"release-{name}", f"remove PV {name}'s claimRef so it becomes Available again", act,
                 f"kubectl patch pv {name} --type json -p '[{{\"op\":\"remove\",\"path\":\"/spec/claimRef\"}}]'")


# ---- where kubelet puts volumes ---------------------------------------------------------------------

# volume source field -> the plugin directory kubelet uses under pods/<uid>/volumes/
PLUGIN_DIRS = {"emptyDir": "kubernetes.io~empty-dir", "hostPath": "", "nfs": "kubernetes.io~nfs",
               "configMap": "kubernetes.io~configmap", "secret": "kubernetes.io~secret",
               "projected": "kubernetes.io~projected", "downwardAPI": "kubernetes.io~downward-api",
               "csi": "kubernetes.io~csi"}


def _source(volume: dict) -> str:
    return next((k for k in volume if k != "name"), "")


def pod_volume_paths(pod: dict, claim_volumes: dict[str, dict] | None = None, *,
                     kubelet_root: str = "/var/lib/kubelet") -> pd.DataFrame:
    """Where kubelet puts each volume of ``pod`` on its node.

    ``claim_volumes`` maps a claim name to its bound PV: a claim's directory is named after the PV and
    sits under the PV's plugin. hostPath is not copied anywhere: the container sees the node path itself.
    """
    uid = pod["metadata"]["uid"]
    rows = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        source, name, detail = _source(v), v["name"], ""
        if source == "persistentVolumeClaim":
            claim_name = v["persistentVolumeClaim"]["claimName"]
            pv = (claim_volumes or {}).get(claim_name)
            if not pv:
                rows.append({"volume": name, "type": source, "detail": f"claim {claim_name} (unbound)",
                             "path on the node": "(none until the claim is bound)"})
                continue
            source = next((k for k in pv["spec"] if k in PLUGIN_DIRS), "csi")
            detail = f"claim {claim_name} → PV {pv['metadata']['name']}"
            v, name = {source: pv["spec"].get(source)}, pv["metadata"]["name"]
        if source == "hostPath":
            path = f"{v['hostPath']['path']}  (the node's directory, used in place)"
        else:
            plugin = PLUGIN_DIRS.get(source) or "kubernetes.io~" + source.lower()
            path = f"{kubelet_root}/pods/{uid}/volumes/{plugin}/{name}"
        rows.append({"volume": name, "type": source, "detail": detail, "path on the node": path})
    return pd.DataFrame(rows, columns=["volume", "type", "detail", "path on the node"])


def live_pod_volume_paths(api, namespace: str, selector: str) -> pd.DataFrame:
    """:func:`pod_volume_paths` for every Pod selected (live uid), claims resolved to their live PVs."""
    frames = []
    for p in client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items:
        pod = api.sanitize_for_serialization(p)
        claim_volumes = {}
        for v in pod["spec"].get("volumes") or []:
            if "persistentVolumeClaim" in v:
                claim_name = v["persistentVolumeClaim"]["claimName"]
                bound = ((get_claim(api, namespace, claim_name) or {}).get("spec") or {}).get("volumeName")
                if bound and (pv := get_volume(api, bound)):
                    claim_volumes[claim_name] = pv
        table = pod_volume_paths(pod, claim_volumes)
        table.insert(0, "node", p.spec.node_name or "")
        table.insert(0, "pod", p.metadata.name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["pod", "node", "volume", "type", "detail", "path on the node"])
