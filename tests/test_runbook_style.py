"""Every shipped runbook keeps the house rules that make it safe to follow: checked on the source.

- the parameters cell imports kubebook's types (which installs the in-kernel guard) and gives every
  parameter a semantic type, a default and help;
- code cells are prose-sized: at most three lines besides imports, and no control flow
  (conditionals, loops, lambdas, comprehensions, function or class definitions) — that belongs in
  kubebook, where it is tested;
- a runbook that builds a Plan confirms through a `Confirm` parameter.
"""
from __future__ import annotations

import ast
import json

import pytest

from kubebook import parameters, runner

BOOKS = runner.discover()

# Runbooks still on the old conventions; each topic's conversion removes its entries. Empty when done.
NOT_YET_CONVERTED: set[str] = set()
CONVERTED = [b for b in BOOKS if b.id not in NOT_YET_CONVERTED]

CONTROL_FLOW = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.Lambda, ast.ListComp, ast.SetComp,
                ast.DictComp, ast.GeneratorExp, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Try,
                ast.With, ast.Match)
# Names whose values are paths, counts, durations, Kubernetes names...: `str`/`int`/`float` is not enough
SEMANTIC_NAMES = ("namespace", "node", "timeout", "seconds", "port", "replicas", "release", "dir", "path", "file")


def _code_cells(book) -> list[tuple[int, str]]:
    nb = json.loads(book.path.read_text())
    return [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and "parameters" not in (c.get("metadata", {}).get("tags") or [])]


def _statements(source: str) -> list[ast.stmt]:
    return [s for s in ast.parse(source).body if not isinstance(s, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("book", CONVERTED, ids=[b.id for b in CONVERTED])
def test_cells_are_prose_sized_without_control_flow(book):
    for index, source in _code_cells(book):
        lines = [l for s in _statements(source) for l in ast.unparse(s).splitlines()]
        assert len(lines) <= 3, f"{book.id} cell {index}: {len(lines)} lines besides imports"
        flow = [type(n).__name__ for s in _statements(source) for n in ast.walk(s) if isinstance(n, CONTROL_FLOW)]
        assert not flow, f"{book.id} cell {index}: control flow ({', '.join(flow)}) belongs in kubebook"


@pytest.mark.parametrize("book", CONVERTED, ids=[b.id for b in CONVERTED])
def test_parameters_are_semantically_typed(book):
    nb = json.loads(book.path.read_text())
    source = "".join(runner.parameters_cell(nb)["source"])
    assert source.splitlines()[0].startswith(parameters.IMPORT_LINE), f"{book.id}: the first line must be the import"
    for p in book.parameters.values():
        assert p.help and "=" not in p.help, f"{book.id}: {p.name} needs a help comment without '='"
        if any(part in p.name for part in SEMANTIC_NAMES) and p.annotation in ("str", "int", "float"):
            pytest.fail(f"{book.id}: {p.name} is declared {p.annotation}; use a semantic type")
        p.convert(p.default) if p.default is not None else None


@pytest.mark.parametrize("book", CONVERTED, ids=[b.id for b in CONVERTED])
def test_a_plan_is_confirmed_through_a_confirm_parameter(book):
    builds_plan = any("Plan(" in source for _, source in _code_cells(book))
    if builds_plan:
        assert "confirm" in book.parameters and book.parameters["confirm"].type is parameters.Confirm, book.id


def test_the_list_of_unconverted_runbooks_only_shrinks():
    known = {b.id for b in BOOKS}
    assert NOT_YET_CONVERTED <= known, f"stale entries: {sorted(NOT_YET_CONVERTED - known)}"
