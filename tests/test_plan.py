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
