"""The ``gscodec`` command line.

Exit codes: 0 success; 1 bad input or any other failure (one line on stderr, no traceback;
set GSCODEC_DEBUG=1 to see one); 2 usage error (bad options, from click); 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__
from ..codec.quality import DEFAULT_QUALITY, MAX_QUALITY, MIN_QUALITY
from ..formats.atomic import atomic_write_bytes, check_output_path
from ..formats.errors import ContainerError, GscodecError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"gscodec: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn every failure into one line on stderr and exit code 1 (130 on Ctrl-C)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GscodecError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except MemoryError:
            _fail("out of memory")
        except OSError as e:  # disk full, permissions: the system's reason, without a traceback
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _fail(f"{where}{e.strerror or e}")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # an internal bug must still not print a traceback
            if os.environ.get("GSCODEC_DEBUG"):
                raise
            text = str(e).splitlines()[0] if str(e) else ""
            _fail(f"internal error ({type(e).__name__}{': ' + text if text else ''})")

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(quiet: bool, what: str) -> Iterator[Callable[[int, int, str], None]]:
    """A transient rich progress bar on stderr, fed by the library's progress callback."""
    if quiet:
        yield lambda step, total, description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn(f"{what} [progress.description]{{task.description}}"), BarColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=1)

        def update(step: int, total: int, description: str) -> None:
            progress.update(task, completed=step, total=max(total, 1), description=description)

        yield update


def _check_input(path: Path) -> None:
    if not path.exists():
        raise GscodecError(f"{path}: no such file")
    if path.is_dir():
        raise GscodecError(f"{path}: is a folder")


def _check_not_input(output: Path, input_path: Path) -> None:
    try:
        same = output.exists() and os.path.samefile(output, input_path)
    except OSError:
        same = False
    if same:
        raise GscodecError(f"{output}: the output would overwrite the input")


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Prefix container errors (which do not know the file name) with the input path."""
    try:
        yield
    except ContainerError as e:
        if str(e).startswith(str(path)):
            raise
        raise type(e)(f"{path}: {e}") from None


def _size(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1e6:.2f} MB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gscodec")
def main() -> None:
    """Compress 3D Gaussian Splatting scenes (.ply) into .gsz files and back."""


@main.command()
@click.argument("input_path", metavar="IN.ply", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output .gsz (default: IN with the suffix .gsz).")
@click.option("-q", "--quality", type=click.IntRange(MIN_QUALITY, MAX_QUALITY),
              default=DEFAULT_QUALITY, show_default=True,
              help="Quality preset: higher keeps more fidelity and writes more bytes.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@handle_errors
def encode(input_path: Path, output: Path | None, quality: int, force: bool, quiet: bool) -> None:
    """Compress a 3DGS PLY into a .gsz file."""
    from ..api import encode_with_order, read_ply

    _check_input(input_path)
    out = output or input_path.with_suffix(".gsz")
    _check_not_input(out, input_path)
    check_output_path(out, force=force)
    t0 = time.perf_counter()
    with progress_bar(quiet, "encode") as report:
        report(0, 1, "reading PLY")
        g = read_ply(input_path)
        data, _ = encode_with_order(g, quality, progress=report)
        atomic_write_bytes(out, data, force=force)
    if not quiet:
        in_bytes = input_path.stat().st_size
        bits = 8 * len(data) / g.n if g.n else 0.0
        click.echo(
            f"{input_path} -> {out}: {g.n:,} Gaussians (SH {g.sh_degree}), {_size(len(data))}, "
            f"{bits:.1f} bits/Gaussian, {in_bytes / max(1, len(data)):.1f}x smaller, "
            f"quality {quality}, {time.perf_counter() - t0:.1f} s"
        )


@main.command()
@click.argument("input_path", metavar="IN.gsz", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output .ply (default: IN.decoded.ply).")
@click.option("--no-refine", is_flag=True,
              help="Write the decoded Gaussians without refinement (currently always the case).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Device for refinement.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@handle_errors
def decode(input_path: Path, output: Path | None, no_refine: bool, device: str, force: bool,
           quiet: bool) -> None:
    """Decompress a .gsz file into a 3DGS PLY (INRIA layout).

    The Gaussians come out in the codec's storage order (Morton order), not the original order."""
    from ..api import decode as decode_gsz
    from ..formats.atomic import atomic_write
    from ..formats.ply import write_ply_file

    _check_input(input_path)
    stem = input_path.name[:-4] if input_path.name.endswith(".gsz") else input_path.name
    out = output or input_path.with_name(f"{stem}.decoded.ply")
    _check_not_input(out, input_path)
    check_output_path(out, force=force)
    t0 = time.perf_counter()
    with progress_bar(quiet, "decode") as report:
        report(0, 1, "reading")
        with naming(input_path):
            g = decode_gsz(input_path, progress=report)
        report(1, 1, "writing PLY")
        arrays = g.as_arrays()
        atomic_write(out, lambda f: write_ply_file(f, arrays), force=force)
    if not quiet:
        click.echo(f"{input_path} -> {out}: {g.n:,} Gaussians (SH {g.sh_degree}), "
                   f"{time.perf_counter() - t0:.1f} s")


@main.group()
def bitrate() -> None:
    """Inspect where the bytes of a .gsz file go."""


@bitrate.command()
@click.argument("input_path", metavar="IN.gsz", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@handle_errors
def report(input_path: Path, as_json: bool) -> None:
    """Bytes and bits per Gaussian of every stream and attribute, overhead and totals."""
    from ..api import inspect

    _check_input(input_path)
    with naming(input_path):
        info = inspect(input_path)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{input_path}: {info['gaussians']:,} Gaussians, SH {info['sh_degree']}, "
                  f"quality {info['quality']}, .gsz {info['version']}")
    for col in ("stream", "attribute", "bytes", "bits/Gaussian", "share", "of which tables"):
        table.add_column(col, justify="left" if col in ("stream", "attribute") else "right")
    total = info["file_bytes"]
    for row in info["streams"]:
        tables = row["table_bytes"]
        table.add_row(row["stream"], str(row["attribute"]), f"{row['bytes']:,}",
                      f"{row['bits_per_gaussian']:.2f}", f"{100 * row['bytes'] / total:.1f}%",
                      "" if tables is None else f"{tables:,}")
    overhead = info["container_overhead_bytes"]
    n = info["gaussians"]
    table.add_row("(header+table)", "container", f"{overhead:,}",
                  f"{8 * overhead / n if n else 0:.2f}", f"{100 * overhead / total:.1f}%", "")
    table.add_row("total", "", f"{total:,}", f"{info['bits_per_gaussian']:.2f}", "100.0%", "",
                  style="bold")
    Console().print(table)


if __name__ == "__main__":
    main()
