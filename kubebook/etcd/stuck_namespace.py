"""A namespace stuck in Terminating: why, and the safe ways out.

The course deletes ``/registry/namespaces/<ns>`` from etcd. That skips every finalizer and
leaves the namespace's other keys behind (they come back to haunt a namespace of the same
name). The safe order is: make unavailable APIServices available (or remove them), let the
remaining objects go (fix their controllers, or remove their finalizers), then finish with
the namespace's ``/finalize`` subresource. Deleting the key stays a last resort, after a
snapshot, and is reported with the keys it orphans.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError
from kubernetes.dynamic.resource import ResourceList

from .. import ownership
from ..errors import KubebookError
from ..objects import Ref
from ..waits import WaitBlocked, WaitTimeout, wait_for
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


def remove_object_finalizers(plan, namespace: str) -> str:
    """Clear metadata.finalizers on each object in ``namespace`` that is being deleted (what blocks
    it). Each object is backed up first (0600, kept: the change is the point); a failed backup
    stops before that object is changed."""
    api = plan.api
    cluster = Cluster(api)
    done = []
    for row in remaining(api, namespace).to_dict("records"):
        if not row["finalizers"] or not row["deleting since"]:
            continue
        res = cluster.dynamic.resources.get(api_version=row["apiVersion"], kind=row["kind"])
        try:
            live = cluster.dynamic.get(res, name=row["name"], namespace=namespace).to_dict()
        except NotFoundError:
            continue  # gone meanwhile
        live.setdefault("apiVersion", row["apiVersion"])
        live.setdefault("kind", row["kind"])
        saved = ownership.backup(live, plan.record)
        plan.record.add_changed(ownership.Change(Ref.of(live, namespace), saved, restore=False))
        try:
            cluster.dynamic.patch(res, name=row["name"], namespace=namespace, body={"metadata": {"finalizers": None}},
                                  content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:  # gone as soon as its last finalizer went: that is the point
                raise
        done.append(f"{row['kind']}/{row['name']} (backup {saved})")
    return ", ".join(done) or "no object held by a finalizer"


def finalize(plan, namespace: str) -> str:
    """PUT /api/v1/namespaces/<ns>/finalize with spec.finalizers emptied (the namespace backed up first)."""
    api = plan.api
    core = client.CoreV1Api(api)
    ns = core.read_namespace(namespace)
    if not ns.spec.finalizers:
        return "spec.finalizers already empty"
    body = api.sanitize_for_serialization(ns)
    saved = ownership.backup({"apiVersion": "v1", "kind": "Namespace", **body}, plan.record)
    plan.record.add_changed(ownership.Change(Ref("Namespace", namespace), saved, restore=False))
    held = list(ns.spec.finalizers)
    ns.spec.finalizers = []
    core.replace_namespace_finalize(namespace, ns)
    return f"removed namespace finalizers {', '.join(held)} (backup {saved})"


def blocker(api: client.ApiClient, namespace: str, *, remove_finalizers: bool, use_finalize: bool):
    """Why ``namespace`` cannot finish deleting with the steps this run takes, or None.

    Definite reasons, seen at once: an unavailable APIService (the namespace controller cannot
    discover or delete what it serves); an object held by a finalizer this run leaves and nobody
    removes (kubebook's rehearsal finalizer, or any held longer than ``patience`` seconds);
    namespace finalizers other than ``kubernetes`` once nothing is left and ``use_finalize`` is off."""
    patience = 30.0

    def diagnose(namespaces: dict[str, dict]) -> str | None:
        ns = namespaces.get(namespace)
        if ns is None:
            return None
        broken = unavailable_apiservices(api)
        if len(broken):
            row = broken.iloc[0]
            return (f"APIService {row['apiservice']} is unavailable ({row['reason']}): neither the namespace "
                    "controller nor this run can see the objects it serves, so the namespace cannot be emptied or "
                    "safely finalized; make it available or delete it, then run again")
        left = remaining(api, namespace)
        held = left[(left["finalizers"] != "") & (left["deleting since"] != "")]
        for row in held.to_dict("records"):
            since = _age(row["deleting since"])
            if DEMO_FINALIZER in row["finalizers"] or since > patience:
                fix = "run with remove_finalizers=True" if not remove_finalizers else "its finalizer came back"
                return (f"{row['kind']}/{row['name']} has been held by finalizer(s) {row['finalizers']} for "
                        f"{since:.0f}s and nothing removes them: fix their controller, or {fix}")
        finalizers = [f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        if left.empty and finalizers and not use_finalize:
            return (f"nothing is left in {namespace} but namespace finalizer(s) {', '.join(finalizers)}, which "
                    "nothing removes: run with use_finalize=True")
        return None
    return diagnose


def _age(timestamp: str) -> float:
    import datetime as dt
    when = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (dt.datetime.now(dt.timezone.utc) - when).total_seconds()


def wait_gone(api: client.ApiClient, namespace: str, timeout: float = 60.0, *, diagnose=None) -> str:
    wait_for(api, "namespaces", lambda ns: namespace not in ns, timeout=timeout, what=f"namespace {namespace} gone",
             field_selector=f"metadata.name={namespace}", diagnose=diagnose)
    return "gone"


def delete_etcd_key(etcd: Etcd, namespace: str, backup_dir, *, drill: bool = False) -> str:
    """Last resort: snapshot (a failed one stops here), then delete /registry/namespaces/<ns>; report
    the keys left orphaned. A rehearsal's orphans were made by it, and go too (``drill``)."""
    taken = save(etcd, backup_dir, progress=False)
    etcd.delete(f"/registry/namespaces/{namespace}")
    orphans = [k for k in etcd.keys("/registry/") if f"/{namespace}/" in k]
    if drill:
        for key in orphans:
            etcd.delete(key)
        return (f"snapshot {taken.path}; deleted the namespace key; the rehearsal's {len(orphans)} orphaned key(s) "
                "deleted too (outside a rehearsal they stay, and reappear with a namespace of the same name)")
    return (f"snapshot {taken.path}; deleted the namespace key; {len(orphans)} key(s) of its objects are "
            f"orphaned in etcd and reappear if a namespace named {namespace} is created again")


def fix(plan, namespace: str, *, remove_finalizers: bool = True, use_finalize: bool = True,
        etcd_delete: bool = False, etcd_params: dict | None = None, backup_dir: str = "", rehearse: bool = False,
        timeout: float = 60.0) -> pd.DataFrame:
    """The safe way out, as steps of ``plan`` (target: the namespace); the etcd key deletion only
    when asked. Waits stop within seconds when the namespace cannot finish with these steps
    (:func:`blocker`). Returns the table of steps."""
    from .client import connect
    from .snapshot import resolve_dir
    api = plan.api
    diag = diagnose(api, namespace)
    if diag["phase"] != "Terminating":
        plan.step("nothing-to-do", f"leave {namespace} alone: {diag['verdict']}")
        return plan.table()
    if len(diag["unavailable apiservices"]):
        names = ", ".join(diag["unavailable apiservices"]["apiservice"])
        plan.step("apiservices", f"NOT automated: make these APIServices available or delete them: {names}")
    if remove_finalizers:
        plan.step("remove-finalizers", "clear finalizers of the objects still being deleted (each backed up first)",
                  lambda: remove_object_finalizers(plan, namespace), touches=[Ref("Namespace", namespace)],
                  command=f"kubectl -n {namespace} patch <kind>/<name> --type=merge -p "
                          "'{\"metadata\":{\"finalizers\":null}}'")
    if use_finalize:
        plan.step("finalize", f"empty spec.finalizers through /api/v1/namespaces/{namespace}/finalize once it is "
                  "empty (the namespace backed up first)",
                  lambda: _finalize_when_empty(plan, namespace, timeout, remove_finalizers=remove_finalizers),
                  touches=[Ref("Namespace", namespace)],
                  command=f"kubectl replace --raw /api/v1/namespaces/{namespace}/finalize -f <ns.json>")
    plan.wait("gone", f"{namespace} is gone", lambda: _wait_or_report(
        api, namespace, timeout, last_resort_next=etcd_delete,
        diagnose=blocker(api, namespace, remove_finalizers=remove_finalizers, use_finalize=use_finalize)))
    if etcd_delete:
        etcd = connect(**(etcd_params or {}), target=plan.cluster)
        backups = Path(backup_dir).expanduser() if backup_dir else resolve_dir("", plan.cluster)
        plan.step("etcd-delete", f"LAST RESORT: snapshot etcd into {backups}, then delete "
                  f"/registry/namespaces/{namespace}",
                  lambda: delete_etcd_key(etcd, namespace, backups, drill=rehearse) if namespace_state(api, namespace)
                  else "not needed: the namespace is gone", touches=[Ref("Namespace", namespace)],
                  command=f"etcdctl snapshot save {backups}/...; etcdctl del /registry/namespaces/{namespace}")
    return plan.table()


def _finalize_when_empty(plan, namespace: str, timeout: float, *, remove_finalizers: bool) -> str:
    """Finalize only once no content is left (finalizing earlier would orphan that content); the
    namespace controller deletes what is left, and a blocker ends the wait at once. While an
    APIService is unavailable the objects it serves cannot be seen, so "empty" cannot be known:
    that blocks too."""
    api = plan.api
    diagnose = blocker(api, namespace, remove_finalizers=remove_finalizers, use_finalize=True)

    def empty(namespaces: dict) -> bool:
        return namespace not in namespaces or (unavailable_apiservices(api).empty and remaining(api, namespace).empty)

    try:
        wait_for(api, "namespaces", empty,
                 field_selector=f"metadata.name={namespace}", timeout=timeout,
                 what=f"the content of {namespace} deleted", diagnose=diagnose)
    except WaitTimeout:
        left = remaining(api, namespace)
        raise StuckNamespaceError(f"{len(left)} object(s) still in {namespace} after {timeout:.0f}s; not finalizing "
                                  "over them (run again to keep waiting)") from None
    if namespace_state(api, namespace) is None:
        return "gone before finalize was needed"
    return finalize(plan, namespace)


def _wait_or_report(api: client.ApiClient, namespace: str, timeout: float, *, last_resort_next: bool,
                    diagnose=None) -> str:
    try:
        return wait_gone(api, namespace, timeout, diagnose=diagnose)
    except (WaitTimeout, WaitBlocked) as exc:
        why = f"{namespace} still there: {exc}"
        if last_resort_next:
            return why + "; going on to the last resort"
        raise StuckNamespaceError(why) from None


# ---- the rehearsal ----------------------------------------------------------------------------
def rehearsal(plan, namespace: str, *, rehearse: bool = True, timeout: float = 60.0) -> str:
    """With ``rehearse`` (a kubebook lab only, in a namespace that is absent or a rehearsal's):
    steps that make ``namespace`` stuck in Terminating on a ConfigMap finalizer and a namespace
    finalizer nobody removes. Without, nothing. Returns what it did or would do."""
    from .rehearsal import labelled, require_scratch
    if not rehearse:
        return "no rehearsal: diagnosing the namespace as it is"
    require_scratch(plan.cluster, namespace, "stuck-namespace")
    api = plan.api
    state = namespace_state(api, namespace)
    if state is not None and (state.get("status") or {}).get("phase") == "Terminating":
        plan.step("rehearsal", f"use {namespace}: an earlier rehearsal left it stuck in Terminating")
        return f"{namespace} is already stuck from an earlier rehearsal"
    plan.create(labelled({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
                          "spec": {"finalizers": ["kubernetes", DEMO_FINALIZER]}}, "stuck-namespace"),
                step="rehearsal-namespace", command=f"kubectl create namespace {namespace}")
    plan.wait("rehearsal-namespace-ready", f"namespace {namespace} has its default ServiceAccount",
              lambda: wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=namespace,
                               timeout=timeout, what="namespace ready") and "ready")
    plan.create({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "held", "namespace": namespace, "finalizers": [DEMO_FINALIZER]},
                 "data": {"why": "a finalizer nobody removes"}}, namespace, step="rehearsal-held-configmap",
                command=f"kubectl -n {namespace} create -f held-configmap.yaml")
    plan.step("rehearsal-delete", f"delete namespace {namespace} (it stays Terminating)",
              lambda: client.CoreV1Api(api).delete_namespace(namespace) and "deletion requested",
              touches=[Ref("Namespace", namespace)], command=f"kubectl delete namespace {namespace} --wait=false")
    plan.wait("rehearsal-stuck", f"{namespace} is stuck on its finalizers",
              lambda: wait_for(api, "namespaces", lambda ns: _stuck(ns.get(namespace)), timeout=timeout,
                               field_selector=f"metadata.name={namespace}",
                               what=f"{namespace} stuck on finalizers") and "stuck")
    return f"rehearsal staged in {namespace}" if plan.acting else f"a rehearsal would stage {namespace}"


def _stuck(ns: dict | None) -> bool:
    """Terminating and held: by content with finalizers (the controller says so in a condition),
    or, once the content is gone, by a namespace finalizer nobody removes."""
    if not ns or (ns.get("status") or {}).get("phase") != "Terminating":
        return False
    conds = {c.get("type"): c.get("status") for c in (ns.get("status") or {}).get("conditions") or []}
    spec_finalizers = (ns.get("spec") or {}).get("finalizers") or []
    return conds.get("NamespaceFinalizersRemaining") == "True" or (
        DEMO_FINALIZER in spec_finalizers and "kubernetes" not in spec_finalizers)
