"""A live node board for trainers: the table from :func:`kubebook.scheduling.board.node_board`,
kept current by watch, with the node verbs of :mod:`kubebook.scheduling.nodes` behind a preview.

    board = NodeBoard(api)
    board          # displays, and starts watching nodes and Pods; the Stop button ends the watches

Select a node and a change (add or remove a taint or a label, cordon, uncordon), press
Preview: the dry run lists the steps; "Confirm on node NAME" runs exactly those. The node is
backed up before this kernel first changes it; "put back as before" restores it from that backup. A ``NoExecute`` taint
makes the taint-eviction controller remove the Pods that do not tolerate it, and their
Deployment recreates them elsewhere: the board shows them move.

Two watch threads keep an in-memory copy of nodes and Pods (list once, then events; a 410 or a
dropped stream lists again). A third thread re-renders after changes, at most a few times a
second, so a burst of 100 Pod events is one redraw. Nothing here blocks a cell: under
papermill or nbval the output carries the same board as a static table.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Callable

import ipywidgets as w
from kubernetes import client, watch

from kubebook.scheduling import nodes
from kubebook.scheduling.board import node_board
from kubebook.scheduling.explain import Snapshot

from .plan_panel import PlanPanel, html_table, mimebundle

_COALESCE_SECONDS = 0.3

# change -> (what the value box holds, the plan-first kubebook call that makes it)
ACTIONS: dict[str, tuple[str, Callable]] = {
    "add taint": ("key=value:Effect", lambda plan, node, v: nodes.taint(plan, node, v)),
    "remove taint": ("key:Effect or key",
                     lambda plan, node, v: nodes.untaint(plan, node, v if v.endswith("-") else v + "-")),
    "add label": ("key=value", lambda plan, node, v: nodes.label(plan, node, v)),
    "remove label": ("key", lambda plan, node, v: nodes.label(plan, node, v.rstrip("-") + "-")),
    "cordon": ("", lambda plan, node, v: nodes.cordon(plan, node)),
    "uncordon": ("", lambda plan, node, v: nodes.uncordon(plan, node)),
    # every change above backs the node up before its first one; this puts it back as it was then
    "put back as before": ("", lambda plan, node, v: plan.cleanup(within_scope=True)),
}


class NodeBoard:
    def __init__(self, api, *, title: str = "nodes", max_pods: int = 6,
                 on_render: Callable[["NodeBoard"], None] | None = None):
        self.api = api
        self.title = title
        self.max_pods = max_pods
        self.on_render = on_render
        self._objects: dict[str, dict[str, dict]] = {"nodes": {}, "pods": {}}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.renders = 0
        self.table = None
        self.html = w.HTML()
        self.status = w.Label("not started")
        self.stop_button = w.Button(description="Stop watching", icon="stop", layout=w.Layout(width="auto"))
        self.stop_button.on_click(lambda _: self.stop())
        self.node = w.Dropdown(description="node", options=[], layout=w.Layout(width="220px"))
        self.action = w.Dropdown(description="change", options=list(ACTIONS), layout=w.Layout(width="220px"))
        self.value = w.Text(description="value", placeholder=ACTIONS["add taint"][0], layout=w.Layout(width="320px"))
        self.action.observe(lambda change: setattr(self.value, "placeholder", ACTIONS[change["new"]][0]), "value")
        self.preview_button = w.Button(description="Preview", icon="eye", button_style="info",
                                       layout=w.Layout(width="auto"))
        self.preview_button.on_click(lambda _: self.preview())
        self.panel = PlanPanel(kind="node", cluster=api)
        self.widget = w.VBox([w.HBox([w.HTML(f"<b>{title}</b>"), self.status, self.stop_button]), self.html,
                              w.HBox([self.node, self.action, self.value, self.preview_button]), self.panel.widget])

    # ---- acting, through a preview ------------------------------------------------------------
    def preview(self, node: str | None = None, action: str | None = None, value: str | None = None):
        """Dry-run the selected change (or the one given) and show its steps with the confirm button."""
        node = node or self.node.value
        action = action or self.action.value
        value = (self.value.value if value is None else value).strip()
        call = ACTIONS[action][1]
        if ACTIONS[action][0] and not value:
            self.panel.clear(f"{action}: enter {ACTIONS[action][0]}", error=True)
            return None
        return self.panel.propose(node, f"{action} {value}".strip(), lambda plan: call(plan, node, value))

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "NodeBoard":
        if self._threads:
            return self
        core = client.CoreV1Api(self.api)
        for kind, lister in (("nodes", core.list_node), ("pods", core.list_pod_for_all_namespaces)):
            t = threading.Thread(target=self._follow, args=(kind, lister), daemon=True, name=f"board-{kind}")
            t.start()
            self._threads.append(t)
        renderer = threading.Thread(target=self._render_loop, daemon=True, name="board-render")
        renderer.start()
        self._threads.append(renderer)
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()
        for t in self._threads:
            t.join(timeout=5)
        self.stop_button.disabled = True
        self.status.value = f"stopped after {self.renders} render(s)"

    def _repr_mimebundle_(self, **kwargs):
        self.start()
        return mimebundle(self.widget, node_board(Snapshot.take(self.api), max_pods=self.max_pods), **kwargs)

    # ---- watching -------------------------------------------------------------------------------
    def _follow(self, kind: str, lister) -> None:
        while not self._stopped.is_set():
            try:
                data = json.loads(lister(_preload_content=False).data)
                with self._lock:
                    self._objects[kind] = {self._key(o): o for o in data["items"]}
                self._changed.set()
                stream = watch.Watch()
                # short server-side timeouts so stop() is noticed; the loop resumes from the last version
                version = data["metadata"]["resourceVersion"]
                while not self._stopped.is_set():
                    for event in stream.stream(lister, resource_version=version, timeout_seconds=5):
                        obj = event["raw_object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(obj.get("message", "watch error"))
                        version = obj["metadata"].get("resourceVersion", version)
                        with self._lock:
                            if event["type"] == "DELETED":
                                self._objects[kind].pop(self._key(obj), None)
                            else:
                                self._objects[kind][self._key(obj)] = obj
                        self._changed.set()
                        if self._stopped.is_set():
                            break
            except Exception as exc:  # a dropped stream or 410: list again
                self.status.value = f"re-listing {kind}: {str(exc)[:80]}"
                self._stopped.wait(1)

    @staticmethod
    def _key(obj: dict) -> str:
        return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

    def _render_loop(self) -> None:
        while not self._stopped.is_set():
            self._changed.wait()
            if self._stopped.is_set():
                return
            self._stopped.wait(_COALESCE_SECONDS)  # let a burst of events arrive before drawing
            self._changed.clear()
            self.render()

    def render(self) -> None:
        with self._lock:
            snap = Snapshot(nodes=list(self._objects["nodes"].values()), pods=list(self._objects["pods"].values()))
        self.table = node_board(snap, max_pods=self.max_pods)
        self.html.value = html_table(self.table)
        names = list(self.table["node"])
        if list(self.node.options) != names:
            keep = self.node.value if self.node.value in names else (names[0] if names else None)
            self.node.options = names
            self.node.value = keep
        self.renders += 1
        self.status.value = f"{len(snap.nodes)} nodes, {len(snap.pods)} pods; updated {time.strftime('%H:%M:%S')}"
        if self.on_render:
            self.on_render(self)
