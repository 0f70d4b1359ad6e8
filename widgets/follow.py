"""Follow a few kinds of objects by watch and call back after each burst of changes.

    follower = Follower({"pvs": core.list_persistent_volume}, on_change=board.refresh).start()
    follower.stop()

One thread per lister lists once, then follows the watch from that resourceVersion (a 410 or a
dropped stream lists again); one more thread calls ``on_change`` at most every ``coalesce``
seconds, so a burst of events is one redraw. Threads are daemons: nothing waits on them.
"""
from __future__ import annotations

import json
import threading
from typing import Callable

from kubernetes import watch


class Follower:
    def __init__(self, listers: dict[str, Callable], on_change: Callable[[], None], *, coalesce: float = 0.3,
                 on_error: Callable[[str], None] = lambda message: None):
        self.listers = listers
        self.on_change = on_change
        self.on_error = on_error
        self.coalesce = coalesce
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stopped.is_set()

    def start(self) -> "Follower":
        if self._threads:
            return self
        for name, lister in self.listers.items():
            self._threads.append(threading.Thread(target=self._follow, args=(name, lister), daemon=True,
                                                  name=f"follow-{name}"))
        self._threads.append(threading.Thread(target=self._call_back, daemon=True, name="follow-render"))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()
        for t in self._threads:
            t.join(timeout=6)

    def _follow(self, name: str, lister: Callable) -> None:
        while not self._stopped.is_set():
            try:
                version = json.loads(lister(_preload_content=False).data)["metadata"]["resourceVersion"]
                self._changed.set()
                stream = watch.Watch()
                while not self._stopped.is_set():  # short server timeouts so stop() is noticed
                    for event in stream.stream(lister, resource_version=version, timeout_seconds=5):
                        if event["type"] == "ERROR":
                            raise RuntimeError(event["raw_object"].get("message", "watch error"))
                        version = event["raw_object"]["metadata"].get("resourceVersion", version)
                        self._changed.set()
                        if self._stopped.is_set():
                            break
            except Exception as exc:  # a dropped stream or 410 Gone: list again
                self.on_error(f"re-listing {name}: {str(exc)[:80]}")
                self._stopped.wait(1)

    def _call_back(self) -> None:
        while not self._stopped.is_set():
            self._changed.wait()
            if self._stopped.is_set():
                return
            self._stopped.wait(self.coalesce)
            self._changed.clear()
            try:
                self.on_change()
            except Exception as exc:  # a failed redraw is reported and the next change tries again
                self.on_error(f"redraw failed: {str(exc)[:200]}")
