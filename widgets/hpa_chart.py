"""HPA live chart: desired and current replicas and CPU utilization over time, with a load control.

    HpaChart(target, namespace="kubebook-hpa-chart", name="eladmin-web")   # target: connect.target(...)

The chart follows the HPA and the Deployment's Pods by watch and redraws after each change
(:func:`kubebook.autoscaling.hpa.plot_hpa` on :class:`kubebook.autoscaling.live.History`).
**Preview set-up** creates what is missing (the namespace, the demo Deployment, on a lab the
metrics-server add-on, the HPA); **Preview load** sets the simulated CPU of every current Pod (the
lab's kubelets are simulated, so load is an annotation they report); **Preview clean-up** deletes
what the set-up created and stops the add-on if it started it. Each acts only after "Confirm on
namespace NAME" (and, on a lab, the metrics APIService the add-on registers).
"""
from __future__ import annotations

import html
import io
import time

import ipywidgets as w
import pandas as pd
from kubernetes import client

from kubebook.autoscaling import hpa, live, metrics

from .follow import Follower
from .plan_panel import PlanPanel, html_table, mimebundle

LOADS = ["idle", "50m", "100m", "250m", "500m"]


class HpaChart:
    def __init__(self, target, *, namespace: str = "kubebook-hpa-chart", name: str = "eladmin-web",
                 body: dict | None = None):
        self.target = target
        self.api = api = target.api
        self.namespace = namespace
        self.name = name
        self.addon = metrics.Addon()  # what a confirmed set-up did about the metrics API (its clean-up undoes it)
        self.body = body or hpa.hpa_body(name, min_replicas=1, max_replicas=3, cpu=80, memory=None,
                                         scale_down_window=30)
        self.hpa_name = self.body["metadata"]["name"]
        self.history = live.History()
        self.status = w.HTML("not started")
        self.chart = w.Image(format="png", layout=w.Layout(width="760px"))
        self.latest = w.HTML()
        self.setup_button = w.Button(description="Preview set-up", icon="eye", layout=w.Layout(width="auto"))
        self.setup_button.on_click(lambda _: self.preview_setup())
        self.load = w.Dropdown(description="CPU per Pod", options=LOADS, value="250m",
                               style={"description_width": "initial"}, layout=w.Layout(width="220px"))
        self.load_button = w.Button(description="Preview load", icon="eye", button_style="info",
                                    layout=w.Layout(width="auto"))
        self.load_button.on_click(lambda _: self.preview_load())
        self.cleanup_button = w.Button(description="Preview clean-up", icon="undo", layout=w.Layout(width="auto"))
        self.cleanup_button.on_click(lambda _: self.preview_cleanup())
        self.panel = PlanPanel(kind="namespace", cluster=target, on_done=lambda _: self.refresh())
        self.widget = w.VBox([self.status, self.chart, self.latest,
                              w.HBox([self.setup_button, self.load, self.load_button, self.cleanup_button]),
                              self.panel.widget])
        core, v2 = client.CoreV1Api(api), client.AutoscalingV2Api(api)
        self.follower = Follower(
            {"hpa": lambda **kw: v2.list_namespaced_horizontal_pod_autoscaler(
                namespace, field_selector=f"metadata.name={self.hpa_name}", **kw),
             "pods": lambda **kw: core.list_namespaced_pod(namespace, label_selector=f"app={name}", **kw)},
            on_change=self.refresh, on_error=lambda m: setattr(self.status, "value", html.escape(m)))

    def refresh(self) -> pd.DataFrame:
        current = live.read(self.api, self.namespace, self.hpa_name)
        if current is None:
            self.status.value = (f"no HPA <code>{self.namespace}/{self.hpa_name}</code> yet: "
                                 f"<b>Preview set-up</b> creates it")
            return self.history.frame()
        if self.history.record(current):
            self._draw()
        last = self.history.rows[-1]
        self.status.value = (f"<span class='kubebook-hpa-status'>HPA {html.escape(self.hpa_name)}: "
                             f"{last['current']} current, {last['desired']} desired replicas; "
                             f"{html.escape(last['targets'])}</span>; updated {time.strftime('%H:%M:%S')}")
        return self.history.frame()

    def _draw(self) -> None:
        frame = self.history.frame()
        self.latest.value = html_table(frame.drop(columns=["reference", "last scale"], errors="ignore").tail(6))
        figure = hpa.plot_hpa(frame, title=f"{self.namespace}/{self.name}: replicas and utilization")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        self.chart.value = buffer.getvalue()

    def preview_setup(self):
        return self.panel.propose(self.namespace, "set up the demo, metrics and HPA", self._setup,
                                  also=live.scope(self.target))

    def _setup(self, plan) -> None:
        addon = live.setup(plan, self.target, self.namespace, self.name, self.body)
        if plan.acting:
            self.addon = addon

    def preview_load(self, cpu: str | None = None):
        cpu = cpu or self.load.value
        return self.panel.propose(self.namespace, f"load {cpu}",
                                  lambda plan: live.set_load(plan, self.target, self.namespace, self.name, cpu))

    def preview_cleanup(self):
        return self.panel.propose(self.namespace, "clean up what the set-up created", self._clean_up,
                                  also=live.scope(self.target))

    def _clean_up(self, plan) -> None:
        live.clean_up(plan, self.target, self.addon)
        if plan.acting:
            self.addon = metrics.Addon()
            self.history = live.History()  # a new set-up starts a new chart

    def stop(self) -> None:
        self.follower.stop()

    def _repr_mimebundle_(self, **kwargs):
        self.refresh()
        self.follower.start()
        return mimebundle(self.widget, self.history.frame(), **kwargs)
