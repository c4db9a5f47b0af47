"""Helpers shared by the CLI tests."""

from __future__ import annotations


def one_error_line(r) -> str:
    """The single 'gscodec: error: ...' line of a failed CliRunner result (asserted)."""
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("gscodec: error:")
    assert "Traceback" not in r.output
    return lines[0]
