"""Unit tests for kubebook.storage on constructed objects: each binder rule, the pick among fits,
object builders, backups, kubelet volume paths. The lab tests hold the rules against the real PV controller."""
from __future__ import annotations

import copy

import pytest

from kubebook.errors import KubebookError
from kubebook.storage import binding, provisioning, volumes


def pv(name="pv1", size="1Gi", modes=("ReadWriteMany",), *, cls="", labels=None, phase="Available",
       claim_ref=None, mode=None, deleting=False):
    body = volumes.persistent_volume(name, size, list(modes), host_path=f"/tmp/{name}", storage_class=cls,
                                     labels=labels)
    if mode is None:
        body["spec"].pop("volumeMode")
    else:
        body["spec"]["volumeMode"] = mode
    if claim_ref:
        body["spec"]["claimRef"] = claim_ref
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["status"] = {"phase": phase}
    return body


def pvc(name="data", size="1Gi", modes=("ReadWriteMany",), *, cls="", selector=None, volume_name="", uid="u-1",
        namespace="ns"):
    body = volumes.claim(name, size, list(modes), storage_class=cls, selector=selector, volume_name=volume_name)
    body["metadata"].update(namespace=namespace, uid=uid)
    return body


def failing(cells: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in cells.items() if v != binding.OK and not v.startswith("not checked")}


# ---- one rule at a time -----------------------------------------------------------------------------

def test_everything_matching_fits():
    cells = binding.check_volume(pv(), pvc())
    assert failing(cells) == {} and binding.fits(cells)


def test_storage_class_must_be_equal():
    assert set(failing(binding.check_volume(pv(cls="slow"), pvc()))) == {"storageClassName"}
    assert set(failing(binding.check_volume(pv(), pvc(cls="fast")))) == {"storageClassName"}
    assert failing(binding.check_volume(pv(cls="fast"), pvc(cls="fast"))) == {}


def test_beta_annotation_wins_over_the_field():
    claim = pvc(cls="fast")
    claim["metadata"]["annotations"] = {binding.BETA_CLASS_ANNOTATION: "slow"}
    assert binding.claim_class(claim) == "slow"
    assert failing(binding.check_volume(pv(cls="slow"), claim)) == {}


def test_capacity_compares_bytes_across_suffixes():
    assert failing(binding.check_volume(pv(size="1024Mi"), pvc(size="1Gi"))) == {}
    cells = binding.check_volume(pv(size="1000Mi"), pvc(size="1Gi"))
    assert set(failing(cells)) == {"capacity"} and "1000Mi < requested 1Gi" in cells["capacity"]
    assert failing(binding.check_volume(pv(size="2G"), pvc(size="1Gi"))) == {}


def test_access_modes_must_include_every_requested_one():
    cells = binding.check_volume(pv(modes=["ReadWriteOnce"]), pvc(modes=["ReadWriteMany"]))
    assert failing(cells) == {"accessModes": "lacks ReadWriteMany"}
    assert failing(binding.check_volume(pv(modes=["ReadWriteOnce", "ReadWriteMany"]),
                                        pvc(modes=["ReadWriteOnce"]))) == {}
    assert set(failing(binding.check_volume(pv(modes=["ReadWriteMany"]),
                                            pvc(modes=["ReadWriteMany", "ReadOnlyMany"])))) == {"accessModes"}


def test_volume_mode_unset_means_filesystem():
    claim = pvc()
    claim["spec"].pop("volumeMode")
    assert failing(binding.check_volume(pv(mode=None), claim)) == {}
    assert failing(binding.check_volume(pv(mode="Filesystem"), claim)) == {}
    assert set(failing(binding.check_volume(pv(mode="Block"), claim))) == {"volumeMode"}


def test_label_selector():
    sel = {"matchLabels": {"app": "mysql"}}
    assert failing(binding.check_volume(pv(labels={"app": "mysql", "x": "y"}), pvc(selector=sel))) == {}
    assert set(failing(binding.check_volume(pv(labels={"app": "redis"}), pvc(selector=sel)))) == {"selector"}
    assert set(failing(binding.check_volume(pv(), pvc(selector=sel)))) == {"selector"}
    expr = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]}]}
    assert failing(binding.check_volume(pv(labels={"tier": "db"}), pvc(selector=expr))) == {}
    assert failing(binding.check_volume(pv(), pvc(selector={}))) == {}  # {} selects every PV


def test_phase_must_be_available():
    cells = binding.check_volume(pv(phase="Bound", claim_ref={"namespace": "o", "name": "c", "uid": "x"}), pvc())
    assert set(failing(cells)) == {"phase", "claimRef/volumeName"}
    assert set(failing(binding.check_volume(pv(phase="Pending"), pvc()))) == {"phase"}
    assert failing(binding.check_volume(pv(deleting=True), pvc())) == {"phase": "being deleted"}


def test_released_volume_keeps_the_old_claims_uid():
    old = {"namespace": "ns", "name": "data", "uid": "u-old"}
    cells = binding.check_volume(pv(phase="Released", claim_ref=old), pvc(uid="u-new"))
    assert set(failing(cells)) == {"claimRef/volumeName", "phase"}
    assert "older claim" in cells["claimRef/volumeName"]


def test_prebound_volume_skips_class_selector_and_phase_not_capacity():
    ref = {"namespace": "ns", "name": "data"}
    claim = pvc(selector={"matchLabels": {"app": "mysql"}})
    cells = binding.check_volume(pv(cls="slow", phase="Available", claim_ref=ref), claim)
    assert failing(cells) == {} and cells["storageClassName"].startswith("not checked")
    assert set(failing(binding.check_volume(pv(size="1Mi", claim_ref=ref), claim))) == {"capacity"}
    assert set(failing(binding.check_volume(pv(claim_ref={**ref, "name": "other"}), pvc()))) == \
        {"claimRef/volumeName"}


def test_volume_name_skips_selector_and_phase_not_class():
    claim = pvc(volume_name="pv1", selector={"matchLabels": {"app": "mysql"}})
    assert failing(binding.check_volume(pv("pv1", phase="Pending"), claim)) == {}
    assert set(failing(binding.check_volume(pv("pv1", cls="slow"), claim))) == {"storageClassName"}
    assert set(failing(binding.check_volume(pv("pv2"), claim))) == {"claimRef/volumeName", "selector"}


def test_claim_without_a_request_is_refused():
    claim = pvc()
    claim["spec"]["resources"] = {}
    with pytest.raises(KubebookError, match="requests no storage"):
        binding.check_volume(pv(), claim)


# ---- the pick among fits --------------------------------------------------------------------------------

def test_smallest_fit_wins():
    assert binding.best_match(pvc(), [pv("big", "5Gi"), pv("small", "2Gi"), pv("tiny", "1Mi")]) == "small"


def test_fewest_access_modes_are_tried_first():
    both = pv("both", "1Gi", ["ReadWriteMany", "ReadWriteOnce"])
    only = pv("only", "3Gi", ["ReadWriteMany"])
    assert binding.best_match(pvc(), [both, only]) == "only"


def test_prebound_wins_over_smaller():
    ref = {"namespace": "ns", "name": "data"}
    assert binding.best_match(pvc(), [pv("small", "1Gi"), pv("reserved", "9Gi", claim_ref=ref)]) == "reserved"


def test_nothing_fits_gives_none_and_says_why():
    volumes_ = [pv("a", "1Mi"), pv("b", cls="slow")]
    assert binding.best_match(pvc(), volumes_) is None
    assert "no class" in binding.verdict(pvc(), volumes_)
    assert "does not exist" in binding.verdict(pvc(cls="fast"), volumes_)
    wffc = {"metadata": {"name": "fast"}, "provisioner": "x", "volumeBindingMode": "WaitForFirstConsumer"}
    assert "waits for a Pod" in binding.verdict(pvc(cls="fast"), volumes_, [wffc])
    assert "asks x" in binding.verdict(pvc(cls="fast"), volumes_, [{**wffc, "volumeBindingMode": "Immediate"}])
    assert binding.verdict(pvc(volume_name="zz"), volumes_) == "waits for PV zz: it does not exist"


def test_table_has_a_row_per_volume_and_a_column_per_check():
    table = binding.explain(pvc(), [pv("b", "1Mi"), pv("a")])
    assert list(table["pv"]) == ["a", "b"] and list(table["fits"]) == [True, False]
    assert list(table.columns) == ["pv", "fits", *binding.CHECKS]


def test_each_demo_volume_breaks_exactly_one_rule():
    claim = binding.demo_claim("mysql-data")
    claim["metadata"].update(namespace="kubebook-storage", uid="u")
    broken = binding.demo_volumes("kubebook-storage", "mysql-data")
    for body in broken:
        body = {**body, "status": {"phase": "Available"}}
        assert len(failing(binding.check_volume(body, claim))) == 1, body["metadata"]["name"]
    fitting = {**binding.fitting_volume("kubebook-storage", "mysql-data"), "status": {"phase": "Available"}}
    assert binding.best_match(claim, [fitting]) == "kubebook-mysql-data-fits"
    # the plan's scope names every one of them: PVs are cluster-scoped
    assert binding.demo_scope("mysql-data") == [f"persistentvolume/{p['metadata']['name']}" for p in [*broken, fitting]]


def test_demo_claims_select_only_their_own_volumes():
    someone_elses = {**pv("course-pv", labels={"app": "mysql"}), "status": {"phase": "Available"}}
    claim = {**binding.demo_claim("mysql-data"), "metadata": {"name": "mysql-data", "namespace": "ns"}}
    assert failing(binding.check_volume(someone_elses, claim)) == {"selector": "labels {'app': 'mysql'} not selected"}
    ours = volumes.demo_volume("kubebook-nfs-pv", "1Gi", ["ReadWriteMany"], host_path="/tmp/x")
    for_ours = {**volumes.claim_for(ours, "pvc-nfs", "1Gi"), "metadata": {"name": "pvc-nfs", "namespace": "ns"}}
    assert binding.best_match(for_ours, [{**ours, "status": {"phase": "Available"}}, someone_elses]) == "kubebook-nfs-pv"
    assert volumes.demo_volume("x", "1Gi", ["ReadWriteMany"], host_path="/tmp/x", nfs_server="127.0.0.1",
                               nfs_path="/d")["spec"]["nfs"] == {"server": "127.0.0.1", "path": "/d"}


# ---- why a wait for Bound cannot succeed (the diagnosis) -------------------------------------------------

def sc(name, provisioner="kubernetes.io/host-path", *, default=False, mode="Immediate"):
    body = provisioning.storage_class(name, provisioner, default=default, binding_mode=mode)
    return body


def event(reason, source="persistentvolume-controller", message=""):
    return {"reason": reason, "source": source, "message": message}


def test_a_fitting_volume_means_not_blocked():
    assert binding.blocked_reason(pvc(), [pv()], []) is None


def test_a_new_volume_not_yet_available_means_not_blocked():
    assert binding.blocked_reason(pvc(), [pv(phase="Pending")], []) is None
    assert binding.blocked_reason(pvc(), [pv(phase="Released")], []) is not None


def test_no_class_no_fit_names_the_failing_rules():
    reason = binding.blocked_reason(pvc(), [pv("rwo", modes=["ReadWriteOnce"]), pv("small", "1Mi")], [])
    assert "rwo: accessModes lacks ReadWriteMany" in reason and "small: capacity 1Mi < requested 1Gi" in reason
    assert 'asks for no class (storageClassName "")' in reason
    assert "there is no PV at all" in binding.blocked_reason(pvc(), [], [])


def test_an_unset_class_waits_for_a_default_class_only_when_there_is_one():
    unset = pvc()
    del unset["spec"]["storageClassName"]
    assert "no default class" in binding.blocked_reason(unset, [], [sc("slow")])
    assert binding.blocked_reason(unset, [], [sc("slow", default=True)]) is None


def test_a_class_that_cannot_provision():
    assert "'fast' does not exist" in binding.blocked_reason(pvc(cls="fast"), [], [])
    assert "has no provisioner" in binding.blocked_reason(pvc(cls="local"), [], [sc("local", binding.NO_PROVISIONER)])
    assert binding.blocked_reason(pvc(cls="hp"), [], [sc("hp")]) is None  # in-tree: kube-controller-manager works on it
    failed = [event("ProvisioningFailed", message="no volume plugin matched")]
    assert "failed for class hp: no volume plugin matched" in binding.blocked_reason(pvc(cls="hp"), [], [sc("hp")], failed)


def test_an_external_provisioner_that_never_answers():
    classes = [sc("nfs", "luffy.com/nfs")]
    handed = [event("ExternalProvisioning", message="Waiting for a volume to be created by 'luffy.com/nfs'")]
    reason = binding.blocked_reason(pvc(cls="nfs"), [], classes, handed, waited=5.0)
    assert "no provisioner answers for class nfs" in reason and "PROVISIONER_NAME luffy.com/nfs" in reason
    assert binding.blocked_reason(pvc(cls="nfs"), [], classes, handed, waited=1.0) is None  # give it a moment
    answered = handed + [event("Provisioning", source="luffy.com/nfs_nfs-client-provisioner-abc")]
    assert binding.blocked_reason(pvc(cls="nfs"), [], classes, answered, waited=60.0) is None


def test_wait_for_first_consumer_needs_a_pod():
    classes = [sc("late", "luffy.com/nfs", mode="WaitForFirstConsumer")]
    assert "no Pod does" in binding.blocked_reason(pvc(cls="late"), [], classes, pods_using=0)
    assert binding.blocked_reason(pvc(cls="late"), [], classes, pods_using=1) is None


def test_a_claim_naming_a_volume():
    assert "which does not exist" in binding.blocked_reason(pvc(volume_name="gone"), [], [])
    reason = binding.blocked_reason(pvc(volume_name="small"), [pv("small", "1Mi")], [])
    assert "names PV small, which does not satisfy it (capacity 1Mi < requested 1Gi)" in reason


# ---- builders, backups, paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(name="Bad_Name"), "not a valid object name"),
    (dict(capacity="1 GB"), "not a storage quantity"),
    (dict(access_modes=["RWX"]), "unknown access mode"),
    (dict(access_modes=[]), "at least one access mode"),
    (dict(reclaim_policy="Keep"), "reclaim policy"),
    (dict(host_path=""), "exactly one volume source"),
    (dict(host_path="relative/dir"), "must be absolute"),
])
def test_persistent_volume_rejects_bad_input(kwargs, message):
    args = dict(name="pv1", capacity="1Gi", access_modes=["ReadWriteOnce"], host_path="/tmp/x") | kwargs
    with pytest.raises(KubebookError, match=message):
        volumes.persistent_volume(args.pop("name"), args.pop("capacity"), args.pop("access_modes"), **args)


def test_claim_class_none_leaves_the_field_out():
    assert "storageClassName" not in volumes.claim("c", "1Gi", ["ReadWriteOnce"], storage_class=None)["spec"]
    assert volumes.claim("c", "1Gi", ["ReadWriteOnce"])["spec"]["storageClassName"] == ""


def test_kubelet_volume_paths():
    pod = {"metadata": {"uid": "1234"}, "spec": {"volumes": [
        {"name": "cache", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": "/data"}},
        {"name": "share", "nfs": {"server": "127.0.0.1", "path": "/x"}},
        {"name": "www", "persistentVolumeClaim": {"claimName": "pvc-nfs"}},
        {"name": "unbound", "persistentVolumeClaim": {"claimName": "later"}}]}}
    nfs_pv = {"metadata": {"name": "nfs-pv"}, "spec": {"nfs": {"server": "127.0.0.1", "path": "/d"}}}
    table = volumes.pod_volume_paths(pod, {"pvc-nfs": nfs_pv}).set_index("volume")["path on the node"]
    assert table["cache"] == "/var/lib/kubelet/pods/1234/volumes/kubernetes.io~empty-dir/cache"
    assert table["host"].startswith("/data ")
    assert table["share"] == "/var/lib/kubelet/pods/1234/volumes/kubernetes.io~nfs/share"
    assert table["nfs-pv"] == "/var/lib/kubelet/pods/1234/volumes/kubernetes.io~nfs/nfs-pv"
    assert "until the claim is bound" in table["unbound"]


# ---- provisioning ---------------------------------------------------------------------------------------

def test_storage_class_default_annotation_and_validation():
    sc = provisioning.storage_class("nfs", "luffy.com/nfs", default=True, parameters={"archiveOnDelete": True})
    assert sc["metadata"]["annotations"] == {provisioning.DEFAULT_ANNOTATION: "true"}
    assert sc["parameters"] == {"archiveOnDelete": "True"}
    assert "annotations" not in provisioning.storage_class("nfs", "x")["metadata"]
    with pytest.raises(KubebookError, match="Delete or Retain"):
        provisioning.storage_class("nfs", "x", reclaim_policy="Recycle")
    with pytest.raises(KubebookError, match="WaitForFirstConsumer"):
        provisioning.storage_class("nfs", "x", binding_mode="Later")


def test_nfs_provisioner_objects_agree_with_each_other():
    objects = provisioning.nfs_client_provisioner(provisioner="luffy.com/nfs", archive_on_delete=False)
    by_kind = {o["kind"]: o for o in objects}
    env = {e["name"]: e["value"] for e in
           by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert by_kind["StorageClass"]["provisioner"] == env["PROVISIONER_NAME"] == "luffy.com/nfs"
    assert by_kind["StorageClass"]["parameters"] == {"archiveOnDelete": "false"}
    sa = by_kind["ServiceAccount"]["metadata"]
    assert by_kind["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == sa["name"]
    for binding_kind in ("ClusterRoleBinding", "RoleBinding"):
        assert by_kind[binding_kind]["subjects"] == [{"kind": "ServiceAccount", **sa}]
    pv_rule = next(r for r in by_kind["ClusterRole"]["rules"] if "persistentvolumes" in r["resources"])
    assert {"create", "delete"} <= set(pv_rule["verbs"])


def test_the_course_setup_is_only_shown():
    table = provisioning.plan_shown_only(copy.deepcopy(provisioning.nfs_client_provisioner()))
    assert len(table) == 8 and set(table["status"]) == {"shown only (needs an NFS server)"}
    assert provisioning.manifest(provisioning.nfs_client_provisioner()).count("---\n") == 7


# ---- volume kinds and the move onto a claim ---------------------------------------------------------------

def test_demo_pod_shares_the_empty_dir_and_leaves_nfs_out_unless_given():
    from kubebook.storage import migrate
    pod = migrate.volume_demo_pod("demo", host_path="/tmp/d", claim_name="c")
    kinds = [next(k for k in v if k != "name") for v in pod["spec"]["volumes"]]
    assert kinds == ["emptyDir", "hostPath", "persistentVolumeClaim"]
    assert all({"name": "cache", "mountPath": "/cache"} in c["volumeMounts"] for c in pod["spec"]["containers"])
    with_nfs = migrate.volume_demo_pod("demo", host_path="/tmp/d", claim_name="c", nfs=("127.0.0.1", "/x"))
    assert with_nfs["spec"]["volumes"][-1] == {"name": "share", "nfs": {"server": "127.0.0.1", "path": "/x"}}


def test_copy_instructions_name_the_old_source():
    from kubebook.storage import migrate
    assert "node's /opt/mysql/data" in migrate.copy_instructions({"hostPath": {"path": "/opt/mysql/data"}}, "m", "ns")
    assert "kubectl cp" in migrate.copy_instructions({"emptyDir": {}}, "m", "ns")


# ---- recorded from the lab (tests/fixtures/storage): the shapes the API really returns -----------------------

def _recorded(name):
    import json
    from pathlib import Path
    return json.loads((Path(__file__).parent / "fixtures" / "storage" / f"{name}.json").read_text())


def test_recorded_bound_pair_names_each_other():
    pv_, pvc_ = _recorded("bound-pv"), _recorded("bound-claim")
    assert binding.bound_to_claim(pv_, pvc_)
    assert binding.verdict(pvc_, [pv_]) == "bound to PV nfs-pv"
    assert binding.best_match(pvc_, [pv_]) == "nfs-pv"


def test_recorded_released_volume_refuses_a_new_claim_of_the_same_name():
    released, again = _recorded("released-pv"), _recorded("new-claim-same-name")
    assert released["spec"]["claimRef"]["name"] == again["metadata"]["name"]  # same name, another uid
    cells = binding.check_volume(released, again)
    assert set(failing(cells)) == {"claimRef/volumeName", "phase"}
    assert cells["phase"] == "Released, not Available"
    assert binding.best_match(again, [released]) is None
    # the admin's step: without the claimRef (and once the controller marks it Available) it fits again
    cleared = copy.deepcopy(released)
    del cleared["spec"]["claimRef"]
    cleared["status"]["phase"] = "Available"
    assert binding.best_match(again, [cleared]) == "nfs-pv"
