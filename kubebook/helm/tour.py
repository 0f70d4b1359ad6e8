"""The course's tour of charts: layout, the template language one template at a time, which value
wins, and a chart repository over OCI. Rendering only (``helm template``, a server-side dry run):
nothing here changes a cluster.

    chart = h.create("nginx", work_dir("", "charts"))
    chart_layout(chart)                                     # files and what each is for
    print(render_one(h, TOUR, "control.yaml", "demo"))      # one template rendered, masked
    precedence(h, chart, "nginx", values_file=f, values=v)  # defaults < -f file < the values kubebook passes last
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .. import paths
from ..errors import KubebookError
from ..safety import write_private
from .cli import Helm, describe_values
from .manifests import objects_table, safe_manifest, split_manifest

CHARTS = Path(__file__).parent.parent / "charts"
"""Charts kubebook ships for the labs (``CHARTS / "eladmin-web"``)."""

TOUR = CHARTS / "template-tour"
"""A chart with one small template per piece of the template language (see :func:`render_one`)."""

# What each file of a chart is for, as `helm create` lays it out.
_LAYOUT_ROLES = {
    "Chart.yaml": "the chart's identity: apiVersion v2, name, version (of the chart), appVersion (of the app)",
    "values.yaml": "default values; -f files (and --set) override them",
    "values.schema.json": "JSON schema the values must satisfy",
    ".helmignore": "files left out of the packaged chart",
    "charts": "subcharts (dependencies), unpacked or as .tgz",
    "templates": "manifests as Go templates, rendered with the values",
    "templates/_helpers.tpl": "named templates (define) for include; files starting with _ render nothing",
    "templates/NOTES.txt": "text shown after install/upgrade, rendered like a template",
    "templates/tests": "Pods run by `helm test`",
}


def chart_dir(chart: str | os.PathLike = "", default: str = "eladmin-web") -> Path:
    """``chart`` if given (a chart directory), else the shipped chart ``default``."""
    path = Path(chart).expanduser() if chart else CHARTS / default
    if not (path / "Chart.yaml").is_file():
        raise KubebookError(f"{path} is not a chart directory (no Chart.yaml)")
    return path


def work_dir(directory: str | os.PathLike, name: str) -> Path:
    """Where a runbook keeps its files: ``directory`` if given, else ``<state>/<name>`` (made 0700)."""
    return paths.private_dir(Path(directory).expanduser() if directory else paths.state_root() / name)


def chart_layout(chart: str | os.PathLike) -> pd.DataFrame:
    """The chart's files and directories with what each is for (``tree`` of the course, as a table)."""
    root = Path(chart)
    rows = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        role = _LAYOUT_ROLES.get(rel, "") or ("manifest template" if rel.startswith("templates/") and path.is_file()
                                              else "")
        rows.append({"path": rel + ("/" if path.is_dir() else ""), "role": role})
    return pd.DataFrame(rows, columns=["path", "role"])


def template_source(chart: str | os.PathLike, template: str) -> str:
    """The text of ``templates/<template>`` in ``chart`` (what the walkthrough renders)."""
    path = Path(chart) / "templates" / template
    if not path.is_file():
        raise KubebookError(f"no template {template!r} in {chart}")
    return path.read_text()


def render_one(h: Helm, chart: str | os.PathLike, template: str, release: str = "demo", *,
               values: Mapping[str, Any] | None = None, values_files=()) -> str:
    """``helm template --show-only templates/<template>``: one template rendered, masked."""
    return safe_manifest(h.template(chart, release, values=values, values_files=values_files,
                                    show_only=[f"templates/{template}"]))


def write_values_file(path: str | os.PathLike, values: Mapping[str, Any]) -> Path:
    """``values`` as a values YAML file, 0600 (values files often carry passwords)."""
    import yaml
    from .cli import nest
    return write_private(Path(path).expanduser(), yaml.safe_dump(nest(values), sort_keys=False))


def precedence(h: Helm, chart: str | os.PathLike, release: str, *, values_file: str | os.PathLike,
               values: Mapping[str, Any]) -> pd.DataFrame:
    """Render ``chart`` four ways and show what its first Deployment got: the chart's defaults, a
    ``-f`` file, the values kubebook passes (as the last ``-f``, where helm puts ``--set``), both.
    Later sources win key by key."""
    name = Path(values_file).name
    combos = [("values.yaml (chart defaults)", (), None), (f"-f {name}", [values_file], None),
              (f"{', '.join(values)} (kubebook's last -f: --set's place)", (), values),
              (f"-f {name}, then those values", [values_file], values)]
    rows = []
    for label, files, given in combos:
        rendered = split_manifest(h.template(chart, release, values=given, values_files=files))
        deployment = next((o for o in rendered if o.get("kind") == "Deployment"), {})
        spec = deployment.get("spec") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        rows.append({"values from": label, "replicas": spec.get("replicas", "(not set)"),
                     "image": ", ".join(c.get("image", "") for c in containers),
                     "objects": ", ".join(sorted({o.get("kind", "") for o in rendered}))})
    return pd.DataFrame(rows, columns=["values from", "replicas", "image", "objects"])


def server_check(h: Helm, release: str, chart: str | os.PathLike, *, values: Mapping[str, Any] | None = None,
                 when: bool = True, **options: Any) -> pd.DataFrame:
    """``helm upgrade --install --dry-run=server`` (the course's ``helm install --dry-run --debug``): the
    objects the cluster's API renders and validates, nothing created. ``when=False``: skipped (offline)."""
    if not when:
        return pd.DataFrame([{"kind": "(skipped: server_check is off)", "name": "", "namespace": "", "template": ""}])
    checked = h.dry_run(release, chart, values=values, **options)
    print(f"{checked['namespace']}/{checked['release']} revision {checked['revision']}: {checked['description']} "
          f"({describe_values(values)})")
    return objects_table(checked["manifest"])


def push_twice(h: Helm, package: str | os.PathLike, remote: str, *, plain_http: bool = True) -> pd.DataFrame:
    """``helm push`` the same package twice: the registry stores it once (the digest is the content's)."""
    rows = [{"push": n, **h.push(package, remote, plain_http=plain_http)} for n in (1, 2)]
    table = pd.DataFrame(rows, columns=["push", "reference", "repository", "tag", "digest"])
    table["same digest as push 1"] = table["digest"] == table.loc[0, "digest"]
    return table


def pull_and_compare(h: Helm, reference: str, destination: str | os.PathLike, *, version: str,
                     package: str | os.PathLike, plain_http: bool = True) -> pd.DataFrame:
    """``helm pull`` ``reference`` and compare the file with the package that was pushed."""
    pulled = h.pull(reference, destination, version=version, plain_http=plain_http)
    same = Path(pulled["path"]).read_bytes() == Path(package).read_bytes()
    return pd.DataFrame([{"pulled": pulled["path"], "digest": pulled["digest"],
                          "identical to the pushed package": same}])
