"""A namespace stuck in Terminating: why, and the safe ways out.

The course deletes ``/registry/namespaces/<ns>`` from etcd. That skips every finalizer and
leaves the namespace's other keys behind (they come back to haunt a namespace of the same
name). The safe order is: make unavailable APIServices available (or remove them), let the
remaining objects go (fix their controllers, or remove their finalizers), then finish with
the namespace's ``/finalize`` subresource. Deleting the key stays a last resort, after a
snapshot, and is reported with the keys it orphans.
"""
from __future__ import annotations

import time

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.resource import ResourceList

from ..errors import KubebookError
from ..plan import Plan
from ..waits import WaitTimeout, wait_for
from .client import Etcd
from .recover import Cluster
from .snapshot import save

DEMO_FINALIZER = "kubebook.io/hold"


class StuckNamespaceError(KubebookError):
    pass


def namespace_state(api: client.ApiClient, namespace: str) -> dict | None:
    try:
        ns = client.CoreV1Api(api).read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return api.sanitize_for_serialization(ns)


def conditions(ns: dict) -> pd.DataFrame:
    rows = [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message")} for c in (ns.get("status") or {}).get("conditions") or []]
    return pd.DataFrame(rows, columns=["type", "status", "reason", "message"])


def remaining(api: client.ApiClient, namespace: str) -> pd.DataFrame:
    """Every object still in the namespace, from every listable namespaced resource (discovery)."""
    cluster = Cluster(api)
    rows = []
    for res in cluster.dynamic.resources.search(namespaced=True):
        if isinstance(res, ResourceList) or "list" not in (res.verbs or []) or "/" in res.name \
                or res.group == "events.k8s.io":
            continue
        try:
            items = cluster.dynamic.get(res, namespace=namespace).to_dict().get("items", [])
        except Exception:  # an unavailable API fails here: reported separately, as an APIService
            continue
        for it in items:
            meta = it.get("metadata", {})
            rows.append({"kind": res.kind, "apiVersion": res.group_version, "name": meta.get("name"),
                         "finalizers": ", ".join(meta.get("finalizers") or []),
                         "deleting since": meta.get("deletionTimestamp") or ""})
    return pd.DataFrame(rows, columns=["kind", "apiVersion", "name", "finalizers", "deleting since"])


def unavailable_apiservices(api: client.ApiClient) -> pd.DataFrame:
    """Aggregated APIs that do not answer: the usual reason content cannot be discovered or deleted."""
    rows = []
    for svc in client.ApiregistrationV1Api(api).list_api_service().items:
        available = next((c for c in svc.status.conditions or [] if c.type == "Available"), None)
        if available is not None and available.status != "True":
            rows.append({"apiservice": svc.metadata.name, "reason": available.reason, "message": available.message})
    return pd.DataFrame(rows, columns=["apiservice", "reason", "message"])


def diagnose(api: client.ApiClient, namespace: str) -> dict:
    """Phase, finalizers, conditions, what is left in it, and unavailable APIServices."""
    ns = namespace_state(api, namespace)
    if ns is None:
        return {"namespace": namespace, "phase": "absent", "verdict": "the namespace does not exist"}
    left = remaining(api, namespace)
    broken = unavailable_apiservices(api)
    spec_finalizers = (ns.get("spec") or {}).get("finalizers") or []
    phase = (ns.get("status") or {}).get("phase")
    if phase != "Terminating":
        verdict = "not terminating: nothing to fix"
    elif len(broken):
        verdict = "unavailable APIServices block discovery: fix or delete them first"
    elif len(left) and (left["finalizers"] != "").any():
        verdict = "objects with finalizers remain: fix their controllers or remove the finalizers"
    elif len(left):
        verdict = "objects remain: the namespace controller is still deleting them"
    elif spec_finalizers:
        verdict = f"only namespace finalizers remain ({', '.join(spec_finalizers)}): finish with /finalize"
    else:
        verdict = "nothing left: it should disappear shortly"
    return {"namespace": namespace, "phase": phase, "deletionTimestamp": ns["metadata"].get("deletionTimestamp"),
            "spec.finalizers": spec_finalizers, "metadata.finalizers": ns["metadata"].get("finalizers") or [],
            "conditions": conditions(ns), "remaining": left, "unavailable apiservices": broken, "verdict": verdict}


def summary(diagnosis: dict) -> pd.DataFrame:
    keys = ("namespace", "phase", "deletionTimestamp", "spec.finalizers", "metadata.finalizers", "verdict")
    return pd.DataFrame([{"what": k, "value": diagnosis.get(k)} for k in keys if k in diagnosis])


def remove_object_finalizers(api: client.ApiClient, namespace: str, left: pd.DataFrame) -> str:
    """Clear metadata.finalizers on each remaining object being deleted (what blocks them)."""
    cluster = Cluster(api)
    done = []
    for row in left.to_dict("records"):
        if not row["finalizers"] or not row["deleting since"]:
            continue
        res = cluster.dynamic.resources.get(api_version=row["apiVersion"], kind=row["kind"])
        try:
            cluster.dynamic.patch(res, name=row["name"], namespace=namespace,
                                  body={"metadata": {"finalizers": None}},
                                  content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:  # gone as soon as its last finalizer went: that is the point
                raise
        done.append(f"{row['kind']}/{row['name']}")
    return ", ".join(done) or "no object held by a finalizer"


def finalize(api: client.ApiClient, namespace: str) -> str:
    """PUT /api/v1/namespaces/<ns>/finalize with spec.finalizers emptied."""
    core = client.CoreV1Api(api)
    ns = core.read_namespace(namespace)
    if not ns.spec.finalizers:
        return "spec.finalizers already empty"
    held = list(ns.spec.finalizers)
    ns.spec.finalizers = []
    core.replace_namespace_finalize(namespace, ns)
    return f"removed namespace finalizers {', '.join(held)}"


def wait_gone(api: client.ApiClient, namespace: str, timeout: float = 60.0) -> str:
    wait_for(api, "namespaces", lambda ns: namespace not in ns, timeout=timeout, what=f"namespace {namespace} gone")
    return "gone"


def delete_etcd_key(etcd: Etcd, namespace: str, backup_dir) -> str:
    """Last resort: snapshot, then delete /registry/namespaces/<ns>; report the keys left orphaned."""
    taken = save(etcd, backup_dir, progress=False)
    etcd.delete(f"/registry/namespaces/{namespace}")
    orphans = [k for k in etcd.keys("/registry/") if f"/{namespace}/" in k]
    return (f"snapshot {taken.path}; deleted the namespace key; {len(orphans)} key(s) of its objects are "
            f"orphaned in etcd and reappear if a namespace named {namespace} is created again")


def fix(api: client.ApiClient, namespace: str, *, confirm: str = "", remove_finalizers: bool = True,
        use_finalize: bool = True, etcd_delete: bool = False, etcd: Etcd | None = None, backup_dir=None,
        timeout: float = 60.0) -> Plan:
    """The safe way out, step by step; the etcd key deletion only when asked (and given etcd)."""
    plan = Plan(target=namespace, confirm=confirm, kind="namespace")
    diag = diagnose(api, namespace)
    if diag["phase"] != "Terminating":
        plan.step("nothing-to-do", f"leave {namespace} alone: {diag['verdict']}")
        return plan
    if len(diag["unavailable apiservices"]):
        names = ", ".join(diag["unavailable apiservices"]["apiservice"])
        plan.step("apiservices", f"NOT automated: make these APIServices available or delete them: {names}")
    if remove_finalizers:
        plan.step("remove-finalizers", "clear finalizers of the objects still being deleted",
                  lambda: remove_object_finalizers(api, namespace, diag["remaining"]),
                  command=f"kubectl -n {namespace} patch <kind>/<name> --type=merge -p "
                          "'{\"metadata\":{\"finalizers\":null}}'")
    if use_finalize:
        plan.step("finalize", f"empty spec.finalizers through /api/v1/namespaces/{namespace}/finalize",
                  lambda: _finalize_when_empty(api, namespace, timeout),
                  command=f"kubectl replace --raw /api/v1/namespaces/{namespace}/finalize -f <ns.json>")
    plan.step("wait", f"wait until {namespace} is gone",
              lambda: _wait_or_report(api, namespace, timeout, last_resort_next=etcd_delete))
    if etcd_delete:
        if etcd is None or backup_dir is None:
            raise StuckNamespaceError("etcd_delete needs an etcd connection and a backup directory")
        plan.step("etcd-delete", f"LAST RESORT: snapshot, then delete /registry/namespaces/{namespace} from etcd",
                  lambda: delete_etcd_key(etcd, namespace, backup_dir) if namespace_state(api, namespace) else
                  "not needed: the namespace is gone", command=f"etcdctl del /registry/namespaces/{namespace}")
    return plan


def _finalize_when_empty(api: client.ApiClient, namespace: str, timeout: float) -> str:
    """Finalize only once no content is left: finalizing earlier would orphan that content."""
    deadline = time.monotonic() + timeout
    while namespace_state(api, namespace) is not None:
        left = remaining(api, namespace)
        if left.empty:
            return finalize(api, namespace)
        if time.monotonic() > deadline:
            raise StuckNamespaceError(f"{len(left)} object(s) still in {namespace}; not finalizing over them")
        try:  # the namespace controller deletes what is left; follow its events rather than sleep
            wait_for(api, "namespaces", lambda ns: namespace not in ns, timeout=2, what="namespace gone")
        except WaitTimeout:
            pass
    return "gone before finalize was needed"


def _wait_or_report(api: client.ApiClient, namespace: str, timeout: float, *, last_resort_next: bool) -> str:
    try:
        return wait_gone(api, namespace, timeout)
    except WaitTimeout:
        why = f"{namespace} still there after {timeout:.0f}s: {diagnose(api, namespace)['verdict']}"
        if last_resort_next:
            return why + "; going on to the last resort"
        raise StuckNamespaceError(why) from None


def stage_stuck(api: client.ApiClient, namespace: str, *, timeout: float = 60.0) -> dict:
    """Lab demo: a namespace whose deletion blocks on a ConfigMap finalizer and a namespace finalizer."""
    core = client.CoreV1Api(api)
    if namespace_state(api, namespace) is None:
        core.create_namespace({"metadata": {"name": namespace},
                               "spec": {"finalizers": ["kubernetes", DEMO_FINALIZER]}})
        wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=namespace, timeout=timeout,
                 what="namespace ready")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "held", "finalizers": [DEMO_FINALIZER]},
                                                      "data": {"why": "a finalizer nobody removes"}})
        core.delete_namespace(namespace)
    wait_for(api, "namespaces", lambda ns: _stuck(ns.get(namespace)), timeout=timeout,
             what=f"{namespace} stuck on finalizers")
    return diagnose(api, namespace)


def _stuck(ns: dict | None) -> bool:
    """Terminating and held: by content with finalizers (the controller says so in a condition),
    or, once the content is gone, by a namespace finalizer nobody removes."""
    if not ns or (ns.get("status") or {}).get("phase") != "Terminating":
        return False
    conds = {c.get("type"): c.get("status") for c in (ns.get("status") or {}).get("conditions") or []}
    spec_finalizers = (ns.get("spec") or {}).get("finalizers") or []
    return conds.get("NamespaceFinalizersRemaining") == "True" or (
        DEMO_FINALIZER in spec_finalizers and "kubernetes" not in spec_finalizers)
