"""Unit tests for kubebook.autoscaling: HPA bodies, validation, and tables from recorded objects."""
from __future__ import annotations

import pytest

from kubebook.autoscaling import demo, hpa, scale
from kubebook.errors import KubebookError
from kubebook.plan import Plan

# an HPA as the API returned it in the lab (no metrics API registered): defaults filled in, targets unknown
RECORDED_HPA = {
    "metadata": {"name": "hpa-eladmin-web", "namespace": "luffy"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "eladmin-web"},
             "minReplicas": 1, "maxReplicas": 3,
             "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {
                 "type": "Utilization", "averageUtilization": 80}}},
                 {"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}],
             "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                 {"type": "Pods", "value": 4, "periodSeconds": 15},
                 {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                 "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
                     {"type": "Percent", "value": 100, "periodSeconds": 15}]}}},
    "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 390,
                                                                        "averageValue": "390m"}}}],
        "conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]},
}


def test_hpa_body_matches_the_course_object():
    body = hpa.hpa_body("eladmin-web", min_replicas=1, max_replicas=3)
    assert body["apiVersion"] == "autoscaling/v2"
    assert body["metadata"]["name"] == "hpa-eladmin-web"
    assert body["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "eladmin-web"}
    assert [(m["resource"]["name"], m["resource"]["target"]["averageUtilization"])
            for m in body["spec"]["metrics"]] == [("memory", 80), ("cpu", 80)]
    assert body["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_hpa_body_leaves_out_a_metric_set_to_none_or_zero():
    body = hpa.hpa_body("web", memory=None, cpu=50, scale_down_window=30)
    assert [m["resource"]["name"] for m in body["spec"]["metrics"]] == ["cpu"]
    assert body["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert [m["resource"]["name"] for m in hpa.hpa_body("web", memory=0)["spec"]["metrics"]] == ["cpu"]


@pytest.mark.parametrize("kwargs, message", [
    ({"min_replicas": 0}, "min_replicas <= max_replicas"),
    ({"min_replicas": 4, "max_replicas": 3}, "min_replicas <= max_replicas"),
    ({"cpu": None, "memory": None}, "at least one metric"),
    ({"cpu": -1}, "percentage"),
    ({"cpu": True}, "percentage"),
    ({"scale_down_window": -1}, "scale_down_window"),
    ({"max_replicas": 5000}, "max_replicas"),
])
def test_hpa_body_rejects_bad_values(kwargs, message):
    with pytest.raises(KubebookError, match=message):
        hpa.hpa_body("web", **kwargs)


@pytest.mark.parametrize("name", ["Web", "web_1", "", "-web", "a" * 300])
def test_bad_names_are_rejected(name):
    with pytest.raises(KubebookError, match="not a valid"):
        scale.check_name(name)


@pytest.mark.parametrize("replicas", [-1, 1.5, "3", True, scale.MAX_REPLICAS + 1])
def test_bad_replica_counts_are_rejected(replicas):
    with pytest.raises(KubebookError, match="whole number"):
        scale.check_replicas(replicas)


def _quiet_plan(**kwargs):
    return Plan(target="kubebook-hpa", kind="namespace", log=lambda _: None, **kwargs)


def test_scale_validates_before_touching_the_api():
    # a plan without a cluster: a validation error must come before any request
    with pytest.raises(KubebookError, match="whole number"):
        scale.scale(_quiet_plan(), "kubebook-hpa", "eladmin-web", -2)


def test_scale_past_max_not_above_the_maximum_is_only_described():
    plan = _quiet_plan()
    assert hpa.scale_past_max(plan, "kubebook-hpa", "web", replicas=3, max_replicas=3) is None
    assert plan.table()[["status", "what"]].values.tolist() == [
        ["planned", "scale past maxReplicas: skipped (3 is not above 3)"]]


def test_autoscale_command_is_the_cpu_only_equivalent():
    body = hpa.hpa_body("eladmin-web", min_replicas=1, max_replicas=3)
    assert hpa.autoscale_command("luffy", body) == \
        "kubectl -n luffy autoscale deployment eladmin-web --cpu-percent=80 --min=1 --max=3"
    assert "--cpu-percent" not in hpa.autoscale_command("luffy", hpa.hpa_body("eladmin-web", cpu=None))


def test_summary_reads_like_kubectl_get_hpa():
    row = hpa.summary(RECORDED_HPA)
    assert row["reference"] == "Deployment/eladmin-web"
    assert row["targets"] == "memory <unknown>/80%, cpu 390%/80%"
    assert (row["min"], row["max"], row["current"], row["desired"]) == (1, 3, 3, 3)


def test_behavior_table_lists_both_directions_and_policies():
    table = hpa.behavior_of(RECORDED_HPA["spec"]["behavior"])
    assert table["direction"].tolist() == ["scaleUp", "scaleDown"]
    assert table["stabilization window (s)"].tolist() == [0, 300]
    assert table.loc[0, "policies"] == "4 Pods per 15s; 100 % per 15s"


def test_preflight_flags_a_container_without_requests():
    body = demo.demo_deployment("web", requests={})
    table = hpa.preflight_of(body)
    assert table["cpu utilization possible"].tolist() == [False]
    assert not hpa.preflight_ok(table)
    assert hpa.preflight_ok(hpa.preflight_of(demo.demo_deployment("web")))


def test_preflight_needs_every_container_to_request():
    body = demo.demo_deployment("web")
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox",
                                                          "resources": {"requests": {"cpu": "10m"}}})
    table = hpa.preflight_of(body)
    assert table["memory utilization possible"].tolist() == [True, False]
    assert not hpa.preflight_ok(table)


def test_predicates():
    assert hpa.has_condition("ScalingActive")(RECORDED_HPA)
    assert hpa.has_condition("ScalingActive", "True", "ValidMetricFound")(RECORDED_HPA)
    assert not hpa.has_condition("ScalingActive", "False")(RECORDED_HPA)
    assert hpa.replicas_at(3)(RECORDED_HPA)
    assert not hpa.replicas_at(1)(RECORDED_HPA)


# ---- the simulated kubelet endpoint and its parser --------------------------------------------

from decimal import Decimal  # noqa: E402

from kubebook.autoscaling import kubelet_sim, metrics  # noqa: E402


def _pod(name, cpu=None, phase="Running"):
    annotations = {kubelet_sim.CPU_ANNOTATION: cpu} if cpu else {}
    return {"metadata": {"name": name, "namespace": "luffy", "uid": f"uid-{name}", "annotations": annotations},
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": phase, "startTime": "2026-11-28T18:00:00Z"}}


def test_usage_comes_from_annotations_with_kwok_defaults():
    assert kubelet_sim.usage_of(_pod("a")) == (Decimal("0.001"), Decimal(1024 * 1024))
    assert kubelet_sim.usage_of(_pod("a", "250m"))[0] == Decimal("0.25")
    assert kubelet_sim.usage_of(_pod("a", "not-a-quantity"))[0] == Decimal("0.001")


def test_cpu_counter_integrates_the_rate_and_metrics_server_reads_it_back():
    counters = kubelet_sim.Counters()
    start = kubelet_sim._epoch("2026-11-28T18:00:00Z")
    pods = [_pod("busy", "500m"), _pod("idle"), _pod("pending", phase="Pending")]
    first = metrics.parse_resource_metrics(kubelet_sim.render("k8s-slave1", pods, counters, now=start + 10))
    second = metrics.parse_resource_metrics(kubelet_sim.render("k8s-slave1", pods, counters, now=start + 20))
    cpu = lambda table, pod: table[(table.metric == "container_cpu_usage_seconds_total")  # noqa: E731
                                   & table.labels.str.contains(f'pod="{pod}"')]["value"].item()
    assert cpu(first, "busy") == pytest.approx(5.0)    # 0.5 cores for 10 s
    assert cpu(second, "busy") - cpu(first, "busy") == pytest.approx(5.0)
    assert cpu(second, "idle") - cpu(first, "idle") == pytest.approx(0.01)
    assert not second.labels.str.contains("pending").any()  # only Running Pods are reported
    node_memory = second[second.metric == "node_memory_working_set_bytes"]["value"].item()
    assert node_memory == float(kubelet_sim.NODE_BASE_MEMORY + 2 * 1024 * 1024)


def test_served_paths():
    assert kubelet_sim.PATH.match("/metrics/nodes/k8s-slave1/metrics/resource").group(1) == "k8s-slave1"
    assert not kubelet_sim.PATH.match("/metrics/resource")
    assert not kubelet_sim.PATH.match("/metrics/nodes/../etc/metrics/resource")


def test_registration_uses_an_external_name_service():
    service, apiservice = metrics._registration(24443)
    assert service["spec"] == {"type": "ExternalName", "externalName": "localhost",
                               "ports": [{"name": "https", "port": 24443, "protocol": "TCP"}]}
    assert apiservice["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert apiservice["spec"]["service"] == {"namespace": "kube-system", "name": "metrics-server", "port": 24443}


def test_simulate_load_rejects_a_bad_quantity_before_touching_the_api():
    with pytest.raises(ValueError):
        hpa.simulate_load(None, None, "kubebook-hpa", "app=web", cpu="lots")


class _Target:
    def __init__(self, lab=None):
        self.lab = lab


def test_simulated_load_and_its_wait_are_only_described_outside_a_lab():
    plan = _quiet_plan(confirm="kubebook-hpa")  # acting: still nothing runs, there is no lab to simulate on
    assert hpa.simulate_load(plan, _Target(), "kubebook-hpa", "app=web", cpu="250m") is None
    assert hpa.wait_scaled(plan, _Target(), "kubebook-hpa", "hpa-web", "web", 3) is None
    table = plan.table()
    assert table["status"].tolist() == ["planned", "planned"]
    assert "yourself" in table.loc[0, "what"] and "get hpa hpa-web -w" in table.loc[1, "command"]


def test_the_addon_scope_is_the_apiservice_on_a_lab_only():
    assert metrics.addon_scope(_Target(lab=object())) == ["apiservice/v1beta1.metrics.k8s.io"]
    assert metrics.addon_scope(_Target()) == []


# ---- diagnoses, from recorded objects --------------------------------------------------------------

def test_no_apiservice_or_an_unavailable_one_blocks_metrics_waits():
    assert "does not exist" in metrics.apiservice_blocked(None)
    unavailable = {"spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
                   "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints",
                                              "message": "endpoints for service/metrics-server not found"}]}}
    reason = metrics.apiservice_blocked(unavailable)
    assert "not Available (MissingEndpoints" in reason and "kube-system/metrics-server" in reason
    available = {"status": {"conditions": [{"type": "Available", "status": "True"}]}}
    assert metrics.apiservice_blocked(available) is None


def test_hpa_conditions_that_cannot_resolve_themselves():
    missing = {"status": {"conditions": [{"type": "ScalingActive", "status": "False",
                                          "reason": "FailedGetResourceMetric",
                                          "message": "failed to get cpu utilization: missing request for cpu"}]}}
    assert "give every container a request" in hpa.condition_blocked(missing)
    no_samples = {"status": {"conditions": [{"type": "ScalingActive", "status": "False",
                                             "reason": "FailedGetResourceMetric",
                                             "message": "unable to get metrics for resource cpu: no metrics returned"}]}}
    assert hpa.condition_blocked(no_samples) is None  # a new Pod without samples yet: it will come
    cannot_scale = {"status": {"conditions": [{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
                                               "message": "deployments/scale.apps \"web\" not found"}]}}
    assert "cannot scale its target (FailedGetScale" in hpa.condition_blocked(cannot_scale)
    assert hpa.condition_blocked(RECORDED_HPA) is None


def test_timeline_merges_the_hpa_decision_with_the_deployments_ready_count():
    import pandas as pd
    row = {k: v for k, v in hpa.summary(RECORDED_HPA).items()}
    decided = pd.DataFrame([{"seconds": 0.0, **row, "desired": 1}, {"seconds": 15.0, **row, "desired": 3}])
    ready = pd.DataFrame([{"seconds": 15.1, "ready": 1}, {"seconds": 15.3, "ready": 2}, {"seconds": 15.4, "ready": 3}])
    merged = hpa.merge_timeline(decided, ready, ready_before=1)
    assert merged[["seconds", "desired", "ready"]].values.tolist() == [[0.0, 1, 1], [15.0, 3, 1], [15.3, 3, 2],
                                                                       [15.4, 3, 3]]


def test_metrics_reader_role_is_namespaced_and_bound_to_the_service_account():
    role, binding = metrics.reader_objects("kubebook-metrics", "luffy-pods-admin")
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "kubebook-metrics")
    assert {g for r in role["rules"] for g in r["apiGroups"]} == {"", "metrics.k8s.io"}
    assert binding["subjects"][0]["kind"] == "ServiceAccount"
    assert (binding["subjects"][0]["name"], binding["subjects"][0]["namespace"]) == ("luffy-pods-admin",
                                                                                      "kubebook-metrics")
