"""Drift between two runs, read from the tables their executed notebooks carry."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import fixture_books
from kubebook import cli, drift, runner, show


@pytest.fixture
def books(tmp_path, monkeypatch):
    root = fixture_books.make(tmp_path / "runbooks")
    monkeypatch.setenv("KUBEBOOK_RUNBOOKS", str(root))
    monkeypatch.setenv("KUBEBOOK_RUNS_ROOT", str(tmp_path / "records"))
    return root


def _run(tmp_path, rows, stamp):
    return runner.run(runner.find("demo/table"), {"rows": json.dumps(rows)}, output_dir=tmp_path / "out",
                      progress=False, timestamp=stamp)


def test_the_executed_notebook_carries_each_table_as_masked_data(books, tmp_path):
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    result = _run(tmp_path, [["User:a", f"token {jwt}", 1]], "20200101-000000")
    tables = drift.tables(result.notebook)
    assert list(tables) == ["admins"]
    admins = tables["admins"]
    assert admins.key == ["subject"] and admins.columns == ["subject", "binding", "size"]
    assert admins.rows[0][0] == "User:a" and admins.rows[0][2] == 1
    assert jwt not in result.notebook.read_text().split(show.TABLE_MIME, 1)[1][:2000]


def test_rows_added_removed_and_changed_are_named(books, tmp_path):
    a = _run(tmp_path, [["User:a", "b1", 1], ["User:b", "b2", 5]], "20200101-000000")
    b = _run(tmp_path, [["User:a", "b1", 12], ["User:c", "b3", 1]], "20200102-000000")
    changes = drift.between(a.notebook, b.notebook)
    got = {(r["change"], r["row"], r["column"]) for _, r in changes.iterrows()}
    assert got == {("added", "subject User:c", ""), ("removed", "subject User:b", ""),
                   ("changed", "subject User:a", "size")}
    [line] = drift.summary(changes)
    assert line.startswith("admins: +1 row (subject User:c), -1 row (subject User:b), ~1 changed")
    assert "size 1 -> 12" in line


@pytest.mark.parametrize("rule, matches", [
    ("admins", 3), ("admins:added", 1), ("admins:removed", 1), ("admins:changed", 1),
    ("admins:changed:size", 1), ("admins:changed:binding", 0), ("admins:grew:size:10", 1),
    ("admins:grew:size:13", 0), ("*:added", 1), ("other", 0),
])
def test_rules_pick_the_drift_they_name(books, tmp_path, rule, matches):
    a = _run(tmp_path, [["User:a", "b1", 1], ["User:b", "b2", 5]], "20200101-000000")
    b = _run(tmp_path, [["User:a", "b1", 12], ["User:c", "b3", 1]], "20200102-000000")
    assert len(drift.check(drift.between(a.notebook, b.notebook), [rule])) == matches


@pytest.mark.parametrize("rule", ["", "admins:grown", "admins:grew:size", "admins:grew:size:-1",
                                  "admins:added:size", "admins:grew:size:nan"])
def test_bad_rules_are_bad_input(rule):
    with pytest.raises(drift.DriftError) as info:
        drift.Rule.parse(rule)
    assert info.value.exit_code == 2


def test_cli_diff_exits_3_only_when_a_rule_matches(books, tmp_path, capsys):
    _run(tmp_path, [["User:a", "b1", 1]], "20200101-000000")
    _run(tmp_path, [["User:a", "b1", 1], ["User:m", "b9", 1]], "20200102-000000")
    assert cli.main(["diff", "demo/table~1", "demo/table~0"]) == 0
    out = capsys.readouterr().out
    assert "admins: +1 row (subject User:m)" in out
    assert cli.main(["diff", "demo/table~1", "demo/table~0", "--fail-on", "admins:removed"]) == 0
    assert cli.main(["diff", "demo/table~1", "demo/table~0", "--fail-on", "admins:added"]) == 3


def test_run_fail_on_compares_with_the_previous_run(books, tmp_path, capsys):
    argv = ["run", "demo/table", "--output-dir", str(tmp_path / "out"), "--no-progress", "--fail-on", "admins:added"]
    assert cli.main([*argv, "-p", "rows", '[["User:a", "b1", 1]]']) == 0       # nothing to compare with yet
    assert cli.main([*argv, "-p", "rows", '[["User:a", "b1", 1]]']) == 0       # the same rows
    assert cli.main([*argv, "-p", "rows", '[["User:a", "b1", 1], ["User:z", "b", 1]]']) == 3
    err = capsys.readouterr().err
    assert "admins: +1 row (subject User:z)" in err
    from kubebook import records
    last = records.find("demo/table~0")
    assert (last.status, last.exit_code) == ("drift", 3) and last.drift == ["admins: +1 row (subject User:z)"]


def test_a_view_with_other_columns_does_not_pass_for_the_named_table():
    table = show.named(pd.DataFrame({"a": [1], "b": [2]}), "t", key=["a"])
    assert show.table_data(table[table["a"] > 0])["name"] == "t"
    assert show.table_data(table[["a"]])["name"] == ""


def test_volatile_columns_are_not_compared():
    before = {"t": drift.Table("t", ["k", "days left", "not after"], [["x", 30.0, "2030"]], ["k"], ["days left"])}
    after = {"t": drift.Table("t", ["k", "days left", "not after"], [["x", 29.0, "2031"]], ["k"], ["days left"])}
    changes = drift.compare(before, after)
    assert list(changes["column"]) == ["not after"]


class _StoreHandler:
    """A papermill I/O handler for ``kbstore://`` backed by a directory: stands in for s3:// and the like."""

    root = None

    @classmethod
    def _path(cls, path):
        return cls.root / path.removeprefix("kbstore://")

    @classmethod
    def read(cls, path):
        return cls._path(path).read_text()

    @classmethod
    def write(cls, buf, path):
        target = cls._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(buf)

    @classmethod
    def listdir(cls, path):
        return [p.name for p in cls._path(path).iterdir()]

    @classmethod
    def pretty_path(cls, path):
        return path


def test_outputs_on_object_storage_go_through_papermills_io_and_diff_reads_them_back(books, tmp_path):
    from papermill.iorw import papermill_io
    from kubebook import records
    _StoreHandler.root = tmp_path / "store"
    papermill_io.register("kbstore://", _StoreHandler)
    try:
        argv = ["run", "demo/table", "--output-dir", "kbstore://bucket/runs", "--no-progress"]
        assert cli.main([*argv, "-p", "rows", '[["User:a", "b1", 1]]']) == 0
        assert cli.main([*argv, "-p", "rows", '[["User:a", "b1", 1], ["User:s3", "b", 1]]']) == 0
        last = records.find("demo/table~0")
        assert last.notebook.startswith("kbstore://bucket/runs/") and last.html.endswith(".html")
        stored = sorted(p.suffix for p in (tmp_path / "store" / "bucket" / "runs").iterdir())
        assert stored == [".html", ".html", ".ipynb", ".ipynb"]
        report = drift.report("demo/table~1", "demo/table~0")
        assert "admins: +1 row (subject User:s3)" in report.lines
    finally:
        papermill_io._handlers = [(s, h) for s, h in papermill_io._handlers if s != "kbstore://"]
