"""StorageClasses and dynamic provisioning: a claim names a class, the class's provisioner makes the PV.

    sc = storage_class("kubebook-hostpath", "kubernetes.io/host-path", default=True)
    apply_storage_class(plan, sc)          # created (or kept), marked default; a pre-existing class is backed up
    wait_provisioned(plan, "kubebook-storage", "test-claim")   # the PV's name; says at once if nothing provisions
    plan.cleanup()                         # the class goes only if this run made it; annotations are put back

The course's nfs-client-provisioner (a Deployment that mounts the NFS export and makes one
sub-directory per claim) is described by :func:`nfs_client_provisioner`; it needs a reachable NFS
server, so runbooks only show it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kubernetes import client

from ..errors import KubebookError
from ..objects import Ref, objects
from ..plan import Plan
from .volumes import claim, claim_bound, validate_name, wait_volume_phase

DEFAULT_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
HOSTPATH_PROVISIONER = "kubernetes.io/host-path"
# where kube-controller-manager's host-path provisioner (--enable-hostpath-provisioner) makes directories
HOSTPATH_ROOT = "/tmp/hostpath_pv"


def storage_class(name: str, provisioner: str, *, reclaim_policy: str = "Delete",
                  binding_mode: str = "Immediate", parameters: dict | None = None, default: bool = False) -> dict:
    validate_name(name, "StorageClass name")
    if reclaim_policy not in ("Delete", "Retain"):
        raise KubebookError(f"a StorageClass's reclaimPolicy is Delete or Retain, not {reclaim_policy!r}")
    if binding_mode not in ("Immediate", "WaitForFirstConsumer"):
        raise KubebookError(f"volumeBindingMode {binding_mode!r} is not Immediate or WaitForFirstConsumer")
    if not provisioner:
        raise KubebookError("a StorageClass needs a provisioner (kubernetes.io/no-provisioner for none)")
    body: dict[str, Any] = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                            "metadata": {"name": name}, "provisioner": provisioner,
                            "reclaimPolicy": reclaim_policy, "volumeBindingMode": binding_mode}
    if default:
        body["metadata"]["annotations"] = {DEFAULT_ANNOTATION: "true"}
    if parameters:
        body["parameters"] = {str(k): str(v) for k, v in parameters.items()}
    return body


def class_table(api) -> pd.DataFrame:
    """``kubectl get storageclass`` as a table; ``default`` says who carries the annotation."""
    rows = []
    for sc in client.StorageV1Api(api).list_storage_class().items:
        rows.append({"name": sc.metadata.name,
                     "default": (sc.metadata.annotations or {}).get(DEFAULT_ANNOTATION) == "true",
                     "provisioner": sc.provisioner, "reclaim policy": sc.reclaim_policy,
                     "binding mode": sc.volume_binding_mode, "parameters": sc.parameters or {}})
    return pd.DataFrame(rows, columns=["name", "default", "provisioner", "reclaim policy", "binding mode",
                                       "parameters"])


def default_state(api) -> dict[str, str | None]:
    """Each class's default annotation value (None where absent): what :func:`restore_default_state` restores."""
    return {sc.metadata.name: (sc.metadata.annotations or {}).get(DEFAULT_ANNOTATION)
            for sc in client.StorageV1Api(api).list_storage_class().items}


def _is_default(sc: dict | None) -> bool:
    return ((sc or {}).get("metadata", {}).get("annotations") or {}).get(DEFAULT_ANNOTATION) == "true"


def apply_storage_class(plan: Plan, body: dict) -> str | None:
    """Steps: create the class, or keep it (provisioner, parameters and reclaimPolicy cannot change in
    place); then bring its default annotation to what ``body`` says (a pre-existing class is backed
    up first and its annotation put back at clean-up).

    Refused before any step when a class of that name exists with another provisioner, or when
    marking it default would hand unbound claims without a class, anywhere in the cluster, to this
    class: the PV controller writes a new default class into them (retroactive default assignment),
    and a claim's class cannot be taken back.
    """
    name = body["metadata"]["name"]
    default = _is_default(body)
    current = objects(plan.api).get(Ref("StorageClass", name))
    if current is not None and current.get("provisioner") != body["provisioner"]:
        raise KubebookError(f"StorageClass {name} exists with provisioner {current.get('provisioner')}, not "
                            f"{body['provisioner']}: choose another class name; nothing was changed")
    if default and not _is_default(current):
        waiting = unclassed_claims(plan.api)
        if len(waiting):
            listed = ", ".join(waiting["namespace"] + "/" + waiting["claim"])
            raise KubebookError(f"marking {name} default would give it to unbound claims without a class ({listed}): "
                                "run with make_default=False, or give those claims a class first; nothing was changed")
    result = plan.create(body, step=f"create-sc-{name}", command=f"kubectl apply -f {name}.yaml")
    if current is not None and _is_default(current) != default:
        return set_default(plan, name, default)
    return result


def set_default(plan: Plan, name: str, default: bool, *, restore: bool = True) -> str | None:
    """Add or remove the default-class annotation on ``name`` (backed up first, put back at clean-up)."""
    value = "true" if default else None

    def edit(sc: dict) -> dict | None:
        return None if _is_default(sc) == default else {"metadata": {"annotations": {DEFAULT_ANNOTATION: value}}}

    text = f"{DEFAULT_ANNOTATION}=true" if default else f"{DEFAULT_ANNOTATION}-"
    return plan.modify(Ref("StorageClass", name), edit, step=f"default-{name}", restore=restore,
                       description=f"{'mark' if default else 'unmark'} StorageClass {name} as the default",
                       command=f"kubectl annotate storageclass {name} {text} --overwrite")


def delete_storage_class(plan: Plan, name: str) -> str | None:
    """Delete the class if this run created it (PVs it made are not touched; one that existed is kept)."""
    return plan.delete(Ref("StorageClass", name), step=f"delete-sc-{name}", command=f"kubectl delete storageclass {name}")


def unclassed_claims(api) -> pd.DataFrame:
    """Unbound claims with no storageClassName at all: a new default class is written into them too
    (retroactive default assignment, on since Kubernetes 1.28) and may provision PVs for them."""
    rows = []
    for c in client.CoreV1Api(api).list_persistent_volume_claim_for_all_namespaces().items:
        if c.spec.storage_class_name is None and not c.spec.volume_name:
            rows.append({"namespace": c.metadata.namespace, "claim": c.metadata.name, "phase": c.status.phase})
    return pd.DataFrame(rows, columns=["namespace", "claim", "phase"])


def claim_for_class(name: str, request: str, access_modes: list[str], class_name: str, *,
                    default: bool = True) -> dict:
    """The demo claim: without ``storageClassName`` when the class is the default (admission writes it
    in), else naming ``class_name``."""
    return claim(name, request, access_modes, storage_class=None if default else class_name)


def admitted_class(plan: Plan, namespace: str, sent: dict) -> pd.DataFrame | None:
    """A check step: the claim's storageClassName as sent beside as stored. DefaultStorageClass admission
    fills in the default class when the field was left out (an explicit "" is kept: it means "PVs
    without a class"). None in a dry run."""
    return plan.check(f"admitted-{sent['metadata']['name']}", "the class admission wrote into the claim",
                      lambda: admitted_class_of(plan.api, namespace, sent))


def admitted_class_of(api, namespace: str, sent: dict) -> pd.DataFrame:
    name = sent["metadata"]["name"]
    stored = client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, namespace)
    asked = sent["spec"].get("storageClassName")
    return pd.DataFrame([{"claim": f"{namespace}/{name}",
                          "sent": "(field left out)" if asked is None else repr(asked),
                          "stored": "(unset)" if stored.spec.storage_class_name is None
                          else repr(stored.spec.storage_class_name),
                          "phase": stored.status.phase}])


def provisioned_volume(api, namespace: str, name: str, *, timeout: float = 90) -> str:
    """Watch the claim until it is Bound to a provisioned PV; returns the PV's name. Stops within
    seconds when nothing will provision one (see :func:`kubebook.storage.binding.blocked`)."""
    return claim_bound(api, namespace, name, timeout=timeout)["spec"]["volumeName"]


def wait_provisioned(plan: Plan, namespace: str, name: str, *, timeout: float = 90) -> str | None:
    """:func:`provisioned_volume` as a wait step: the PV's name, None in a dry run."""
    return plan.wait(f"provisioned-{name}", f"a PV is provisioned for claim {namespace}/{name} and bound to it",
                     lambda: provisioned_volume(plan.api, namespace, name, timeout=timeout))


def wait_reclaimed(plan: Plan, volume: str | None, *, reclaim_policy: str = "Delete", timeout: float = 90) -> str | None:
    """After the claim went: with ``Delete`` wait until the PV controller removed the provisioned PV
    (and the provisioner its storage); with ``Retain`` until the PV is Released (it stays, with its
    data: delete it yourself once the data is dealt with)."""
    def act() -> str:
        if reclaim_policy == "Delete":
            wait_volume_phase(plan.api, volume, None, timeout=timeout)
            return f"PV {volume} deleted by the PV controller"
        wait_volume_phase(plan.api, volume, "Released", timeout=timeout)
        return f"PV {volume} Released and kept (kubectl delete pv {volume} once its data is dealt with)"

    what = "is deleted (reclaimPolicy Delete)" if reclaim_policy == "Delete" else "is Released and kept (Retain)"
    return plan.wait(f"reclaimed-{volume or 'pv'}", f"the provisioned PV {volume or ''} {what}".replace("  ", " "), act)


def volume_directory(api, name: str | None) -> pd.DataFrame:
    """A hostPath PV's directory and whether it exists on this machine.

    Only meaningful where kube-controller-manager runs here (the lab): the host-path provisioner makes
    and removes directories on the machine it runs on. On a real cluster look on that node, or at your
    provisioner's backing store (for NFS: the export).
    """
    from .volumes import get_volume
    pv = get_volume(api, name) if name else None
    path = (((pv or {}).get("spec") or {}).get("hostPath") or {}).get("path", "")
    return pd.DataFrame([{"pv": name or "(none: dry run)", "pv exists": pv is not None,
                          "directory": path or "(not a hostPath PV)",
                          "directory exists here": bool(path) and Path(path).is_dir()}])


def directory_now(before: pd.DataFrame) -> pd.DataFrame:
    """Whether the directory :func:`volume_directory` found still exists on this machine."""
    path = str(before["directory"][0])
    return pd.DataFrame([{"directory": path, "exists here": path.startswith("/") and Path(path).is_dir()}])


# ---- the course's nfs-client-provisioner (shown, not applied: it needs a reachable NFS export) ----------

NFS_PROVISIONER_IMAGE = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"


def nfs_client_provisioner(*, namespace: str = "nfs-provisioner", provisioner: str = "luffy.com/nfs",
                           server: str = "127.0.0.1", path: str = "/data/k8s", class_name: str = "nfs",
                           archive_on_delete: bool = True, default: bool = False,
                           image: str = NFS_PROVISIONER_IMAGE) -> list[dict]:
    """The objects of an NFS subdir provisioner: ServiceAccount, RBAC, Deployment and its StorageClass.

    The Deployment mounts the export at /persistentvolumes and, for each claim of the class, makes
    ``<namespace>-<claim>-<pv>`` there and a PV pointing at it. ``archive_on_delete`` keeps the data
    (renamed ``archived-...``) when the claim goes; otherwise it is removed.
    """
    validate_name(namespace, "namespace")
    sa = "nfs-client-provisioner"
    runner = f"{sa}-runner"
    meta = {"name": sa, "namespace": namespace}
    rules = [
        # it creates and deletes the PVs it serves, and records why on the claims
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "update"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "update", "patch"]}]
    # only one replica provisions at a time: the leader election lock lives in the namespace
    leader_rules = [{"apiGroups": [""], "resources": ["endpoints"],
                     "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                     "verbs": ["get", "list", "watch", "create", "update", "patch"]}]
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "labels": {"app": sa}},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": sa}},
                 "template": {"metadata": {"labels": {"app": sa}}, "spec": {
                     "serviceAccountName": sa,
                     "containers": [{"name": sa, "image": image,
                                     "volumeMounts": [{"name": "nfs-client-root", "mountPath": "/persistentvolumes"}],
                                     "env": [{"name": "PROVISIONER_NAME", "value": provisioner},
                                             {"name": "NFS_SERVER", "value": server},
                                             {"name": "NFS_PATH", "value": path}]}],
                     "volumes": [{"name": "nfs-client-root", "nfs": {"server": server, "path": path}}]}}}}
    sc = storage_class(class_name, provisioner, default=default,
                       parameters={"archiveOnDelete": str(archive_on_delete).lower()})
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": runner},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"run-{sa}"}, "subjects": subject,
         "roleRef": {"kind": "ClusterRole", "name": runner, "apiGroup": "rbac.authorization.k8s.io"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": f"leader-locking-{sa}", "namespace": namespace}, "rules": leader_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"leader-locking-{sa}", "namespace": namespace}, "subjects": subject,
         "roleRef": {"kind": "Role", "name": f"leader-locking-{sa}", "apiGroup": "rbac.authorization.k8s.io"}},
        deployment, sc]


def objects_table(objects: list[dict]) -> pd.DataFrame:
    """Kind, name and why each object is there."""
    why = {"Namespace": "home of the provisioner", "ServiceAccount": "identity the provisioner runs as",
           "ClusterRole": "PVs (create/delete), claims (update), classes (read), events",
           "ClusterRoleBinding": "gives the ClusterRole to the ServiceAccount",
           "Role": "leader election lock in its namespace", "RoleBinding": "gives the Role to the ServiceAccount",
           "Deployment": "the provisioner: mounts the export, one sub-directory per claim",
           "StorageClass": "claims name it; provisioner must equal PROVISIONER_NAME"}
    return pd.DataFrame([{"kind": o["kind"], "namespace": o["metadata"].get("namespace", ""),
                          "name": o["metadata"]["name"], "why": why.get(o["kind"], "")} for o in objects])


def manifest(objects: list[dict]) -> str:
    """The objects as one multi-document YAML manifest (secrets masked), as ``kubectl apply -f`` takes it."""
    from ..show import as_yaml
    return "---\n".join(as_yaml(o) for o in objects)


def plan_shown_only(objects: list[dict]) -> pd.DataFrame:
    """The course's setup as a table of steps that are only ever described (no action, no cluster):
    one row per object, status ``shown only``."""
    rows = []
    for o in objects:
        ns = o["metadata"].get("namespace")
        rows.append({"step": f"nfs-{o['kind'].lower()}", "what": f"create {o['kind']} "
                     f"{(ns + '/') if ns else ''}{o['metadata']['name']}", "command":
                     f"kubectl apply -f {o['kind'].lower()}.yaml", "status": "shown only (needs an NFS server)"})
    return pd.DataFrame(rows, columns=["step", "what", "command", "status"])
