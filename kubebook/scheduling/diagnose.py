"""Why a scheduling wait cannot succeed: one line with the evidence and what to do.

The waits of this topic (:func:`.workloads.settle`, the scheduler barrier, a DaemonSet rollout,
a drain held back by a PodDisruptionBudget) pass these to :func:`kubebook.waits.wait_for` as
``diagnose=``; each returns None while waiting can still help, so a wait that cannot succeed
stops within seconds instead of at its timeout:

- :class:`NoScheduler` — Pods no scheduler has looked at (no binding, no PodScheduled condition)
  while nothing progresses; the scheduler's Lease says whether it is running, when it has one;
- :func:`cannot_place` — a Pod the scheduler judged Unschedulable, in its own words;
- :class:`NoController` — a Deployment or DaemonSet whose controller does not act on it, or whose
  ReplicaSet cannot create Pods (quota, admission);
- :func:`budget_blocks` — a PodDisruptionBudget that allows no disruption and will not by waiting.

Controllers' status lags the API by a moment, so a verdict is reported only once it has held
for :data:`STEADY` seconds (:class:`Steady`).
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Iterable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..waits import transient
from .explain import label_selector_matches

STEADY = 2.0              # seconds a verdict must hold before a wait stops on it
NO_PROGRESS_SECONDS = 5.0  # a controller or scheduler that did nothing this long is not there
SCHEDULER_LEASE = ("kube-system", "kube-scheduler")


class Steady:
    """Pass a reason on only once the same verdict (``key``) has held for ``seconds``."""

    def __init__(self, seconds: float = STEADY):
        self.seconds = seconds
        self._key: object = None
        self._since = 0.0

    def __call__(self, found: tuple[object, str] | None) -> str | None:
        if found is None:
            self._key = None
            return None
        key, reason = found
        if key != self._key:
            self._key, self._since = key, time.monotonic()
        return reason if time.monotonic() - self._since >= self.seconds else None


def guarded(diagnosis: Callable[..., str | None]) -> Callable[..., str | None]:
    """A diagnosis that says nothing while the apiserver is unreachable (the wait reconnects itself)."""
    def ask(*args) -> str | None:
        try:
            return diagnosis(*args)
        except Exception as exc:  # noqa: BLE001 - only connection trouble is swallowed
            if transient(exc):
                return None
            raise
    return ask


def scheduled_condition(pod: dict) -> dict:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
                {})


def _live(pods: Iterable[dict]) -> list[dict]:
    return sorted((p for p in pods if not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))


def _pod_name(pod: dict) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def scheduler_words(message: str) -> str:
    """The scheduler's message without its preemption appendix (it repeats the same counts)."""
    return message.split(" preemption:")[0].strip()


def unplaceable(pods: Iterable[dict]) -> dict | None:
    """The first live, unbound Pod the scheduler has judged Unschedulable."""
    for pod in _live(pods):
        condition = scheduled_condition(pod)
        if not (pod.get("spec") or {}).get("nodeName") and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            return pod
    return None


def cannot_place(pods: Iterable[dict]) -> tuple[str, str] | None:
    """(key, reason) for a Pod that needs a node and that the scheduler cannot place."""
    pod = unplaceable(pods)
    if pod is None:
        return None
    message = scheduler_words(scheduled_condition(pod).get("message", ""))
    return (_pod_name(pod), f"the scheduler cannot place Pod {_pod_name(pod)}: {message} "
                            f"(see why-pending for every node's reason)")


def _age(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (dt.datetime.now(dt.timezone.utc) - then).total_seconds()


class NoScheduler:
    """Pods that no scheduler has looked at while nothing progresses for ``seconds``.

    A Pod the scheduler has tried carries a PodScheduled condition, one it placed a node name.
    When neither appears on any Pod for a while, the scheduler the Pods name is not running (or
    not reading them). kube-scheduler with leader election keeps a Lease that says when it was
    last alive; without one, the Pods' silence is the evidence.
    """

    def __init__(self, api, seconds: float = NO_PROGRESS_SECONDS):
        self.api = api
        self.seconds = seconds
        self._decided = -1
        self._since = time.monotonic()

    def __call__(self, pods: dict[str, dict]) -> str | None:
        live = _live(pods.values())
        untouched = [p for p in live if not (p.get("spec") or {}).get("nodeName") and not scheduled_condition(p)]
        decided = len(live) - len(untouched)
        if not untouched or decided > self._decided:
            self._decided, self._since = decided, time.monotonic()
            return None
        if time.monotonic() - self._since < self.seconds:
            return None
        pod = untouched[0]
        scheduler = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
        silent = f"no scheduler has looked at Pod {_pod_name(pod)} ({len(untouched)} waiting) in " \
                 f"{self.seconds:.0f}s: no binding, no PodScheduled condition"
        if scheduler != "default-scheduler":
            return f"{silent}; it asks for scheduler {scheduler!r}: is that scheduler running?"
        lease = self._lease()
        if lease is None:
            return f"{silent}; is kube-scheduler running? (kubectl -n kube-system get pods -l " \
                   f"component=kube-scheduler; it keeps no Lease here to tell)"
        spec = lease.get("spec") or {}
        age = _age(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds") or 15
        if age is not None and age > 2 * duration:
            return f"{silent}; kube-scheduler is not running: its Lease {'/'.join(SCHEDULER_LEASE)} was last " \
                   f"renewed {age:.0f}s ago by {spec.get('holderIdentity', '?')}"
        return None  # the scheduler is alive: the Pods wait in its queue (backoff), so keep waiting

    def _lease(self) -> dict | None:
        try:
            lease = client.CoordinationV1Api(self.api).read_namespaced_lease(SCHEDULER_LEASE[1], SCHEDULER_LEASE[0])
        except ApiException as exc:
            if exc.status in (403, 404):
                return None
            raise
        return self.api.sanitize_for_serialization(lease)


class NoController:
    """A workload whose controller does not act: generation not observed for ``seconds``, or a
    ReplicaFailure condition (its Pods are refused: quota, LimitRange, an admission webhook)."""

    def __init__(self, kind: str, controller: str, seconds: float = NO_PROGRESS_SECONDS):
        self.kind = kind
        self.controller = controller
        self.seconds = seconds
        self._seen: tuple | None = None
        self._since = time.monotonic()

    def __call__(self, obj: dict | None) -> str | None:
        if not obj:
            return None
        meta, status = obj["metadata"], obj.get("status") or {}
        name = f"{meta.get('namespace', '')}/{meta['name']}"
        failure = next((c for c in status.get("conditions") or []
                        if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
        if failure:
            return f"{self.kind} {name} cannot create its Pods: {failure.get('reason', '')}: " \
                   f"{failure.get('message', '')}"
        observed, generation = status.get("observedGeneration", 0), meta.get("generation", 1)
        seen = (generation, observed)
        if observed >= generation or seen != self._seen:
            self._seen, self._since = seen, time.monotonic()
            return None
        if time.monotonic() - self._since < self.seconds:
            return None
        return f"no {self.controller} has acted on {self.kind} {name} in {self.seconds:.0f}s (status.observedGeneration " \
               f"{observed} < generation {generation}): is kube-controller-manager running?"


def budget_rule(budget: dict) -> str:
    spec = budget.get("spec") or {}
    if spec.get("minAvailable") is not None:
        return f"minAvailable {spec['minAvailable']}"
    return f"maxUnavailable {spec.get('maxUnavailable')}"


def budget_blocks(api, budget: dict) -> tuple[str, str] | None:
    """(key, reason) when ``budget`` allows no disruption and waiting will not change that.

    Waiting helps while a replacement Pod is on its way (fewer healthy Pods than expected, one
    of them starting) or an eviction is still being counted (``disruptedPods``). It does not when
    every Pod is healthy and the rule still allows none, or when the Pod the budget waits for is
    one the scheduler cannot place.
    """
    meta, status = budget["metadata"], budget.get("status") or {}
    name = f"{meta['namespace']}/{meta['name']}"
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return None  # the disruption controller has not computed this spec yet
    if status.get("disruptionsAllowed", 0) > 0 or status.get("disruptedPods"):
        return None
    healthy, expected = status.get("currentHealthy", 0), status.get("expectedPods", 0)
    rule = budget_rule(budget)
    if expected and healthy >= expected:
        return (("all-healthy", name), f"PodDisruptionBudget {name} ({rule}) allows no disruption with all "
                f"{expected} of its Pods healthy: no eviction can pass until the budget is relaxed or the "
                f"workload has more replicas (kubectl -n {meta['namespace']} edit pdb {meta['name']})")
    pods = client.CoreV1Api(api).list_namespaced_pod(meta["namespace"]).items
    covered = [api.sanitize_for_serialization(p) for p in pods
               if label_selector_matches((budget.get("spec") or {}).get("selector"), p.metadata.labels or {})]
    stuck = unplaceable(covered)
    if stuck is not None:
        words = scheduler_words(scheduled_condition(stuck).get("message", ""))
        return (("unplaceable", name, stuck["metadata"]["name"]),
                f"PodDisruptionBudget {name} ({rule}, {healthy} of {expected} healthy) waits for Pod "
                f"{stuck['metadata']['name']} to run, and the scheduler cannot place it: {words}")
    return None
