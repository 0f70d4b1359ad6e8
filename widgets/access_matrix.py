"""An access matrix to explore live: pick subjects, resources, verbs and a namespace, press Check.

Every cell is the apiserver's own answer (SubjectAccessReview through
:func:`kubebook.auth.access.checks`); hovering a cell shows the reason, which names the binding.

    from widgets.access_matrix import AccessMatrix
    AccessMatrix(api, subjects=["User:luffy-admin"], resources=["pods", "secrets"]).widget
"""
from __future__ import annotations

import html

import ipywidgets as w
import pandas as pd

from kubebook.auth.access import DEFAULT_VERBS, checks, names

ALLOWED, DENIED = "#2e7d32", "#eeeeee"


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


class AccessMatrix:
    """The widget and its last result (``.result``, long form, for further pandas work)."""

    def __init__(self, api, *, subjects=(), resources=("pods", "secrets", "deployments.apps", "nodes"),
                 verbs=DEFAULT_VERBS, namespace: str = ""):
        self.api = api
        self.result = pd.DataFrame()
        self.subjects = w.Textarea(value="\n".join(subjects), description="subjects",
                                   placeholder="User:NAME / Group:NAME / ServiceAccount:NS:NAME, one a line")
        self.resources = w.Text(value=",".join(resources), description="resources")
        self.verbs = w.SelectMultiple(options=list(dict.fromkeys([*DEFAULT_VERBS, *verbs])), value=list(verbs),
                                      description="verbs", rows=8)
        self.namespace = w.Text(value=namespace, description="namespace", placeholder="empty: all namespaces")
        self.button = w.Button(description="Check", button_style="primary")
        self.output = w.HTML()
        self.button.on_click(lambda _: self.refresh())
        self.widget = w.VBox([w.HBox([w.VBox([self.subjects, self.resources, self.namespace]), self.verbs]),
                              self.button, self.output])

    def refresh(self) -> pd.DataFrame:
        subjects = [s for s in self.subjects.value.replace(",", "\n").splitlines() if s.strip()]
        self.result = checks(self.api, subjects, names(self.resources.value), list(self.verbs.value),
                             namespace=self.namespace.value.strip())
        self.output.value = render(self.result)
        return self.result

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
