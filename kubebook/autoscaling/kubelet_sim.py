"""A stand-in for the kubelet's ``/metrics/resource`` endpoint, for labs whose kubelets are simulated.

On a real node the kubelet reads cgroups (through cAdvisor) and exposes, in the Prometheus text
format, cumulative CPU seconds and the memory working set per node, Pod and container. metrics-server
scrapes that endpoint on every node and serves the rates as ``metrics.k8s.io``.

kwok runs no containers, so there are no cgroups to read. This module answers the same request
with usage taken from each Pod's annotations — the convention of kwok's ``usage-from-annotation``
ClusterResourceUsage (``kwok.x-k8s.io/usage-cpu: 200m``, ``kwok.x-k8s.io/usage-memory: 64Mi``; 1m CPU
and 1Mi memory per container without them) — and integrates CPU over time into the cumulative
counter the kubelet would report. Raising a Pod's annotation is how a runbook simulates load.

Served paths: ``/metrics/nodes/<node>/metrics/resource`` (kwok's per-node path, which metrics-server
takes from the node annotation ``metrics.k8s.io/resource-metrics-path``) and ``/healthz``.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client
from kubernetes.utils import parse_quantity

CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
DEFAULT_CPU = Decimal("0.001")         # cores per container without an annotation
DEFAULT_MEMORY = Decimal(1024 * 1024)  # bytes per container without an annotation
NODE_BASE_MEMORY = Decimal(256 * 1024 * 1024)  # the node's own processes, so a node never reads 0
NODE_BASE_CPU = Decimal("0.01")
PATH = re.compile(r"^/metrics/nodes/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)/metrics/resource$")


def usage_of(pod: dict) -> tuple[Decimal, Decimal]:
    """CPU (cores) and memory (bytes) per container of ``pod``, from its annotations."""
    annotations = pod["metadata"].get("annotations") or {}
    cpu, memory = DEFAULT_CPU, DEFAULT_MEMORY
    try:
        if CPU_ANNOTATION in annotations:
            cpu = Decimal(parse_quantity(annotations[CPU_ANNOTATION]))
        if MEMORY_ANNOTATION in annotations:
            memory = Decimal(parse_quantity(annotations[MEMORY_ANNOTATION]))
    except ValueError:
        pass  # a malformed annotation reads as the default, as an invalid CEL result does in kwok
    return cpu, memory


@dataclass
class Counters:
    """Cumulative CPU seconds per container, advanced at the rate each scrape reads."""
    cpu_seconds: dict[tuple, tuple[float, Decimal]] = field(default_factory=dict)  # key -> (time, total)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, key: tuple, rate: Decimal, now: float, started: float) -> Decimal:
        with self.lock:
            last, total = self.cpu_seconds.get(key, (started, Decimal(0)))
            total += rate * Decimal(max(0.0, now - last))
            self.cpu_seconds[key] = (now, total)
            return total


def render(node: str, pods: list[dict], counters: Counters, now: float | None = None) -> str:
    """The Prometheus text a kubelet would serve at ``/metrics/resource`` for ``node``'s ``pods``."""
    now = time.time() if now is None else now
    ms = int(now * 1000)
    lines = ["# TYPE scrape_error gauge", "scrape_error 0"]
    containers, node_cpu, node_memory = [], Decimal(0), NODE_BASE_MEMORY
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("startTime"):
            continue
        started = _epoch(status["startTime"])
        cpu, memory = usage_of(pod)
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
        for c in pod["spec"]["containers"]:
            total = counters.advance((uid, c["name"]), cpu, now, started)
            containers.append((ns, name, c["name"], started, total, memory))
            node_cpu += total
            node_memory += memory
    node_cpu += NODE_BASE_CPU * Decimal(now - counters_start(counters, node, now))
    lines += ["# TYPE node_cpu_usage_seconds_total counter", f"node_cpu_usage_seconds_total {node_cpu:.9f} {ms}",
              "# TYPE node_memory_working_set_bytes gauge", f"node_memory_working_set_bytes {node_memory:.0f} {ms}"]
    for metric, kind, index, fmt in (("container_start_time_seconds", "gauge", 3, "{:.3f}"),
                                     ("container_cpu_usage_seconds_total", "counter", 4, "{:.9f}"),
                                     ("container_memory_working_set_bytes", "gauge", 5, "{:.0f}")):
        lines.append(f"# TYPE {metric} {kind}")
        for row in containers:
            labels = f'container="{row[2]}",namespace="{row[0]}",pod="{row[1]}"'
            lines.append(f"{metric}{{{labels}}} {fmt.format(row[index])} {ms}")
    return "\n".join(lines) + "\n"


def counters_start(counters: Counters, node: str, now: float) -> float:
    """When this server first answered for ``node`` (its base CPU counter starts there)."""
    with counters.lock:
        started, _ = counters.cpu_seconds.setdefault(("node", node), (now, Decimal(0)))
    return started


def _epoch(timestamp: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def serve(api: client.ApiClient, port: int, *, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start answering on ``host:port`` in a thread; returns the server (``shutdown()`` stops it)."""
    core = client.CoreV1Api(api)
    counters = Counters()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path == "/healthz":
                return self._reply(200, "ok\n")
            match = PATH.match(self.path)
            if not match:
                return self._reply(404, "not found\n")
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={match.group(1)}")
            body = render(match.group(1), [api.sanitize_for_serialization(p) for p in pods.items], counters)
            self._reply(200, body, "text/plain; version=0.0.4")

        def _reply(self, code: int, text: str, content_type: str = "text/plain") -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # a scrape every 10 s per node (METRIC_RESOLUTION): keep the log quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="kubelet-sim").start()
    return server
