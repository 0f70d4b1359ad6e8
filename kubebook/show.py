"""Displaying results in notebooks: masked YAML, and timelines as plots."""
from __future__ import annotations

import pandas as pd
import yaml

from .safety import mask


def as_yaml(obj) -> str:
    """``obj`` (a Kubernetes object as a dict, a kubeconfig...) as YAML with secrets masked."""
    return yaml.safe_dump(mask(obj), sort_keys=False)


def timeline(events: pd.DataFrame, *, x: str = "seconds", label: str = "key", title: str = ""):
    """Events on a time axis, one marker per event, labelled; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 2.5))
    if len(events):
        kinds = list(dict.fromkeys(events["type"])) if "type" in events else [None]
        for row_kind in kinds:
            rows = events if row_kind is None else events[events["type"] == row_kind]
            ax.scatter(rows[x], [row_kind or ""] * len(rows), s=60, label=row_kind)
            for _, r in rows.iterrows():
                ax.annotate(str(r[label]), (r[x], row_kind or ""), textcoords="offset points",
                            xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xlabel(f"{x} since the watch started")
    ax.set_title(title or "events")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig



# ---- result tables as data ----------------------------------------------------------------------
# An executed notebook is the record of a run. Besides the HTML every DataFrame shows, each table
# is also written under this mime type as JSON (masked), so `kubebook diff` can compare the
# tables two runs produced without scraping HTML. A table named with :func:`named` keeps its
# name, its key columns (which rows are "the same row" in two runs) and its volatile columns
# (values expected to move every run, such as "days left").
TABLE_MIME = "application/vnd.kubebook.table+json"
MAX_TABLE_ROWS = 10_000
_ATTR = "kubebook.table"


def named(table: pd.DataFrame, name: str, *, key: list[str] | tuple[str, ...] = (),
          volatile: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """``table`` with a name that ``kubebook diff`` uses to match it across runs (returned as is)."""
    table.attrs[_ATTR] = {"name": name, "key": list(key), "volatile": list(volatile),
                          "columns": [str(c) for c in table.columns]}
    return table


def table_name(table: pd.DataFrame) -> dict:
    """The name given by :func:`named`, if ``table`` still has the columns it was named with.

    pandas copies ``attrs`` onto filtered and projected views; a view with other columns is a
    different table, so it goes unnamed rather than masquerading as the original."""
    info = table.attrs.get(_ATTR) or {}
    if info and info.get("columns") == [str(c) for c in table.columns]:
        return info
    return {}


def _cell(value):
    import math
    if value is None or isinstance(value, (bool, int, str)):
        return mask(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # numpy scalars
        try:
            return _cell(value.item())
        except (ValueError, TypeError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return mask(str(value))


def table_data(table: pd.DataFrame) -> dict:
    """The JSON that goes beside a table's HTML: name, key, volatile, columns and (masked) rows."""
    info = table_name(table)
    frame = table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table
    rows = [[_cell(v) for v in row] for row in frame.head(MAX_TABLE_ROWS).itertuples(index=False, name=None)]
    return {"name": info.get("name", ""), "key": info.get("key", []), "volatile": info.get("volatile", []),
            "columns": [str(c) for c in frame.columns], "rows": rows,
            "truncated": len(frame) > MAX_TABLE_ROWS}


def register_table_output(shell=None) -> bool:
    """Make the running IPython kernel emit :data:`TABLE_MIME` for every DataFrame (idempotent)."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    formatters = shell.display_formatter.formatters
    if TABLE_MIME not in formatters:
        from IPython.core.formatters import JSONFormatter

        class TableFormatter(JSONFormatter):
            format_type = TABLE_MIME
            print_method = "_repr_kubebook_table_"

        formatter = TableFormatter(parent=shell.display_formatter)
        formatter.for_type(pd.DataFrame, table_data)
        formatters[TABLE_MIME] = formatter
    return True
