"""Checked access to metadata read from a file.

The metadata of a .gsz file is JSON written by someone we do not know; every value the decoder
uses goes through these getters, which check its type and range and raise ContainerError naming
the offending key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..formats.errors import ContainerError


def _fail(where: str, what: str) -> ContainerError:
    return ContainerError(f"bad metadata: {where} {what}")


def get_dict(d: Any, key: str, where: str = "") -> dict[str, Any]:
    value = d.get(key) if isinstance(d, dict) else None
    if not isinstance(value, dict):
        raise _fail(f"{where}{key}", "must be an object")
    return value


def get_int(d: dict[str, Any], key: str, lo: int, hi: int, where: str = "") -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(f"{where}{key}", f"must be an integer in [{lo}, {hi}]")
    return value


def get_float(
    d: dict[str, Any], key: str, lo: float = -math.inf, hi: float = math.inf, where: str = ""
) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(f"{where}{key}", "must be a number")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _fail(f"{where}{key}", f"must be a finite number in [{lo}, {hi}]")
    return value


def get_str(d: dict[str, Any], key: str, choices: Sequence[str], where: str = "") -> str:
    value = d.get(key)
    if value not in choices:
        raise _fail(f"{where}{key}", f"must be one of {list(choices)}")
    return value


def get_list(d: dict[str, Any], key: str, max_len: int, where: str = "") -> list[Any]:
    value = d.get(key)
    if not isinstance(value, list) or len(value) > max_len:
        raise _fail(f"{where}{key}", f"must be a list of at most {max_len} items")
    return value


def get_int_list(
    d: dict[str, Any], key: str, max_len: int, lo: int, hi: int, where: str = ""
) -> list[int]:
    values = get_list(d, key, max_len, where)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise _fail(f"{where}{key}", f"must hold integers in [{lo}, {hi}]")
    return values


def get_float_list(
    d: dict[str, Any], key: str, length: int, where: str = ""
) -> list[float]:
    values = get_list(d, key, length, where)
    if len(values) != length:
        raise _fail(f"{where}{key}", f"must hold {length} numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _fail(f"{where}{key}", "must hold finite numbers")
        out.append(float(v))
    return out
