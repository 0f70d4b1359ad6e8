"""Nodes as the scheduler sees them: labels, taints, cordon. Verbs read like kubectl.

    label(api, "k8s-master", "disktype=ssd")          # kubectl label node k8s-master disktype=ssd --overwrite
    label(api, "k8s-master", "disktype-")             # kubectl label node k8s-master disktype-
    taint(api, "k8s-slave1", "smoke=true:NoSchedule") # kubectl taint node k8s-slave1 smoke=true:NoSchedule
    untaint(api, "k8s-slave1", "smoke:NoSchedule-")   # one effect;  "smoke-" removes every effect
    cordon(api, "k8s-slave2"); uncordon(api, "k8s-slave2")

Every verb is idempotent (setting what is already set changes nothing) and, given ``plan=``,
becomes a step of a :class:`kubebook.plan.Plan`: described in a dry run, done when confirmed.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..plan import Plan, perform
from .explain import describe_taint, label_selector_matches
from .syntax import parse_label_selector, parse_labels, parse_taint, parse_taint_removal

ROLE_PREFIX = "node-role.kubernetes.io/"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
# Taints under this prefix (not-ready, unreachable, unschedulable, *-pressure) belong to the node
# lifecycle controller, which adds and removes them as conditions change: never recorded or restored.
CONTROLLER_TAINTS = "node.kubernetes.io/"


def _create_or_replace(read: Callable, create: Callable, replace: Callable, name: str, namespace: str,
                       body: dict) -> str:
    """Create ``body``, or replace the existing object with it (same result on every run)."""
    try:
        current = read(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        create(namespace, body)
        return "created"
    replace(name, namespace, {**body, "metadata": {**body["metadata"],
                                                   "resourceVersion": current.metadata.resource_version}})
    return "replaced"


def get_node(api, name: str) -> dict:
    try:
        return api.sanitize_for_serialization(client.CoreV1Api(api).read_node(name))
    except ApiException as exc:
        if exc.status == 404:
            raise KubebookError(f"node {name!r} not found") from None
        raise


def list_nodes(api) -> list[dict]:
    return [api.sanitize_for_serialization(n) for n in client.CoreV1Api(api).list_node().items]


def roles(node: dict) -> str:
    labels = node["metadata"].get("labels") or {}
    return ",".join(sorted(k.removeprefix(ROLE_PREFIX) for k in labels if k.startswith(ROLE_PREFIX))) or "<none>"


def _ready(node: dict) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else f"NotReady ({c.get('reason', '')})"
    return "Unknown"


def node_table(api, *, show_labels: bool = True) -> pd.DataFrame:
    """``kubectl get nodes --show-labels`` as a table, with taints beside the labels."""
    rows = []
    for n in list_nodes(api):
        spec = n.get("spec") or {}
        row = {"node": n["metadata"]["name"],
               "status": _ready(n) + (",SchedulingDisabled" if spec.get("unschedulable") else ""),
               "roles": roles(n),
               "taints": ", ".join(describe_taint(t) for t in spec.get("taints") or [])}
        if show_labels:
            row["labels"] = ",".join(f"{k}={v}" for k, v in sorted((n["metadata"].get("labels") or {}).items()))
        rows.append(row)
    return pd.DataFrame(rows)


def label_matrix(api, keys: list[str]) -> pd.DataFrame:
    """Nodes × the given label keys (their values, empty when absent): what selectors will see.

    ``keys`` may be label specs as given to :func:`label` (``disktype=ssd``): their keys are used.
    """
    keys = list(parse_labels([k if ("=" in k or k.endswith("-")) else k + "-" for k in keys]))
    rows = []
    for n in list_nodes(api):
        labels = n["metadata"].get("labels") or {}
        rows.append({"node": n["metadata"]["name"], **{k: labels.get(k, "") for k in keys}})
    return pd.DataFrame(rows, columns=["node", *keys])


def nodes_matching(api, selector: str) -> list[str]:
    """Names of the nodes a label selector (``disktype=ssd``, ``gpu``, ``zone in (a,b)``) selects."""
    parsed = parse_label_selector(selector)
    return [n["metadata"]["name"] for n in list_nodes(api)
            if label_selector_matches(parsed, n["metadata"].get("labels") or {})]


def label(api, node: str, labels: str | list[str] | dict, *, plan: Plan | None = None) -> dict | None:
    """Set (``key=value``) or remove (``key-``) labels on ``node``; returns the labels changed."""
    wanted = parse_labels(labels)
    text = " ".join(f"{k}-" if v is None else f"{k}={v}" for k, v in wanted.items())

    def act():
        current = get_node(api, node)["metadata"].get("labels") or {}
        change = {k: v for k, v in wanted.items()
                  if (v is None and k in current) or (v is not None and current.get(k) != v)}
        if change:  # a merge patch: None deletes the key, so nothing else on the node is touched
            client.CoreV1Api(api).patch_node(node, {"metadata": {"labels": change}})
        return ", ".join(f"{k}-" if v is None else f"{k}={v}" for k, v in change.items()) or "unchanged"

    return perform(plan, f"label-{node}", f"label node {node}: {text}", act,
                 f"kubectl label node {node} {text} --overwrite")


def _replace_taints(api, node: str, edit: Callable[[list[dict]], list[dict]]) -> tuple[list[dict], list[dict]]:
    """Apply ``edit`` to the node's taints with optimistic concurrency (retry when someone else wrote)."""
    core = client.CoreV1Api(api)
    for _ in range(5):
        current = get_node(api, node)
        before = (current.get("spec") or {}).get("taints") or []
        after = edit([dict(t) for t in before])
        if after == before:
            return before, after
        try:
            # resourceVersion in the patch makes it conditional: a concurrent write gives 409, and we re-read
            core.patch_node(node, {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                                   "spec": {"taints": after or None}})
            return before, after
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise KubebookError(f"node {node}: taints kept changing under us; try again")


def taint(api, node: str, specs: str | dict | list, *, plan: Plan | None = None) -> str | None:
    """Add taints (``key=value:Effect`` or Taint objects); one with the same key and effect gets the new value."""
    taints = [parse_taint(s) for s in (specs if isinstance(specs, list) else [specs])]
    text = " ".join(describe_taint(t) for t in taints)

    def edit(current: list[dict]) -> list[dict]:
        for new in taints:
            same = [t for t in current if t["key"] == new["key"] and t["effect"] == new["effect"]]
            if same and (same[0].get("value") or "") == (new.get("value") or ""):
                continue
            current = [t for t in current if not (t["key"] == new["key"] and t["effect"] == new["effect"])]
            current.append(new)
        return current

    def act():
        before, after = _replace_taints(api, node, edit)
        return "unchanged" if before == after else "taints now: " + ", ".join(describe_taint(t) for t in after)

    return perform(plan, f"taint-{node}", f"taint node {node} with {text}", act,
                 f"kubectl taint node {node} {text} --overwrite")


def untaint(api, node: str, specs: str | list[str], *, plan: Plan | None = None) -> str | None:
    """Remove taints: ``key:Effect-`` removes that effect, ``key-`` every taint with the key."""
    removals = [parse_taint_removal(s) for s in ([specs] if isinstance(specs, str) else specs)]
    text = " ".join(f"{k}:{e}-" if e else f"{k}-" for k, e in removals)

    def edit(current: list[dict]) -> list[dict]:
        return [t for t in current if not any(t["key"] == k and (e is None or t["effect"] == e)
                                              for k, e in removals)]

    def act():
        before, after = _replace_taints(api, node, edit)
        gone = [describe_taint(t) for t in before if t not in after]
        return "removed " + ", ".join(gone) if gone else "unchanged (no such taint)"

    return perform(plan, f"untaint-{node}", f"remove taint(s) {text} from node {node}", act,
                 f"kubectl taint node {node} {text}")


def _set_unschedulable(api, node: str, value: bool) -> str:
    current = bool((get_node(api, node).get("spec") or {}).get("unschedulable"))
    if current == value:
        return "unchanged"
    client.CoreV1Api(api).patch_node(node, {"spec": {"unschedulable": value or None}})
    return "cordoned" if value else "uncordoned"


def cordon(api, node: str, *, plan: Plan | None = None) -> str | None:
    """Mark ``node`` unschedulable: Pods already there keep running, new ones go elsewhere."""
    return perform(plan, f"cordon-{node}", f"cordon node {node} (SchedulingDisabled)",
                 lambda: _set_unschedulable(api, node, True), f"kubectl cordon {node}")


def uncordon(api, node: str, *, plan: Plan | None = None) -> str | None:
    return perform(plan, f"uncordon-{node}", f"uncordon node {node}",
                 lambda: _set_unschedulable(api, node, False), f"kubectl uncordon {node}")


def taint_table(api) -> pd.DataFrame:
    """One row per taint on every node (nodes without taints get one empty row)."""
    rows = []
    for n in list_nodes(api):
        taints = (n.get("spec") or {}).get("taints") or []
        for t in taints or [{}]:
            rows.append({"node": n["metadata"]["name"], "key": t.get("key", ""), "value": t.get("value", ""),
                         "effect": t.get("effect", ""),
                         "added": t.get("timeAdded", "") or "",
                         "meaning": _EFFECT_MEANING.get(t.get("effect", ""), "")})
    return pd.DataFrame(rows, columns=["node", "key", "value", "effect", "added", "meaning"])


_EFFECT_MEANING = {
    "NoSchedule": "new Pods without a toleration are not scheduled here",
    "PreferNoSchedule": "the scheduler avoids this node for them when it can",
    "NoExecute": "not scheduled, and running Pods without a toleration are evicted",
}


def node_state(api, names: list[str]) -> dict[str, dict]:
    """Labels, taints and cordon of ``names``: record before a demo, compare after clean-up.

    The node lifecycle controller's own taints (``node.kubernetes.io/...``) are left out.
    """
    state = {}
    for name in names:
        n = get_node(api, name)
        state[name] = {"labels": dict(n["metadata"].get("labels") or {}),
                       "taints": [{k: t[k] for k in ("key", "value", "effect") if t.get(k)}
                                  for t in (n.get("spec") or {}).get("taints") or []
                                  if not t["key"].startswith(CONTROLLER_TAINTS)],
                       "unschedulable": bool((n.get("spec") or {}).get("unschedulable"))}
    return state


def restore(api, state: dict[str, dict], *, plan: Plan | None = None, when: bool = True) -> str | None:
    """Put the nodes back as :func:`node_state` recorded them: labels, taints and cordon.

    Only what differs is written, so restoring an unchanged node changes nothing. With
    ``when=False`` the step is skipped (a runbook's ``restore`` parameter).
    """
    if not when:
        return None

    def act() -> str:
        changed = []
        now = node_state(api, list(state))
        for name, before in state.items():
            after = now[name]
            labels = {k: v for k, v in before["labels"].items() if after["labels"].get(k) != v}
            labels.update({k: None for k in after["labels"] if k not in before["labels"]})
            if labels:
                client.CoreV1Api(api).patch_node(name, {"metadata": {"labels": labels}})
            if after["unschedulable"] != before["unschedulable"]:
                _set_unschedulable(api, name, before["unschedulable"])
            # taints of the node controller stay as they are now: it follows the node's conditions itself
            if after["taints"] != before["taints"]:
                _replace_taints(api, name, lambda current: [t for t in current
                                                            if t["key"].startswith(CONTROLLER_TAINTS)]
                                + [dict(t) for t in before["taints"]])
            if labels or after != before:
                changed.append(name)
        return "restored " + ", ".join(changed) if changed else "nothing to restore"

    return perform(plan, "restore-nodes", f"restore labels, taints and cordon of {', '.join(state)} as recorded",
                 act, "kubectl label/taint/uncordon back to the recorded state")


def differences(api, state: dict[str, dict]) -> dict[str, tuple[dict, dict]]:
    """Nodes that differ from what :func:`node_state` recorded: name -> (then, now)."""
    now = node_state(api, list(state))
    return {n: (state[n], now[n]) for n in state if now[n] != state[n]}


def unchanged(api, state: dict[str, dict]) -> bool:
    """Whether the nodes are as recorded (see :func:`differences`)."""
    return not differences(api, state)


def taint_each(api, taints: dict[str, str | dict | list], *, plan: Plan | None = None) -> list:
    """Taint several nodes, one step each: ``{"k8s-master": "gamble=true:NoSchedule", ...}``."""
    return [taint(api, node, spec, plan=plan) for node, spec in taints.items()]


BARRIER_LABEL = "kubebook.io/scheduler-barrier"


def wait_scheduler_caught_up(api, namespace: str, *, timeout: float = 60.0) -> str:
    """Return once kube-scheduler has seen every node change made before this call.

    The scheduler learns about nodes from a watch, a little after the API accepted a change; a Pod
    created right after ``taint``/``cordon`` can still be placed by the old picture. Node events
    arrive in order, so a probe Pod that fits only a node carrying a fresh label is bound only
    after the scheduler saw that label, and with it every earlier node change. The probe and the
    label are removed before returning.
    """
    from uuid import uuid4

    from ..waits import wait_for
    core = client.CoreV1Api(api)
    token = uuid4().hex[:12]
    node = sorted(n["metadata"]["name"] for n in list_nodes(api))[0]
    name = f"scheduler-barrier-{token}"
    core.patch_node(node, {"metadata": {"labels": {BARRIER_LABEL: token}}})
    try:
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": name, "labels": {"app": "kubebook-scheduler-barrier"}},
            "spec": {"nodeSelector": {BARRIER_LABEL: token}, "tolerations": [{"operator": "Exists"}],
                     "terminationGracePeriodSeconds": 0, "containers": [{"name": "probe", "image": "pause"}]}})
        wait_for(api, "pods", lambda ps: bool((ps.get(name, {}).get("spec") or {}).get("nodeName")),
                 namespace=namespace, field_selector=f"metadata.name={name}", timeout=timeout,
                 what="the scheduler to bind its barrier Pod")
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        wait_for(api, "pods", lambda ps: name not in ps, namespace=namespace,
                 field_selector=f"metadata.name={name}", timeout=timeout, what="barrier Pod gone")
    finally:
        core.patch_node(node, {"metadata": {"labels": {BARRIER_LABEL: None}}})
    return "scheduler has seen every node change"
