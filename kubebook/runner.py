"""Finding, validating and running runbooks (papermill underneath).

A runbook is ``runbooks/<topic>/<lab>.ipynb`` with a markdown title cell whose first line
after the heading is its purpose, and one cell tagged ``parameters``::

    namespace: str = "luffy"   # namespace to act on
    replicas: int = 3          # how many Pods
    context: str = ""          # kubeconfig context ("": the current one)
    snapshot: str = None       # required: a default of None on a non-optional type

Parameters are checked before any kernel starts: an unknown name, a value that does not
convert to the declared type, or a missing required value raises :class:`ParameterError`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ParameterError, RunbookFailed, RunbookNotFound

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def runbooks_root() -> Path:
    env = os.environ.get("KUBEBOOK_RUNBOOKS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "runbooks"


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    help: str

    @property
    def optional(self) -> bool:
        return "None" in self.type or "Optional" in self.type

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional

    @property
    def base_type(self) -> str:
        """``str | None`` → ``str``; ``list[str]`` → ``list``."""
        parts = [p.strip() for p in re.split(r"\|", self.type.replace("Optional[", "").rstrip("]"))]
        base = next((p for p in parts if p and p != "None"), "str")
        return base.split("[")[0]

    def convert(self, value: Any) -> Any:
        """``value`` (a CLI string or a Python value) as this parameter's type, or ParameterError."""
        if value is None:
            if self.optional:
                return None
            raise ParameterError(f"parameter {self.name}: a value of type {self.type} is required")
        kind = self.base_type
        try:
            if kind == "bool":
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
                raise ValueError
            if kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value) if not isinstance(value, str) else int(value.strip(), 0)
            if kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            if kind in ("list", "dict"):
                if kind == "list" and isinstance(value, str) and not value.lstrip().startswith("["):
                    parsed = [v.strip() for v in value.split(",") if v.strip()]  # a,b,c
                else:
                    parsed = json.loads(value) if isinstance(value, str) else value
                if not isinstance(parsed, list if kind == "list" else dict):
                    raise ValueError
                return parsed
            if kind == "str":
                if not isinstance(value, str):
                    raise ValueError
                return value
        except (ValueError, TypeError, json.JSONDecodeError):
            raise ParameterError(f"parameter {self.name}: {value!r} is not a valid {self.type}") from None
        return value


@dataclass(frozen=True)
class Runbook:
    path: Path
    topic: str
    name: str
    purpose: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    # values that make the runbook act on the kubebook lab (notebook metadata kubebook.lab_parameters)
    lab_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.topic}/{self.name}"

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        """Converted parameter values; raises ParameterError on the first problem found."""
        unknown = sorted(set(values) - set(self.parameters))
        if unknown:
            raise ParameterError(f"{self.id}: unknown parameter {unknown[0]!r} "
                                 f"(known: {', '.join(self.parameters)})")
        converted = {name: self.parameters[name].convert(v) for name, v in values.items()}
        missing = [p.name for p in self.parameters.values() if p.required and p.name not in converted]
        if missing:
            raise ParameterError(f"{self.id}: missing required parameter {missing[0]!r} "
                                 f"({self.parameters[missing[0]].help})")
        return converted

    def describe(self) -> dict:
        return {"runbook": self.id, "topic": self.topic, "purpose": self.purpose, "path": str(self.path),
                "parameters": [{"name": p.name, "type": p.type, "default": p.default, "help": p.help,
                                "required": p.required} for p in self.parameters.values()]}


def _purpose(nb: dict) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            lines = [l.strip() for l in "".join(cell.get("source", "")).splitlines() if l.strip()]
            body = [l for l in lines if not l.startswith("#")]
            return body[0] if body else (lines[0].lstrip("# ") if lines else "")
    return ""


def load(path: str | Path) -> Runbook:
    """Read a runbook's purpose and typed parameters (papermill's inspection)."""
    import papermill
    path = Path(path)
    if not path.is_file():
        raise RunbookNotFound(f"runbook not found: {path}")
    nb = json.loads(path.read_text())
    params = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        params[name] = Parameter(name=name, type=info.get("inferred_type_name") or "str",
                                 default=_literal(info.get("default")), help=info.get("help") or "")
    lab_defaults = nb.get("metadata", {}).get("kubebook", {}).get("lab_parameters", {})
    return Runbook(path=path, topic=path.parent.name, name=path.stem, purpose=_purpose(nb), parameters=params,
                   lab_defaults=lab_defaults)


def lab_values(runbook: Runbook, lab) -> dict[str, Any]:
    """Parameters that point ``runbook`` at ``lab`` (a :class:`kubebook.lab.Lab`), as the demo and tests run it."""
    candidates = {"lab": lab.name, "kubeconfig": str(lab.kubeconfig), "context": lab.context,
                  **runbook.lab_defaults}
    return {k: v for k, v in candidates.items() if k in runbook.parameters}


def _literal(text: str | None) -> Any:
    import ast
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


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


def run(runbook: Runbook, values: dict[str, Any], *, output_dir: str | Path = "runs",
        kernel_name: str | None = None, progress: bool = True, timestamp: str | None = None) -> RunResult:
    """Validate ``values``, execute the runbook, and write the executed notebook plus an HTML copy.

    Raises ParameterError before anything runs; RunbookFailed (with the output path) if a cell failed.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    params = runbook.validate(values)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = timestamp or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = output_dir / f"{runbook.topic}-{runbook.name}-{stamp}.ipynb"
    started = dt.datetime.now()
    error: PapermillExecutionError | None = None
    try:
        papermill.execute_notebook(str(runbook.path), str(out), parameters=params, kernel_name=kernel_name,
                                   progress_bar=progress, cwd=str(runbook.path.parent))
    except PapermillExecutionError as exc:
        error = exc
    seconds = (dt.datetime.now() - started).total_seconds()
    html = _to_html(out)
    if error is not None:
        raise RunbookFailed(f"{runbook.id}: cell {error.exec_count} failed: {error.ename}: "
                            f"{error.evalue}".strip(), output_path=str(out), cell_index=error.cell_index,
                            ename=error.ename, evalue=error.evalue)
    return RunResult(runbook.id, "ok", seconds, out, html)


def _to_html(notebook: Path) -> Path | None:
    if not notebook.is_file():
        return None
    import nbformat
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    html = notebook.with_suffix(".html")
    html.write_text(body)
    return html
