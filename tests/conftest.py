"""Shared fixtures: small synthetic scenes (tests never read ../shared/data)."""

from __future__ import annotations

import pytest

from gscodec import Gaussians, write_ply
from gscodec.synthetic import make_scene


@pytest.fixture(scope="session")
def scene_sh3() -> Gaussians:
    return make_scene(6000, sh_degree=3, seed=11)


@pytest.fixture(scope="session")
def scene_sh0() -> Gaussians:
    return make_scene(6000, sh_degree=0, seed=12)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (small renders are faster so, and much faster when
    other processes share the cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def ply_path(tmp_path, scene_sh3):
    path = tmp_path / "scene.ply"
    write_ply(path, scene_sh3)
    return path


@pytest.fixture(autouse=True)
def small_pruning_views(monkeypatch):
    """Importance pruning (preset 1 on scenes of 4096 Gaussians or more) renders its views at a
    few dozen pixels in the tests: their scenes are small, the suite stays fast."""
    from gscodec import encoder

    monkeypatch.setattr(encoder, "PRUNE_SIZE", 48)
    monkeypatch.setattr(encoder, "PRUNE_CHECK_SIZE", 64)
