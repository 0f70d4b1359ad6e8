"""Bring one namespace back from an etcd snapshot into the live cluster.

The course does this by hand: list the keys, decode each with etcdhelper, convert to YAML,
strip what the server set, kubectl apply. Here the whole snapshot is decoded in one pass
(no running etcd needed), objects are cleaned for re-creation, ordered so that what others
depend on comes first (Velero's restore order), compared with what is live, and applied with
server-side apply. Existing objects that differ are left alone unless ``overwrite``.
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

import pandas as pd
import yaml
from kubernetes import client, watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from ..connect import raw_request
from ..errors import KubebookError
from ..safety import mask
from ..waits import wait_for
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
    pass


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
            raise RecoveryError(_status_message(status, data))


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
          timeout: float = 60.0, progress: bool = True) -> None:
    """Apply in order: each rank (CRDs, Namespace, ..., custom resources) after the previous one.

    Within a rank objects are independent and go concurrently. CRDs are waited on until
    Established before their custom resources are applied.
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

    def one(item: Item) -> None:
        try:
            cluster.apply(item, force=item.action == "differs")
            item.result = "created" if item.action == "create" else "overwritten"
        except Exception as exc:  # record and go on: one bad object must not stop the rest
            item.result = f"failed: {_api_message(exc)}"

    with tqdm(total=len(todo), desc="applying", unit="obj", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for key in sorted(ranks):
            for _ in pool.map(one, ranks[key]):
                bar.update(1)
            crds = [i.name for i in ranks[key] if i.kind == "CustomResourceDefinition" and i.result == "created"]
            if crds:
                wait_established(cluster.api, crds, timeout)
                cluster.refresh()


def wait_established(api: client.ApiClient, names: list[str], timeout: float) -> None:
    """Follow the CRDs until each is Established (its custom resources can then be served)."""
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    pending = set(names)
    w = watch.Watch()
    for event in w.stream(ext.list_custom_resource_definition, timeout_seconds=int(timeout)):
        obj = event["raw_object"]
        conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
        if conds.get("Established") == "True":
            pending.discard(obj["metadata"]["name"])
        if not pending or time.monotonic() > deadline:
            w.stop()
    if pending:
        raise RecoveryError(f"CRDs not established within {timeout:.0f}s: {', '.join(sorted(pending))}")


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


def wait_settled(api: client.ApiClient, items: list[Item], timeout: float = 60.0) -> pd.DataFrame:
    """Wait until restored claims are Bound again; a table of each claim and its volume."""
    claims = {i.name: i.namespace for i in items if i.kind == "PersistentVolumeClaim" and i.result == "created"}
    rows = []
    for namespace in sorted(set(claims.values())):
        names = [n for n, ns in claims.items() if ns == namespace]
        found = wait_for(api, "persistentvolumeclaims",
                         lambda pvcs: all((pvcs.get(n, {}).get("status") or {}).get("phase") == "Bound"
                                          for n in names),
                         namespace=namespace, timeout=timeout, what=f"claims {', '.join(names)} Bound")
        rows += [{"namespace": namespace, "claim": n, "phase": found[n]["status"]["phase"],
                  "volume": found[n]["spec"].get("volumeName")} for n in names]
    return pd.DataFrame(rows, columns=["namespace", "claim", "phase", "volume"])


def terminating(api: client.ApiClient, namespace: str) -> bool:
    try:
        ns = client.CoreV1Api(api).read_namespace(namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return ns.status.phase == "Terminating"


def plan_from_snapshot(snapshot: str | Path, namespace: str, api: client.ApiClient, *,
                       include_kinds: list[str] = (), exclude_kinds: list[str] = (),
                       cluster_role_bindings: bool = False) -> tuple[list[Item], Cluster]:
    """Decode ``snapshot``, select the namespace's objects and compare them with the live cluster."""
    items = select(read_snapshot(snapshot), namespace, include_kinds=list(include_kinds),
                   exclude_kinds=list(exclude_kinds), cluster_role_bindings=cluster_role_bindings)
    cluster = Cluster(api)
    compare(items, cluster)
    return items, cluster
