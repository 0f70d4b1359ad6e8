"""The helm CLI bound to one cluster and namespace: runs helm, reads its JSON, and never puts a value
on a command line.

Every cluster command names its cluster explicitly (``--kubeconfig``/``--kube-context``, resolved
by :func:`kubebook.connect.target`, the one policy), so a runbook never acts on whatever context is
current. Helm's cache/config/data directories are kubebook's (``<cache>/helm``) unless ``home``
says otherwise, so the user's ``~/.config/helm`` (repositories, logins) is left alone.

Values (``{"image.tag": "1.27", "auth.adminPassword": ...}``: helm paths or nested maps) reach
helm only in a values file written 0600 in a 0700 directory for the one command and removed after
it, passed as the *last* ``-f`` (where ``--set`` would sit, so it wins over every other file).
``ps``/``/proc`` show ``-f <file>``, never a value; the commands kubebook shows say
``-f values.yaml`` and name the keys only. This module knows nothing of plans: see
:mod:`kubebook.helm.release` for changes under a plan's rules.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd
import yaml

from .. import paths
from ..errors import KubebookError
from ..safety import mask_text, write_private
from .manifests import release_summary

_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PATH_PART = re.compile(r"^(?P<key>[^\[\]]+)(?P<index>(\[\d+\])*)$")


class HelmError(KubebookError):
    """helm exited non-zero; the message is helm's own error line (masked), ``command`` what ran."""

    def __init__(self, message: str, *, command: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = ""):
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr


def error_line(stderr: str) -> str:
    """The line that says what went wrong (helm's last ``Error:`` line, without the prefix), masked.

    helm prints warnings and, with --debug, traces before its error; the last ``Error:`` ends it."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    errors = [i for i, l in enumerate(lines) if l.startswith("Error:")]
    if not errors:
        return mask_text(lines[-1] if lines else "helm failed")
    line = lines[errors[-1]][len("Error:"):].strip()
    if line.endswith("occurred:"):  # "N error(s) occurred:" then one "* ..." line per error
        line += " " + "; ".join(l.lstrip("* ") for l in lines[errors[-1] + 1:] if l.startswith("*"))
    return mask_text(line)


def validate_release_name(name: str) -> str:
    """A release name is a DNS-1123 label of at most 53 characters (helm keeps 10 for its Secret names)."""
    if not name or len(name) > 53 or not _RELEASE_NAME.match(name):
        raise KubebookError(f"release name {name!r} is not valid: lowercase letters, digits and '-', "
                            "starting and ending with a letter or digit, at most 53 characters")
    return name


# ---------------------------------------------------------------- values, as a file

def _split_path(path: str) -> list[str | int]:
    """``a.b[0].c`` as ``["a", "b", 0, "c"]`` (``\\.`` is a literal dot), as helm's --set parses it."""
    if not isinstance(path, str) or not path or "=" in path or "," in path:
        raise KubebookError(f"value path {path!r} is not a helm value path (like image.tag)")
    parts: list[str | int] = []
    for raw in re.split(r"(?<!\\)\.", path):
        match = _PATH_PART.match(raw.replace("\\.", "."))
        if not match:
            raise KubebookError(f"value path {path!r} is not a helm value path (like image.tag or hosts[0].name)")
        parts.append(match["key"])
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", match["index"])]
    return parts


def _put(tree: Any, parts: list[str | int], value: Any, path: str) -> Any:
    if not parts:
        if isinstance(tree, dict) and isinstance(value, Mapping):
            return _merged(tree, value)
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(head, int):
        tree = list(tree) if isinstance(tree, list) else []
        tree += [None] * (head + 1 - len(tree))
        tree[head] = _put(tree[head], rest, value, path)
        return tree
    if tree is not None and not isinstance(tree, dict):
        raise KubebookError(f"value path {path!r} goes through a value that is not a map")
    tree = dict(tree or {})
    tree[head] = _put(tree.get(head), rest, value, path)
    return tree


def _merged(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, Mapping) else value
    return out


def nest(values: Mapping[str, Any] | None) -> dict:
    """Values given by helm path, as one nested document (what a values file holds).

    ``{"image.tag": "1.27", "auth": {"adminUser": "admin"}}`` → ``{"image": {"tag": "1.27"}, "auth": {...}}``.
    Top-level keys are paths (as ``--set`` reads them); keys inside a map value are taken as they are
    (``{"nodeSelector": {"kubernetes.io/os": "linux"}}``), and maps are merged key by key."""
    out: dict = {}
    for key, value in (values or {}).items():
        out = _put(out, _split_path(key), value, key)
    return out


@contextlib.contextmanager
def values_file(values: Mapping[str, Any] | None) -> Iterator[list[str]]:
    """``["--values", <file>]`` for the duration of one helm command: ``values`` written 0600 into a
    fresh 0700 directory that is removed afterwards (``[]`` when there are no values)."""
    if not values:
        yield []
        return
    directory = Path(tempfile.mkdtemp(prefix="kubebook-helm-values-"))  # 0700, unpredictable name
    try:
        path = write_private(directory / "values.yaml", yaml.safe_dump(nest(values), sort_keys=False))
        yield ["--values", str(path)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def describe_values(values: Mapping[str, Any] | None, values_files: Sequence = ()) -> str:
    """Where the values come from, naming keys only (never a value)."""
    parts = [f"-f {Path(f).name}" for f in values_files]
    if values:
        parts.append(f"values {', '.join(map(str, values))} (in a 0600 values file)")
    return " and ".join(parts) or "the chart's defaults"


def _files_args(values_files: Sequence[str | os.PathLike]) -> list[str]:
    args: list[str] = []
    for f in values_files:
        if not Path(f).expanduser().is_file():
            raise KubebookError(f"values file not found: {f}")
        args += ["--values", str(Path(f).expanduser())]
    return args


def default_home() -> Path:
    return paths.cache_root() / "helm"


# ---------------------------------------------------------------- the wrapper

@dataclass
class Helm:
    """The helm CLI bound to one cluster (kubeconfig + context, or a kubebook lab) and namespace.

    The cluster is resolved on the first command that needs one, so rendering works offline."""

    kubeconfig: str | os.PathLike | None = None
    context: str | None = None
    namespace: str = "default"
    home: Path | None = None
    binary: Path | None = None
    timeout: float = 300.0
    lab: str = ""

    def __post_init__(self) -> None:
        self._kubeconfig: str | None = None

    # -- plumbing

    def _resolve(self) -> None:
        from ..connect import current_context, target
        resolved = target(self.kubeconfig or "", self.context or "", self.lab or "")
        self._kubeconfig = str(resolved.kubeconfig) if resolved.kubeconfig else ""
        self.context = resolved.context or (current_context(resolved.kubeconfig) if resolved.kubeconfig else None)
        if resolved.kubeconfig and not self.context:
            raise KubebookError(f"kubeconfig {resolved.kubeconfig} has no current context: pass context=...")

    @property
    def kubeconfig_path(self) -> str:
        """The kubeconfig helm gets ("" in a Pod, where helm uses the ServiceAccount itself)."""
        if self._kubeconfig is None:
            self._resolve()
        return self._kubeconfig or ""

    @property
    def kube_context(self) -> str:
        if self._kubeconfig is None:
            self._resolve()
        return self.context or ""

    def env(self) -> dict[str, str]:
        home = Path(self.home) if self.home else default_home()
        return {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                "HELM_DATA_HOME": str(home / "data")}

    def cluster_args(self) -> list[str]:
        kubeconfig, context = self.kubeconfig_path, self.kube_context
        return [*(["--kubeconfig", kubeconfig] if kubeconfig else []),
                *(["--kube-context", context] if context else []), "--namespace", self.namespace]

    def command(self, *args: str, cluster: bool = True) -> list[str]:
        """The full argv: helm, ``args``, then the cluster flags (unless ``cluster=False``)."""
        if self.binary is None:
            from ..binaries import ensure_tool
            self.binary = ensure_tool("helm")
        return [str(self.binary), *args, *(self.cluster_args() if cluster else [])]

    def shell(self, *args: str, cluster: bool = True) -> str:
        """The command a person would type for ``args`` (``helm ... -f values.yaml ...``), for plans and logs."""
        return "helm " + " ".join(shlex.quote(a) for a in self.command(*args, cluster=cluster)[1:])

    def _exec(self, *args: str, cluster: bool = True, cwd: str | os.PathLike | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
        argv = self.command(*args, cluster=cluster)
        try:
            proc = subprocess.run(argv, env=self.env(), cwd=cwd, capture_output=True, text=True,
                                  timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm {args[0]} did not finish in {self.timeout:.0f}s", command=argv) from None
        if check and proc.returncode != 0:
            raise HelmError(f"helm {args[0]}: {error_line(proc.stderr)}", command=argv,
                            returncode=proc.returncode, stderr=mask_text(proc.stderr))
        return proc

    def run(self, *args: str, cluster: bool = True, cwd: str | os.PathLike | None = None) -> str:
        """Run helm; its stdout, or :class:`HelmError` with helm's error line."""
        return self._exec(*args, cluster=cluster, cwd=cwd).stdout

    def run_json(self, *args: str, cluster: bool = True) -> Any:
        return json.loads(self.run(*args, "--output", "json", cluster=cluster) or "null")

    # -- reading releases

    def releases(self, *, all_namespaces: bool = False) -> pd.DataFrame:
        """``helm list --all``: every release (deployed, failed, pending...) as a table."""
        rows = self.run_json("list", "--all", *(["--all-namespaces"] if all_namespaces else [])) or []
        return pd.DataFrame(rows, columns=["name", "namespace", "revision", "updated", "status", "chart",
                                           "app_version"])

    def status(self, release: str) -> dict | None:
        """``helm status`` (revision, status, description, notes masked); None when the release does not exist."""
        proc = self._exec("status", release, "--output", "json", check=False)
        if proc.returncode != 0:
            if "not found" in proc.stderr:
                return None
            raise HelmError(f"helm status: {error_line(proc.stderr)}", returncode=proc.returncode)
        data = json.loads(proc.stdout)
        info = data.get("info") or {}
        return {"name": data.get("name"), "namespace": data.get("namespace"), "revision": data.get("version"),
                "status": info.get("status"), "description": info.get("description"),
                "last_deployed": info.get("last_deployed"), "notes": mask_text(info.get("notes") or "")}

    def exists(self, release: str) -> bool:
        return self.status(release) is not None

    def status_table(self, release: str) -> pd.DataFrame:
        """:meth:`status` as a one-row table (notes left out); empty when the release does not exist."""
        columns = ["name", "namespace", "revision", "status", "description", "last_deployed"]
        status = self.status(release)
        return pd.DataFrame([status] if status else [], columns=columns)

    def revision(self, release: str) -> int:
        status = self.status(release)
        if status is None:
            raise HelmError(f"release {self.namespace}/{release} not found")
        return int(status["revision"])

    def history(self, release: str) -> pd.DataFrame:
        """``helm history``: one row per revision kept (empty when the release does not exist)."""
        proc = self._exec("history", release, "--output", "json", check=False)
        if proc.returncode != 0 and "not found" not in proc.stderr:
            raise HelmError(f"helm history: {error_line(proc.stderr)}", returncode=proc.returncode)
        rows = (json.loads(proc.stdout or "null") or []) if proc.returncode == 0 else []
        return pd.DataFrame(rows, columns=["revision", "updated", "status", "chart", "app_version", "description"])

    def values(self, release: str, *, revision: int | None = None, all_values: bool = False) -> dict:
        """The values a revision was deployed with (user-supplied, or merged with the chart's defaults),
        UNMASKED: pass them through :func:`kubebook.safety.mask_values` to show them."""
        return self.run_json("get", "values", release, *(["--revision", str(revision)] if revision else []),
                             *(["--all"] if all_values else [])) or {}

    def manifest(self, release: str, *, revision: int | None = None) -> str:
        """The rendered manifest of a revision, UNMASKED: show it through :func:`.manifests.safe_manifest`."""
        return self.run("get", "manifest", release, *(["--revision", str(revision)] if revision else []))

    # -- rendering without changing anything

    def template(self, chart: str | os.PathLike, release: str = "demo", *, values: Mapping[str, Any] | None = None,
                 values_files: Sequence[str | os.PathLike] = (), show_only: Sequence[str] = ()) -> str:
        """``helm template``: render locally, no cluster (``lookup`` returns nothing). UNMASKED text."""
        shown = [a for t in show_only for a in ("--show-only", t)]
        with values_file(values) as given:
            return self.run("template", validate_release_name(release), str(chart), "--namespace", self.namespace,
                            *_files_args(values_files), *given, *shown, cluster=False)

    def lint(self, chart: str | os.PathLike, *, values: Mapping[str, Any] | None = None,
             values_files: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
        """``helm lint`` as a table: one row per finding (severity, file, message)."""
        with values_file(values) as given:
            proc = self._exec("lint", str(chart), *_files_args(values_files), *given, cluster=False, check=False)
        return parse_lint(proc.stdout + proc.stderr)

    def dry_run(self, release: str, chart: str | os.PathLike, *, values: Mapping[str, Any] | None = None,
                values_files: Sequence[str | os.PathLike] = (), version: str = "", plain_http: bool = False) -> dict:
        """``helm upgrade --install --dry-run=server``: what installing (or upgrading) would deploy,
        rendered with the cluster's API (``lookup`` sees live objects); nothing changes.

        ``chart`` may be an ``oci://`` reference (with ``version``; ``plain_http`` for a registry
        without TLS). Returns :func:`.manifests.release_summary` (``manifest`` UNMASKED)."""
        with values_file(values) as given:
            data = self.run_json("upgrade", "--install", validate_release_name(release), str(chart), "--dry-run=server",
                                 *_files_args(values_files), *given, *(["--version", version] if version else []),
                                 *(["--plain-http"] if plain_http else []))
        return release_summary(data)

    # -- changing releases (no plan here: kubebook.helm.release makes them plan steps)

    def install_args(self, release: str, chart: str | os.PathLike, *, values_files: Sequence = (),
                     create_namespace: bool = False) -> list[str]:
        """``upgrade --install`` arguments before the values file (also what a plan shows, plus ``-f values.yaml``)."""
        return ["upgrade", "--install", validate_release_name(release), str(chart), *_files_args(values_files),
                *(["--create-namespace"] if create_namespace else [])]

    def install(self, release: str, chart: str | os.PathLike, *, values: Mapping[str, Any] | None = None,
                values_files: Sequence[str | os.PathLike] = (), create_namespace: bool = False) -> dict:
        """``helm upgrade --install``: install ``release``, or upgrade it when it exists (so a re-run
        with the same values is an upgrade whose manifest does not change). Returns the release summary."""
        with values_file(values) as given:
            return release_summary(self.run_json(*self.install_args(release, chart, values_files=values_files,
                                                                    create_namespace=create_namespace), *given))

    def rollback(self, release: str, revision: int) -> int:
        """``helm rollback``: redeploy ``revision``'s manifest as a new revision; returns the new revision."""
        self.run("rollback", release, str(int(revision)))
        return self.revision(release)

    def uninstall(self, release: str, *, wait: bool = True) -> str:
        """``helm uninstall [--wait]``: delete the release's objects and its history; "already gone" if absent."""
        if not self.exists(release):
            return "already gone"
        self.run(*self.uninstall_args(release, wait=wait))
        return "uninstalled"

    def uninstall_args(self, release: str, *, wait: bool = True) -> list[str]:
        return ["uninstall", release, *(["--wait", "--timeout", f"{int(self.timeout)}s"] if wait else [])]

    # -- charts as files and OCI artifacts

    def create(self, name: str, directory: str | os.PathLike) -> Path:
        """``helm create``: scaffold chart ``name`` in ``directory``; an existing chart is kept as it is."""
        validate_release_name(name)
        target = Path(directory).expanduser() / name
        if not (target / "Chart.yaml").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.run("create", name, cluster=False, cwd=target.parent)
        return target

    def package(self, chart: str | os.PathLike, destination: str | os.PathLike) -> Path:
        """``helm package``: the chart as ``<name>-<version>.tgz`` in ``destination``."""
        dest = Path(destination).expanduser()
        dest.mkdir(parents=True, exist_ok=True)
        out = self.run("package", str(chart), "--destination", str(dest), cluster=False)
        found = re.search(r"saved it to: (.+)$", out.strip(), re.M)
        if not found:
            raise HelmError(f"helm package: no package path in its output: {out.strip()[:200]}")
        return Path(found.group(1).strip())

    def push(self, package: str | os.PathLike, remote: str, *, plain_http: bool = False) -> dict:
        """``helm push <package> oci://host/path``: the reference and digest the registry stored."""
        if not remote.startswith("oci://"):
            raise KubebookError(f"helm push needs an oci:// reference, not {remote!r}")
        proc = self._exec("push", str(package), remote, *(["--plain-http"] if plain_http else []), cluster=False)
        return pushed_or_pulled(proc.stdout + proc.stderr, "Pushed")

    def pull(self, reference: str, destination: str | os.PathLike, *, version: str = "",
             plain_http: bool = False) -> dict:
        """``helm pull oci://...``: the package saved into ``destination`` (its path under ``"path"``)."""
        dest = Path(destination).expanduser()
        dest.mkdir(parents=True, exist_ok=True)  # helm pull does not create it
        proc = self._exec("pull", reference, "--destination", str(dest), *(["--version", version] if version else []),
                          *(["--plain-http"] if plain_http else []), cluster=False)
        result = pushed_or_pulled(proc.stdout + proc.stderr, "Pulled")
        result["path"] = str(dest / (result["reference"].rsplit("/", 1)[-1].replace(":", "-") + ".tgz"))
        return result

    def show_chart(self, reference: str, *, version: str = "", plain_http: bool = False) -> dict:
        """``helm show chart``: a chart's Chart.yaml (a directory, a .tgz or an oci:// reference)."""
        out = self.run("show", "chart", reference, *(["--version", version] if version else []),
                       *(["--plain-http"] if plain_http else []), cluster=False)
        return yaml.safe_load(out) or {}


def pushed_or_pulled(output: str, word: str) -> dict:
    """``Pushed: host/repo:tag`` / ``Digest: sha256:...`` from helm push/pull, as reference,
    repository (without the host), tag and digest."""
    ref = re.search(rf"^{word}: (\S+)", output, re.M)
    digest = re.search(r"^Digest: (sha256:[0-9a-f]{64})", output, re.M)
    if not ref or not digest:
        raise HelmError(f"helm {word.lower().rstrip('ed')}: unexpected output: {output.strip()[:200]}")
    path, _, tag = ref.group(1).rpartition(":")
    return {"reference": ref.group(1), "repository": path.split("/", 1)[1] if "/" in path else path,
            "tag": tag, "digest": digest.group(1)}


_LINT_LINE = re.compile(r"^\[(INFO|WARNING|ERROR)\]\s+([^:]+):\s*(.*)$")


def parse_lint(output: str) -> pd.DataFrame:
    """``helm lint`` output as rows (chart, severity, file, message); a clean chart gives one "OK" row."""
    rows = []
    chart = ""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("==> Linting"):
            chart = line[len("==> Linting"):].strip()
        elif found := _LINT_LINE.match(line):
            rows.append({"chart": chart, "severity": found.group(1), "file": found.group(2),
                         "message": mask_text(found.group(3))})
        elif line.startswith("Error:") and "linted" not in line:
            rows.append({"chart": chart, "severity": "ERROR", "file": "", "message": error_line(line)})
    if re.search(r"(\d+) chart\(s\) linted, (\d+) chart\(s\) failed", output) and not rows:
        rows.append({"chart": chart, "severity": "OK", "file": "", "message": "no findings"})
    return pd.DataFrame(rows, columns=["chart", "severity", "file", "message"])
