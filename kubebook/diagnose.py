"""Why a workload cannot come up, in one line with its evidence: what a wait says instead of timing out.

Each function reads the cluster and returns a reason (the event, condition or scheduler message
that proves progress is impossible as things are, and what to do) or None when nothing blocks.
They are the ``diagnose=`` of :func:`kubebook.waits.wait_for`, asked every two seconds, so a wait
that cannot succeed stops within seconds with :class:`kubebook.waits.WaitBlocked`.

    diagnose.deployment(api, deployment)   # Pods refused (webhook, quota), unschedulable, not pulled
    diagnose.daemonset(api, daemonset)     # no node to run on, Pods refused or unschedulable
    diagnose.forbidden(api, namespace, [("create", "apps", "deployments")])   # RBAC refuses our own step

kwok plays the kubelets on the lab, so image pulls never fail there; the container checks are
for real clusters.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable

from kubernetes import client

# Container states a kubelet reports when a Pod will not start by itself
_STUCK_CONTAINER = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                    "CreateContainerError", "CrashLoopBackOff")


def _selector(match_labels: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((match_labels or {}).items()))


def _condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def pods(api, namespace: str, selector: str, what: str) -> str | None:
    """The first selected Pod that cannot be scheduled or whose container cannot start."""
    found = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    for pod in sorted(found, key=lambda p: p.metadata.name):
        if pod.metadata.deletion_timestamp:
            continue
        scheduled = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
        if scheduled is not None and scheduled.status == "False" and scheduled.reason == "Unschedulable":
            return (f"Pod {pod.metadata.name} of {what} cannot be scheduled: {scheduled.message} (the scheduler's "
                    "PodScheduled condition); free or add a node that fits, or change its nodeSelector, "
                    "affinity or tolerations")
        for status in (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []):
            waiting = status.state.waiting if status.state else None
            if waiting is not None and waiting.reason in _STUCK_CONTAINER:
                return (f"container {status.name} of Pod {pod.metadata.name} ({what}) is {waiting.reason}: "
                        f"{(waiting.message or '').strip()[:200]}; fix the image or its configuration")
    return None


RECENT = dt.timedelta(minutes=5)  # a FailedCreate event older than this is history, not the reason now


def failed_create(api, namespace: str, owners: Iterable[str], what: str) -> str | None:
    """The newest recent FailedCreate event of the controllers ``owners`` (a webhook, a quota or a
    policy refusing their Pods). Give only controllers still short of Pods: an old refusal of one
    that has all its Pods now explains nothing."""
    names = set(owners)
    if not names:
        return None
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="reason=FailedCreate").items
    seen = lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp  # noqa: E731
    now = dt.datetime.now(dt.timezone.utc)
    mine = [e for e in events if e.involved_object.name in names and now - seen(e) < RECENT]
    if not mine:
        return None
    latest = max(mine, key=seen)
    return (f"{what} cannot create its Pods: {latest.message} (event FailedCreate on "
            f"{latest.involved_object.kind} {latest.involved_object.name}); the object named there refuses them")


def deployment(api, obj: dict) -> str | None:
    """Why Deployment ``obj`` (as a dict) cannot roll out, or None."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    what = f"Deployment {namespace}/{name}"
    failure = _condition(obj, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        return f"{what} cannot create its Pods: {failure.get('message')} (condition ReplicaFailure)"
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("status") == "False":
        return f"{what} stopped progressing: {progressing.get('reason')}: {progressing.get('message')}"
    selector = _selector((spec.get("selector") or {}).get("matchLabels"))
    sets = client.AppsV1Api(api).list_namespaced_replica_set(namespace, label_selector=selector).items if selector \
        else []
    short = [rs.metadata.name for rs in sets if any(o.uid == meta.get("uid") for o in rs.metadata.owner_references or [])
             and (rs.status.replicas or 0) < (rs.spec.replicas or 0)]
    return failed_create(api, namespace, short, what) or (pods(api, namespace, selector, what) if selector else None)


def daemonset(api, obj: dict | None, *, namespace: str = "", name: str = "") -> str | None:
    """Why DaemonSet ``obj`` cannot run its Pods (None when it can). ``obj`` None: it does not exist."""
    if obj is None:
        return f"there is no DaemonSet {namespace}/{name}: nothing will recreate the Pods; apply its manifest again"
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    what = f"DaemonSet {meta['namespace']}/{meta['name']}"
    observed = status.get("observedGeneration", 0) >= meta.get("generation", 1)
    if observed and not status.get("desiredNumberScheduled"):
        template = (spec.get("template") or {}).get("spec") or {}
        rules = {k: template[k] for k in ("nodeSelector", "affinity", "tolerations") if template.get(k)}
        nodes = len(client.CoreV1Api(api).list_node().items)
        return (f"{what} runs on no node: desiredNumberScheduled is 0 of {nodes} node(s) "
                f"({'its ' + ', '.join(f'{k} {v}' for k, v in rules.items()) if rules else 'no placement rules'}"
                f" fit none); fix its placement rules or the nodes' labels and taints")
    short = status.get("currentNumberScheduled", 0) < status.get("desiredNumberScheduled", 0)
    return failed_create(api, meta["namespace"], [meta["name"]] if short else [], what) or \
        pods(api, meta["namespace"], _selector((spec.get("selector") or {}).get("matchLabels")), what)


def forbidden(api, namespace: str, checks: Iterable[tuple[str, str, str]], step: str = "this step") -> str | None:
    """The first (verb, group, resource) the caller may not do in ``namespace``, asked with
    SelfSubjectAccessReviews (``kubectl auth can-i``): RBAC refusing the runbook's own step."""
    authz = client.AuthorizationV1Api(api)
    for verb, group, resource in checks:
        review = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
                namespace=namespace or None, verb=verb, group=group, resource=resource))))
        if not review.status.allowed:
            shown = f"{resource}.{group}" if group else resource
            where = f" in namespace {namespace}" if namespace else " cluster-wide"
            return (f"RBAC forbids {step}: this kubeconfig's user may not {verb} {shown}{where} (kubectl auth "
                    f"can-i {verb} {shown}{' -n ' + namespace if namespace else ''} says no); use a kubeconfig "
                    "whose user may, or ask for a Role granting it")
    return None
