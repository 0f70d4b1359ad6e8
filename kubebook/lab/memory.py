"""Resident memory of a lab's processes, read from /proc.

``rss`` is what ``ps`` shows; ``anon`` is the part no other process shares (heap, stacks);
``pss`` divides shared pages (the binaries' code, mapped once for every lab on the machine) among
the processes that map them, so the sum over many labs is what they really take.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from .. import process

# <asm/unistd_64.h> and <asm-generic/mman-common.h>; process_madvise needs Linux >= 5.10
SYS_PROCESS_MADVISE = {"x86_64": 440, "aarch64": 440}.get(os.uname().machine)
MADV_PAGEOUT = 21


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


def usage(record: process.Record) -> dict[str, float]:
    """``rss_mib``, ``anon_mib``, ``file_mib`` and ``pss_mib`` of a recorded process ({} when gone)."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{record.pid}/status").read_text().splitlines()
                      if ":" in line)
        rollup = Path(f"/proc/{record.pid}/smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    if not record.alive():
        return {}

    def mib(kib: str) -> float:
        return round(int(kib.split()[0]) / 1024, 1)
    pss = next((line.split(":", 1)[1] for line in rollup if line.startswith("Pss:")), "0 kB")
    return {"rss_mib": mib(status["VmRSS"]), "anon_mib": mib(status["RssAnon"]),
            "file_mib": mib(status["RssFile"]), "pss_mib": mib(pss)}


def total(rows: list[dict], column: str = "rss_mib") -> float:
    return round(sum(row.get(column) or 0 for row in rows), 1)


def release_startup_pages(record: process.Record) -> int:
    """Ask the kernel to page out the code and read-only data a component's binary mapped, and return
    how many bytes that covered. A Go binary touches most of its code once while it starts (every
    package's init, flag and scheme registration, the OpenAPI build) and little of it while idle:
    these pages are clean copies of the file, so dropping them costs only a re-read of those the
    process uses again. Measured on an idle lab (bench/lab_memory.py, after the demo objects and 30 idle seconds):
    file-backed RSS 265 -> 164 MiB, heaps untouched.

    Raises OSError when the kernel or the caller's rights do not allow it (ENOSYS before 5.10, EPERM
    without CAP_SYS_NICE); the lab only loses the saving then."""
    if SYS_PROCESS_MADVISE is None:
        raise OSError(errno.ENOSYS, f"process_madvise: no syscall number known for {os.uname().machine}")
    if not record.alive():
        return 0
    exe = os.readlink(f"/proc/{record.pid}/exe")
    ranges = []
    for line in Path(f"/proc/{record.pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == exe:
            low, high = (int(x, 16) for x in fields[0].split("-"))
            ranges.append(_IoVec(low, high - low))
    if not ranges:
        return 0
    pidfd = os.pidfd_open(record.pid)
    try:
        advised = 0
        for one in ranges:  # one range a call: the kernel stops a vector at the first range it cannot advise
            done = process.libc().syscall(SYS_PROCESS_MADVISE, pidfd, ctypes.byref(one), 1, MADV_PAGEOUT, 0)
            if done < 0:
                code = ctypes.get_errno()
                raise OSError(code, f"process_madvise: {os.strerror(code)}")
            advised += done
        return advised
    finally:
        os.close(pidfd)
