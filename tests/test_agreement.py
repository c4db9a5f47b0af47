"""Encoder/decoder agreement: the encoder never writes a file that the decoder with the default
limits refuses, over random and degenerate scenes; the decoder's limit is a memory budget
computed from the header (GSZ.md 4.1), not a count of Gaussians per byte."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gscodec
import gscodec.formats
from gscodec import budget
from gscodec.api import decode_refusal
from gscodec.cli.main import main
from gscodec.formats.errors import LimitError, LimitWarning
from gscodec.formats.gsz import DEFAULT_LIMITS, Limits
from gscodec.gaussians import Gaussians
from gscodec.synthetic import make_scene

# no prior gains (their fit costs seconds) and the CPU renderer: fast and deterministic
SIDE = {"views": 2, "sideinfo_size": 32, "backend": "cpu", "prior_gains": False}


def _scene(n: int, degree: int, seed: int = 0, *, means=None, log_scales=None, opacity=None,
           spread: float = 1.0) -> Gaussians:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    m = rng.normal(size=(n, 3)) * spread if means is None else np.broadcast_to(means, (n, 3))
    s = rng.normal(-3.0, 0.5, (n, 3)) if log_scales is None else np.full((n, 3), log_scales)
    o = rng.normal(size=n) if opacity is None else np.full(n, opacity)
    return Gaussians(np.array(m, np.float32), rng.normal(size=(n, 4)).astype(np.float32),
                     s.astype(np.float32), o.astype(np.float32),
                     (0.3 * rng.normal(size=(n, k, 3))).astype(np.float32))


def _identical(n: int, degree: int) -> Gaussians:
    """``n`` copies of one Gaussian: the channel coder spends almost nothing on them (100,000
    take 681 bytes at SH 0), so only a rule that ignores the file length accepts them."""
    k = (degree + 1) ** 2
    return Gaussians(np.zeros((n, 3), np.float32), np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                     np.full((n, 3), -12.0, np.float32), np.zeros(n, np.float32),
                     np.full((n, k, 3), 0.1, np.float32))


def _encode(g: Gaussians, quality: int, **options) -> bytes:
    """Encode with warnings as errors: a LimitWarning would say the decoder refuses the file.
    Nothing pruned (preset 1 would drop most of a scene of identical Gaussians): these files
    are about holding every Gaussian the scene has."""
    options.setdefault("prune", 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LimitWarning)
        return gscodec.encode(g, quality, **options)


def _agrees(g: Gaussians, quality: int, **options) -> bytes:
    """The encoder's file decodes with the default limits (no refinement) to ``g.n`` Gaussians
    and the header check (budget with refinement on a CPU) accepts it."""
    data = _encode(g, quality, **options)
    assert decode_refusal(data) is None
    out = gscodec.decode(data, refine=False)
    assert out.n == g.n and out.sh_degree == g.sh_degree
    for name, value in out.as_arrays().items():
        assert np.isfinite(value).all(), name
    return data


# ---------------------------------------------------------------------------------------------
# degenerate scenes


_IDENTICAL: dict[tuple[int, int, int], bytes] = {}


def _identical_file(n: int, degree: int, quality: int) -> bytes:
    """The encoder's file of ``_identical(n, degree)`` (checked by :func:`_agrees`; cached),
    plain (one chunk: the per-byte rule these tests replace was about plain files)."""
    key = (n, degree, quality)
    if key not in _IDENTICAL:
        _IDENTICAL[key] = _agrees(_identical(n, degree), quality, importance=False,
                                  chunk_size=n)
    return _IDENTICAL[key]


@pytest.mark.parametrize(("n", "degree", "quality"),
                         [(100_000, 0, 7), (100_000, 0, 1), (70_000, 3, 10)])
def test_many_identical_gaussians_decode_with_the_default_limits(n, degree, quality):
    data = _identical_file(n, degree, quality)
    # what the per-byte rule refused: more than 65536 Gaussians, and more than 64 per byte
    assert n > 64 * len(data)


def test_many_identical_gaussians_with_side_information():
    # the encoder decodes its own base layer for the side information: it refused itself before
    # (a fine residual step: the copies' quantization errors are far below 1/255 in renders)
    data = _agrees(_identical(80_000, 0), 7, importance=False, sideinfo_step=1e-5,
                   chunk_size=80_000, **SIDE)
    assert 80_000 > 64 * len(data)
    assert "SIDE" in [r["stream"] for r in gscodec.inspect(data)["streams"]]
    assert gscodec.decode(data, steps=0).n == 80_000  # SIDE decoded, with the default limits


DEGENERATE = {
    "one": lambda: _scene(1, 3, 1),
    "huge-coordinates": lambda: _scene(200, 1, 2, spread=1e30),
    "tiny-coordinates": lambda: _scene(200, 1, 3, spread=1e-30),
    "far-point": lambda: _scene(50, 0, 4, means=(1e30, -1e30, 1e30)),
    "huge-scales": lambda: _scene(200, 0, 5, log_scales=69.0),  # e^69: 1e30
    "tiny-scales": lambda: _scene(200, 2, 6, log_scales=-69.0),
    "transparent": lambda: _scene(200, 2, 7, opacity=-30.0),
    "one-point": lambda: _scene(60, 1, 8, means=(1.0, 2.0, 3.0)),
    "empty": lambda: _scene(0, 3, 9),
}


@pytest.mark.parametrize("quality", [1, 5, 7, 10])
@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_scenes_without_side_information(name, quality):
    _agrees(DEGENERATE[name](), quality)


@pytest.mark.parametrize("name", ["one", "huge-coordinates", "tiny-coordinates", "huge-scales",
                                  "transparent", "one-point"])
def test_degenerate_scenes_with_side_information(name):
    data = _agrees(DEGENERATE[name](), 7, **SIDE)
    gscodec.decode(data, steps=0)  # the SIDE stream (where there is one) decodes too


def test_coordinates_near_the_float32_maximum_are_refused_not_miscoded():
    # positions spanning more than ~2e36 would need a grid step above the 1e30 that GSZ.md 6.1
    # lets a decoder accept: the encoder refuses such input with a clear error instead of
    # writing a file the decoder refuses
    from gscodec.api import InputError

    g = _scene(200, 1, 10)
    g = Gaussians(np.clip(g.means, -1, 1) * np.float32(3e38), g.quats, g.log_scales,
                  g.opacity_logits, g.sh)
    with pytest.raises(InputError, match="coordinate"):
        gscodec.encode(g, quality=7)


def test_refinement_path_with_default_limits():
    g = make_scene(40, sh_degree=1, seed=3)
    data = _agrees(g, 7, **SIDE)
    assert "SIDE" in [r["stream"] for r in gscodec.inspect(data)["streams"]]
    out = gscodec.decode(data, steps=1, device="cpu", backend="cpu")  # refines, default limits
    assert out.n == 40


# ---------------------------------------------------------------------------------------------
# random scenes


@pytest.mark.parametrize("seed", range(8))
def test_random_scenes(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.choice([1, 2, 17, 300, 2500]))
    degree = int(rng.integers(0, 4))
    quality = int(rng.integers(1, 11))
    g = make_scene(n, sh_degree=degree, seed=seed)
    # random distortions: scale the scene, the sizes, the opacities
    g = Gaussians(g.means * np.float32(10.0 ** rng.uniform(-20, 20)), g.quats,
                  g.log_scales + np.float32(rng.uniform(-20, 20)),
                  g.opacity_logits * np.float32(rng.uniform(0, 5)), g.sh)
    options = SIDE if seed % 3 == 0 else {}
    _agrees(g, quality, **options)


# ---------------------------------------------------------------------------------------------
# the budget and the encoder's own check


def _traced_peak(data: bytes) -> int:
    """Peak bytes numpy allocates (tracemalloc sees them) while the base layer is decoded."""
    tracemalloc.start()
    try:
        gscodec.decode(data, refine=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("degree", "quality", "n1", "n2"),
                         [(0, 7, 100_000, 200_000), (3, 10, 70_000, 140_000)])
def test_the_estimate_bounds_what_the_decoder_allocates(degree, quality, n1, n2):
    # what each further Gaussian costs is within the estimate's per-Gaussian term, and what
    # does not grow with n (blocks of rows the decoder works in) within its fixed term; both
    # sizes above 65536 rows, the channel decoder's block
    p1, p2 = (_traced_peak(_identical_file(n, degree, quality)) for n in (n1, n2))
    per_gaussian = budget.GAUSSIAN_BYTES + budget.SH_COEFF_BYTES * (degree + 1) ** 2
    marginal = (p2 - p1) / (n2 - n1)
    assert 0 < marginal < per_gaussian
    assert marginal > per_gaussian / 3  # (an estimate, not a wild guess)
    assert p1 - marginal * n1 < budget.FIXED_BYTES
    assert p2 < gscodec.inspect(_identical_file(n2, degree, quality))["decode_memory_bytes"]


def test_the_budget_refuses_before_decoding_and_is_configurable():
    data = gscodec.encode(_identical(100_000, 3), 7, importance=False)
    est = gscodec.inspect(data)["decode_memory_bytes"]
    assert est > 100_000 * (44 + 12 * 16)  # at least the decoded float32 arrays
    with pytest.raises(LimitError) as info:
        gscodec.decode(data, refine=False, limits=Limits(max_memory=est - 1))
    message = str(info.value)
    assert f"{est:,} bytes" in message and f"{est - 1:,} bytes" in message
    assert "above the memory budget" in message and "--max-memory" in message
    assert gscodec.decode(data, refine=False, limits=Limits(max_memory=est)).n == 100_000
    # inspect decodes nothing: it reports the estimate whatever the budget
    assert gscodec.inspect(data, limits=Limits(max_memory=1))["decode_memory_bytes"] == est


def test_refinement_counts_in_the_budget():
    data = gscodec.encode(make_scene(40, sh_degree=0, seed=5), 7, **SIDE)
    base = gscodec.inspect(data)["decode_memory_bytes"]
    tight = Limits(max_memory=base + 1000)
    assert gscodec.decode(data, refine=False, limits=tight).n == 40
    with pytest.raises(LimitError, match="for the side information and refinement.*--no-ref"):
        gscodec.decode(data, steps=1, device="cpu", backend="cpu", limits=tight)
    assert decode_refusal(data, tight) is not None and decode_refusal(data) is None


def test_a_file_beyond_the_default_budget_is_written_with_a_warning(monkeypatch):
    # a scene "too large" for the default budget: every Gaussian made to cost 1 GB
    monkeypatch.setattr(budget, "GAUSSIAN_BYTES", 1 << 30)
    g = make_scene(20, sh_degree=0, seed=6)
    for options in ({}, SIDE):  # with side information the encoder decodes its own file
        with pytest.warns(LimitWarning, match="default limits refuse.*above the memory budget"):
            data = gscodec.encode(g, 7, **options)
        with pytest.raises(LimitError, match="above the memory budget"):
            gscodec.decode(data, refine=False)
        assert gscodec.decode(data, refine=False, limits=Limits(max_memory=1 << 40)).n == 20


def test_the_encoders_check_names_any_limit():
    data = gscodec.encode(make_scene(20, sh_degree=0, seed=7), 7)
    assert decode_refusal(data) is None
    assert decode_refusal(data, Limits(max_gaussians=19)) == \
        "file declares 20 Gaussians (limit 19)"
    assert "above the memory budget of 1,000 bytes" in decode_refusal(data, Limits(max_memory=1000))


def test_the_default_budget():
    assert DEFAULT_LIMITS.max_memory == 16 << 30
    # the largest scenes it decodes (base layer) and refines on a CPU, as documented (files of
    # 17 bytes per Gaussian at SH 3, 10 at SH 0, as the default preset writes)
    for n, degree, views in ((18_000_000, 3, 0), (45_000_000, 0, 0), (1_400_000, 3, 16),
                             (2_200_000, 0, 8)):
        est = budget.base_bytes(n, degree, file_bytes=(17 if degree else 10) * n)
        est += budget.refine_bytes(n, degree, [(256, 256)] * views)
        assert est < DEFAULT_LIMITS.max_memory < 1.1 * est


@pytest.mark.parametrize(("text", "value"), [
    ("8GB", 8 * 10**9), ("512MiB", 512 << 20), ("8G", 8 << 30), ("1.5GiB", 3 << 29),
    ("1000000", 1_000_000), ("16gib", 16 << 30), (" 2 kB ", 2000), ("1_000", 1000),
])
def test_sizes(text, value):
    assert budget.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "GB", "abc", "0", "-1", "0.5", "inf", "nan", "10XB",
                                  "8 G B", "1e400"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        budget.parse_size(text)


def test_max_memory_from_the_command_line(tmp_path):
    src = tmp_path / "a.gsz"
    src.write_bytes(gscodec.encode(make_scene(30, sh_degree=0, seed=8), 7))
    r = CliRunner().invoke(main, ["--json-errors", "decode", str(src), "--max-memory", "100MB"])
    assert r.exit_code == 1
    error = json.loads(r.stderr.strip())["error"]
    assert error["type"] == "LimitError" and "above the memory budget of 100,000,000 bytes" \
        in error["message"]
    assert not (tmp_path / "a.decoded.ply").exists()
    for bad in ("lots", "0", "-5GB"):
        r = CliRunner().invoke(main, ["decode", str(src), "--max-memory", bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(main, ["decode", str(src), "--max-memory", "1GiB", "--quiet",
                                  "--max-gaussians", "30"])
    assert r.exit_code == 0, r.output
    assert gscodec.read_ply(tmp_path / "a.decoded.ply").n == 30


def test_the_spec_states_the_rule_with_the_constants_of_the_code():
    spec = Path(gscodec.formats.__file__).with_name("GSZ.md").read_text(encoding="utf-8")
    b = budget
    for text in (
        f"base   = {b.FIXED_BYTES >> 20} MiB + {b.FILE_BYTE_FACTOR} * F + "
        f"{b.META_BYTE_FACTOR} * M + N * ({b.GAUSSIAN_BYTES} + {b.SH_COEFF_BYTES} * (d+1)^2 + "
        f"{b.CLASS_BYTES} * [IMPC present]",
        f"+ {b.TRANSFORM_VALUE_BYTES} * 3 ((d+1)^2 - 1) * [SHRS codec 2])",
        f"side   = {b.SIDE_ROW_BYTES} * R",
        f"refine = N * ({b.REFINE_GAUSSIAN_BYTES} + {b.REFINE_SH_VALUE_BYTES} * 3 * (d+1)^2)",
        f"+ {b.TARGET_PIXEL_BYTES} * sum(P_v) + {b.RENDER_PIXEL_BYTES} * P_max",
        f"+ {b.PRIOR_PIXEL_BYTES} * P_max",
        f"+ {b.PAIR_BYTES} * min(N * P_max, max({b.MIN_PAIRS_PER_GAUSSIAN} * N, "
        f"{b.PAIRS_PER_PIXEL} * P_max))",
        f"colour = N * {b.COLOUR_GAUSSIAN_BYTES} + {b.TARGET_PIXEL_BYTES} * P_max",
        f"+ {b.COLOUR_PAIR_BYTES} * min(2^{b.COLOUR_MAX_PAIRS.bit_length() - 1}, N * P_max)",
        "gscodec's default is 16 GiB",
    ):
        assert text in spec, text
    # the rules it replaces are gone
    assert "64 * file_length" not in spec and "R > 64" not in spec
