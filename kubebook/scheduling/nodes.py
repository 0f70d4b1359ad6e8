"""Nodes as the scheduler sees them: labels, taints, cordon. Verbs read like kubectl.

    label(plan, "k8s-master", "disktype=ssd")          # kubectl label node k8s-master disktype=ssd --overwrite
    label(plan, "k8s-master", "disktype-")             # kubectl label node k8s-master disktype-
    taint(plan, "k8s-slave1", "smoke=true:NoSchedule") # kubectl taint node k8s-slave1 smoke=true:NoSchedule
    untaint(plan, "k8s-slave1", "smoke:NoSchedule-")   # one effect;  "smoke-" removes every effect
    cordon(plan, "k8s-slave2"); uncordon(plan, "k8s-slave2")

A verb that changes a node is a step of a :class:`kubebook.plan.Plan`: described in a dry run,
done when confirmed, refused for a node the plan's confirmation does not name. Each is
idempotent (setting what is already set changes nothing); the node is backed up before its
first change and put back by ``plan.cleanup()`` unless the verb was told ``restore=False``.
Reads take an ApiClient.
"""
from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..errors import KubebookError
from ..objects import Ref
from ..ownership import CONTROLLER_TAINTS
from ..plan import Plan
from ..waits import wait_for
from .diagnose import NoScheduler, Steady, cannot_place, guarded
from .explain import describe_taint, label_selector_matches
from .syntax import parse_label_selector, parse_labels, parse_taint, parse_taint_removal

ROLE_PREFIX = "node-role.kubernetes.io/"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


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


def label(plan: Plan, node: str, labels: str | list[str] | dict, *, restore: bool = True) -> str | None:
    """Set (``key=value``) or remove (``key-``) labels on ``node``, as a step of ``plan``.

    The node is backed up before its first change; ``restore=False`` keeps the labels after the
    run's clean-up (an operation, not a demo)."""
    wanted = parse_labels(labels)
    text = " ".join(f"{k}-" if v is None else f"{k}={v}" for k, v in wanted.items())

    def edit(current: dict) -> dict | None:
        now = current["metadata"].get("labels") or {}
        change = {k: v for k, v in wanted.items() if (v is None and k in now) or (v is not None and now.get(k) != v)}
        return {"metadata": {"labels": change}} if change else None  # a merge patch: None deletes a key

    return plan.modify(Ref("Node", node), edit, step=f"label-{node}", description=f"label node {node}: {text}",
                       command=f"kubectl label node {node} {text} --overwrite", restore=restore)


def _taints_patch(current: dict, edit: Callable[[list[dict]], list[dict]]) -> dict | None:
    before = (current.get("spec") or {}).get("taints") or []
    after = edit([dict(t) for t in before])
    return None if after == before else {"spec": {"taints": after or None}}


def taint(plan: Plan, node: str, specs: str | dict | list, *, restore: bool = True) -> str | None:
    """Add taints (``key=value:Effect`` or Taint objects); one with the same key and effect gets the new value."""
    taints = [parse_taint(s) for s in (specs if isinstance(specs, list) else [specs])]
    text = " ".join(describe_taint(t) for t in taints)
    if not taints:
        return plan.step(f"taint-{node}", f"add no taint to node {node} (none given)")

    def edit(current: list[dict]) -> list[dict]:
        for new in taints:
            same = [t for t in current if t["key"] == new["key"] and t["effect"] == new["effect"]]
            if same and (same[0].get("value") or "") == (new.get("value") or ""):
                continue
            current = [t for t in current if not (t["key"] == new["key"] and t["effect"] == new["effect"])]
            current.append(new)
        return current

    return plan.modify(Ref("Node", node), lambda n: _taints_patch(n, edit), step=f"taint-{node}",
                       description=f"taint node {node} with {text}",
                       command=f"kubectl taint node {node} {text} --overwrite", restore=restore)


def untaint(plan: Plan, node: str, specs: str | list[str], *, restore: bool = True) -> str | None:
    """Remove taints: ``key:Effect-`` removes that effect, ``key-`` every taint with the key."""
    removals = [parse_taint_removal(s) for s in ([specs] if isinstance(specs, str) else specs)]
    text = " ".join(f"{k}:{e}-" if e else f"{k}-" for k, e in removals)

    def edit(current: list[dict]) -> list[dict]:
        return [t for t in current if not any(t["key"] == k and (e is None or t["effect"] == e)
                                              for k, e in removals)]

    return plan.modify(Ref("Node", node), lambda n: _taints_patch(n, edit), step=f"untaint-{node}",
                       description=f"remove taint(s) {text} from node {node}", command=f"kubectl taint node {node} {text}",
                       restore=restore)


def _cordon_patch(value: bool) -> Callable[[dict], dict | None]:
    return lambda n: None if bool((n.get("spec") or {}).get("unschedulable")) == value else \
        {"spec": {"unschedulable": value or None}}


def cordon(plan: Plan, node: str, *, restore: bool = True) -> str | None:
    """Mark ``node`` unschedulable: Pods already there keep running, new ones go elsewhere."""
    return plan.modify(Ref("Node", node), _cordon_patch(True), step=f"cordon-{node}",
                       description=f"cordon node {node} (SchedulingDisabled)", command=f"kubectl cordon {node}",
                       restore=restore)


def uncordon(plan: Plan, node: str, *, restore: bool = True) -> str | None:
    return plan.modify(Ref("Node", node), _cordon_patch(False), step=f"uncordon-{node}",
                       description=f"uncordon node {node}", command=f"kubectl uncordon {node}", restore=restore)


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
    """Labels, taints and cordon of ``names`` (the node lifecycle controller's own taints left out):
    what a check or a test compares before and after a run."""
    state = {}
    for name in names:
        n = get_node(api, name)
        state[name] = {"labels": dict(n["metadata"].get("labels") or {}),
                       "taints": [{k: t[k] for k in ("key", "value", "effect") if t.get(k)}
                                  for t in (n.get("spec") or {}).get("taints") or []
                                  if not t["key"].startswith(CONTROLLER_TAINTS)],
                       "unschedulable": bool((n.get("spec") or {}).get("unschedulable"))}
    return state


def differences(api, state: dict[str, dict]) -> dict[str, tuple[dict, dict]]:
    """Nodes that differ from what :func:`node_state` recorded: name -> (then, now)."""
    now = node_state(api, list(state))
    return {n: (state[n], now[n]) for n in state if now[n] != state[n]}


def unchanged(api, state: dict[str, dict]) -> bool:
    """Whether the nodes are as recorded (see :func:`differences`)."""
    return not differences(api, state)


def taint_each(plan: Plan, taints: dict[str, str | dict | list]) -> str | None:
    """Taint several nodes, one step each: ``{"k8s-master": "gamble=true:NoSchedule", ...}``."""
    return _joined([taint(plan, node, spec) for node, spec in taints.items()])


def _joined(results: list[str | None]) -> str | None:
    """Several steps' results as one line (None in a dry run, where steps return nothing)."""
    return ", ".join(r for r in results if r) or None


def label_each(plan: Plan, names: Iterable[str], labels: str | list[str] | dict, *, restore: bool = True) -> str | None:
    """The same labels on several nodes, one step each."""
    return _joined([label(plan, node, labels, restore=restore) for node in names])


def refs(names: Iterable[str]) -> list[Ref]:
    """Nodes as a plan's ``also`` entries (a dict gives its keys): ``also=nodes.refs(taints)``."""
    return [Ref("Node", name) for name in names]


def pair(names: list[str], taints: list) -> dict[str, str | dict]:
    """One taint per node, in the same order, as :func:`taint_each` takes them; checked before any change."""
    if len(names) != len(taints):
        raise KubebookError(f"{len(names)} node(s) but {len(taints)} taint(s): give one taint per node, in "
                            "the same order; nothing was changed")
    return dict(zip(names, taints))


def check_unchanged(plan: Plan, state: dict[str, dict], *, when: bool = True) -> str | None:
    """A check of ``plan`` (after its clean-up): the nodes are as :func:`node_state` recorded them.
    Nothing with ``when=False`` (a run that keeps its changes)."""
    if not when:
        return None

    def act() -> str:
        changed = differences(plan.api, state)
        if changed:
            raise KubebookError("nodes differ from what was recorded before the run: " + "; ".join(
                f"{n}: was {then}, now {now}" for n, (then, now) in changed.items()))
        return f"{', '.join(state)} as recorded"

    return plan.check("nodes-as-before", f"nodes {', '.join(state)} are as they were before the run", act)


BARRIER_LABEL = "kubebook.io/scheduler-barrier"


def wait_scheduler_caught_up(plan: Plan, namespace: str, *, timeout: float = 60.0) -> str | None:
    """Return once kube-scheduler has seen every node change made before this call.

    The scheduler learns about nodes from a watch, a little after the API accepted a change; a Pod
    created right after ``taint``/``cordon`` can still be placed by the old picture. Node events
    arrive in order, so a probe Pod that fits only a node carrying a fresh label is bound only
    after the scheduler saw that label, and with it every earlier node change. The label goes on
    a node this plan already acts on, and the probe Pod into ``namespace``; both are removed
    before returning, and both appear in the dry run.
    """
    from uuid import uuid4

    nodes_in_scope = [u.split("/", 1)[1] for u in plan.scope if u.startswith("node/")]
    if not nodes_in_scope:
        raise KubebookError("the scheduler barrier labels a node, and this plan acts on none (add it to also=)")
    node = nodes_in_scope[0]
    token = uuid4().hex[:12]
    pod = Ref("Pod", f"scheduler-barrier-{token}", namespace)
    plan.modify(Ref("Node", node), lambda n: {"metadata": {"labels": {BARRIER_LABEL: token}}},
                step="barrier-label", description=f"label node {node} {BARRIER_LABEL}=<token> for the scheduler "
                f"barrier (removed again)", command=f"kubectl label node {node} {BARRIER_LABEL}=<token>")
    plan.create({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": pod.name, "labels": {"app": "kubebook-scheduler-barrier"}},
                 "spec": {"nodeSelector": {BARRIER_LABEL: token}, "tolerations": [{"operator": "Exists"}],
                          "terminationGracePeriodSeconds": 0, "containers": [{"name": "probe", "image": "pause"}]}},
                namespace, step="barrier-pod", command=f"kubectl -n {namespace} run <barrier> --image=pause")
    plan.wait("barrier-bound", "the scheduler binds its barrier Pod (it has seen every node change)",
              lambda: _barrier_bound(plan.api, namespace, pod.name, timeout))
    plan.delete(pod, step="barrier-pod-gone")
    plan.modify(Ref("Node", node), lambda n: {"metadata": {"labels": {BARRIER_LABEL: None}}}
                if BARRIER_LABEL in (n["metadata"].get("labels") or {}) else None,
                step="barrier-unlabel", description=f"remove the barrier label from node {node}",
                command=f"kubectl label node {node} {BARRIER_LABEL}-")
    return None if plan.dry_run else "scheduler has seen every node change"


def _barrier_bound(api, namespace: str, name: str, timeout: float) -> str:
    no_scheduler, steady = NoScheduler(api), Steady()
    wait_for(api, "pods", lambda ps: bool((ps.get(name, {}).get("spec") or {}).get("nodeName")),
             namespace=namespace, field_selector=f"metadata.name={name}", timeout=timeout,
             what="the scheduler to bind its barrier Pod",
             diagnose=guarded(lambda ps: no_scheduler(ps) or steady(cannot_place(ps.values()))))
    return "bound"

