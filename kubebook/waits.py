"""Watch-driven waits with timeouts: list once, then follow the watch until a condition holds."""
from __future__ import annotations

import time
from typing import Callable

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .errors import KubebookError


class WaitTimeout(KubebookError):
    """The condition did not hold before the timeout."""


# resource -> (api class, cluster-wide list method, namespaced list method)
_LISTERS = {
    "nodes": (client.CoreV1Api, "list_node", None),
    "namespaces": (client.CoreV1Api, "list_namespace", None),
    "pods": (client.CoreV1Api, "list_pod_for_all_namespaces", "list_namespaced_pod"),
    "serviceaccounts": (client.CoreV1Api, "list_service_account_for_all_namespaces",
                        "list_namespaced_service_account"),
    "events": (client.CoreV1Api, "list_event_for_all_namespaces", "list_namespaced_event"),
    "persistentvolumes": (client.CoreV1Api, "list_persistent_volume", None),
    "storageclasses": (client.StorageV1Api, "list_storage_class", None),
    "persistentvolumeclaims": (client.CoreV1Api, "list_persistent_volume_claim_for_all_namespaces",
                               "list_namespaced_persistent_volume_claim"),
    "deployments": (client.AppsV1Api, "list_deployment_for_all_namespaces", "list_namespaced_deployment"),
    "certificatesigningrequests": (client.CertificatesV1Api, "list_certificate_signing_request", None),
    "daemonsets": (client.AppsV1Api, "list_daemon_set_for_all_namespaces", "list_namespaced_daemon_set"),
    "replicasets": (client.AppsV1Api, "list_replica_set_for_all_namespaces", "list_namespaced_replica_set"),
    "poddisruptionbudgets": (client.PolicyV1Api, "list_pod_disruption_budget_for_all_namespaces",
                             "list_namespaced_pod_disruption_budget"),
}


def _lister(api: client.ApiClient, resource: str, namespace: str | None):
    try:
        cls, all_ns, namespaced = _LISTERS[resource]
    except KeyError:
        raise KubebookError(f"cannot wait on {resource!r}; known: {', '.join(sorted(_LISTERS))}") from None
    method = namespaced if namespace and namespaced else all_ns
    fn = getattr(cls(api), method)
    return (lambda **kw: fn(namespace, **kw)) if namespace and namespaced else fn


def wait_for(api: client.ApiClient, resource: str, condition: Callable[[dict[str, dict]], bool], *,
             namespace: str | None = None, label_selector: str | None = None, field_selector: str | None = None,
             timeout: float = 60.0, what: str = "condition") -> dict[str, dict]:
    """Block until ``condition(objects)`` is true, where ``objects`` maps name to object (as a dict).

    The objects are listed once, then kept current from a watch; the condition is checked after
    every event. Raises :class:`WaitTimeout` naming ``what`` when ``timeout`` seconds pass.
    """
    lister = _lister(api, resource, namespace)
    selectors = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
    deadline = time.monotonic() + timeout
    while True:
        listing = lister(**selectors)
        objects = {o.metadata.name: api.sanitize_for_serialization(o) for o in listing.items}
        if condition(objects):
            return objects
        version = listing.metadata.resource_version
        w = watch.Watch()
        try:
            while (left := deadline - time.monotonic()) > 0:
                for event in w.stream(lister, resource_version=version, timeout_seconds=max(1, int(left)),
                                      _request_timeout=left + 5, **selectors):
                    obj = event["raw_object"]  # the API's JSON, whatever the client could deserialize
                    if event["type"] == "ERROR":
                        if obj.get("code") == 410:
                            raise ApiException(status=410, reason="Gone")
                        raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                    meta = obj.get("metadata", {})
                    name, version = meta.get("name"), meta.get("resourceVersion", version)
                    if event["type"] == "DELETED":
                        objects.pop(name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        objects[name] = obj
                    if condition(objects):
                        return objects
                    if time.monotonic() > deadline:
                        break
        except ApiException as exc:
            if exc.status != 410:  # 410 Gone: our resourceVersion was compacted; list again
                raise
            continue
        finally:
            w.stop()
        raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
