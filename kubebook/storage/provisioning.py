"""StorageClasses and dynamic provisioning: a claim names a class, the class's provisioner makes the PV.

    sc = storage_class("kubebook-hostpath", "kubernetes.io/host-path", default=True)
    before = default_state(api)                 # which classes carry the default annotation now
    apply_storage_class(api, sc, plan=plan)
    ...
    delete_storage_class(api, "kubebook-hostpath", plan=plan); restore_default_state(api, before, plan=plan)

The course's nfs-client-provisioner (a Deployment that mounts the NFS export and makes one
sub-directory per claim) is described by :func:`nfs_client_provisioner`; it needs a reachable NFS
server, so runbooks only show it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..plan import Plan, perform
from .volumes import validate_name, wait_claim_phase, wait_volume_phase

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


def apply_storage_class(api, body: dict, *, plan: Plan | None = None) -> str | None:
    """Create the class, or keep it (provisioner, parameters and reclaimPolicy cannot change in place);
    the default annotation is brought to what ``body`` says either way."""
    name = body["metadata"]["name"]
    default = (body["metadata"].get("annotations") or {}).get(DEFAULT_ANNOTATION) == "true"

    def act() -> str:
        storage = client.StorageV1Api(api)
        try:
            current = storage.read_storage_class(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            storage.create_storage_class(body)
            return "created"
        if current.provisioner != body["provisioner"]:
            raise KubebookError(f"StorageClass {name} exists with provisioner {current.provisioner}, "
                                f"not {body['provisioner']}: delete it first or choose another name")
        is_default = (current.metadata.annotations or {}).get(DEFAULT_ANNOTATION) == "true"
        if is_default != default:
            storage.patch_storage_class(name, {"metadata": {"annotations": {
                DEFAULT_ANNOTATION: "true" if default else None}}})
            return "exists; default annotation " + ("set" if default else "removed")
        return "exists"

    what = f"create StorageClass {name} (provisioner {body['provisioner']}, reclaimPolicy " \
           f"{body.get('reclaimPolicy', 'Delete')}, {body.get('volumeBindingMode', 'Immediate')})" + \
           (" marked default" if default else "")
    return perform(plan, f"create-sc-{name}", what, act, f"kubectl apply -f {name}.yaml")


def set_default(api, name: str, default: bool, *, plan: Plan | None = None) -> str | None:
    """Add or remove the default-class annotation on ``name``."""
    value = "true" if default else None

    def act() -> str:
        client.StorageV1Api(api).patch_storage_class(name, {"metadata": {"annotations": {DEFAULT_ANNOTATION: value}}})
        return "set" if default else "removed"

    text = f"{DEFAULT_ANNOTATION}=true" if default else f"{DEFAULT_ANNOTATION}-"
    return perform(plan, f"default-{name}", f"{'mark' if default else 'unmark'} StorageClass {name} as the default",
                 act, f"kubectl annotate storageclass {name} {text} --overwrite")


def restore_default_state(api, before: dict[str, str | None], *, plan: Plan | None = None) -> str | None:
    """Put the default annotation back as :func:`default_state` recorded it, on classes that still exist."""
    def act() -> str:
        changed = []
        for name, value in default_state(api).items():
            if name in before and before[name] != value:
                client.StorageV1Api(api).patch_storage_class(
                    name, {"metadata": {"annotations": {DEFAULT_ANNOTATION: before[name]}}})
                changed.append(name)
        return ", ".join(changed) or "unchanged"

    return perform(plan, "restore-default-class", "restore the default-class annotations recorded at the start",
                 act, "kubectl annotate storageclass ...")


def delete_storage_class(api, name: str, *, plan: Plan | None = None) -> str | None:
    def act() -> str:
        try:
            client.StorageV1Api(api).delete_storage_class(name)
            return "deleted"
        except ApiException as exc:
            if exc.status == 404:
                return "already gone"
            raise

    return perform(plan, f"delete-sc-{name}", f"delete StorageClass {name} (PVs it made are not touched)", act,
                 f"kubectl delete storageclass {name}")


def unclassed_claims(api) -> pd.DataFrame:
    """Unbound claims with no storageClassName at all: a new default class is written into them too
    (retroactive default assignment, on since Kubernetes 1.28) and may provision PVs for them."""
    rows = []
    for c in client.CoreV1Api(api).list_persistent_volume_claim_for_all_namespaces().items:
        if c.spec.storage_class_name is None and not c.spec.volume_name:
            rows.append({"namespace": c.metadata.namespace, "claim": c.metadata.name, "phase": c.status.phase})
    return pd.DataFrame(rows, columns=["namespace", "claim", "phase"])


def admitted_class(api, namespace: str, sent: dict) -> pd.DataFrame:
    """The claim's storageClassName as sent beside as stored: DefaultStorageClass admission fills in the
    default class when the field was left out (an explicit "" is kept: it means "PVs without a class")."""
    name = sent["metadata"]["name"]
    stored = client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, namespace)
    asked = sent["spec"].get("storageClassName")
    return pd.DataFrame([{"claim": f"{namespace}/{name}",
                          "sent": "(field left out)" if asked is None else repr(asked),
                          "stored": "(unset)" if stored.spec.storage_class_name is None
                          else repr(stored.spec.storage_class_name),
                          "phase": stored.status.phase}])


def wait_provisioned(api, namespace: str, name: str, *, timeout: float = 90) -> str:
    """Watch the claim until it is Bound to a provisioned PV; returns the PV's name."""
    pvc = wait_claim_phase(api, namespace, name, "Bound", timeout=timeout)
    return pvc["spec"]["volumeName"]


def wait_volume_gone(api, name: str, *, timeout: float = 90) -> str:
    """Watch until the reclaim policy Delete removed the PV."""
    wait_volume_phase(api, name, None, timeout=timeout)
    return f"PV {name} deleted by the PV controller"


def volume_directory(api, name: str) -> pd.DataFrame:
    """A hostPath PV's directory and whether it exists on this machine.

    Only meaningful where kube-controller-manager runs here (the lab): the host-path provisioner makes
    and removes directories on the machine it runs on. On a real cluster look on that node, or at your
    provisioner's backing store (for NFS: the export).
    """
    from .volumes import get_volume
    pv = get_volume(api, name)
    path = (((pv or {}).get("spec") or {}).get("hostPath") or {}).get("path", "")
    return pd.DataFrame([{"pv": name, "pv exists": pv is not None, "directory": path or "(not a hostPath PV)",
                          "directory exists here": bool(path) and Path(path).is_dir()}])


def directory_exists(path: str) -> pd.DataFrame:
    return pd.DataFrame([{"directory": path, "exists here": Path(path).is_dir()}])


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


def plan_shown_only(objects: list[dict], plan: Plan) -> None:
    """Add a step per object that is only ever described (no action): the dry run of the course's setup."""
    for o in objects:
        ns = o["metadata"].get("namespace")
        plan.step(f"nfs-{o['kind'].lower()}", f"create {o['kind']} {(ns + '/') if ns else ''}{o['metadata']['name']}"
                  " (shown only: needs an NFS server)", None,
                  command=f"kubectl apply -f {o['kind'].lower()}.yaml")
