"""Where kubebook keeps things on this machine: one home for every directory policy.

- state (labs, backups, run records, network labs): ``$XDG_STATE_HOME/kubebook``, by default
  ``~/.local/state/kubebook``; kept across runs, outside any repository;
- cache (built binaries, helm's own directories): ``$KUBEBOOK_CACHE``, by default ``~/.cache/kubebook``,
  so a fresh clone and CI reuse what an earlier build made.

Directories that may hold secrets (backups, run records, labs) are created 0700.
"""
from __future__ import annotations

import os
from pathlib import Path


def state_root() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kubebook"


def cache_root() -> Path:
    return Path(os.environ.get("KUBEBOOK_CACHE") or Path.home() / ".cache" / "kubebook")


def labs_root() -> Path:
    """Where labs live: ``$KUBEBOOK_LAB_ROOT``, else ``<state>/labs``."""
    return Path(os.environ.get("KUBEBOOK_LAB_ROOT") or state_root() / "labs")


def netlabs_root() -> Path:
    return Path(os.environ.get("KUBEBOOK_NETLAB_ROOT") or state_root() / "netlabs")


def backups_root(topic: str = "") -> Path:
    """Backups taken before a change (``<state>/backups/<topic>``)."""
    root = state_root() / "backups"
    return root / topic if topic else root


def runs_root() -> Path:
    """Run records (one JSON file per run): ``$KUBEBOOK_RUNS_ROOT``, else ``<state>/runs``."""
    return Path(os.environ.get("KUBEBOOK_RUNS_ROOT") or state_root() / "runs")


def backup_dir(given: str | os.PathLike | None, topic: str) -> Path:
    """``given`` made absolute, or the topic's default backup directory."""
    return Path(given).expanduser().resolve() if given else backups_root(topic)


def private_dir(path: str | os.PathLike, *, tighten: bool = False) -> Path:
    """``path`` created if missing; every directory kubebook creates on the way is 0700.

    An existing directory keeps its mode (it is the user's) unless ``tighten``: kubebook's own
    state directories are always made 0700.
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
    if tighten:
        os.chmod(path, 0o700)
    return path
