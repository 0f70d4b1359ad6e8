"""Step checks for the scheduling labs: a taint, a label or a cordon made by hand with kubectl.

    taint_added(api, "k8s-slave1", "gpu=true:NoSchedule")    # after: kubectl taint node k8s-slave1 gpu=true:NoSchedule
    taint_removed(api, "k8s-slave1", "gpu")                  # after: kubectl taint node k8s-slave1 gpu-
    label_set(api, "k8s-slave2", "disktype=ssd")             # after: kubectl label node k8s-slave2 disktype=ssd
"""
from __future__ import annotations

import pandas as pd

from ..checks import close_to, verdict
from .explain import describe_taint
from .nodes import list_nodes
from .syntax import parse_labels, parse_taint


def _by_name(api) -> dict[str, dict]:
    return {n["metadata"]["name"]: n for n in list_nodes(api)}


def _taints(node: dict) -> list[dict]:
    return (node.get("spec") or {}).get("taints") or []


def _missing_node(step: str, node: str, nodes: dict) -> pd.DataFrame:
    near = close_to(node, nodes)
    return verdict(step, False, f"there is no node {node!r}" + (f" (did you mean {near[0]}?)" if near else
                                                                 f"; the nodes are {', '.join(sorted(nodes))}"))


def taint_added(api, node: str, spec: str | dict) -> pd.DataFrame:
    """Is ``node`` tainted exactly as ``spec`` (``key=value:Effect``) says?"""
    want = parse_taint(spec)
    text = describe_taint(want)
    step = f"node {node} has taint {text}"
    nodes = _by_name(api)
    if node not in nodes:
        return _missing_node(step, node, nodes)
    have = _taints(nodes[node])
    same_key = [t for t in have if t["key"] == want["key"]]
    exact = [t for t in same_key if t["effect"] == want["effect"] and (t.get("value") or "") == (want.get("value") or "")]
    if exact:
        return verdict(step, True)
    fix = f"kubectl taint node {node} {text}"
    if same_key:
        found = same_key[0]
        if found["effect"] != want["effect"]:
            return verdict(step, False, f"{node} has {describe_taint(found)}: effect {found['effect']}, the step asks "
                           f"for {want['effect']} (remove it with `kubectl taint node {node} {found['key']}:"
                           f"{found['effect']}-`, then `{fix}`)")
        return verdict(step, False, f"{node} has {describe_taint(found)}: value {found.get('value') or '(none)'!r}, "
                       f"the step asks for {want.get('value') or '(none)'!r} (`{fix} --overwrite`)")
    elsewhere = [n for n, obj in nodes.items() if any(t["key"] == want["key"] for t in _taints(obj))]
    if elsewhere:
        return verdict(step, False, f"the taint {want['key']} is on {', '.join(elsewhere)}, not on {node}: `{fix}`")
    near = close_to(want["key"], {t["key"] for t in have})
    if near:
        return verdict(step, False, f"{node} has a taint {near[0]!r}, not {want['key']!r}: check the key's spelling")
    return verdict(step, False, f"{node} has no taint {want['key']}: run `{fix}`")


def taint_removed(api, node: str, key: str, effect: str = "") -> pd.DataFrame:
    """Is no taint ``key`` (of ``effect``, if given) left on ``node``?"""
    step = f"node {node} has no taint {key}" + (f":{effect}" if effect else "")
    nodes = _by_name(api)
    if node not in nodes:
        return _missing_node(step, node, nodes)
    left = [t for t in _taints(nodes[node]) if t["key"] == key and (not effect or t["effect"] == effect)]
    if not left:
        return verdict(step, True)
    return verdict(step, False, f"{node} still has {', '.join(describe_taint(t) for t in left)}: "
                   f"`kubectl taint node {node} {key}{':' + effect if effect else ''}-` removes "
                   + ("that effect" if effect else "every effect of the key"))


def label_set(api, node: str, spec: str | dict) -> pd.DataFrame:
    """Does ``node`` carry the label ``key=value`` (or ``{key: value}``)?"""
    ((key, value),) = parse_labels(spec).items()
    step = f"node {node} has label {key}={value}"
    nodes = _by_name(api)
    if node not in nodes:
        return _missing_node(step, node, nodes)
    labels = nodes[node]["metadata"].get("labels") or {}
    if labels.get(key) == value:
        return verdict(step, True)
    fix = f"kubectl label node {node} {key}={value}"
    if key in labels:
        return verdict(step, False, f"{node} has {key}={labels[key]}, the step asks for {value!r}: `{fix} --overwrite`")
    elsewhere = [n for n, obj in nodes.items() if (obj["metadata"].get("labels") or {}).get(key) == value]
    if elsewhere:
        return verdict(step, False, f"{key}={value} is on {', '.join(elsewhere)}, not on {node}: `{fix}`")
    near = close_to(key, labels)
    if near:
        return verdict(step, False, f"{node} has a label {near[0]!r}, not {key!r}: check the key's spelling")
    return verdict(step, False, f"{node} has no label {key}: run `{fix}`")


def cordoned(api, node: str, wanted: bool = True) -> pd.DataFrame:
    """Is ``node`` cordoned (``wanted=False``: schedulable again)?"""
    step = f"node {node} is {'cordoned' if wanted else 'schedulable'}"
    nodes = _by_name(api)
    if node not in nodes:
        return _missing_node(step, node, nodes)
    now = bool((nodes[node].get("spec") or {}).get("unschedulable"))
    if now == wanted:
        return verdict(step, True)
    return verdict(step, False, f"{node} is {'schedulable' if wanted else 'cordoned'}: run "
                   f"`kubectl {'cordon' if wanted else 'uncordon'} {node}`")
