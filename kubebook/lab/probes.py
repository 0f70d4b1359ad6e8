"""Health checks of the lab's components: one GET on loopback with the credentials each needs."""
from __future__ import annotations

import base64
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .. import kubeconfig as kcfg
from ..errors import LabError
from ..safety import write_private
from .components import BY_NAME, Health
from ..ports import LOOPBACK

if TYPE_CHECKING:
    from .lab import Lab


class PortTaken(LabError):
    """A component could not bind its port: another program took it after the lab checked it."""


def wait_ready(lab: "Lab", component: str, deadline: float) -> None:
    """Until ``component`` answers its health check; at once an error if it exits meanwhile."""
    delay = 0.05
    while not healthy(lab, BY_NAME[component].health):
        if lab.component_state(component) != "running":
            last = lab.last_log_line(component)
            error = PortTaken if "address already in use" in last else LabError
            raise error(f"{component} exited during start-up; last log line: {last} (log: {lab.log_file(component)})")
        if time.monotonic() > deadline:
            raise LabError(f"{component} not ready before the timeout; see {lab.log_file(component)}")
        time.sleep(delay)  # no watch exists before the API does: poll the health endpoint
        delay = min(delay * 1.5, 0.5)


def healthy(lab: "Lab", health: Health) -> bool:
    scheme = "https" if health.tls else "http"
    code, body = _get(f"{scheme}://{LOOPBACK}:{lab.ports[health.port]}{health.path}", _context(lab, health.tls))
    return code == 200 and health.expect in body


def _context(lab: "Lab", tls: str) -> ssl.SSLContext | None:
    if not tls:
        return None
    if tls == "self-signed":  # generated in memory at start: nothing to verify it against
        return ssl._create_unverified_context()
    if tls == "etcd-client":
        ctx = ssl.create_default_context(cafile=str(lab.etcd_ca))
        ctx.load_cert_chain(str(lab.etcd_cert), str(lab.etcd_key))
        return ctx
    ctx = ssl.create_default_context(cafile=str(lab.pki.ca_crt))
    ctx.load_cert_chain(*map(str, _admin_cert_files(lab)))
    return ctx


def _get(url: str, ctx: ssl.SSLContext | None) -> tuple[int, bytes]:
    assert url.split("//")[1].startswith(LOOPBACK), "the lab talks to loopback only"
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _admin_cert_files(lab: "Lab") -> tuple[Path, Path]:
    """The admin client cert/key as files (ssl cannot take them from memory)."""
    cert, key = lab.dir / ".admin-client.crt", lab.dir / ".admin-client.key"
    if not cert.exists():
        user = kcfg.load(lab.kubeconfig)["users"][0]["user"]
        write_private(key, base64.b64decode(user["client-key-data"]))
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    return cert, key
