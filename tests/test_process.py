"""kubebook.process against real processes (sleep, Python, a notebook kernel): nothing mocked, no lab."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kubebook import process

SLEEP = ["sleep", "120"]


def _gone(pid: int, start: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.start_time(pid) != start:
            return True
        time.sleep(0.05)
    return False


def test_record_is_alive_then_stop_terminates_and_reaps(tmp_path):
    child = process.start(SLEEP, log=tmp_path / "sleep.log", banner="starting sleep")
    assert child.record.alive() and child.record.start_time == process.start_time(child.pid)
    assert "=== kubebook: starting sleep" in (tmp_path / "sleep.log").read_text()
    assert process.stop(child.record, timeout=5) is True
    assert not child.record.alive()
    assert child.popen.returncode == -signal.SIGTERM  # reaped: no zombie left behind
    assert process.stop(child.record) is False


def test_a_reused_pid_is_not_ours_and_is_not_signalled(tmp_path):
    child = process.start(SLEEP, log=tmp_path / "sleep.log")
    try:
        stranger = process.Record(child.pid, child.record.start_time + 1)  # same PID, another process
        assert not stranger.alive()
        assert process.stop(stranger) is False
        assert child.record.alive(), "a record with another start time must not stop the process"
    finally:
        process.stop(child.record)


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path):
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(120)"]
    child = process.start(stubborn, log=tmp_path / "stubborn.log", capture_stdout=True)
    assert child.popen.stdout.readline().strip() == "ready"
    assert process.stop(child.record, timeout=0.5) is True
    assert child.popen.returncode == -signal.SIGKILL


def test_an_interrupt_during_start_arrives_after_the_record_is_saved(tmp_path):
    saved = []

    def save_then_get_interrupted(record):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the fork and the record
        time.sleep(0.05)
        saved.append(record)
    with pytest.raises(KeyboardInterrupt):
        process.start(SLEEP, log=tmp_path / "sleep.log", on_record=save_then_get_interrupted)
    assert len(saved) == 1 and saved[0].alive(), "the process started and was recorded before the interrupt"
    assert process.stop(saved[0]) is True


def test_a_process_that_cannot_be_recorded_is_stopped(tmp_path):
    started = []

    def failing_save(record):
        started.append(record)
        raise OSError("disk full")
    with pytest.raises(OSError):
        process.start(SLEEP, log=tmp_path / "sleep.log", on_record=failing_save)
    assert not started[0].alive()


def test_scratch_block_stops_its_process_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with process.scratch(SLEEP, log=tmp_path / "sleep.log") as child:
            record = child.record
            raise RuntimeError("a later step failed")
    assert not record.alive()


_OWNER = """
import sys, time
from kubebook import process
child = process.start(["sleep", "120"], scratch=True)
print(child.pid, child.record.start_time, flush=True)
sys.stdin.readline()  # the test says when to exit
"""


@pytest.mark.parametrize("ending", ["exit", "killed"])
def test_a_scratch_process_never_outlives_its_owner(ending):
    owner = subprocess.Popen([sys.executable, "-c", _OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid, start = map(int, owner.stdout.readline().split())
    assert process.start_time(pid) == start
    if ending == "killed":  # no atexit, no finally: only the kernel's parent-death signal is left
        owner.kill()
    owner.communicate("\n", timeout=30)
    assert _gone(pid, start), f"scratch process {pid} outlived its owner ({ending})"


def test_a_scratch_process_dies_with_a_notebook_kernel_whose_later_cell_fails(tmp_path):
    import nbformat
    import papermill
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            from kubebook import process
            child = process.start(["sleep", "120"], scratch=True)
            print(child.pid, child.record.start_time)""")),
        nbformat.v4.new_code_cell("raise RuntimeError('a later cell fails')"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, executed = tmp_path / "scratch.ipynb", tmp_path / "scratch-out.ipynb"
    nbformat.write(notebook, source)
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(str(source), str(executed), progress_bar=False, kernel_name="python3")
    first = next(c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code")
    printed = first.outputs[0]["text"]
    pid, start = map(int, printed.split())
    assert _gone(pid, start), "the scratch process outlived the kernel"
