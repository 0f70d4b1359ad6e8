import pytest

from kubebook.errors import ConfirmationRequired
from kubebook.plan import Plan, StepFailed


def test_dry_run_by_default_does_not_call_the_action():
    calls = []
    plan = Plan(target="k8s-master", log=lambda m: None)
    assert plan.dry_run
    assert plan.step("cordon", "cordon k8s-master", lambda: calls.append(1)) is None
    assert calls == []
    assert plan.table()["status"].tolist() == ["planned"]


def test_confirm_equal_to_target_acts():
    plan = Plan(target="k8s-master", confirm="k8s-master", log=lambda m: None)
    assert plan.step("add", "add", lambda: 42) == 42
    assert plan.table()["status"].tolist() == ["done"]


def test_confirm_naming_something_else_is_refused_before_any_step():
    with pytest.raises(ConfirmationRequired, match="nothing was changed"):
        Plan(target="prod-a", confirm="prod-b", log=lambda m: None)


def test_failed_step_is_recorded_and_raised_with_its_name():
    plan = Plan(target="x", confirm="x", log=lambda m: None)
    with pytest.raises(StepFailed, match="step boom failed"):
        plan.step("boom", "explode", lambda: 1 / 0)
    assert plan.table()["status"].tolist() == ["failed"]


def test_confirm_must_name_every_scope_the_plan_touches():
    plan = Plan(target="k8s-slave1", kind="node", also=["namespace/kubebook-taints"], log=lambda m: None)
    assert plan.confirm_text == "k8s-slave1, namespace/kubebook-taints"
    with pytest.raises(ConfirmationRequired, match="does not name namespace/kubebook-taints"):
        Plan(target="k8s-slave1", kind="node", also=["namespace/kubebook-taints"], confirm="k8s-slave1",
             log=lambda m: None)
    with pytest.raises(ConfirmationRequired, match="does not touch node/k8s-master"):
        Plan(target="k8s-slave1", kind="node", confirm="k8s-slave1, node/k8s-master", log=lambda m: None)
    for spelled in ("k8s-slave1, namespace/kubebook-taints", "namespace/kubebook-taints k8s-slave1",
                    "node/k8s-slave1,kubebook-taints"):
        assert Plan(target="k8s-slave1", kind="node", also=["namespace/kubebook-taints"], confirm=spelled,
                    log=lambda m: None).acting


def test_a_step_outside_the_confirmed_scope_fails_even_in_a_dry_run():
    from kubebook.objects import Ref
    from kubebook.plan import OutOfScope
    plan = Plan(target="kubebook-demo", kind="namespace", log=lambda m: None)
    plan.step("inside", "touch a Deployment here", touches=[Ref("Deployment", "web", "kubebook-demo")])
    with pytest.raises(OutOfScope, match="Node k8s-master"):
        plan.step("outside", "label a node", touches=[Ref("Node", "k8s-master")])
    with pytest.raises(OutOfScope, match="ClusterRoleBinding read-secrets-global"):
        plan.step("binding", "bind cluster-wide", touches=[Ref("ClusterRoleBinding", "read-secrets-global")])


def test_mask_rule_covers_spellings_env_entries_and_text():
    from kubebook import safety
    for key in ("DB_PASSWORD", "adminPassword", "FOO_TOKEN", "client-key-data", "api_key", "secretKey",
                "auth.adminPassword", "passphrase"):
        assert safety.is_secret_key(key), key
    for key in ("key", "name", "replicas", "effect", "tolerationSeconds"):
        assert not safety.is_secret_key(key), key
    shown = safety.mask({"env": [{"name": "DB_PASSWORD", "value": "hunter22"}, {"name": "LOG", "value": "debug"}],
                         "adminPassword": "s3cr3t!!", "taint": {"key": "smoke", "effect": "NoSchedule"}})
    assert "hunter22" not in str(shown) and "s3cr3t!!" not in str(shown)
    assert shown["env"][1]["value"] == "debug" and shown["taint"] == {"key": "smoke", "effect": "NoSchedule"}
    text = safety.mask_text("DB_PASSWORD=hunter22 --token=abc123def adminPassword: 'xyz' role secret-reader: get")
    assert "hunter22" not in text and "abc123def" not in text and "xyz" not in text
    assert "secret-reader: get" in text


def test_registered_secrets_are_masked_anywhere_with_their_base64(monkeypatch):
    import base64
    from kubebook import safety
    monkeypatch.setattr(safety, "_REGISTERED", set())
    safety.register_secret("canary-value-123")
    text = safety.mask_text("a canary-value-123 b " + base64.b64encode(b"canary-value-123").decode())
    assert "canary-value-123" not in text and base64.b64encode(b"canary-value-123").decode() not in text


def test_write_private_never_follows_a_planted_symlink(tmp_path):
    from kubebook import safety
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    target = tmp_path / "keys" / "user.key"
    target.parent.mkdir()
    target.symlink_to(victim)  # planted where the key will go
    safety.write_private(target, "KEY")
    assert victim.read_text() == "untouched"
    assert not target.is_symlink() and target.read_text() == "KEY"
    assert target.stat().st_mode & 0o777 == 0o600
    made = safety.write_private(tmp_path / "new" / "dir" / "k", "x")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700 and made.parent.stat().st_mode & 0o777 == 0o700

def test_at_cleanup_steps_run_newest_first_and_are_listed_in_a_dry_run(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("KUBEBOOK_RUN_ID", "test-at-cleanup")
    done = []
    dry = Plan(target="x", log=lambda m: None)
    dry.at_cleanup("undo-a", "undo a", lambda: done.append("a"))
    dry.cleanup()
    assert dry.table()[["step", "status"]].values.tolist() == [["undo-a", "planned"]] and done == []

    acting = Plan(target="x", confirm="x", log=lambda m: None)
    acting.at_cleanup("undo-a", "undo a", lambda: done.append("a") or "a undone")
    acting.at_cleanup("undo-b", "undo b", lambda: done.append("b") or "b undone")
    acting.at_cleanup("undo-a", "undo a, updated", lambda: done.append("a2") or "a undone")
    acting.cleanup()
    assert done == ["b", "a2"]
    assert acting.table()["what"].tolist() == ["undo b", "undo a, updated"]

    kept = Plan(target="x", confirm="x", log=lambda m: None)
    kept.at_cleanup("undo-c", "undo c", lambda: done.append("c"))
    kept.cleanup(when=False)
    assert "c" not in done and "not done: undo c" in kept.table().loc[0, "what"]


def test_a_confirmed_run_does_only_the_steps_its_preview_showed():
    from kubebook.plan import NotPreviewed
    preview = Plan(target="k8s-slave1", kind="node", log=lambda m: None)
    preview.step("taint-k8s-slave1", "taint it")
    shown = preview.table()["step"].tolist()
    acting = Plan(target="k8s-slave1", kind="node", confirm="k8s-slave1", only=shown, log=lambda m: None)
    assert acting.step("taint-k8s-slave1", "taint it", lambda: "done") == "done"
    with pytest.raises(NotPreviewed, match="was not in the preview"):
        acting.step("cordon-k8s-slave1", "cordon it", lambda: "never")
    with pytest.raises(NotPreviewed):  # each previewed step once
        acting.step("taint-k8s-slave1", "taint it", lambda: "again")


def _node(*, cordoned: bool, taints: list[str], labels: dict | None = None) -> dict:
    return {"metadata": {"labels": labels or {}},
            "spec": {"unschedulable": cordoned or None,
                     "taints": [{"key": k, "effect": "NoSchedule"} for k in taints]}}


def test_a_node_put_back_keeps_the_controllers_taints_but_not_the_cordon_mirror():
    from kubebook.ownership import restore_patch
    saved = _node(cordoned=False, taints=["theirs"], labels={"zone": "a"})
    now = _node(cordoned=True, taints=["theirs", "ours", "node.kubernetes.io/unschedulable",
                                       "node.kubernetes.io/not-ready"], labels={"zone": "a", "run": "x"})
    patch = restore_patch("Node", saved, now)
    assert [t["key"] for t in patch["spec"]["taints"]] == ["node.kubernetes.io/not-ready", "theirs"]
    assert patch["spec"]["unschedulable"] is None and patch["metadata"]["labels"] == {"run": None, "zone": "a"}


def test_a_node_cordoned_before_the_run_stays_cordoned_with_its_taint():
    from kubebook.ownership import restore_patch
    saved = _node(cordoned=True, taints=["node.kubernetes.io/unschedulable"])
    patch = restore_patch("Node", saved, _node(cordoned=False, taints=["node.kubernetes.io/unschedulable"]))
    assert patch["spec"] == {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
                             "unschedulable": True}
