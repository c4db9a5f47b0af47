"""Helpers shared by the CLI tests."""

from __future__ import annotations

import re

# the plain progress lines of a command that runs longer than a second with stderr not a
# terminal (cli.main.plain_progress)
PROGRESS_LINE = re.compile(r"^gscodec (encode|decode|compare): +\d+%")


def one_error_line(r) -> str:
    """The single 'gscodec: error: ...' line of a failed CliRunner result (asserted), progress
    lines aside."""
    lines = [line for line in r.output.splitlines()
             if line.strip() and not PROGRESS_LINE.match(line)]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("gscodec: error:")
    assert "Traceback" not in r.output
    return lines[0]
