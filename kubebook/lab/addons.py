"""Add-on processes next to a lab (metrics-server for the HPA runbooks).

An add-on records its process in ``<lab>/addons/<name>/addon.json`` (``pid``, ``start_time`` and
whatever else it needs), so the lab can stop it on ``down`` and ``reset`` without knowing what it is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .. import process

if TYPE_CHECKING:
    from .lab import Lab


def directory(lab: "Lab", name: str) -> Path:
    return Path(lab.dir) / "addons" / name


def state_file(lab: "Lab", name: str) -> Path:
    return directory(lab, name) / "addon.json"


def records(lab: "Lab") -> dict[str, process.Record]:
    """The add-ons recorded for ``lab`` whose process is still the one recorded."""
    found = {}
    for path in sorted((Path(lab.dir) / "addons").glob("*/addon.json")):
        try:
            record = process.Record.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.alive():
            found[path.parent.name] = record
    return found


def stop(lab: "Lab") -> list[str]:
    """Stop every recorded add-on process; the names stopped. Their API registrations are the add-on's
    (or `reset`'s) to remove."""
    stopped = []
    for name, record in records(lab).items():
        if process.stop(record, timeout=15):
            stopped.append(name)
        state_file(lab, name).unlink(missing_ok=True)
    return stopped
