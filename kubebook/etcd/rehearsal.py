"""Rehearsals on the lab: stage a disaster in a namespace made for it, then mend it.

Classrooms and tests need a disaster to recover from. A rehearsal runs on a kubebook lab only
(:meth:`kubebook.connect.Target.require_lab` checks that the kubeconfig really is the lab's),
under the run's ``confirm`` like any change, and only in a namespace that does not exist or
that a kubebook rehearsal made (it carries :data:`REHEARSAL_LABEL`): staging a disaster
deletes the namespace, so it is never one somebody else uses.

    also = recovery_scope(target, "kubebook-recovery")        # refuses anything but a lab's scratch namespace
    plan = Plan(target="kubebook-recovery", kind="namespace", also=also, confirm=confirm, cluster=target)
    snapshot = stage_recovery(plan, "kubebook-recovery")       # build, snapshot, delete (steps)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from .. import ownership, samples
from ..errors import KubebookError
from ..objects import Ref, objects
from ..plan import Plan
from ..waits import wait_deleted, wait_for

REHEARSAL_LABEL = "kubebook.io/rehearsal"


class RehearsalRefused(KubebookError):
    """A rehearsal was asked to stage a disaster where it may not."""

    exit_code = 2


def require_scratch(target: Any, namespace: str, rehearsal: str) -> Any:
    """The lab ``target`` is, if ``namespace`` may hold a rehearsal there; else RehearsalRefused.

    May: absent, or made by a kubebook rehearsal (labelled :data:`REHEARSAL_LABEL`)."""
    lab = target.require_lab()
    existing = objects(target.api).get(Ref("Namespace", namespace))
    if existing is not None and REHEARSAL_LABEL not in ((existing.get("metadata") or {}).get("labels") or {}):
        raise RehearsalRefused(f"namespace {namespace} exists and was not made by a kubebook rehearsal: the "
                               f"{rehearsal} rehearsal deletes the namespace it stages in, so it runs only in one "
                               "it made (choose another namespace); nothing was changed")
    return lab


def labelled(body: dict, rehearsal: str) -> dict:
    meta = dict(body.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), REHEARSAL_LABEL: rehearsal}
    return {**body, "metadata": meta}


def is_rehearsal(obj: dict | None) -> bool:
    return REHEARSAL_LABEL in (((obj or {}).get("metadata") or {}).get("labels") or {})


# ---- namespace recovery -----------------------------------------------------------------------
def _manifests(namespace: str) -> dict[str, Any]:
    parts: dict[str, Any] = {"contents": []}
    for m in samples.luffy(namespace):
        if m["kind"] == "CustomResourceDefinition":
            parts["crd"] = m
        elif m["kind"] == "Namespace":
            parts["namespace"] = labelled(m, "namespace-recovery")
        elif m["kind"] == "PersistentVolume":
            parts["volume"] = labelled(m, "namespace-recovery")
        else:
            parts["contents"].append(m)
    return parts


def recovery_scope(target: Any, namespace: str) -> list[str]:
    """What a recovery rehearsal touches besides ``namespace``: the sample volume and CRD (``kind/name``)."""
    require_scratch(target, namespace, "namespace-recovery")
    parts = _manifests(namespace)
    return [Ref.of(parts["volume"]).scope, Ref.of(parts["crd"]).scope]


def stage_recovery(plan: Plan, namespace: str, *, timeout: float = 120.0) -> Path | None:
    """Build the sample namespace (one object of each kind a recovery handles, a custom resource, a
    bound claim), snapshot etcd, then delete the namespace and its volume: steps of ``plan``.

    The snapshot is the backup of everything deleted. Returns its path (None in a dry run)."""
    from .recover import Cluster, Item, wait_established
    from .snapshot import resolve_dir, save
    from .client import connect
    lab = require_scratch(plan.cluster, namespace, "namespace-recovery")
    parts = _manifests(namespace)
    crd, ns_body, volume = parts["crd"], parts["namespace"], parts["volume"]
    api = plan.api

    plan.create(crd, step="rehearsal-crd", command="kubectl apply -f appconfig-crd.yaml")
    plan.wait("rehearsal-crd-established", f"CRD {crd['metadata']['name']} is Established",
              lambda: wait_established(api, [crd["metadata"]["name"]], timeout) or "established")
    plan.create(ns_body, step="rehearsal-namespace", command=f"kubectl create namespace {namespace}")
    plan.wait("rehearsal-namespace-ready", f"namespace {namespace} has its default ServiceAccount",
              lambda: wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=namespace,
                               timeout=timeout, what=f"ServiceAccount {namespace}/default") and "ready")
    plan.create(volume, step="rehearsal-volume", command=f"kubectl apply -f {volume['metadata']['name']}.yaml")

    def build() -> str:
        cluster = Cluster(api)
        for m in parts["contents"]:
            meta = m["metadata"]
            cluster.apply(Item(kind=m["kind"], name=meta["name"], namespace=namespace, api_version=m["apiVersion"],
                               body=ownership.mark(m, plan.record.run)), force=True)
        return f"{len(parts['contents'])} objects"

    contents = [Ref.of(m, namespace) for m in parts["contents"]]
    plan.step("rehearsal-objects", f"create the sample objects in {namespace} (" +
              ", ".join(sorted({r.kind for r in contents})) + ")", build, touches=contents,
              command=f"kubectl -n {namespace} apply --server-side -f samples/")
    plan.wait("rehearsal-claim-bound", f"claim {namespace}/mysql-data is Bound",
              lambda: _wait_bound(api, namespace, timeout))
    plan.wait("rehearsal-running", f"Deployment {namespace}/eladmin-web has its replicas available (the "
              "snapshot holds the namespace as it ran: Pods and ReplicaSet too)",
              lambda: _wait_available(api, namespace, timeout))

    def snapshot() -> str:
        with connect(target=plan.cluster, log=None) as etcd:
            return save(etcd, resolve_dir("", plan.cluster), progress=False).path

    taken = plan.step("rehearsal-snapshot", f"snapshot etcd into {resolve_dir('', plan.cluster)} (the backup of "
                      "what the next step deletes)", snapshot, command="etcdctl snapshot save <lab>/snapshots/...")

    def disaster() -> str:
        core = client.CoreV1Api(api)
        core.delete_namespace(namespace)
        wait_deleted(api, Ref("Namespace", namespace), timeout=timeout)
        core.delete_persistent_volume(volume["metadata"]["name"])
        wait_deleted(api, Ref.of(volume), timeout=timeout)
        for ref in (Ref("Namespace", namespace), Ref.of(volume)):  # gone: nothing left for the clean-up
            if ref in plan.record.created:
                plan.record.created.remove(ref)
        plan.record.save()
        return f"namespace {namespace} and volume {volume['metadata']['name']} deleted"

    plan.step("rehearsal-disaster", f"delete namespace {namespace} and volume {volume['metadata']['name']} "
              f"(lab {lab.name}: the disaster to recover from)", disaster,
              touches=[Ref("Namespace", namespace), Ref.of(volume)],
              command=f"kubectl delete namespace {namespace}; kubectl delete pv {volume['metadata']['name']}")
    return Path(taken) if taken else None


def _wait_bound(api, namespace: str, timeout: float) -> str:
    from .recover import _claim_blocker
    wait_for(api, "persistentvolumeclaims",
             lambda p: (p.get("mysql-data", {}).get("status") or {}).get("phase") == "Bound",
             namespace=namespace, timeout=timeout, what="sample claim Bound",
             diagnose=_claim_blocker(api, namespace, {"mysql-data": "Bound"}))
    return "bound"


def _wait_available(api, namespace: str, timeout: float) -> str:
    from .recover import _deployment_blocker

    def available(deployments: dict) -> bool:
        d = deployments.get("eladmin-web") or {}
        return (d.get("status") or {}).get("availableReplicas", 0) >= (d.get("spec") or {}).get("replicas", 1)

    wait_for(api, "deployments", available, namespace=namespace, timeout=timeout, what="sample Deployment available",
             diagnose=_deployment_blocker(api, namespace, {"eladmin-web": 1}))
    return "available"
