"""A schedule's run records kept in the cluster: its job's Pod (and the files in it) go, the ConfigMap stays.

``kubebook schedule`` creates one ConfigMap per schedule, ``kubebook-runs-<name>``, and lets the
job's ServiceAccount get and update that one object only (by name). Each run adds its record
(the same masked JSON as the local record) and the newest ``keep`` are kept, so
``kubebook schedule list`` shows how the last run went without a shell on any node.
"""
from __future__ import annotations

import json

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError

PREFIX = "kubebook-runs-"


def name_for(schedule: str) -> str:
    return f"{PREFIX}{schedule}"


def manifest(namespace: str, schedule: str, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name_for(schedule), "namespace": namespace, "labels": labels}, "data": {}}


def append(namespace: str, name: str, rec, *, kubeconfig: str = "", context: str = "", keep: int = 20) -> None:
    """Add ``rec`` (a :class:`kubebook.records.RunRecord`) to the ConfigMap; KubebookError if refused."""
    from ..connect import api_client
    api = api_client(kubeconfig or None, context or None)
    core = client.CoreV1Api(api)
    for _ in range(5):  # an update races another writer only if two runs overlap; the CronJob forbids that
        try:
            cm = core.read_namespaced_config_map(name, namespace)
            data = dict(cm.data or {})
            data[f"{rec.id}.json"] = rec.to_json()
            for old in sorted(data)[:-keep]:
                data.pop(old)
            cm.data = data
            core.replace_namespaced_config_map(name, namespace, cm)
            return
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise KubebookError(f"{exc.reason} ({exc.status})") from None
    raise KubebookError("the ConfigMap kept changing under this run")


def read(api, namespace: str, name: str) -> list[dict]:
    """The records in a schedule's ConfigMap, oldest first ([] if it has none or is gone)."""
    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    out = []
    for key in sorted(cm.data or {}):
        try:
            out.append(json.loads(cm.data[key]))
        except ValueError:
            continue
    return sorted(out, key=lambda r: r.get("started", ""))
