"""kubebook.storage against the lab's real PV controller: our binding verdicts agree with it, the PV
phases of the Retain round trip, dynamic provisioning with a default class, the move of a volume
onto a claim, and the waits that say within seconds why a claim cannot be bound. Each test removes
its PVs, claims, classes and namespace (through its plan's clean-up where it acts through one)."""
from __future__ import annotations

import itertools
import os

import pytest
from kubernetes import client

from kubebook import ownership
from kubebook.objects import Ref, objects
from kubebook.plan import Plan
from kubebook.scheduling import workloads
from kubebook.storage import binding, migrate, provisioning, volumes
from kubebook.waits import WaitBlocked, wait_for

pytestmark = pytest.mark.lab

NS = "storage-test"
DIAGNOSIS_DEADLINE = 10  # a diagnosis must come before this: a wait that runs into it fails with WaitTimeout
_runs = itertools.count()


@pytest.fixture(autouse=True)
def run_id(monkeypatch):
    """Each test is its own run: its own record, so its clean-up touches only what it made."""
    run = f"pytest-storage-{os.getpid()}-{next(_runs)}"
    monkeypatch.setenv(ownership.RUN_ID_ENV, run)
    return run


@pytest.fixture(scope="module")
def namespace(api):
    """One namespace for the module (deleting one takes seconds); each test removes what it made in it."""
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    wait_for(api, "serviceaccounts", lambda s: "default" in s, namespace=NS, timeout=60, what="default SA")
    yield NS
    client.CoreV1Api(api).delete_namespace(NS)
    wait_for(api, "namespaces", lambda ns: NS not in ns, timeout=120, what=f"namespace {NS} gone")


def _plan(api, *scopes):
    return Plan(target=NS, kind="namespace", also=list(scopes), confirm=", ".join([NS, *scopes]), cluster=api,
                log=lambda _: None)


def _create(api, body, namespace=""):
    """Test fixtures made with the plain client (what someone else made: not a kubebook run's)."""
    objects(api).create(body, namespace)


def _remove_volumes(api, names):
    core = client.CoreV1Api(api)
    for name in names:
        try:
            core.delete_persistent_volume(name)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
    wait_for(api, "persistentvolumes", lambda pvs: not set(names) & set(pvs), timeout=60, what="test PVs gone")


def _remove_claims(api, namespace):
    client.CoreV1Api(api).delete_collection_namespaced_persistent_volume_claim(namespace)
    wait_for(api, "persistentvolumeclaims", lambda c: not c, namespace=namespace, timeout=60, what="test claims gone")


def pv(name, size="1Gi", modes=("ReadWriteMany",), **kwargs):
    return volumes.persistent_volume(name, size, list(modes), host_path=f"/tmp/kubebook-storage-test/{name}",
                                     **kwargs)


def _refused(api, namespace, name, timeout=60):
    """Wait until the PV controller recorded why it did not bind the claim; returns the claim."""
    wait_for(api, "events", lambda ev: any(e.get("reason") in ("FailedBinding", "VolumeMismatch")
                                           for e in ev.values()),
             namespace=namespace, field_selector=f"involvedObject.name={name}", timeout=timeout,
             what=f"the PV controller's refusal of {namespace}/{name}")
    return volumes.get_claim(api, namespace, name)


SEL = {"matchLabels": {"app": "mysql"}}
LABELS = {"app": "mysql"}

# name, PVs, claim spec, the PV our rules must pick (None: stays Pending)
SCENARIOS = [
    ("none-fits", [pv("s-small", "100Mi", labels=LABELS), pv("s-rwo", modes=["ReadWriteOnce"], labels=LABELS),
                   pv("s-class", storage_class="slow", labels=LABELS), pv("s-label", labels={"app": "redis"}),
                   pv("s-block", volume_mode="Block", labels=LABELS),
                   pv("s-reserved", claim_ref=(NS, "someone-else"), labels=LABELS)],
     dict(selector=SEL), None),
    ("one-fits", [pv("s-small", "100Mi", labels=LABELS), pv("s-class", storage_class="slow", labels=LABELS),
                  pv("s-fits", "2Gi", labels=LABELS)],
     dict(selector=SEL), "s-fits"),
    ("smallest-wins", [pv("s-big", "5Gi"), pv("s-medium", "2Gi"), pv("s-small", "100Mi")], {}, "s-medium"),
    ("fewest-modes-first", [pv("s-both", "1Gi", ["ReadWriteMany", "ReadWriteOnce"]), pv("s-rwx", "3Gi")], {},
     "s-rwx"),
    ("prebound-over-class", [pv("s-plain", "1Gi"), pv("s-reserved", "2Gi", storage_class="slow",
                                                       claim_ref=(NS, "data"))], {}, "s-reserved"),
    ("volume-name-ignores-selector", [pv("s-fits", labels=LABELS), pv("s-named", "2Gi", labels={"app": "x"})],
     dict(selector=SEL, volume_name="s-named"), "s-named"),
    ("volume-name-too-small", [pv("s-fits"), pv("s-named", "100Mi")], dict(volume_name="s-named"), None),
]


@pytest.mark.parametrize("name, pvs, claim_spec, expected", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_verdict_agrees_with_the_pv_controller(api, namespace, name, pvs, claim_spec, expected):
    names = [p["metadata"]["name"] for p in pvs]
    try:
        for body in pvs:
            _create(api, body)
        for n in names:
            volumes.wait_volume_phase(api, n, "Available", timeout=60)
        live = [volumes.get_volume(api, n) for n in names]
        sent = volumes.claim("data", "1Gi", ["ReadWriteMany"], **claim_spec)
        # what we predict from the PVs and the claim as sent, before the controller sees the claim
        predicted = binding.best_match({**sent, "metadata": {**sent["metadata"], "namespace": namespace}}, live)
        assert predicted == expected
        _create(api, sent, namespace)
        if expected is None:
            claim = _refused(api, namespace, "data")  # a claim the controller bound instead times out here
            assert claim["status"]["phase"] == "Pending"
            why = binding.why_pending(api, namespace, "data")
            assert not why.table["fits"].any() and why.expected is None
            assert why.events["reason"].isin(["FailedBinding", "VolumeMismatch"]).any()
        else:
            claim = volumes.claim_bound(api, namespace, "data", timeout=60)
            assert claim["spec"]["volumeName"] == expected
    finally:
        _remove_claims(api, namespace)
        _remove_volumes(api, names)


def test_retain_round_trip_phases(api, namespace):
    plan = _plan(api, "persistentvolume/s-retain")
    try:
        volumes.apply_volume(plan, pv("s-retain"))
        log = volumes.PhaseLog(plan, "s-retain")
        log.wait("Available")
        volumes.apply_claim(plan, namespace, volumes.claim("data", "1Gi", ["ReadWriteMany"]))
        log.wait("Bound", claim=(namespace, "data"))
        with pytest.raises(Exception, match="Bound, not Released"):
            volumes.make_available(plan, "s-retain")
        workloads.apply_deployment(plan, namespace, volumes.deployment_with_claim("web", "data"))
        workloads.settle(plan, namespace, "web")
        paths = volumes.live_pod_volume_paths(api, namespace, "app=web")
        pod_uid = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items[0].metadata.uid
        assert any(pod_uid in p for p in paths["path on the node"])  # the projected token volume
        assert "/tmp/kubebook-storage-test/s-retain" in " ".join(paths["path on the node"])
        volumes.remove_users(plan, namespace, "web")
        volumes.delete_claim(plan, namespace, "data")
        log.wait("Released")
        volumes.make_available(plan, "s-retain")
        log.wait("Available")
        assert volumes.make_available(plan, "s-retain") == "unchanged"
        assert list(log.table()["phase"]) == ["Available", "Bound", "Released", "Available"]
    finally:
        plan.cleanup()
    assert volumes.get_volume(api, "s-retain") is None  # this run made it: the clean-up deleted it


def test_a_claim_that_existed_is_never_deleted(api, namespace):
    _create(api, volumes.claim("theirs", "1Gi", ["ReadWriteMany"]), namespace)
    plan = _plan(api)
    try:
        assert volumes.delete_claim(plan, namespace, "theirs") == "kept (existed before this run)"
        assert volumes.get_claim(api, namespace, "theirs") is not None
    finally:
        _remove_claims(api, namespace)


def test_default_class_provisions_and_delete_reclaims(api, namespace):
    before = provisioning.default_state(api)
    plan = _plan(api, "storageclass/s-hostpath")
    try:
        sc = provisioning.storage_class("s-hostpath", provisioning.HOSTPATH_PROVISIONER, default=True)
        assert provisioning.apply_storage_class(plan, sc) == "created"
        sent = provisioning.claim_for_class("auto", "1Mi", ["ReadWriteOnce"], "s-hostpath")
        volumes.apply_claim(plan, namespace, sent)
        admitted = provisioning.admitted_class(plan, namespace, sent)
        assert admitted["stored"][0] == "'s-hostpath'"  # DefaultStorageClass admission filled it in
        name = provisioning.wait_provisioned(plan, namespace, "auto")
        directory = provisioning.volume_directory(api, name)
        assert directory["directory"][0].startswith(provisioning.HOSTPATH_ROOT + "/")
        assert bool(directory["directory exists here"][0])
        assert volumes.get_volume(api, name)["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        volumes.delete_claim(plan, namespace, "auto")
        provisioning.wait_reclaimed(plan, name)
        assert not bool(provisioning.directory_now(directory)["exists here"][0])
        # a claim that says "" is not given the default class
        none = volumes.claim("none", "1Mi", ["ReadWriteOnce"])
        volumes.apply_claim(plan, namespace, none)
        assert provisioning.admitted_class(plan, namespace, none)["stored"][0] == "''"
    finally:
        plan.cleanup()
    assert provisioning.default_state(api) == before


def test_a_class_that_existed_is_kept_and_its_default_annotation_put_back(api, namespace):
    _create(api, provisioning.storage_class("s-theirs", provisioning.HOSTPATH_PROVISIONER))
    plan = _plan(api, "storageclass/s-theirs")
    try:
        provisioning.apply_storage_class(plan, provisioning.storage_class("s-theirs", provisioning.HOSTPATH_PROVISIONER,
                                                                          default=True))
        assert provisioning.default_state(api)["s-theirs"] == "true"
        with pytest.raises(Exception, match="exists with provisioner kubernetes.io/host-path"):
            provisioning.apply_storage_class(plan, provisioning.storage_class("s-theirs", "example.com/other"))
        provisioning.delete_storage_class(plan, "s-theirs")  # not this run's: kept
        plan.cleanup()
        assert provisioning.default_state(api)["s-theirs"] is None  # as it was
    finally:
        client.StorageV1Api(api).delete_storage_class("s-theirs")


def test_making_a_class_default_is_refused_while_claims_without_a_class_wait(api, namespace):
    unset = volumes.claim("waiting", "1Mi", ["ReadWriteOnce"], storage_class=None)
    _create(api, unset, namespace)
    plan = _plan(api, "storageclass/s-default")
    try:
        with pytest.raises(Exception, match=f"unbound claims without a class .*{namespace}/waiting"):
            provisioning.apply_storage_class(plan, provisioning.storage_class(
                "s-default", provisioning.HOSTPATH_PROVISIONER, default=True))
        assert plan.table().empty and objects(api).get(Ref("StorageClass", "s-default")) is None
    finally:
        _remove_claims(api, namespace)


def test_swap_volume_to_claim_only_when_scaled_down(api, namespace):
    plan = _plan(api, f"persistentvolume/{migrate.static_volume_name(namespace, 'mysql')}")
    try:
        migrate.prepare_claim(plan, namespace, "mysql", "1Gi", pv_host_path="/tmp/kubebook-storage-test/mysql")
        migrate.ensure_deployment(plan, namespace, "mysql")
        with pytest.raises(Exception, match="scale .* to 0 first"):
            migrate.swap_volume_to_claim(plan, namespace, "mysql", "mysql-data", "mysql")
        with pytest.raises(Exception, match="has no volume 'nope'"):
            migrate.swap_volume_to_claim(plan, namespace, "mysql", "nope", "mysql")
        migrate.move_onto_claim(plan, namespace, "mysql", "mysql-data", "mysql")
        assert migrate.swap_volume_to_claim(plan, namespace, "mysql", "mysql-data", "mysql") == "unchanged"
        sources = migrate.volume_sources(api, namespace, "mysql")
        assert list(sources["type"]) == ["persistentVolumeClaim"]
        paths = volumes.live_pod_volume_paths(api, namespace, "app=mysql")
        assert f"claim mysql → PV {migrate.static_volume_name(namespace, 'mysql')}" in set(paths["detail"])
        migrate.stop_writers(plan, namespace, "mysql")
    finally:
        plan.cleanup()


# ---- diagnoses: each within seconds, long before the wait's deadline ---------------------------------------

def test_a_binder_rule_that_blocks_the_claim_is_diagnosed(api, namespace):
    try:
        _create(api, pv("s-rwo", modes=["ReadWriteOnce"]))
        volumes.wait_volume_phase(api, "s-rwo", "Available", timeout=60)
        _create(api, volumes.claim("data", "1Gi", ["ReadWriteMany"]), namespace)
        with pytest.raises(WaitBlocked, match=r"no PV fits \(s-rwo: accessModes lacks ReadWriteMany\).*asks for "
                                             "no class"):
            volumes.claim_bound(api, namespace, "data", timeout=DIAGNOSIS_DEADLINE)
    finally:
        _remove_claims(api, namespace)
        _remove_volumes(api, ["s-rwo"])


def test_no_default_class_is_diagnosed(api, namespace):
    assert not any(provisioning.default_state(api).values())  # the lab has no default class
    try:
        _create(api, volumes.claim("data", "1Mi", ["ReadWriteOnce"], storage_class=None), namespace)
        with pytest.raises(WaitBlocked, match="names no StorageClass and the cluster has no default class"):
            volumes.claim_bound(api, namespace, "data", timeout=DIAGNOSIS_DEADLINE)
    finally:
        _remove_claims(api, namespace)


def test_no_provisioner_for_the_class_is_diagnosed(api, namespace):
    _create(api, provisioning.storage_class("s-nobody", "example.com/nobody"))
    try:
        _create(api, volumes.claim("data", "1Mi", ["ReadWriteOnce"], storage_class="s-nobody"), namespace)
        with pytest.raises(WaitBlocked, match="no provisioner answers for class s-nobody.*'example.com/nobody'"):
            provisioning.provisioned_volume(api, namespace, "data", timeout=DIAGNOSIS_DEADLINE)
    finally:
        _remove_claims(api, namespace)
        client.StorageV1Api(api).delete_storage_class("s-nobody")


def test_a_class_without_provisioner_is_diagnosed(api, namespace):
    _create(api, provisioning.storage_class("s-local", binding.NO_PROVISIONER))
    try:
        _create(api, volumes.claim("data", "1Mi", ["ReadWriteOnce"], storage_class="s-local"), namespace)
        with pytest.raises(WaitBlocked, match="class s-local has no provisioner"):
            volumes.claim_bound(api, namespace, "data", timeout=DIAGNOSIS_DEADLINE)
    finally:
        _remove_claims(api, namespace)
        client.StorageV1Api(api).delete_storage_class("s-local")
