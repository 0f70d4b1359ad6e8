"""etcd helpers that need no server: key parsing and value display."""
import pytest

from kubebook import etcd


@pytest.mark.parametrize("key, expected", [
    ("/registry/pods/luffy/web-1", ("pods", "luffy", "web-1")),
    ("/registry/namespaces/luffy", ("namespaces", "", "luffy")),
    ("/registry/minions/k8s-slave1", ("nodes", "", "k8s-slave1")),
    ("/registry/services/specs/default/kubernetes", ("services", "default", "kubernetes")),
    ("/registry/services/endpoints/luffy/web", ("endpoints", "luffy", "web")),
    ("/registry/apiregistration.k8s.io/apiservices/v1.apps", ("apiservices.apiregistration.k8s.io", "", "v1.apps")),
    ("/registry/example.com/widgets/luffy/w1", ("widgets.example.com", "luffy", "w1")),
    ("/luffy/1", ("", "", "/luffy/1")),
])
def test_parse_registry_key(key, expected):
    got = etcd.parse_registry_key(key)
    assert (got["resource"], got["namespace"], got["name"]) == expected


def test_display_value_masks_secrets_and_shows_binary_as_hex():
    assert etcd.display_value("/registry/secrets/luffy/db", b"k8s\x00password") == "***(12 bytes)"
    assert etcd.display_value("/luffy/1", b"value-1") == "value-1"
    shown = etcd.display_value("/registry/pods/a/b", b"k8s\x00\x0a\x09\x0a\x02v1")
    assert shown.startswith("<binary 10 bytes: 6b387300")


def test_endpoints_are_validated():
    with pytest.raises(etcd.EtcdError, match="expected https://host:port"):
        etcd.parse_endpoints("127.0.0.1:2379")
    assert [e.port for e in etcd.parse_endpoints("https://127.0.0.1:2379,https://127.0.0.2:3379")] == [2379, 3379]


def test_missing_certificate_files_are_named(tmp_path):
    with pytest.raises(etcd.EtcdError, match="cacert file not found"):
        etcd.Etcd("https://127.0.0.1:2379", cacert=str(tmp_path / "nope.crt"), cert=None, key=None)
    with pytest.raises(etcd.EtcdError, match="give both or neither"):
        etcd.Etcd("https://127.0.0.1:2379", cacert=None, cert="a", key=None)


def test_human_bytes():
    assert etcd.human_bytes(20480) == "20.5 kB"
    assert etcd.human_bytes(12) == "12 B"


# ---- parameters and policies checked before anything runs (no etcd, no cluster) ---------------
import datetime as dt  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from kubebook.etcd import recover, snapshot  # noqa: E402
from kubebook.plan import Plan  # noqa: E402


@pytest.mark.parametrize("book, name, value, message", [
    ("etcd/snapshot", "host", "../../../x", "not a single file name"),
    ("etcd/snapshot", "host", "a/b", "not a single file name"),
    ("etcd/snapshot", "keep", "-1", "below 0"),
    ("etcd/operations", "watch_seconds", "nan", "not a finite number"),
    ("etcd/operations", "demo_keys", "-3", "below 0"),
    ("etcd/decode", "source", "latest", "is not one of"),
    ("etcd/namespace-recovery", "namespace", "../luffy", "not a namespace name"),
    ("etcd/namespace-recovery", "timeout", "inf", "not a finite number"),
    ("etcd/stuck-namespace", "namespace", "Kube_System", "not a namespace name"),
    ("etcd/full-restore", "confirm", "a b;c", "confirm"),
])
def test_bad_etcd_parameters_exit_2_before_a_kernel_starts(tmp_path, book, name, value, message):
    values = {name: value, **({"namespace": "kubebook-stuck"} if book == "etcd/stuck-namespace" and name != "namespace"
                              else {})}
    proc = subprocess.run([sys.executable, "-m", "kubebook.cli", "run", book, "--output-dir", str(tmp_path),
                           *[a for k, v in values.items() for a in ("-p", k, v)]], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was executed or written"


def test_a_snapshot_host_is_one_file_name_in_the_library_too():
    for bad in ("../x", "a/b", "..", "-rf", ""):
        with pytest.raises(snapshot.SnapshotError, match="one name"):
            snapshot.snapshot_name(bad, dt.datetime(2026, 1, 1))
    assert snapshot.snapshot_name("k8s-master", dt.datetime(2026, 1, 1, 3, 4)) == "k8s-master-etcd_202601010304.db"


def _files(directory, names):
    for name in names:
        (directory / name).write_bytes(b"x")
    return directory


def test_retention_keep_zero_keeps_all_and_negative_is_refused(tmp_path):
    _files(tmp_path, [f"m-etcd_2026010{d}0000.db" for d in range(1, 5)])
    assert snapshot.to_prune(tmp_path, host="m", keep=0, protect=tmp_path / "m-etcd_202601040000.db") == []
    with pytest.raises(snapshot.SnapshotError, match="keep=-1"):
        snapshot.to_prune(tmp_path, host="m", keep=-1, protect=tmp_path / "m-etcd_202601040000.db")
    plan = Plan(target="m", kind="etcd member", log=lambda m: None)
    snapshot.retention(plan, tmp_path, host="m", keep=2, protect=tmp_path / "m-etcd_202601040000.db")
    row = plan.table().iloc[0]
    assert row["status"] == "planned" and "delete 2 snapshot(s)" in row["what"]
    assert len(list(tmp_path.glob("*.db"))) == 4, "a dry run deletes nothing"


def test_demo_keys_never_go_under_registry():
    plan = Plan(target="m", kind="etcd member", log=lambda m: None)
    with pytest.raises(etcd.EtcdError, match="overwrite Kubernetes"):
        etcd.put_many(plan, None, "/registry/secrets/", 3)


def test_etcd_settings_come_from_etcdctl_variables_when_no_parameter_names_them(tmp_path, monkeypatch):
    files = {name: tmp_path / f"{name}.pem" for name in ("cacert", "cert", "key")}
    for path in files.values():
        path.write_text("not read before connecting")
    monkeypatch.delenv("KUBEBOOK_LAB", raising=False)
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "https://127.0.0.1:23790")
    for name, variable in (("cacert", "ETCDCTL_CACERT"), ("cert", "ETCDCTL_CERT"), ("key", "ETCDCTL_KEY")):
        monkeypatch.setenv(variable, str(files[name]))
    shown = []
    client = etcd.connect(cacert=str(files["cacert"]), log=shown.append)
    table = client.connection().set_index("setting")
    assert table.loc["endpoints", "value"] == "https://127.0.0.1:23790"
    assert table.loc["endpoints", "from"] == "$ETCDCTL_ENDPOINTS" and table.loc["key", "from"] == "$ETCDCTL_KEY"
    assert table.loc["cacert", "from"] == "parameter"
    assert shown and "$ETCDCTL_CERT" in shown[0]


def test_an_etcd_runbook_needs_no_kubeconfig(tmp_path, monkeypatch):
    for variable in ("KUBECONFIG", "KUBEBOOK_LAB"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    target = etcd.target()
    assert target.lab is None and target.kubeconfig is None and "etcd only" in target.source
    with pytest.raises(Exception, match="kubeconfig not found"):
        etcd.target(kubeconfig=str(tmp_path / "missing"))


def test_a_restore_waits_for_recorded_states_not_an_ideal():
    def claim(phase):
        return recover.Item(kind="PersistentVolumeClaim", name=f"c-{phase.lower()}", namespace="n", api_version="v1",
                            body={}, action="create", result="created",
                            original={"kind": "PersistentVolumeClaim", "status": {"phase": phase}})
    deployment = recover.Item(kind="Deployment", name="web", namespace="n", api_version="apps/v1", body={},
                              action="create", result="created",
                              original={"spec": {"replicas": 3}, "status": {"availableReplicas": 1}})
    states = {r["name"]: r["recorded"] for r in recover.recorded_states([claim("Pending"), claim("Bound"), deployment])}
    assert states == {"c-pending": "Pending", "c-bound": "Bound", "web": 1}
    live_pending = {"status": {"phase": "Pending"}}
    assert recover._claim_reached(live_pending, "Pending") and not recover._claim_reached(live_pending, "Bound")


def test_an_unset_name_parameter_passes_the_kernel_guard_of_plain_papermill(tmp_path):
    """full-restore's ``node: NodeName = ""`` means "this machine's hostname": "" must stay "not set"
    inside the kernel too, where the guard is installed by the parameters cell itself."""
    import nbformat
    import papermill
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("from kubebook.parameters import *  # parameter types; values are checked "
                                       'before any other cell runs\nnode: NodeName = ""  # a node\nlab: str = ""  # x')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(repr(node), repr(lab))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), parameters={"lab": "x"},
                               progress_bar=False)
    assert nbformat.read(tmp_path / "out.ipynb", 4).cells[-1].outputs[0]["text"] == "'' 'x'\n"
