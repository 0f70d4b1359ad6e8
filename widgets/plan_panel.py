"""Preview, then confirm: the one way a widget changes the cluster.

A widget proposes a change as a function of a :class:`kubebook.plan.Plan`: it calls the same
plan-first kubebook functions a runbook calls (``nodes.taint(plan, node, spec)``). The panel runs
it first as a dry run, ``Plan(target, kind, also, cluster=...)``, and shows the steps; a button
naming the target (and the rest of the scope) then runs the same function under
``Plan(..., confirm=<the dry run's confirm_text>, only=<the preview's step names>)``: a step the
preview did not show is refused before it acts, so a click changes only what the preview listed.

    panel = PlanPanel(kind="node", cluster=api, on_done=board.render)
    panel.propose("k8s-slave1", "taint", lambda plan: nodes.taint(plan, "k8s-slave1", "x=y:NoSchedule"))

Objects a confirmed change creates carry the run's mark and are in the kernel's run record
(:mod:`kubebook.ownership`), so a widget's clean-up (``plan.cleanup(within_scope=True)``) deletes
only those and puts back, from their backups, the ones it changed.
"""
from __future__ import annotations

import contextlib
import html
import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import ipywidgets as w
import pandas as pd

from kubebook.objects import Ref
from kubebook.plan import Plan
from kubebook.safety import mask_text


def html_table(table: pd.DataFrame, *, empty: str = "nothing to show") -> str:
    """A table as HTML with every cell whole (pandas cuts cells at 50 characters by default)."""
    if table is None or table.empty:
        return f"<i>{html.escape(empty)}</i>"
    with pd.option_context("display.max_colwidth", None):
        body = table.to_html(index=False, escape=True, border=0, classes="kubebook-table")
    cell = "padding:2px 8px;text-align:left;vertical-align:top"
    body = body.replace("<td>", f"<td style='{cell}'>").replace("<th>", f"<th style='{cell}'>")
    return f"<div style='line-height:1.35;font-size:12px'>{body}</div>"


@dataclass
class Proposal:
    """A previewed change: what the confirm button will run, and under which confirmation."""

    target: str
    what: str
    build: Callable[[Plan], Any]
    also: Sequence[str | Ref]
    confirm: str   # the dry run's confirm_text: exactly the scope it showed
    steps: list[str]  # the step names the preview listed, the only ones the confirmed run may take


class PlanPanel:
    """A dry-run preview of one proposed change and the confirm button that names its scope.

    ``cluster`` is what the plans' object steps act on (an ApiClient or a
    :class:`kubebook.connect.Target`; None for changes that are not Kubernetes objects, e.g. an etcd key).
    """

    def __init__(self, *, kind: str, cluster: Any = None, on_done: Callable[[pd.DataFrame], None] | None = None):
        self.kind = kind
        self.cluster = cluster
        self.on_done = on_done
        self.title = w.HTML()
        self.preview = w.HTML()
        self.log = w.HTML()
        self.confirm = w.Button(description="Confirm", button_style="danger", icon="check",
                                layout=w.Layout(width="auto", display="none"))
        self.cancel = w.Button(description="Cancel", layout=w.Layout(width="auto", display="none"))
        self.confirm.on_click(lambda _: self.run_confirmed())
        self.cancel.on_click(lambda _: self.clear("cancelled: nothing changed"))
        self.widget = w.VBox([self.title, self.preview, w.HBox([self.confirm, self.cancel]), self.log],
                             layout=w.Layout(border="1px solid #ddd", padding="4px", margin="6px 0 0 0"))
        self._proposal: Proposal | None = None
        self.last: pd.DataFrame | None = None  # the table of the last confirmed run

    # ---- the two clicks ---------------------------------------------------------------------
    def propose(self, target: str, what: str, build: Callable[[Plan], Any], *,
                also: Sequence[str | Ref] = ()) -> pd.DataFrame:
        """Dry-run ``build`` on ``target`` (and ``also``) and show its steps; nothing changes."""
        self._proposal = None
        plan, printed, error = self._run(build, lambda: Plan(target=target, kind=self.kind, also=also,
                                                             cluster=self.cluster))
        if error is not None:  # a proposal the library refuses (bad taint syntax, outside the scope...)
            self.clear(f"cannot preview: {error}", error=True)
            return pd.DataFrame()
        steps = plan.table()
        self.title.value = f"<b>Preview</b> ({html.escape(what)}): dry run on {html.escape(self.kind)} " \
                           f"<code>{html.escape(target)}</code>, nothing has changed"
        touched = plan.objects()
        self.preview.value = html_table(steps[["step", "what", "command", "status"]],
                                        empty="nothing to do: already as asked") + \
            ("" if touched.empty else "<b>objects</b>" + html_table(touched[["kind", "namespace", "name", "before",
                                                                             "after"]]))
        self.log.value = _pre(printed)
        if len(steps):
            self._proposal = Proposal(target, what, build, list(also), plan.confirm_text, list(steps["step"]))
            others = plan.scope[1:]
            self.confirm.description = f"Confirm on {self.kind} {target}" + \
                (f" and {', '.join(others)}" if others else "")
            self.confirm.tooltip = f"confirm={plan.confirm_text!r}"
            self.confirm.layout.display = self.cancel.layout.display = ""
            self.confirm.disabled = False
        else:
            self.confirm.layout.display = self.cancel.layout.display = "none"
        return steps

    def run_confirmed(self) -> pd.DataFrame | None:
        """Run the previewed proposal, confirmed for exactly the scope its preview named."""
        proposal, self._proposal = self._proposal, None
        if proposal is None:
            self.clear("nothing previewed: preview a change first", error=True)
            return None
        self.confirm.disabled = True
        plan, printed, error = self._run(proposal.build, lambda: Plan(
            target=proposal.target, kind=self.kind, also=proposal.also, confirm=proposal.confirm,
            only=proposal.steps, cluster=self.cluster))
        self.last = plan.table() if plan is not None else pd.DataFrame(columns=["step", "what", "status", "detail"])
        failed = error is not None
        self.title.value = (f"<b>{'Failed' if failed else 'Done'}</b> ({html.escape(proposal.what)}) on "
                            f"{html.escape(self.kind)} <code>{html.escape(proposal.target)}</code>")
        self.preview.value = html_table(self.last[["step", "what", "status", "detail"]])
        self.log.value = _pre(printed + (f"\n{type(error).__name__}: {error}" if failed else ""))
        self.confirm.layout.display = self.cancel.layout.display = "none"
        if self.on_done:
            self.on_done(self.last)
        return self.last

    def clear(self, message: str = "", *, error: bool = False) -> None:
        self._proposal = None
        self.title.value = ""
        self.preview.value = ""
        colour = "#b71c1c" if error else "#555"
        self.log.value = f"<span style='color:{colour}'>{html.escape(message)}</span>" if message else ""
        self.confirm.layout.display = self.cancel.layout.display = "none"

    @staticmethod
    def _run(build: Callable[[Plan], Any], make_plan: Callable[[], Plan]) -> tuple[Plan | None, str, Exception | None]:
        """The plan, what it printed (its DRY RUN / ACTING line, step lines), and what stopped it."""
        out, plan = io.StringIO(), None
        try:
            with contextlib.redirect_stdout(out):  # shown in the panel, not in the kernel's log
                plan = make_plan()
                build(plan)
        except Exception as exc:  # a widget callback has nowhere else to report: the panel shows it
            return plan, out.getvalue(), exc
        return plan, out.getvalue(), None


def _pre(text: str) -> str:
    text = mask_text(text.strip())
    return f"<pre style='font-size:11px;margin:2px 0'>{html.escape(text)}</pre>" if text else ""


def mimebundle(widget: w.Widget, static: pd.DataFrame, **kwargs) -> dict:
    """The widget for a live front end, plus the same content as a static HTML table for papermill,
    nbval and the HTML copy of a run (which have no widget manager to draw the widget)."""
    bundle = widget._repr_mimebundle_(**kwargs) or {}
    bundle = dict(bundle)
    bundle["text/html"] = html_table(static)
    return bundle
