"""Label selectors as the API writes them, matched against labels.

``requirement_matches`` is one requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) of a
nodeSelectorTerm or a metav1.LabelSelector; ``label_selector_matches`` a whole LabelSelector.
The scheduler explanations (node affinity, pod affinity) and the storage binder (a claim's
selector over PV labels) share them.
"""
from __future__ import annotations


def requirement_matches(req: dict, labels: dict[str, str]) -> bool:
    """One NodeSelectorRequirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels."""
    op, key, values = req.get("operator"), req.get("key"), req.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        # both sides must be integers; a label that is not one never matches
        try:
            have, want = int(labels[key]), int(values[0])
        except (KeyError, IndexError, ValueError):
            return False
        return have > want if op == "Gt" else have < want
    return False


def label_selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector: None selects nothing, {} selects everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(requirement_matches(r, labels) for r in selector.get("matchExpressions") or [])


def describe_requirement(req: dict) -> str:
    op, key, values = req.get("operator"), req.get("key"), req.get("values") or []
    if op in ("Exists", "DoesNotExist"):
        return f"{key} {op}"
    if op in ("Gt", "Lt"):
        return f"{key} {op} {values[0] if values else '?'}"
    return f"{key} {op} ({','.join(values)})"
