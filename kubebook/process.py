"""Processes kubebook starts: each with its log file, recorded, checked, stopped and reaped by PID.

A process is recorded as its PID *and* the kernel's start time for it (``/proc/<pid>/stat``, field
22), so a PID the kernel has since given to another program is never mistaken for ours: stopping
and liveness checks go through the record, never through a name.

    child = process.start([etcd, ...], log=path, on_record=save)   # save(record) runs before any signal
    child.record.alive()                                            # same PID and start time, not a zombie
    process.stop(child.record)                                      # SIGTERM, wait, SIGKILL, reap

Two lifetimes:

* **long-lived** (the lab's components, the metrics add-on): a session of their own, they outlive the
  Python process that started them; their records are kept on disk and a later process stops them.
* **scratch** (a restored etcd in a runbook, the helm runbooks' registry): they must never outlive their
  owner. ``with process.scratch(cmd, log=...)`` stops them when the block ends; ``start(..., scratch=True)``
  (for a notebook kernel, where a later cell may fail) has the kernel ask for ``SIGKILL`` when the
  thread that started them ends (``prctl(PR_SET_PDEATHSIG)``), and stops them at interpreter exit.

Starting and recording happen with SIGINT and SIGTERM held back, so an interrupt (Ctrl-C, ``kill``)
arrives after the record is saved, never between the fork and the record.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import safety
from .errors import KubebookError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), or None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Record:
    """A process as kubebook recorded it: enough to find exactly that process again."""

    pid: int
    start_time: int
    binary: str = ""

    def alive(self) -> bool:
        """Still the very process we started (same PID and start time), and not a zombie."""
        return start_time(self.pid) == self.start_time

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        return cls(pid=int(data["pid"]), start_time=int(data["start_time"]), binary=data.get("binary", ""))


@dataclass
class Child:
    """A process this Python process started: its record, its ``Popen`` and its log file."""

    record: Record
    popen: subprocess.Popen
    log: Path | None

    @property
    def pid(self) -> int:
        return self.record.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None


_children: dict[int, subprocess.Popen] = {}   # our own children, so stopping them also reaps them
_scratch: dict[int, Record] = {}               # scratch children still running, stopped at exit
_lock = threading.Lock()


class StartError(KubebookError):
    """A process exited before it could be recorded."""


@contextlib.contextmanager
def signals_held(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the block, then deliver them as they would have been.

    Handlers can only be changed in the main thread (the only one Python raises
    KeyboardInterrupt in); elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = [s for s in signums if signal.getsignal(s) is not None]  # None: a handler set outside Python
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)  # the restored handler: KeyboardInterrupt, or SIGTERM's default exit


def _die_with_parent(parent: int) -> Callable[[], None]:
    prctl = libc().prctl  # looked up before the fork: the child only calls it

    def setup() -> None:  # runs in the child between fork and exec: system calls only
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the owner died before the request was in place
            os._exit(1)
    return setup


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def start(command: Sequence[str], *, log: Path | None = None, cwd: str | os.PathLike | None = None,
          env: dict[str, str] | None = None, scratch: bool = False, capture_stdout: bool = False,
          on_record: Callable[[Record], None] = lambda record: None, banner: str = "") -> Child:
    """Start ``command`` with stdout and stderr appended to ``log`` (this process's own when
    None; stdout piped instead with ``capture_stdout``) and call ``on_record`` with its record
    before SIGINT/SIGTERM can interrupt. ``scratch=True``: it dies with this process (module doc)."""
    command = [str(c) for c in command]
    out = open(log, "ab") if log else None
    try:
        if banner and out:
            out.write(f"\n=== kubebook: {banner} at {time.strftime('%F %T')}\n".encode())
            out.flush()
        said_from = out.tell() if out else 0  # the log is appended to: this start's output begins here
        with signals_held():
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if capture_stdout else out, stderr=out,
                                     cwd=cwd, env=env, start_new_session=True, text=capture_stdout,
                                     preexec_fn=_die_with_parent(os.getpid()) if scratch else None)
            with _lock:
                _children[popen.pid] = popen
            began = start_time(popen.pid)  # known from the fork on, and the same after exec
            if began is None:
                popen.wait()
                reap(popen.pid)
                raise StartError(f"{Path(command[0]).name} exited at once (code {popen.returncode})"
                                 + (f": {_last_line(log, said_from)}; see {log}" if log else ""))
            record = Record(popen.pid, began, command[0])
            if scratch:
                with _lock:
                    _scratch[record.pid] = record
            try:
                on_record(record)
            except BaseException:  # a process nobody could record must not run on
                stop(record, timeout=5)
                raise
    finally:
        if out:
            out.close()
    return Child(record, popen, Path(log) if log else None)


def _last_line(log: Path, offset: int) -> str:
    """The last line a process that died at once wrote to ``log`` after ``offset`` (its fatal
    message), masked, for the error's one line."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            said = f.read().decode(errors="replace")
    except OSError:
        return "no log"
    lines = [line for line in said.splitlines() if line.strip()]
    return safety.mask_text(lines[-1][:300]) if lines else "it wrote nothing"


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None when the process is gone. (-1: this kernel has no pidfds.)"""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            return -1
        return None


def _send(record: Record, signum: int) -> bool:
    """Signal the recorded process, and only it: through a pidfd checked against the start time."""
    fd = _pidfd(record.pid)
    if fd is None:
        return False
    if not record.alive():  # the pidfd names whoever has the PID now: make sure it is ours
        if fd >= 0:
            os.close(fd)
        return False
    try:
        if fd < 0:
            os.kill(record.pid, signum)
        else:
            signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def wait_gone(record: Record, timeout: float) -> bool:
    """Wait until the recorded process has exited (reaping it when it is our child)."""
    popen = _children.get(record.pid)
    if popen is not None:
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        reap(record.pid)
        return True
    deadline = time.monotonic() + timeout
    fd = _pidfd(record.pid)
    if fd is None:
        return True
    try:
        while record.alive():  # not our child (an earlier `lab up` started it): its exit wakes the pidfd
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if fd >= 0:
                select.select([fd], [], [], min(remaining, 0.5))
            else:
                time.sleep(0.05)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def reap(pid: int) -> None:
    """Collect the exit status of our child ``pid`` so it does not linger as a zombie."""
    with _lock:
        popen = _children.pop(pid, None)
        _scratch.pop(pid, None)
    if popen is not None:
        popen.poll()
        if popen.stdout:
            popen.stdout.close()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(record: Record | None, *, timeout: float = 20.0, kill: bool = False) -> bool:
    """Stop the recorded process: SIGTERM (SIGKILL at once with ``kill``), wait up to ``timeout``,
    then SIGKILL; reap it. False when it was not running."""
    if record is None:
        return False
    if not record.alive():
        reap(record.pid)
        return False
    if not _send(record, signal.SIGKILL if kill else signal.SIGTERM):
        reap(record.pid)
        return False
    if not wait_gone(record, timeout):
        _send(record, signal.SIGKILL)
        wait_gone(record, 10)
    reap(record.pid)
    return True


def last_line(log: Path) -> str:
    """The last non-empty line of a log file ("" when there is none): why a process exited."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else ""
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def scratch(command: Sequence[str], **kwargs) -> Iterator[Child]:
    """A scratch process for the ``with`` block: stopped when the block ends, however it ends."""
    child = start(command, scratch=True, **kwargs)
    try:
        yield child
    finally:
        stop(child.record, timeout=10)


@atexit.register
def _stop_scratch_children() -> None:
    for record in list(_scratch.values()):
        stop(record, timeout=5)
