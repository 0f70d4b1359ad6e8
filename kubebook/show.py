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

