"""The classroom without a browser: JupyterLab's command and environment, the preview/confirm panel,
whole table cells; and on the lab, the JupyterLab that `kubebook jupyter` starts and the
KUBEBOOK_LAB fallback for papermill."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from kubebook import classroom, connect, runner
from kubebook.errors import ConfirmationRequired
from kubebook.objects import Ref
from kubebook.plan import NotPreviewed
from widgets.plan_panel import PlanPanel, html_table


class FakeLab:
    name = "student-07"
    dir = Path("/nonexistent/student-07")

    def env(self):
        return {"KUBECONFIG": "/labs/student-07/admin.conf", "ETCDCTL_ENDPOINTS": "https://127.0.0.1:23790"}


def test_environment_points_kernels_and_terminals_at_the_lab():
    env = classroom.environment(FakeLab(), base={"PATH": "/usr/bin", "KUBECONFIG": "/somewhere/else"})
    assert env["KUBEBOOK_LAB"] == "student-07"
    assert env["KUBECONFIG"] == "/labs/student-07/admin.conf"  # the user's own KUBECONFIG is replaced
    assert env["ETCDCTL_ENDPOINTS"] == "https://127.0.0.1:23790"
    assert env["PATH"].endswith("/usr/bin")


def test_jupyterlab_command_stays_on_loopback_and_keeps_the_token_off_argv(tmp_path):
    cmd = classroom.command(8123, tmp_path, workspaces=tmp_path / "ws")
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8123" in cmd
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert not any("token" in part.lower() for part in cmd)
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert "--LabApp.news_url=None" in cmd and "--LabApp.extension_manager=readonly" in cmd


class FakeRunningLab:
    def __init__(self, name):
        self.name, self.kubeconfig, self.context = name, Path(f"/labs/{name}/admin.conf"), "kubebook"


def test_an_empty_lab_falls_back_to_the_classroom_lab_and_a_given_one_wins(monkeypatch):
    """One policy for papermill, JupyterLab and nbval: connect.target reads $KUBEBOOK_LAB, which the
    classroom's environment sets; nothing else decides which lab a runbook means."""
    monkeypatch.setattr(connect, "_lab", FakeRunningLab)
    monkeypatch.setenv(classroom.LAB_VARIABLE, "student-07")
    assert classroom.environment(FakeLab(), base={})[connect.LAB_ENV] == "student-07"
    fallback = connect.target("", "", "")
    assert fallback.lab.name == "student-07" and fallback.source == "$KUBEBOOK_LAB=student-07"
    assert connect.target("", "", "other").lab.name == "other"
    monkeypatch.delenv(classroom.LAB_VARIABLE)
    monkeypatch.setenv("KUBECONFIG", "/somewhere/config")
    assert connect.target("", "", "").lab is None


# ---- preview, then confirm --------------------------------------------------------------------
def test_panel_previews_then_runs_exactly_the_previewed_steps(capsys):
    done = []
    panel = PlanPanel(kind="node")

    def build(plan):
        plan.step("taint-k8s-slave1", "taint node k8s-slave1 with a=b:NoSchedule", lambda: done.append("taint") or "ok",
                  command="kubectl taint node k8s-slave1 a=b:NoSchedule")

    steps = panel.propose("k8s-slave1", "taint", build)
    assert done == [] and list(steps["status"]) == ["planned"]
    assert panel.confirm.description == "Confirm on node k8s-slave1" and panel.confirm.layout.display == ""
    assert "DRY RUN" in panel.log.value
    table = panel.run_confirmed()
    assert done == ["taint"] and list(table["status"]) == ["done"]
    assert panel.run_confirmed() is None and done == ["taint"]  # a second click does not run it again
    assert capsys.readouterr().out == ""  # the plan's lines went to the panel, not the kernel's log


def test_a_step_the_preview_did_not_show_is_refused_unrun():
    """The confirmed run is Plan(only=<the preview's steps>): a change that grew between preview and
    click stops at the first step nobody saw, before it acts."""
    ran, grown = [], []
    panel = PlanPanel(kind="namespace")

    def build(plan):
        plan.step("a", "step a", lambda: ran.append("a"))
        if grown:
            plan.step("b", "step b", lambda: ran.append("b"))

    panel.propose("kubebook-demo", "a", build)
    grown.append(True)
    table = panel.run_confirmed()
    assert ran == ["a"] and list(table["step"]) == ["a"]
    assert NotPreviewed.__name__ in panel.log.value and "was not in the preview" in panel.log.value
    assert "Failed" in panel.title.value


def test_the_confirm_button_names_the_whole_scope_and_confirms_exactly_it():
    seen = []
    panel = PlanPanel(kind="namespace")

    def build(plan):
        seen.append((plan.acting, plan.confirm, list(plan.only or [])))
        plan.step("create-pv-x", "create PersistentVolume x")

    panel.propose("kubebook-pv-board", "demo", build, also=["persistentvolume/x", "persistentvolume/y"])
    assert panel.confirm.description == \
        "Confirm on namespace kubebook-pv-board and persistentvolume/x, persistentvolume/y"
    panel.run_confirmed()
    assert seen == [(False, None, []),
                    (True, "kubebook-pv-board, persistentvolume/x, persistentvolume/y", ["create-pv-x"])]


def test_panel_shows_why_a_proposal_cannot_be_previewed():
    panel = PlanPanel(kind="node")

    def build(plan):
        raise ConfirmationRequired("taint 'x' is not key=value:Effect")
    assert panel.propose("k8s-slave1", "taint", build).empty
    assert "cannot preview" in panel.log.value and panel.confirm.layout.display == "none"


def test_tables_keep_long_reasons_whole():
    reason = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
    assert reason in html_table(pd.DataFrame([{"reason": reason}]))


def test_an_access_matrix_sends_one_widget_per_cell_and_closes_the_last_drawing():
    """A few hundred cells must stay well under the kernel output channel's 1,000-message mark."""
    from ipywidgets.widgets.widget import _instances
    from widgets.access_matrix import AccessMatrix
    subjects, resources, verbs = [f"User:u{i}" for i in range(6)], [f"r{i}" for i in range(8)], [f"v{i}" for i in range(8)]
    matrix = AccessMatrix(None, subjects=subjects, resources=resources, verbs=verbs)
    matrix.result = pd.DataFrame([{"subject": s, "resource": r, "verb": v, "namespace": "ns", "allowed": (i % 3 == 0),
                                   "reason": "why"} for s in subjects for r in resources for i, v in enumerate(verbs)])
    before = len(_instances)
    matrix._draw()
    cells, labels = 6 * 8 * 8, 2 + 8 + 2 * 6 * 8
    assert len(_instances) - before == cells + labels
    matrix._draw()  # a second Check: the first drawing's widgets are closed, not kept
    assert len(_instances) - before == cells + labels
    matrix.select("User:u0", "r0", "v1")
    assert matrix._cells[("User:u0", "r0", "v1")].style is matrix._look.selected
    assert matrix._cells[("User:u0", "r0", "v0")].style is matrix._look.allowed


def test_notebook_tables_keep_long_reasons_whole(tmp_path):
    reason = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import kubebook, pandas\npandas.DataFrame([{{'reason': {reason!r}}}])")])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    html = nb.cells[0].outputs[0]["data"]["text/html"]
    assert reason in html and "..." not in html


# ---- on the lab -------------------------------------------------------------------------------
@pytest.mark.lab
def test_jupyter_serves_the_runbooks_with_a_token_only(lab, tmp_path):
    server = classroom.start(lab.name, root=runner.runbooks_root(), log=lambda m: None)
    try:
        assert server.url.startswith("http://127.0.0.1:") and "/lab?token=" in server.url
        assert (lab.dir / "jupyter.url").stat().st_mode & 0o777 == 0o600
        request = urllib.request.Request(f"{server.base}/api/contents/scheduling",
                                         headers={"Authorization": f"token {server.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {item["name"] for item in json.loads(response.read())["content"]}
        assert "node-board.ipynb" in names
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.base}/api/contents/scheduling", timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(urllib.request.Request(
                f"{server.base}/api/kernelspecs", headers={"Authorization": f"token {server.token}"}), timeout=10) as r:
            assert "python3" in json.loads(r.read())["kernelspecs"]
    finally:
        server.stop()
    assert not server.alive()


@pytest.mark.lab
def test_papermill_falls_back_to_kubebook_lab(lab, tmp_path, monkeypatch):
    """The contract with kubebook.connect.target: an empty `lab` parameter means $KUBEBOOK_LAB."""
    monkeypatch.setenv("KUBEBOOK_LAB", lab.name)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    book = runner.find("etcd/operations")
    result = runner.run(book, {}, output_dir=tmp_path, progress=False)
    text = result.notebook.read_text()
    assert "k8s-master" in text and str(lab.ports["etcd"]) in text  # the lab's member, on the lab's port


WIDGET_RUNBOOKS = {"scheduling/node-board": "k8s-slave1", "auth/access-matrix": "User:dave",
                   "etcd/key-browser": "/registry/namespaces/", "storage/pv-board": "",
                   "autoscaling/hpa-chart": ""}


@pytest.mark.lab
@pytest.mark.parametrize("runbook", sorted(WIDGET_RUNBOOKS))
def test_widget_runbooks_under_papermill_end_with_a_static_table(lab, tmp_path, runbook):
    """Headless, a widget's output carries a table beside the widget view, and Run All finishes."""
    book = runner.find(runbook)
    result = runner.run(book, runner.lab_values(book, lab), output_dir=tmp_path, progress=False)
    nb = json.loads(result.notebook.read_text())
    widget_outputs = [o for c in nb["cells"] for o in c.get("outputs", [])
                      if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widget_outputs) == 1
    static = "".join(widget_outputs[0]["data"]["text/html"])
    assert "<table" in static or "<i>" in static  # a table, or the note that there is nothing to show
    assert WIDGET_RUNBOOKS[runbook] in static


# ---- the widgets' changes on the lab: only what they made is removed, what they changed is put back
def acting(api, target: str, kind: str, also=()):
    from kubebook.plan import Plan
    scope = Plan(target=target, kind=kind, also=also, cluster=api, log=lambda m: None).confirm_text
    return Plan(target=target, kind=kind, also=also, confirm=scope, cluster=api, log=lambda m: None)


@pytest.fixture
def someone_elses_namespace(api):
    from kubernetes import client
    name = f"classroom-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


def _binding_subjects(api, namespace: str, name: str) -> list[str]:
    from kubernetes import client
    binding = client.RbacAuthorizationV1Api(api).read_namespaced_role_binding(name, namespace)
    return sorted(s.name for s in binding.subjects or [])


@pytest.mark.lab
def test_revoke_backs_up_someone_elses_binding_and_its_clean_up_puts_it_back(api, run, someone_elses_namespace):
    from kubernetes import client
    from kubebook.auth import access, grants, rbac
    ns = someone_elses_namespace
    rbac.apply_all(api, [rbac.role("pod-reader", namespace=ns, rules=[rbac.rule(["get"], ["pods"])]),
                         rbac.role_binding("read-pods", namespace=ns, role="pod-reader",
                                           subjects=["User:dave", "User:zoro"])])
    reason = access.wait_allowed(api, "User:dave", "get", "pods", namespace=ns)["reason"]
    from kubebook.plan import Plan
    grants.revoke(Plan(target=ns, kind="namespace", cluster=api, log=lambda m: None), reason)  # a dry run
    assert _binding_subjects(api, ns, "read-pods") == ["dave", "zoro"]

    plan = acting(api, ns, "namespace")
    grants.revoke(plan, reason)
    assert _binding_subjects(api, ns, "read-pods") == ["zoro"]
    access.wait_allowed(api, "User:dave", "get", "pods", namespace=ns, allowed=False)
    backup = plan.record.changed[Ref("RoleBinding", "read-pods", ns)].backup
    assert backup.stat().st_mode & 0o777 == 0o600 and "dave" in backup.read_text()
    plan.cleanup(within_scope=True)
    assert _binding_subjects(api, ns, "read-pods") == ["dave", "zoro"]
    assert client.RbacAuthorizationV1Api(api).read_namespaced_role("pod-reader", ns)  # never touched


@pytest.mark.lab
def test_a_grant_is_cleaned_up_without_the_namespace_that_existed(api, run, someone_elses_namespace):
    from kubernetes import client
    from kubebook.auth import access, grants
    ns = someone_elses_namespace
    plan = acting(api, ns, "namespace")
    grants.grant(plan, "User:nami", "list", "secrets", ns)
    access.wait_allowed(api, "User:nami", "list", "secrets", namespace=ns)
    grants.grant(acting(api, ns, "namespace"), "User:usopp", "list", "secrets", ns)  # the same run: its binding grows
    assert _binding_subjects(api, ns, grants.grant_name("list", "secrets")) == ["nami", "usopp"]
    acting(api, ns, "namespace").cleanup(within_scope=True)
    rbac_api = client.RbacAuthorizationV1Api(api)
    assert not rbac_api.list_namespaced_role_binding(ns).items and not rbac_api.list_namespaced_role(ns).items
    assert not client.CoreV1Api(api).read_namespace(ns).metadata.deletion_timestamp


@pytest.mark.lab
def test_pv_board_demo_clean_up_keeps_a_volume_that_existed(api, run):
    from kubernetes import client
    from kubebook.storage import binding, board, volumes
    from kubebook.waits import wait_for
    ns, claim = f"pv-board-{uuid.uuid4().hex[:6]}", f"claim-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    theirs = binding.demo_volumes(ns, claim)[0]
    core.create_persistent_volume(theirs)
    try:
        plan = acting(api, ns, "namespace", board.demo_scope(ns, claim))
        board.create_demo(plan, ns, claim)
        board.add_fitting_volume(plan, ns, claim)
        assert volumes.wait_claim_phase(api, ns, claim, "Bound", timeout=120)["spec"]["volumeName"] == board.demo_volume_names(ns, claim)[-1]
        assert "kept as it is" in plan.objects().set_index("name").loc[theirs["metadata"]["name"], "after"]
        board.clean_up_demo(plan)
        left = {v.metadata.name for v in core.list_persistent_volume().items}
        assert left & set(board.demo_volume_names(ns, claim)) == {theirs["metadata"]["name"]}
        wait_for(api, "namespaces", lambda names: ns not in names, timeout=60, what=f"namespace {ns} gone")
    finally:
        core.delete_persistent_volume(theirs["metadata"]["name"])


@pytest.mark.lab
def test_etcd_puts_save_the_earlier_value_and_are_undone(lab, run):
    from kubebook import etcd as etcd_ops
    from kubebook.etcd import tree
    from kubebook.plan import Plan
    prefix = f"/classroom-{uuid.uuid4().hex[:6]}/"
    with etcd_ops.connect(lab=lab.name) as etcd:
        etcd.put(prefix + "theirs", "before")
        try:
            plan = Plan(target="k8s-master", kind="etcd member", confirm="k8s-master", log=lambda m: None)
            tree.put(plan, etcd, prefix + "theirs", "ours")
            tree.put(plan, etcd, prefix + "theirs", "ours again")  # the first value before the run is what is kept
            tree.put(plan, etcd, prefix + "new", "ours")
            assert etcd.get_value(prefix + "theirs") == b"ours again"
            undo = Plan(target="k8s-master", kind="etcd member", confirm="k8s-master", log=lambda m: None)
            tree.undo_puts(undo, etcd)
            assert sorted(undo.table()["detail"].str.split(": ").str[-1]) == ["deleted", "put back"]
            assert etcd.get_value(prefix + "theirs") == b"before" and etcd.get_value(prefix + "new") is None
        finally:
            for key in etcd.keys(prefix):
                etcd.delete(key)
