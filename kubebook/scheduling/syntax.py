"""The short forms runbook parameters use, parsed into API objects.

They follow kubectl where kubectl has a form, so an engineer types what they already know:

- labels ``disktype=ssd`` (set) and ``disktype-`` (remove), as ``kubectl label``;
- taints ``smoke=true:NoSchedule`` (add), ``smoke:NoSchedule-`` and ``smoke-`` (remove), as ``kubectl taint``;
- node-affinity terms in label-selector syntax: ``disktype in (ssd,sas), kubernetes.io/hostname notin (a,b)``,
  ``gpu`` (Exists), ``!gpu`` (DoesNotExist), plus ``cores>2`` / ``cores<8`` for Gt/Lt;
  a preferred term may start with its weight: ``50:disktype in (ssd)``;
- tolerations ``smoke=true:NoSchedule`` (Equal), ``drunk`` or ``drunk:NoExecute`` (Exists),
  ``key=value:NoExecute:60`` (tolerationSeconds), ``*`` (Exists with no key: tolerates everything).

Taints and tolerations may also be given as the API's own objects (``{"key": "smoke", "value":
"true", "effect": "NoSchedule"}``). Runbook parameters use that form: papermill cannot read a
parameter line that holds a second ``=``.
"""
from __future__ import annotations

import re

from ..errors import KubebookError

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class SyntaxProblem(KubebookError):
    exit_code = 2


def parse_labels(specs: str | list[str] | dict) -> dict[str, str | None]:
    """``["disktype=ssd", "old-"]`` → ``{"disktype": "ssd", "old": None}`` (None removes)."""
    if isinstance(specs, dict):
        return {str(k): (None if v is None else str(v)) for k, v in specs.items()}
    result: dict[str, str | None] = {}
    for spec in [specs] if isinstance(specs, str) else specs:
        spec = spec.strip()
        if spec.endswith("-") and "=" not in spec:
            result[spec[:-1]] = None
        elif "=" in spec:
            key, value = spec.split("=", 1)
            result[key.strip()] = value.strip()
        else:
            raise SyntaxProblem(f"label {spec!r}: use key=value to set or key- to remove")
    return result


def parse_taint(spec: str | dict) -> dict:
    """``key=value:Effect`` (value optional), or a Taint object as the API writes it → a Taint."""
    if isinstance(spec, dict):
        if not spec.get("key") or spec.get("effect") not in EFFECTS:
            raise SyntaxProblem(f"taint {spec!r}: needs a key and an effect in {', '.join(EFFECTS)}")
        return {"key": spec["key"], **({"value": str(spec["value"])} if spec.get("value") else {}),
                "effect": spec["effect"]}
    match = re.fullmatch(r"([^=:\s]+)(?:=([^:\s]*))?:(\w+)", spec.strip())
    if not match or match.group(3) not in EFFECTS:
        raise SyntaxProblem(f"taint {spec!r}: use key=value:Effect with Effect one of {', '.join(EFFECTS)}")
    key, value, effect = match.groups()
    return {"key": key, **({"value": value} if value else {}), "effect": effect}


def parse_taint_removal(spec: str) -> tuple[str, str | None]:
    """``key:Effect-`` → (key, Effect); ``key-`` → (key, None): every effect of that key."""
    spec = spec.strip()
    if not spec.endswith("-"):
        raise SyntaxProblem(f"taint removal {spec!r}: use key:Effect- or key-")
    body = spec[:-1]
    key, _, effect = body.partition(":")
    key = key.split("=", 1)[0]
    if effect and effect not in EFFECTS:
        raise SyntaxProblem(f"taint removal {spec!r}: unknown effect {effect!r}")
    return key, effect or None


def parse_toleration(spec: str | dict) -> dict:
    """A short form (see the module doc), or a Toleration object as written in a Pod spec."""
    if isinstance(spec, dict):
        unknown = set(spec) - {"key", "operator", "value", "effect", "tolerationSeconds"}
        if unknown or spec.get("operator", "Equal") not in ("Equal", "Exists") or \
                (spec.get("effect") and spec["effect"] not in EFFECTS):
            raise SyntaxProblem(f"toleration {spec!r}: fields key, operator (Equal/Exists), value, effect, "
                                "tolerationSeconds")
        return dict(spec)
    spec = spec.strip()
    if spec == "*":
        return {"operator": "Exists"}
    parts = spec.split(":")
    if len(parts) > 3:
        raise SyntaxProblem(f"toleration {spec!r}: use key[=value][:Effect[:seconds]] or *")
    head, effect, seconds = parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else ""
    if effect and effect not in EFFECTS:
        raise SyntaxProblem(f"toleration {spec!r}: unknown effect {effect!r}")
    toleration: dict = {}
    if "=" in head:
        key, value = head.split("=", 1)
        toleration.update(key=key, operator="Equal", value=value)
    else:
        toleration.update(key=head, operator="Exists")
    if effect:
        toleration["effect"] = effect
    if seconds:
        if effect != "NoExecute":
            raise SyntaxProblem(f"toleration {spec!r}: tolerationSeconds only applies to NoExecute")
        toleration["tolerationSeconds"] = int(seconds)
    return toleration


def describe_toleration(t: dict) -> str:
    if not t.get("key") and t.get("operator") == "Exists":
        return "* (every taint" + (f" with effect {t['effect']}" if t.get("effect") else "") + ")"
    text = t.get("key", "") + (f"={t.get('value', '')}" if t.get("operator", "Equal") == "Equal" else " (Exists)")
    if t.get("effect"):
        text += f":{t['effect']}"
    if t.get("tolerationSeconds") is not None:
        text += f" for {t['tolerationSeconds']}s"
    return text


def _split_outside_parentheses(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)", re.I)
_CMP = re.compile(r"([\w./-]+)\s*([<>])\s*(-?\d+)")
_EQ = re.compile(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)")
_KEY = re.compile(r"(!?)([\w./-]+)")


def parse_requirement(text: str) -> dict:
    """One expression of a selector → a NodeSelectorRequirement / LabelSelectorRequirement."""
    text = text.strip()
    if m := _SET.fullmatch(text):
        values = [v.strip() for v in m.group(3).split(",") if v.strip()]
        return {"key": m.group(1), "operator": "In" if m.group(2).lower() == "in" else "NotIn", "values": values}
    if m := _CMP.fullmatch(text):
        return {"key": m.group(1), "operator": "Gt" if m.group(2) == ">" else "Lt", "values": [m.group(3)]}
    if m := _EQ.fullmatch(text):
        return {"key": m.group(1), "operator": "NotIn" if m.group(2) == "!=" else "In", "values": [m.group(3)]}
    if m := _KEY.fullmatch(text):
        return {"key": m.group(2), "operator": "DoesNotExist" if m.group(1) else "Exists"}
    raise SyntaxProblem(f"expression {text!r}: use key in (a,b), key notin (a), key, !key, key>N, key<N or key=value")


def parse_term(text: str) -> dict:
    """``"a in (x,y), !b"`` → ``{"matchExpressions": [...]}``: the expressions of one term are ANDed."""
    return {"matchExpressions": [parse_requirement(e) for e in _split_outside_parentheses(text)]}


def parse_weighted_term(text: str, default_weight: int = 1) -> dict:
    """``"50:disktype in (ssd)"`` → a PreferredSchedulingTerm (weight 1..100)."""
    weight, term = default_weight, text
    if m := re.match(r"\s*(\d+)\s*:(.*)", text):
        weight, term = int(m.group(1)), m.group(2)
    if not 1 <= weight <= 100:
        raise SyntaxProblem(f"preferred term {text!r}: weight must be 1..100")
    return {"weight": weight, "preference": parse_term(term)}


def parse_label_selector(text: str) -> dict:
    """``"app=eladmin-web, tier in (web)"`` → a metav1.LabelSelector."""
    selector: dict = {"matchLabels": {}, "matchExpressions": []}
    for expr in _split_outside_parentheses(text):
        req = parse_requirement(expr)
        if req["operator"] in ("Gt", "Lt"):
            raise SyntaxProblem(f"{expr!r}: Gt/Lt are for node labels only")
        if "=" in expr and "!=" not in expr and req["operator"] == "In" and len(req["values"]) == 1:
            selector["matchLabels"][req["key"]] = req["values"][0]
        else:
            selector["matchExpressions"].append(req)
    return {k: v for k, v in selector.items() if v}


def describe_term(term: dict) -> str:
    from .explain import describe_requirement
    return ", ".join(describe_requirement(r) for r in
                     (term.get("matchExpressions") or []) + (term.get("matchFields") or []))
