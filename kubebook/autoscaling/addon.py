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
import sys
import time

from .. import process
from ..connect import api_client
from . import kubelet_sim


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
    # metrics-server shares this process's log (stdout) and dies with it, even when it is SIGKILLed
    child = process.start([args.metrics_server, *args.metrics_server_args], scratch=True)
    print(f"kubelet-sim on 127.0.0.1:{args.sim_port}; metrics-server pid {child.pid}", flush=True)
    apiserver = process.Record(args.watch_pid, args.watch_start)
    code = 0
    while not stopping:
        if not child.running:
            print(f"metrics-server exited with {child.popen.returncode}", flush=True)
            code = child.popen.returncode or 1
            break
        if not apiserver.alive():
            print("the lab's kube-apiserver is gone: stopping", flush=True)
            break
        time.sleep(1)
    process.stop(child.record, timeout=15)
    server.shutdown()
    print(f"stopped ({', '.join(stopping) or 'see above'})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
