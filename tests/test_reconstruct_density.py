"""Density modification: it restores a shell of missing Fourier data from the envelope and positivity, keeps
the measured shells, cannot turn noise into a structure, commutes with rotations of the grid, and leaves a map
with an implausible envelope alone (the [density] TOML check is in test_reconstruct_pipeline.py)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.fft
from ase.cluster import Octahedron
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from tumblebench.reconstruct.density import DensityConfig, density_modified_map, envelope_mask, modify_density
from tumblebench.reconstruct.fsc import fsc
from tumblebench.simulator.grid import shells
from tumblebench.simulator.truth_map import render_truth_map

SAMPLING = 0.358
BOX = 80


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    at = Octahedron("Pt", 6, 2)
    pos = at.positions - at.positions.mean(axis=0)
    particle = types.SimpleNamespace(positions=pos, symbols=["Pt"] * len(pos),
                                     U=np.full(len(pos), 0.005)[:, None, None] * np.eye(3)[None])
    return render_truth_map(particle, BOX, SAMPLING, 0.8)


def _band(shape: tuple[int, ...], lo_A: float, hi_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Shell indices of an rfft grid and the boolean shells (per index) between ``hi_A`` and ``lo_A`` Å."""
    n = shape[0]
    k = np.arange(n // 2 + 1) / (n * SAMPLING)
    return shells(shape, rfft=True), (k > 1 / hi_A) & (k < 1 / lo_A)


def test_a_shell_without_data_is_restored(truth: np.ndarray) -> None:
    """A CTF zero removes the 4.5–8 Å shells (FSC weight 0 there): the envelope and positivity bring them back."""
    sh, band = _band(truth.shape, 4.5, 8.0)
    ft = scipy.fft.rfftn(truth)
    ft[np.isin(sh, np.flatnonzero(band))] = 0
    damaged = scipy.fft.irfftn(ft, truth.shape)
    weights = np.where(band, 0.0, 0.95)
    mask = envelope_mask(damaged, SAMPLING)
    fixed = modify_density(damaged, weights, mask, iterations=3)
    in_band = np.isin(sh, np.flatnonzero(band))
    assert np.abs(scipy.fft.rfftn(damaged)[in_band]).max() < 1e-6 * np.abs(ft).max()  # nothing was there
    freq, after = fsc(fixed, truth, SAMPLING)
    assert after[band].min() > 0.8
    measured = (freq > 0) & (freq < 1 / 1.0) & ~band
    assert after[measured].min() > 0.95  # the data's shells are kept


def test_noise_does_not_become_a_structure(truth: np.ndarray) -> None:
    """Noise in a sphere with no reliable shell (FSC 0): the constraints make a positive blob, not atoms."""
    rng = np.random.default_rng(4)
    n = truth.shape[0]
    zz, yy, xx = np.mgrid[:n, :n, :n] - n // 2
    sphere = ndimage.gaussian_filter((np.sqrt(zz**2 + yy**2 + xx**2) < 0.3 * n).astype(float), 1.0 / SAMPLING)
    noise = rng.normal(size=truth.shape) * sphere
    out = modify_density(noise, np.zeros(n // 2 + 1), sphere, iterations=5)
    freq, c = fsc(out, truth, SAMPLING)
    atomic = (freq > 1 / 2.0) & (freq < 1 / 1.0)  # the shells where atoms show (a sphere's edge rings below)
    assert np.abs(c[atomic]).max() < 0.1
    # the positive control: the truth itself, noisy, with its measured shells, does correlate there
    modified = modify_density(truth + 0.05 * truth.max() * noise, np.full(n // 2 + 1, 0.9), sphere, 5)
    _, ok = fsc(modified, truth, SAMPLING)
    assert ok[atomic].min() > 0.5


@settings(max_examples=6, deadline=None)
@given(axes=st.sampled_from([(0, 1), (0, 2), (1, 2)]), k=st.integers(1, 3), seed=st.integers(0, 1000))
def test_density_modification_commutes_with_grid_rotations(truth: np.ndarray, axes, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vol = truth[8:-8, 8:-8, 8:-8] + 0.05 * truth.max() * rng.normal(size=(BOX - 16,) * 3)
    weights = rng.uniform(0, 1, (BOX - 16) // 2 + 1)
    cfg = DensityConfig()
    a = np.rot90(modify_density(vol, weights, envelope_mask(vol, SAMPLING, cfg), 3), k, axes)
    rv = np.ascontiguousarray(np.rot90(vol, k, axes))
    b = modify_density(rv, weights, envelope_mask(rv, SAMPLING, cfg), 3)
    assert np.allclose(a, b, atol=1e-4 * np.abs(a).max())


def test_implausible_envelope_leaves_the_map_alone(truth: np.ndarray) -> None:
    """An envelope far smaller than the particle's estimated sphere: the map is returned as it was."""
    out, info = density_modified_map(truth, np.full(BOX // 2 + 1, 0.9), SAMPLING, 60.0, DensityConfig())
    assert not info["applied"] and info["envelope_sphere_fraction"] < 0.25
    assert np.array_equal(out, truth.astype(np.float32))
    out, info = density_modified_map(truth, np.full(BOX // 2 + 1, 0.9), SAMPLING, 14.0, DensityConfig())
    assert info["applied"] and 0.25 < info["envelope_sphere_fraction"] < 4
