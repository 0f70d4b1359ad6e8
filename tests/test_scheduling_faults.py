"""Scheduling while the control plane misbehaves, on a lab of this module's own: components are
stopped and started here (by the PIDs the lab recorded), which the shared session lab must never see.

- a drain survives an apiserver restart: it completes when the apiserver is back within its
  timeout, or stops with one line that says how to resume, and a second run completes;
- waits say within 10 s that no scheduler, or no controller-manager, is running.
"""
from __future__ import annotations

import os

import contextlib
import threading
import uuid

import pytest
from kubernetes import client

from kubebook import lab as labs
from kubebook.plan import Plan, StepFailed
from kubebook.scheduling import drain, workloads
from kubebook.waits import WaitBlocked, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("run")]  # each test a run of its own (conftest.run)

NODE = "k8s-slave2"
RESUME = "run the drain again to resume"


@pytest.fixture(scope="module")
def fault_lab():
    """A lab of this module's own (its apiserver is killed on purpose), removed afterwards."""
    with labs.running(f"sched-fault-{os.getpid()}", nodes=3, timeout=240, keep=False) as lab:
        yield lab


@pytest.fixture
def api(fault_lab):
    return fault_lab.api_client()


@pytest.fixture
def demo(api):
    """A confirmed plan on a fresh namespace and k8s-slave2, cleaned up afterwards."""
    namespace = f"fault-{uuid.uuid4().hex[:6]}"
    also = [f"node/{NODE}"]
    confirm = Plan(target=namespace, kind="namespace", also=also, cluster=api, log=lambda m: None).confirm_text
    plan = Plan(target=namespace, kind="namespace", also=also, confirm=confirm, cluster=api, log=lambda m: None)
    workloads.ensure_namespace(plan, namespace)
    try:
        yield namespace, plan
    finally:
        plan.cleanup()


@contextlib.contextmanager
def stopped(lab, component: str):
    """``component`` stopped for the block, started again (and ready) afterwards, whatever happens."""
    assert lab.stop_component(component), f"{component} was not running"
    try:
        yield
    finally:
        lab.start_component(component)
        lab.wait_ready(component, timeout=120)


def _web_on_node(api, namespace: str) -> list[str]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, field_selector=f"spec.nodeName={NODE}").items
    return sorted(p.metadata.name for p in pods if not p.metadata.deletion_timestamp)


def _slow_drain_setup(api, namespace: str, plan: Plan) -> int:
    """Six replicas over both workers and a budget that lets one go at a time: a drain of several
    steps, each waiting for a replacement to run. Returns how many replicas are on the node."""
    workloads.apply_deployment(plan, namespace, workloads.deployment("web", replicas=6, pod_anti_affinity="preferred"))
    workloads.settle(plan, namespace, "web")
    drain.pod_disruption_budget(plan, namespace, "web", selector={"matchLabels": {"app": "web"}}, max_unavailable=1)
    drain.budget_ready(plan, namespace, "web", healthy=True)
    on_node = len(_web_on_node(api, namespace))
    assert on_node >= 2, "the preferred anti-affinity should have spread the replicas over both workers"
    return on_node


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - judged by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="drain")
    thread.start()
    return thread, outcome


def _first_eviction(api, namespace: str, on_node: int) -> None:
    wait_for(api, "pods", lambda ps: sum(1 for p in ps.values() if not p["metadata"].get("deletionTimestamp")) < on_node,
             namespace=namespace, field_selector=f"spec.nodeName={NODE}", timeout=60,
             what="the drain's first eviction")


def _error_line(outcome: dict) -> str:
    error = outcome["error"]
    cause = error.cause if isinstance(error, StepFailed) else error
    assert isinstance(cause, drain.DrainBlocked), repr(error)
    assert "\n" not in str(cause)
    return str(cause)


def test_a_drain_survives_an_apiserver_restart_in_its_middle(fault_lab, api, demo):
    namespace, plan = demo
    on_node = _slow_drain_setup(api, namespace, plan)
    # Without a scheduler the first replacement stays Pending, so the budget holds the drain in its
    # eviction loop (retrying, not diagnosed: a Pending Pod no scheduler has judged may yet run).
    with stopped(fault_lab, "kube-scheduler"):
        thread, outcome = _in_thread(lambda: drain.drain(plan, NODE, timeout=150, restore=True, progress=False))
        _first_eviction(api, namespace, on_node)
        with stopped(fault_lab, "kube-apiserver"):
            thread.join(3)
            assert thread.is_alive(), "the drain gave up while the apiserver was away"
        thread.join(2)
        assert thread.is_alive(), "the drain stopped although the apiserver is back"
    thread.join(180)
    assert not thread.is_alive()
    if "error" in outcome:  # allowed: stopped in one line that says how to resume
        assert RESUME in _error_line(outcome)
    else:
        assert set(outcome["result"]["outcome"]) == {"evicted"} and len(outcome["result"]) == on_node
    again = drain.drain(plan, NODE, timeout=120, restore=True, progress=False)  # a second run completes
    assert set(again["outcome"]) <= {"evicted"}
    assert _web_on_node(api, namespace) == []
    assert workloads.settle(plan, namespace, "web").endswith("6 of 6 Pods bound, 0 unschedulable")


def test_a_drain_cut_off_by_a_longer_outage_says_how_to_resume_and_a_second_run_completes(fault_lab, api, demo):
    namespace, plan = demo
    on_node = _slow_drain_setup(api, namespace, plan)
    with stopped(fault_lab, "kube-scheduler"):
        thread, outcome = _in_thread(lambda: drain.drain(plan, NODE, timeout=12, restore=True, progress=False))
        _first_eviction(api, namespace, on_node)
        with stopped(fault_lab, "kube-apiserver"):
            thread.join(60)  # the drain's 12 s run out while the apiserver is away
            assert not thread.is_alive()
    line = _error_line(outcome)
    assert f"drain of {NODE} stopped" in line and "the apiserver did not answer" in line
    assert f"{NODE} stays cordoned; {RESUME}" in line
    result = outcome["error"].cause.result
    assert (result["outcome"] == "evicted").sum() >= 1 and (result["outcome"] != "evicted").sum() >= 1
    again = drain.drain(plan, NODE, timeout=120, restore=True, progress=False)
    assert set(again["outcome"]) == {"evicted"}
    assert _web_on_node(api, namespace) == []


def test_a_drain_that_times_out_says_what_the_budget_allows(fault_lab, api, demo):
    namespace, plan = demo
    _slow_drain_setup(api, namespace, plan)
    with stopped(fault_lab, "kube-scheduler"):  # the first replacement never runs: the budget holds
        with pytest.raises(StepFailed) as info:
            drain.drain(plan, NODE, timeout=6, restore=True, progress=False)
    line = str(info.value.cause)
    assert f"eviction(s) still refused at the timeout (PodDisruptionBudget {namespace}/web (maxUnavailable 1) " \
           f"allows 0, 5 of 6 Pods healthy)" in line
    assert f"{NODE} stays cordoned; {RESUME}" in line
    assert set(drain.drain(plan, NODE, timeout=120, restore=True, progress=False)["outcome"]) == {"evicted"}


def test_settle_says_within_10s_that_no_scheduler_is_running(fault_lab, api, demo):
    namespace, plan = demo
    with stopped(fault_lab, "kube-scheduler"):
        workloads.apply_deployment(plan, namespace, workloads.deployment("unseen", replicas=2))
        with pytest.raises(StepFailed) as info:
            workloads.settle(plan, namespace, "unseen", timeout=10)
        cause = info.value.cause
        assert isinstance(cause, WaitBlocked)
        assert f"no scheduler has looked at Pod {namespace}/unseen-" in str(cause)
        assert "is kube-scheduler running?" in str(cause) and "\n" not in str(cause)
    assert workloads.settle(plan, namespace, "unseen").endswith("2 of 2 Pods bound, 0 unschedulable")


def test_settle_says_within_10s_that_no_controller_manager_is_running(fault_lab, api, demo):
    namespace, plan = demo
    with stopped(fault_lab, "kube-controller-manager"):
        workloads.apply_deployment(plan, namespace, workloads.deployment("unmanaged", replicas=2))
        with pytest.raises(StepFailed) as info:
            workloads.settle(plan, namespace, "unmanaged", timeout=10)
        message = str(info.value.cause)
        assert f"no Deployment controller has acted on Deployment {namespace}/unmanaged" in message
        assert "is kube-controller-manager running?" in message
        drain.pod_disruption_budget(plan, namespace, "unmanaged", selector={"matchLabels": {"app": "unmanaged"}},
                                    max_unavailable=1)
        with pytest.raises(StepFailed) as info:
            drain.budget_ready(plan, namespace, "unmanaged", timeout=10)
        assert f"no disruption controller has acted on PodDisruptionBudget {namespace}/unmanaged" in \
            str(info.value.cause)
    assert workloads.settle(plan, namespace, "unmanaged").endswith("2 of 2 Pods bound, 0 unschedulable")
