"""PersistentVolumes and claims as objects, their phases watched, and the admin's Retain round trip.

    pv = persistent_volume("kubebook-nfs-pv", "1Gi", ["ReadWriteMany"], nfs=("127.0.0.1", "/data/k8s/nginx"))
    apply_volume(plan, pv)                                   # a step: kubectl create -f (kept if it exists)
    apply_claim(plan, "kubebook-storage", claim("pvc-nfs", "1Gi", ["ReadWriteMany"]))
    phases = PhaseLog(plan, "kubebook-nfs-pv")
    phases.wait("Bound", claim=("kubebook-storage", "pvc-nfs"))  # watch; says at once why it cannot bind
    delete_claim(plan, "kubebook-storage", "pvc-nfs")        # only a claim this run created
    phases.wait("Released"); make_available(plan, "kubebook-nfs-pv"); phases.wait("Available")
    phases.plot()

Everything that changes the cluster is a step of a :class:`kubebook.plan.Plan`: created objects
are recorded and removed at clean-up, pre-existing ones are backed up before a change and put
back. Reads take an ApiClient; ``wait_volume_phase``/``wait_claim_phase`` are the plain watches.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

import pandas as pd
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..objects import Ref, objects
from ..plan import Plan
from ..scheduling.workloads import IMAGE
from ..waits import WaitTimeout, wait_for

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


VOLUME_LABEL = "kubebook.io/volume"  # a demo PV's own label: its claim selects it, so it can take no other PV


def demo_volume(name: str, capacity: str, access_modes: list[str], *, reclaim_policy: str = "Retain",
                host_path: str = "", nfs_server: str = "", nfs_path: str = "") -> dict:
    """A demo PV labelled with its own name, backed by NFS when ``nfs_server`` is set, else by ``host_path``."""
    pv = persistent_volume(name, capacity, access_modes, reclaim_policy=reclaim_policy,
                           host_path="" if nfs_server else host_path,
                           nfs=(nfs_server, nfs_path) if nfs_server else None, labels={VOLUME_LABEL: name})
    return pv


def claim_for(volume: dict, name: str, request: str) -> dict:
    """A claim that only ``volume`` can satisfy: no class, its access modes, and a selector on its labels.

    The binder still matches by its rules (class, size, modes, selector), but no PV that is not the
    demo's can ever be taken (and later released or deleted) by the demo."""
    return claim(name, request, volume["spec"]["accessModes"], storage_class="",
                 selector={"matchLabels": dict(volume["metadata"].get("labels") or {})})


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
    wanted = None if names is None else [n for n in names if n]
    for pv in client.CoreV1Api(api).list_persistent_volume().items:
        if wanted is not None and pv.metadata.name not in wanted:
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


def wait_volume_phase(api, name: str, phase: str | tuple[str, ...] | None, *, timeout: float = 90,
                      diagnose: Callable[[dict], str | None] | None = None) -> dict | None:
    """Watch the PV until its phase is ``phase`` (or one of several; ``None``: until it is gone); returns it."""
    wanted = (phase,) if isinstance(phase, str) else phase

    def done(pvs: dict[str, dict]) -> bool:
        pv = pvs.get(name)
        return pv is None if wanted is None else bool(pv) and (pv.get("status") or {}).get("phase") in wanted
    pvs = wait_for(api, "persistentvolumes", done, field_selector=f"metadata.name={name}", timeout=timeout,
                   what=f"PV {name} " + (f"in phase {' or '.join(wanted)}" if wanted else "gone"), diagnose=diagnose)
    return pvs.get(name)


def wait_claim_phase(api, namespace: str, name: str, phase: str | None, *, timeout: float = 90,
                     diagnose: Callable[[dict], str | None] | None = None) -> dict | None:
    """Watch the claim until its phase is ``phase`` (``None``: until it is gone); returns it."""
    def done(pvcs: dict[str, dict]) -> bool:
        pvc = pvcs.get(name)
        return pvc is None if phase is None else bool(pvc) and (pvc.get("status") or {}).get("phase") == phase
    pvcs = wait_for(api, "persistentvolumeclaims", done, namespace=namespace,
                    field_selector=f"metadata.name={name}", timeout=timeout,
                    what=f"claim {namespace}/{name} " + (f"in phase {phase}" if phase else "gone"), diagnose=diagnose)
    return pvcs.get(name)


def claim_bound(api, namespace: str, name: str, *, timeout: float = 90) -> dict:
    """Watch the claim until it is Bound; returns it. Stops within seconds when it cannot bind as
    things are (no PV passes the binder's rules and nothing will provision one: see
    :func:`kubebook.storage.binding.blocked`)."""
    from .binding import claim_diagnosis
    return wait_claim_phase(api, namespace, name, "Bound", timeout=timeout,
                            diagnose=claim_diagnosis(api, namespace, name))


NUDGE_ANNOTATION = "kubebook.io/looked-at"
NUDGE_AFTER = 2.0  # seconds a claim this run made may stay unbound before the wait touches it


def wait_bound(plan: Plan, namespace: str, name: str, *, timeout: float = 90) -> dict | None:
    """:func:`claim_bound` as a wait step of ``plan``: the bound claim, None in a dry run.

    The PV controller binds a claim when it syncs it: on every change of the claim, else at its
    periodic pass (15 s by default, 5 s on a kubebook lab). When it looked too early (a PV it had
    not seen yet in its cache) the claim waits for that pass; so if a claim this run created is still unbound after ``NUDGE_AFTER``
    seconds, the wait annotates it (``kubebook.io/looked-at``), which makes the controller look at
    once. Someone else's claim is never touched."""
    ref = Ref("PersistentVolumeClaim", name, namespace)

    def act() -> dict:
        try:
            return claim_bound(plan.api, namespace, name, timeout=NUDGE_AFTER)
        except WaitTimeout:
            pass
        current = objects(plan.api).get(ref)
        if current is not None and plan.covers(ref) and plan.record.owns(ref, current):
            objects(plan.api).patch(ref, {"metadata": {"annotations": {NUDGE_ANNOTATION: f"{time.time():.0f}"}}})
        return claim_bound(plan.api, namespace, name, timeout=max(1.0, timeout - NUDGE_AFTER))

    return plan.wait(f"bound-{name}", f"claim {namespace}/{name} is Bound (or the binder's rules say why it "
                     "cannot be)", act)


def wait_available(plan: Plan, name: str, *, timeout: float = 90) -> str | None:
    """Wait until the PV controller has seen the new PV (Available): a claim naming it before that
    waits for the controller's next resync (up to 15 s by default, 5 s on a kubebook lab) instead
    of binding at once."""
    def act() -> str:
        wait_volume_phase(plan.api, name, ("Available", "Bound"), timeout=timeout)
        return f"PV {name} Available"

    return plan.wait(f"available-{name}", f"PV {name} is Available", act)


class PhaseLog:
    """The phases a PV went through, each observed by a watch, with seconds since the log started.

    Each :meth:`wait` is a wait step of the plan (described in a dry run). The binder acts on
    events; a wait for ``Bound`` with the claim named stops early, saying why, when the binder's
    rules say the claim cannot bind.
    """

    def __init__(self, plan: Plan, volume: str):
        self.plan, self.volume = plan, volume
        self.started = time.monotonic()
        self.rows: list[dict] = []

    def record(self, phase: str, note: str = "") -> None:
        self.rows.append({"seconds": round(time.monotonic() - self.started, 2), "type": phase,
                          "key": note or phase})

    def wait(self, phase: str | tuple[str, ...], note: str = "", *, timeout: float = 90,
             claim: tuple[str, str] | None = None) -> str | None:
        """Watch until the PV is in ``phase`` (or one of several) and log it; returns the phase seen."""
        wanted = phase if isinstance(phase, str) else " or ".join(phase)

        def act() -> str:
            diagnose = None
            if claim:
                from .binding import claim_diagnosis
                diagnose = claim_diagnosis(self.plan.api, *claim)
            pv = wait_volume_phase(self.plan.api, self.volume, phase, timeout=timeout, diagnose=diagnose)
            seen = pv["status"]["phase"]
            ref = (pv.get("spec") or {}).get("claimRef")
            self.record(seen, note or (f"{ref['namespace']}/{ref['name']}" if ref else "no claim"))
            return f"PV {self.volume} is {seen}" + (f", claimed by {ref['namespace']}/{ref['name']}" if ref else "")

        return self.plan.wait(f"pv-{self.volume}-{wanted.replace(' or ', '-').lower()}",
                              f"PV {self.volume} is {wanted}", act)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["seconds", "type", "key"]).rename(
            columns={"type": "phase", "key": "observed"})

    def plot(self, title: str = ""):
        """The phases on a time axis; None when nothing was observed (a dry run)."""
        if not self.rows:
            return None
        import matplotlib.pyplot as plt
        from ..show import timeline
        fig = timeline(pd.DataFrame(self.rows, columns=["seconds", "type", "key"]),
                       title=title or f"PV {self.volume}: phases as the watch saw them")
        plt.close(fig)
        return fig


# ---- changing ----------------------------------------------------------------------------------------


def apply_volume(plan: Plan, body: dict) -> str | None:
    """Create the PV, or keep it when it exists (its source and capacity are not edited in place)."""
    name = body["metadata"]["name"]
    return plan.create(body, step=f"create-pv-{name}", command=f"kubectl create -f {name}.yaml")


def apply_claim(plan: Plan, namespace: str, body: dict) -> str | None:
    """Create the claim, or keep it when it exists (a claim's spec is immutable once bound)."""
    name = body["metadata"]["name"]
    return plan.create(body, namespace, step=f"create-pvc-{name}", command=f"kubectl -n {namespace} create -f {name}.yaml")


def delete_claim(plan: Plan, namespace: str, name: str, *, timeout: float = 120) -> str | None:
    """Delete the claim if this run created it (one that existed before is kept: its data may matter)
    and wait until it is gone. The pvc-protection finalizer keeps a claim while a Pod uses it:
    delete the Pods first."""
    return plan.delete(Ref("PersistentVolumeClaim", name, namespace), step=f"delete-pvc-{name}", timeout=timeout,
                       command=f"kubectl -n {namespace} delete pvc {name}")


def release_claim(plan: Plan, namespace: str, name: str, *, when: bool = True, timeout: float = 120) -> str | None:
    """The first clean-up step of a demo: delete the claim this run created, so the PVs it bound are
    free to go (a PV bound to a claim keeps the ``kubernetes.io/pv-protection`` finalizer until the
    claim is gone). Nothing when ``when`` is false (everything stays, as ``plan.cleanup(when=False)`` says)."""
    return delete_claim(plan, namespace, name, timeout=timeout) if when else None


def remove_users(plan: Plan, namespace: str, deployment: str, *, timeout: float = 120) -> str | None:
    """Delete the Deployment that mounts a claim, so the claim can go (the ``kubernetes.io/pvc-protection``
    finalizer holds a claim while a Pod uses it). One that existed before the run is backed up first
    and re-created at clean-up."""
    return plan.delete(Ref("Deployment", deployment, namespace), step=f"delete-{deployment}", timeout=timeout,
                       existing="backup", restore=True, command=f"kubectl -n {namespace} delete deployment {deployment}")


def delete_volume(plan: Plan, name: str, *, timeout: float = 120) -> str | None:
    """Delete the PV if this run created it (a Retain PV's data stays where it is)."""
    return plan.delete(Ref("PersistentVolume", name), step=f"delete-pv-{name}", timeout=timeout,
                       command=f"kubectl delete pv {name}")


def make_available(plan: Plan, name: str) -> str | None:
    """The admin's step after a Retain PV was Released: drop its claimRef so the binder offers it again.

    Do it only once the data left by the old claim has been dealt with (kept, copied or wiped):
    the next claim gets the volume as it is. The patch is conditional on the version read, so a PV
    someone re-bound meanwhile is never changed.
    """
    def edit(pv: dict) -> dict | None:
        phase = (pv.get("status") or {}).get("phase")
        if phase == "Available" and not (pv.get("spec") or {}).get("claimRef"):
            return None
        if phase != "Released":
            raise KubebookError(f"PV {name} is {phase}, not Released: its claim still exists")
        return {"spec": {"claimRef": None}}

    return plan.modify(Ref("PersistentVolume", name), edit, step=f"release-{name}",
                       description=f"remove PV {name}'s claimRef so it becomes Available again",
                       command=f"kubectl patch pv {name} --type json -p "
                               "'[{\"op\":\"remove\",\"path\":\"/spec/claimRef\"}]'")


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
