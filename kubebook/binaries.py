"""Find or build the upstream binaries the lab runs.

These machines have no Docker and no download sites, only the Go module proxy,
so etcd, the Kubernetes control plane, kubectl and kwok are built from their Go
modules. The builds take minutes, so they are cached outside the repository in
``$KUBEBOOK_CACHE`` (default ``~/.cache/kubebook``) under a directory named for
the pinned versions; a fresh clone and CI reuse them.

A binary is taken from, in order: ``$KUBEBOOK_BIN_DIR`` (a conda or distro
install), the cache, ``$PATH``. Only groups with a binary found nowhere are built.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import paths, versions
from .errors import BuildError


def cache_root() -> Path:
    return paths.cache_root()


def bundle_dir() -> Path:
    return cache_root() / "bin" / versions.bundle_name()


@dataclass(frozen=True)
class BuildGroup:
    """Binaries built together from one wrapper Go module."""

    name: str
    binaries: tuple[str, ...]
    build: Callable[[Path, Path, Callable[[str], None]], None]


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log, what: str,
         on_line: Callable[[str], None] | None = None) -> str:
    """Run a go command, teeing its output to the build log; raise BuildError naming ``what``."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        lines.append(line)
        if on_line:
            on_line(line.rstrip("\n"))
    if proc.wait() != 0:
        tail = "".join(lines[-15:]).strip()
        raise BuildError(f"building {what} failed ({' '.join(cmd[:3])} exited {proc.returncode}):\n{tail}\n"
                         f"full log: {log.name}")
    return "".join(lines)


def _go_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "CGO_ENABLED": "0",          # upstream release builds are static
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": env.get("GOTOOLCHAIN", "local"),
        "GOWORK": "off",
    })
    return env


def _write_wrapper(work: Path, module: str, requires: dict[str, str], replaces: dict[str, str],
                   packages: list[str]) -> None:
    """A throwaway module that requires the upstream ones; tools.go keeps `go mod tidy` honest."""
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"module kubebook.local/build/{module}", "", "go 1.24", ""]
    lines += [f"require {m} {v}" for m, v in requires.items()]
    lines += [""] + [f"replace {m} => {m} {v}" for m, v in sorted(replaces.items())]
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    (work / "go.sum").unlink(missing_ok=True)
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")


def _is_module_package(path: str) -> bool:
    """A package from a module (its path starts with a domain), not from Go's standard library."""
    return "." in path.split("/")[0]


class _Progress:
    """Counts packages compiled by `go build -v`: one updating bar on a terminal, otherwise
    (CI logs, papermill) a plain line per 100 packages so the log stays readable."""

    def __init__(self, label: str, total: int | None):
        from tqdm.auto import tqdm
        self.label, self.total, self.done = label, total, 0
        self.bar = tqdm(total=total, desc=label, unit="pkg", file=sys.stderr, mininterval=1.0) \
            if sys.stderr.isatty() else None

    def __call__(self, line: str) -> None:
        if not line or line.startswith(("go: ", "#")) or not _is_module_package(line):
            return  # the total counts module packages only: the standard library is built once per Go cache
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.done % 100 == 0:
            print(f"{self.label}: {self.done}/{self.total or '?'} packages compiled", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            print(f"{self.label}: {self.done} packages compiled", file=sys.stderr, flush=True)


def _count_deps(work: Path, env, log, packages: list[str]) -> int | None:
    try:
        out = _run(["go", "list", "-deps", *packages], cwd=work, env=env, log=log, what="dependency list")
        return len([l for l in out.splitlines() if l and _is_module_package(l)])
    except BuildError:
        return None


def _go_build(work: Path, out: Path, env, log, label: str, packages: list[str], ldflags: str,
              names: dict[str, str] | None = None) -> None:
    total = _count_deps(work, env, log, packages)
    progress = _Progress(label, total)
    try:
        for pkg in packages:
            target = out / (names or {}).get(pkg, pkg.rstrip("/").split("/")[-1])
            _run(["go", "build", "-trimpath", "-v", "-ldflags", ldflags, "-o", str(target), pkg],
                 cwd=work, env=env, log=log, what=f"{pkg}", on_line=progress)
    finally:
        progress.close()


def _build_etcd(work: Path, out: Path, log) -> None:
    v = versions.ETCD
    mods = ["api/v3", "client/pkg/v3", "client/v3", "pkg/v3", "server/v3", "etcdctl/v3", "etcdutl/v3"]
    packages = ["go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"]
    # etcd's own go.mod files replace their siblings with ../paths, which `go install` refuses;
    # requiring every sibling at one version from a wrapper gives the same result.
    _write_wrapper(work, "etcd", {f"go.etcd.io/etcd/{m}": v for m in mods}, {}, packages)
    env = _go_env(work)
    _run(["go", "mod", "tidy"], cwd=work, env=env, log=log, what=f"go.etcd.io/etcd@{v} (go mod tidy)")
    ldflags = f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={v}"
    _go_build(work, out, env, log, f"etcd {v}", packages, ldflags,
              names={packages[0]: "etcd", packages[1]: "etcdctl", packages[2]: "etcdutl"})


def _staging_modules(work: Path, env, log) -> list[str]:
    """Read the staging module list from the pinned k8s.io/kubernetes go.mod."""
    info = json.loads(_run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{versions.KUBERNETES}"],
                           cwd=work, env=env, log=log, what=f"k8s.io/kubernetes@{versions.KUBERNETES} (download)"))
    gomod = Path(info["GoMod"]).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, re.M)))


def _build_kubernetes(work: Path, out: Path, log) -> None:
    k, s = versions.KUBERNETES, versions.KUBERNETES_STAGING
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module kubebook.local/build/probe\n\ngo 1.24\n")
    env = _go_env(work)
    staging = _staging_modules(work, env, log)
    if not staging:
        raise BuildError(f"k8s.io/kubernetes@{k}: no staging replace directives found in its go.mod")
    packages = [f"k8s.io/kubernetes/cmd/{c}" for c in
                ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")]
    # The root module replaces each staging module with ./staging/src/...; point them at the
    # published v0.X.Y instead so the wrapper resolves.
    _write_wrapper(work, "kubernetes", {"k8s.io/kubernetes": k}, {m: s for m in staging}, packages)
    _run(["go", "mod", "tidy"], cwd=work, env=env, log=log, what=f"k8s.io/kubernetes@{k} (go mod tidy)")
    major, minor = k.lstrip("v").split(".")[:2]
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={k}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
                  f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate={date}"]
    _go_build(work, out, env, log, f"kubernetes {k}", packages, "-s -w " + " ".join(flags))


def _build_kwok(work: Path, out: Path, log) -> None:
    v = versions.KWOK
    packages = ["sigs.k8s.io/kwok/cmd/kwok"]
    _write_wrapper(work, "kwok", {"sigs.k8s.io/kwok": v}, {}, packages)
    env = _go_env(work)
    _run(["go", "mod", "tidy"], cwd=work, env=env, log=log, what=f"sigs.k8s.io/kwok@{v} (go mod tidy)")
    _go_build(work, out, env, log, f"kwok {v}", packages,
              f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={v}")


GROUPS = (
    BuildGroup("etcd", ("etcd", "etcdctl", "etcdutl"), _build_etcd),
    BuildGroup("kwok", ("kwok",), _build_kwok),
    BuildGroup("kubernetes", ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
               _build_kubernetes),
)
ALL_BINARIES = tuple(b for g in GROUPS for b in g.binaries)


DECODER_SOURCE = Path(__file__).resolve().parent / "etcd" / "decoder"


def decoder_path() -> Path:
    """Where kubebook's own decoder (built from kubebook/etcd/decoder) is cached, keyed by its source."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((DECODER_SOURCE / name).read_bytes())
    return cache_root() / "bin" / f"kubebook-decode-{digest.hexdigest()[:12]}" / "kubebook-decode"


def ensure_decoder(*, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Path:
    """The decoder binary, built on first use (about a minute when the Kubernetes build is cached)."""
    env_dir = os.environ.get("KUBEBOOK_BIN_DIR")
    if env_dir and (Path(env_dir) / "kubebook-decode").is_file():
        return Path(env_dir) / "kubebook-decode"
    target = decoder_path()
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain is needed to build kubebook-decode (or set KUBEBOOK_BIN_DIR)")
    log(f"[build] kubebook-decode: building into {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".kubebook-decode.partial")
    logs = cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _go_env(DECODER_SOURCE)
    env["GOFLAGS"] = "-mod=readonly"  # go.sum is committed: the build must not change it
    with open(logs / "build-decoder.log", "w") as build_log:
        _go_build(DECODER_SOURCE, target.parent, env, build_log, "kubebook-decode", ["."], "-s -w",
                  names={".": partial.name})
    os.replace(partial, target)
    return target


@dataclass(frozen=True)
class Tool:
    """A single Go program some runbooks need (helm, metrics-server), built on first use."""

    name: str
    module: str
    version: str
    package: str
    ldflags: str = "-s -w"

    @property
    def path(self) -> Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}" / self.name


TOOLS = {t.name: t for t in (
    Tool("helm", "helm.sh/helm/v3", versions.HELM, "helm.sh/helm/v3/cmd/helm",
         f"-s -w -X helm.sh/helm/v3/internal/version.version={versions.HELM}"),
    Tool("metrics-server", "sigs.k8s.io/metrics-server", versions.METRICS_SERVER,
         "sigs.k8s.io/metrics-server/cmd/metrics-server",
         f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={versions.METRICS_SERVER}"),
)}


def ensure_tool(name: str, *, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Path:
    """The tool's binary: from ``$KUBEBOOK_BIN_DIR``, the cache, ``$PATH``, or built now (minutes)."""
    tool = TOOLS[name]
    env_dir = os.environ.get("KUBEBOOK_BIN_DIR")
    for candidate in ([Path(env_dir) / name] if env_dir else []) + [tool.path]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if shutil.which(name):
        return Path(shutil.which(name))
    if shutil.which("go") is None:
        raise BuildError(f"the Go toolchain is needed to build {name} (or put it on PATH / in KUBEBOOK_BIN_DIR)")
    log(f"[build] {name} {tool.version}: building into {tool.path.parent} (takes minutes)")
    work = cache_root() / "src" / f"{name}-{tool.version}"
    _write_wrapper(work, name, {tool.module: tool.version}, {}, [tool.package])
    env = _go_env(work)
    logs = cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tool.path.parent.mkdir(parents=True, exist_ok=True)
    partial = tool.path.with_name(f".{name}.partial")
    started = time.monotonic()
    with open(logs / f"build-{name}.log", "w") as build_log:
        _run(["go", "mod", "tidy"], cwd=work, env=env, log=build_log, what=f"{tool.module}@{tool.version} (go mod tidy)")
        _go_build(work, tool.path.parent, env, build_log, f"{name} {tool.version}", [tool.package], tool.ldflags,
                  names={tool.package: partial.name})
    os.replace(partial, tool.path)  # atomic: a half-written binary never looks cached
    log(f"[build] {name}: done in {time.monotonic() - started:.0f}s")
    return tool.path


def find(name: str) -> Path | None:
    """Where binary ``name`` would be taken from, or None."""
    env_dir = os.environ.get("KUBEBOOK_BIN_DIR")
    candidates = [Path(env_dir) / name] if env_dir else []
    candidates.append(bundle_dir() / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    return Path(found) if found else None


def locate_all() -> dict[str, Path | None]:
    return {name: find(name) for name in ALL_BINARIES}


def ensure(*, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict[str, Path]:
    """Return every binary the lab needs, building (and caching) the groups that are missing."""
    if shutil.which("go") is None and any(find(b) is None for b in ALL_BINARIES):
        raise BuildError("the Go toolchain is needed to build missing binaries: install go "
                         f">= {'.'.join(map(str, versions.GO_MIN))} or set KUBEBOOK_BIN_DIR")
    dest = bundle_dir()
    for group in GROUPS:
        missing = [b for b in group.binaries if find(b) is None]
        if not missing:
            continue
        log(f"[build] {group.name}: {', '.join(missing)} not found; building into {dest} (takes minutes)")
        staging = dest.parent / f".{dest.name}.{group.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        work = cache_root() / "src" / f"{group.name}-{versions.bundle_name()}"
        logs = cache_root() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(logs / f"build-{group.name}.log", "w") as build_log:
            group.build(work, staging, build_log)
        dest.mkdir(parents=True, exist_ok=True)
        for b in group.binaries:
            # rename is atomic: a half-written binary never looks like a cached one
            os.replace(staging / b, dest / b)
        shutil.rmtree(staging, ignore_errors=True)
        log(f"[build] {group.name}: done in {time.monotonic() - started:.0f}s")
    ensure_decoder(log=log)
    located = locate_all()
    missing = [b for b, p in located.items() if p is None]
    if missing:
        raise BuildError(f"binaries still missing after build: {', '.join(missing)}")
    return located  # type: ignore[return-value]
