"""Drift: what changed between two runs of the same runbook, read from the tables they produced.

An executed notebook carries every result table as JSON beside its HTML (:data:`kubebook.show.TABLE_MIME`).
Tables are matched by the name the library gave them (``cluster-admins``, ``certificates``,
``snapshot-taken``), unnamed ones by their cell. Within a table, rows are matched by its key
columns; a row only in the newer run is *added*, only in the older one *removed*, and a row in
both whose other columns differ is *changed* (one line per column; columns the table marks
volatile, such as "days left", are not compared).

A rule says which drift matters, so a scheduled audit can fail on it (exit code 3)::

    cluster-admins                 any drift in that table
    cluster-admins:added           rows added (also: removed, changed)
    certificates:changed:not after a change in that column
    snapshot-taken:grew:size:10    a number in that column at least 10x what it was
    *:added                        rows added to any table
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import KubebookError
from .show import TABLE_MIME

CHANGES = ("added", "removed", "changed", "grew")
COLUMNS = ["table", "change", "row", "column", "before", "after"]


class DriftError(KubebookError):
    """Two runs cannot be compared, or a rule cannot be read."""

    exit_code = 2


class DriftFound(KubebookError):
    """A drift rule matched: the scheduled run's exit code says so."""

    exit_code = 3


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    rows: list[list]
    key: list[str]
    volatile: list[str]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


# ---- reading tables back from an executed notebook ---------------------------------------------------
def read_notebook(path: str | Path) -> dict:
    """An executed notebook as a dict, from a local path or any URL papermill's I/O handlers read (s3://...)."""
    text = str(path)
    if "://" not in text:
        if not Path(text).is_file():
            raise DriftError(f"executed notebook not found: {text} (removed by retention?)")
        import json
        return json.loads(Path(text).read_text())
    from papermill.iorw import load_notebook_node
    return load_notebook_node(text)


def tables(notebook: dict | str | Path) -> dict[str, Table]:
    """Every table a run displayed, by name (``cell N`` for unnamed ones; ``#2`` for a repeated name)."""
    nb = read_notebook(notebook) if isinstance(notebook, (str, Path)) else notebook
    found: dict[str, Table] = {}
    for index, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []) or []:
            data = (output.get("data") or {}).get(TABLE_MIME)
            if not isinstance(data, dict):
                continue
            name = data.get("name") or f"cell {index}"
            unique, n = name, 2
            while unique in found:
                unique, n = f"{name}#{n}", n + 1
            columns = list(data.get("columns") or [])
            found[unique] = Table(unique, columns, list(data.get("rows") or []),
                                  [k for k in data.get("key") or [] if k in columns],
                                  [v for v in data.get("volatile") or [] if v in columns])
    return found


# ---- comparing ---------------------------------------------------------------------------------
def _identity(table: Table, row: list) -> tuple:
    values = dict(zip(table.columns, row))
    columns = table.key or [c for c in table.columns if c not in table.volatile]
    return tuple((c, _hashable(values.get(c))) for c in columns)


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _describe(identity: tuple) -> str:
    return ", ".join(f"{c} {v}" for c, v in identity[:4])


def _by_identity(table: Table) -> dict[tuple, list]:
    out: dict[tuple, list] = {}
    for row in table.rows:
        out.setdefault(_identity(table, row), row)
    if len(out) < len(table.rows) and table.key:  # the key is not unique here: compare whole rows
        whole = Table(table.name, table.columns, table.rows, [], table.volatile)
        return _by_identity(whole)
    return out


def compare(before: dict[str, Table], after: dict[str, Table]) -> pd.DataFrame:
    """Rows added, removed and changed, table by table (one row per change)."""
    rows = []
    for name in sorted(set(before) | set(after), key=lambda n: (n not in after, n)):
        if name not in before:
            rows.append({"table": name, "change": "table added", "row": f"{len(after[name].rows)} row(s)"})
            continue
        if name not in after:
            rows.append({"table": name, "change": "table removed", "row": f"{len(before[name].rows)} row(s)"})
            continue
        old_table, new_table = before[name], after[name]
        if not new_table.key and old_table.key:
            new_table = Table(**{**new_table.__dict__, "key": old_table.key})
        old, new = _by_identity(old_table), _by_identity(new_table)
        for ident in new:
            if ident not in old:
                rows.append({"table": name, "change": "added", "row": _describe(ident)})
        for ident in old:
            if ident not in new:
                rows.append({"table": name, "change": "removed", "row": _describe(ident)})
        compared = [c for c in new_table.columns if c in old_table.columns and c not in new_table.volatile
                    and c not in new_table.key]
        for ident in new:
            if ident not in old:
                continue
            a, b = dict(zip(old_table.columns, old[ident])), dict(zip(new_table.columns, new[ident]))
            for column in compared:
                if a.get(column) != b.get(column):
                    rows.append({"table": name, "change": "changed", "row": _describe(ident), "column": column,
                                 "before": a.get(column), "after": b.get(column)})
    return pd.DataFrame(rows, columns=COLUMNS, dtype=object).fillna("")


def summary(changes: pd.DataFrame) -> list[str]:
    """One line per table: ``cluster-admins: +1 row (subject User:mallory, ...)``."""
    lines = []
    for name, group in changes.groupby("table", sort=False):
        parts = []
        for change, sign in (("added", "+"), ("removed", "-")):
            picked = group[group["change"] == change]
            if len(picked):
                parts.append(f"{sign}{len(picked)} row{'s' if len(picked) > 1 else ''} "
                             f"({'; '.join(picked['row'].head(5))}{'; ...' if len(picked) > 5 else ''})")
        changed = group[group["change"] == "changed"]
        if len(changed):
            cells = [f"{r['row']}: {r['column']} {r['before']} -> {r['after']}" for _, r in changed.head(5).iterrows()]
            parts.append(f"~{changed['row'].nunique()} changed ({'; '.join(cells)}{'; ...' if len(changed) > 5 else ''})")
        for _, r in group[group["change"].str.startswith("table ")].iterrows():
            parts.append(f"{r['change']} ({r['row']})")
        lines.append(f"{name}: {', '.join(parts)}")
    return lines


def between(old_notebook, new_notebook) -> pd.DataFrame:
    return compare(tables(old_notebook), tables(new_notebook))


# ---- rules --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    table: str                # a table name, or * for any
    change: str = ""          # "" (any), added, removed, changed, grew
    column: str = ""
    factor: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Rule":
        parts = [p.strip() for p in text.split(":")]
        table, change = parts[0], parts[1] if len(parts) > 1 else ""
        if not table:
            raise DriftError(f"drift rule {text!r}: name a table (or *) first")
        if change and change not in CHANGES:
            raise DriftError(f"drift rule {text!r}: {change!r} is not one of {', '.join(CHANGES)}")
        if change == "grew":
            if len(parts) != 4:
                raise DriftError(f"drift rule {text!r}: write TABLE:grew:COLUMN:FACTOR")
            try:
                factor = float(parts[3])
            except ValueError:
                factor = math.nan
            if not math.isfinite(factor) or factor <= 0:
                raise DriftError(f"drift rule {text!r}: FACTOR must be a positive number")
            return cls(table, change, parts[2], factor)
        if len(parts) > 3 or (len(parts) == 3 and change != "changed"):
            raise DriftError(f"drift rule {text!r}: only TABLE:changed:COLUMN takes a column")
        return cls(table, change, parts[2] if len(parts) == 3 else "")

    def __str__(self) -> str:
        extra = [self.column] if self.column else []
        extra += [f"{self.factor:g}"] if self.change == "grew" else []
        return ":".join([self.table] + ([self.change] if self.change else []) + extra)

    def matches(self, changes: pd.DataFrame) -> pd.DataFrame:
        """The changes this rule is about."""
        picked = changes if self.table == "*" else changes[changes["table"].str.split("#").str[0] == self.table]
        if self.change in ("added", "removed"):
            return picked[picked["change"] == self.change]
        if self.change == "changed":
            picked = picked[picked["change"] == "changed"]
            return picked[picked["column"] == self.column] if self.column else picked
        if self.change == "grew":
            picked = picked[(picked["change"] == "changed") & (picked["column"] == self.column)]
            return picked[[_grew(b, a, self.factor) for b, a in zip(picked["before"], picked["after"])]]
        return picked


def _grew(before, after, factor: float) -> bool:
    try:
        before, after = float(before), float(after)
    except (TypeError, ValueError):
        return False
    return before > 0 and after >= factor * before


def check(changes: pd.DataFrame, rules: list[str | Rule]) -> pd.DataFrame:
    """Changes that match any rule, with the rule that caught each."""
    parsed = [r if isinstance(r, Rule) else Rule.parse(r) for r in rules]
    frames = [m.assign(rule=str(rule)) for rule in parsed if len(m := rule.matches(changes))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS + ["rule"])


# ---- `kubebook diff` -----------------------------------------------------------------------------
@dataclass
class Report:
    lines: list[str]
    exit_code: int = 0
    message: str = ""
    changes: pd.DataFrame | None = None


def report(ref_a: str, ref_b: str, *, fail_on: tuple[str, ...] = ()) -> Report:
    """Compare two recorded runs (ids, paths, or ``RUNBOOK~N``): the changes as a table and one line per
    table; exit code 3 when ``fail_on`` rules match."""
    from . import records
    rules = [Rule.parse(r) for r in fail_on]
    a, b = records.find(ref_a), records.find(ref_b)
    if a.runbook != b.runbook:
        raise DriftError(f"{a.id} is a run of {a.runbook}, {b.id} of {b.runbook}: compare runs of one runbook")
    for rec in (a, b):
        if not rec.notebook:
            raise DriftError(f"run {rec.id} has no executed notebook to compare ({rec.status})")
    changes = between(a.notebook, b.notebook)
    head = f"{a.runbook}: {a.id} ({a.started}, {a.target}) -> {b.id} ({b.started}, {b.target})"
    if not len(changes):
        return Report([head, "no drift: every table the two runs produced is the same"], changes=changes)
    lines = [head, *summary(changes), "", changes.to_string(index=False)]
    matched = check(changes, rules) if rules else changes.iloc[0:0]
    if len(matched):
        return Report(lines, DriftFound.exit_code, "drift matches " + ", ".join(sorted(set(matched["rule"]))),
                      changes)
    return Report(lines, changes=changes)
