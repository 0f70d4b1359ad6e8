"""Plans for the etcd lab tests, each with a run record of its own.

A kernel (one run) has one run id; a test process makes many plans, and each must own only what
it made, as separate runs would: so each plan here gets a fresh id before its record is read.
"""
from __future__ import annotations

import os
import uuid

from kubebook import connect, ownership
from kubebook.plan import Plan


def plan(lab, target: str, *, kind: str = "namespace", also=(), confirm: str = "", cluster=None) -> Plan:
    saved = os.environ.get(ownership.RUN_ID_ENV)
    os.environ[ownership.RUN_ID_ENV] = f"test-{target}-{uuid.uuid4().hex[:8]}"
    try:
        made = Plan(target=target, kind=kind, also=list(also), confirm=confirm,
                    cluster=cluster or connect.target(lab=lab.name), log=lambda m: None)
        made.record  # read now, under this plan's own run id
    finally:
        if saved is None:
            os.environ.pop(ownership.RUN_ID_ENV, None)
        else:
            os.environ[ownership.RUN_ID_ENV] = saved
    return made


def confirmed(lab, target: str, *, also=(), kind: str = "namespace", cluster=None) -> Plan:
    return plan(lab, target, kind=kind, also=also, confirm=", ".join([target, *also]), cluster=cluster)
