"""Dry run by default: named steps that describe themselves, and act only when confirmed.

A runbook that changes anything builds a :class:`Plan` for one target (a context, node,
namespace, etcd member, release...). Without ``confirm`` every step only says what it would
do; with ``confirm`` equal to the target's name the same steps run. A ``confirm`` that names
something else is refused before any step, so a typo never acts on the wrong cluster.

    plan = Plan(target="k8s-master", confirm=confirm, kind="etcd member")
    plan.step("put-demo-keys", "write 3 keys under /luffy/", lambda: etcd.put(...))
    plan.table()
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from .errors import ConfirmationRequired, KubebookError


class StepFailed(KubebookError):
    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step {step} failed: {cause}")
        self.step = step
        self.cause = cause


@dataclass
class Plan:
    target: str
    confirm: str | None = None
    kind: str = "target"
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stdout), repr=False)
    rows: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.target:
            raise KubebookError(f"no {self.kind} to act on")
        if self.confirm and self.confirm != self.target:
            raise ConfirmationRequired(f"confirm={self.confirm!r} does not name the {self.kind} "
                                       f"{self.target!r}; nothing was changed")
        mode = f"ACTING on {self.kind} {self.target}" if self.acting else \
            f"DRY RUN for {self.kind} {self.target}: nothing will change (set confirm={self.target!r} to act)"
        self.log(mode)

    @property
    def acting(self) -> bool:
        return bool(self.confirm) and self.confirm == self.target

    @property
    def dry_run(self) -> bool:
        return not self.acting

    def step(self, name: str, description: str, action: Callable[[], Any] | None = None, *,
             command: str = "") -> Any:
        """Describe a step; run ``action`` only when acting. Returns what the action returned (or None)."""
        row = {"step": name, "what": description, "command": command, "status": "planned", "detail": ""}
        self.rows.append(row)
        if self.dry_run or action is None:
            self.log(f"[{name}] would {description}" + (f"\n    $ {command}" if command else ""))
            return None
        self.log(f"[{name}] {description}" + (f"\n    $ {command}" if command else ""))
        started = time.monotonic()
        try:
            result = action()
        except Exception as exc:
            row.update(status="failed", detail=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            raise StepFailed(name, exc) from exc
        row.update(status="done", detail=f"{time.monotonic() - started:.1f}s"
                   + (f": {result}" if isinstance(result, (str, int)) and result != "" else ""))
        return result

    def table(self) -> pd.DataFrame:
        """Every step with its status: planned (dry run), done or failed."""
        return pd.DataFrame(self.rows, columns=["step", "what", "command", "status", "detail"])


def perform(plan: Plan | None, name: str, description: str, action: Callable[[], Any], command: str) -> Any:
    """Run ``action`` now (no plan: library use), or as a step of ``plan`` (described only in a dry run)."""
    if plan is None:
        return action()
    return plan.step(name, description, action, command=command)
