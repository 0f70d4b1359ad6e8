"""Drain a node through the Eviction API, the way ``kubectl drain`` does, and never by force.

    drain_preview(api, "k8s-slave2")                    # every Pod on the node: evict / skip / refuse, and why
    drain(api, "k8s-slave2", plan=plan, timeout=120)    # cordon, evict, wait until they are gone

An eviction (policy/v1) asks the API server to delete a Pod only if no PodDisruptionBudget
forbids it; when one does, the server answers 429 and we retry with growing pauses, each pause
a watch on the PodDisruptionBudgets so a freed budget is used at once. A Pod still blocked when
``timeout`` runs out is reported as ``blocked``, never deleted. Like kubectl, a drain that would
remove a Pod nothing recreates (no controller) or data in an emptyDir refuses to start unless
told (``force``, ``delete_emptydir_data``); DaemonSet Pods are skipped with ``ignore_daemonsets``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tqdm.auto import tqdm

from ..errors import KubebookError
from ..plan import Plan, perform
from ..waits import WaitTimeout, wait_for
from .explain import TERMINAL, label_selector_matches
from .nodes import _create_or_replace, cordon

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class DrainRefused(KubebookError):
    """Some Pod may not be evicted with the options given; nothing was changed."""


@dataclass(frozen=True)
class DrainOptions:
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    force: bool = False


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


def _decide(pod: dict, options: DrainOptions) -> tuple[str, str]:
    """(action, why) for one Pod: evict, skip or refuse — kubectl drain's filters, in its order."""
    meta = pod["metadata"]
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
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
        why = "no controller: evicted because force is set, nothing recreates it"
    else:
        why = f"managed by {owner['kind']} {owner['name']}: recreated elsewhere"
    if empty_dirs:
        if not options.delete_emptydir_data:
            return "refuse", f"emptyDir {', '.join(empty_dirs)} would be lost (set delete_emptydir_data)"
        why += f"; WARNING emptyDir {', '.join(empty_dirs)} data is lost"
    return "evict", why


def drain_preview(api, node: str, *, ignore_daemonsets: bool = True, delete_emptydir_data: bool = False,
                  force: bool = False) -> pd.DataFrame:
    """Every Pod on ``node``: what a drain would do with it and why, and the budgets guarding it."""
    options = DrainOptions(ignore_daemonsets, delete_emptydir_data, force)
    budgets = _budgets(api)
    rows = []
    for pod in sorted(_pods_on(api, node), key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        action, why = _decide(pod, options)
        guards = _covering(pod, budgets)
        rows.append({"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"],
                     "action": action, "why": why,
                     "PodDisruptionBudget": ", ".join(
                         f"{b['metadata']['name']} (allows {(b.get('status') or {}).get('disruptionsAllowed', 0)})"
                         for b in guards)})
    return pd.DataFrame(rows, columns=["namespace", "pod", "action", "why", "PodDisruptionBudget"])


def _evict(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, str]:
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
    try:
        core.create_namespaced_pod_eviction(name, namespace, body)
        return "evicted", ""
    except ApiException as exc:
        if exc.status == 404:
            return "evicted", "already gone"
        if exc.status == 429:  # a PodDisruptionBudget says no (for now)
            import json
            try:
                return "blocked", json.loads(exc.body).get("message", "")
            except (TypeError, ValueError):
                return "blocked", str(exc.reason)
        raise


def evict_all(api, pods: list[tuple[str, str]], *, timeout: float = 120.0, first_pause: float = 0.5,
              max_pause: float = 8.0, progress: bool = True) -> pd.DataFrame:
    """Evict ``(namespace, name)`` Pods; retry 429s with backoff until ``timeout``; report each outcome."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    outcome: dict[tuple[str, str], dict] = {}
    waiting, pause, attempts = list(pods), first_pause, 0
    bar = tqdm(total=len(pods), desc="evicting", disable=not progress or not pods)
    while waiting:
        attempts += 1
        still = []
        for ns, name in waiting:
            status, detail = _evict(core, ns, name)
            outcome[(ns, name)] = {"namespace": ns, "pod": name, "outcome": status, "attempts": attempts,
                                   "detail": detail}
            if status == "blocked":
                still.append((ns, name))
            else:
                bar.update(1)
        waiting = still
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            break
        # Back off, but wake as soon as any budget changes (a replacement Pod became ready, say).
        try:
            wait_for(api, "poddisruptionbudgets", _budget_changed(), timeout=min(pause, left),
                     what="a PodDisruptionBudget to change")
        except WaitTimeout:
            pass
        pause = min(pause * 2, max_pause)
    bar.close()
    return pd.DataFrame(list(outcome.values()), columns=["namespace", "pod", "outcome", "attempts", "detail"])


def _budget_changed():
    """A wait condition that is false on the first listing and true on the first later event."""
    seen = {"first": True}

    def changed(_objects) -> bool:
        if seen["first"]:
            seen["first"] = False
            return False
        return True
    return changed


def drain(api, node: str, *, plan: Plan | None = None, ignore_daemonsets: bool = True,
          delete_emptydir_data: bool = False, force: bool = False, timeout: float = 120.0,
          progress: bool = True) -> pd.DataFrame:
    """Cordon ``node`` and evict its Pods (see the module doc); returns one row per Pod with its outcome
    (in a dry run: the :func:`drain_preview` of what would happen to each Pod, and why).

    Refuses before changing anything when a Pod may not be evicted with these options.
    """
    preview = drain_preview(api, node, ignore_daemonsets=ignore_daemonsets,
                            delete_emptydir_data=delete_emptydir_data, force=force)
    refused = preview[preview["action"] == "refuse"]
    if len(refused):
        raise DrainRefused(f"cannot drain {node}: " + "; ".join(
            f"{r.namespace}/{r.pod}: {r.why}" for r in refused.itertuples()))
    cordon(api, node, plan=plan)
    targets = [(r.namespace, r.pod) for r in preview.itertuples() if r.action == "evict"]
    flags = " ".join(f for f, on in (("--ignore-daemonsets", ignore_daemonsets),
                                     ("--delete-emptydir-data", delete_emptydir_data), ("--force", force)) if on)

    def act() -> pd.DataFrame:
        result = evict_all(api, targets, timeout=timeout, progress=progress)
        evicted = {(r.namespace, r.pod) for r in result.itertuples() if r.outcome == "evicted"}
        # an accepted eviction is a graceful delete: wait until those Pods have really left the node
        try:
            wait_for(api, "pods", lambda ps: not any((p["metadata"]["namespace"], n) in evicted for n, p in ps.items()),
                     field_selector=f"spec.nodeName={node}", timeout=max(10.0, timeout),
                     what=f"evicted Pods to leave {node}")
        except WaitTimeout:
            result.loc[result["outcome"] == "evicted", "detail"] = "eviction accepted, Pod still terminating"
        return result

    result = perform(plan, f"drain-{node}", f"evict {len(targets)} Pod(s) from {node} through the Eviction API "
                   f"(PodDisruptionBudgets honoured, blocked ones reported after {timeout:.0f}s)", act,
                   f"kubectl drain {node} {flags} --timeout={timeout:.0f}s".replace("  ", " "))
    # a dry run answers with what it would do to each Pod, and why
    return preview if plan is not None and plan.dry_run else result


def pod_disruption_budget(api, namespace: str, name: str, *, selector: dict, min_available: int | str | None = None,
                          max_unavailable: int | str | None = None, plan: Plan | None = None) -> str | None:
    """Create or replace a PodDisruptionBudget (policy/v1)."""
    spec: dict = {"selector": selector}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}
    policy = client.PolicyV1Api(api)

    def act() -> str:
        return _create_or_replace(policy.read_namespaced_pod_disruption_budget,
                                  policy.create_namespaced_pod_disruption_budget,
                                  policy.replace_namespaced_pod_disruption_budget, name, namespace, body)

    rule, flag = (f"minAvailable={min_available}", f"--min-available={min_available}") if min_available is not None \
        else (f"maxUnavailable={max_unavailable}", f"--max-unavailable={max_unavailable}")
    labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    return perform(plan, f"pdb-{name}", f"PodDisruptionBudget {namespace}/{name}: {rule}", act,
                 f"kubectl -n {namespace} create poddisruptionbudget {name} --selector={labels} {flag}")


def budget_ready(api, namespace: str, name: str, *, timeout: float = 60.0) -> dict:
    """Wait until the disruption controller has computed the budget's status for its current spec."""
    def computed(budgets: dict[str, dict]) -> bool:
        b = budgets.get(name)
        return bool(b) and (b.get("status") or {}).get("observedGeneration", 0) >= b["metadata"].get("generation", 1)
    return wait_for(api, "poddisruptionbudgets", computed, namespace=namespace, timeout=timeout,
                    what=f"PodDisruptionBudget {namespace}/{name} status")[name]
