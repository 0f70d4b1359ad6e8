"""A local OCI registry for ``helm push``/``helm pull oci://``: the chart-repository role Harbor plays in the course.

Harbor needs containers and cannot run here; any OCI (Docker v2) registry stores Helm charts
the same way, so the lab uses go-containerregistry's registry package (small, pure Go, no
auth) built into a ten-line program that listens on loopback only and prints its address once
it accepts connections (no port guessing, no polling).

    with LocalRegistry.started(blobs_dir) as reg:
        h.push(package, reg.oci("luffy"))        # oci://127.0.0.1:<port>/luffy
        reg.tags("luffy/eladmin-web")

Manifests are kept in memory and blobs in ``blobs_dir``: a stopped registry forgets its tags.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from .. import binaries, process
from ..errors import KubebookError

MODULE = "github.com/google/go-containerregistry"
VERSION = "v0.22.1"
NAME = "oci-registry"

# The whole server: go-containerregistry's handler on a loopback listener. A non-loopback
# address is refused so the lab never listens beyond this machine.
MAIN_GO = """package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "loopback address to listen on (port 0: any free port)")
	blobs := flag.String("blobs", "", "directory for blobs (empty: memory)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*address)
	if err != nil {
		log.Fatalf("address %q: %v", *address, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("address %q is not a loopback IP address", *address)
	}
	var opts []registry.Option
	if *blobs != "" {
		if err := os.MkdirAll(*blobs, 0o700); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobs)))
	}
	listener, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\\n", listener.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(listener, registry.New(opts...)))
}
"""


def binary_path() -> Path:
    return binaries.cache_root() / "bin" / f"{NAME}-{VERSION}" / NAME


def ensure_registry(*, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Path:
    """The registry binary: cached, or built now from the Go module (about a minute) with the
    same wrapper-module helpers :mod:`kubebook.binaries` uses for helm."""
    path = binary_path()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if binaries.shutil.which("go") is None:
        raise KubebookError(f"the Go toolchain is needed to build {NAME}")
    log(f"[build] {NAME} ({MODULE} {VERSION}): building into {path.parent}")
    work = binaries.cache_root() / "src" / f"{NAME}-{VERSION}"
    binaries._write_wrapper(work, NAME, {MODULE: VERSION}, {}, [f"{MODULE}/pkg/registry"])
    main_dir = work / "cmd" / NAME
    main_dir.mkdir(parents=True, exist_ok=True)
    (main_dir / "main.go").write_text(MAIN_GO)
    env = binaries._go_env(work)
    logs = binaries.cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{NAME}.partial")
    package = f"./cmd/{NAME}"
    with open(logs / f"build-{NAME}.log", "w") as build_log:
        binaries._run(["go", "mod", "tidy"], cwd=work, env=env, log=build_log, what=f"{MODULE}@{VERSION} (go mod tidy)")
        binaries._go_build(work, path.parent, env, build_log, f"{NAME} {VERSION}", [package], "-s -w",
                           names={package: partial.name})
    os.replace(partial, path)  # a half-written binary never looks cached
    return path


@dataclass
class LocalRegistry:
    """A running registry process on 127.0.0.1, started by :meth:`start` as a scratch process of
    this one (it never outlives it: see :mod:`kubebook.process`), stopped by its record."""

    address: str
    child: process.Child
    log_path: Path

    @classmethod
    def start(cls, blobs_dir: str | os.PathLike, *, address: str = "127.0.0.1:0",
              timeout: float = 30) -> "LocalRegistry":
        binary = ensure_registry()
        blobs = Path(blobs_dir).expanduser()
        blobs.mkdir(parents=True, exist_ok=True)
        log_path = blobs.parent / f"{NAME}.log"
        child = process.start([binary, "--address", address, "--blobs", blobs], log=log_path, scratch=True,
                              capture_stdout=True)
        # the first line comes once the listener is open, or never if it fails (then stdout closes)
        line = _read_line(child.popen, timeout)
        if not line.startswith("listening on "):
            process.stop(child.record, kill=True)
            tail = log_path.read_text(errors="replace")[-500:].strip()
            raise KubebookError(f"{NAME} did not start: {tail or line or 'no output'} (log: {log_path})")
        return cls(address=line.removeprefix("listening on ").strip(), child=child, log_path=log_path)

    @classmethod
    @contextlib.contextmanager
    def started(cls, blobs_dir: str | os.PathLike, **kwargs) -> Iterator["LocalRegistry"]:
        registry = cls.start(blobs_dir, **kwargs)
        try:
            yield registry
        finally:
            registry.stop()

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def process(self) -> subprocess.Popen:
        return self.child.popen

    @property
    def running(self) -> bool:
        return self.child.running

    def oci(self, path: str = "") -> str:
        """``oci://<address>/<path>``, the reference helm push/pull take."""
        return f"oci://{self.address}" + (f"/{path.strip('/')}" if path else "")

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def catalog(self) -> list[str]:
        """Repositories in the registry (``GET /v2/_catalog``)."""
        return list(self._get("/v2/_catalog").get("repositories") or [])

    def tags(self, repository: str) -> pd.DataFrame:
        """Tags of ``repository`` with the media type of each manifest: a chart's config is
        ``application/vnd.cncf.helm.config.v1+json``."""
        rows = []
        for tag in self._get(f"/v2/{repository}/tags/list").get("tags") or []:
            request = urllib.request.Request(f"http://{self.address}/v2/{repository}/manifests/{tag}",
                                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                digest = resp.headers.get("Docker-Content-Digest", "")
                manifest = json.loads(resp.read())
            layers = manifest.get("layers") or []
            rows.append({"repository": repository, "tag": tag, "digest": digest,
                         "config": (manifest.get("config") or {}).get("mediaType", ""),
                         "layers": ", ".join(l.get("mediaType", "") for l in layers),
                         "bytes": sum(int(l.get("size", 0)) for l in layers)})
        return pd.DataFrame(rows, columns=["repository", "tag", "digest", "config", "layers", "bytes"])

    def stop(self, timeout: float = 10) -> str:
        """Stop this registry's own process (by its record)."""
        if not self.running:
            return "already stopped"
        process.stop(self.child.record, timeout=timeout)
        return f"stopped (pid {self.pid})"


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The process's first stdout line, or "" if it exits or says nothing within ``timeout``."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        sel.unregister(proc.stdout)
        sel.close()


# The values of the course's Harbor chart that decide how it is reached and where it keeps data.
# Shown (masked) in the chart-repository runbook; Harbor itself needs containers and is not run.
HARBOR_VALUES = {
    "expose": {"type": "ingress", "tls": {"enabled": True, "certSource": "auto"},
               "ingress": {"hosts": {"core": "harbor.luffy.com"}, "className": "nginx"}},
    "externalURL": "https://harbor.luffy.com",
    "persistence": {"enabled": True, "resourcePolicy": "keep",
                    "persistentVolumeClaim": {"registry": {"storageClass": "nfs", "size": "20Gi"},
                                              "database": {"storageClass": "nfs", "size": "2Gi"},
                                              "redis": {"storageClass": "nfs", "size": "1Gi"},
                                              "trivy": {"storageClass": "nfs", "size": "5Gi"}}},
    "harborAdminPassword": "change-me-at-install",
    "database": {"type": "internal", "internal": {"password": "change-me-too"}},
    "trivy": {"enabled": True},
    "notary": {"enabled": False},
}

HARBOR_NOTES = {
    "expose.type": "how Harbor is reached: ingress (course), nodePort, loadBalancer or clusterIP",
    "expose.tls.certSource": "auto: Harbor makes a self-signed CA; clients must trust it (containerd hosts.toml, helm --ca-file)",
    "expose.ingress.hosts.core": "the host name the ingress routes to Harbor's core",
    "externalURL": "the URL Harbor writes into tokens and docker/helm login redirects: must match how clients reach it",
    "persistence.enabled": "false loses every image and chart when a Pod restarts",
    "persistence.resourcePolicy": "keep: helm uninstall leaves the PVCs (and the data) in place",
    "persistence.persistentVolumeClaim.registry.storageClass": "a StorageClass that provisions volumes (the course's NFS)",
    "harborAdminPassword": "the admin user's first password; set your own at install, change it after",
    "database.internal.password": "the bundled PostgreSQL's password",
    "trivy.enabled": "image vulnerability scanning",
    "notary.enabled": "image signing (removed from Harbor 2.9; cosign signatures replace it)",
}


def harbor_values_table() -> pd.DataFrame:
    """The Harbor values above as helm paths, masked, with what each decides."""
    from . import values_table
    table = values_table(HARBOR_VALUES)
    table["why it matters"] = [HARBOR_NOTES.get(p, "") for p in table["path"]]
    return table
