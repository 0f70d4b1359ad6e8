"""Kubernetes resource quantities (``500m``, ``256Mi``, ``1.5Gi``, ``2``) as numbers.

One home for the parsing the scheduler explanations (CPU and memory requests) and the storage
binder (capacities and requests) both need.
"""
from __future__ import annotations

from functools import lru_cache

_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


@lru_cache(maxsize=4096)
def quantity(text: str | int | float, resource: str = "") -> int:
    """A resource quantity as the scheduler counts it: CPU in millicores, everything else in units.

    Rounded up, as ``resource.Quantity.MilliValue()``/``Value()`` do.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        number = s.rstrip("KMGTPEikmun")
        suffix = s[len(number):]
        value = float(number) * _SUFFIX[suffix] if suffix in _SUFFIX else float(s)
    scaled = value * 1000 if resource == "cpu" else value
    whole = int(scaled)
    return whole + (1 if scaled > whole + 1e-9 else 0)


def format_quantity(amount: int, resource: str) -> str:
    if resource == "cpu":
        return f"{amount // 1000}" if amount % 1000 == 0 else f"{amount}m"
    if resource in ("memory", "ephemeral-storage") and amount >= 2**20:
        return f"{amount // 2**30}Gi" if amount % 2**30 == 0 else f"{amount / 2**20:.0f}Mi"
    return str(amount)
