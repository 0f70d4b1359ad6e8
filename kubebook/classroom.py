"""The classroom: JupyterLab on loopback, opened at the runbooks, pointed at one lab.

    server = start("student-07")     # the lab is started (or reused) first
    server.url                       # http://127.0.0.1:<port>/lab?token=...
    server.stop()

The lab reaches the notebooks through the server's environment, which every kernel inherits:
``KUBEBOOK_LAB`` names the lab (empty ``lab``/``kubeconfig`` parameters fall back to it, in
:func:`kubebook.connect.target`), and
``KUBECONFIG``/``ETCDCTL_*`` plus the lab's ``kubectl``/``etcdctl`` on ``PATH`` make the hand-typed
steps in a JupyterLab terminal act on the same lab as the runbooks.

The token is random per start and travels in the environment (``JUPYTER_TOKEN``), never on a
command line other users could read in ``/proc``; the URL carrying it is printed for the
trainer and kept in ``<lab>/jupyter.url`` (0600).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import binaries, lab as labs, runner
from .connect import LAB_ENV as LAB_VARIABLE  # what connect.target falls back to: one policy, in connect
from .errors import LabError
from .safety import write_private

LOOPBACK = labs.LOOPBACK


class ClassroomError(LabError):
    """JupyterLab could not be started for the lab."""


def environment(lab: labs.Lab, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment JupyterLab and its kernels and terminals run with, for ``lab``."""
    env = dict(os.environ if base is None else base)
    env.update(lab.env())
    env[LAB_VARIABLE] = lab.name
    tool_dirs = []
    for tool in ("kubectl", "etcdctl", "etcdutl"):
        found = binaries.find(tool)
        if found and str(found.parent) not in tool_dirs:
            tool_dirs.append(str(found.parent))
    env["PATH"] = os.pathsep.join([*tool_dirs, str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def command(port: int, root: Path, *, workspaces: Path) -> list[str]:
    """``jupyter lab`` on 127.0.0.1:``port`` serving ``root``, with nothing reaching outside the machine."""
    cmd = [sys.executable, "-m", "jupyterlab",
           f"--ServerApp.ip={LOOPBACK}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={workspaces}",
           # JupyterLab would otherwise fetch news, update checks and the extension catalogue from the internet
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses to run as root without it; the CI machines run as root
    return cmd


@dataclass
class Server:
    lab: str
    port: int
    root: Path
    process: subprocess.Popen
    token: str = field(repr=False)
    log: Path

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """The address to open: JupyterLab at the runbooks, logged in by the token."""
        return f"{self.base}/lab?token={self.token}"

    def notebook_url(self, runbook: str) -> str:
        """The address of one runbook (``scheduling/node-board``) in this JupyterLab."""
        return f"{self.base}/lab/tree/{runbook.removesuffix('.ipynb')}.ipynb?token={self.token}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop this JupyterLab (its kernels go with it); the lab keeps running."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def _status(base: str, token: str) -> int | None:
    request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def start(lab_name: str = "kubebook", *, port: int = 0, nodes: int = 3, root: str | Path | None = None,
          timeout: float = 90.0, log=print) -> Server:
    """Start (or reuse) the lab, then JupyterLab for it; returns once JupyterLab answers."""
    lab = labs.get(lab_name)
    lab.up(nodes=nodes, log=log)  # idempotent: a running lab is reused as it is
    root = Path(root) if root else runbooks_dir()
    if not root.is_dir():
        raise ClassroomError(f"no runbooks directory at {root}")
    port = port or labs.free_loopback_port()
    token = secrets.token_urlsafe(24)
    env = environment(lab)
    env["JUPYTER_TOKEN"] = token
    env["JUPYTERLAB_SETTINGS_DIR"] = str(_settings(lab.dir / "jupyter" / "settings"))
    log_file = lab.logs_dir / "jupyterlab.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(command(port, root, workspaces=lab.dir / "jupyter" / "workspaces"),
                                   env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(lab=lab.name, port=port, root=root, process=process, token=token, log=log_file)
    deadline = time.monotonic() + timeout
    while _status(server.base, token) != 200:
        if process.poll() is not None:
            raise ClassroomError(f"JupyterLab exited with {process.returncode} before answering: "
                                 f"{_last_line(log_file)} (log: {log_file})")
        if time.monotonic() > deadline:
            server.stop()
            raise ClassroomError(f"JupyterLab did not answer on {server.base} within {timeout:.0f}s (log: {log_file})")
        time.sleep(0.2)  # a listening socket cannot be watched for; its answer is polled briefly
    write_private(lab.dir / "jupyter.url", server.url + "\n")
    return server


# JupyterLab settings of each lab's classroom: no prompt to fetch news or check for updates (both
# would reach the internet), and a runbook opens with its Python kernel started, without asking.
QUIET_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                  {"fetchNews": "false", "checkForUpdates": False},
                  "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True}}


def _settings(directory: Path) -> Path:
    for name, values in QUIET_SETTINGS.items():
        path = directory / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2) + "\n")
    return directory


def _last_line(path: Path) -> str:
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()] if path.is_file() else []
    return lines[-1][:300] if lines else "(no output)"


def runbooks_dir() -> Path:
    return runner.runbooks_root()


def serve(lab_name: str = "kubebook", *, port: int = 0, nodes: int = 3) -> int:
    """``kubebook jupyter``: start, print the URL, and run until interrupted (the lab stays up)."""
    server = start(lab_name, port=port, nodes=nodes, log=lambda m: print(m, flush=True))
    print(f"JupyterLab for lab {server.lab}, opened at {server.root}:\n\n    {server.url}\n\n"
          f"Runbooks opened there act on lab {server.lab} ({LAB_VARIABLE}={server.lab}); "
          f"log: {server.log}. Ctrl-C stops JupyterLab; `kubebook lab down --name {server.lab}` stops the lab.",
          flush=True)
    # SIGTERM (a supervisor, a test) stops JupyterLab as Ctrl-C does: it runs in its own session
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
