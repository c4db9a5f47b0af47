"""Packaging promises: the base codec and formats import no torch; the CLI is installed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from gscodec.codec.attributes import RowView


def test_formats_and_base_codec_import_no_torch():
    code = (
        "import sys, gscodec, gscodec.formats.ply, gscodec.formats.gsz, gscodec.cli.main\n"
        "from gscodec.synthetic import make_scene\n"
        "gscodec.decode(gscodec.encode(make_scene(50), quality=3))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "gscodec.cli.main", "--version"],
                         capture_output=True, text=True, check=True)
    assert "gscodec" in out.stdout


def test_row_view_gathers_rows_lazily():
    a = np.arange(20).reshape(10, 2)
    order = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    view = RowView(a, order)
    assert view.shape == (10, 2)
    np.testing.assert_array_equal(view[2:5], a[order[2:5]])
    np.testing.assert_array_equal(np.asarray(view), a[order])
