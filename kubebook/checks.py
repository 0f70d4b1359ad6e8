"""Step checks: after a step a student makes by hand, look at the live cluster and say what is wrong.

A check returns one table row (``step``, ``ok``, ``hint``) and prints a line: ``✓ step`` when
the cluster is as the step asks, else ``✗ step`` and a hint that names what was found instead
(another effect, another namespace, a typo in a key...). A check never raises for a wrong step:
under papermill a runbook whose student has not done the step yet still runs to the end.

The checks themselves live with their topic: :mod:`kubebook.scheduling.step_checks`,
:mod:`kubebook.auth.step_checks`, :mod:`kubebook.etcd.step_checks`.
"""
from __future__ import annotations

import difflib

import pandas as pd

COLUMNS = ["step", "ok", "hint"]


def verdict(step: str, ok: bool, hint: str = "", *, quiet: bool = False) -> pd.DataFrame:
    """The row of one check, printed as ✓/✗ with the hint."""
    if not quiet:
        print(f"✓ {step}" if ok else f"✗ {step}\n  hint: {hint}")
    return pd.DataFrame([{"step": step, "ok": bool(ok), "hint": "" if ok else hint}], columns=COLUMNS)


def close_to(word: str, candidates, *, cutoff: float = 0.75) -> list[str]:
    """Candidates that look like a typo of ``word`` (case or a few letters off)."""
    lowered = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=3, cutoff=cutoff)
    return [lowered[f] for f in found if lowered[f] != word]
