"""Resident memory of a lab's processes, read from /proc.

``rss`` is what ``ps`` shows; ``anon`` is the part no other process shares (heap, stacks);
``pss`` divides shared pages (the binaries' code, mapped once for every lab on the machine) among
the processes that map them, so the sum over many labs is what they really take.
"""
from __future__ import annotations

from pathlib import Path

from .. import process


def usage(record: process.Record) -> dict[str, float]:
    """``rss_mib``, ``anon_mib``, ``file_mib`` and ``pss_mib`` of a recorded process ({} when gone)."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{record.pid}/status").read_text().splitlines()
                      if ":" in line)
        rollup = Path(f"/proc/{record.pid}/smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    if not record.alive():
        return {}

    def mib(kib: str) -> float:
        return round(int(kib.split()[0]) / 1024, 1)
    pss = next((line.split(":", 1)[1] for line in rollup if line.startswith("Pss:")), "0 kB")
    return {"rss_mib": mib(status["VmRSS"]), "anon_mib": mib(status["RssAnon"]),
            "file_mib": mib(status["RssFile"]), "pss_mib": mib(pss)}


def total(rows: list[dict], column: str = "rss_mib") -> float:
    return round(sum(row.get(column) or 0 for row in rows), 1)
