"""Run records: every run leaves one (0600, masked), they list and resolve, retention prunes."""
from __future__ import annotations

import json
import os
import stat

import pytest

import fixture_books
from kubebook import records, runner, unattended
from kubebook.errors import RunbookFailed


@pytest.fixture
def books(tmp_path, monkeypatch):
    root = fixture_books.make(tmp_path / "runbooks")
    monkeypatch.setenv("KUBEBOOK_RUNBOOKS", str(root))
    monkeypatch.setenv("KUBEBOOK_RUNS_ROOT", str(tmp_path / "records"))
    return root


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_successful_run_leaves_a_private_masked_record(books, tmp_path):
    result = runner.run(runner.find("demo/table"), {"rows": '[["User:a", "b1", 1]]', "password": "hunter2-S3cr3t"},
                        output_dir=tmp_path / "out", progress=False)
    [rec] = records.all_records()
    assert (rec.runbook, rec.status, rec.exit_code) == ("demo/table", "ok", 0)
    assert rec.notebook == str(result.notebook) and rec.html == str(result.html)
    assert rec.seconds > 0 and rec.started and rec.host
    assert _mode(rec.path) == 0o600 and _mode(records.root()) == 0o700
    text = open(rec.path).read()
    assert "hunter2-S3cr3t" not in text and rec.parameters["password"].startswith("***")
    assert rec.parameters["rows"] == [["User:a", "b1", 1]]


def test_a_failed_cell_leaves_a_failed_record_with_the_error(books, tmp_path):
    with pytest.raises(RunbookFailed):
        runner.run(runner.find("demo/fail"), {}, output_dir=tmp_path / "out", progress=False)
    [rec] = records.select(failed=True)
    assert (rec.status, rec.exit_code) == ("failed", 1)
    assert rec.error.startswith("ConnectionRefusedError") and os.path.isfile(rec.notebook)


def test_bad_input_is_recorded_without_running(books, tmp_path):
    marker = tmp_path / "ran"
    outcome = unattended.run("demo/table", {"marker": str(marker), "nope": "1"}, output_dir=tmp_path / "out",
                             progress=False)
    assert outcome.exit_code == 2 and not marker.exists() and not (tmp_path / "out").exists()
    [rec] = records.all_records()
    assert (rec.status, rec.exit_code, rec.notebook) == ("bad input", 2, "")
    assert "unknown parameter 'nope'" in rec.error


def test_records_are_found_by_id_path_notebook_and_position(books, tmp_path):
    for n in range(3):
        runner.run(runner.find("demo/table"), {"rows": f'[["User:{n}", "b", {n}]]'}, output_dir=tmp_path / "out",
                   progress=False, timestamp=f"2020010{n + 1}-000000")
    runs = records.select(runbook="demo/table")
    assert len(runs) == 3
    newest, oldest = runs[-1], runs[0]
    assert records.find("demo/table~0").id == newest.id
    assert records.find("demo/table~2").id == oldest.id
    assert records.find(oldest.id).path == oldest.path
    assert records.find(oldest.path).id == oldest.id
    assert records.find(oldest.notebook).id == oldest.id
    assert records.previous(newest).id == runs[1].id
    with pytest.raises(records.RecordNotFound):
        records.find("demo/table~3")
    table = records.table(runbook="demo/table")
    assert list(table["run"]) == [r.id for r in runs]


def test_retention_keeps_the_newest_per_runbook_and_removes_their_outputs(books, tmp_path, monkeypatch):
    monkeypatch.setenv(records.KEEP_ENV, "2")
    made = [runner.run(runner.find("demo/table"), {}, output_dir=tmp_path / "out", progress=False,
                       timestamp=f"2020010{n + 1}-000000") for n in range(4)]
    with pytest.raises(RunbookFailed):
        runner.run(runner.find("demo/fail"), {}, output_dir=tmp_path / "out", progress=False)
    kept = records.select(runbook="demo/table")
    assert [r.notebook for r in kept] == [str(m.notebook) for m in made[-2:]]
    assert not made[0].notebook.exists() and not made[0].html.exists() and made[-1].notebook.exists()
    assert len(records.select(runbook="demo/fail")) == 1   # another runbook's history is its own


def test_cli_runs_lists_and_filters(books, tmp_path, capsys):
    from kubebook import cli
    runner.run(runner.find("demo/table"), {}, output_dir=tmp_path / "out", progress=False)
    with pytest.raises(RunbookFailed):
        runner.run(runner.find("demo/fail"), {}, output_dir=tmp_path / "out", progress=False)
    capsys.readouterr()
    assert cli.main(["runs", "--failed", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["runbook"] for r in listed] == ["demo/fail"] and listed[0]["exit code"] == 1


def test_cli_runs_keep_prunes_now(books, tmp_path, capsys):
    from kubebook import cli
    for n in range(3):
        runner.run(runner.find("demo/table"), {}, output_dir=tmp_path / "out", progress=False,
                   timestamp=f"2020010{n + 1}-000000")
    assert cli.main(["runs", "--keep", "1"]) == 0
    assert "demo/table: removed 2 record(s)" in capsys.readouterr().out
    assert len(records.select(runbook="demo/table")) == 1


def test_records_read_again_reflect_every_change_on_disk(books, tmp_path):
    """Reading records again (every save does, for retention) shows each file as it is now: one
    kubebook rewrote, one edited in place, one that is no longer a record; and a caller changing a
    record it was given does not change what the next read returns."""
    for n in range(3):
        runner.run(runner.find("demo/table"), {}, output_dir=tmp_path / "out", progress=False,
                   timestamp=f"2020010{n + 1}-000000")
    rewritten, edited, broken = records.select(runbook="demo/table")
    records.update(rewritten, status="drift")
    with open(edited.path, "r+") as fh:  # same inode, new content
        data = json.load(fh)
        data["target"] = "context edited-by-hand-and-longer"
        fh.seek(0)
        fh.write(json.dumps(data))
        fh.truncate()
    with open(broken.path, "w") as fh:
        fh.write("{ half a record")
    given = records.all_records()
    assert [(r.id, r.status, r.target) for r in given] == [
        (rewritten.id, "drift", rewritten.target), (edited.id, "ok", "context edited-by-hand-and-longer")]
    given[0].status = "changed by a caller"
    assert records.find(rewritten.id).status == "drift"
    assert records.select(runbook="demo/fail") == [] and len(records.select(runbook="demo/table")) == 2
