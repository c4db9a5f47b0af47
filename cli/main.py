"""The ``gscodec`` command line.

Exit codes: 0 success; 1 bad input or any other failure (one line on stderr, no traceback;
set GSCODEC_DEBUG=1 to see one); 2 usage error (bad options, from click); 130 interrupted.

With ``--json-errors`` (before the command) or GSCODEC_JSON_ERRORS=1 a failure prints one JSON
object on stderr instead, ``{"error": {"type": ..., "message": ..., "exit_code": ...}}``: the
type is the error class (``ContainerError``, ``LimitError``, ``PlyError``, ...; ``UsageError``
for exit code 2, ``InternalError`` for a bug).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import warnings
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
JSON_ERRORS_ENV = "GSCODEC_JSON_ERRORS"


def _json_errors(argv: list[str] | None = None) -> bool:
    """Whether failures are reported as JSON: the global flag (in ``argv`` when the command line
    has not been parsed yet) or the environment variable."""
    if os.environ.get(JSON_ERRORS_ENV, "") not in ("", "0"):
        return True
    if argv is not None:
        return "--json-errors" in argv
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("json_errors"))


def _fail(message: str, code: int = 1, kind: str = "GscodecError",
          as_json: bool | None = None) -> None:
    if _json_errors() if as_json is None else as_json:
        error = {"type": kind, "message": message, "exit_code": code}
        click.echo(json.dumps({"error": error}), err=True)
    else:
        click.echo(f"gscodec: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn every failure into one line on stderr and exit code 1 (130 on Ctrl-C)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GscodecError as e:
            _fail(str(e), kind=type(e).__name__)
        except KeyboardInterrupt:
            _fail("interrupted", 130, "Interrupted")
        except MemoryError:
            _fail("out of memory", kind="MemoryError")
        except OSError as e:  # disk full, permissions: the system's reason, without a traceback
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _fail(f"{where}{e.strerror or e}", kind=type(e).__name__)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # an internal bug must still not print a traceback
            if os.environ.get("GSCODEC_DEBUG"):
                raise
            text = str(e).splitlines()[0] if str(e) else ""
            _fail(f"internal error ({type(e).__name__}{': ' + text if text else ''})",
                  kind="InternalError")

    return wrapper  # type: ignore[return-value]


PROGRESS_INTERVAL_S = 1.0


def _clock() -> float:
    return time.monotonic()


def plain_progress(what: str, clock: Callable[[], float] | None = None
                   ) -> Callable[[int, int, str], None]:
    """A progress callback for logs: ``gscodec WHAT: NN% stage`` on stderr (with
    ``--json-errors``, one JSON object ``{"progress": {...}}`` per line instead), at most one
    line per :data:`PROGRESS_INTERVAL_S` (the first once that long has passed, so quick commands
    print none), so that batch and CI logs show where the time goes."""
    read = clock or _clock
    last = [read()]
    as_json = _json_errors()

    def update(step: int, total: int, description: str) -> None:
        now = read()
        if now - last[0] < PROGRESS_INTERVAL_S:
            return
        last[0] = now
        pct = int(100 * min(max(step, 0), max(total, 1)) / max(total, 1))
        if as_json:
            click.echo(json.dumps({"progress": {"command": what, "percent": pct,
                                                "stage": description}}), err=True)
        else:
            click.echo(f"gscodec {what}: {pct:3d}% {description}".rstrip(), err=True)

    return update


@contextmanager
def progress_bar(quiet: bool, what: str) -> Iterator[Callable[[int, int, str], None]]:
    """A transient rich progress bar on stderr, fed by the library's progress callback; where
    stderr is not a terminal (logs, CI), plain lines instead (:func:`plain_progress`)."""
    from rich.console import Console

    console = Console(stderr=True)
    if quiet:
        yield lambda step, total, description: None
        return
    if not console.is_terminal:
        yield plain_progress(what)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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


class _ByteSize(click.ParamType):
    """A number of bytes: ``8GB``, ``512MiB``, ``8G`` or plain bytes (gscodec.budget.parse_size);
    anything else is a usage error (exit code 2)."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        from ..budget import parse_size

        try:
            return parse_size(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class _Box(click.ParamType):
    """A box ``X0,Y0,Z0,X1,Y1,Z1`` (six finite numbers, each minimum at most its maximum) ->
    ``((x0, y0, z0), (x1, y1, z1))``; anything else is a usage error (exit code 2)."""

    name = "box"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            v = [float(x) for x in str(value).split(",")]
        except ValueError:
            v = []
        if len(v) != 6 or not all(math.isfinite(x) for x in v):
            self.fail(f"{value!r} is not six numbers X0,Y0,Z0,X1,Y1,Z1", param, ctx)
        if any(v[a] > v[a + 3] for a in range(3)):
            self.fail(f"{value!r}: each minimum must be at most its maximum", param, ctx)
        return tuple(v[:3]), tuple(v[3:])


class _Main(click.Group):
    """The command group; with JSON errors asked for, usage errors (exit code 2) are JSON too."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from ..memory import mapped_large_blocks, single_arena

        single_arena()  # (peak memory: see gscodec.memory)
        mapped_large_blocks()
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or not _json_errors(argv):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code, "UsageError" if e.exit_code == 2
                  else type(e).__name__, as_json=True)
        except click.exceptions.Abort:
            _fail("interrupted", 130, "Interrupted", as_json=True)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gscodec")
@click.option("--json-errors", is_flag=True,
              help=f"On failure print one JSON object on stderr (also: {JSON_ERRORS_ENV}=1).")
def main(json_errors: bool) -> None:
    """Compress 3D Gaussian Splatting scenes (.ply) into .gsz files and back.

    Exit codes: 0 success, 1 bad input or failure, 2 usage error."""


@main.command()
@click.argument("input_paths", metavar="IN.ply [IN2.ply ...]", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output .gsz (default: IN with the suffix .gsz); with several inputs, an "
                   "existing folder for their .gsz files.")
@click.option("-q", "--quality", type=click.IntRange(MIN_QUALITY, MAX_QUALITY),
              default=DEFAULT_QUALITY, show_default=True,
              help="Quality preset: higher keeps more fidelity and writes more bytes.")
@click.option("--views", type=click.IntRange(0, 64), default=None,
              help="Views of side information for decoder-side refinement (default: 8, fewer "
                   "above 1,000,000 Gaussians, at least 4; 0: none, a faster encode of the base "
                   "layer only).")
@click.option("--sideinfo-scale", type=click.Choice(["4", "8"]), default="4", show_default=True,
              help="Side-information residuals are averaged over SCALE x SCALE pixels.")
@click.option("--sideinfo-step", type=click.FloatRange(0.01, 64), default=1.0,
              show_default=True, help="Quantizer step of the residuals, in 1/255 units.")
@click.option("--importance/--no-importance", default=None,
              help="Measure how much each Gaussian matters to renders and give the less "
                   "important ones coarser steps at the same estimated fidelity (default: on "
                   "at quality 1-5 for scenes of 4096+ Gaussians, and at 6-10 for the SH rest "
                   "of those with SH bands, never coarser; it renders at 16 small views, "
                   "which takes seconds per 100k Gaussians on a CPU).")
@click.option("--prior-gains/--no-prior-gains", default=None,
              help="With side information: measure how much the shipped learned prior's "
                   "correction helps this scene and store it for the decoder (default: on at "
                   "the presets the prior was trained for).")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="For a .gsz input: decode it with refinement, as `gscodec decode` does, so "
                   "that the scene encoded is the one `gscodec decode` writes (on a CPU the colour "
                   "fit: one render per side-information view), or without it (the base "
                   "layer).")
@click.option("--cameras", "cameras_path", type=click.Path(path_type=Path),
              help="Training cameras (INRIA cameras.json or nerfstudio transforms.json, in the "
                   "scene's coordinates): the side information and the importance estimate "
                   "use VIEWS (and 16) of them, spread over the set, instead of synthesized "
                   "views; the summary names them.")
@click.option("--chunk-size", type=click.IntRange(256, 1 << 40), default=1 << 16,
              show_default=True, metavar="N",
              help="Scenes of more than N Gaussians are written as chunked files (GSZ.md 11): "
                   "spatial chunks of about N Gaussians that decode on their own (decode "
                   "--bbox, --fraction, --jobs).")
@click.option("--jobs", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Processes coding the chunks side by side (0: every core, or one for scenes "
                   "under 262,144 Gaussians); the file's bytes do not depend on it.")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Run the work on a Ray cluster (pip install 'gscodec[ray]'): the scenes "
                   "of several inputs, or the chunks of one, as the cluster's tasks; ADDRESS "
                   "as ray.init takes it (auto, HOST:PORT, ray://HOST:10001) or local (a "
                   "cluster for this run). Several inputs are read on the nodes (the same "
                   "paths there: a shared filesystem); the files come back and are written "
                   "here. The bytes are those of a local encode.")
@click.option("--target-size", type=_ByteSize(), default=None, metavar="SIZE",
              help="Instead of --quality: the quality (continuous, between the presets too) "
                   "whose file fits SIZE (5MB, 800KiB, bytes), within 3% below it; a search "
                   "of a few whole encodes.")
@click.option("--target-psnr", type=click.FloatRange(0, 200, min_open=True), default=None,
              metavar="DB",
              help="Instead of --quality: the smallest quality whose base layer reaches DB "
                   "of PSNR against the scene at the encoder's own views (8 views of 256 px, "
                   "of the training cameras with --cameras; black background), within 0.5 dB "
                   "above it.")
@click.option("--prune", type=click.FloatRange(0, 1, max_open=True), default=None,
              metavar="F",
              help="Drop up to this fraction of the Gaussians before coding, those whose "
                   "removal changes the renders at the encoder's views least, while what they "
                   "add to the error stays within a quarter of the base layer's (GSZ.md 8); the "
                   "side information lets `gscodec decode` repair part of it. Default: the "
                   "preset's.")
@click.option("--base", "base", metavar="spz|FILE.spz", default=None,
              help="Instead of gscodec's base layer: an .spz file of the scene (spz: written "
                   "here; FILE.spz: one made by another tool, in the PLY's axes), stored as it "
                   "is, with side information computed against its decode, so that `gscodec "
                   "decode` refines it (GSZ.md 6.9). --quality and the targets do not apply.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per scene (what was written, the quality reached) "
                   "instead of the summary.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.pass_context
@handle_errors
def encode(ctx: click.Context, input_paths: tuple[Path, ...], output: Path | None,
           quality: int, views: int | None, sideinfo_scale: str, sideinfo_step: float,
           importance: bool | None, prior_gains: bool | None, refine: bool,
           cameras_path: Path | None, chunk_size: int, jobs: int, ray_address: str | None,
           target_size: int | None, target_psnr: float | None, prune: float | None,
           base: str | None, as_json: bool, force: bool, quiet: bool) -> None:
    """Compress a 3DGS scene into a .gsz file. IN may be an INRIA .ply, a PlayCanvas
    .compressed.ply, .splat, .spz, .sog or SOG meta.json, or a .gsz file (decoded as
    `gscodec decode` does unless --no-refine; one line on stderr says which).

    Several inputs are encoded side by side in --jobs processes (each scene's chunks in its
    own process) or on a Ray cluster (--ray), each into IN.gsz or into the folder -o names; a
    scene that fails is reported on its own line and the others are still written (exit code
    1 if any failed)."""
    from click.core import ParameterSource

    from gscodec.parallel import RayCluster

    if target_size is not None and target_psnr is not None:
        raise GscodecError("--target-size and --target-psnr: give one of them")
    targeted = target_size is not None or target_psnr is not None
    if targeted and ctx.get_parameter_source("quality") == ParameterSource.COMMANDLINE:
        raise GscodecError("a target chooses the quality: give --quality or a target, not both")
    if base is not None:
        given = [f"--{name.replace('_', '-')}" for name in
                 ("quality", "target_size", "target_psnr", "importance", "prior_gains",
                  "chunk_size", "prune")
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            raise GscodecError(f"--base: the base layer is an .spz file; {', '.join(given)} "
                               "does not apply to it")
        if base != "spz":
            if len(input_paths) > 1:
                raise GscodecError("--base FILE.spz belongs to one scene: give one input with it")
            _check_input(Path(base))
    workers: int | RayCluster = jobs
    if ray_address:
        workers = RayCluster(ray_address)
        workers.connect()  # (an unreachable cluster fails now, not after reading the scene)
    options = dict(quality=quality, views=views, sideinfo_scale=sideinfo_scale,
                   sideinfo_step=sideinfo_step, importance=importance,
                   prior_gains=prior_gains, refine=refine, chunk_size=chunk_size,
                   target_size=target_size, target_psnr=target_psnr, prune=prune, base=base,
                   json=as_json)
    if len(input_paths) > 1:
        _encode_many(input_paths, output, cameras_path, workers, force, quiet, options)
        return
    _encode_one(input_paths[0], output, {**options, "cameras": cameras_path}, workers, force,
                quiet)


def _encode_many(inputs: tuple[Path, ...], output: Path | None, cameras_path: Path | None,
                 jobs: Any, force: bool, quiet: bool, options: dict[str, Any]) -> None:
    """``encode`` of several scenes: every output checked before any work starts, then the
    scenes in ``jobs`` processes or as a Ray cluster's tasks
    (:func:`gscodec.parallel.pmap`), each file written here as its scene finishes, one summary
    or error line each, in input order."""
    from gscodec.parallel import RayCluster, available_cores, pmap

    if cameras_path is not None:
        raise GscodecError("--cameras belongs to one scene: give one input with it")
    if output is not None and not output.is_dir():
        raise GscodecError(f"{output}: with several inputs, -o must be an existing folder")
    outs = [(output / p.name if output else p).with_suffix(".gsz") for p in inputs]
    if len({o.resolve() for o in outs}) != len(outs):
        raise GscodecError("two inputs would write the same .gsz file")
    for p, o in zip(inputs, outs, strict=True):
        _check_input(p)
        _check_not_input(o, p)
        check_output_path(o, force=force)
    tasks = [(str(p.resolve()), str(p), str(o), options)
             for p, o in zip(inputs, outs, strict=True)]
    if isinstance(jobs, RayCluster):
        # (a node that fails a scene, after Ray's retries, fails that scene alone)
        results = jobs.map(_encode_task, tasks, window=1,
                           fallback=lambda task, e: (False, [f"{task[1]}: {e}"], b""))
    else:
        processes = min(len(inputs), available_cores() if jobs == 0 else jobs)
        # (one process: the scenes one after the other here, torch with all its threads)
        results = map(_encode_task, tasks) if processes <= 1 else pmap(_encode_task, tasks,
                                                                       processes, window=1)
    failed = 0
    for out, (ok, lines, data) in zip(outs, results, strict=True):
        if ok:
            atomic_write_bytes(out, data, force=force)
        failed += not ok
        for line in lines:
            if not ok:
                _report_error(line)
            elif line.startswith("warning: "):
                click.echo(line, err=True)
            elif not quiet:
                click.echo(line)
    if failed:
        sys.exit(1)


def _report_error(message: str) -> None:
    """One error line (JSON with --json-errors), without exiting."""
    if _json_errors():
        error = {"type": "GscodecError", "message": message, "exit_code": 1}
        click.echo(json.dumps({"error": error}), err=True)
    else:
        click.echo(f"gscodec: error: {message}", err=True)


def _encode_task(task: tuple[str, str, str, dict[str, Any]]) -> tuple[bool, list[str], bytes]:
    """One scene of :func:`_encode_many` (in a worker process or on a Ray node): ``(True,
    summary lines, the file's bytes)`` or ``(False, [the error], b"")``, the summary naming
    ``out``, which the caller writes; the scene's chunks are coded where it runs."""
    path, shown, out, o = task
    captured: list[str] = []
    try:
        if not Path(path).exists():
            raise GscodecError(f"{shown}: not found where it was encoded (on a Ray cluster "
                               "the inputs must be at the same path on every node)")
        data = _encode_data(Path(path), {**o, "cameras": None}, 1, True, captured.append,
                            shown=shown, out_name=out)
    except GscodecError as e:
        return False, [str(e).replace(path, shown)], b""
    except MemoryError:
        return False, [f"{shown}: out of memory"], b""
    except OSError as e:
        return False, [f"{shown}: {e.strerror or e}"], b""
    return True, captured, data


def _encode_one(input_path: Path, output: Path | None, o: dict[str, Any], jobs: Any,
                force: bool, quiet: bool) -> None:
    """``encode`` of one scene (``o``: the command's options; its chunks in ``jobs``
    processes or on a Ray cluster)."""
    _check_input(input_path)
    out = output or input_path.with_suffix(".gsz")
    _check_not_input(out, input_path)
    check_output_path(out, force=force)
    lines: list[str] = []
    data = _encode_data(input_path, o, jobs, quiet, lines.append, out_name=str(out))
    atomic_write_bytes(out, data, force=force)
    for line in lines:
        if line.startswith("warning: "):
            click.echo(line, err=True)
        elif not quiet:
            click.echo(line)


def _encode_data(input_path: Path, o: dict[str, Any], jobs: Any, quiet: bool, say: Any,
                 shown: str | None = None, out_name: str = "") -> bytes:
    """The .gsz bytes of one scene with the command's options ``o``, and its lines (the
    encoder's warnings, ``warning: ...``, naming the scene as ``shown`` where it is given,
    then the summary naming ``out_name``, or with ``json`` one JSON object) through ``say``."""
    from ..cameras import spread

    name_warnings = shown is not None
    shown = shown or str(input_path)
    cameras = None
    if o["cameras"] is not None:
        from ..cameras import read_cameras

        _check_input(o["cameras"])
        cameras = read_cameras(o["cameras"])
    t0 = time.perf_counter()
    _note_gsz_input(input_path, o["refine"], quiet)
    with progress_bar(quiet, "encode") as report:
        data, n, degree, views, reached = _encoded(input_path, o, cameras, jobs, report)
    # the encoder's warnings (a file beyond the default decode budget) as one plain line each,
    # not Python's file:line form
    for w in reached.pop("warnings"):
        say(f"warning: {shown}: {w}" if name_warnings else f"warning: {w}")
    in_bytes = input_path.stat().st_size
    bits = 8 * len(data) / n if n else 0.0
    seconds = time.perf_counter() - t0
    if o["json"]:
        say(json.dumps({"input": shown, "output": out_name, "gaussians": n, "sh_degree": degree,
                        "bytes": len(data), "bits_per_gaussian": bits, "views": views,
                        **reached, "seconds": seconds}))
        return data
    q = reached["quality"]
    what = f"quality {q:g}" if q is not None else f"base layer {reached['base']}"
    target = ""
    if reached.get("target_size") is not None or reached.get("target_psnr") is not None:
        goal = (f"{reached['target_size']:,} bytes" if reached.get("target_size") is not None
                else f"{reached['target_psnr']:g} dB at its views (reached "
                     f"{reached['psnr']:.2f} dB)")
        target = (f" (target {goal}{'' if reached['met'] else ', not met'}; "
                  f"{reached['encodes']} encodes)")
    pruned = f" ({reached['pruned']:,} pruned)" if reached.get("pruned") else ""
    say(
        f"{shown} -> {out_name}: {n:,} Gaussians{pruned} (SH {degree}), {_size(len(data))}, "
        f"{bits:.1f} bits/Gaussian, {in_bytes / max(1, len(data)):.1f}x smaller, "
        f"{what}{target}, {seconds:.1f} s"
    )
    if cameras is not None and views > 0:
        names = [cameras[i].name for i in spread(cameras, views)]
        say(f"side information at {len(names)} of {len(cameras)} training cameras: "
            + ", ".join(names))
    return data


def _base_file(path: Path) -> bytes:
    """The bytes of ``--base FILE.spz`` (an .spz file, at most formats.spz.MAX_FILE_BYTES)."""
    from ..formats.spz import MAX_FILE_BYTES

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise GscodecError(f"{path}: {size:,} bytes, more than an .spz file may have")
        return path.read_bytes()
    except OSError as e:
        raise GscodecError(f"{path}: {e.strerror or e}") from None


def _encoded(input_path: Path, o: dict[str, Any], cameras: Any, jobs: Any, report: Any
             ) -> tuple[bytes, int, int, int, dict[str, Any]]:
    """The scene's file at preset ``o["quality"]`` or at its target, with its Gaussians, SH
    degree, side-information views and what it reached (the quality; with a target, what
    :class:`gscodec.Reached` holds; ``warnings``: the encoder's warnings)."""
    from ..api import default_views, encode_to, encode_with_order, load_scene

    report(0, 1, "reading PLY")
    scene = [load_scene(input_path, refine=o["refine"])]
    n, degree = scene[0].n, scene[0].sh_degree
    views = o["views"]
    if views is None:
        views = default_views(scene[0], o["quality"])
    if cameras is not None:
        views = min(views, len(cameras))
    options = dict(progress=report, views=views, sideinfo_scale=int(o["sideinfo_scale"]),
                   sideinfo_step=o["sideinfo_step"] / 255.0, importance=o["importance"],
                   prior_gains=o["prior_gains"], cameras=cameras, chunk_size=o["chunk_size"],
                   jobs=jobs)
    if o.get("prune") is not None:
        options["prune"] = o["prune"]
    # encode_with_order gets the only reference to the scene (the list, which it empties), so
    # that it lets it go once it is coded and rendered (memory: one scene at a time); a scene
    # passed in the call itself would stay referenced here until the call returns (encode_to
    # codes the scene several times and keeps it throughout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if o.get("base") is not None:
            spz = "spz" if o["base"] == "spz" else _base_file(Path(o["base"]))
            data, _ = encode_with_order(scene, base=spz, **options)
            reached = {"quality": None, "base": o["base"]}
        elif o["target_size"] is None and o["target_psnr"] is None:
            data, _ = encode_with_order(scene, o["quality"], **options)
            reached: dict[str, Any] = {"quality": o["quality"]}
        else:
            data, _, r = encode_to(scene.pop(), target_size=o["target_size"],
                                   target_psnr=o["target_psnr"], **options)
            reached = r.as_dict()
    reached["warnings"] = [str(w.message) for w in caught]
    if o.get("base") is None:
        from ..bitrate import inspect
        from ..encoder import ENCODER_LIMITS

        reached["pruned"] = inspect(data, limits=ENCODER_LIMITS)["pruned"]
    return data, n, degree, views, reached


@main.command()
@click.argument("input_path", metavar="IN.gsz", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file, its format by suffix: .ply (INRIA), .spz, .splat, "
                   ".compressed.ply or .glb (default: IN.decoded.ply).")
@click.option("--spz-version", type=click.Choice(["3", "4"]), default="4", show_default=True,
              help="SPZ version of a .spz output (3: gzip, 4: zstd streams).")
@click.option("--turn", type=click.Choice(["x", "y", "z"]), default=None,
              help="Turn the scene 180 degrees about this axis before writing (two coordinates "
                   "change sign; covariances and SH turn with it): x converts between INRIA "
                   "PLY axes and the RUB axes of Niantic's .spz tools.")
@click.option("--no-refine", is_flag=True,
              help="Write the decoded Gaussians without refinement.")
@click.option("--steps", type=click.IntRange(0, 100000), default=None,
              help="Gradient refinement steps (default: 300 on a GPU, 30 on the CPU, fewer "
                   "above 300,000 Gaussians; see --method).")
@click.option("--method", type=click.Choice(["auto", "adam", "colour"]), default="auto",
              show_default=True,
              help="Refinement: adam (gradient steps on every attribute), colour (one linear "
                   "solve of the colours, one render per side-information view) or auto "
                   "(adam on a GPU, with the learned prior, with --steps, and on the CPU up to "
                   "150,000 Gaussians; colour on the CPU above).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Device for refinement.")
@click.option("--prior", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True,
              help="Refinement targets from the learned image prior (auto: where the file "
                   "carries the encoder's gains for the shipped network; on: always) or "
                   "decoded render + coarse residual (off).")
@click.option("--extra-views", type=click.IntRange(0, 64), default=0, show_default=True,
              help="With the prior: views without side information restored by the network "
                   "alone, added to the refinement targets.")
@click.option("--max-gaussians", type=click.IntRange(0, 1 << 62), default=None, metavar="N",
              help="Refuse files that declare more than N Gaussians (default: 2**28).")
@click.option("--max-memory", type=_ByteSize(), default=None, metavar="SIZE",
              help="Refuse files whose decoding (with refinement, where it runs) is estimated "
                   "to need more memory than SIZE, e.g. 8GB, 512MiB or plain bytes (default: "
                   "16GiB; GSZ.md 4.1).")
@click.option("--bbox", type=_Box(), default=None, metavar="X0,Y0,Z0,X1,Y1,Z1",
              help="Only the Gaussians whose centre lies in this box (a chunked file decodes "
                   "only the chunks that meet it); the base layer, not refined.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
              metavar="F",
              help="Only the leading layers of every chunk that hold at least F of it (the "
                   "Gaussians that cover most: a coarse version of the scene); the base layer, "
                   "not refined. A plain (unchunked) file is one layer: decoded whole.")
@click.option("--jobs", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Processes decoding the chunks of a chunked file side by side (0: every "
                   "core, or one for fewer than 262,144 Gaussians).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@handle_errors
def decode(input_path: Path, output: Path | None, spz_version: str, turn: str | None,
           no_refine: bool, steps: int | None,
           method: str, device: str, prior: str, extra_views: int, max_gaussians: int | None,
           max_memory: int | None, bbox: Any, fraction: float | None, jobs: int, force: bool,
           quiet: bool) -> None:
    """Decompress a .gsz file into a 3DGS PLY (INRIA layout) or, by the output's suffix, a
    .spz, .splat, .compressed.ply or .glb (KHR_gaussian_splatting) file.

    Files with side information are refined unless --no-refine is given. The Gaussians come out
    in the codec's storage order (Morton order), not the original order."""
    from ..api import decode as decode_gsz
    from ..formats.gsz import DEFAULT_LIMITS, Limits
    from ..formats.writers import output_format

    limits = Limits(
        max_gaussians=DEFAULT_LIMITS.max_gaussians if max_gaussians is None else max_gaussians,
        max_memory=DEFAULT_LIMITS.max_memory if max_memory is None else max_memory)
    _check_input(input_path)
    stem = input_path.name[:-4] if input_path.name.endswith(".gsz") else input_path.name
    out = output or input_path.with_name(f"{stem}.decoded.ply")
    _check_not_input(out, input_path)
    check_output_path(out, force=force)
    kind = output_format(out)  # (an unknown suffix is refused before anything is decoded)
    t0 = time.perf_counter()
    with progress_bar(quiet, "decode") as report:
        report(0, 1, "reading")
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise GscodecError("--device cuda: no CUDA device is available")
        with naming(input_path):
            if kind == "ply" and bbox is None and _base_layer_only(
                    input_path, no_refine, fraction, extra_views, limits):
                # part by part into the PLY: one part in memory at a time, not the scene
                n, degree = _write_ply_parts(out, input_path, limits, fraction, jobs, turn,
                                             force)
            else:
                g = decode_gsz(input_path, progress=report, refine=not no_refine, steps=steps,
                               device=device, limits=limits, prior=prior,
                               extra_views=extra_views, method=method, region=bbox,
                               fraction=fraction, jobs=jobs)
                n, degree = g.n, g.sh_degree
                report(1, 1, f"writing {kind}")
                _write_scene(out, kind, g.as_arrays(), turn, spz_version, force)
                del g
    if not quiet:
        summary = ("base layer of the box, " if bbox is not None else "") + (
            f"leading layers holding {fraction:g} of each chunk, "
            if fraction is not None and fraction < 1 else "")
        if not summary:
            summary = _refinement_summary(input_path, no_refine, steps, device, limits, prior,
                                          extra_views, method)
        click.echo(f"{input_path} -> {out}: {n:,} Gaussians (SH {degree}), "
                   f"{summary}{time.perf_counter() - t0:.1f} s")


def _base_layer_only(path: Path, no_refine: bool, fraction: float | None, extra_views: int,
                     limits: Any) -> bool:
    """Whether ``decode`` writes the base layer as decoded: no refinement asked for or
    possible (no side information, no extra views), or only the first layers."""
    from ..info import info as read_info

    if no_refine or (fraction is not None and fraction < 1):
        return True
    return extra_views == 0 and read_info(path, limits=limits)["side_information"] is None


def _write_ply_parts(out: Path, path: Path, limits: Any, fraction: float | None, jobs: int,
                     turn: str | None, force: bool) -> tuple[int, int]:
    """The base layer of ``path`` written to the PLY ``out`` part by part (atomically)."""
    from ..api import decode_parts
    from ..formats.atomic import atomic_write
    from ..formats.ply import write_ply_header, write_ply_rows

    n, degree, parts = decode_parts(path, limits=limits, fraction=fraction, jobs=jobs)

    def write(f: Any) -> None:
        write_ply_header(f, n, degree)
        for arrays in parts:
            if turn is not None:
                from ..formats.axes import turn as turn_arrays

                arrays = turn_arrays(arrays, turn)
            write_ply_rows(f, arrays)

    atomic_write(out, write, force=force)
    return n, degree


def _write_scene(out: Path, kind: str, arrays: dict[str, Any], turn: str | None,
                 spz_version: str, force: bool) -> None:
    """Write decoded arrays in format ``kind`` (formats.writers.output_format of ``out``),
    turned 180 degrees about ``turn`` first where given; the INRIA PLY streamed atomically."""
    from ..formats.atomic import atomic_write
    from ..formats.ply import write_ply_file
    from ..formats.writers import write_scene_arrays

    if turn is not None:
        from ..formats.axes import turn as turn_arrays

        arrays = turn_arrays(arrays, turn)
    if kind == "ply":
        atomic_write(out, lambda f: write_ply_file(f, arrays), force=force)
    else:
        write_scene_arrays(out, arrays, force=force, spz_version=int(spz_version))


def _refinement_summary(path: Path, no_refine: bool, steps: int | None, device: str,
                        limits: Any = None, prior: str = "auto", extra_views: int = 0,
                        method: str = "auto") -> str:
    """What decode chose about refinement, for the summary line."""
    from ..api import default_steps, inspect, refinement_method, refinement_plan, resolve_device
    from ..formats.gsz import DEFAULT_LIMITS

    info = inspect(path, limits=limits or DEFAULT_LIMITS)
    has_side = any(r["stream"] == "SIDE" for r in info["streams"])
    side_prior = info["side_prior"]
    refines, use_prior = refinement_plan(has_side, prior, extra_views,
                                         None if side_prior is None else {"prior": side_prior})
    if not refines:
        return ""
    if no_refine:
        return "not refined (--no-refine), "
    if info["gaussians"] == 0:  # (decode refines nothing then)
        return ""
    device = resolve_device(device)
    if has_side and refinement_method(method, device, steps, use_prior,
                                       info["gaussians"]) == "colour":
        return f"refined with side information (colour fit at {info['side_views']} views), "
    n = default_steps(device, info["gaussians"]) if steps is None else steps
    if n <= 0:
        return "not refined (--steps 0), "
    what = " + ".join(([] if not has_side else ["side information"])
                      + (["learned prior"] if use_prior else [])
                      + ([f"{extra_views} extra views"] if use_prior and extra_views else []))
    return f"refined with {what} ({n} steps on {device}), "


def _note_gsz_input(path: Path, refine: bool, quiet: bool) -> None:
    """For a .gsz input of ``encode`` or ``compare``: one line on stderr saying whether it is
    decoded with refinement (as ``gscodec decode`` does: the library's default steps and device)
    and how many steps, unless ``quiet``. Nothing for other inputs, and nothing for a file whose
    header does not parse (loading it reports the error)."""
    from ..api import default_steps, inspect, refinement_plan
    from ..formats.gsz import MAGIC

    if quiet:
        return
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return
        info = inspect(path)
    except (OSError, GscodecError):
        return
    has_side = any(r["stream"] == "SIDE" for r in info["streams"])
    side_prior = info["side_prior"]
    refines, use_prior = refinement_plan(has_side, "auto", 0,
                                         None if side_prior is None else {"prior": side_prior})
    if not refine:
        how = "without refinement (--no-refine)"
    elif not refines:
        how = "without refinement (it has no side information)"
    elif info["gaussians"] == 0:
        how = "without refinement (it holds no Gaussians)"
    else:
        from ..api import refinement_method, resolve_device

        device = resolve_device("auto")
        if refinement_method("auto", device, None, use_prior, info["gaussians"]) == "colour":
            how = (f"with refinement: the colour fit at {info['side_views']} views on "
                   f"{device} (side information); --no-refine decodes without")
        else:
            steps = default_steps(device, info["gaussians"])
            what = "side information + learned prior" if use_prior else "side information"
            how = (f"with refinement: {steps} steps on {device} ({what}); --no-refine decodes "
                   "without")
    click.echo(f"gscodec: {path}: decoding the .gsz {how}", err=True)


def _heat(a: Any, b: Any) -> Any:
    """Error heat map: mean absolute error per pixel, x4, black -> red -> yellow -> white."""
    import numpy as np

    e = np.clip(np.abs(a - b).mean(axis=2) * 4.0, 0.0, 1.0)
    return np.stack([np.clip(3 * e, 0, 1), np.clip(3 * e - 1, 0, 1), np.clip(3 * e - 2, 0, 1)],
                    axis=2)


@main.command()
@click.argument("ref_path", metavar="REF", type=click.Path(path_type=Path))
@click.argument("other_path", metavar="OTHER", type=click.Path(path_type=Path))
@click.option("--views", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Number of evaluation views.")
@click.option("--size", type=click.IntRange(16, 8192), default=256, show_default=True,
              help="Longest side of the renders, in pixels.")
@click.option("--cameras", "cameras_path", type=click.Path(path_type=Path),
              help="Cameras (INRIA cameras.json or nerfstudio transforms.json) to use instead "
                   "of views synthesized around REF; those a .gsz input's side information "
                   "was measured at are left out (held-out views).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--png", "png_path", type=click.Path(path_type=Path),
              help="Write reference | other | error heat map of the worst view.")
@click.option("--backend", type=click.Choice(["auto", "cpu", "gsplat"]), default="auto",
              show_default=True, help="Renderer (gsplat needs CUDA).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of the synthesized evaluation views (ignored with --cameras).")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="Decode .gsz inputs with refinement, as `gscodec decode` does (on a CPU "
                   "the colour fit: one render per side-information view), or without it (the "
                   "base layer).")
@click.option("--force", is_flag=True, help="Overwrite an existing --png output.")
@click.option("--quiet", is_flag=True, help="No progress bar, no note about .gsz inputs.")
@handle_errors
def compare(ref_path: Path, other_path: Path, views: int, size: int, cameras_path: Path | None,
            as_json: bool, png_path: Path | None, backend: str, seed: int, refine: bool,
            force: bool, quiet: bool) -> None:
    """Render REF and OTHER (.ply or .gsz) from the same views and report PSNR and SSIM of
    OTHER against REF (black background). A .gsz is decoded as `gscodec decode` does, refined
    unless --no-refine (one line on stderr says which)."""
    import numpy as np

    from ..api import load_scene
    from ..cameras import evaluation_views, read_cameras, same_view, subset
    from ..info import side_cameras
    from ..metrics import compare_renders
    from ..png import encode_png
    from ..render import render, resolve_backend

    for p in (ref_path, other_path):
        _check_input(p)
    if png_path is not None:
        check_output_path(png_path, force=force)
    if backend == "gsplat" and resolve_backend("auto") != "gsplat":
        raise GscodecError("--backend gsplat needs CUDA and gsplat; use --backend cpu")
    for p in (ref_path, other_path):
        _note_gsz_input(p, refine, quiet)
    with progress_bar(quiet, "compare") as report:
        report(0, 1, "loading")
        ref = load_scene(ref_path, refine=refine)
        other = load_scene(other_path, refine=refine)
        if cameras_path is not None:
            pool = read_cameras(cameras_path)
            used = [c for p in (ref_path, other_path) if p.suffix == ".gsz"
                    for c in side_cameras(p)]
            held = [c for c in pool if not any(same_view(c, u) for u in used)]
            if not held:
                raise GscodecError(f"{cameras_path}: every camera was used by the encoder "
                                   "(side information); none is left to evaluate on")
            if len(held) < len(pool) and not quiet:
                click.echo(f"note: {len(pool) - len(held)} of the {len(pool)} cameras carry "
                           "the file's side information and are left out (held-out views "
                           "only)", err=True)
            cams = subset(held, views, size)
        else:
            cams = evaluation_views(ref.means, views, size, seed=seed)
        result = compare_renders(ref, other, cams, backend=backend, progress=report)
    result["ref"], result["other"] = str(ref_path), str(other_path)
    result["backend"] = resolve_backend(backend)
    result["seed"] = None if cameras_path is not None else seed
    if png_path is not None and result["views"]:
        import torch

        cam = cams[result["worst"]]
        with torch.no_grad():
            a = render(ref, cam, backend=backend).image.clamp(0, 1).cpu().numpy()
            b = render(other, cam, backend=backend).image.clamp(0, 1).cpu().numpy()
        atomic_write_bytes(png_path, encode_png(np.concatenate([a, b, _heat(a, b)], axis=1)),
                           force=force)
        result["png"] = str(png_path)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{other_path} against {ref_path}: {result['views']} views, "
                  f"{result['width']}x{result['height']}, {result['backend']} renderer")
    for col in ("view", "PSNR (dB)", "SSIM", "PSNR covered (dB)", "covered"):
        table.add_column(col, justify="left" if col == "view" else "right")
    def db(x: float | None) -> str:
        return "inf" if x is None else f"{x:.2f}"

    for v in result["per_view"]:
        table.add_row(v["name"], db(v["psnr"]), f"{v['ssim']:.4f}", db(v["psnr_covered"]),
                      f"{100 * v['coverage']:.0f}%")
    table.add_row("mean", db(result["psnr"]), f"{result['ssim']:.4f}", db(result["psnr_covered"]),
                  f"{100 * result['coverage']:.0f}%", style="bold")
    Console().print(table)


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--spz-version", type=click.Choice(["3", "4"]), default="4", show_default=True,
              help="SPZ version of a .spz output (3: gzip, 4: zstd streams).")
@click.option("--turn", type=click.Choice(["x", "y", "z"]), default=None,
              help="Turn the scene 180 degrees about this axis before writing (two coordinates "
                   "change sign; covariances and SH turn with it): x converts between INRIA "
                   "PLY axes and the RUB axes of Niantic's .spz tools.")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="For a .gsz input: decode it as `gscodec decode` does (refined where it "
                   "carries side information) or without refinement.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No summary.")
@handle_errors
def convert(input_path: Path, output: Path, spz_version: str, turn: str | None, refine: bool,
            force: bool, quiet: bool) -> None:
    """Convert a scene between formats: IN any format gscodec reads (.ply, .compressed.ply,
    .splat, .spz, .sog, SOG meta.json, .gsz), OUT by its suffix (.ply, .spz, .splat,
    .compressed.ply, .glb). Each format keeps what it can hold: .splat drops the SH bands
    above DC, the 8-bit formats quantize."""
    from ..api import load_scene
    from ..formats.writers import output_format

    _check_input(input_path)
    _check_not_input(output, input_path)
    check_output_path(output, force=force)
    kind = output_format(output)
    t0 = time.perf_counter()
    _note_gsz_input(input_path, refine, quiet)
    with naming(input_path):
        g = load_scene(input_path, refine=refine)
    _write_scene(output, kind, g.as_arrays(), turn, spz_version, force)
    if not quiet:
        click.echo(f"{input_path} -> {output}: {g.n:,} Gaussians (SH {g.sh_degree}), {kind}, "
                   f"{_size(output.stat().st_size)}, {time.perf_counter() - t0:.1f} s")


class _FrameSize(click.ParamType):
    """WIDTHxHEIGHT in pixels."""

    name = "WxH"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            w, h = (int(x) for x in str(value).lower().split("x"))
        except ValueError:
            self.fail(f"{value!r} is not WIDTHxHEIGHT (e.g. 640x480)", param, ctx)
        if not (16 <= w <= 4096 and 16 <= h <= 4096):
            self.fail(f"{value!r}: each side must be 16 to 4096 pixels", param, ctx)
        return w, h


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option("--against", "against_path", type=click.Path(path_type=Path), default=None,
              metavar="ORIGINAL", help="The original scene (any format): toggled with the decoded "
                                      "one in the panel, which shows the PSNR at the current "
                                      "camera.")
@click.option("--screenshot", "png_path", type=click.Path(path_type=Path), default=None,
              help="Instead of serving: open the page in headless Chromium, write what it draws "
                   "at the home camera to this PNG (decoded | original with --against, on "
                   "black) and exit.")
@click.option("--size", "frame", type=_FrameSize(), default="640x480", show_default=True,
              help="Size of each --screenshot frame.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to serve on (0: any free port).")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="For a .gsz input: decode it as `gscodec decode` does (refined where it "
                   "carries side information) or without refinement.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120, show_default=True,
              help="Seconds --screenshot waits for the browser.")
@click.option("--force", is_flag=True, help="Overwrite an existing --screenshot output.")
@click.option("--quiet", is_flag=True, help="No note about .gsz inputs, no summary.")
@handle_errors
def view(input_path: Path, against_path: Path | None, png_path: Path | None,
         frame: tuple[int, int], host: str, port: int, refine: bool, timeout: float,
         force: bool, quiet: bool) -> None:
    """Look at a scene (.gsz or any format gscodec reads) in the browser: a viser page with
    the decoded scene, the original beside it (toggled) with --against, and the PSNR of the
    current camera. Needs viser (pip install 'gscodec[view]'); --screenshot needs Chromium."""
    import logging

    import numpy as np

    from ..api import load_scene
    from ..png import encode_png
    from ..view import Viewer, _viser, find_browser, frame_camera, psnr_at, screenshot

    for p in (input_path, *([against_path] if against_path is not None else [])):
        _check_input(p)
    if png_path is not None:
        check_output_path(png_path, force=force)
        if find_browser() is None:
            raise GscodecError("--screenshot needs Chromium (Debian: apt install chromium), or "
                               "GSCODEC_BROWSER naming a Chromium executable")
    _viser()
    for p in (input_path, *([against_path] if against_path is not None else [])):
        _note_gsz_input(p, refine, quiet)
    with naming(input_path):
        decoded = load_scene(input_path, refine=refine)
    original = None
    if against_path is not None:
        with naming(against_path):
            original = load_scene(against_path, refine=refine)
    # the browser's speculative connections make the websocket library log handshake errors
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    if png_path is not None:
        import rich

        rich.get_console().quiet = True  # viser's banner: stdout stays for the summary
    viewer = Viewer(decoded, original, host=host, port=port,
                    title=input_path.name)
    try:
        if png_path is None:
            click.echo(f"{input_path}: {decoded.n:,} Gaussians at {viewer.url} "
                       "(Ctrl-C stops)", err=True)
            try:
                while True:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                return
        frames = screenshot(viewer, *frame, timeout=timeout)
    finally:
        viewer.close()
    rgb = []
    for name in ("decoded", "original"):
        if name in frames:
            f = frames[name].astype(np.float64) / 255.0
            rgb.append(f[..., :3] * f[..., 3:4])  # viser's PNG is unpremultiplied RGBA
    atomic_write_bytes(png_path, encode_png(np.concatenate(rgb, axis=1)), force=force)
    if quiet:
        return
    covered = float((frames["decoded"][..., 3] > 0).mean())
    line = (f"{png_path}: {frame[0]}x{frame[1]} browser frame of {input_path} "
            f"({decoded.n:,} Gaussians), {100 * covered:.0f}% of the frame covered")
    if original is not None:
        value = psnr_at(decoded, original, frame_camera(viewer.home, *frame))
        line += f"; PSNR against {against_path} at this view {value:.2f} dB"
    click.echo(line)


@main.command()
@click.argument("input_path", metavar="IN.gsz", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@handle_errors
def info(input_path: Path, as_json: bool) -> None:
    """What a .gsz file holds (Gaussians, SH degree, preset, streams, side information, the
    learned prior's gains, the decode's estimated memory), read from its header and metadata
    only: no payload is decoded, so it is as fast for a file of any size."""
    from ..info import info as read_info

    _check_input(input_path)
    with naming(input_path):
        result = read_info(input_path)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    n = result["gaussians"]
    lines = [f"{input_path}: .gsz {result['version']}, {_size(result['file_bytes'])}, "
             f"written by {result['encoder']}",
             f"  {n:,} Gaussians, SH degree {result['sh_degree']}, quality "
             f"{result['quality']}, {result['bits_per_gaussian']:.1f} bits/Gaussian"
             + (", importance classes" if result["importance_classes"] else "")
             + (f", chunked (chunks of at most {result['chunk_size']:,} Gaussians)"
                if isinstance(result["chunk_size"], int) else "")]
    for row in result["streams"]:
        lines.append(f"  {row['stream']}  {str(row['attribute']):<20} {row['bytes']:>12,} B  "
                     f"{row['bits_per_gaussian']:7.2f} bits/G")
    side = result["side_information"]
    if side is None:
        lines.append("  no side information (decode writes the base layer as it is)")
    else:
        sizes = sorted({f"{w}x{h}" for w, h in side["sizes"]})
        lines.append(f"  side information: {side['views']} views ({', '.join(sizes)}), "
                     f"{side['scale']}x{side['scale']} blocks")
        prior = side["prior"]
        if prior is not None:
            lines.append(f"  learned-prior gains {prior.get('gain')} (without, with residual) "
                         f"for weights {prior.get('weights')}")
    lines.append(f"  estimated decode memory (base layer): "
                 f"{_size(result['decode_memory_bytes'])}")
    click.echo("\n".join(lines))


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
    if info["chunks"] is not None:
        c = info["chunks"]
        click.echo(f"chunked: {c['count']:,} chunks of {c['layers']} layers (Gaussians per "
                   "layer: " + ", ".join(f"{k:,}" for k in c["layer_gaussians"]) + "); META "
                   "and the header+table row include every part's")
    if info["pruned"]:
        click.echo(f"pruned: the encoder dropped {info['pruned']:,} of the scene's "
                   f"{info['pruned'] + n:,} Gaussians (those whose removal changed its renders "
                   "least)")
    t = info.get("sh_transform")
    if t:
        counts = sorted({k for k in t["components"] if isinstance(k, int)})
        click.echo(f"SH rest: the per-scene transform (GSZ.md 6.6a) in {t['streams']} of "
                   f"{t['of']} SHRS streams, {', '.join(map(str, counts))} of its "
                   f"{t['values']} components sent")
    prior = info.get("side_prior")
    if isinstance(prior, dict):
        click.echo(f"side information carries learned-prior gains {prior.get('gain')} "
                   f"(without, with residual) for weights {prior.get('weights')}")


if __name__ == "__main__":
    main()
