"""A minimal ``ping``: ICMP echo over a raw socket, run inside a lab namespace.

    ip netns exec kb-netlab-pod1 python -m kubebook.network.icmp 10.244.2.2 --count 3

Prints one JSON object: sent, received, rtt_min_ms/rtt_avg_ms/rtt_max_ms, too_big (sends the
kernel refused because the packet exceeds the known path MTU with DF set). Exit status 0 when
every echo was answered, 1 otherwise. Needs root (raw sockets), like the lab that runs it.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import select
import socket
import struct
import sys
import time

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2     # set DF, never fragment locally


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = (b"kubebook" * (size // 8 + 1))[:size]
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def ping(dst: str, *, count: int, size: int, timeout: float, dont_fragment: bool) -> dict:
    ident = os.getpid() & 0xFFFF
    rtts: list[float] = []
    too_big = 0
    errors: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        if dont_fragment:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        for seq in range(1, count + 1):
            sent_at = time.perf_counter()
            try:
                sock.sendto(echo_request(ident, seq, size), (dst, 0))
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    too_big += 1
                elif exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    errors.append(os.strerror(exc.errno))   # no route: the demo's "before the route" case
                else:
                    raise
                continue
            deadline = sent_at + timeout
            while (left := deadline - time.perf_counter()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                try:
                    packet = sock.recv(65535)
                except OSError as exc:      # an ICMP error (e.g. fragmentation needed) queued for us
                    if exc.errno == errno.EMSGSIZE:
                        too_big += 1
                        break
                    raise
                ihl = (packet[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
                if kind == 0 and rid == ident and rseq == seq:
                    rtts.append((time.perf_counter() - sent_at) * 1000)
                    break
    return {"sent": count, "received": len(rtts), "size": size, "too_big": too_big, "error": errors[0] if errors else "",
            "rtt_min_ms": round(min(rtts), 3) if rtts else None,
            "rtt_avg_ms": round(sum(rtts) / len(rtts), 3) if rtts else None,
            "rtt_max_ms": round(max(rtts), 3) if rtts else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubebook.network.icmp", description=__doc__.splitlines()[0])
    parser.add_argument("dst")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--size", type=int, default=56, help="payload bytes (IP packet = size + 28)")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each reply")
    parser.add_argument("--dont-fragment", action="store_true")
    args = parser.parse_args(argv)
    result = ping(args.dst, count=args.count, size=args.size, timeout=args.timeout,
                  dont_fragment=args.dont_fragment)
    print(json.dumps(result))
    return 0 if result["received"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
