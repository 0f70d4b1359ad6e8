"""Drain a node through the Eviction API, the way ``kubectl drain`` does, and never by force.

    drain_preview(api, "k8s-slave2")          # every Pod on the node: evict / skip / refuse, and why
    drain(plan, "k8s-slave2", timeout=120)    # cordon, evict, wait until they are gone (steps of plan)

An eviction (policy/v1) asks the API server to delete a Pod only if no PodDisruptionBudget
forbids it; when one does, the server answers 429 and the drain retries with growing pauses,
each pause a watch on the budgets so a freed budget is used at once. Meanwhile it asks why the
budget says no: one that allows no disruption with every Pod healthy, or one waiting for a
replacement the scheduler cannot place, will not change by waiting, so the drain stops within
seconds with that reason (:class:`DrainBlocked`) rather than at its timeout. Nothing is deleted
any other way. Like kubectl, a drain that would remove a Pod nothing recreates (no controller) or
data in an emptyDir refuses to start unless told (``force``, ``delete_emptydir_data``); such a
Pod is backed up before it goes. DaemonSet Pods are skipped with ``ignore_daemonsets``.

Evicting a node's Pods is what confirming the node allows, as with ``kubectl drain <node>``:
the budgets hold, and controllers recreate the Pods elsewhere.

The apiserver may go away during a drain (a restart, an upgrade): evictions and waits reconnect
and carry on until ``timeout``. A drain that stops (blocked, timed out, apiserver gone) leaves the
node cordoned and says so in one line; running it again resumes it, since every step is
idempotent (the cordon is kept, Pods already gone are not looked for).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tqdm.auto import tqdm

from .. import ownership
from ..errors import KubebookError
from ..objects import Ref
from ..plan import Plan
from ..waits import WaitBlocked, WaitTimeout, transient, wait_for
from . import nodes, workloads
from .diagnose import NoController, Steady, budget_blocks, budget_rule, guarded
from .explain import TERMINAL, label_selector_matches

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
OUTCOME_COLUMNS = ["namespace", "pod", "outcome", "attempts", "detail"]
RESUME = "run the drain again to resume (it keeps the cordon and evicts what is left)"


class DrainRefused(KubebookError):
    """Some Pod may not be evicted with the options given; nothing was changed."""


class DrainBlocked(KubebookError):
    """The drain stopped before every Pod left the node. The message says why and how to resume;
    ``result`` holds the outcome of each Pod so far."""

    def __init__(self, message: str, result: pd.DataFrame):
        super().__init__(message)
        self.result = result


class _Unreachable(Exception):
    def __init__(self, cause: BaseException, seconds: float):
        super().__init__(str(cause))
        self.cause, self.seconds = cause, seconds


@dataclass(frozen=True)
class DrainOptions:
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    force: bool = False

    @property
    def flags(self) -> str:
        return " ".join(f for f, on in (("--ignore-daemonsets", self.ignore_daemonsets),
                                        ("--delete-emptydir-data", self.delete_emptydir_data),
                                        ("--force", self.force)) if on)


def _pods_on(api, node: str) -> list[dict]:
    pods = client.CoreV1Api(api).list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    return [api.sanitize_for_serialization(p) for p in pods]


def _budgets(api) -> list[dict]:
    return [api.sanitize_for_serialization(b)
            for b in client.PolicyV1Api(api).list_pod_disruption_budget_for_all_namespaces().items]


def _covering(pod: dict, budgets: list[dict]) -> list[dict]:
    labels = pod["metadata"].get("labels") or {}
    return [b for b in budgets if b["metadata"]["namespace"] == pod["metadata"]["namespace"]
            and label_selector_matches(b["spec"].get("selector"), labels)]


def _controller(pod: dict) -> dict | None:
    return next((o for o in pod["metadata"].get("ownerReferences") or [] if o.get("controller")), None)


def _decide(pod: dict, options: DrainOptions) -> tuple[str, str]:
    """(action, why) for one Pod: evict, skip or refuse — kubectl drain's filters, in its order."""
    meta = pod["metadata"]
    owner = _controller(pod)
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return "skip", "static (mirror) Pod: the kubelet owns it, the API cannot evict it"
    if (pod.get("status") or {}).get("phase") in TERMINAL:
        return "evict", "already finished; removing it frees nothing but the record"
    if owner and owner.get("kind") == "DaemonSet":
        if options.ignore_daemonsets:
            return "skip", "DaemonSet Pod: its controller would put it straight back (ignore_daemonsets)"
        return "refuse", "DaemonSet Pod: set ignore_daemonsets to skip it"
    empty_dirs = [v["name"] for v in (pod.get("spec") or {}).get("volumes") or [] if "emptyDir" in v]
    if not owner:
        if not options.force:
            return "refuse", "no controller: nothing would recreate it (set force to evict it anyway)"
        why = "no controller: evicted because force is set, nothing recreates it (backed up first)"
    else:
        why = f"managed by {owner['kind']} {owner['name']}: recreated elsewhere"
    if empty_dirs:
        if not options.delete_emptydir_data:
            return "refuse", f"emptyDir {', '.join(empty_dirs)} would be lost (set delete_emptydir_data)"
        why += f"; WARNING emptyDir {', '.join(empty_dirs)} data is lost"
    return "evict", why


def _key(pod: dict) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]


def drain_preview(api, node: str, *, ignore_daemonsets: bool = True, delete_emptydir_data: bool = False,
                  force: bool = False) -> pd.DataFrame:
    """Every Pod on ``node``: what a drain would do with it and why, and the budgets guarding it."""
    options = DrainOptions(ignore_daemonsets, delete_emptydir_data, force)
    budgets = _budgets(api)
    rows = []
    for pod in sorted(_pods_on(api, node), key=_key):
        if pod["metadata"].get("deletionTimestamp"):
            continue  # already on its way out
        action, why = _decide(pod, options)
        guards = _covering(pod, budgets)
        rows.append({"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"],
                     "action": action, "why": why,
                     "PodDisruptionBudget": ", ".join(
                         f"{b['metadata']['name']} (allows {(b.get('status') or {}).get('disruptionsAllowed', 0)})"
                         for b in guards)})
    return pd.DataFrame(rows, columns=["namespace", "pod", "action", "why", "PodDisruptionBudget"])


def _refusals(preview: pd.DataFrame, node: str) -> None:
    refused = preview[preview["action"] == "refuse"]
    if len(refused):
        raise DrainRefused(f"cannot drain {node}: " + "; ".join(
            f"{r.namespace}/{r.pod}: {r.why}" for r in refused.itertuples()) + "; nothing was changed")


def _check_timeout(timeout: float) -> None:
    if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise KubebookError(f"timeout={timeout!r}: a drain needs a positive, finite number of seconds")


def _retrying(call: Callable[[], Any], deadline: float) -> Any:
    """``call()``, again while the apiserver does not answer, until ``deadline`` (then _Unreachable)."""
    pause, since = 0.2, None
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - only connection trouble is retried
            if not transient(exc):
                raise
            since = since or time.monotonic()
            if time.monotonic() + pause >= deadline:
                raise _Unreachable(exc, time.monotonic() - since) from exc
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _left(deadline: float) -> float:
    return max(1.0, min(30.0, deadline - time.monotonic()))


def _evict(core: client.CoreV1Api, namespace: str, name: str, deadline: float) -> tuple[str, str]:
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))

    def once() -> tuple[str, str]:
        try:
            core.create_namespaced_pod_eviction(name, namespace, body, _request_timeout=_left(deadline))
            return "evicted", ""
        except ApiException as exc:
            message = _message(exc)
            if exc.status == 404:
                return "evicted", "already gone"
            if exc.status == 429 and "budget" in message.lower():  # a budget says no (for now)
                return "blocked", message
            if exc.status == 500 and "more than one PodDisruptionBudget" in message:
                return "refused", message  # the API will not choose between budgets; nor do we
            raise  # other 429s (API priority and fairness), 5xx: retried by _retrying

    return _retrying(once, deadline)


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message", "") or str(exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def _budget_changed() -> Callable[[dict], bool]:
    """A wait condition that is false on the first listing and true on the first later event."""
    seen = {"first": True}

    def changed(_objects) -> bool:
        if seen["first"]:
            seen["first"] = False
            return False
        return True
    return changed


class _BudgetDiagnosis:
    """Why the Pods still waiting cannot be evicted, asked between attempts (see :func:`budget_blocks`)."""

    def __init__(self, api):
        self.api = api
        self.steady = Steady()
        self.waiting: list[dict] = []

    def __call__(self, _budgets_by_name) -> str | None:
        namespaces = sorted({p["metadata"]["namespace"] for p in self.waiting})
        budgets = [self.api.sanitize_for_serialization(b) for ns in namespaces
                   for b in client.PolicyV1Api(self.api).list_namespaced_pod_disruption_budget(ns).items]
        for pod in self.waiting:
            for budget in _covering(pod, budgets):
                found = budget_blocks(self.api, budget)
                if found:
                    return self.steady(found)
        return self.steady(None)


class _Evictions:
    """One drain's evictions: each Pod's outcome so far, kept when the drain stops half-way."""

    def __init__(self, api, deadline: float, *, progress: bool = True):
        self.api, self.deadline, self.progress = api, deadline, progress
        self.outcome: dict[tuple[str, str], dict] = {}

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.outcome.values()), columns=OUTCOME_COLUMNS)

    def _note(self, pod: dict, outcome: str, attempts: int, detail: str = "") -> None:
        ns, name = _key(pod)
        self.outcome[(ns, name)] = {"namespace": ns, "pod": name, "outcome": outcome, "attempts": attempts,
                                    "detail": detail}

    def run(self, pods: list[dict], *, first_pause: float = 0.5, max_pause: float = 8.0) -> str:
        """Evict ``pods``; retry the ones a budget refuses (429) with backoff until the deadline, or until
        the refusal is diagnosed as one that waiting will not lift. Returns that reason ("" if none)."""
        core = client.CoreV1Api(self.api)
        for pod in pods:
            self._note(pod, "not tried", 0)
        waiting, pause, attempts = list(pods), first_pause, 0
        diagnosis = _BudgetDiagnosis(self.api)
        bar = tqdm(total=len(pods), desc="evicting", disable=not self.progress or not pods)
        try:
            while waiting:
                attempts += 1
                still = []
                for pod in waiting:
                    status, detail = _evict(core, *_key(pod), self.deadline)
                    self._note(pod, status, attempts, detail)
                    if status == "blocked":
                        still.append(pod)
                    else:
                        bar.update(1)
                waiting = still
                left = self.deadline - time.monotonic()
                # the round after the deadline was the last: its refusals (or the apiserver's silence) stand
                if not waiting or left <= 0:
                    return ""
                diagnosis.waiting = waiting
                # Back off, but wake as soon as any budget changes (a replacement Pod became ready, say).
                try:
                    wait_for(self.api, "poddisruptionbudgets", _budget_changed(), timeout=min(pause, left),
                             what="evictions", diagnose=guarded(diagnosis), diagnose_every=0.5)
                except WaitTimeout:
                    pass
                except WaitBlocked as exc:
                    reason = str(exc).removeprefix("evictions: ")
                    for pod in waiting:
                        self.outcome[_key(pod)]["detail"] = reason
                    return reason
                pause = min(pause * 2, max_pause)
            return ""
        finally:
            bar.close()


def _budgets_now(api, pods: list[dict]) -> str:
    """What the budgets guarding ``pods`` allow now ("" when the apiserver does not answer)."""
    try:
        budgets = _budgets(api)
    except Exception as exc:  # noqa: BLE001 - only connection trouble is passed over
        if transient(exc):
            return ""
        raise
    guarding = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for p in pods for b in _covering(p, budgets)}
    return "; ".join(f"PodDisruptionBudget {ns}/{name} ({budget_rule(b)}) allows "
                     f"{(b.get('status') or {}).get('disruptionsAllowed', 0)}, "
                     f"{(b.get('status') or {}).get('currentHealthy', 0)} of "
                     f"{(b.get('status') or {}).get('expectedPods', 0)} Pods healthy"
                     for (ns, name), b in sorted(guarding.items()))


def _backup_bare_pods(plan: Plan, pods: list[dict]) -> dict[tuple[str, str], str]:
    """Pods nothing recreates (evicted under ``force``) are written to the run's backups first."""
    saved = {}
    for pod in pods:
        if _controller(pod) is None and (pod.get("status") or {}).get("phase") not in TERMINAL:
            whole = {"apiVersion": "v1", "kind": "Pod", **pod}  # list items carry no kind
            path = ownership.backup(whole, plan.record)
            plan.record.add_changed(ownership.Change(Ref.of(whole), path, restore=False))
            saved[_key(pod)] = str(path)
    return saved


def _drain_now(plan: Plan, node: str, options: DrainOptions, *, timeout: float, progress: bool) -> pd.DataFrame:
    """Evict what is on ``node`` now and wait until it has left; DrainBlocked when that cannot finish."""
    api = plan.api
    started = time.monotonic()
    evictions = _Evictions(api, started + timeout, progress=progress)

    def stopped(why: str) -> DrainBlocked:
        done = evictions.table
        gone = int((done["outcome"] == "evicted").sum())
        return DrainBlocked(f"drain of {node} stopped after {time.monotonic() - started:.0f}s: {why}; {gone} "
                            f"Pod(s) evicted, {len(done) - gone} left, {node} stays cordoned; {RESUME}", done)

    try:
        pods = [p for p in _retrying(lambda: _pods_on(api, node), evictions.deadline)
                if not p["metadata"].get("deletionTimestamp")]
        decisions = {_key(p): _decide(p, options) for p in pods}
        refused = {k: why for k, (action, why) in decisions.items() if action == "refuse"}
        if refused:  # something arrived since the preview
            raise DrainRefused(f"cannot drain {node}: " + "; ".join(f"{ns}/{n}: {why}"
                                                                     for (ns, n), why in refused.items()))
        targets = [p for p in pods if decisions[_key(p)][0] == "evict"]
        saved = _backup_bare_pods(plan, targets)
        reason = evictions.run(targets)
        for (ns, name), path in saved.items():
            evictions.outcome[(ns, name)]["detail"] = f"backup {path}"
        result = evictions.table
        held = result[result["outcome"].isin(["blocked", "refused"])]
        if len(held) and not reason:
            still = set(zip(held["namespace"], held["pod"]))
            now = _budgets_now(api, [p for p in targets if _key(p) in still]) or held["detail"].iloc[0]
            reason = f"{len(held)} eviction(s) still refused at the timeout ({now})"
        if len(held):
            raise stopped(reason)
        _wait_gone(api, node, result, evictions.deadline)
        return result
    except _Unreachable as exc:
        first = str(exc.cause).splitlines()[0][:160] if str(exc.cause) else type(exc.cause).__name__
        raise stopped(f"the apiserver did not answer for {exc.seconds:.0f}s ({first})") from None
    except WaitTimeout as exc:
        raise stopped(str(exc)) from None


def _wait_gone(api, node: str, result: pd.DataFrame, deadline: float) -> None:
    """An accepted eviction is a graceful delete: wait until those Pods have really left the node."""
    evicted = {(r.namespace, r.pod) for r in result.itertuples() if r.outcome == "evicted"}
    wait_for(api, "pods", lambda ps: not any((p["metadata"]["namespace"], n) in evicted for n, p in ps.items()),
             field_selector=f"spec.nodeName={node}", timeout=max(10.0, deadline - time.monotonic()),
             what=f"evicted Pods to leave {node}")


def drain(plan: Plan, node: str, *, ignore_daemonsets: bool = True, delete_emptydir_data: bool = False,
          force: bool = False, timeout: float = 120.0, restore: bool = False,
          progress: bool = True) -> pd.DataFrame | None:
    """Cordon ``node`` and evict its Pods (see the module doc), as steps of ``plan``.

    Returns one row per Pod with its outcome; in a dry run, the :func:`drain_preview` of what
    would happen to each Pod and why. Refuses before changing anything when a Pod may not be
    evicted with these options. The cordon stays after the run's clean-up (maintenance) unless
    ``restore``; the node is backed up before it.
    """
    _check_timeout(timeout)
    options = DrainOptions(ignore_daemonsets, delete_emptydir_data, force)
    preview = drain_preview(plan.api, node, ignore_daemonsets=ignore_daemonsets,
                            delete_emptydir_data=delete_emptydir_data, force=force)
    _refusals(preview, node)
    nodes.cordon(plan, node, restore=restore)
    evictable = int((preview["action"] == "evict").sum())
    result = plan.step(f"drain-{node}", f"evict {evictable} Pod(s) from {node} through the Eviction API "
                       f"(PodDisruptionBudgets honoured; stops within seconds, saying why, when a budget cannot "
                       f"allow it; at most {timeout:.0f}s)",
                       lambda: _drain_now(plan, node, options, timeout=timeout, progress=progress),
                       command=f"kubectl drain {node} {options.flags} --timeout={timeout:.0f}s".replace("  ", " "),
                       touches=[Ref("Node", node)])
    return preview if plan.dry_run else result


def end_maintenance(plan: Plan, node: str, *, when: bool) -> str | None:
    """Uncordon ``node`` (maintenance done), or say that it stays cordoned and how to undo that later."""
    if when:
        return nodes.uncordon(plan, node, restore=False)
    return plan.step(f"keep-cordoned-{node}", f"leave {node} cordoned for the maintenance "
                     f"(kubectl uncordon {node} when it is done)", lambda: "left cordoned")


# ---- PodDisruptionBudgets ------------------------------------------------------------------------
def pod_disruption_budget(plan: Plan, namespace: str, name: str, *, selector: dict,
                          min_available: int | str | None = None,
                          max_unavailable: int | str | None = None) -> str | None:
    """Create or replace a PodDisruptionBudget (policy/v1), as a step of ``plan``."""
    spec: dict = {"selector": selector}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}
    rule, flag = (f"minAvailable={min_available}", f"--min-available={min_available}") if min_available is not None \
        else (f"maxUnavailable={max_unavailable}", f"--max-unavailable={max_unavailable}")
    labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    return plan.apply(body, namespace, step=f"pdb-{name}",
                      description=f"apply PodDisruptionBudget {namespace}/{name}: {rule}",
                      command=f"kubectl -n {namespace} create poddisruptionbudget {name} --selector={labels} {flag}")


def _computed(name: str, healthy: bool) -> Callable[[dict[str, dict]], bool]:
    def done(budgets: dict[str, dict]) -> bool:
        b = budgets.get(name)
        status = (b or {}).get("status") or {}
        return bool(b) and status.get("observedGeneration", 0) >= b["metadata"].get("generation", 1) and \
            (not healthy or status.get("currentHealthy", 0) >= status.get("expectedPods", 1))
    return done


def read_budget(api, namespace: str, name: str, *, healthy: bool = False, timeout: float = 60.0) -> dict:
    """The budget once the disruption controller has computed its status for the current spec
    (and, with ``healthy``, counts every Pod it expects as healthy)."""
    watch_for = NoController("PodDisruptionBudget", "disruption controller")
    return wait_for(api, "poddisruptionbudgets", _computed(name, healthy), namespace=namespace, timeout=timeout,
                    what=f"PodDisruptionBudget {namespace}/{name} status",
                    diagnose=guarded(lambda budgets: watch_for(budgets.get(name))))[name]


def budget_ready(plan: Plan, namespace: str, name: str, *, healthy: bool = False,
                 timeout: float = 60.0) -> str | None:
    """Wait (a step of ``plan``) until the budget's status is computed; says what it allows."""
    def act() -> str:
        status = read_budget(plan.api, namespace, name, healthy=healthy, timeout=timeout).get("status") or {}
        return f"allows {status.get('disruptionsAllowed', 0)} disruption(s), " \
               f"{status.get('currentHealthy', 0)} of {status.get('expectedPods', 0)} Pods healthy"

    return plan.wait(f"pdb-{name}-computed", f"the disruption controller has computed PodDisruptionBudget "
                     f"{namespace}/{name}" + (" with every Pod healthy" if healthy else ""), act)


# ---- the lab demo: a strict budget blocks the drain, a relaxed one lets it through --------------------
DEMO_APP = "eladmin-web"
DEMO_AGENT = "node-agent"
DEMO_REPLICAS = 4


def demo_scope(namespace: str) -> list[str]:
    """What the demo adds to the drain's confirmation: its namespace (nothing without a demo)."""
    return [f"namespace/{namespace}"] if namespace else []


def _demo_selector() -> dict:
    return {"matchLabels": {"app": DEMO_APP}}


def demo_workload(plan: Plan, namespace: str) -> str | None:
    """Lab demo (nothing when ``namespace`` is ""): four replicas spread over the workers, a budget
    that allows no disruption (minAvailable 4) and a DaemonSet, all settled."""
    if not namespace:
        return None
    workloads.ensure_namespace(plan, namespace)
    workloads.apply_deployment(plan, namespace, workloads.deployment(DEMO_APP, replicas=DEMO_REPLICAS,
                                                                     pod_anti_affinity="preferred"))
    pod_disruption_budget(plan, namespace, DEMO_APP, selector=_demo_selector(), min_available=DEMO_REPLICAS)
    workloads.apply_daemonset(plan, namespace, workloads.daemonset(DEMO_AGENT))
    workloads.settle(plan, namespace, DEMO_APP)
    workloads.wait_daemonset(plan, namespace, DEMO_AGENT)
    return budget_ready(plan, namespace, DEMO_APP, healthy=True)


def demo_blocked(plan: Plan, node: str, namespace: str, *, ignore_daemonsets: bool = True,
                 delete_emptydir_data: bool = False, force: bool = False,
                 timeout: float = 60.0) -> pd.DataFrame | None:
    """Lab demo: drain while the budget allows no disruption (the drain stops within seconds and
    says why), then relax the budget to maxUnavailable 1. Returns the blocked drain's outcomes."""
    if not namespace:
        return None
    options = DrainOptions(ignore_daemonsets, delete_emptydir_data, force)
    _refusals(drain_preview(plan.api, node, ignore_daemonsets=ignore_daemonsets,
                            delete_emptydir_data=delete_emptydir_data, force=force), node)
    nodes.cordon(plan, node, restore=False)

    def act() -> pd.DataFrame:
        try:
            return _drain_now(plan, node, options, timeout=timeout, progress=False)
        except DrainBlocked as exc:  # what the demo is here to show
            plan.log(f"    {exc}")
            return exc.result

    blocked = plan.step(f"demo-drain-{node}", f"drain {node} while PodDisruptionBudget {namespace}/{DEMO_APP} "
                        f"allows no disruption: blocked evictions are reported with the reason", act,
                        command=f"kubectl drain {node} {options.flags}", touches=[Ref("Node", node)])
    pod_disruption_budget(plan, namespace, DEMO_APP, selector=_demo_selector(), max_unavailable=1)
    budget_ready(plan, namespace, DEMO_APP)
    return blocked
