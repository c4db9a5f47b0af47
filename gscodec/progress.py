"""The progress callback every pipeline stage takes."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]
"""Called as ``progress(step, total_steps, description)`` before each step of long work."""


def noop(step: int, total: int, what: str) -> None:
    pass
