"""Dry run by default: named steps that describe themselves, and act only when confirmed.

A runbook that changes anything builds one :class:`Plan` for its target (a node, a namespace,
an etcd member, a release...) and for everything else it will touch (``also``). Without
``confirm`` every step only says what it would do, and lists the objects it would touch. With
``confirm`` naming exactly the target and every ``also`` item the same steps run; a ``confirm``
that names anything else, or leaves something out, is refused before any step, so a typo never
acts on the wrong cluster::

    plan = Plan(target="k8s-slave1", kind="node", also=["namespace/kubebook-taints"],
                confirm=confirm, cluster=target)
    plan.apply(deployment)          # created, or backed up and replaced, restored at clean-up
    plan.modify(Ref("Node", "k8s-slave1"), add_taint, description="taint ...", command="kubectl taint ...")
    plan.wait("rollout", "every replica placed", lambda: settle(...))
    plan.cleanup(when=cleanup)      # delete what this run created, restore what it changed
    plan.table(); plan.objects()

A step that touches an object outside the confirmed scope fails in the dry run already.
Objects are created with the run's mark and recorded (:mod:`kubebook.ownership`); an object that
existed before is backed up before its first change, and a failed backup stops the change.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
from kubernetes.client.exceptions import ApiException

from . import ownership
from .errors import ConfirmationRequired, KubebookError
from .objects import Ref, clean, objects
from .parameters import split_confirm
from .waits import wait_deleted

STEP_COLUMNS = ["step", "what", "command", "status", "detail"]
OBJECT_COLUMNS = ["step", "action", "kind", "namespace", "name", "before", "after"]


class StepFailed(KubebookError):
    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step {step} failed: {cause}")
        self.step = step
        self.cause = cause


class OutOfScope(ConfirmationRequired):
    """A step would touch something the confirmation does not name."""


class NotPreviewed(ConfirmationRequired):
    """A confirmed run reached a step its preview did not show (``Plan(only=...)``)."""


def scope_unit(item: str | Ref, default_kind: str = "") -> str:
    """``kind/name`` for a confirm item or an object (a namespaced object's unit is its namespace)."""
    if isinstance(item, Ref):
        return item.scope
    kind, sep, name = item.partition("/")
    if not sep:
        return f"{_slug(default_kind)}/{item}" if default_kind else item
    return f"{_slug(kind)}/{name}"


def _slug(kind: str) -> str:
    return kind.strip().lower().replace(" ", "-")


@dataclass
class Plan:
    target: str
    confirm: str | None = None
    kind: str = "target"
    also: Sequence[str | Ref] = ()
    cluster: Any = None  # a kubebook.connect.Target or an ApiClient: what object steps act on
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stdout), repr=False)
    rows: list[dict] = field(default_factory=list)
    touched: list[dict] = field(default_factory=list)
    # The step names a preview (a dry run of the same change) showed: a confirmed run refuses any
    # other step before it acts, so a click changes only what its preview listed (widgets).
    only: Sequence[str] | None = None
    cleanups: dict[str, tuple] = field(default_factory=dict)  # clean-up steps for what is not an object (at_cleanup)

    def __post_init__(self) -> None:
        if not self.target:
            raise KubebookError(f"no {self.kind} to act on")
        self.primary = scope_unit(self.target, self.kind)
        self.scope = [self.primary] + [u for u in dict.fromkeys(scope_unit(a) for a in self.also if a)
                                       if u != self.primary]
        if self.confirm:
            self._check_confirm()
        others = f" and {', '.join(self.scope[1:])}" if len(self.scope) > 1 else ""
        mode = f"ACTING on {self.kind} {self.target}{others}" if self.acting else \
            f"DRY RUN for {self.kind} {self.target}{others}: nothing will change " \
            f"(set confirm={self.confirm_text!r} to act)"
        self.log(mode)
        self._record: ownership.Record | None = None
        self._unpreviewed = list(self.only or [])

    @classmethod
    def undo(cls, run: str, *, confirm: str | None = None, cluster: Any = None,
             log: Callable[[str], None] | None = None) -> "Plan":
        """A plan that cleans up after an earlier run from its record (``kubebook cleanup RUN``):
        its target is the run, and every scope the run touched must be confirmed too."""
        record = ownership.Record.load(run)
        if not record.path.is_file():
            raise KubebookError(f"no record of run {run!r} in {record.path.parent}")
        units = sorted({r.scope for r in [*record.created, *record.changed]})
        plan = cls(target=run, kind="run", also=units, confirm=confirm, cluster=cluster,
                   **({"log": log} if log else {}))
        plan._record = record
        return plan

    # ---- confirmation ------------------------------------------------------------------------
    @property
    def confirm_text(self) -> str:
        """The ``confirm`` value that allows this plan: the target, then the rest by kind/name."""
        return ", ".join([self.target, *self.scope[1:]])

    def _check_confirm(self) -> None:
        named = []
        for item in split_confirm(self.confirm or ""):
            if "/" in item:
                named.append(scope_unit(item))
            elif item == self.target:
                named.append(self.primary)
            else:  # a bare name stands for the one unit of that name
                matches = [u for u in self.scope if u.split("/", 1)[1] == item]
                named.append(matches[0] if len(matches) == 1 else item)
        missing = [u for u in self.scope if u not in named]
        extra = [u for u in named if u not in self.scope]
        if missing or extra:
            parts = ([f"it does not name {', '.join(missing)}"] if missing else []) + \
                ([f"this run does not touch {', '.join(extra)}"] if extra else [])
            raise ConfirmationRequired(f"confirm={self.confirm!r} is refused: {'; '.join(parts)}; nothing was "
                                       f"changed (to act: confirm={self.confirm_text!r})")

    @property
    def acting(self) -> bool:
        return bool(self.confirm)  # a confirm that does not match exactly was refused above

    @property
    def dry_run(self) -> bool:
        return not self.acting

    def covers(self, ref: Ref) -> bool:
        return ref.scope in self.scope or (ref.kind == "Namespace" and f"namespace/{ref.name}" in self.scope)

    def _require_scope(self, step: str, refs: Iterable[Ref]) -> None:
        outside = [r for r in refs if not self.covers(r)]
        if outside:
            raise OutOfScope(f"step {step} would touch {', '.join(map(str, outside))}, outside what this run "
                             f"may act on ({', '.join(self.scope)}); nothing was changed by it")

    # ---- the cluster -------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        if self.cluster is None:
            raise KubebookError("this plan has no cluster (Plan(..., cluster=target))")
        return getattr(self.cluster, "api", self.cluster)

    @property
    def record(self) -> ownership.Record:
        if self._record is None:
            self._record = ownership.Record.load(ownership.run_id())
        return self._record

    # ---- steps -------------------------------------------------------------------------------
    def step(self, name: str, description: str, action: Callable[[], Any] | None = None, *,
             command: str = "", touches: Iterable[Ref] = ()) -> Any:
        """Describe a step; run ``action`` only when acting. Returns what the action returned (or None)."""
        touches = list(touches)
        self._require_scope(name, touches)
        if self.acting and self.only is not None:
            if name not in self._unpreviewed:
                raise NotPreviewed(f"step {name} ({description}) was not in the preview: nothing more was changed; "
                                   "preview again")
            self._unpreviewed.remove(name)
        row = {"step": name, "what": description, "command": command, "status": "planned", "detail": ""}
        self.rows.append(row)
        if self.dry_run or action is None:
            self.log(f"[{name}] would {description}" + (f"\n    $ {command}" if command else ""))
            return None
        self.log(f"[{name}] {description}" + (f"\n    $ {command}" if command else ""))
        started = time.monotonic()
        try:
            result = action()
        except Exception as exc:
            row.update(status="failed", detail=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            raise StepFailed(name, exc) from exc
        row.update(status="done", detail=f"{time.monotonic() - started:.1f}s"
                   + (f": {result}" if isinstance(result, (str, int)) and result != "" else ""))
        return result

    def at_cleanup(self, name: str, description: str, action: Callable[[], Any], *, command: str = "",
                   touches: Iterable[Ref] = ()) -> None:
        """Have :meth:`cleanup` run ``action`` as step ``name`` (newest first, before the objects this run
        created are deleted): how to undo what is not a Kubernetes object the run made (a helm release,
        network namespaces, a restart after a restore). Registered in a dry run too, so the dry run lists
        the clean-up; registering the same name again updates that step (it keeps its place)."""
        self._require_scope(name, list(touches))
        self.cleanups[name] = (description, action, command, list(touches))

    def wait(self, name: str, description: str, action: Callable[[], Any]) -> Any:
        """A wait that follows a change: described in a dry run (nothing to wait for), run when acting."""
        return self.step(name, f"wait until {description}", action)

    def check(self, name: str, description: str, action: Callable[[], Any]) -> Any:
        """A read-only check that only makes sense after the changes (skipped in a dry run)."""
        return self.step(name, f"check {description}", action)

    def _touch(self, step: str, action: str, ref: Ref, before: str, after: str) -> None:
        self._require_scope(step, [ref])
        self.touched.append({"step": step, "action": action, "kind": ref.kind, "namespace": ref.namespace,
                             "name": ref.name, "before": before, "after": after})

    def _creates(self, ref: Ref) -> bool:
        """Whether an earlier step of this plan creates ``ref``."""
        return any(t["action"] in ("create", "apply") and Ref(t["kind"], t["name"], t["namespace"]) == ref
                   for t in self.touched)

    def _state(self, ref: Ref) -> tuple[dict | None, str]:
        obj = objects(self.api).get(ref)
        if obj is None:
            return None, "absent"
        owner = ownership.made_by(obj)
        if self.record.owns(ref, obj):
            return obj, "made by this run"
        return obj, f"made by kubebook run {owner}" if owner else "existed before this run"

    def _backup_once(self, obj: dict, *, restore: bool) -> str:
        ref = Ref.of(obj)
        if ref not in self.record.changed:
            path = ownership.backup(obj, self.record)
            self.record.add_changed(ownership.Change(ref, path, restore))
        return str(self.record.changed[ref].backup)

    # ---- object steps: create, apply, modify, delete, clean-up ---------------------------------
    def create(self, body: dict, namespace: str = "", *, step: str = "", command: str = "") -> str | None:
        """Create ``body`` marked as this run's, or keep what is already there (never changed)."""
        ref = Ref.of(body, namespace)
        name = step or f"create-{ref.kind.lower()}-{ref.name}"
        self._require_scope(name, [ref])
        obj, before = self._state(ref)
        after = "kept as it is" if obj is not None else "created (deleted at clean-up)"
        self._touch(name, "create", ref, before, after)

        def act() -> str:
            try:
                objects(self.api).create(ownership.mark(body, self.record.run), ref.namespace)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                return f"exists ({before}): kept"
            self.record.add_created(ref)
            return "created"

        return self.step(name, f"create {ref}" + ("" if obj is None else f" (exists: {before}, kept)"), act,
                         command=command or f"kubectl create -f {ref.kind.lower()}-{ref.name}.yaml", touches=[ref])

    def apply(self, body: dict, namespace: str = "", *, step: str = "", description: str = "", command: str = "",
              restore: bool = True) -> str | None:
        """Create ``body``, or replace the object with it: one this run made directly, one that existed
        before only after a backup (put back at clean-up unless ``restore=False``)."""
        ref = Ref.of(body, namespace)
        name = step or f"apply-{ref.kind.lower()}-{ref.name}"
        self._require_scope(name, [ref])
        obj, before = self._state(ref)
        ours = obj is not None and self.record.owns(ref, obj)
        after = "created (deleted at clean-up)" if obj is None else "replaced" if ours else \
            f"backed up, replaced{', restored at clean-up' if restore else ''}"
        self._touch(name, "apply", ref, before, after)

        def act() -> str:
            api = objects(self.api)
            for _ in range(5):  # a controller writing status between our read and replace: read again
                current = api.get(ref)
                if current is None:
                    api.create(ownership.mark(body, self.record.run), ref.namespace)
                    self.record.add_created(ref)
                    return "created"
                marked = ownership.mark(body, self.record.run) if self.record.owns(ref, current) else body
                saved = "" if self.record.owns(ref, current) else self._backup_once(current, restore=restore)
                meta = {**marked["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
                try:
                    api.replace({**marked, "metadata": meta}, ref.namespace)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    continue
                return f"replaced (backup {saved})" if saved else "replaced"
            raise KubebookError(f"{ref} kept changing under us; try again")

        return self.step(name, description or f"apply {ref}", act,
                         command=command or f"kubectl apply -f {ref.kind.lower()}-{ref.name}.yaml", touches=[ref])

    def modify(self, ref: Ref, edit: Callable[[dict], dict | None], *, description: str, command: str = "",
               step: str = "", restore: bool = True,
               content_type: str = "application/merge-patch+json") -> str | None:
        """Patch ``ref`` with ``edit(current)`` (None: nothing to change). A pre-existing object is
        backed up first; a concurrent writer (409) makes it read and edit again."""
        name = step or f"modify-{ref.kind.lower()}-{ref.name}"
        self._require_scope(name, [ref])
        obj, before = self._state(ref)
        if obj is None:  # in a dry run an earlier step may be the one that creates it
            after = "patched" if self._creates(ref) else "missing: the step will fail"
        elif self.record.owns(ref, obj):
            after = "patched"
        else:
            after = f"backed up, patched{', restored at clean-up' if restore else ''}"
        self._touch(name, "patch", ref, before, after)

        def act() -> str:
            api = objects(self.api)
            for _ in range(5):
                current = api.get(ref)
                if current is None:
                    raise KubebookError(f"{ref} not found")
                patch = edit(current)
                if not patch:
                    return "unchanged"
                if not self.record.owns(ref, current):
                    self._backup_once(current, restore=restore)
                conditional = {**patch, "metadata": {**(patch.get("metadata") or {}),
                                                     "resourceVersion": current["metadata"]["resourceVersion"]}}
                try:
                    api.patch(ref, conditional, content_type=content_type)
                    return "patched"
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            raise KubebookError(f"{ref} kept changing under us; try again")

        return self.step(name, description, act, command=command, touches=[ref])

    def delete(self, ref: Ref, *, step: str = "", wait: bool = True, timeout: float = 120.0, existing: str = "keep",
               restore: bool = False, command: str = "") -> str | None:
        """Delete ``ref`` if this run created it. One that existed before is kept (``existing="keep"``),
        or, with ``existing="backup"``, backed up and deleted (re-created at clean-up if ``restore``)."""
        name = step or f"delete-{ref.kind.lower()}-{ref.name}"
        self._require_scope(name, [ref])
        obj, before = self._state(ref)
        ours = obj is not None and self.record.owns(ref, obj)
        if obj is None:
            after = "nothing to delete"
        elif ours or existing == "backup":
            after = "deleted" if ours else f"backed up, deleted{', re-created at clean-up' if restore else ''}"
        else:
            after = "kept: this run did not create it"
        self._touch(name, "delete", ref, before, after)

        def act() -> str:
            api = objects(self.api)
            current = api.get(ref)
            if current is None:
                return "already gone"
            if not self.record.owns(ref, current):
                if existing != "backup":
                    return f"kept ({before})"
                self._backup_once(current, restore=restore)
            api.delete(ref)
            if wait:
                wait_deleted(self.api, ref, timeout=timeout)
            if ref in self.record.created:  # gone: nothing left for the clean-up to do
                self.record.created.remove(ref)
                self.record.save()
            return "deleted"

        return self.step(name, f"delete {ref}" + ("" if ours or obj is None or existing == "backup"
                                                  else " (kept: not made by this run)"), act,
                         command=command or f"kubectl delete {ref.kind.lower()} {ref.name}"
                         + (f" -n {ref.namespace}" if ref.namespace else ""), touches=[ref])

    def cleanup(self, *, when: bool = True, within_scope: bool = False) -> pd.DataFrame:
        """Undo the run: delete what it created (newest first), put back what it changed from the
        backups. With ``when=False`` everything stays, and the table says how to undo it later.

        ``within_scope``: only what this plan's confirmation covers (a widget's plan undoes its own
        namespace or node, while the kernel's run record also holds what other plans did)."""
        record = self.record
        mine = (lambda ref: self.covers(ref)) if within_scope else (lambda ref: True)
        if not when:
            left = len(record.created) + len(record.changed)
            self.step("clean-up", f"leave {left} object(s) as they are (undo later: kubebook cleanup {record.run})"
                      + "".join(f"; not done: {d[0]}" for d in self.cleanups.values()))
            return self.objects()
        # Every undo step is tried even when one fails (a namespace stuck in deletion must not leave a
        # node cordoned); the first failure is raised at the end, and the table shows each step's status.
        failures: list[StepFailed] = []

        def attempt(undo: Callable[[], Any]) -> None:
            try:
                undo()
            except StepFailed as exc:
                failures.append(exc)
        for name, (description, action, command, touches) in reversed(list(self.cleanups.items())):
            attempt(lambda: self.step(name, description, action, command=command, touches=touches))
        for ref in reversed([r for r in record.created if mine(r)]):
            attempt(lambda: self.delete(ref, step=f"clean-up-{ref.kind.lower()}-{ref.name}"))
        for change in list(record.changed.values()):
            if change.restore and mine(change.ref):
                attempt(lambda: self.restore(change))
        if failures:
            if len(failures) > 1:
                self.log(f"clean-up: {len(failures)} steps failed: {', '.join(f.step for f in failures)}")
            raise failures[0]
        if self.acting and not within_scope:
            record.cleaned = True
            record.save()
        return self.objects()

    def restore(self, change: ownership.Change) -> str | None:
        """Put a pre-existing object back as its backup recorded it."""
        ref = change.ref
        name = f"restore-{ref.kind.lower()}-{ref.name}"
        self._touch(name, "restore", ref, "changed by this run", f"as in {change.backup}")

        def act() -> str:
            api = objects(self.api)
            saved = ownership.load_backup(change.backup)
            current = api.get(ref)
            if current is None:
                api.create(clean(saved), ref.namespace)
                return f"re-created from {change.backup}"
            patch = ownership.restore_patch(ref.kind, saved, current)
            if patch is not None:
                api.patch(ref, patch)
                return f"restored from {change.backup}"
            for _ in range(5):
                try:
                    api.replace(ownership.replacement(saved, current), ref.namespace)
                    return f"restored from {change.backup}"
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    current = api.get(ref)
            raise KubebookError(f"{ref} kept changing under us; restore it with kubectl replace -f {change.backup}")

        return self.step(name, f"restore {ref} from its backup", act,
                         command=f"kubectl replace -f {change.backup}", touches=[ref])

    # ---- tables ------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """Every step with its status: planned (dry run), done or failed."""
        return pd.DataFrame(self.rows, columns=STEP_COLUMNS)

    def objects(self) -> pd.DataFrame:
        """Every object the steps touch, by scope, kind and name: what it was, what it becomes."""
        table = pd.DataFrame(self.touched, columns=OBJECT_COLUMNS)
        return table.sort_values(["namespace", "kind", "name"], kind="stable").reset_index(drop=True)


def perform(plan: Plan | None, name: str, description: str, action: Callable[[], Any], command: str) -> Any:
    """Run ``action`` now (no plan: library use), or as a step of ``plan`` (described only in a dry run)."""
    if plan is None:
        return action()
    return plan.step(name, description, action, command=command)
