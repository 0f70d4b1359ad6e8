"""Bring one namespace back from an etcd snapshot into the live cluster.

The course does this by hand: list the keys, decode each with etcdhelper, convert to YAML,
strip what the server set, kubectl apply. Here the whole snapshot is decoded in one pass
(no running etcd needed), objects are cleaned for re-creation, ordered so that what others
depend on comes first (Velero's restore order), compared with what is live, and applied with
server-side apply. Existing objects that differ are left alone unless ``overwrite`` (and then
backed up first, 0600).

As a runbook does it, every write is a step of one :class:`kubebook.plan.Plan`::

    plan = Plan(target=namespace, kind="namespace", also=scope(target, namespace, snapshot=path), ...)
    items = compare_snapshot(target.api, path, namespace)   # a read: the same in a dry run
    restore(plan, items)        # apply in dependency order; transient apiserver errors are retried
    settled(plan, items)        # claims and Deployments back in the states the snapshot recorded

A restart of the apiserver in the middle is waited out (up to ``timeout``); an object that still
cannot be written fails the step with one line saying how to resume: run it again, and what was
applied compares ``unchanged`` while the rest is created.
"""
from __future__ import annotations

import copy
import difflib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any, Callable

import pandas as pd
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from .. import ownership
from ..connect import raw_request
from ..errors import KubebookError
from ..objects import Ref
from ..safety import mask
from ..waits import _transient, wait_for
from .decode import Record, read_snapshot

FIELD_MANAGER = "kubebook-recover"

# Velero's order, by kind: what others depend on first; custom resources after everything.
KIND_ORDER = ["CustomResourceDefinition", "Namespace", "StorageClass", "PersistentVolume",
              "PersistentVolumeClaim", "ClusterRole", "Role", "ServiceAccount", "ClusterRoleBinding",
              "RoleBinding", "Secret", "ConfigMap", "LimitRange", "ResourceQuota", "PriorityClass",
              "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "CronJob", "Job", "Pod", "Service"]

NEVER_RESTORED = {"Event": "events are history, not state", "Node": "nodes register themselves",
                  "Lease": "leases are held by running processes"}
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "selfLink", "managedFields",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "generateName")
# Annotations the control plane writes; restoring them would claim a binding or revision that is not true.
VOLATILE_ANNOTATIONS = {"pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
                        "volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner",
                        "volume.kubernetes.io/selected-node", "deployment.kubernetes.io/revision",
                        "pv.kubernetes.io/provisioned-by"}
SYSTEM_FINALIZERS = {"kubernetes.io/pvc-protection", "kubernetes.io/pv-protection"}
MANAGED_ENDPOINTSLICE = ("endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io")


class RecoveryError(KubebookError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status  # the apiserver's HTTP status, when it answered


def _retryable(exc: BaseException) -> bool:
    """An error after which the apiserver may answer again: unreachable, restarting, overloaded."""
    if isinstance(exc, RecoveryError):
        return exc.status in (429, 500, 502, 503, 504)
    return _transient(exc)


@dataclass
class Item:
    """One object of the recovery: what it is, what will happen, what happened."""

    kind: str
    name: str
    namespace: str
    api_version: str
    body: dict | None            # cleaned for creation; None when skipped
    action: str = "pending"      # create / unchanged / differs / skip
    reason: str = ""
    diff: str = ""
    result: str = ""
    rank: int = 0                # restore order: lower ranks are applied (and ready) first
    original: dict = field(default_factory=dict, repr=False)

    def row(self) -> dict:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "action": self.action,
                "reason": self.reason, "result": self.result}


# ---- cleaning -----------------------------------------------------------------------------
def clean(obj: dict) -> dict:
    """A copy of ``obj`` fit for creation: server-set metadata and status gone, bindings unclaimed."""
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    meta = obj.setdefault("metadata", {})
    for k in SERVER_METADATA:
        meta.pop(k, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in VOLATILE_ANNOTATIONS}
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    finalizers = [f for f in meta.get("finalizers") or [] if f not in SYSTEM_FINALIZERS]
    meta.pop("finalizers", None)
    if finalizers:
        meta["finalizers"] = finalizers
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Service":
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for port in spec.get("ports") or []:
            port.pop("nodePort", None)  # auto-assigned; a fixed one could collide
    elif kind == "PersistentVolume" and spec.get("claimRef"):
        # the claim is re-created with a new uid: bind by namespace/name again
        for k in ("uid", "resourceVersion"):
            spec["claimRef"].pop(k, None)
    elif kind == "Pod":
        spec.pop("nodeName", None)
        _drop_token_volume(spec)
    elif kind == "Job":
        for labels in (meta.get("labels") or {}, ((spec.get("template") or {}).get("metadata") or {}).get("labels")
                       or {}, (spec.get("selector") or {}).get("matchLabels") or {}):
            for k in ("controller-uid", "batch.kubernetes.io/controller-uid"):
                labels.pop(k, None)
        spec.pop("selector", None)
        spec.pop("manualSelector", None)
    return obj


def _drop_token_volume(spec: dict) -> None:
    """The ServiceAccount admission adds kube-api-access-*; it adds it again on creation."""
    spec["volumes"] = [v for v in spec.get("volumes") or [] if not v.get("name", "").startswith("kube-api-access-")]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        c["volumeMounts"] = [m for m in c.get("volumeMounts") or []
                             if not m.get("name", "").startswith("kube-api-access-")]


def comparable(obj: dict) -> dict:
    """What decides "unchanged": the cleaned object without fields the server assigns anew."""
    out = clean(obj)
    meta = out["metadata"]
    out["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations", "finalizers")
                       if meta.get(k)}
    ann = out["metadata"].get("annotations") or {}
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not ann:
        out["metadata"].pop("annotations", None)
    if out.get("kind") == "Service":
        spec = out.get("spec") or {}
        for k in ("ipFamilies", "ipFamilyPolicy"):
            spec.pop(k, None)
    return out


def _skip_reason(rec: Record, obj: dict, restored_uids: set[str]) -> str:
    kind = obj.get("kind", "")
    if kind in NEVER_RESTORED:
        return NEVER_RESTORED[kind]
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") in restored_uids:
            return f"recreated by its {ref.get('kind')} {ref.get('name')}"
    if kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        return "service-account token: the token controller issues a new one"
    if kind == "ConfigMap" and obj["metadata"]["name"] == "kube-root-ca.crt":
        return "published in every namespace by kube-controller-manager"
    if kind == "Endpoints":
        return "managed by its Service"
    if kind == "EndpointSlice" and (obj["metadata"].get("labels") or {}).get(MANAGED_ENDPOINTSLICE[0]) \
            == MANAGED_ENDPOINTSLICE[1]:
        return "managed by its Service"
    return ""


def _kind_matches(kind: str, wanted: list[str]) -> bool:
    names = {w.strip().lower() for w in wanted if w.strip()}
    k = kind.lower()
    return k in names or f"{k}s" in names or (k.endswith("s") and f"{k}es" in names) or \
        (k.endswith("y") and f"{k[:-1]}ies" in names)


def _rank(kind: str, api_version: str, custom_groups: set[str]) -> int:
    """KIND_ORDER first, then other built-in kinds, then custom resources (after their CRDs)."""
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group in custom_groups and kind != "CustomResourceDefinition":
        return len(KIND_ORDER) + 1
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


# ---- selecting ----------------------------------------------------------------------------
def select(records: list[Record], namespace: str, *, include_kinds: list[str] = (), exclude_kinds: list[str] = (),
           cluster_role_bindings: bool = False) -> list[Item]:
    """The namespace's objects and the cluster-scoped ones they need, cleaned and in restore order."""
    decoded = [r for r in records if r.object]
    in_ns = [r for r in decoded if r.object["metadata"].get("namespace") == namespace]
    ns_obj = [r for r in decoded if r.kind == "Namespace" and r.object["metadata"]["name"] == namespace]
    if not ns_obj and not in_ns:
        raise RecoveryError(f"namespace {namespace!r} is not in this snapshot")
    crds = {(r.object["spec"]["group"], r.object["spec"]["names"]["plural"]): r
            for r in decoded if r.kind == "CustomResourceDefinition"}
    custom_groups = {g for g, _ in crds}
    needed: list[Record] = list(ns_obj)
    for r in in_ns:
        resource = r.where.get("resource", "")
        if "." in resource:
            plural, group = resource.split(".", 1)
            if (group, plural) in crds and crds[(group, plural)] not in needed:
                needed.append(crds[(group, plural)])
    claims = {r.object["metadata"]["name"]: r for r in in_ns if r.kind == "PersistentVolumeClaim"}
    classes = {(c.object.get("spec") or {}).get("storageClassName") for c in claims.values()}
    for r in decoded:
        spec = r.object.get("spec") or {}
        if r.kind == "PersistentVolume" and (spec.get("claimRef") or {}).get("namespace") == namespace:
            needed.append(r)
            classes.add(spec.get("storageClassName"))
        if cluster_role_bindings and r.kind == "ClusterRoleBinding" and any(
                s.get("namespace") == namespace for s in r.object.get("subjects") or []):
            needed.append(r)
    needed += [r for r in decoded if r.kind == "StorageClass" and r.object["metadata"]["name"] in classes]

    candidates = needed + in_ns
    uids = {r.object["metadata"].get("uid") for r in candidates}
    items = []
    for r in candidates:
        obj = r.object
        item = Item(kind=obj.get("kind", ""), name=obj["metadata"]["name"],
                    namespace=obj["metadata"].get("namespace", ""), api_version=obj.get("apiVersion", ""),
                    body=None, original=obj,
                    rank=_rank(obj.get("kind", ""), obj.get("apiVersion", ""), custom_groups))
        reason = _skip_reason(r, obj, uids)
        if not reason and include_kinds and not _kind_matches(item.kind, include_kinds) \
                and item.kind not in ("Namespace", "CustomResourceDefinition"):
            reason = "not in include_kinds"
        if not reason and exclude_kinds and _kind_matches(item.kind, exclude_kinds):
            reason = "in exclude_kinds"
        if reason:
            item.action, item.reason = "skip", reason
        else:
            item.body = clean(obj)
        items.append(item)
    undecodable = [r for r in records if not r.object and r.where.get("namespace") == namespace]
    for r in undecodable:
        items.append(Item(kind="?", name=r.where.get("name", r.key), namespace=namespace, api_version="",
                          body=None, action="skip", reason=f"cannot decode: {r.status}"))
    return sorted(items, key=lambda i: (i.rank, i.kind, i.name))


# ---- comparing and applying ---------------------------------------------------------------
class Cluster:
    """Generic access to any kind through discovery (built-in and custom resources alike)."""

    def __init__(self, api: client.ApiClient):
        api.configuration.connection_pool_maxsize = max(api.configuration.connection_pool_maxsize or 4, 16)
        self.api = api
        cache = Path(tempfile.gettempdir()) / f"kubebook-discovery-{os.getpid()}-{id(api)}.json"
        self.dynamic = DynamicClient(api, cache_file=str(cache))
        self._discovery = threading.Lock()  # the discovery cache is not thread-safe
        self._resources: dict[tuple[str, str], object] = {}

    def resource(self, item: Item):
        key = (item.api_version, item.kind)
        with self._discovery:
            if key not in self._resources:
                try:
                    found = self.dynamic.resources.get(api_version=item.api_version, kind=item.kind)
                except ResourceNotFoundError:
                    self.dynamic.resources.invalidate_cache()  # a CRD created moments ago
                    found = self.dynamic.resources.get(api_version=item.api_version, kind=item.kind)
                self._resources[key] = found
            return self._resources[key]

    def refresh(self) -> None:
        with self._discovery:
            self.dynamic.resources.invalidate_cache()
            self._resources.clear()

    def get(self, item: Item) -> dict | None:
        try:
            res = self.resource(item)
        except ResourceNotFoundError:
            return None  # its CRD is not there yet: the object cannot exist
        try:
            return self.dynamic.get(res, name=item.name, namespace=item.namespace or None).to_dict()
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str) -> dict[str, dict] | None:
        """Every object of a kind in a namespace by name (one request); None if the kind is not served."""
        probe = Item(kind=kind, name="", namespace=namespace, api_version=api_version, body=None)
        try:
            res = self.resource(probe)
        except ResourceNotFoundError:
            return None
        items = self.dynamic.get(res, namespace=namespace).to_dict().get("items", [])
        for obj in items:  # list items come without their type
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
        return {o["metadata"]["name"]: o for o in items}

    def apply(self, item: Item, *, force: bool) -> None:
        """Server-side apply ``item.body`` (PATCH application/apply-patch+yaml; JSON is valid YAML)."""
        path = self.resource(item).path(name=item.name, namespace=item.namespace or None)
        query = {"fieldManager": FIELD_MANAGER, **({"force": "true"} if force else {})}
        status, data = raw_request(self.api, "PATCH", path, body=item.body, query=query,
                                   content_type="application/apply-patch+yaml")
        if status >= 300:
            raise RecoveryError(_status_message(status, data), status)


def _yaml(obj: dict) -> list[str]:
    return yaml.safe_dump(mask(obj), sort_keys=True).splitlines(keepends=True)


def compare(items: list[Item], cluster: Cluster, *, workers: int = 8) -> None:
    """Set each item's action: create (absent), unchanged, or differs (with a masked diff).

    Namespaced objects are read with one list per kind, cluster-scoped ones one by one.
    """
    wanted = [i for i in items if i.body is not None]
    groups = sorted({(i.api_version, i.kind, i.namespace) for i in wanted if i.namespace})
    with ThreadPoolExecutor(max_workers=workers) as pool:
        listed = dict(zip(groups, pool.map(lambda g: cluster.list(*g), groups)))

    def one(item: Item) -> None:
        if item.namespace:
            live = (listed[(item.api_version, item.kind, item.namespace)] or {}).get(item.name)
        else:
            live = cluster.get(item)
        _judge(item, live)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, wanted))


def _judge(item: Item, live: dict | None) -> None:
    """create when absent, unchanged when equal after cleaning, else differs with a masked diff."""
    if live is None:
        item.action, item.reason = "create", "absent"
        return
    if live.get("kind") == "Namespace" and (live.get("status") or {}).get("phase") == "Terminating":
        item.action, item.reason = "differs", "namespace is terminating: finish its deletion first"
        return
    want, have = comparable(item.original), comparable(live)
    if want == have:
        item.action, item.reason = "unchanged", ""
    else:
        item.action = "differs"
        item.diff = "".join(difflib.unified_diff(_yaml(have), _yaml(want), "live", "snapshot"))
        item.reason = f"{sum(1 for l in item.diff.splitlines() if l[:1] in '+-') - 2} changed lines"


def to_apply(items: list[Item], *, overwrite: bool = False) -> list[Item]:
    """What an apply would write: absent objects, and differing ones when ``overwrite``."""
    return [i for i in items if i.action == "create" or (i.action == "differs" and overwrite)]


def apply(items: list[Item], cluster: Cluster, *, overwrite: bool = False, workers: int = 8,
          timeout: float = 60.0, progress: bool = True, on_applied: Callable[[Item], None] | None = None) -> None:
    """Apply in order: each rank (CRDs, Namespace, ..., custom resources) after the previous one.

    Within a rank objects are independent and go concurrently. CRDs are waited on until
    Established before their custom resources are applied. An object the apiserver cannot take
    right now (unreachable, restarting: connection errors, 429, 5xx) is tried again until
    ``timeout`` seconds have passed; any other refusal is recorded in its ``result`` and the rest
    go on. ``on_applied(item)`` is called after each object (progress for callers without a bar).
    """
    from tqdm.auto import tqdm
    todo = to_apply(items, overwrite=overwrite)
    for i in items:
        if i.action == "differs" and not overwrite:
            i.result = "kept live version (overwrite=False)"
        elif i.action in ("unchanged", "skip"):
            i.result = "nothing to do"
    ranks: dict[int, list[Item]] = {}
    for i in todo:
        ranks.setdefault(i.rank, []).append(i)

    deadline = time.monotonic() + timeout

    def one(item: Item) -> None:
        pause = 0.2
        while True:
            try:
                cluster.apply(item, force=item.action == "differs")
                item.result = "created" if item.action == "create" else "overwritten"
                break
            except Exception as exc:  # record and go on: one bad object must not stop the rest
                if _retryable(exc) and time.monotonic() < deadline:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                    pause = min(pause * 2, 2.0)
                    continue
                item.result = f"failed: {_api_message(exc)}"
                break
        if on_applied is not None:
            on_applied(item)

    with tqdm(total=len(todo), desc="applying", unit="obj", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for key in sorted(ranks):
            for _ in pool.map(one, ranks[key]):
                bar.update(1)
            crds = [i.name for i in ranks[key] if i.kind == "CustomResourceDefinition" and i.result == "created"]
            if crds:
                wait_established(cluster.api, crds, max(1.0, deadline - time.monotonic()))
                cluster.refresh()


def _conditions(obj: dict | None) -> dict[str, dict]:
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _crd_blocker(names: list[str]) -> Callable[[dict[str, dict]], str | None]:
    """Why a CRD cannot become Established: its names are refused (NamesAccepted False)."""
    def diagnose(crds: dict[str, dict]) -> str | None:
        for name in names:
            refused = _conditions(crds.get(name)).get("NamesAccepted")
            if refused and refused.get("status") == "False":
                return (f"CustomResourceDefinition {name}: names not accepted ({refused.get('reason')}: "
                        f"{refused.get('message')}); rename or remove the CRD that holds them, then run again")
        return None
    return diagnose


def wait_established(api: client.ApiClient, names: list[str], timeout: float) -> None:
    """Follow the CRDs until each is Established (its custom resources can then be served); a CRD
    whose names are refused stops the wait at once (:class:`~kubebook.waits.WaitBlocked`)."""
    wanted = list(names)
    wait_for(api, "customresourcedefinitions",
             lambda crds: all(_conditions(crds.get(n)).get("Established", {}).get("status") == "True" for n in wanted),
             timeout=timeout, what=f"CRDs {', '.join(wanted)} Established", diagnose=_crd_blocker(wanted))


def _status_message(status: int, data: bytes) -> str:
    try:
        return f"{status}: {json.loads(data).get('message', '')}"[:300]
    except ValueError:
        return f"{status}: {data[:200]!r}"


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message", str(exc))[:300]
        except ValueError:
            pass
    return str(exc).splitlines()[0][:300]


def table(items: list[Item]) -> pd.DataFrame:
    return pd.DataFrame([i.row() for i in items], columns=["kind", "namespace", "name", "action", "reason", "result"])


def diffs(items: list[Item]) -> str:
    """Every "differs" item's diff (live → snapshot), Secret values masked."""
    return "\n".join(f"# {i.kind} {i.namespace}/{i.name}\n{i.diff}" for i in items if i.diff) or "no differences"


# ---- after the apply: the states the snapshot recorded --------------------------------------
SETTLED_COLUMNS = ["kind", "namespace", "name", "recorded", "now", "detail"]


def recorded_states(items: list[Item]) -> list[dict]:
    """What the snapshot says each restored claim and Deployment was: a claim's phase, a
    Deployment's available replicas. A restore waits for these, not for an ideal: a claim that
    was Pending in the snapshot is not waited on to bind."""
    rows = []
    for i in items:
        if i.result not in ("created", "overwritten") and not (i.result == "planned" and i.body is not None):
            continue
        status = (i.original or {}).get("status") or {}
        if i.kind == "PersistentVolumeClaim":
            rows.append({"kind": i.kind, "namespace": i.namespace, "name": i.name,
                         "recorded": status.get("phase") or "Pending"})
        elif i.kind == "Deployment":
            wanted = ((i.original or {}).get("spec") or {}).get("replicas", 1)
            rows.append({"kind": i.kind, "namespace": i.namespace, "name": i.name,
                         "recorded": min(int(status.get("availableReplicas") or 0), int(wanted))})
    return rows


def _claim_reached(claim: dict | None, recorded: str) -> bool:
    if claim is None:
        return False
    return recorded != "Bound" or (claim.get("status") or {}).get("phase") == "Bound"


def _claim_blocker(api: client.ApiClient, namespace: str, recorded: dict[str, str]):
    """Why a restored claim that the snapshot shows Bound cannot bind: its volume is missing, bound
    to another claim, or still reserved for the claim that was deleted; or the PV controller's
    own warning about it."""
    core = client.CoreV1Api(api)

    def diagnose(claims: dict[str, dict]) -> str | None:
        for name, phase in recorded.items():
            claim = claims.get(name)
            if claim is None or _claim_reached(claim, phase):
                continue
            volume = (claim.get("spec") or {}).get("volumeName")
            if volume:
                try:
                    pv = api.sanitize_for_serialization(core.read_persistent_volume(volume))
                except client.exceptions.ApiException as exc:
                    if exc.status != 404:
                        raise
                    return (f"claim {namespace}/{name} (Bound in the snapshot) names volume {volume}, which does "
                            "not exist and was not restored: restore it from the snapshot (do not exclude "
                            "PersistentVolume) or create it, and the claim binds")
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref and (ref.get("namespace"), ref.get("name")) != (namespace, name):
                    return (f"volume {volume} is bound to another claim, {ref.get('namespace')}/{ref.get('name')}: "
                            f"claim {namespace}/{name} cannot have it back while that claim exists")
                if ref.get("uid") and ref["uid"] != claim["metadata"].get("uid"):
                    return (f"volume {volume} is {(pv.get('status') or {}).get('phase', '')} and still reserved for "
                            f"the deleted claim {namespace}/{name} (claimRef uid {ref['uid'][:8]}...), so the restored "
                            f"claim cannot bind: clear it (kubectl patch pv {volume} --type json -p "
                            "'[{\"op\":\"remove\",\"path\":\"/spec/claimRef/uid\"}]') and it binds")
            warning = _latest_warning(core, namespace, "PersistentVolumeClaim", claim["metadata"].get("uid"))
            if warning:
                return f"claim {namespace}/{name} (Bound in the snapshot): {warning}"
        return None
    return diagnose


def _latest_warning(core: client.CoreV1Api, namespace: str, kind: str, uid: str | None) -> str:
    """The newest Warning event about one object (by uid, so a deleted namesake's history does not count)."""
    events = [e for e in core.list_namespaced_event(namespace, field_selector=f"involvedObject.kind={kind},"
                                                    "type=Warning").items if e.involved_object.uid == uid]
    if not events:
        return ""
    last = max(events, key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
    return f"{last.reason}: {last.message}"


def _deployment_reached(deployment: dict | None, recorded: int) -> bool:
    return deployment is not None and int((deployment.get("status") or {}).get("availableReplicas") or 0) >= recorded


def _deployment_blocker(api: client.ApiClient, namespace: str, recorded: dict[str, int]):
    """Why a restored Deployment cannot get back the available replicas it had: its ReplicaSet may
    not create Pods (ReplicaFailure: quota, admission), or its Pods cannot be scheduled."""
    core = client.CoreV1Api(api)

    def diagnose(deployments: dict[str, dict]) -> str | None:
        for name, wanted in recorded.items():
            d = deployments.get(name)
            if d is None or _deployment_reached(d, wanted):
                continue
            failure = _conditions(d).get("ReplicaFailure")
            if failure and failure.get("status") == "True":
                return f"Deployment {namespace}/{name}: {failure.get('reason')}: {failure.get('message')}"
            selector = ",".join(f"{k}={v}" for k, v in
                                (((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}).items())
            for pod in core.list_namespaced_pod(namespace, label_selector=selector).items if selector else []:
                for c in pod.status.conditions or []:
                    if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                        return (f"Deployment {namespace}/{name} had {wanted} available replica(s) in the snapshot, "
                                f"but Pod {pod.metadata.name} cannot be scheduled: {c.message}")
        return None
    return diagnose


def wait_settled(api: client.ApiClient, items: list[Item], timeout: float = 60.0) -> pd.DataFrame:
    """Wait until restored claims and Deployments are back in the states the snapshot recorded
    (:func:`recorded_states`); a wait that cannot succeed stops within seconds with the reason
    (:class:`~kubebook.waits.WaitBlocked`). A table: kind, name, recorded, now."""
    deadline = time.monotonic() + timeout
    rows = []
    expected = recorded_states(items)
    for namespace in sorted({r["namespace"] for r in expected}):
        claims = {r["name"]: r["recorded"] for r in expected if r["namespace"] == namespace
                  and r["kind"] == "PersistentVolumeClaim"}
        deployments = {r["name"]: r["recorded"] for r in expected if r["namespace"] == namespace
                       and r["kind"] == "Deployment"}
        if claims:
            found = wait_for(api, "persistentvolumeclaims",
                             lambda pvcs: all(_claim_reached(pvcs.get(n), p) for n, p in claims.items()),
                             namespace=namespace, timeout=max(1.0, deadline - time.monotonic()),
                             what=f"claims {', '.join(claims)} as the snapshot recorded them",
                             diagnose=_claim_blocker(api, namespace, claims))
            rows += [{"kind": "PersistentVolumeClaim", "namespace": namespace, "name": n, "recorded": p,
                      "now": found[n]["status"].get("phase"), "detail": found[n]["spec"].get("volumeName") or ""}
                     for n, p in claims.items()]
        if deployments:
            found = wait_for(api, "deployments",
                             lambda ds: all(_deployment_reached(ds.get(n), r) for n, r in deployments.items()),
                             namespace=namespace, timeout=max(1.0, deadline - time.monotonic()),
                             what=f"Deployments {', '.join(deployments)} as available as the snapshot recorded",
                             diagnose=_deployment_blocker(api, namespace, deployments))
            rows += [{"kind": "Deployment", "namespace": namespace, "name": n, "recorded": f"{r} available",
                      "now": f"{(found[n].get('status') or {}).get('availableReplicas') or 0} available",
                      "detail": ""} for n, r in deployments.items()]
    return pd.DataFrame(rows, columns=SETTLED_COLUMNS)


def terminating(api: client.ApiClient, namespace: str) -> bool:
    try:
        ns = client.CoreV1Api(api).read_namespace(namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return ns.status.phase == "Terminating"


_DECODED: dict[tuple, list[Record]] = {}
_CLUSTERS: dict[int, Cluster] = {}


def _records(snapshot: str | Path) -> list[Record]:
    """The decoded snapshot, decoded once per file (the scope and the comparison both read it)."""
    path = Path(snapshot).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DECODED:
        _DECODED.clear()
        _DECODED[key] = read_snapshot(path)
    return _DECODED[key]


def cluster_for(api: client.ApiClient) -> Cluster:
    """One :class:`Cluster` per ApiClient (discovery is done once)."""
    found = _CLUSTERS.get(id(api))
    if found is None or found.api is not api:
        found = _CLUSTERS[id(api)] = Cluster(api)
    return found


def plan_from_snapshot(snapshot: str | Path, namespace: str, api: client.ApiClient, *,
                       include_kinds: list[str] = (), exclude_kinds: list[str] = (),
                       cluster_role_bindings: bool = False) -> tuple[list[Item], Cluster]:
    """Decode ``snapshot``, select the namespace's objects and compare them with the live cluster."""
    items = select(_records(snapshot), namespace, include_kinds=list(include_kinds),
                   exclude_kinds=list(exclude_kinds), cluster_role_bindings=cluster_role_bindings)
    cluster = cluster_for(api)
    compare(items, cluster)
    return items, cluster


# ---- the runbook's steps --------------------------------------------------------------------
def scope(target: Any, namespace: str, *, snapshot: str = "", snapshot_dir: str = "", rehearse: bool = False,
          include_kinds: list[str] = (), exclude_kinds: list[str] = (), cluster_role_bindings: bool = False,
          overwrite: bool = False) -> list[str]:
    """Everything besides ``namespace`` a recovery will write, as ``kind/name`` for the Plan's
    ``also`` (and so for ``confirm``): the cluster-scoped objects the snapshot brings back (its
    PersistentVolumes, CRDs, StorageClasses, ClusterRoleBindings when asked) that are absent, or
    differ and ``overwrite``. A rehearsal stages its own, on a lab only, in a namespace it made."""
    if rehearse:
        from .rehearsal import recovery_scope
        return recovery_scope(target, namespace)
    from .snapshot import locate
    items, _ = plan_from_snapshot(locate(snapshot, snapshot_dir=snapshot_dir, target=target), namespace,
                                  target.api, include_kinds=include_kinds, exclude_kinds=exclude_kinds,
                                  cluster_role_bindings=cluster_role_bindings)
    return [ref_of(i).scope for i in to_apply(items, overwrite=overwrite) if not i.namespace and i.kind != "Namespace"]


def ref_of(item: Item) -> Ref:
    return Ref(item.kind, item.name, item.namespace)


def snapshot_to_read(plan, namespace: str, *, snapshot: str = "", snapshot_dir: str = "", rehearse: bool = False,
                     timeout: float = 120.0) -> Path | None:
    """The snapshot the recovery reads: ``snapshot`` (or the newest in ``snapshot_dir``), or, for a
    rehearsal, the one its staging takes (None in a dry run: nothing is staged)."""
    if rehearse:
        from .rehearsal import stage_recovery
        return stage_recovery(plan, namespace, timeout=timeout)
    from .snapshot import locate
    return locate(snapshot, snapshot_dir=snapshot_dir, target=plan.cluster)


def compare_snapshot(api: client.ApiClient, snapshot: str | Path | None, namespace: str, *,
                     include_kinds: list[str] = (), exclude_kinds: list[str] = (),
                     cluster_role_bindings: bool = False) -> list[Item]:
    """The namespace's objects in ``snapshot``, each judged against the live cluster (a read; no
    snapshot yet, as in a rehearsal's dry run: nothing to compare)."""
    if snapshot is None:
        return []
    items, _ = plan_from_snapshot(snapshot, namespace, api, include_kinds=include_kinds,
                                  exclude_kinds=exclude_kinds, cluster_role_bindings=cluster_role_bindings)
    return items


def restore(plan, items: list[Item], *, overwrite: bool = False, rehearse: bool = False,
            timeout: float = 120.0, on_applied: Callable[[Item], None] | None = None) -> pd.DataFrame:
    """Apply ``items`` as one step of ``plan`` (confirm names the namespace and every cluster-scoped
    object written); the items table, with what happened (or, in a dry run, what would).

    Live objects replaced because ``overwrite`` are backed up first (0600, kept: a recovery is
    meant to persist); a failed backup writes nothing. A terminating namespace is refused. Any
    object left unwritten fails the step with one line: run the recovery again to finish.
    ``on_applied`` is :func:`apply`'s progress callback."""
    namespace = plan.target
    writes = to_apply(items, overwrite=overwrite)
    for i in items:
        if i.action == "differs" and not overwrite:
            i.result = "kept live version (overwrite=False)"
        elif i.action in ("unchanged", "skip"):
            i.result = "nothing to do"
        elif i in writes and plan.dry_run:
            i.result = "planned"
    for i in writes:
        plan.touched.append({"step": "apply", "action": "create" if i.action == "create" else "overwrite",
                             "kind": i.kind, "namespace": i.namespace, "name": i.name,
                             "before": "absent" if i.action == "create" else f"differs ({i.reason})",
                             "after": "as in the snapshot" + ("" if i.action == "create" else ", backed up first")})
    if terminating(plan.api, namespace):
        raise RecoveryError(f"namespace {namespace} is terminating: finish its deletion first "
                            "(etcd/stuck-namespace), then run the recovery again; nothing was changed")

    def act() -> str:
        if terminating(plan.api, namespace):
            raise RecoveryError(f"namespace {namespace} started terminating: finish its deletion, then run again")
        cluster = cluster_for(plan.api)
        for i in writes:
            if i.action == "differs":
                live = cluster.get(i)
                if live is not None:
                    path = ownership.backup(live, plan.record)
                    plan.record.add_changed(ownership.Change(ref_of(i), path, restore=False))
        apply(items, cluster, overwrite=overwrite, timeout=timeout, progress=False, on_applied=on_applied)
        if rehearse:
            _adopt_rehearsal_objects(plan, writes)
        failed = [i for i in writes if i.result.startswith("failed")]
        if failed:
            first = failed[0]
            raise RecoveryError(f"{len(failed)} of {len(writes)} object(s) not applied (first: {first.kind} "
                                f"{first.name}: {first.result.removeprefix('failed: ')}); the others are in place: "
                                "run the recovery again to apply the rest (applied objects compare unchanged)")
        done = [i.result for i in writes]
        return f"{done.count('created')} created, {done.count('overwritten')} overwritten"

    what = f"server-side apply {len(writes)} object(s) into {namespace} in dependency order" if items else \
        f"server-side apply the objects of {namespace} from the rehearsal's snapshot in dependency order"
    plan.step("apply", what, act, touches=[ref_of(i) for i in writes],
              command=f"kubectl apply --server-side --field-manager={FIELD_MANAGER} -f <objects from the snapshot>")
    return table(items)


def _adopt_rehearsal_objects(plan, writes: list[Item]) -> None:
    """A rehearsal's namespace and volume come back from its snapshot: this run made them, so its
    clean-up removes them (the namespace last: its claims go before their volume)."""
    from .rehearsal import REHEARSAL_LABEL
    ours = [i for i in writes if i.result == "created" and not i.namespace
            and REHEARSAL_LABEL in ((i.body or {}).get("metadata", {}).get("labels") or {})]
    for i in ours:
        plan.record.add_created(ref_of(i))
    # clean-up goes newest first: namespaces last in the record, so they (and their claims) go
    # before the volumes those claims hold, whatever order earlier attempts added them in
    created = plan.record.created
    plan.record.created = [r for r in created if r.kind != "Namespace"] + [r for r in created if r.kind == "Namespace"]
    plan.record.save()


def settled(plan, items: list[Item], *, timeout: float = 120.0) -> pd.DataFrame:
    """Wait, as a step of ``plan``, until restored claims and Deployments are in the states the
    snapshot recorded (:func:`wait_settled`). A dry run shows what would be waited for."""
    expected = recorded_states(items)
    found = plan.wait("settled", "restored claims and Deployments reach the states the snapshot recorded "
                      f"({len(expected)} object(s))", lambda: wait_settled(plan.api, items, timeout))
    if found is None:
        return pd.DataFrame([{**r, "now": "", "detail": "planned"} for r in expected], columns=SETTLED_COLUMNS)
    return found
