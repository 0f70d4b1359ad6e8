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
    "customresourcedefinitions": (client.ApiextensionsV1Api, "list_custom_resource_definition", None),
    "horizontalpodautoscalers": (client.AutoscalingV2Api, "list_horizontal_pod_autoscaler_for_all_namespaces",
                                 "list_namespaced_horizontal_pod_autoscaler"),
}


def _lister(api: client.ApiClient, resource: str, namespace: str | None):
    try:
        cls, all_ns, namespaced = _LISTERS[resource]
    except KeyError:
        raise KubebookError(f"cannot wait on {resource!r}; known: {', '.join(sorted(_LISTERS))}") from None
    method = namespaced if namespace and namespaced else all_ns
    fn = getattr(cls(api), method)
    return (lambda **kw: fn(namespace, **kw)) if namespace and namespaced else fn


# Errors after which the apiserver may come back (a restart, a restore, a full load): list again.
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def _transient(exc: BaseException) -> bool:
    import urllib3
    if isinstance(exc, ApiException):
        return exc.status in _TRANSIENT_STATUS or exc.status == 0
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


transient = _transient  # the same rule for retry loops outside waits (the drain's evictions)


class WaitBlocked(KubebookError):
    """The condition cannot come true as things are: the message says why and what to do."""


def wait_for(api: client.ApiClient, resource: str, condition: Callable[[dict[str, dict]], bool], *,
             namespace: str | None = None, label_selector: str | None = None, field_selector: str | None = None,
             timeout: float = 60.0, what: str = "condition",
             diagnose: Callable[[dict[str, dict]], str | None] | None = None,
             diagnose_every: float = 2.0) -> dict[str, dict]:
    """Block until ``condition(objects)`` is true, where ``objects`` maps name to object (as a dict).

    The objects are listed once, then kept current from a watch; the condition is checked after
    every event. If the apiserver goes away (a restart, a restore) the wait reconnects, lists
    again and carries on until its deadline. ``diagnose(objects)``, asked every
    ``diagnose_every`` seconds and at the deadline, returns why the condition cannot come true
    (no controller, no signer, no provisioner, ...) or None; a reason ends the wait at once with
    :class:`WaitBlocked`. Otherwise :class:`WaitTimeout` names ``what`` after ``timeout`` seconds.
    """
    lister = _lister(api, resource, namespace)
    selectors = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
    deadline = time.monotonic() + timeout
    objects: dict[str, dict] = {}
    next_diagnosis = time.monotonic() + diagnose_every
    unreachable: BaseException | None = None
    pause = 0.2

    def blocked(final: bool = False) -> None:
        nonlocal next_diagnosis
        if diagnose is None or (not final and time.monotonic() < next_diagnosis):
            return
        next_diagnosis = time.monotonic() + diagnose_every
        reason = diagnose(objects)
        if reason:
            raise WaitBlocked(f"{what}: {reason}")

    while time.monotonic() < deadline:
        try:
            listing = lister(**selectors, _request_timeout=max(1.0, min(30.0, deadline - time.monotonic())))
            unreachable = None
            pause = 0.2
            objects = {o.metadata.name: api.sanitize_for_serialization(o) for o in listing.items}
            if condition(objects):
                return objects
            blocked()
            version = listing.metadata.resource_version
            w = watch.Watch()
            try:
                while (left := deadline - time.monotonic()) > 0:
                    step = min(left, diagnose_every) if diagnose else left
                    for event in w.stream(lister, resource_version=version, timeout_seconds=max(1, int(step)),
                                          _request_timeout=step + 5, **selectors):
                        obj = event["raw_object"]  # the API's JSON, whatever the client could deserialize
                        if event["type"] == "ERROR":
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        meta = obj.get("metadata", {})
                        name, version = meta.get("name"), meta.get("resourceVersion", version)
                        if event["type"] == "DELETED":
                            objects.pop(name, None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            objects[name] = obj
                        if condition(objects):
                            return objects
                        blocked()
                        if time.monotonic() > deadline:
                            break
                    blocked()
            finally:
                w.stop()
        except ApiException as exc:
            if exc.status == 410:  # 410 Gone: our resourceVersion was compacted; list again
                continue
            if not _transient(exc):
                raise
            unreachable = exc
        except Exception as exc:  # noqa: BLE001 - connection errors of every layer: retried below
            if not _transient(exc):
                raise
            unreachable = exc
        if unreachable is not None:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 2.0)
    blocked(final=True)
    if unreachable is not None:
        first = str(unreachable).splitlines()[0][:200] if str(unreachable) else type(unreachable).__name__
        raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}: the apiserver did not answer "
                          f"({first}); run the step again once it is back")
    raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_deleted(api: client.ApiClient, ref, *, timeout: float = 120.0, held: float = 0.0) -> str:
    """Wait until the object ``ref`` (a :class:`kubebook.objects.Ref`) is gone, by watch for the kinds
    this module lists, else by polling its own URL."""
    resource = _RESOURCE_OF_KIND.get(ref.kind)
    if resource:
        wait_for(api, resource, lambda objs: ref.name not in objs, namespace=ref.namespace or None,
                 field_selector=f"metadata.name={ref.name}", timeout=timeout, what=f"{ref} deleted",
                 diagnose=_held_by_finalizers(ref, held or HELD_SECONDS))
        return "gone"
    from .objects import objects
    deadline = time.monotonic() + timeout
    pause = 0.1
    while objects(api).get(ref) is not None:
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {ref} deleted")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    return "gone"


HELD_SECONDS = 15.0  # a finalizer that holds an unchanging object this long is not about to finish by itself
# The garbage collector owns these two; after an apiserver restart or a CRD removed it first rediscovers the
# API's resources, which kube-controller-manager has it do every 30 s: twice that before calling it stuck.
GARBAGE_COLLECTOR_FINALIZERS = ("foregroundDeletion", "orphan")
GARBAGE_COLLECTOR_SECONDS = 60.0


def _held_by_finalizers(ref, patience: float) -> Callable[[dict[str, dict]], str | None]:
    """A diagnosis for a deletion: the object is marked deleted and finalizers keep it, and nothing has
    changed on it for ``patience`` seconds, so whoever owns them is not finishing (its controller is
    stuck, missing, or waits on something). Patience counts from the last change seen, not from the
    deletion: a namespace controller still removing Pods on a loaded machine rewrites the namespace's
    conditions as the content goes, and is working, not stuck."""
    import datetime as dt
    last_seen: dict[str, float] = {}  # resourceVersion -> when this wait first saw it

    def why(objects: dict[str, dict]) -> str | None:
        obj = objects.get(ref.name) or {}
        meta = obj.get("metadata") or {}
        finalizers = meta.get("finalizers") or (obj.get("spec") or {}).get("finalizers") or []
        if not meta.get("deletionTimestamp") or not finalizers:
            return None
        since = dt.datetime.fromisoformat(meta["deletionTimestamp"].replace("Z", "+00:00"))
        held = (dt.datetime.now(dt.timezone.utc) - since).total_seconds()
        unchanged = time.monotonic() - last_seen.setdefault(meta.get("resourceVersion", ""), time.monotonic())
        wait = patience
        if set(finalizers) <= set(GARBAGE_COLLECTOR_FINALIZERS):
            wait = max(patience, GARBAGE_COLLECTOR_SECONDS)
        if held < wait or unchanged < wait:
            return None
        conditions = [f"{c.get('type')}: {c.get('message')}" for c in (obj.get("status") or {}).get("conditions") or []
                      if c.get("status") == "True" and c.get("message")]
        return (f"{ref} was deleted {held:.0f}s ago and finalizers {', '.join(finalizers)} still hold it, "
                f"unchanged for {unchanged:.0f}s"
                + (f" ({'; '.join(conditions)[:300]})" if conditions else "")
                + "; the controller that owns them is not finishing: see etcd/stuck-namespace for a namespace")
    return why


_RESOURCE_OF_KIND = {"Node": "nodes", "Namespace": "namespaces", "Pod": "pods", "ServiceAccount": "serviceaccounts",
                     "PersistentVolume": "persistentvolumes", "StorageClass": "storageclasses",
                     "PersistentVolumeClaim": "persistentvolumeclaims", "Deployment": "deployments",
                     "CertificateSigningRequest": "certificatesigningrequests", "DaemonSet": "daemonsets",
                     "ReplicaSet": "replicasets", "PodDisruptionBudget": "poddisruptionbudgets",
                     "CustomResourceDefinition": "customresourcedefinitions",
                     "HorizontalPodAutoscaler": "horizontalpodautoscalers"}
