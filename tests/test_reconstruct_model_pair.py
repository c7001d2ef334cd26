"""Two half maps' reference models side by side (reconstruct.model_pair): the same maps as one after the other."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_reconstruct_abinitio import SAMPLING, _cuboctahedron

from tumblebench.analysis.model import simulate_map
from tumblebench.analysis.reference import atom_reference
from tumblebench.reconstruct.model_pair import ReferenceModelPair, model_pair
from tumblebench.simulator.errors import TumblebenchError


def _maps() -> list[np.ndarray]:
    n = 40
    pos = _cuboctahedron() + n // 2 * SAMPLING
    clean = simulate_map(pos, (n, n, n), SAMPLING, "Pt", 0.02, 0.9)
    noisy = clean + 0.05 * clean.std() * np.random.default_rng(3).standard_normal(clean.shape).astype(np.float32)
    return [clean, noisy, np.zeros_like(clean)]


def test_models_built_side_by_side_are_those_built_one_after_the_other() -> None:
    maps = _maps()
    alone = model_pair(atom_reference, maps, SAMPLING)  # a plain builder: one after the other, here
    assert isinstance(alone[2], TumblebenchError)  # an empty map holds no atoms
    with ReferenceModelPair(atom_reference) as pair:
        side = pair.pair(maps[:2], SAMPLING) + pair.pair(maps[1:], SAMPLING)  # the first of each in the helper
        assert np.array_equal(pair(maps[0], SAMPLING), alone[0])  # a single call runs here
    for got, want in zip(side, [alone[0], alone[1], alone[1], alone[2]], strict=True):
        if isinstance(want, TumblebenchError):
            assert isinstance(got, TumblebenchError) and str(got) == str(want)
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_a_builder_that_cannot_be_pickled_is_built_here() -> None:
    maps = _maps()[:2]
    with ReferenceModelPair(lambda v, s: 2 * v) as pair:  # a lambda cannot reach a helper process
        got = pair.pair(maps, SAMPLING)
    assert all(np.array_equal(g, 2 * m) for g, m in zip(got, maps, strict=True))


def _pid_map(vol: np.ndarray, sampling: float) -> np.ndarray:
    return np.full_like(vol, os.getpid())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: the pair is built here")
def test_the_first_map_of_a_pair_is_built_in_the_helper_process() -> None:
    maps = _maps()[:2]
    with ReferenceModelPair(_pid_map) as pair:
        first, second = pair.pair(maps, SAMPLING)
        again, _ = pair.pair(maps, SAMPLING)
    assert first.flat[0] != os.getpid() and second.flat[0] == os.getpid()
    assert again.flat[0] == first.flat[0]  # one helper for the whole reconstruction


def _dies_in_helper(vol: np.ndarray, sampling: float) -> np.ndarray:
    if str(os.getpid()) != os.environ["TB_TEST_PARENT_PID"]:
        os._exit(3)  # the helper process dies, as one started by a script without a __main__ guard does
    return 2 * vol


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: the pair is built here")
def test_a_helper_that_dies_leaves_the_pair_built_here(monkeypatch, caplog) -> None:
    monkeypatch.setenv("TB_TEST_PARENT_PID", str(os.getpid()))
    maps = _maps()[:2]
    with ReferenceModelPair(_dies_in_helper) as pair:
        first = pair.pair(maps, SAMPLING)
        second = pair.pair(maps, SAMPLING)  # no second helper
    for got in (first, second):
        assert all(np.array_equal(g, 2 * m) for g, m in zip(got, maps, strict=True))
    assert sum("helper process failed" in r.message for r in caplog.records) == 1
