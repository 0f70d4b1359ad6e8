"""Running a runbook with nobody watching: retries for transient failures, drift rules, alerts.

``kubebook run`` goes through :func:`run`, by hand or from a schedule:

- **retries**: a run that failed for a reason that may pass (connection refused, a 5xx or 429
  from the apiserver, a timeout, etcd unavailable) is run again, up to ``retries`` more times,
  ``retry_delay`` seconds apart. Bad input (exit 2), a refused ``confirm``, Forbidden and other
  4xx answers are never retried: running again cannot change them.
- **records**: every attempt leaves a run record (:mod:`kubebook.records`); a schedule's job also
  keeps its records in a ConfigMap, since its Pod's files go with the Pod.
- **drift**: with ``fail_on`` rules, a successful run is compared with the previous successful
  run of the same runbook on the same target; a match makes the exit code 3.
- **alerts**: ``notify`` is a webhook URL that gets one JSON summary (masked) after the last
  attempt: on failure, or on every outcome with ``notify_on="always"``.
- **outputs elsewhere**: an ``output_dir`` such as ``s3://bucket/runs`` is written through
  papermill's own I/O handlers, where the user has installed them.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from . import drift, records, runner
from .errors import KubebookError, ParameterError, RunbookFailed, RunbookNotFound
from .safety import mask, mask_text

NOTIFY_ON = ("failure", "always")
RECORDS_IN_CONFIGMAP = 20   # a ConfigMap holds at most 1 MiB; records are about 1 KiB each

# Exceptions whose name alone says "try again later"; the rest are judged by their message.
TRANSIENT_NAMES = frozenset({
    "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError", "TimeoutError",
    "MaxRetryError", "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ProtocolError",
    "RemoteDisconnected", "IncompleteRead", "WaitTimeout",
})
NEVER_NAMES = frozenset({"ParameterError", "ConfirmationRequired", "RunbookNotFound", "KeyboardInterrupt"})
_TRANSIENT_TEXT = re.compile(
    r"connection refused|connection reset|timed out|timeout|max retries exceeded|temporarily unavailable|"
    r"statuscode\.unavailable|statuscode\.deadline_exceeded|service unavailable|too many requests", re.I)
_HTTP_STATUS = re.compile(r"\((\d{3})\)\s*Reason:")


def transient(ename: str, evalue: str) -> bool:
    """Whether a failure (an exception's name and message) may pass if the run is tried again."""
    if ename in NEVER_NAMES:
        return False
    status = _HTTP_STATUS.search(evalue or "")
    if status:
        code = int(status.group(1))
        return code >= 500 or code == 429
    return ename in TRANSIENT_NAMES or bool(_TRANSIENT_TEXT.search(f"{ename}: {evalue}"))


@dataclass
class Outcome:
    runbook: str
    exit_code: int
    status: str
    attempts: int
    record: records.RunRecord | None = None
    message: str = ""                               # one line, for stderr when the run did not succeed
    lines: list[str] = field(default_factory=list)  # what to print on stdout
    notified: str = ""                              # "", "sent", or why it was not


def _stand_in(ref: str):
    """A runbook that could not be loaded, as much of one as its record needs."""
    topic, _, name = ref.removesuffix(".ipynb").rpartition("/")
    return SimpleNamespace(id=ref, topic=Path(topic).name or "unknown", name=name or ref, parameters={})


def _is_url(location: str | Path) -> bool:
    return "://" in str(location)


def run(ref: str, values: dict[str, Any], *, output_dir: str | Path = "runs", retries: int = 0,
        retry_delay: float = 30.0, notify: str = "", notify_on: str = "failure", fail_on: tuple[str, ...] = (),
        record_configmap: str = "", progress: bool = True, lab_name: str = "",
        sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None) -> Outcome:
    """Run the runbook ``ref`` (``topic/name`` or a path) as an unattended job would; never raises
    for the run's own failures: the outcome carries the exit code (0 ok, 1 failed, 2 bad input, 3 drift)."""
    log = log or (lambda m: print(m, file=sys.stderr))
    if retries < 0 or not (retry_delay >= 0 and retry_delay != float("inf")):
        raise ParameterError("--retries must be ≥ 0 and --retry-delay a finite number of seconds ≥ 0")
    if notify_on not in NOTIFY_ON:
        raise ParameterError(f"--notify-on {notify_on!r}: use one of {', '.join(NOTIFY_ON)}")
    rules = [drift.Rule.parse(r) for r in fail_on]   # a bad rule is bad input: before any run
    namespace, _, configmap = record_configmap.partition("/")
    if record_configmap and not (namespace and configmap):
        raise ParameterError(f"--record-configmap {record_configmap!r}: write NAMESPACE/NAME")

    attempt, outcome = 0, None
    while True:
        attempt += 1
        outcome = _attempt(ref, values, attempt=attempt, output_dir=output_dir, progress=progress,
                           lab_name=lab_name)
        if outcome.exit_code == 0 or attempt > retries or not outcome.status.startswith("transient"):
            break
        log(f"kubebook: attempt {attempt} of {retries + 1} failed ({outcome.message}); "
            f"retrying in {retry_delay:g}s")
        sleep(retry_delay)
    outcome.attempts = attempt
    outcome.status = outcome.status.removeprefix("transient ")
    if outcome.exit_code == 0 and rules and outcome.record is not None:
        _check_drift(outcome, rules)
    if record_configmap and outcome.record is not None:
        _keep_in_configmap(outcome, namespace, configmap, values)
    if notify and (outcome.exit_code != 0 or notify_on == "always"):
        outcome.notified = send(notify, summary(outcome))
        if outcome.notified != "sent":
            log(f"kubebook: alert not delivered to the webhook: {outcome.notified}")
    return outcome


def _attempt(ref: str, values: dict, *, attempt: int, output_dir, progress: bool, lab_name: str) -> Outcome:
    started = dt.datetime.now().astimezone()
    with records.scope(attempt=attempt) as scope:
        book = None
        try:
            book = runner.find(ref)
            if lab_name:
                from . import lab as labs
                values = {**runner.lab_values(book, labs.get(lab_name)), **values}
            staging = Path(tempfile.mkdtemp(prefix="kubebook-run-")) if _is_url(output_dir) else None
            try:
                result = runner.run(book, values, output_dir=staging or output_dir, progress=progress)
                rec = _last(scope)
                if staging is not None and rec is not None:
                    _upload(rec, output_dir)
            finally:
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
            lines = [f"{result.runbook}: ok in {result.seconds:.1f}s"]
            if rec is not None:
                lines += [f"notebook: {rec.notebook}", f"html: {rec.html}", f"record: {rec.path}"]
            return Outcome(book.id, 0, "ok", attempt, rec, lines=lines)
        except (ParameterError, RunbookNotFound) as exc:
            rec = _record_unrun(book or _stand_in(ref), values, started, exc, scope)
            return Outcome((book or _stand_in(ref)).id, exc.exit_code, "bad input", attempt, rec, str(exc))
        except RunbookFailed as exc:
            rec = _last(scope)
            if rec is not None and _is_url(output_dir):
                _upload(rec, output_dir)
            kind = "transient failed" if transient(exc.ename or "", exc.evalue or "") else "failed"
            lines = [f"executed notebook: {rec.notebook if rec else exc.output_path}"]
            lines += [f"record: {rec.path}"] if rec else []
            return Outcome(book.id, exc.exit_code, kind, attempt, rec, records.one_line(str(exc)), lines=lines)
        except KubebookError as exc:
            rec = _record_unrun(book or _stand_in(ref), values, started, exc, scope)
            return Outcome((book or _stand_in(ref)).id, exc.exit_code, "failed", attempt, rec,
                           mask_text(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a kernel that died, an I/O error: recorded, then reported
            rec = _record_unrun(book or _stand_in(ref), values, started, exc, scope)
            kind = "transient failed" if transient(type(exc).__name__, str(exc)) else "failed"
            return Outcome((book or _stand_in(ref)).id, 1, kind, attempt, rec,
                           records.one_line(f"{type(exc).__name__}: {exc}"))


def _last(scope: records.Scope) -> records.RunRecord | None:
    return records.RunRecord.from_file(scope.written[-1]) if scope.written else None


def _record_unrun(book, values: dict, started: dt.datetime, exc: BaseException,
                  scope: records.Scope) -> records.RunRecord:
    """The record of an attempt that stopped before (or outside) the runner's own record."""
    if scope.written:
        return _last(scope)
    seconds = (dt.datetime.now().astimezone() - started).total_seconds()
    return records.record(book, values, started=started, seconds=seconds, notebook=None, html=None,
                          error=exc, exit_code=getattr(exc, "exit_code", 1))


# ---- outputs through papermill's I/O handlers ---------------------------------------------------
def _upload(rec: records.RunRecord, destination: str | Path) -> None:
    """Copy a run's notebook and HTML to ``destination`` (s3://, gs://, abfs://... as papermill knows
    them) and point the record there; the local staging copies go."""
    from papermill.iorw import papermill_io
    base = str(destination).rstrip("/")
    moved = {}
    for name in ("notebook", "html"):
        local = getattr(rec, name)
        if not local or _is_url(local) or not Path(local).is_file():
            continue
        remote = f"{base}/{Path(local).name}"
        papermill_io.write(Path(local).read_text(), remote, extensions=[".ipynb", ".html"])
        moved[name] = remote
    records.update(rec, **moved)


# ---- drift --------------------------------------------------------------------------------------
def _check_drift(outcome: Outcome, rules: list[drift.Rule]) -> None:
    rec = outcome.record
    before = records.previous(rec)
    if before is None:
        outcome.lines.append(f"drift: no earlier successful run of {rec.runbook} on {rec.target} to compare with")
        return
    changes = drift.between(before.notebook, rec.notebook)
    matched = drift.check(changes, rules)
    if not len(matched):
        outcome.lines.append(f"drift: none matching {', '.join(map(str, rules))} since {before.id}")
        return
    lines = drift.summary(matched)
    records.update(rec, status="drift", exit_code=drift.DriftFound.exit_code, drift=lines)
    outcome.exit_code, outcome.status = drift.DriftFound.exit_code, "drift"
    outcome.message = f"drift since {before.id}: " + " | ".join(lines)


# ---- records kept in the cluster ----------------------------------------------------------------
def _keep_in_configmap(outcome: Outcome, namespace: str, name: str, values: dict) -> None:
    """Add the run's record to the schedule's ConfigMap (the job may get and update that one only)."""
    from .schedule import history
    try:
        history.append(namespace, name, outcome.record, kubeconfig=values.get("kubeconfig") or "",
                       context=values.get("context") or "", keep=RECORDS_IN_CONFIGMAP)
        outcome.lines.append(f"record kept in ConfigMap {namespace}/{name}")
    except KubebookError as exc:
        message = f"run record not kept in ConfigMap {namespace}/{name}: {exc}"
        records.update(outcome.record, status="failed", exit_code=1,
                       error=records.one_line(f"{outcome.record.error}; {message}" if outcome.record.error
                                              else message))
        outcome.exit_code, outcome.status = 1, "failed"
        outcome.message = records.one_line(message)


# ---- alerts -------------------------------------------------------------------------------------
def summary(outcome: Outcome) -> dict:
    """What an alert says: runbook, target, status, exit code, attempts, masked error, record path."""
    rec = outcome.record
    body = {"runbook": outcome.runbook, "target": rec.target if rec else "", "status": outcome.status,
            "exit_code": outcome.exit_code, "attempts": outcome.attempts,
            "error": outcome.message or (rec.error if rec else ""), "record": rec.path if rec else "",
            "notebook": rec.notebook if rec else "", "started": rec.started if rec else "",
            "host": rec.host if rec else "", "schedule": rec.schedule if rec else "",
            "drift": rec.drift if rec else []}
    return mask(body)


def send(url: str, body: dict, *, timeout: float = 10.0) -> str:
    """POST ``body`` as JSON to ``url``; "sent", or why not (an alert never changes the run's outcome)."""
    if not re.match(r"^https?://", url):
        return f"{url!r} is not an http(s) URL"
    data = json.dumps(mask(body), default=str).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "kubebook"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return "sent" if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return mask_text(str(getattr(exc, "reason", exc)))


# ---- inputs of an unattended run ----------------------------------------------------------------
def parameters_file(path: str | None) -> dict[str, Any]:
    """Parameters from a YAML mapping (where schedules keep secret values: a 0400 Secret file), or {}."""
    if not path:
        return {}
    import yaml
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"--parameters-file {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"--parameters-file {path}: a mapping of NAME: VALUE is needed")
    return {str(k): v for k, v in data.items()}


def notify_url(value: str) -> str:
    """The webhook URL: as given, or read from a file with ``@FILE`` (a schedule's Secret file)."""
    if not value.startswith("@"):
        return value
    try:
        return Path(value[1:]).expanduser().read_text().strip()
    except OSError as exc:
        raise ParameterError(f"--notify {value}: {exc.strerror}") from None
