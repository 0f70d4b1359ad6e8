"""The same schedule on a control-plane host without a cluster-side job: a crontab line, or a
systemd timer with its service.

Both run the command a CronJob would (``kubebook run ...`` with the same arguments), with this
machine's Python and paths. Secret parameters and the webhook URL go into 0600 files beside the
units, never into the crontab or the unit files. Nothing is installed: the files are written to
a directory (0700) and the commands that install them are printed, so the operator decides.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .. import paths
from ..safety import write_private
from . import cron
from .job import Schedule


def unit_dir(name: str, given: str = "") -> Path:
    return Path(given).expanduser().resolve() if given else paths.state_root() / "schedules" / name


def command(schedule: Schedule, directory: Path, *, python: str = "") -> list[str]:
    """The argv the host runs: this interpreter's ``kubebook``, outputs and secrets under ``directory``."""
    argv = schedule.arguments(output_dir=str(directory / "runs"), secret_dir=str(directory), record=False)
    return [python or sys.executable, "-m", "kubebook.cli", *argv]


def environment(schedule: Schedule) -> dict[str, str]:
    import os
    env = {"KUBEBOOK_SCHEDULE": schedule.name}
    for name in ("KUBEBOOK_RUNBOOKS", "KUBEBOOK_BIN_DIR", "KUBEBOOK_CACHE", "XDG_STATE_HOME", "KUBEBOOK_LAB_ROOT"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def crontab_line(schedule: Schedule, directory: Path) -> str:
    """One crontab line; ``%`` is escaped as crontab needs (cron turns a bare ``%`` into a newline)."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment(schedule).items())
    run = " ".join(shlex.quote(a) for a in command(schedule, directory))
    log = shlex.quote(str(directory / "cron.log"))
    line = f"{schedule.cron} cd {shlex.quote(str(directory))} && {env} {run} >> {log} 2>&1"
    if schedule.cron.startswith("@"):
        when, rest = line.split(" ", 1)
    else:
        fields = line.split(" ", 5)
        when, rest = " ".join(fields[:5]), fields[5]
    return f"{when} {rest.replace('%', chr(92) + '%')}"


def command_of_crontab_line(line: str) -> str:
    """What cron hands to /bin/sh for ``line`` (schedule fields removed, ``\\%`` back to ``%``)."""
    rest = line.split(" ", 1)[1] if line.startswith("@") else line.split(" ", 5)[5]
    return rest.replace(chr(92) + "%", "%")


def _systemd_word(word: str) -> str:
    """One ExecStart= word: specifiers (%) and variables ($) escaped, quoted when needed."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(schedule: Schedule, directory: Path) -> dict[str, str]:
    """``kubebook-<name>.service`` (oneshot, the same command) and ``kubebook-<name>.timer``."""
    unit = f"kubebook-{schedule.name}"
    env = "\n".join(f"Environment={_systemd_word(f'{k}={v}')}" for k, v in environment(schedule).items())
    service = f"""[Unit]
Description=kubebook runbook {schedule.book.id} (schedule {schedule.name})
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
WorkingDirectory={directory}
{env}
ExecStart={' '.join(_systemd_word(w) for w in command(schedule, directory))}
UMask=0077
TimeoutStartSec={schedule.deadline_seconds}
NoNewPrivileges=yes
PrivateTmp=yes
"""
    timer = f"""[Unit]
Description=Run {unit}.service on "{schedule.cron}"

[Timer]
OnCalendar={cron.on_calendar(schedule.cron)}
Persistent=true
AccuracySec=1min
Unit={unit}.service

[Install]
WantedBy=timers.target
"""
    return {f"{unit}.service": service, f"{unit}.timer": timer}


def files(schedule: Schedule, directory: Path) -> dict[str, str]:
    """Every file ``--host`` writes, by name: the units, the crontab line, and the secret files."""
    out = {**systemd_units(schedule, directory), f"kubebook-{schedule.name}.crontab": crontab_line(schedule, directory) + "\n"}
    return {**out, **schedule.secret_files()}


def write(schedule: Schedule, directory: Path) -> list[Path]:
    """Write the files (all 0600, in a 0700 directory) and return their paths."""
    paths.private_dir(directory)
    return [write_private(directory / name, text) for name, text in files(schedule, directory).items()]


def install_hint(schedule: Schedule, directory: Path) -> list[str]:
    unit = f"kubebook-{schedule.name}"
    return [f"systemd: systemctl link {directory}/{unit}.service {directory}/{unit}.timer && "
            f"systemctl enable --now {unit}.timer",
            f"cron:    (crontab -l; cat {directory}/{unit}.crontab) | crontab -"]


def verify(paths_: list[Path]) -> tuple[str, str]:
    """``systemd-analyze verify`` on the units: ("passed"|"failed"|"not available", its output)."""
    tool = shutil.which("systemd-analyze")
    units = [str(p) for p in paths_ if p.suffix in (".service", ".timer")]
    if tool is None:
        return "not available", "systemd-analyze is not installed on this machine"
    proc = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=120)
    return ("passed" if proc.returncode == 0 else "failed"), (proc.stdout + proc.stderr).strip()
