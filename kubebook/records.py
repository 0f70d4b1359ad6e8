"""Run records: one small JSON file per run, so unattended runs leave a history to list and compare.

Every run through kubebook (``kubebook run``, the demo, a scheduled job) writes a record under
:func:`kubebook.paths.runs_root` (0600, in a 0700 directory): which runbook, its parameters
(masked), the target it acted on, when it started, how long it took, its status and exit code,
the error (masked, one line) and where its executed notebook and HTML copy went. Records are
named like the notebook they describe (``<topic>-<name>-<time>``), so one can be found from the
other. Retention keeps the newest :func:`keep_default` per runbook and removes older records
together with the local outputs those runs wrote.

    record(runbook, params, started=..., seconds=..., notebook=out, html=html, error=None)
    table(runbook="auth/cluster-admin-audit", failed=True)
"""
from __future__ import annotations

import contextlib
import copy
import contextvars
import datetime as dt
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from . import paths
from .errors import KubebookError
from .safety import mask, mask_text, masked, write_private

KEEP_ENV = "KUBEBOOK_RUNS_KEEP"
KEEP_DEFAULT = 50
SCHEDULE_ENV = "KUBEBOOK_SCHEDULE"   # set in a scheduled job: the schedule's name goes into its records


class RecordNotFound(KubebookError):
    exit_code = 2


@dataclass
class RunRecord:
    id: str
    runbook: str
    target: str
    started: str                     # ISO 8601 with the UTC offset
    seconds: float
    status: str                      # ok, failed, bad input, drift
    exit_code: int
    parameters: dict = field(default_factory=dict)   # masked
    error: str = ""                  # masked, first line
    notebook: str = ""
    html: str = ""
    attempt: int = 1
    schedule: str = ""
    host: str = ""
    drift: list = field(default_factory=list)      # lines from kubebook.drift, when a rule was checked
    path: str = ""                   # where this record is (not stored in the file)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("path")
        return json.dumps(data, indent=2, default=str)

    @classmethod
    def from_file(cls, path: Path) -> "RunRecord":
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}, path=str(path))

    def row(self) -> dict:
        return {"run": self.id, "runbook": self.runbook, "target": self.target, "started": self.started[:19],
                "seconds": round(self.seconds, 1), "status": self.status, "exit code": self.exit_code,
                "attempt": self.attempt, "schedule": self.schedule, "error": self.error[:120],
                "notebook": self.notebook}


# ---- what a record says about its run --------------------------------------------------------------
def masked_parameters(runbook, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as a record may keep them: a parameter declared secret shows only its length, and
    kubebook.safety's rules mask secret-named keys and secret-looking text in the rest."""
    out = {}
    for name, value in values.items():
        param = getattr(runbook, "parameters", {}).get(name)
        if param is not None and getattr(param, "secret", False):
            out[name] = masked(value if isinstance(value, (str, bytes)) else str(value))
        else:
            out[name] = mask({name: value})[name]
    return out


def target_of(values: dict[str, Any]) -> str:
    """What a run acted on, named as the user named it: a lab, a kubeconfig context, an etcd endpoint."""
    for name in ("lab", "network_lab"):
        if values.get(name):
            return f"lab {values[name]}"
    if values.get("context"):
        return f"context {values['context']}"
    if values.get("kubeconfig"):
        from .connect import current_context
        context = current_context(values["kubeconfig"])
        return f"context {context}" if context else f"kubeconfig {values['kubeconfig']}"
    if values.get("endpoints"):
        return f"etcd {values['endpoints']}"
    from .connect import IN_CLUSTER_TOKEN, current_context
    if not os.environ.get("KUBECONFIG") and IN_CLUSTER_TOKEN.is_file():
        return "in-cluster"
    context = current_context(os.environ.get("KUBECONFIG") or None)
    return f"context {context}" if context else "this machine"


def one_line(text: str, limit: int = 500) -> str:
    """The first non-empty line of ``text``, masked and cut to ``limit`` characters."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    line = lines[0] if lines else ""
    if len(lines) > 1 and re.search(r"\(\d{3}\)$", line) and lines[1].startswith("Reason:"):
        line = f"{line} {lines[1].removeprefix('Reason:').strip()}"   # the client's ApiException: "(403) Forbidden"
    return mask_text(line)[:limit]


# ---- scope: what a caller (retries, schedules) adds to the records written inside it -------------
@dataclass
class Scope:
    attempt: int = 1
    schedule: str = ""
    written: list[Path] = field(default_factory=list)


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("kubebook_record_scope", default=None)


@contextlib.contextmanager
def scope(*, attempt: int = 1, schedule: str = "") -> Iterator[Scope]:
    """Records written inside carry ``attempt`` and ``schedule``; ``scope.written`` lists their paths."""
    current = Scope(attempt=attempt, schedule=schedule or os.environ.get(SCHEDULE_ENV, ""))
    token = _scope.set(current)
    try:
        yield current
    finally:
        _scope.reset(token)


# ---- writing ------------------------------------------------------------------------------------
def root() -> Path:
    return paths.private_dir(paths.runs_root(), tighten=True)


def keep_default() -> int:
    try:
        return max(1, int(os.environ.get(KEEP_ENV, KEEP_DEFAULT)))
    except ValueError:
        return KEEP_DEFAULT


def _free_path(directory: Path, stem: str) -> Path:
    path, n = directory / f"{stem}.json", 2
    while path.exists():
        path, n = directory / f"{stem}-{n}.json", n + 1
    return path


def save(rec: RunRecord, *, keep: int | None = None) -> RunRecord:
    """Write ``rec`` (0600) under its id and apply retention for its runbook."""
    directory = root()
    path = Path(rec.path) if rec.path else _free_path(directory, rec.id)
    rec.id, rec.path = path.stem, str(path)
    write_private(path, rec.to_json())
    current = _scope.get()
    if current is not None and path not in current.written:
        current.written.append(path)
    prune(rec.runbook, keep=keep or keep_default())
    return rec


def record(runbook, values: dict[str, Any], *, started: dt.datetime, seconds: float, notebook: Path | str | None,
           html: Path | str | None, error: BaseException | None = None, status: str = "",
           exit_code: int | None = None) -> RunRecord:
    """The record of one run of ``runbook`` (a :class:`kubebook.runner.Runbook`), written at once.

    ``error`` is what stopped it (a cell's PapermillExecutionError, a ParameterError...): its
    first line goes in masked, and decides the status unless ``status`` is given."""
    current = _scope.get() or Scope(schedule=os.environ.get(SCHEDULE_ENV, ""))
    if error is None:
        status, code = status or "ok", 0 if exit_code is None else exit_code
    else:
        code = exit_code if exit_code is not None else getattr(error, "exit_code", 1)
        status = status or ("bad input" if code == 2 else "failed")
    started = started if started.tzinfo else started.astimezone()
    stem = Path(notebook).stem if notebook else f"{runbook.topic}-{runbook.name}-{started:%Y%m%d-%H%M%S}"
    rec = RunRecord(id=stem, runbook=runbook.id, target=target_of(values),
                    started=started.isoformat(timespec="seconds"), seconds=round(seconds, 3), status=status,
                    exit_code=code, parameters=masked_parameters(runbook, values),
                    error=_error_text(error) if error is not None else "",
                    notebook=str(notebook) if notebook and Path(notebook).exists() else "",
                    html=str(html) if html else "", attempt=current.attempt, schedule=current.schedule,
                    host=socket.gethostname())
    try:
        return save(rec)
    except OSError as exc:  # a record that cannot be written must not hide how the run itself went
        import sys
        print(f"kubebook: run record not written to {paths.runs_root()}: {exc.strerror}", file=sys.stderr)
        return rec


def _error_text(error: BaseException) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(error).__name__}: {error}"
    return one_line(text)


def update(rec: RunRecord, **changes: Any) -> RunRecord:
    """Change fields of a written record (e.g. status "drift" after a comparison) and rewrite it."""
    for name, value in changes.items():
        setattr(rec, name, value)
    write_private(rec.path, rec.to_json())
    return rec


# ---- reading ------------------------------------------------------------------------------------
# Records already read by this process, by path, with the file's (inode, mtime, size) then.
# Every save applies retention, which lists the directory: a scheduler or a test that runs
# thousands of times would otherwise parse every record again on each run (measured: 95 ms a run
# with 2,150 records on disk). kubebook replaces a record (write_private renames a new file over
# it), so a changed file has a new inode, which the directory listing gives without a stat; a
# record that is returned is also stat'ed, for an edit made in place. The inode kept is the
# listing's (on overlayfs it can differ from stat's), so the two are always compared like for like.
_read: dict[str, tuple[tuple[int, int, int], RunRecord]] = {}


def _stamp(entry: os.DirEntry) -> tuple[int, int, int]:
    st = entry.stat()
    return entry.inode(), st.st_mtime_ns, st.st_size


def all_records(*, runbook: str = "") -> list[RunRecord]:
    """Every readable record (of ``runbook``, if given), oldest first by start time. Each is a copy:
    setting its fields does not change what the next call returns."""
    directory = paths.runs_root()
    try:
        entries = [e for e in os.scandir(directory) if e.name.endswith(".json")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    listed = {e.path for e in entries}
    for gone in [p for p in _read if os.path.dirname(p) == str(directory) and p not in listed]:
        del _read[gone]  # removed by another process (its retention, or by hand)
    found = []
    for entry in entries:
        try:
            known = _read.get(entry.path)
            if known is not None and known[0][0] == entry.inode() and (
                    (runbook and known[1].runbook != runbook) or known[0] == _stamp(entry)):
                rec = known[1]
            else:
                stamp = _stamp(entry)
                rec = RunRecord.from_file(Path(entry.path))
                _read[entry.path] = (stamp, rec)
        except (ValueError, TypeError, OSError):
            _read.pop(entry.path, None)
            continue  # a file that is not a record (or half of one) is not a run
        if not runbook or rec.runbook == runbook:
            found.append(copy.copy(rec))
    return sorted(found, key=lambda r: (r.started, r.id))


def select(*, runbook: str = "", target: str = "", failed: bool = False, status: str = "") -> list[RunRecord]:
    out = all_records(runbook=runbook.removesuffix(".ipynb"))
    if target:
        out = [r for r in out if r.target == target]
    if failed:
        out = [r for r in out if r.exit_code != 0]
    if status:
        out = [r for r in out if r.status == status]
    return out


def table(*, runbook: str = "", failed: bool = False, last: int = 0):
    """Records as a table, newest last (``kubebook runs``)."""
    import pandas as pd
    rows = [r.row() for r in select(runbook=runbook, failed=failed)]
    frame = pd.DataFrame(rows, columns=["run", "runbook", "target", "started", "seconds", "status", "exit code",
                                        "attempt", "schedule", "error", "notebook"])
    return frame.tail(last).reset_index(drop=True) if last else frame


def find(ref: str) -> RunRecord:
    """A record by id (``auth-cluster-admin-audit-20250101-120000``), by path (of the record or of its
    notebook), or as ``RUNBOOK~N``: the N-th newest run of RUNBOOK (``~0`` the newest, ``~1`` the one before)."""
    if "~" in ref:
        book, _, back = ref.rpartition("~")
        if back.isdigit():
            runs = select(runbook=book)
            if int(back) >= len(runs):
                raise RecordNotFound(f"{ref}: {book} has {len(runs)} recorded run(s)")
            return runs[-1 - int(back)]
    as_path = Path(ref).expanduser()
    if as_path.suffix == ".json" and as_path.is_file():
        return RunRecord.from_file(as_path)
    for rec in reversed(all_records()):
        if rec.id == ref or (ref.endswith(".ipynb") and rec.notebook and
                             Path(rec.notebook).resolve() == as_path.resolve()):
            return rec
    raise RecordNotFound(f"no run record {ref!r}: `kubebook runs` lists them")


def previous(rec: RunRecord, *, ok_only: bool = True) -> RunRecord | None:
    """The run of the same runbook on the same target just before ``rec``."""
    earlier = [r for r in select(runbook=rec.runbook, target=rec.target)
               if (r.started, r.id) < (rec.started, rec.id) and (r.status in ("ok", "drift") or not ok_only)]
    return earlier[-1] if earlier else None


# ---- retention ----------------------------------------------------------------------------------
def prune(runbook: str, *, keep: int) -> list[str]:
    """Remove records of ``runbook`` beyond the newest ``keep``, and the local notebook and HTML each
    of those runs wrote (outputs on object storage are the store's to expire). Returns their ids."""
    if keep < 1:
        raise KubebookError("run retention must keep at least 1 record")
    old = select(runbook=runbook)[:-keep]
    for rec in old:
        for output in (rec.notebook, rec.html):
            if output and "://" not in output:
                Path(output).unlink(missing_ok=True)
        Path(rec.path).unlink(missing_ok=True)
        _read.pop(rec.path, None)
    return [r.id for r in old]


def prune_all(*, keep: int) -> dict[str, list[str]]:
    """:func:`prune` for every runbook with records; the ids removed, by runbook (only those with any)."""
    removed = {book: prune(book, keep=keep) for book in sorted({r.runbook for r in all_records()})}
    return {book: ids for book, ids in removed.items() if ids}
