"""Adversarial parameters: every parameter of every runbook gets the bad values of its type.

Each bad value goes through the real command line (``kubebook run``, in-process) and must be
refused with exit 2 and one line before any kernel starts (no output directory appears). The
values are the type's own known-bad seeds plus values hypothesis generates for the type. On the
lab, nothing may change while the sweep runs: no etcd key outside leases and events is written
or deleted, and the nodes keep their labels, taints and cordon. The total number of inputs tried
is printed at the end of the session.
"""
from __future__ import annotations

import json
import math
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import count, note
from kubebook import cli, parameters as P, runner

BOOKS = runner.discover()
TRIED: dict[str, int] = {}


def _bad_strategy(t: P.Type) -> st.SearchStrategy:
    """Values of the right shape that ``t`` must refuse."""
    if isinstance(t, P.Float):
        worse = [st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                 st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)]
        if t.positive:
            worse.append(st.floats(max_value=0, allow_nan=False))
        if t.minimum is not None:
            worse.append(st.floats(max_value=t.minimum, exclude_max=True, allow_nan=False, allow_infinity=False))
        if t.maximum is not None:
            worse.append(st.floats(min_value=t.maximum, exclude_min=True, allow_nan=False, allow_infinity=False))
        return st.one_of(worse)
    if isinstance(t, P.Int):
        worse = [st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
                 st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)]
        if t.minimum is not None:
            worse.append(st.integers(max_value=t.minimum - 1))
        if t.maximum is not None:
            worse.append(st.integers(min_value=t.maximum + 1))
        return st.one_of(worse)
    if isinstance(t, P.Pattern):
        return st.one_of(st.text(alphabet="ABCXYZ_ /\\%$", min_size=1, max_size=20),
                         st.text(alphabet=string.ascii_lowercase, min_size=t.max_length + 1,
                                 max_size=t.max_length + 20),
                         st.builds(lambda s: "-" + s, st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=5)))
    if isinstance(t, P._FileName):
        return st.one_of(st.builds(lambda a, b: f"{a}/{b}", st.text(min_size=0, max_size=5),
                                   st.text(min_size=0, max_size=5)),
                         st.sampled_from(["..", ".", "../../etc/passwd"]))
    if isinstance(t, P._RelativePath):
        return st.one_of(st.builds(lambda s: "/" + s, st.text(max_size=10)),
                         st.builds(lambda s: s + "/../..", st.text(alphabet=string.ascii_lowercase, max_size=5)))
    if isinstance(t, P.Choice):
        return st.text(min_size=1, max_size=12).filter(lambda s: s.strip() not in [str(c) for c in t.choices])
    if isinstance(t, P._Bool):
        known = P._TRUE | P._FALSE
        return st.text(min_size=1, max_size=6).filter(lambda s: s.strip().lower() not in known)
    if isinstance(t, P.ListOf):
        item = _bad_strategy(t.item)
        return st.one_of(st.lists(item, min_size=1, max_size=3), st.just({"not": "a list"}))
    if isinstance(t, (P._Cidr, P._IPAddress, P._Quantity)):
        return st.text(alphabet="xyz!@ ", min_size=1, max_size=10)
    if isinstance(t, P._Taint):
        return st.fixed_dictionaries({"key": st.just("k"), "effect": st.text(alphabet="abc", min_size=1, max_size=6)})
    if isinstance(t, P._Confirm):
        return st.builds(lambda a, b: f"{a}//{b}", st.text(alphabet="abc", min_size=1), st.text(alphabet="abc"))
    return st.nothing()


def _as_cli_value(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    return str(value)


def _refused(book, name: str, value, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    text = _as_cli_value(value)
    if "\x00" in text:  # a NUL cannot be passed in argv; the library refuses it (unit-tested)
        return
    code = cli.main(["run", book.id, "-p", name, text, "--output-dir", str(out), "--no-progress",
                     *[a for k, v in _required(book).items() if k != name for a in ("-p", k, v)]])
    err = capsys.readouterr().err.strip()
    assert code == 2, f"{book.id}: {name}={text!r} was not refused (exit {code}): {err}"
    assert len(err.splitlines()) == 1, err
    assert not out.exists(), f"{book.id}: {name}={text!r}: something ran"
    TRIED[book.id] = TRIED.get(book.id, 0) + 1
    count("adversarial_inputs")
    note("adversarial_parameters", f"{book.id}:{name}")


def _valid(param) -> str:
    for candidate in ("x", "1", "a.db", "[]", "{}"):
        try:
            param.type.convert(candidate)
            return candidate
        except P.Invalid:
            continue
    raise AssertionError(f"no simple valid value for {param.name} ({param.type.name})")


def _required(book) -> dict[str, str]:
    """Valid values for required parameters, so a run is refused for the bad value only."""
    return {p.name: _valid(p) for p in book.parameters.values() if p.required}


CASES = [(b, p) for b in BOOKS for p in b.parameters.values()
         if p.type.examples_of_bad() or not _bad_strategy(p.type).is_empty]


def _known_bad(param) -> list:
    """The type's known-bad values that are bad on a command line too."""
    values = []
    for value in param.type.examples_of_bad():
        if value in ("", None) and param.default in ("", None):
            continue  # "" is "not set" where the default says so
        if not isinstance(value, str) and _accepts(param, _as_cli_value(value)):
            continue  # bad as a Python value only: the int 7 for a Path is the fine path "7" on a command line
        if "\x00" in _as_cli_value(value):
            continue  # a NUL cannot be passed in argv; the library refuses it (unit-tested)
        values.append(value)
    return values


@pytest.mark.parametrize("book, param", CASES, ids=[f"{b.id}:{p.name}" for b, p in CASES])
def test_known_bad_values_are_refused_before_a_kernel(book, param, tmp_path, capsys):
    for value in _known_bad(param):
        _refused(book, param.name, value, tmp_path, capsys)


def _accepts(param, text: str) -> bool:
    try:
        param.type.convert(text)
        return True
    except P.Invalid:
        return False


@pytest.mark.parametrize("book, param", CASES, ids=[f"{b.id}:{p.name}" for b, p in CASES])
@settings(max_examples=6, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(data=st.data())
def test_generated_bad_values_are_refused_before_a_kernel(book, param, tmp_path, capsys, data):
    strategy = _bad_strategy(param.type)
    if strategy.is_empty:
        return
    value = data.draw(strategy)
    try:
        param.type.convert(value)
    except P.Invalid:
        _refused(book, param.name, value, tmp_path, capsys)
    else:  # hypothesis found a value the type accepts: it must be a valid one, not a hole
        assert not isinstance(value, float) or math.isfinite(value), (book.id, param.name, value)


def test_unknown_and_missing_parameters_are_refused(tmp_path, capsys):
    for book in BOOKS:
        _refused(book, "no_such_parameter", "1", tmp_path, capsys)


@pytest.mark.lab
def test_refused_runs_change_nothing_on_the_lab(lab, tmp_path, capsys):
    """The known-bad values again, now with every runbook pointed at the lab and confirmed: if any
    were accepted it would act. etcd's history shows no write, and the nodes are as they were."""
    from conftest import etcd_changes_since, etcd_quiet_revision
    from kubebook.scheduling import nodes
    before_nodes = nodes.node_state(lab.api_client(), lab.nodes)
    revision = etcd_quiet_revision(lab)
    for book in BOOKS:
        lab_args = [a for k, v in runner.lab_values(book, lab).items() for a in ("-p", k, _as_cli_value(v))]
        for param in book.parameters.values():
            for value in _known_bad(param):
                text = _as_cli_value(value)
                code = cli.main(["run", book.id, *lab_args, "-p", param.name, text,
                                 "--output-dir", str(tmp_path / "out"), "--no-progress"])
                capsys.readouterr()
                assert code == 2, f"{book.id}: {param.name}={text!r} exit {code}"
    assert etcd_changes_since(lab, revision) == []
    assert nodes.node_state(lab.api_client(), lab.nodes) == before_nodes
    assert not (tmp_path / "out").exists()


@pytest.mark.lab
def test_the_history_check_sees_a_write(lab):
    """The check above is not vacuous: one ConfigMap written and deleted is seen."""
    from kubernetes import client
    from conftest import etcd_changes_since, etcd_quiet_revision
    core = client.CoreV1Api(lab.api_client())
    revision = etcd_quiet_revision(lab)
    core.create_namespaced_config_map("default", {"metadata": {"name": "adversarial-probe"}})
    core.delete_namespaced_config_map("adversarial-probe", "default")
    assert "/registry/configmaps/default/adversarial-probe" in etcd_changes_since(lab, revision)
