"""Helm releases from Python: a thin wrapper over the helm CLI that reads its JSON outputs.

Every command names its cluster explicitly (``--kubeconfig``/``--kube-context``, resolved the
way :func:`kubebook.connect.api_client` resolves them), so a runbook never acts on whatever
context happens to be current. Helm's own cache/config/data directories live under kubebook's
cache (``$KUBEBOOK_CACHE/helm``) unless ``home`` says otherwise, so labs and tests leave the
user's ``~/.config/helm`` (repositories, registry logins) alone.

Values and manifests pass through :func:`mask_values` / :func:`mask_manifest` before they are
displayed: values whose key looks like a password, token or secret, and every Secret's data.

    h = Helm(kubeconfig, context, namespace="helm-demo")
    h.install("eladmin-web", CHARTS / "eladmin-web", set_values={"replicaCount": 2}, plan=plan)
    h.history("eladmin-web")
    h.rollback("eladmin-web", 1, plan=plan)
"""
from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import yaml

from ..errors import KubebookError
from ..plan import Plan, perform
from ..safety import MASK, mask, mask_text, masked, write_private

CHARTS = Path(__file__).parent.parent / "charts"
"""Charts kubebook ships for the labs (``CHARTS / "eladmin-web"``)."""

TOUR = CHARTS / "template-tour"
"""A chart with one small template per piece of the template language (see :func:`render_one`)."""

# What each file of a chart is for, as `helm create` lays it out.
_LAYOUT_ROLES = {
    "Chart.yaml": "the chart's identity: apiVersion v2, name, version (of the chart), appVersion (of the app)",
    "values.yaml": "default values; -f files and --set override them",
    "values.schema.json": "JSON schema the values must satisfy",
    ".helmignore": "files left out of the packaged chart",
    "charts": "subcharts (dependencies), unpacked or as .tgz",
    "templates": "manifests as Go templates, rendered with the values",
    "templates/_helpers.tpl": "named templates (define) for include; files starting with _ render nothing",
    "templates/NOTES.txt": "text shown after install/upgrade, rendered like a template",
    "templates/tests": "Pods run by `helm test`",
}

# A release name is a DNS-1123 label of at most 53 characters (helm keeps 10 for its Secret names).
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Keys whose values are secret however they are spelled: adminPassword, db_passwd, apiToken, secretKey...
_SECRET_KEY = re.compile(r"(?i)(passw(or)?d|passwd|token|secret|private[-_]?key|api[-_]?key|credential)")


class HelmError(KubebookError):
    """helm exited non-zero; the message is helm's own error line (masked), ``command`` what ran."""

    def __init__(self, message: str, *, command: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = ""):
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr


def error_line(stderr: str) -> str:
    """The one line that says what went wrong, from helm's stderr (``Error: ...`` without the prefix).

    helm prints warnings (``WARNING: ...``) and, with --debug, traces before its error; the
    last ``Error:`` line is the one that ended the command.
    """
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("Error:")]
    line = errors[-1][len("Error:"):].strip() if errors else (lines[-1] if lines else "helm failed")
    return mask_text(line)


def validate_release_name(name: str) -> str:
    if not name or len(name) > 53 or not _RELEASE_NAME.match(name):
        raise KubebookError(f"release name {name!r} is not valid: lowercase letters, digits and '-', "
                            "starting and ending with a letter or digit, at most 53 characters")
    return name


# ---------------------------------------------------------------- masking

def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def mask_values(values: Any) -> Any:
    """A copy of chart values (or any nested dict/list) with secret-looking keys masked.

    Empty values stay empty (an unset password is worth seeing); numbers and booleans under a
    secret key are masked too.
    """
    if isinstance(values, list):
        return [mask_values(v) for v in values]
    if not isinstance(values, dict):
        return mask(values) if isinstance(values, str) else values
    out = {}
    for key, value in values.items():
        if is_secret_key(key) and not isinstance(value, (dict, list)) and value not in ("", None) \
                and not str(value).startswith(MASK):
            out[key] = masked(value if isinstance(value, str) else str(value))
        else:
            out[key] = mask_values(value)
    return out


def split_manifest(manifest: str) -> list[dict]:
    """The objects of a rendered manifest (``---`` separated YAML), empty documents dropped."""
    return [d for d in yaml.safe_load_all(manifest) if isinstance(d, dict)]


def _source_of(document: str) -> str:
    m = re.search(r"^# Source: (.+)$", document, re.M)
    return m.group(1).strip() if m else ""


def mask_manifest(manifest: str) -> str:
    """``manifest`` with every Secret's data and every secret-looking value masked, as YAML again.

    ``# Source:`` comments are kept so the result still says which template made each object.
    """
    parts = []
    for document in re.split(r"^---\s*$", manifest, flags=re.M):
        obj = yaml.safe_load(document) if document.strip() else None
        if not isinstance(obj, dict):
            continue
        source = _source_of(document)
        body = yaml.safe_dump(mask_values(mask(obj)), sort_keys=False)
        parts.append("---\n" + (f"# Source: {source}\n" if source else "") + body)
    return "".join(parts)


def objects_table(manifest: str) -> pd.DataFrame:
    """One row per rendered object: kind, name, namespace, the template that made it."""
    rows = []
    for document in re.split(r"^---\s*$", manifest, flags=re.M):
        obj = yaml.safe_load(document) if document.strip() else None
        if isinstance(obj, dict):
            meta = obj.get("metadata") or {}
            rows.append({"kind": obj.get("kind", ""), "name": meta.get("name", ""),
                         "namespace": meta.get("namespace", ""), "template": _source_of(document)})
    return pd.DataFrame(rows, columns=["kind", "name", "namespace", "template"])


def manifest_diff(old: str, new: str, *, old_label: str = "before", new_label: str = "after") -> str:
    """A unified diff of two rendered manifests, masked first (a changed Secret value shows as its
    masked length, never its content). Empty when nothing changed."""
    a, b = mask_manifest(old).splitlines(keepends=True), mask_manifest(new).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=old_label, tofile=new_label))


# ---------------------------------------------------------------- values

def set_arguments(set_values: Mapping[str, Any] | None) -> list[str]:
    """``--set`` arguments for ``{"replicaCount": 2, "image.tag": "alpine"}``.

    Strings go through ``--set-string`` so ``"1.27"`` stays a string; other scalars through
    ``--set-json`` so numbers and booleans keep their type. Keys are helm paths (``a.b[0].c``).
    """
    args: list[str] = []
    for key, value in (set_values or {}).items():
        if not key or "=" in key or "," in key:
            raise KubebookError(f"--set key {key!r} is not a helm value path (like image.tag)")
        if isinstance(value, str):
            args += ["--set-string", f"{key}={_escape_set(value)}"]
        else:
            args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def _escape_set(value: str) -> str:
    # helm's --set parser splits on ',' and treats '\' as escape
    return value.replace("\\", "\\\\").replace(",", "\\,")


# ---------------------------------------------------------------- the wrapper

def default_home() -> Path:
    from ..binaries import cache_root
    return cache_root() / "helm"


def _resolve_kubeconfig(kubeconfig: str | os.PathLike | None) -> str:
    """The kubeconfig file api_client would use: explicit, else $KUBECONFIG's first, else ~/.kube/config."""
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubebookError(f"kubeconfig not found: {path}")
        return str(path)
    env = os.environ.get("KUBECONFIG")
    return env.split(os.pathsep)[0] if env else str(Path.home() / ".kube" / "config")


@dataclass
class Helm:
    """The helm CLI bound to one cluster (kubeconfig + context) and namespace."""

    kubeconfig: str | os.PathLike | None = None
    context: str | None = None
    namespace: str = "default"
    home: Path | None = None
    binary: Path | None = None
    timeout: float = 300.0

    def __post_init__(self) -> None:
        self._kubeconfig: str | None = None

    # -- plumbing

    @property
    def kubeconfig_path(self) -> str:
        if self._kubeconfig is None:
            self._kubeconfig = _resolve_kubeconfig(self.kubeconfig)
        return self._kubeconfig

    @property
    def kube_context(self) -> str:
        """The context helm gets: the given one, else the kubeconfig's current context."""
        if self.context:
            return self.context
        from ..connect import current_context
        ctx = current_context(self.kubeconfig_path)
        if not ctx:
            raise KubebookError(f"kubeconfig {self.kubeconfig_path} has no current context: pass context=...")
        self.context = ctx
        return ctx

    def env(self) -> dict[str, str]:
        home = Path(self.home) if self.home else default_home()
        env = dict(os.environ)
        env.update({"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data")})
        return env

    def cluster_args(self) -> list[str]:
        return ["--kubeconfig", self.kubeconfig_path, "--kube-context", self.kube_context,
                "--namespace", self.namespace]

    def command(self, *args: str, cluster: bool = True) -> list[str]:
        """The full argv: helm, ``args``, then the cluster flags (unless ``cluster=False``)."""
        binary = self.binary
        if binary is None:
            from ..binaries import ensure_tool
            binary = self.binary = ensure_tool("helm")
        return [str(binary), *args, *(self.cluster_args() if cluster else [])]

    def run(self, *args: str, cluster: bool = True, cwd: str | os.PathLike | None = None) -> str:
        """Run helm; its stdout, or :class:`HelmError` with helm's error line."""
        return self._exec(*args, cluster=cluster, cwd=cwd).stdout

    def _exec(self, *args: str, cluster: bool = True, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        argv = self.command(*args, cluster=cluster)
        try:
            proc = subprocess.run(argv, env=self.env(), cwd=cwd, capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm {args[0]} did not finish in {self.timeout:.0f}s", command=argv) from None
        if proc.returncode != 0:
            raise HelmError(f"helm {args[0]}: {error_line(proc.stderr)}", command=argv,
                            returncode=proc.returncode, stderr=mask_text(proc.stderr))
        return proc

    def run_json(self, *args: str, cluster: bool = True) -> Any:
        return json.loads(self.run(*args, "--output", "json", cluster=cluster) or "null")

    @staticmethod
    def shell(argv: Sequence[str]) -> str:
        """``argv`` as the command a person would type (``helm ...``), for plans and logs."""
        import shlex
        return "helm " + " ".join(shlex.quote(a) for a in argv[1:])

    # -- reading releases

    def releases(self, *, all_namespaces: bool = False) -> pd.DataFrame:
        """``helm list``: every release (deployed, failed, pending...) as a table."""
        args = ["list", "--all"] + (["--all-namespaces"] if all_namespaces else [])
        rows = self.run_json(*args) or []
        return pd.DataFrame(rows, columns=["name", "namespace", "revision", "updated", "status", "chart",
                                           "app_version"])

    def exists(self, release: str) -> bool:
        try:
            self.run("status", release)
            return True
        except HelmError as exc:
            if "not found" in str(exc):
                return False
            raise

    def status(self, release: str) -> dict:
        """``helm status -o json``, without the chart, values or manifest (see the methods for those)."""
        data = self.run_json("status", release)
        info = data.get("info") or {}
        return {"name": data.get("name"), "namespace": data.get("namespace"), "revision": data.get("version"),
                "status": info.get("status"), "description": info.get("description"),
                "last_deployed": info.get("last_deployed"), "notes": mask_text(info.get("notes") or "")}

    def status_table(self, release: str) -> pd.DataFrame:
        """:meth:`status` as a one-row table (notes left out); empty when the release does not exist."""
        columns = ["name", "namespace", "revision", "status", "description", "last_deployed"]
        if not self.exists(release):
            return pd.DataFrame(columns=columns)
        return pd.DataFrame([self.status(release)], columns=columns)

    def revision(self, release: str) -> int:
        return int(self.status(release)["revision"])

    def history(self, release: str) -> pd.DataFrame:
        """``helm history``: one row per revision kept (empty when the release does not exist)."""
        try:
            rows = self.run_json("history", release) or []
        except HelmError as exc:
            if "not found" not in str(exc):
                raise
            rows = []
        return pd.DataFrame(rows, columns=["revision", "updated", "status", "chart", "app_version", "description"])

    def values(self, release: str, *, revision: int | None = None, all_values: bool = False,
               masked_output: bool = True) -> dict:
        """The values a revision was deployed with (user-supplied, or ``all_values`` merged with
        the chart's defaults); masked unless ``masked_output=False`` (for backups only)."""
        args = ["get", "values", release] + (["--revision", str(revision)] if revision else []) + \
            (["--all"] if all_values else [])
        data = self.run_json(*args) or {}
        return mask_values(data) if masked_output else data

    def manifest(self, release: str, *, revision: int | None = None) -> str:
        """The rendered manifest of a revision, UNMASKED: pass it through :func:`mask_manifest` to show it."""
        return self.run("get", "manifest", release, *(["--revision", str(revision)] if revision else []))

    def objects(self, release: str, *, revision: int | None = None) -> pd.DataFrame:
        return objects_table(self.manifest(release, revision=revision))

    def diff_revisions(self, release: str, old: int, new: int) -> str:
        """The masked unified diff between two revisions' manifests ("" when equal)."""
        return manifest_diff(self.manifest(release, revision=old), self.manifest(release, revision=new),
                             old_label=f"{release} revision {old}", new_label=f"{release} revision {new}")

    # -- rendering without changing anything

    def template(self, chart: str | os.PathLike, release: str = "demo", *,
                 set_values: Mapping[str, Any] | None = None, values_files: Sequence[str | os.PathLike] = (),
                 show_only: Sequence[str] = ()) -> str:
        """``helm template``: render locally, no cluster (``lookup`` returns nothing). UNMASKED text."""
        args = ["template", validate_release_name(release), str(chart), "--namespace", self.namespace,
                *_values_args(set_values, values_files)]
        for template in show_only:
            args += ["--show-only", template]
        return self.run(*args, cluster=False)

    def lint(self, chart: str | os.PathLike, *, set_values: Mapping[str, Any] | None = None,
             values_files: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
        """``helm lint`` as a table: one row per finding (severity, file, message)."""
        argv = self.command("lint", str(chart), *_values_args(set_values, values_files), cluster=False)
        proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=self.timeout)
        return parse_lint(proc.stdout + proc.stderr)

    def dry_run(self, release: str, chart: str | os.PathLike, *, set_values: Mapping[str, Any] | None = None,
                values_files: Sequence[str | os.PathLike] = (), version: str = "", plain_http: bool = False) -> dict:
        """``helm upgrade --install --dry-run=server``: what installing (or upgrading) would deploy,
        rendered with the cluster's API (``lookup`` sees live objects); nothing changes.

        ``chart`` may be an ``oci://`` reference (with ``version``; ``plain_http`` for a registry
        without TLS). Returns ``{"release", "revision", "values", "manifest" (UNMASKED), "notes", ...}``.
        """
        validate_release_name(release)
        data = self.run_json("upgrade", "--install", release, str(chart), "--dry-run=server",
                             *_values_args(set_values, values_files), *(["--version", version] if version else []),
                             *(["--plain-http"] if plain_http else []))
        return _release_summary(data)

    # -- changing releases (each a Plan step when a plan is given)

    def install(self, release: str, chart: str | os.PathLike, *, set_values: Mapping[str, Any] | None = None,
                values_files: Sequence[str | os.PathLike] = (), create_namespace: bool = True,
                plan: Plan | None = None, description: str = "", step: str = "install") -> dict | None:
        """``helm upgrade --install``: install ``release``, or upgrade it when it exists (so a re-run
        with the same values is an upgrade whose manifest does not change).

        Returns the release summary (see :meth:`dry_run`) plus ``previous_manifest`` (None on a fresh
        install), so the caller can show what changed.
        """
        validate_release_name(release)
        args = ["upgrade", "--install", release, str(chart), *_values_args(set_values, values_files)]
        if create_namespace:
            args.append("--create-namespace")

        def act() -> dict:
            previous = self.manifest(release) if self.exists(release) else None
            summary = _release_summary(self.run_json(*args))
            summary["previous_manifest"] = previous
            summary["diff"] = manifest_diff(previous or "", summary["manifest"],
                                            old_label="before" if previous else "(nothing installed)",
                                            new_label=f"revision {summary['revision']}")
            # compared unmasked (nothing is shown): a Secret value that changed counts
            summary["changed"] = previous is None or previous.strip() != summary["manifest"].strip()
            return summary

        return perform(plan, f"{step}-{release}",
                     description or f"install or upgrade release {self.namespace}/{release} from {Path(chart).name}"
                     f" with {_describe_values(set_values, values_files)}",
                     act, self.shell(self.command(*args)))

    def rollback(self, release: str, revision: int, *, plan: Plan | None = None) -> int | None:
        """``helm rollback``: redeploy ``revision``'s manifest as a new revision; returns the new revision."""
        def act() -> int:
            self.run("rollback", release, str(int(revision)))
            return self.revision(release)

        return perform(plan, f"rollback-{release}", f"roll release {self.namespace}/{release} back to revision "
                     f"{revision} (as a new revision)", act,
                     self.shell(self.command("rollback", release, str(revision))))

    def backup(self, release: str, directory: str | os.PathLike, *, plan: Plan | None = None) -> str | None:
        """Write the release's current manifest and values (unmasked, 0600) to ``directory``;
        returns the manifest file's path. Helm's own history goes with ``uninstall``."""
        def act() -> str:
            revision = self.revision(release)
            stem = Path(directory).expanduser() / f"{self.namespace}-{release}-r{revision}-{time.strftime('%Y%m%dT%H%M%S')}"
            write_private(f"{stem}.manifest.yaml", self.manifest(release))
            write_private(f"{stem}.values.yaml",
                          yaml.safe_dump(self.values(release, masked_output=False), sort_keys=False))
            return f"{stem}.manifest.yaml"

        return perform(plan, f"backup-{release}", f"save release {self.namespace}/{release}'s manifest and values "
                     f"into {directory} (0600: they hold its Secrets)", act,
                     f"helm get manifest {release} > ...manifest.yaml; helm get values {release} -o yaml > ...values.yaml")

    def uninstall(self, release: str, *, plan: Plan | None = None, wait: bool = True) -> str | None:
        """``helm uninstall --wait``: delete the release's objects and its history; "already gone" if absent."""
        args = ["uninstall", release] + (["--wait", "--timeout", f"{int(self.timeout)}s"] if wait else [])

        def act() -> str:
            if not self.exists(release):
                return "already gone"
            self.run(*args)
            return "uninstalled"

        return perform(plan, f"uninstall-{release}", f"uninstall release {self.namespace}/{release} and its history",
                     act, self.shell(self.command(*args)))

    # -- charts as OCI artifacts (helm push/pull oci://)

    def package(self, chart: str | os.PathLike, destination: str | os.PathLike) -> Path:
        """``helm package``: the chart as ``<name>-<version>.tgz`` in ``destination``."""
        dest = Path(destination).expanduser()
        dest.mkdir(parents=True, exist_ok=True)
        out = self.run("package", str(chart), "--destination", str(dest), cluster=False)
        m = re.search(r"saved it to: (.+)$", out.strip(), re.M)
        if not m:
            raise HelmError(f"helm package: no package path in its output: {out.strip()[:200]}")
        return Path(m.group(1).strip())

    def push(self, package: str | os.PathLike, remote: str, *, plain_http: bool = False) -> dict:
        """``helm push <package> oci://host/path``: the reference and digest the registry stored."""
        if not remote.startswith("oci://"):
            raise KubebookError(f"helm push needs an oci:// reference, not {remote!r}")
        proc = self._exec("push", str(package), remote, *(["--plain-http"] if plain_http else []), cluster=False)
        return _pushed_or_pulled(proc.stdout + proc.stderr, "Pushed")

    def pull(self, reference: str, destination: str | os.PathLike, *, version: str = "",
             plain_http: bool = False) -> dict:
        """``helm pull oci://...``: the package saved into ``destination`` (its path under ``"path"``)."""
        dest = Path(destination).expanduser()
        dest.mkdir(parents=True, exist_ok=True)  # helm pull does not create it
        proc = self._exec("pull", reference, "--destination", str(dest), *(["--version", version] if version else []),
                          *(["--plain-http"] if plain_http else []), cluster=False)
        result = _pushed_or_pulled(proc.stdout + proc.stderr, "Pulled")
        name = result["reference"].rsplit("/", 1)[-1].replace(":", "-")
        result["path"] = str(dest / f"{name}.tgz")
        return result

    def show_chart(self, reference: str, *, version: str = "", plain_http: bool = False) -> dict:
        """``helm show chart``: a chart's Chart.yaml (a directory, a .tgz or an oci:// reference)."""
        out = self.run("show", "chart", reference, *(["--version", version] if version else []),
                       *(["--plain-http"] if plain_http else []), cluster=False)
        return yaml.safe_load(out) or {}

    def create(self, name: str, directory: str | os.PathLike) -> Path:
        """``helm create``: scaffold chart ``name`` in ``directory``; an existing chart is kept as is."""
        validate_release_name(name)
        target = Path(directory).expanduser() / name
        if not (target / "Chart.yaml").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.run("create", name, cluster=False, cwd=target.parent)
        return target


def describe_change(summary: dict | None) -> str:
    """One sentence on what :meth:`Helm.install` did (None: a dry run, nothing happened)."""
    if summary is None:
        return "dry run: nothing installed"
    where = f"{summary['namespace']}/{summary['release']} revision {summary['revision']}"
    if summary.get("previous_manifest") is None:
        return f"installed {where}"
    if not summary.get("changed"):
        return f"upgraded {where} with no manifest change: same chart and values render the same objects"
    return f"upgraded {where}: the rendered manifest changed (see the diff)"


def default_backup_dir() -> Path:
    """Where uninstall backups go unless a runbook says otherwise: ``$XDG_STATE_HOME/kubebook/backups/helm``."""
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return state / "kubebook" / "backups" / "helm"


def chart_layout(chart: str | os.PathLike) -> pd.DataFrame:
    """The chart's files and directories with what each is for (``tree`` of the course, as a table)."""
    root = Path(chart)
    rows = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        role = _LAYOUT_ROLES.get(rel, "")
        if not role and rel.startswith("templates/") and path.is_file():
            role = "manifest template"
        rows.append({"path": rel + ("/" if path.is_dir() else ""), "role": role})
    return pd.DataFrame(rows, columns=["path", "role"])


def template_source(chart: str | os.PathLike, template: str) -> str:
    """The text of ``templates/<template>`` in ``chart`` (what the walkthrough renders)."""
    path = Path(chart) / "templates" / template
    if not path.is_file():
        raise KubebookError(f"no template {template!r} in {chart}")
    return path.read_text()


def render_one(h: "Helm", chart: str | os.PathLike, template: str, release: str = "demo", *,
               set_values: Mapping[str, Any] | None = None,
               values_files: Sequence[str | os.PathLike] = ()) -> str:
    """``helm template --show-only templates/<template>``: one template rendered, masked."""
    return safe_manifest(h.template(chart, release, set_values=set_values, values_files=values_files,
                                    show_only=[f"templates/{template}"]))


def safe_manifest(manifest: str) -> str:
    """``manifest`` fit to display: as helm printed it (comments and layout kept) when it holds no
    Secret, else re-written by :func:`mask_manifest`; free-text secrets masked either way."""
    if any(o.get("kind") == "Secret" for o in split_manifest(manifest)):
        return mask_manifest(manifest)
    return mask_text(manifest)


def precedence(h: "Helm", chart: str | os.PathLike, release: str, *, values_file: str | os.PathLike,
               set_values: Mapping[str, Any]) -> pd.DataFrame:
    """Render ``chart`` four ways (defaults, -f, --set, -f and --set) and show what the first
    Deployment got: later sources win, and --set wins over -f whatever the order on the command line."""
    combos = [("values.yaml (chart defaults)", (), None), (f"-f {Path(values_file).name}", [values_file], None),
              ("--set " + ",".join(f"{k}={v}" for k, v in set_values.items()), (), set_values),
              (f"-f {Path(values_file).name} and --set", [values_file], set_values)]
    rows = []
    for label, files, sets in combos:
        objects = split_manifest(h.template(chart, release, set_values=sets, values_files=files))
        deployment = next((o for o in objects if o.get("kind") == "Deployment"), {})
        spec = deployment.get("spec") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        rows.append({"values from": label, "replicas": spec.get("replicas", "(not set)"),
                     "image": ", ".join(c.get("image", "") for c in containers),
                     "objects": ", ".join(sorted({o.get("kind", "") for o in objects}))})
    return pd.DataFrame(rows, columns=["values from", "replicas", "image", "objects"])


def write_values_file(path: str | os.PathLike, values: Mapping[str, Any]) -> Path:
    """Write ``values`` as a values YAML file (0600: values files often carry passwords)."""
    return write_private(Path(path).expanduser(), yaml.safe_dump(dict(values), sort_keys=False))


def wait_ready(api, namespace: str, release: str, *, timeout: float = 120) -> pd.DataFrame:
    """Watch the release's Deployments (label ``app.kubernetes.io/instance=<release>``) until each has
    rolled out its current spec; their replica counts as a table."""
    from ..waits import wait_for

    def rolled_out(deployments: dict[str, dict]) -> bool:
        for d in deployments.values():
            spec, st = d.get("spec") or {}, d.get("status") or {}
            want = spec.get("replicas", 1)
            if st.get("observedGeneration", 0) < d["metadata"].get("generation", 1) or \
                    st.get("updatedReplicas", 0) != want or st.get("availableReplicas", 0) != want or \
                    st.get("replicas", 0) != want:
                return False
        return True

    found = wait_for(api, "deployments", rolled_out, namespace=namespace,
                     label_selector=f"app.kubernetes.io/instance={release}", timeout=timeout,
                     what=f"Deployments of release {namespace}/{release} rolled out")
    return pd.DataFrame([{"deployment": n, "replicas": d["spec"].get("replicas", 1),
                          "available": (d.get("status") or {}).get("availableReplicas", 0)}
                         for n, d in sorted(found.items())], columns=["deployment", "replicas", "available"])


# ---------------------------------------------------------------- helpers

def _values_args(set_values: Mapping[str, Any] | None, values_files: Sequence[str | os.PathLike]) -> list[str]:
    args: list[str] = []
    for f in values_files:
        if not Path(f).expanduser().is_file():
            raise KubebookError(f"values file not found: {f}")
        args += ["--values", str(Path(f).expanduser())]
    return args + set_arguments(set_values)  # --set wins over -f, whatever the order; keep helm's order anyway


def _describe_values(set_values: Mapping[str, Any] | None, values_files: Sequence) -> str:
    parts = [f"-f {Path(f).name}" for f in values_files]
    parts += [f"{k}={v}" for k, v in mask_values(dict(set_values or {})).items()]
    return ", ".join(parts) or "the chart's defaults"


def _release_summary(data: dict) -> dict:
    info = data.get("info") or {}
    return {"release": data.get("name"), "namespace": data.get("namespace"), "revision": data.get("version"),
            "status": info.get("status"), "description": info.get("description"),
            "values": mask_values(data.get("config") or {}), "manifest": data.get("manifest") or "",
            "notes": mask_text(info.get("notes") or "")}


def _pushed_or_pulled(output: str, word: str) -> dict:
    """``Pushed: host/repo:tag`` / ``Digest: sha256:...`` from helm push/pull, as
    reference, repository (without the host), tag and digest."""
    ref = re.search(rf"^{word}: (\S+)", output, re.M)
    digest = re.search(r"^Digest: (sha256:[0-9a-f]{64})", output, re.M)
    if not ref or not digest:
        raise HelmError(f"helm {word.lower().rstrip('ed')}: unexpected output: {output.strip()[:200]}")
    reference = ref.group(1)
    path, _, tag = reference.rpartition(":")
    return {"reference": reference, "repository": path.split("/", 1)[1] if "/" in path else path,
            "tag": tag, "digest": digest.group(1)}


_LINT_LINE = re.compile(r"^\[(INFO|WARNING|ERROR)\]\s+([^:]+):\s*(.*)$")


def parse_lint(output: str) -> pd.DataFrame:
    """``helm lint`` output as rows (severity, file, message); a clean chart gives one "OK" row."""
    rows = []
    chart = ""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("==> Linting"):
            chart = line[len("==> Linting"):].strip()
        elif m := _LINT_LINE.match(line):
            rows.append({"chart": chart, "severity": m.group(1), "file": m.group(2), "message": mask_text(m.group(3))})
        elif line.startswith("Error:") and "linted" not in line:
            rows.append({"chart": chart, "severity": "ERROR", "file": "", "message": error_line(line)})
    m = re.search(r"(\d+) chart\(s\) linted, (\d+) chart\(s\) failed", output)
    if m and not rows:
        rows.append({"chart": chart, "severity": "OK", "file": "", "message": "no findings"})
    return pd.DataFrame(rows, columns=["chart", "severity", "file", "message"])


def values_table(values: Mapping[str, Any], prefix: str = "") -> pd.DataFrame:
    """Nested values flattened to helm paths (``image.tag``) with their (masked) values."""
    rows: list[dict] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        else:
            rows.append({"path": path, "value": json.dumps(node) if not isinstance(node, str) else node})

    walk(mask_values(dict(values)), prefix)
    return pd.DataFrame(rows, columns=["path", "value"])


__all__ = ["CHARTS", "Helm", "HelmError", "MASK", "error_line", "manifest_diff", "mask_manifest", "mask_values",
           "objects_table", "parse_lint", "set_arguments", "split_manifest", "validate_release_name",
           "values_table", "wait_ready", "TOUR", "chart_layout", "template_source", "render_one",
           "precedence", "write_values_file", "safe_manifest", "describe_change", "default_backup_dir"]
