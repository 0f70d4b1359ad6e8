"""Step checks for the etcd labs: a key written by hand with ``etcdctl put``.

    key_holds(etcd, "/luffy/1", "value-1")     # after: etcdctl put /luffy/1 value-1
    key_gone(etcd, "/luffy/1")                 # after: etcdctl del /luffy/1
"""
from __future__ import annotations

import pandas as pd

from ..checks import close_to, verdict
from .client import Etcd, display_value


def key_holds(etcd: Etcd, key: str, value: str) -> pd.DataFrame:
    """Does ``key`` hold exactly ``value``? Hints for a missing key look for what was written instead."""
    step = f"{key} = {value!r}"
    have = etcd.get_value(key)
    if have is not None:
        if have == value.encode():
            return verdict(step, True)
        shown = display_value(key, have)
        extra = " (a trailing newline: etcdctl put takes the value as given, do not pipe it from echo)" \
            if have.rstrip(b"\r\n") == value.encode() else ""
        return verdict(step, False, f"{key} holds {shown!r}, the step asks for {value!r}{extra}: "
                       f"`etcdctl put {key} {value}`")
    fix = f"`etcdctl put {key} {value}`"
    if not key.startswith("/") and etcd.get_value("/" + key) is not None:
        return verdict(step, False, f"the key was written as /{key}: etcd keys are exact bytes, '/' included")
    if key.startswith("/") and etcd.get_value(key[1:]) is not None:
        return verdict(step, False, f"the key was written as {key[1:]!r} without the leading '/': "
                       f"etcd keys are exact bytes; {fix}")
    parent = key[: key.rstrip("/").rfind("/") + 1] or "/"
    siblings = etcd.keys(parent, limit=500)
    near = close_to(key, siblings, cutoff=0.8)
    if near:
        return verdict(step, False, f"there is {near[0]!r}, not {key!r}: keys are exact, check the spelling; {fix}")
    return verdict(step, False, f"no key {key} (nothing under {parent} looks like it): {fix}")


def key_gone(etcd: Etcd, key: str) -> pd.DataFrame:
    step = f"{key} deleted"
    if etcd.get_value(key) is None:
        return verdict(step, True)
    return verdict(step, False, f"{key} still exists: `etcdctl del {key}` (or `--prefix` for every key under it)")
