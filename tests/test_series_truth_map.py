"""The truth map: placement, exact integral, alias-free band limit, occupancy, bad input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.fft

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.scattering import TWO_PI_A0_E, gaussian_coefficients
from tumblebench.simulator.truth_map import render_truth_map


@dataclass
class _Atoms:  # the three attributes of a Nanocrystal that the truth map uses
    positions: np.ndarray
    symbols: list[str]
    U: np.ndarray


def _particle(positions, u=0.006):
    positions = np.asarray(positions, float)
    n = positions.shape[0]
    return _Atoms(positions, ["Pt"] * n, np.tile(np.eye(3) * u, (n, 1, 1)))


def test_single_atom_at_box_centre_with_exact_integral():
    n, p = 48, 0.358
    vol = render_truth_map(_particle([[0.0, 0.0, 0.0]]), n, p, 0.8)
    assert vol.shape == (n, n, n) and vol.dtype == np.float32
    assert np.unravel_index(np.argmax(vol), vol.shape) == (n // 2, n // 2, n // 2)
    a, _ = gaussian_coefficients("Pt")
    # band-limiting keeps k = 0: the integral of the potential is 2πa₀e Σ aᵢ (V·Å³)
    assert vol.sum(dtype=np.float64) * p**3 == pytest.approx(TWO_PI_A0_E * a.sum(), rel=1e-4)


def test_band_limited_and_converged_in_oversampling():
    pts = np.array([[0, 0, 0], [2.77, 0.3, -0.4], [-1.0, 2.5, 1.2], [0.5, -2.0, 2.2]])
    parts = _particle(pts - pts.mean(axis=0))
    res = 0.9
    v2 = render_truth_map(parts, 48, 0.358, res, oversample=2)
    v3 = render_truth_map(parts, 48, 0.358, res, oversample=3)
    assert np.abs(v2 - v3).max() < 1e-3 * v3.max()
    ft = np.abs(scipy.fft.fftn(v2))
    k = scipy.fft.fftfreq(48, d=0.358)
    kk = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    assert ft[kk > 1.0 / res + 1e-9].max() < 1e-4 * ft.max()


def test_centroid_is_box_centre_and_axes_are_xyz():
    # two atoms along +x and +y only: the centroid at the centre, the atoms at x / y offsets, z index first
    p = 0.3
    pts = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    vol = render_truth_map(_particle(pts), 64, p, 0.7)
    c = 64 // 2
    centroid = pts.mean(axis=0)
    for atom in pts:
        idx = np.round((atom - centroid) / p).astype(int) + c  # (ix, iy, iz)
        sl = vol[idx[2] - 1 : idx[2] + 2, idx[1] - 1 : idx[1] + 2, idx[0] - 1 : idx[0] + 2]
        assert sl.max() == pytest.approx(vol.max(), rel=0.15)


def test_occupancy_weights_the_atoms():
    pts = np.array([[-3.0, 0, 0], [3.0, 0, 0]])
    full = render_truth_map(_particle(pts), 48, 0.358, 0.8)
    half = render_truth_map(_particle(pts), 48, 0.358, 0.8, occupancy=np.array([1.0, 0.5]))
    assert half.sum() == pytest.approx(0.75 * full.sum(), rel=1e-4)


def test_bad_input_is_one_clear_error():
    with pytest.raises(TumblebenchError, match="too coarse"):
        render_truth_map(_particle([[0.0, 0, 0]]), 32, 0.5, 0.9)
    with pytest.raises(TumblebenchError, match="does not fit"):
        render_truth_map(_particle([[-10.0, 0, 0], [10.0, 0, 0]]), 32, 0.358, 0.8)
