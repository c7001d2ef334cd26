"""Hungarian matching of estimated and true atoms (validation.matching)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.matching import match_atoms


def _lattice(n: int) -> np.ndarray:
    g = np.stack(np.meshgrid(*([np.arange(n)] * 3), indexing="ij"), -1).reshape(-1, 3)
    return g * 2.77


@settings(max_examples=20, deadline=None)
@given(seed=hs.integers(0, 10_000), n_extra=hs.integers(0, 5), n_missing=hs.integers(0, 5))
def test_recall_precision_rmsd(seed, n_extra, n_missing):
    rng = np.random.default_rng(seed)
    true = _lattice(4)
    est = true + rng.normal(0, 0.05, true.shape)
    est = est[n_missing:]
    extra = rng.uniform(-20, -10, (n_extra, 3))  # far from every true atom
    est = np.concatenate([est, extra])
    perm = rng.permutation(len(est))
    m = match_atoms(est[perm], true)
    assert m.recall == pytest.approx((len(true) - n_missing) / len(true))
    assert m.precision == pytest.approx((len(true) - n_missing) / len(est))
    d = np.linalg.norm(est[perm][m.pairs[:, 0]] - true[m.pairs[:, 1]], axis=1)
    assert m.rmsd_pm == pytest.approx(100 * np.sqrt(np.mean(d**2)))
    assert len(np.unique(m.pairs[:, 0])) == len(m.pairs) == len(np.unique(m.pairs[:, 1]))
    assert len(m.unmatched_est) == n_extra and len(m.unmatched_true) == n_missing


def test_assignment_is_optimal_not_greedy():
    # greedy nearest-first would pair est0 with true1 (0.9) and leave est1 (1.5 from true1) unmatched
    true = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    est = np.array([[0.1 + 1.0 - 0.2, 0, 0], [2.5, 0, 0]])
    m = match_atoms(est, true, max_dist=1.76)
    assert m.recall == 1.0 and m.precision == 1.0


def test_max_dist_and_empty():
    true = np.zeros((1, 3))
    assert match_atoms(np.array([[1.8, 0, 0]]), true).recall == 0.0
    assert match_atoms(np.array([[1.7, 0, 0]]), true).recall == 1.0
    m = match_atoms(np.zeros((0, 3)), true)
    assert m.recall == 0.0 and m.precision == 0.0 and np.isnan(m.rmsd_pm)
    with pytest.raises(TumblebenchError):
        match_atoms(np.array([[np.nan, 0, 0]]), true)
