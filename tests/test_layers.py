"""The import graph keeps its layers: base ← lab, base ← topics ← applications.

- the base layer (conventions every runbook shares) imports no topic and no application;
- no topic imports the lab: what a topic needs of a kubebook lab comes through
  ``connect.target(...).lab``, so every topic works the same on clusters kubebook did not make;
- the lab imports no topic.
Lazy imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import kubebook

ROOT = Path(kubebook.__file__).parent
TOPICS = {"auth", "autoscaling", "etcd", "helm", "network", "scheduling", "storage"}
APPLICATIONS = {"runner", "records", "drift", "unattended", "schedule", "cli", "demo", "classroom"}
# connect turns a lab's name into a target: the one place the base reaches the lab
BASE_MAY_IMPORT_LAB = {"connect"}
# ... and a target hands out the helm CLI bound to it (target.helm(): one resolver for kubeconfig and
# context, imported only when called)
BASE_MAY_IMPORT_TOPIC = {("kubebook.connect", "kubebook.helm")}


def _layer(module: str) -> str:
    top = module.split(".")[1] if module.startswith("kubebook.") and module.count(".") >= 1 else module
    if top in TOPICS:
        return "topic"
    if top == "lab":
        return "lab"
    if top in APPLICATIONS:
        return "application"
    return "base"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kubebook")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("kubebook"):
                found.add(target)
                if not node.module or target.count(".") == 0:  # from . import lab, paths
                    found |= {f"{target}.{a.name}" for a in node.names}
                elif target == "kubebook":
                    found |= {f"kubebook.{a.name}" for a in node.names}
    return found


def _edges() -> list[tuple[str, str]]:
    return [(_module_name(p), target) for p in ROOT.rglob("*.py") for target in _imports(p)]


def test_the_base_layer_imports_no_topic_and_no_application():
    wrong = [(m, t) for m, t in _edges() if _layer(m) == "base" and _layer(t) in ("topic", "application")
             and (m, t) not in BASE_MAY_IMPORT_TOPIC]
    assert not wrong, wrong


def test_no_topic_imports_the_lab():
    wrong = [(m, t) for m, t in _edges() if _layer(m) == "topic" and _layer(t) == "lab"]
    assert not wrong, wrong


def test_the_lab_imports_no_topic():
    wrong = [(m, t) for m, t in _edges() if _layer(m) == "lab" and _layer(t) in ("topic", "application")]
    assert not wrong, wrong


def test_the_base_reaches_the_lab_only_to_resolve_a_target():
    wrong = [(m, t) for m, t in _edges() if _layer(m) == "base" and _layer(t) == "lab"
             and m.split(".")[1] not in BASE_MAY_IMPORT_LAB]
    assert not wrong, wrong


def test_the_graph_is_read_at_all():
    """Not vacuous: the known arrows are found."""
    edges = set(_edges())
    assert ("kubebook.plan", "kubebook.ownership") in edges
    assert any(m.startswith("kubebook.scheduling") and t == "kubebook.plan" for m, t in edges)
