"""Finding, validating and running runbooks (papermill underneath).

A runbook is ``runbooks/<topic>/<lab>.ipynb`` with a markdown title cell whose first line
after the heading is its purpose, and one cell tagged ``parameters`` declaring typed parameters
(see :mod:`kubebook.parameters`)::

    from kubebook.parameters import *  # parameter types; values are checked before any other cell runs
    namespace: Namespace = "kubebook-demo"   # namespace to act on
    replicas: Count = 3                      # how many Pods
    snapshot: File = None                    # required: a default of None

Parameters are checked before any kernel starts: an unknown name, a value that does not fit
the declared type, or a missing required value raises :class:`ParameterError` (exit 2). Secret
parameters travel out of band (a 0600 file named in the kernel's environment, removed after the
run); the notebook shows ``***``. Executed notebooks and their HTML copies are written 0600.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import parameters as params_mod, paths, records, safety
from .errors import ConfirmationRequired, ParameterError, RunbookFailed, RunbookNotFound
from .parameters import Parameter

RUN_ID_ENV = "KUBEBOOK_RUN_ID"
# How long a finished cell's last outputs may take to arrive. papermill fails the cell after nbclient's
# 4 s, which a loaded machine (a classroom's labs, a CI runner) exceeds for a widget's first render.
IOPUB_TIMEOUT = 60


def runbooks_root() -> Path:
    env = os.environ.get("KUBEBOOK_RUNBOOKS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "runbooks"


@dataclass(frozen=True)
class Runbook:
    path: Path
    topic: str
    name: str
    purpose: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    # values that make the runbook act on the kubebook lab (notebook metadata kubebook.lab_parameters)
    lab_defaults: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # the notebook's metadata.kubebook
    # what a scheduled run may do, as RBAC rules (notebook metadata kubebook.permissions; None: not
    # declared, so it cannot be scheduled), and where its job must run (kubebook.job: control-plane
    # placement, host paths); see kubebook.schedule
    permissions: tuple[dict, ...] | None = None
    job: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.topic}/{self.name}"

    @property
    def secret_parameters(self) -> list[str]:
        return [p.name for p in self.parameters.values() if p.secret]

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        """Converted parameter values; raises ParameterError on the first problem found."""
        return params_mod.validate(self.parameters, values, where=self.id)

    def describe(self) -> dict:
        return {"runbook": self.id, "topic": self.topic, "purpose": self.purpose, "path": str(self.path),
                "kind": self.metadata.get("kind", "runbook"),
                "parameters": [{"name": p.name, "type": p.type.name, "default": p.default, "help": p.help,
                                "required": p.required, "secret": p.secret} for p in self.parameters.values()]}


def _purpose(nb: dict) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            lines = [l.strip() for l in "".join(cell.get("source", "")).splitlines() if l.strip()]
            body = [l for l in lines if not l.startswith("#")]
            return body[0] if body else (lines[0].lstrip("# ") if lines else "")
    return ""


def parameters_cell(nb: dict) -> dict | None:
    return next((c for c in nb.get("cells", []) if "parameters" in (c.get("metadata", {}).get("tags") or [])), None)


def load(path: str | Path) -> Runbook:
    """Read a runbook's purpose and typed parameters (from its ``parameters`` cell)."""
    path = Path(path)
    if not path.is_file():
        raise RunbookNotFound(f"runbook not found: {path}")
    nb = json.loads(path.read_text())
    cell = parameters_cell(nb)
    try:
        declared = params_mod.declarations("".join(cell["source"])) if cell else {}
    except ParameterError as exc:
        raise ParameterError(f"{path.parent.name}/{path.stem}: {exc}") from None
    meta = nb.get("metadata", {}).get("kubebook", {})
    return Runbook(path=path, topic=path.parent.name, name=path.stem, purpose=_purpose(nb), parameters=declared,
                   lab_defaults=meta.get("lab_parameters", {}), metadata=meta, job=meta.get("job", {}),
                   permissions=tuple(meta["permissions"]) if "permissions" in meta else None)


def lab_values(runbook: Runbook, lab) -> dict[str, Any]:
    """Parameters that point ``runbook`` at ``lab`` (a :class:`kubebook.lab.Lab`), as the demo and tests run it."""
    cluster = {"lab": lab.name} if "lab" in runbook.parameters else \
        {"kubeconfig": str(lab.kubeconfig), "context": lab.context}
    candidates = {**cluster, **runbook.lab_defaults}
    return {k: v for k, v in candidates.items() if k in runbook.parameters}


def discover(root: Path | None = None) -> list[Runbook]:
    root = root or runbooks_root()
    return [load(p) for p in sorted(root.glob("*/*.ipynb")) if ".ipynb_checkpoints" not in p.parts]


def find(name: str, root: Path | None = None) -> Runbook:
    """A runbook by path or by ``topic/name`` (``etcd/operations``)."""
    as_path = Path(name)
    if as_path.suffix == ".ipynb" and as_path.is_file():
        return load(as_path)
    root = root or runbooks_root()
    candidate = root / (name.removesuffix(".ipynb") + ".ipynb")
    if candidate.is_file():
        return load(candidate)
    known = ", ".join(r.id for r in discover(root))
    raise RunbookNotFound(f"unknown runbook {name!r} (known: {known})")


@dataclass(frozen=True)
class RunResult:
    runbook: str
    status: str
    seconds: float
    notebook: Path
    html: Path | None
    error: str = ""
    run_id: str = ""


def new_run_id(runbook: Runbook) -> str:
    """A run's identity: recorded on every object it creates and in its backups' directory name."""
    return f"{runbook.topic}-{runbook.name}-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def _out_of_band(secrets: dict[str, Any], run_id: str) -> Iterator[None]:
    """The kernel's environment for one run: its id, and the secret values in a 0600 file that
    exists only while the run does (the kernel inherits the environment when papermill starts it)."""
    saved = {k: os.environ.get(k) for k in (params_mod.SECRETS_FILE_ENV, RUN_ID_ENV)}
    directory = Path(tempfile.mkdtemp(prefix="kubebook-secrets-"))  # 0700
    try:
        os.environ[RUN_ID_ENV] = run_id
        if secrets:
            secrets_file = safety.write_private(directory / "secrets.json", json.dumps(secrets))
            os.environ[params_mod.SECRETS_FILE_ENV] = str(secrets_file)
        else:
            os.environ.pop(params_mod.SECRETS_FILE_ENV, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def read_secrets_file(path: str | os.PathLike) -> dict[str, Any]:
    """Secret parameter values from a JSON or YAML file (``kubebook run --secrets-file``)."""
    import yaml
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"secrets file {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"secrets file {path}: not a mapping of parameter names to values")
    if path.stat().st_mode & 0o077:
        raise ParameterError(f"secrets file {path} can be read by others: chmod 600 {path}")
    return data


def _scrub_file(path: Path, secrets: list[str]) -> None:
    """Replace any secret value still in the notebook at ``path`` (belt and braces: the kernel masks
    its outputs). It replaces inside the notebook's strings, never in its JSON text: a value like
    ``"1.27"`` also occurs inside numbers (a cell's duration), and masking there broke the file."""
    if not path.is_file() or not secrets:
        return
    ordered = sorted(secrets, key=len, reverse=True)

    def scrub(node: Any) -> Any:
        if isinstance(node, str):
            for secret in ordered:
                node = node.replace(secret, safety.masked(secret))
            return node
        if isinstance(node, list):
            return [scrub(item) for item in node]
        if isinstance(node, dict):
            return {scrub(key): scrub(value) for key, value in node.items()}
        return node
    text = path.read_text()
    try:
        notebook = json.loads(text)
    except ValueError:  # papermill stopped mid-write: no notebook to keep intact, only text to clean
        cleaned_text = scrub(text)
        if cleaned_text != text:
            safety.write_private(path, cleaned_text)
        return
    cleaned = scrub(notebook)
    if cleaned != notebook:
        # nbformat's own layout, so the file reads (and diffs) as papermill wrote it
        safety.write_private(path, json.dumps(cleaned, sort_keys=True, indent=1, ensure_ascii=False) + "\n")


def _secret_strings(secrets: dict[str, Any]) -> list[str]:
    found = []
    for value in secrets.values():
        items = value.values() if isinstance(value, dict) else [value]
        found += [str(v) for v in items if isinstance(v, (str, int, float)) and len(str(v)) >= 4]
    return found


def run(runbook: Runbook, values: dict[str, Any], *, output_dir: str | Path = "runs",
        kernel_name: str | None = None, progress: bool = True, timestamp: str | None = None) -> RunResult:
    """Validate ``values``, execute the runbook, and write the executed notebook plus an HTML copy.

    Raises ParameterError before anything runs; RunbookFailed (with the output path) if a cell failed.
    Both files are 0600 in a directory created 0700.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    params = runbook.validate(values)
    secrets = {name: v for name, v in params.items() if runbook.parameters[name].secret and v not in ("", None)}
    injected = {name: params_mod.placeholder(runbook.parameters[name], v) if name in secrets else v
                for name, v in params.items()}
    output_dir = paths.private_dir(output_dir)
    stamp = timestamp or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = output_dir / f"{runbook.topic}-{runbook.name}-{stamp}.ipynb"
    safety.write_private(out, "")  # papermill truncates and rewrites it: the mode stays 0600
    run_id = new_run_id(runbook)
    started = dt.datetime.now()
    error: PapermillExecutionError | None = None
    with _out_of_band(secrets, run_id):
        try:
            papermill.execute_notebook(str(runbook.path), str(out), parameters=injected, kernel_name=kernel_name,
                                       progress_bar=progress, cwd=str(runbook.path.parent),
                                       kernel_manager_class=_kernel_manager_class(),
                                       iopub_timeout=IOPUB_TIMEOUT)
        except PapermillExecutionError as exc:
            error = exc
    seconds = (dt.datetime.now() - started).total_seconds()
    _scrub_file(out, _secret_strings(secrets))
    html = _to_html(out)
    records.record(runbook, params, started=started, seconds=seconds, notebook=out, html=html, error=error)
    if error is not None:
        kind = ParameterError if error.ename in ("InvalidParameter", "ParameterError") else \
            ConfirmationRequired if error.ename == "ConfirmationRequired" else None
        message = f"{runbook.id}: cell {error.exec_count} failed: {error.ename}: {error.evalue}".strip()
        failure = RunbookFailed(message, output_path=str(out), cell_index=error.cell_index, ename=error.ename,
                                evalue=error.evalue)
        if kind is not None:
            failure.exit_code = kind.exit_code
        raise failure
    return RunResult(runbook.id, "ok", seconds, out, html, run_id=run_id)


def _kernel_manager_class():
    """Kernels talk to papermill over Unix sockets in the Jupyter runtime directory (0700), not
    TCP on loopback: no port to guard, and ipykernel has no transport warning to print."""
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class LocalSocketKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            # jupyter_client's default may be the relative "kernel-ipc" (when asked before the connection
            # file is named), so kernels started together in one directory would share sockets: each
            # kernel gets its own path in the runtime directory instead
            from jupyter_core.paths import jupyter_runtime_dir
            runtime = paths.private_dir(jupyter_runtime_dir())
            return str(runtime / f"kubebook-{uuid.uuid4().hex[:12]}-ipc")

    return LocalSocketKernelManager


def _to_html(notebook: Path) -> Path | None:
    if not notebook.is_file():
        return None
    import nbformat
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    return safety.write_private(notebook.with_suffix(".html"), body)
