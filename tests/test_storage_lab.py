"""kubebook.storage against the lab's real PV controller: our binding verdicts agree with it, the PV
phases of the Retain round trip, dynamic provisioning with a default class. Each test removes its
PVs, claims, classes and namespace."""
from __future__ import annotations

import stat

import pytest
import yaml
from kubernetes import client

from kubebook.plan import Plan
from kubebook.scheduling import workloads
from kubebook.storage import binding, provisioning, volumes
from kubebook.waits import wait_for

pytestmark = pytest.mark.lab

NS = "storage-test"


@pytest.fixture
def namespace(api):
    workloads.ensure_namespace(api, NS)
    yield NS
    workloads.delete_namespace(api, NS)


def _remove_volumes(api, names):
    core = client.CoreV1Api(api)
    for name in names:
        try:
            core.delete_persistent_volume(name)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
    wait_for(api, "persistentvolumes", lambda pvs: not set(names) & set(pvs), timeout=60, what="test PVs gone")


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
            volumes.apply_volume(api, body)
        for n in names:
            volumes.wait_volume_phase(api, n, "Available", timeout=60)
        live = [volumes.get_volume(api, n) for n in names]
        sent = volumes.claim("data", "1Gi", ["ReadWriteMany"], **claim_spec)
        # what we predict from the PVs and the claim as sent, before the controller sees the claim
        predicted = binding.best_match({**sent, "metadata": {**sent["metadata"], "namespace": namespace}}, live)
        assert predicted == expected
        volumes.apply_claim(api, namespace, sent)
        if expected is None:
            claim = _refused(api, namespace, "data")  # a claim the controller bound instead times out here
            assert claim["status"]["phase"] == "Pending"
            why = binding.why_pending(api, namespace, "data")
            assert not why.table["fits"].any() and why.expected is None
            assert why.events["reason"].isin(["FailedBinding", "VolumeMismatch"]).any()
        else:
            claim = volumes.wait_claim_phase(api, namespace, "data", "Bound", timeout=60)
            assert claim["spec"]["volumeName"] == expected
    finally:
        client.CoreV1Api(api).delete_collection_namespaced_persistent_volume_claim(namespace)
        wait_for(api, "persistentvolumeclaims", lambda c: not c, namespace=namespace, timeout=60,
                 what="test claims gone")
        _remove_volumes(api, names)


def test_retain_round_trip_phases_and_backups(api, namespace, tmp_path):
    plan = Plan(target="s-retain", confirm="s-retain", kind="PersistentVolume", log=lambda m: None)
    try:
        volumes.apply_volume(api, pv("s-retain"), plan=plan)
        assert volumes.apply_volume(api, pv("s-retain")) == "exists"  # re-running keeps it
        log = volumes.PhaseLog(api, "s-retain")
        log.wait("Available")
        volumes.apply_claim(api, namespace, volumes.claim("data", "1Gi", ["ReadWriteMany"]), plan=plan)
        log.wait("Bound")
        with pytest.raises(Exception, match="Bound, not Released"):
            volumes.make_available(api, "s-retain")
        workloads.apply_deployment(api, namespace, volumes.deployment_with_claim("web", "data"), plan=plan)
        workloads.settle(api, namespace, "web")
        paths = volumes.live_pod_volume_paths(api, namespace, "app=web")
        pod_uid = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items[0].metadata.uid
        assert any(pod_uid in p for p in paths["path on the node"])  # the projected token volume
        assert "/tmp/kubebook-storage-test/s-retain" in " ".join(paths["path on the node"])
        workloads.delete_deployment(api, namespace, "web", plan=plan)
        detail = volumes.delete_claim(api, namespace, "data", backup_dir=tmp_path, plan=plan)
        log.wait("Released")
        with pytest.raises(Exception, match="not found"):
            volumes.make_available(api, "nonexistent-pv")
        volumes.make_available(api, "s-retain", plan=plan)
        log.wait("Available")
        assert volumes.make_available(api, "s-retain") == "already Available"
        assert list(log.table()["phase"]) == ["Available", "Bound", "Released", "Available"]
        saved = sorted(tmp_path.iterdir())
        assert {p.name.split("-")[0] for p in saved} == {"persistentvolumeclaim", "persistentvolume"}
        assert all(str(p) in detail for p in saved)
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in saved)
        claim_backup = yaml.safe_load(next(p for p in saved if p.name.startswith("persistentvolumeclaim-")).read_text())
        assert claim_backup["spec"]["volumeName"] == "s-retain" and "uid" not in claim_backup["metadata"]
    finally:
        _remove_volumes(api, ["s-retain"])


def test_default_class_provisions_and_delete_reclaims(api, namespace, tmp_path):
    before = provisioning.default_state(api)
    plan = Plan(target="s-hostpath", confirm="s-hostpath", kind="StorageClass", log=lambda m: None)
    try:
        sc = provisioning.storage_class("s-hostpath", provisioning.HOSTPATH_PROVISIONER, default=True)
        assert provisioning.apply_storage_class(api, sc, plan=plan) == "created"
        assert provisioning.apply_storage_class(api, sc) == "exists"
        sent = volumes.claim("auto", "1Mi", ["ReadWriteOnce"], storage_class=None)
        volumes.apply_claim(api, namespace, sent)
        admitted = provisioning.admitted_class(api, namespace, sent)
        assert admitted["stored"][0] == "'s-hostpath'"  # DefaultStorageClass admission filled it in
        name = provisioning.wait_provisioned(api, namespace, "auto")
        directory = provisioning.volume_directory(api, name)
        assert directory["directory"][0].startswith(provisioning.HOSTPATH_ROOT + "/")
        assert bool(directory["directory exists here"][0])
        assert volumes.get_volume(api, name)["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        volumes.delete_claim(api, namespace, "auto", backup_dir=tmp_path)
        provisioning.wait_volume_gone(api, name)
        assert not bool(provisioning.directory_exists(directory["directory"][0])["exists here"][0])
        # a claim that says "" is not given the default class
        volumes.apply_claim(api, namespace, volumes.claim("none", "1Mi", ["ReadWriteOnce"]))
        assert provisioning.admitted_class(api, namespace, volumes.claim("none", "1Mi", ["ReadWriteOnce"]))[
            "stored"][0] == "''"
    finally:
        provisioning.delete_storage_class(api, "s-hostpath")
        provisioning.restore_default_state(api, before)
    assert provisioning.default_state(api) == before


def test_swap_volume_to_claim_only_when_scaled_down(api, namespace, tmp_path):
    from kubebook.storage import migrate
    names = ["s-mysql"]
    try:
        volumes.apply_volume(api, pv("s-mysql", modes=["ReadWriteOnce"], claim_ref=(namespace, "mysql")))
        volumes.wait_available(api, "s-mysql")
        volumes.apply_claim(api, namespace, volumes.claim("mysql", "1Gi", ["ReadWriteOnce"], volume_name="s-mysql"))
        assert volumes.wait_bound(api, namespace, "mysql").endswith("s-mysql")
        workloads.apply_deployment(api, namespace, migrate.mysql_deployment("mysql", host_path="/tmp/kb-mysql"))
        workloads.settle(api, namespace, "mysql")
        with pytest.raises(Exception, match="scale .* to 0 first"):
            migrate.swap_volume_to_claim(api, namespace, "mysql", "mysql-data", "mysql", backup_dir=tmp_path)
        with pytest.raises(Exception, match="has no volume 'nope'"):
            migrate.swap_volume_to_claim(api, namespace, "mysql", "nope", "mysql", backup_dir=tmp_path)
        workloads.scale(api, namespace, "mysql", 0)
        migrate.wait_scaled_down(api, namespace, "mysql")
        detail = migrate.swap_volume_to_claim(api, namespace, "mysql", "mysql-data", "mysql", backup_dir=tmp_path)
        assert "backup" in detail and len(list(tmp_path.iterdir())) == 1
        assert migrate.swap_volume_to_claim(api, namespace, "mysql", "mysql-data", "mysql",
                                            backup_dir=tmp_path) == "already uses the claim"
        sources = migrate.volume_sources(api, namespace, "mysql")
        assert list(sources["type"]) == ["persistentVolumeClaim"]
        workloads.scale(api, namespace, "mysql", 1)
        assert workloads.settle(api, namespace, "mysql").endswith("1 of 1 Pods bound, 0 unschedulable")
        paths = volumes.live_pod_volume_paths(api, namespace, "app=mysql")
        assert "claim mysql → PV s-mysql" in set(paths["detail"])
    finally:
        workloads.delete_deployment(api, namespace, "mysql")
        client.CoreV1Api(api).delete_collection_namespaced_persistent_volume_claim(namespace)
        wait_for(api, "persistentvolumeclaims", lambda c: not c, namespace=namespace, timeout=60,
                 what="test claims gone")
        _remove_volumes(api, names)
