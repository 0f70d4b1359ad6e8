"""An access matrix to explore and change live: subjects × resources × verbs, one button per cell.

Every cell is the apiserver's own answer (SubjectAccessReview through
:func:`kubebook.auth.access.checks`). Clicking a cell shows its reason, which names the binding
that allows it; from there **Preview grant** (a one-rule Role and a RoleBinding) or **Preview
revoke** (the subject taken out of that RoleBinding, backed up first) show the RBAC change as a
dry run, and "Confirm on namespace NAME" makes it (:mod:`kubebook.auth.grants`). The matrix is
asked again afterwards, so the cell turns as the authorizer now answers. **Preview clean-up**
deletes the Roles and RoleBindings this kernel's grants created in the namespace and puts back
the bindings it changed, from their backups.

    from widgets.access_matrix import AccessMatrix
    AccessMatrix(api, subjects=["User:luffy-admin"], resources=["pods", "secrets"], namespace="kubebook-auth")
"""
from __future__ import annotations

import html

import ipywidgets as w
from ipywidgets.widgets.widget_string import HTMLStyle  # not exported at the top level
import pandas as pd

from kubebook.auth import grants
from kubebook.auth.access import DEFAULT_VERBS, checks, names, wait_allowed
from kubebook.waits import WaitTimeout

from .plan_panel import PlanPanel, mimebundle

ALLOWED, DENIED, SELECTED = "#2e7d32", "#eeeeee", "#ffb300"


class _CellLook:
    """One layout and one style per kind of cell, shared by every cell of the grid.

    Each widget, and each widget's own layout and style, is a message to the front end when the grid
    is drawn; a matrix of a few hundred cells would send over a thousand at once, more than the
    kernel's output channel holds (ZeroMQ drops what is over its 1,000-message mark, and the cell's
    own output can be among what is lost). Shared, it is one message per cell."""

    def __init__(self):
        self.cell = w.Layout(width="34px", height="26px", padding="0")
        self.label = w.Layout()
        self.label_style = HTMLStyle()
        self.allowed = w.ButtonStyle(button_color=ALLOWED, text_color="white")
        self.denied = w.ButtonStyle(button_color=DENIED, text_color="#666")
        self.selected = w.ButtonStyle(button_color=SELECTED, text_color="black")

    def style(self, allowed: bool) -> w.ButtonStyle:
        return self.allowed if allowed else self.denied

    def html(self, value: str) -> w.HTML:
        return w.HTML(value, layout=self.label, style=self.label_style)


def render(long: pd.DataFrame) -> str:
    """Checks (long form) as an HTML table: rows subject × resource, columns verbs, reason on hover."""
    if long.empty:
        return "<i>nothing checked</i>"
    verbs = list(dict.fromkeys(long["verb"]))
    head = "".join(f"<th>{html.escape(v)}</th>" for v in verbs)
    body = []
    for (subject, resource), cells in long.groupby(["subject", "resource"], sort=False):
        by_verb = {r["verb"]: r for _, r in cells.iterrows()}
        tds = "".join(
            f'<td title="{html.escape(by_verb[v]["reason"])}" style="background:'
            f'{ALLOWED if by_verb[v]["allowed"] else DENIED};color:{"white" if by_verb[v]["allowed"] else "#999"};'
            f'text-align:center">{"✓" if by_verb[v]["allowed"] else "·"}</td>' for v in verbs)
        body.append(f"<tr><th style='text-align:left'>{html.escape(subject)}</th><td>{html.escape(resource)}</td>{tds}</tr>")
    return f"<table><tr><th>subject</th><th>resource</th>{head}</tr>{''.join(body)}</table>"


def _static(long: pd.DataFrame) -> pd.DataFrame:
    if long.empty:
        return long
    return long.assign(cell=long["allowed"].map({True: "✓", False: "·"}))[
        ["subject", "resource", "namespace", "verb", "cell", "reason"]]


class AccessMatrix:
    """The widget and its last result (``.result``, long form, for further pandas work)."""

    def __init__(self, api, *, subjects=(), resources=("pods", "secrets", "deployments.apps", "nodes"),
                 verbs=DEFAULT_VERBS, namespace: str = ""):
        self.api = api
        self.result = pd.DataFrame()
        self.selected: dict | None = None
        self.subjects = w.Textarea(value="\n".join(subjects), description="subjects",
                                   placeholder="User:NAME / Group:NAME / ServiceAccount:NS:NAME, one a line")
        self.resources = w.Text(value=",".join(resources), description="resources")
        self.verbs = w.SelectMultiple(options=list(dict.fromkeys([*DEFAULT_VERBS, *verbs])), value=list(verbs),
                                      description="verbs", rows=8)
        self.namespace = w.Text(value=namespace, description="namespace", placeholder="empty: all namespaces")
        self.button = w.Button(description="Check", button_style="primary")
        self.button.on_click(lambda _: self.refresh())
        self.grid = w.GridBox()
        self.output = w.HTML()  # the reason of the selected cell
        self.grant_button = w.Button(description="Preview grant", icon="plus", layout=w.Layout(width="auto"))
        self.revoke_button = w.Button(description="Preview revoke", icon="minus", layout=w.Layout(width="auto"))
        self.grant_button.on_click(lambda _: self.preview("grant"))
        self.revoke_button.on_click(lambda _: self.preview("revoke"))
        self.actions = w.HBox([self.grant_button, self.revoke_button], layout=w.Layout(display="none"))
        self.cleanup_button = w.Button(description="Preview clean-up", icon="undo", layout=w.Layout(width="auto"))
        self.cleanup_button.on_click(lambda _: self.preview_cleanup())
        self.panel = PlanPanel(kind="namespace", cluster=api, on_done=self._after_change)
        self._cells: dict[tuple[str, str, str], w.Button] = {}
        self._look = _CellLook()
        self.widget = w.VBox([w.HBox([w.VBox([self.subjects, self.resources, self.namespace]), self.verbs]),
                              w.HBox([self.button, self.cleanup_button]), self.grid, self.output, self.actions,
                              self.panel.widget])
        self._checked = False
        self._turns_selected = False  # whether the proposed change is meant to turn the selected cell

    # ---- asking ---------------------------------------------------------------------------------
    def refresh(self) -> pd.DataFrame:
        subjects = [s for s in self.subjects.value.replace(",", "\n").splitlines() if s.strip()]
        self.result = checks(self.api, subjects, names(self.resources.value), list(self.verbs.value),
                             namespace=self.namespace.value.strip())
        self._checked = True
        self._draw()
        if self.selected:
            key = (self.selected["subject"], self.selected["resource"], self.selected["verb"])
            self.select(*key, keep_panel=True) if key in self._cells else None
        return self.result

    def _draw(self) -> None:
        long = self.result
        verbs = list(dict.fromkeys(long["verb"])) if len(long) else []
        look = self._look
        for old in self.grid.children:  # the kernel would keep every earlier drawing's widgets
            old.close()
        header = [look.html("<b>subject</b>"), look.html("<b>resource</b>")] + \
            [look.html(f"<b>{html.escape(v)}</b>") for v in verbs]
        children, self._cells = list(header), {}
        for (subject, resource), cells in long.groupby(["subject", "resource"], sort=False):
            children += [look.html(html.escape(subject)), look.html(html.escape(resource))]
            for _, cell in cells.set_index("verb").reindex(verbs).reset_index().iterrows():
                button = w.Button(description="✓" if cell["allowed"] else "·", tooltip=cell["reason"],
                                  layout=look.cell, style=look.style(bool(cell["allowed"])),
                                  _dom_classes=("kubebook-cell",))
                button.on_click(lambda _, s=subject, r=resource, v=cell["verb"]: self.select(s, r, v))
                self._cells[(subject, resource, cell["verb"])] = button
                children.append(button)
        layout = self.grid.layout
        layout.grid_template_columns = f"max-content max-content repeat({len(verbs)}, 36px)"
        layout.grid_gap, layout.align_items = "2px 2px", "center"
        self.grid.children = children

    # ---- a cell ---------------------------------------------------------------------------------
    def select(self, subject: str, resource: str, verb: str, *, keep_panel: bool = False) -> dict:
        """Show the cell's answer and the binding that decides it; offer grant or revoke."""
        rows = self.result[(self.result["subject"] == subject) & (self.result["resource"] == resource)
                           & (self.result["verb"] == verb)]
        cell = rows.iloc[0].to_dict()
        for key, button in self._cells.items():
            button.style = self._look.selected if key == (subject, resource, verb) else \
                self._look.style(button.description == "✓")
        self.selected = cell
        source = grants.granting(cell["reason"]) if cell["allowed"] else None
        answer = "allowed" if cell["allowed"] else "denied"
        self.output.value = (
            f"<div class='kubebook-cell-reason'><b>{html.escape(subject)}</b> {html.escape(verb)} "
            f"<b>{html.escape(resource)}</b> in {html.escape(cell['namespace'])}: <b>{answer}</b><br>"
            f"reason: <code>{html.escape(cell['reason'] or '(none given)')}</code>"
            + (f"<br>granted by: <b>{html.escape(str(source))}</b>" if source else "") + "</div>")
        self.grant_button.disabled = bool(cell["allowed"])
        self.revoke_button.disabled = not (source and source.kind == "RoleBinding")
        self.actions.layout.display = ""
        self.panel.clear() if not keep_panel else None  # after a change the panel keeps its result
        return cell

    def preview(self, change: str):
        """Dry-run granting or revoking the selected cell; the panel's button confirms it."""
        cell = self.selected
        if cell is None:
            return self.panel.clear("select a cell first", error=True)
        self._turns_selected = True
        if change == "grant":
            namespace = self.namespace.value.strip() if cell["namespace"] == "*" else cell["namespace"]
            return self.panel.propose(namespace, f"grant {cell['subject']} {cell['verb']} {cell['resource']}",
                                      lambda plan: grants.grant(plan, cell["subject"], cell["verb"],
                                                                cell["resource"], namespace))
        source = grants.granting(cell["reason"])
        namespace = source.namespace if source else ""
        return self.panel.propose(namespace, f"revoke {cell['verb']} {cell['resource']} from {cell['subject']}",
                                  lambda plan: grants.revoke(plan, cell["reason"]))

    def preview_cleanup(self):
        """Dry-run undoing this kernel's grants and revokes in the namespace (only what they made or changed)."""
        namespace = self.namespace.value.strip()
        if not namespace:
            return self.panel.clear("clean-up: enter the namespace the changes were made in", error=True)
        self._turns_selected = False
        return self.panel.propose(namespace, f"clean up grants and revokes in {namespace}",
                                  lambda plan: plan.cleanup(within_scope=True))

    def _after_change(self, table: pd.DataFrame) -> None:
        cell = self.selected
        if cell is not None and len(table) and (table["status"] == "done").all():
            # authorization decisions cannot be watched: ask until the authorizer's cache has the change.
            # A grant or revoke turns the selected cell; a clean-up may not concern it, so it is given
            # a few seconds only.
            try:
                wait_allowed(self.api, cell["subject"], cell["verb"], cell["resource"],
                             namespace="" if cell["namespace"] == "*" else cell["namespace"],
                             allowed=not cell["allowed"], timeout=30 if self._turns_selected else 5)
            except WaitTimeout as exc:
                if self._turns_selected:
                    self.panel.log.value += f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"
        self.refresh()

    def _repr_mimebundle_(self, **kwargs):
        if not self._checked:
            self.refresh()
        return mimebundle(self.widget, _static(self.result), **kwargs)
