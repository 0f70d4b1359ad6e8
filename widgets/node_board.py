"""A live node board for trainers: the table from :func:`kubebook.scheduling.board.node_board`, kept current by watch.

    board = NodeBoard(api)
    board          # displays, and starts watching nodes and Pods
    board.stop()

Two watch threads keep an in-memory copy of nodes and Pods (list once, then events; a 410 or a
dropped stream lists again). A third thread re-renders after changes, at most a few times a
second, so a burst of 100 Pod events is one redraw.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import ipywidgets
from kubernetes import client, watch

from kubebook.scheduling.board import node_board
from kubebook.scheduling.explain import Snapshot

_COALESCE_SECONDS = 0.3


class NodeBoard:
    def __init__(self, api, *, title: str = "nodes", on_render: Callable[["NodeBoard"], None] | None = None):
        self.api = api
        self.title = title
        self.on_render = on_render
        self._objects: dict[str, dict[str, dict]] = {"nodes": {}, "pods": {}}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.renders = 0
        self.table = None
        self.html = ipywidgets.HTML()
        self.status = ipywidgets.Label("not started")
        self.widget = ipywidgets.VBox([ipywidgets.HTML(f"<b>{title}</b>"), self.status, self.html])

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
        self.status.value = f"stopped after {self.renders} render(s)"

    def _ipython_display_(self):
        from IPython.display import display
        self.start()
        display(self.widget)

    # ---- watching -------------------------------------------------------------------------------
    def _follow(self, kind: str, lister) -> None:
        while not self._stopped.is_set():
            try:
                listing = lister(_preload_content=False)
                import json
                data = json.loads(listing.data)
                with self._lock:
                    self._objects[kind] = {self._key(o): o for o in data["items"]}
                self._changed.set()
                w = watch.Watch()
                # short server-side timeouts so stop() is noticed; the loop resumes from the last version
                version = data["metadata"]["resourceVersion"]
                while not self._stopped.is_set():
                    for event in w.stream(lister, resource_version=version, timeout_seconds=5):
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
        self.table = node_board(snap)
        self.html.value = self.table.to_html(index=False)
        self.renders += 1
        self.status.value = f"{len(snap.nodes)} nodes, {len(snap.pods)} pods; updated {time.strftime('%H:%M:%S')}"
        if self.on_render:
            self.on_render(self)
