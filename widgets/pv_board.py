"""PV/PVC board: claims, volumes, and the binder rule that blocks each PV for a Pending claim.

    PvBoard(api, namespace="kubebook-pv-board", claim="mysql-data")

The two tables follow PVs and claims by watch (:class:`widgets.follow.Follower`); picking a claim
shows every PV against it, with the first rule it fails (:func:`kubebook.storage.board.blocking`).
The demo changes go through a preview: create the course's claim and PVs that each break one
rule, then add the PV that fits and watch the PV controller bind the claim; the clean-up deletes
what the demo created (claim first), nothing that was there before. The confirm button names the
namespace and every PV the change touches.
"""
from __future__ import annotations

import html
import time

import ipywidgets as w
import pandas as pd
from kubernetes import client

from kubebook.storage import board

from .follow import Follower
from .plan_panel import PlanPanel, html_table, mimebundle

# change -> (the PVs it touches: broken ones, the fitting one, the plan-first call that makes it)
ACTIONS = {
    "create the demo claim and PVs (each breaks one rule)":
        (True, False, lambda plan, ns, claim, request: board.create_demo(plan, ns, claim, request)),
    "add a PV that fits the claim":
        (False, True, lambda plan, ns, claim, request: board.add_fitting_volume(plan, ns, claim, request)),
    "clean up what the demo created":
        (True, True, lambda plan, ns, claim, request: board.clean_up_demo(plan)),
}


class PvBoard:
    def __init__(self, api, *, namespace: str = "kubebook-pv-board", claim: str = "mysql-data", request: str = "1Gi"):
        self.api = api
        self.namespace = namespace
        self.demo_claim = claim
        self.request = request
        self.claims = pd.DataFrame(columns=board.CLAIM_COLUMNS)
        self.volumes = pd.DataFrame(columns=board.VOLUME_COLUMNS)
        self._raw: tuple[list, list, list] = ([], [], [])
        self.status = w.Label("not started")
        self.claims_html = w.HTML()
        self.volumes_html = w.HTML()
        self.pick = w.Dropdown(description="claim", options=[], layout=w.Layout(width="360px"))
        self.pick.observe(lambda _: self._draw_blocking(), "value")
        self.blocking_html = w.HTML()
        self.action = w.Dropdown(description="change", options=list(ACTIONS), layout=w.Layout(width="520px"))
        self.preview_button = w.Button(description="Preview", icon="eye", button_style="info",
                                       layout=w.Layout(width="auto"))
        self.preview_button.on_click(lambda _: self.preview())
        self.panel = PlanPanel(kind="namespace", cluster=api)
        self.widget = w.VBox([self.status, w.HTML("<b>claims</b>"), self.claims_html, w.HTML("<b>volumes</b>"),
                              self.volumes_html, self.pick, self.blocking_html,
                              w.HBox([self.action, self.preview_button]), self.panel.widget])
        core = client.CoreV1Api(api)
        self.follower = Follower({"persistentvolumes": core.list_persistent_volume,
                                  "persistentvolumeclaims": core.list_persistent_volume_claim_for_all_namespaces},
                                 on_change=self.refresh, on_error=lambda m: setattr(self.status, "value", m))

    def refresh(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        self._raw = board.listing(self.api)
        self.claims, self.volumes = board.tables(*self._raw)
        self.claims_html.value = html_table(self.claims, empty="no claims")
        self.volumes_html.value = html_table(self.volumes, empty="no PersistentVolumes")
        names = [f"{r['namespace']}/{r['claim']}" for _, r in self.claims.iterrows()]
        wanted = self.pick.value if self.pick.value in names else (
            f"{self.namespace}/{self.demo_claim}" if f"{self.namespace}/{self.demo_claim}" in names else
            (names[0] if names else None))
        if list(self.pick.options) != names:
            self.pick.options = names
        self.pick.value = wanted
        self._draw_blocking()
        self.status.value = f"{len(self.claims)} claims, {len(self.volumes)} PVs; updated {time.strftime('%H:%M:%S')}"
        return self.claims, self.volumes

    def _draw_blocking(self) -> None:
        chosen = self.pick.value
        claims, pvs, _ = self._raw
        claim = next((c for c in claims if f"{c['metadata']['namespace']}/{c['metadata']['name']}" == chosen), None)
        if claim is None:
            self.blocking_html.value = ""
            return
        row = self.claims[(self.claims["namespace"] + "/" + self.claims["claim"]) == chosen].iloc[0]
        verdict = row["why"] or f"{row['phase']} on {row['volume']}"
        self.blocking_html.value = (f"<div class='kubebook-verdict'><b>{html.escape(chosen)}</b>: "
                                    f"{html.escape(verdict)}</div>" + html_table(board.blocking(claim, pvs)))

    def preview(self, action: str | None = None):
        action = action or self.action.value
        broken, fitting, call = ACTIONS[action]
        also = board.demo_scope(self.namespace, self.demo_claim, self.request, broken=broken, fitting=fitting)
        return self.panel.propose(self.namespace, action,
                                  lambda plan: call(plan, self.namespace, self.demo_claim, self.request), also=also)

    def stop(self) -> None:
        self.follower.stop()
        self.status.value = "stopped"

    def _repr_mimebundle_(self, **kwargs):
        self.refresh()
        self.follower.start()
        return mimebundle(self.widget, self.claims, **kwargs)
