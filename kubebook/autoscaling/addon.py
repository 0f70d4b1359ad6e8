"""The metrics add-on process of a kubebook lab: simulated kubelet endpoint + metrics-server.

Started by :func:`kubebook.autoscaling.metrics.start_metrics_server` as one process (its PID is
recorded in the lab directory). It serves :mod:`.kubelet_sim` in a thread and runs metrics-server
as its child; it stops both when sent SIGTERM, when metrics-server exits, or when the lab's
kube-apiserver process is gone (``lab down``), so nothing outlives the lab.

    python -m kubebook.autoscaling.addon --kubeconfig K --sim-port P1 --metrics-server BIN \
        --watch-pid PID --watch-start TICKS -- <metrics-server flags>
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..connect import api_client
from . import kubelet_sim


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubebook.autoscaling.addon")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--sim-port", type=int, required=True)
    parser.add_argument("--metrics-server", required=True)
    parser.add_argument("--watch-pid", type=int, required=True)
    parser.add_argument("--watch-start", type=int, required=True)
    parser.add_argument("metrics_server_args", nargs="*")
    args = parser.parse_args(argv)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stopping.append("SIGINT"))

    server = kubelet_sim.serve(api_client(args.kubeconfig), args.sim_port)
    child = subprocess.Popen([args.metrics_server, *args.metrics_server_args], stdin=subprocess.DEVNULL)
    print(f"kubelet-sim on 127.0.0.1:{args.sim_port}; metrics-server pid {child.pid}", flush=True)
    code = 0
    while not stopping:
        if child.poll() is not None:
            print(f"metrics-server exited with {child.returncode}", flush=True)
            code = child.returncode or 1
            break
        if proc_start_time(args.watch_pid) != args.watch_start:
            print("the lab's kube-apiserver is gone: stopping", flush=True)
            break
        time.sleep(1)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    server.shutdown()
    print(f"stopped ({', '.join(stopping) or 'see above'})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
