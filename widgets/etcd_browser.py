"""etcd key browser: walk the prefix tree of ``/registry`` and read any key as the object it stores.

    EtcdBrowser(etcd, start="/registry/")

The list shows the level under the current prefix (child prefixes with their key counts, then
keys); picking a prefix goes down into it, **Up** goes back, picking a key shows its value,
decoded with Kubernetes' codecs for ``/registry`` keys (Secret data masked,
:func:`kubebook.etcd.tree.show_key`). **Preview put** writes a key outside ``/registry`` the way
``etcdctl put`` does, after a dry run, with "Confirm on etcd member NAME" (the key's earlier value
is saved first); **Preview clean-up** deletes the keys this kernel's puts created and puts back the
values they replaced.
"""
from __future__ import annotations

import html

import ipywidgets as w
import pandas as pd

from kubebook.etcd import tree

from .plan_panel import PlanPanel, mimebundle


class EtcdBrowser:
    def __init__(self, etcd, *, start: str = "/registry/", put_key: str = "/kubebook/classroom", put_value: str = "hello"):
        self.etcd = etcd
        self.prefix = start if start.endswith("/") else start + "/"
        self.level = pd.DataFrame()
        self.where = w.HTML()
        self.up = w.Button(description="Up", icon="arrow-up", layout=w.Layout(width="auto"))
        self.reload = w.Button(description="Reload", icon="refresh", layout=w.Layout(width="auto"))
        self.up.on_click(lambda _: self.go(tree.parent(self.prefix)))
        self.reload.on_click(lambda _: self.go(self.prefix))
        self.entries = w.Select(options=[], rows=14, layout=w.Layout(width="380px"))
        self.entries.observe(self._picked, "value")
        self.value = w.HTML(layout=w.Layout(width="100%", max_height="420px", overflow="auto"))
        self.key = w.Text(value=put_key, description="key", layout=w.Layout(width="320px"))
        self.new_value = w.Text(value=put_value, description="value", layout=w.Layout(width="260px"))
        self.preview_button = w.Button(description="Preview put", icon="eye", button_style="info",
                                       layout=w.Layout(width="auto"))
        self.preview_button.on_click(lambda _: self.preview_put())
        self.cleanup_button = w.Button(description="Preview clean-up", icon="undo", layout=w.Layout(width="auto"))
        self.cleanup_button.on_click(lambda _: self.preview_cleanup())
        self.panel = PlanPanel(kind="etcd member", on_done=lambda _: self.go(tree.parent(self.key.value.strip())))
        self.widget = w.VBox([w.HBox([self.up, self.reload, self.where]),
                              w.HBox([self.entries, self.value]),
                              w.HBox([self.key, self.new_value, self.preview_button, self.cleanup_button]),
                              self.panel.widget])
        self._member: str | None = None
        self._loaded = False

    def go(self, prefix: str) -> pd.DataFrame:
        """Show the level under ``prefix``."""
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.level = tree.children(self.etcd.keys(self.prefix), self.prefix)
        self.where.value = f"<code class='kubebook-prefix'>{html.escape(self.prefix)}</code> " \
                           f"({int(self.level['keys'].sum()) if len(self.level) else 0} keys)"
        self.entries.unobserve(self._picked, "value")
        self.entries.options = [(self._label(r), r["path"]) for _, r in self.level.iterrows()]
        self.entries.value = None
        self.entries.observe(self._picked, "value")
        self._loaded = True
        return self.level

    @staticmethod
    def _label(row) -> str:
        return f"{row['name']} ({row['keys']})" if not row["leaf"] else row["name"]

    def _picked(self, change) -> None:
        path = change["new"]
        if not path:
            return
        row = self.level[self.level["path"] == path].iloc[0]
        if row["leaf"]:
            self.open(path)
        else:
            self.go(path)

    def open(self, key: str) -> str:
        """Show what ``key`` holds (decoded and masked)."""
        text = tree.show_key(self.etcd, key)
        self.value.value = f"<b>{html.escape(key)}</b><pre class='kubebook-value' style='font-size:11px'>" \
                           f"{html.escape(text)}</pre>"
        return text

    def preview_put(self):
        key, value = self.key.value.strip(), self.new_value.value
        self._member = self._member or self.etcd.member_name()
        return self.panel.propose(self._member, f"put {key}", lambda plan: tree.put(plan, self.etcd, key, value))

    def preview_cleanup(self):
        self._member = self._member or self.etcd.member_name()
        return self.panel.propose(self._member, "clean up this kernel's puts", lambda plan: tree.undo_puts(plan, self.etcd))

    def _repr_mimebundle_(self, **kwargs):
        if not self._loaded:
            self.go(self.prefix)
        return mimebundle(self.widget, self.level[["path", "keys", "leaf"]], **kwargs)
