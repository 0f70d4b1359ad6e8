"""Making, listing and removing a schedule's objects in the cluster.

Objects are applied server-side (``fieldManager: kubebook-schedule``), so running ``schedule``
again updates the same objects; a dry run sends the same requests with ``dryRun=All``, so the
apiserver validates every manifest (the CronJob's schedule and Pod template included) and
changes nothing. The namespace is created if missing and never deleted; the records ConfigMap
is created once and never overwritten (it holds the job's history). ``delete`` removes only
objects carrying the schedule's label, and backs the history up first.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import paths
from ..connect import create_or_keep, raw_request
from ..errors import KubebookError
from ..safety import write_private
from . import history
from .job import LABELS, SCHEDULE_LABEL, Schedule
from .permissions import prove

FIELD_MANAGER = "kubebook-schedule"
_PATHS = {  # kind -> (API prefix, plural, namespaced)
    "Namespace": ("/api/v1", "namespaces", False), "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True), "Secret": ("/api/v1", "secrets", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "CronJob": ("/apis/batch/v1", "cronjobs", True),
}


class ScheduleError(KubebookError):
    pass


def object_path(obj: dict, *, collection: bool = False) -> str:
    prefix, plural, namespaced = _PATHS[obj["kind"]]
    meta = obj["metadata"]
    base = f"{prefix}/namespaces/{meta['namespace']}/{plural}" if namespaced else f"{prefix}/{plural}"
    return base if collection else f"{base}/{meta['name']}"


def describe(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta['namespace'] + '/' if meta.get('namespace') else ''}{meta['name']}"


def _message(status: int, data: bytes) -> str:
    try:
        return f"{json.loads(data).get('message', '')} ({status})"
    except ValueError:
        return f"HTTP {status}"


def apply(api, obj: dict, *, dry_run: bool) -> str:
    """Server-side apply one object; "created", "configured", or (dry run) "valid (server dry run)"."""
    query = {"fieldManager": FIELD_MANAGER, "force": "true", **({"dryRun": "All"} if dry_run else {})}
    status, data = raw_request(api, "PATCH", object_path(obj), body=obj, query=query,
                               content_type="application/apply-patch+yaml")
    if status >= 300:
        raise ScheduleError(f"{describe(obj)}: {_message(status, data)}")
    if dry_run:
        return "valid (server dry run)"
    return "created" if status == 201 else "configured"


def create_once(api, obj: dict, *, dry_run: bool) -> str:
    """Create ``obj`` unless it exists (the records ConfigMap: the job's history is never overwritten)."""
    query = {"fieldManager": FIELD_MANAGER, **({"dryRun": "All"} if dry_run else {})}
    status, data = raw_request(api, "POST", object_path(obj, collection=True), body=obj, query=query)
    if status == 409:
        return "exists (kept)"
    if status >= 300:
        raise ScheduleError(f"{describe(obj)}: {_message(status, data)}")
    return "valid (server dry run)" if dry_run else "created"


def ensure_namespace(api, name: str, *, dry_run: bool) -> str:
    core = client.CoreV1Api(api)
    try:
        core.read_namespace(name)
        return "exists"
    except ApiException as exc:
        if exc.status != 404:
            raise ScheduleError(f"namespace {name}: {exc.reason} ({exc.status})") from None
    if dry_run:
        return "would be created"
    return create_or_keep(core.create_namespace, {"metadata": {"name": name, "labels": dict(LABELS)}})


def make(api, schedule: Schedule, *, plan) -> pd.DataFrame:
    """Every object of ``schedule`` through ``plan`` (a :class:`kubebook.plan.Plan`): server-validated in a
    dry run, applied when confirmed. One row per object with what happened."""
    namespace = ensure_namespace(api, schedule.namespace, dry_run=plan.dry_run)
    rows = [{"object": f"Namespace {schedule.namespace}", "result": namespace}]
    for obj in schedule.manifests():
        once = obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == schedule.records_configmap
        action = (lambda o=obj, c=once: (create_once if c else apply)(api, o, dry_run=False))
        if plan.dry_run:
            probe, note = obj, ""
            if namespace == "would be created" and obj["metadata"].get("namespace") == schedule.namespace:
                # a server dry run cannot see a namespace that does not exist yet: validate the object in
                # "default" instead (same schema, same admission), and say so
                probe = {**obj, "metadata": {**obj["metadata"], "namespace": "default"}}
                note = f" (checked in namespace default: {schedule.namespace} does not exist yet)"
            result = (create_once if once else apply)(api, probe, dry_run=True)
            rows.append({"object": describe(obj), "result": result + note})
            plan.step(f"apply-{obj['kind'].lower()}", f"{'create' if once else 'apply'} {describe(obj)}", action)
        else:
            rows.append({"object": describe(obj), "result": plan.step(
                f"apply-{obj['kind'].lower()}", f"{'create' if once else 'apply'} {describe(obj)}", action)})
    return pd.DataFrame(rows, columns=["object", "result"])


def check_access(api, schedule: Schedule) -> pd.DataFrame:
    """SubjectAccessReviews for the job's ServiceAccount; ScheduleError if any answer is not the intended one."""
    import time
    pause = 0.2
    for _ in range(6):  # a new binding reaches the RBAC authorizer's cache within moments; it cannot be watched
        table = prove(api, schedule.grant)
        wrong = table[~table["ok"]]
        if not len(wrong) or (wrong["expected"] == "denied").any():
            break
        time.sleep(pause)
        pause *= 2
    if len(wrong):
        first = wrong.iloc[0]
        raise ScheduleError(f"{len(wrong)} access check(s) disagree with the declared permissions, e.g. "
                            f"{first['verb']} {first['resource']} in {first['namespace']}: expected "
                            f"{first['expected']}, the apiserver says {first['apiserver']}")
    return table


# ---- listing --------------------------------------------------------------------------------
def listing(api, namespace: str = "") -> pd.DataFrame:
    """Every schedule kubebook made (its CronJobs), with the last recorded run of each."""
    batch = client.BatchV1Api(api)
    selector = ",".join(f"{k}={v}" for k, v in LABELS.items())
    items = (batch.list_namespaced_cron_job(namespace, label_selector=selector).items if namespace
             else batch.list_cron_job_for_all_namespaces(label_selector=selector).items)
    rows = []
    for cj in items:
        name = cj.metadata.labels.get(SCHEDULE_LABEL, cj.metadata.name)
        runs = history.read(api, cj.metadata.namespace, history.name_for(name))
        last = runs[-1] if runs else {}
        rows.append({"schedule": name, "namespace": cj.metadata.namespace,
                     "runbook": (cj.metadata.annotations or {}).get("kubebook.io/runbook", ""),
                     "cron": cj.spec.schedule, "suspended": bool(cj.spec.suspend),
                     "last scheduled": cj.status.last_schedule_time.isoformat() if cj.status and cj.status.last_schedule_time else "",
                     "runs recorded": len(runs), "last run": last.get("started", ""),
                     "last status": last.get("status", ""), "where": "cluster"})
    return pd.DataFrame(rows, columns=["schedule", "namespace", "runbook", "cron", "suspended", "last scheduled",
                                       "runs recorded", "last run", "last status", "where"])


# ---- removing -------------------------------------------------------------------------------
def owned(api, name: str, namespace: str) -> list[dict]:
    """Objects labelled as this schedule's (the only ones ``delete`` touches), CronJob first."""
    selector = f"{SCHEDULE_LABEL}={name}," + ",".join(f"{k}={v}" for k, v in LABELS.items())
    found = []
    for kind in ("CronJob", "Secret", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                 "ClusterRoleBinding"):
        prefix, plural, namespaced = _PATHS[kind]
        path = f"{prefix}/{plural}" if not namespaced or kind in ("Role", "RoleBinding") else \
            f"{prefix}/namespaces/{namespace}/{plural}"
        status, data = raw_request(api, "GET", path, query={"labelSelector": selector})
        if status >= 300:
            raise ScheduleError(f"listing {plural}: {_message(status, data)}")
        for item in json.loads(data).get("items", []):
            item.setdefault("kind", kind)
            found.append(item)
    return found


def backup(objects: list[dict], name: str) -> Path | None:
    """The schedule's records ConfigMap as YAML (0600) before it is deleted; None if there is none."""
    keep = [o for o in objects if o["kind"] == "ConfigMap"]
    if not keep:
        return None
    import datetime as dt
    directory = paths.private_dir(paths.backups_root("schedule"))
    path = directory / f"{name}-{dt.datetime.now():%Y%m%d-%H%M%S}.yaml"
    write_private(path, "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in keep))  # restorable: 0600, unmasked
    return path


def remove(api, objects: list[dict], *, plan) -> pd.DataFrame:
    rows = []
    for obj in objects:
        def delete(o=obj):
            status, data = raw_request(api, "DELETE", object_path(o), query={"propagationPolicy": "Background"})
            if status == 404:
                return "already gone"
            if status >= 300:
                raise ScheduleError(f"{describe(o)}: {_message(status, data)}")
            return "deleted"
        rows.append({"object": describe(obj), "result": plan.step("delete", f"delete {describe(obj)}", delete)
                     or "would be deleted"})
    return pd.DataFrame(rows, columns=["object", "result"])


def service_account_kubeconfig(api, schedule: Schedule, path: str | Path, *, server: str, ca_file: str,
                               seconds: int = 600) -> Path:
    """A kubeconfig (0600) that authenticates as the schedule's ServiceAccount with a short-lived
    TokenRequest token: to run the job's command here, with exactly the job's rights."""
    from ..auth.tokens import request_token
    token = request_token(api, schedule.namespace, schedule.service_account, duration_seconds=seconds)
    user = f"{schedule.namespace}:{schedule.service_account}"
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
              "users": [{"name": user, "user": {"token": token._value}}],  # written to a 0600 file, never shown
              "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user}}],
              "current-context": user}
    return write_private(path, yaml.safe_dump(config, sort_keys=False))
