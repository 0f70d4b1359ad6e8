"""A helm release's life under a plan's rules: install, upgrade, roll back, uninstall, and put back.

    web = Release(plan, target.helm(namespace="kubebook-helm"), "eladmin-web")
    web.install("", {"replicaCount": 2}, secrets={"auth.adminPassword": password})
    web.upgrade("", {"replicaCount": 2}, {"replicaCount": 3})
    web.rollback()            # to the revision before the upgrade, as a new revision
    web.uninstall()           # only a release this run installed (backed up first)
    plan.cleanup()            # uninstall what this run installed, or roll back to the recorded revision

Ownership: what the release was before the run is read when the handle is made. A release that
existed is never uninstalled: before this run first changes it, its revision, values and manifest are
recorded (0600 files under the run's backups) and clean-up rolls it back to that revision, then
waits for the state it had then (its Deployments' available replicas as recorded), not an ideal.
A release this run installed is uninstalled at clean-up if it is still there.

Each change is a plan step that names the objects the chart renders (refused in the dry run already
when one lies outside the confirmed scope), checks first that RBAC lets this kubeconfig do it
(one line if not), and is followed by a watched rollout that stops within seconds with the reason
when the Pods cannot come up (a webhook refusing them, no node that fits).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from .. import diagnose, paths, safety
from ..errors import KubebookError
from ..objects import Ref, objects
from ..ownership import BackupFailed
from ..plan import Plan
from ..waits import wait_for
from .cli import Helm, HelmError, describe_values, validate_release_name
from .manifests import manifest_diff, objects_table, refs, split_manifest, values_table
from .tour import chart_dir

ROLLOUT_KINDS = ("Deployment",)
_OBJECT_VERBS = ("get", "create", "patch")
_STORAGE_VERBS = ("get", "list", "create", "update")  # helm keeps each revision in a Secret


def merge(*values: Mapping[str, Any] | None, secrets: Mapping[str, Any] | None = None) -> dict:
    """Values in order (later keys win), then the secret ones that are set (``""`` means not set)."""
    out: dict = {}
    for given in values:
        out.update(given or {})
    for key, value in (secrets or {}).items():
        if value not in ("", None):
            safety.register_secret(str(value))
            out[key] = value
    return out


class Release:
    """One release, in the namespace of ``h``, changed only through ``plan``."""

    def __init__(self, plan: Plan, h: Helm, name: str, *, timeout: float | None = None):
        self.plan, self.h, self.name = plan, h, validate_release_name(name)
        self.namespace = h.namespace
        self.timeout = float(timeout or h.timeout)
        self.before = self._read_before()   # read now, in both modes: what the run found
        self.recorded: dict | None = None
        self.installed = False          # this run installed it
        self.revisions: list[int] = []  # revisions this run made, in order
        self._last_manifest: str | None = None
        plan.at_cleanup(f"restore-release-{name}", self._undo_description(), self._undo,
                        command=self._undo_command(), touches=[self._storage()])

    def __repr__(self) -> str:
        return f"Release({self.namespace}/{self.name})"

    def _read_before(self) -> dict | None:
        try:
            return self.h.status(self.name)
        except HelmError as exc:
            if "forbidden" not in str(exc):
                raise
            raise KubebookError(f"RBAC forbids reading release {self.namespace}/{self.name} (helm keeps it in Secrets): "
                                f"{str(exc).removeprefix('helm status: ')}; use a kubeconfig whose user may read "
                                "Secrets there") from None

    # -- reads
    def releases(self, *, all_namespaces: bool = True) -> pd.DataFrame:
        return self.h.releases(all_namespaces=all_namespaces)

    def status(self) -> pd.DataFrame:
        return self.h.status_table(self.name)

    def history(self) -> pd.DataFrame:
        return self.h.history(self.name)

    def render(self, chart: str | os.PathLike = "", *values: Mapping[str, Any] | None) -> pd.DataFrame:
        """``helm template`` on this machine: the objects the chart would create (no cluster, no lookup)."""
        return objects_table(self.h.template(chart_dir(chart), self.name, values=merge(*values)))

    def preview(self, chart: str | os.PathLike = "", *values: Mapping[str, Any] | None,
                secrets: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """``helm upgrade --install --dry-run=server``: what would be deployed; its values, masked."""
        summary = self.h.dry_run(self.name, chart_dir(chart), values=merge(*values, secrets=secrets))
        print(f"would deploy {summary['namespace']}/{summary['release']} as revision {summary['revision']}: "
              f"{summary['description']}")
        return values_table(summary["values"])

    # -- changes
    def install(self, chart: str | os.PathLike = "", *values: Mapping[str, Any] | None,
                secrets: Mapping[str, Any] | None = None, step: str = "install") -> dict:
        """``helm upgrade --install`` with ``values`` (merged in order) and ``secrets``, then its rollout
        watched. Returns the release summary, in a dry run the server-side preview (``dry_run``)."""
        chart = chart_dir(chart)
        merged = merge(*values, secrets=secrets)
        rendered = self.h.template(chart, self.name, values=merged)
        touches = refs(rendered, self.namespace) + [self._storage()]
        refused = self._forbidden(rendered)
        existed = f" (it exists at revision {self.before['revision']}: recorded and backed up first, put back at " \
                  "clean-up)" if self.before else ""
        description = f"install or upgrade release {self.namespace}/{self.name} from {chart.name} with " \
                      f"{describe_values(merged)}{existed}" + (f"; it will fail: {refused}" if refused else "")

        def act() -> dict:
            reason = self._forbidden(rendered)
            if reason:
                raise KubebookError(reason)
            previous = self._before_change()
            summary = self.h.install(self.name, chart, values=merged)
            if previous is None and self.recorded is None:
                self.installed = True
            return self._changed(summary, previous)

        done = self.plan.step(f"{step}-{self.name}", description, act, touches=touches,
                              command=self.h.shell(*self.h.install_args(self.name, chart), "-f", "values.yaml"))
        self.wait_rolled_out(step)
        if done is not None:
            return done
        preview = {**self.h.dry_run(self.name, chart, values=merged), "dry_run": True}
        return self._changed(preview, self._last_manifest if self._last_manifest is not None else
                             (self.h.manifest(self.name) if self.before else None))

    def upgrade(self, chart: str | os.PathLike = "", *values: Mapping[str, Any] | None,
                secrets: Mapping[str, Any] | None = None) -> dict:
        """An upgrade is an install of an existing release: helm starts again from the chart's defaults
        (no ``--reuse-values``), so pass every value the release should keep."""
        return self.install(chart, *values, secrets=secrets, step="upgrade")

    def rollback(self, revision: int = 0) -> str:
        """``helm rollback`` to ``revision`` (0: the one before this run's last change), as a new revision."""
        wanted = f"revision {revision}" if revision else "the revision before the upgrade"
        touches = [self._storage()] + (refs(self.h.manifest(self.name), self.namespace) if self.before else [])

        def act() -> str:
            to = revision or (self.revisions[-2] if len(self.revisions) >= 2 else 0)
            if not to:
                raise KubebookError(f"no revision before the last change to roll {self.name} back to: pass a revision")
            self._before_change()
            new = self.h.rollback(self.name, to)
            self.revisions.append(new)
            diff = manifest_diff(self.h.manifest(self.name, revision=to), self.h.manifest(self.name, revision=new))
            return f"revision {new} redeploys revision {to}; manifest diff between them: {diff or 'none'}"

        done = self.plan.step(f"rollback-{self.name}", f"roll release {self.namespace}/{self.name} back to {wanted} "
                              "(helm writes it as a new revision)", act, touches=touches,
                              command=self.h.shell("rollback", self.name, str(revision or "<previous>")))
        self.wait_rolled_out("rollback")
        return done or f"dry run: would roll {self.namespace}/{self.name} back to {wanted}"

    def uninstall(self, *, when: bool = True) -> str:
        """Back up and ``helm uninstall`` the release, only if this run installed it (a release that
        existed before is kept; clean-up puts back its recorded revision)."""
        if not when:
            return f"release {self.namespace}/{self.name} kept (uninstall is off)"
        if self.before:
            description = f"keep release {self.namespace}/{self.name}: it existed before this run (revision " \
                          f"{self.before['revision']}, put back at clean-up)"
        else:
            description = f"save release {self.namespace}/{self.name}'s manifest and values (0600, in this run's " \
                          "backups) and uninstall it with its history (this run installed it)"

        def act() -> str:
            if not self.installed:
                return "kept: this run did not install it"
            saved = self._save(self.h.revision(self.name), "uninstall")
            self.h.uninstall(self.name)
            return f"uninstalled; manifest and values saved as {saved['manifest']} and {saved['values']}"

        command = f"helm get manifest {self.name} > manifest.yaml; helm get values {self.name} -o yaml > values.yaml; " \
                  + self.h.shell(*self.h.uninstall_args(self.name))
        return self.plan.step(f"uninstall-{self.name}", description, act, command=command,
                              touches=[self._storage()]) or f"dry run: would {description}"

    # -- the rollout, watched
    def wait_rolled_out(self, step: str = "install", *, at_least: Mapping[str, int] | None = None) -> Any:
        return self.plan.wait(f"{step}-{self.name}-rollout", f"the Deployments of release {self.namespace}/"
                              f"{self.name} have rolled out (watched; stops with the reason if they cannot)",
                              lambda: self._wait(at_least))

    def _wait(self, at_least: Mapping[str, int] | None = None) -> pd.DataFrame:
        api = self.plan.api
        names = [r.name for r in refs(self.h.manifest(self.name), self.namespace) if r.kind in ROLLOUT_KINDS]

        def done(d: dict | None) -> bool:
            if d is None:
                return False
            spec, status = d.get("spec") or {}, d.get("status") or {}
            want = spec.get("replicas", 1)
            available = want if at_least is None else min(want, at_least.get(d["metadata"]["name"], want))
            return status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1) and \
                status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want and \
                status.get("availableReplicas", 0) >= available

        def why(found: dict[str, dict]) -> str | None:
            return next((r for n in names if not done(found.get(n)) and found.get(n)
                         and (r := diagnose.deployment(api, found[n]))), None)

        found = wait_for(api, "deployments", lambda ds: all(done(ds.get(n)) for n in names), namespace=self.namespace,
                         timeout=self.timeout, diagnose=why,
                         what=f"Deployments {', '.join(names) or '(none)'} of release {self.namespace}/{self.name}")
        return pd.DataFrame([{"deployment": n, "replicas": found[n]["spec"].get("replicas", 1),
                              "available": (found[n].get("status") or {}).get("availableReplicas", 0)} for n in names],
                            columns=["deployment", "replicas", "available"])

    # -- ownership
    def _storage(self, revision: int = 1) -> Ref:
        """The Secret helm keeps a revision in: what stands for the release in a plan's scope."""
        return Ref("Secret", f"sh.helm.release.v1.{self.name}.v{revision}", self.namespace)

    def _before_change(self) -> str | None:
        """Before the run's first change to a release that exists (and that it did not install):
        record its revision, back up its values and manifest (0600) and its Deployments' availability.
        Returns the current manifest (None: no release)."""
        status = self.h.status(self.name)
        if status is None:
            return None
        if self.recorded is None and not self.installed:
            revision = int(status["revision"])
            saved = self._save(revision, "before")
            available = {}
            for ref in refs(self.h.manifest(self.name, revision=revision), self.namespace):
                if ref.kind in ROLLOUT_KINDS:
                    live = objects(self.plan.api).get(ref) or {}
                    available[ref.name] = int((live.get("status") or {}).get("availableReplicas") or 0)
            self.recorded = {"revision": revision, "status": status["status"], "available": available, **saved}
        return self.h.manifest(self.name)

    def _save(self, revision: int, why: str) -> dict[str, Path]:
        """The revision's values and manifest as 0600 files in this run's backup directory."""
        base = f"helm-{self.namespace}-{self.name}-r{revision}-{why}"
        try:
            directory = paths.private_dir(self.plan.record.backup_dir, tighten=True)
            values = safety.write_private(directory / f"{base}.values.yaml",
                                          yaml.safe_dump(self.h.values(self.name, revision=revision), sort_keys=False))
            manifest = safety.write_private(directory / f"{base}.manifest.yaml",
                                            self.h.manifest(self.name, revision=revision))
        except OSError as exc:
            raise BackupFailed(f"backup of release {self.namespace}/{self.name} failed ({exc.strerror}); "
                               "nothing was changed") from None
        return {"values": values, "manifest": manifest}

    def _changed(self, summary: dict, previous: str | None) -> dict:
        if not summary.get("dry_run") and summary.get("revision"):
            self.revisions.append(int(summary["revision"]))
        summary["previous_manifest"] = previous
        summary["diff"] = manifest_diff(previous or "", summary["manifest"],
                                        old_label="before" if previous else "(nothing installed)",
                                        new_label=f"revision {summary['revision']}")
        # compared unmasked (nothing is shown): a Secret value that changed counts
        summary["changed"] = previous is None or previous.strip() != summary["manifest"].strip()
        self._last_manifest = summary["manifest"]
        return summary

    def _forbidden(self, rendered: str) -> str | None:
        """Whether RBAC refuses what helm will do here: the rendered objects and helm's storage Secrets."""
        api = self.plan.api
        checks = [(verb, "", "secrets") for verb in _STORAGE_VERBS]
        for obj in split_manifest(rendered):
            resource = objects(api).dynamic.resources.get(api_version=obj.get("apiVersion", "v1"), kind=obj["kind"])
            checks += [(verb, resource.group or "", resource.name) for verb in _OBJECT_VERBS]
        return diagnose.forbidden(api, self.namespace, list(dict.fromkeys(checks)),
                                  step=f"installing release {self.name}")

    def _undo_description(self) -> str:
        if self.before:
            return f"put release {self.namespace}/{self.name} back to revision {self.before['revision']}, as " \
                   "recorded before this run changed it (helm rollback), and wait for the state it had"
        return f"uninstall release {self.namespace}/{self.name} if this run installed it and it is still there"

    def _undo_command(self) -> str:
        if self.before:
            return self.h.shell("rollback", self.name, str(self.before["revision"]))
        return self.h.shell(*self.h.uninstall_args(self.name))

    def _undo(self) -> str:
        if self.recorded is not None:
            revision = self.recorded["revision"]
            current = self.h.status(self.name)
            if current is None:
                raise KubebookError(f"release {self.namespace}/{self.name} is gone; its revision {revision} is saved "
                                    f"in {self.recorded['manifest']} and {self.recorded['values']}")
            if int(current["revision"]) == revision:
                return f"unchanged: still revision {revision}"
            new = self.h.rollback(self.name, revision)
            self._wait(at_least=self.recorded["available"])
            return f"rolled back to revision {revision} (now revision {new}), its Deployments as available as recorded"
        if self.installed:
            return self.h.uninstall(self.name) + " (this run installed it)"
        return "nothing to undo: this run did not change it"
