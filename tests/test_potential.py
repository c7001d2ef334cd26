"""Scattering tables and the exact Fourier-space slice potentials."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.potential import (
    FourierGrid,
    projected_potential_window,
    slice_potential_coefficients,
    slice_weights,
)
from tumblebench.simulator.scattering import (
    TABLES,
    TWO_PI_A0_E,
    available,
    form_factor,
    gaussian_coefficients,
    potential_3d,
    projected_potential,
    scattering_factor,
)

ELEMENTS = ("H", "C", "O", "Fe", "Ni", "Pd", "Ag", "Pt", "Au")


def test_facts_pt_coefficients():
    a, b = gaussian_coefficients("Pt")
    assert np.allclose(a, [0.9148, 1.8096, 3.2134, 3.2953, 1.5754])
    assert np.allclose(b, [0.2263, 1.3813, 5.3243, 17.5987, 60.0171])
    _, b6 = gaussian_coefficients("Pt", "peng6")
    assert np.allclose(b6, [0.0609, 0.5993, 3.1921, 12.5285, 49.7675])


@pytest.mark.parametrize("table", TABLES)
def test_every_table_has_the_elements(table):
    assert set(ELEMENTS) <= set(available(table))


@pytest.mark.parametrize("element", ELEMENTS)
def test_tables_agree_with_each_other(element):
    """Independent published fits of the same scattering factor agree within a few % for 0.2 ≤ q ≤ 2 Å⁻¹
    (a transcription error in any table would show up here)."""
    q = np.linspace(0.2, 2.0, 19)
    ref = form_factor(element, q, "peng")
    for table in ("peng6", "kirkland", "lobato"):
        f = form_factor(element, q, table)
        assert np.all(np.abs(f - ref) <= 0.05 * ref + 0.003), (table, element)


def test_scattering_factor_is_form_factor_at_twice_s():
    s = np.array([0.1, 0.5, 1.0])
    assert np.allclose(scattering_factor("O", s, "kirkland"), form_factor("O", 2 * s, "kirkland"))


def test_projected_potential_is_integral_of_3d_potential():
    for r in (0.2, 0.5, 1.0, 2.0):
        num = 2 * quad(lambda z, r=r: potential_3d("Pt", np.hypot(r, z)), 0, 40, limit=200)[0]
        assert num == pytest.approx(projected_potential("Pt", r), rel=1e-6)


def test_unknown_element_and_table():
    with pytest.raises(TumblebenchError, match="Xx"):
        form_factor("Xx", 0.5)
    with pytest.raises(TumblebenchError, match="unknown"):
        form_factor("Pt", 0.5, "nope")
    with pytest.raises(TumblebenchError, match="not a sum of Gaussians"):
        gaussian_coefficients("Pt", "lobato")


def test_window_potential_matches_analytic_and_integral():
    p, n = 0.05, 256
    v = projected_potential_window(np.array([[6.4, 6.4, 0.0]]), "Pt", (n, n), p, 1 / (2 * p))[0]
    assert v.sum() * p * p == pytest.approx(TWO_PI_A0_E * form_factor("Pt", 0.0), rel=1e-5)
    r = np.array([0.5, 1.0, 1.5])
    idx = np.round((6.4 + r) / p).astype(int)
    assert np.allclose(v[round(6.4 / p), idx], projected_potential("Pt", r), rtol=0.03)


@settings(max_examples=15, deadline=None)
@given(z=st.floats(-3.0, 3.0), dz=st.floats(0.7, 3.0))
def test_exact_slices_sum_to_projection(z, dz):
    grid = FourierGrid((48, 48), 0.25, 1.3)
    pos = np.array([[5.0, 6.0, z], [2.0, 3.0, z + 0.4]])
    whole = slice_potential_coefficients(pos, ["Pt", "O"], grid)
    edges = np.concatenate([[-np.inf], np.arange(-2.0, 2.0, dz)[1:], [np.inf]])
    parts = slice_potential_coefficients(pos, ["Pt", "O"], grid, edges)
    assert np.allclose(parts.sum(axis=0), whole[0], rtol=1e-4, atol=1e-3 * np.abs(whole).max())


def test_slice_weights_and_centre_slicing():
    w = slice_weights(np.array([0.0]), np.array([0.5]), np.array([-np.inf, 0.0, np.inf]))
    assert np.allclose(w, [[0.5, 0.5]])
    grid = FourierGrid((32, 32), 0.3, 1.0)
    pos = np.array([[4.0, 4.0, 0.9]])
    c = slice_potential_coefficients(pos, "C", grid, np.array([-5.0, 1.0, 5.0]), table="lobato", slicing="centre")
    assert np.abs(c[1]).max() == 0 and np.abs(c[0]).max() > 0
    with pytest.raises(TumblebenchError, match="Gaussian"):
        slice_potential_coefficients(pos, "C", grid, None, table="kirkland", slicing="exact")


def test_subpixel_shift_is_exact():
    """The Fourier potential of an atom shifted by half a pixel is the shifted band-limited function."""
    grid = FourierGrid((64, 64), 0.3, 1.0)
    a = grid.to_real(slice_potential_coefficients(np.array([[9.6, 9.6, 0.0]]), "Pt", grid))[0]
    b = grid.to_real(slice_potential_coefficients(np.array([[9.6 + 0.15, 9.6, 0.0]]), "Pt", grid))[0]
    assert a.sum() == pytest.approx(b.sum(), rel=1e-5)
    fa, fb = np.fft.rfft2(a), np.fft.rfft2(b)
    ratio = fb[0, 1:20] / fa[0, 1:20]
    k = np.arange(1, 20)
    assert np.allclose(ratio, np.exp(-2j * np.pi * k / (64 * 0.3) * 0.15), atol=1e-4)


@pytest.mark.parametrize("shape, pixel, q_max", [((48, 48), 0.12, 1 / 0.24), ((45, 52), 0.13, 2.5),
                                                 ((40, 40), 0.2, 1.0)])
def test_exact_slice_coefficients_equal_the_direct_fourier_sum(shape, pixel, q_max):
    """The fast path (per-Gaussian frequency boxes, real products for qy ≥ 0 plus conjugate rows) equals the
    direct sum Σ_atoms Σ_gaussians w·a·exp(−b q²/4)·exp(−2πi q·r) on every band-limited frequency."""
    rng = np.random.default_rng(5)
    pos = np.column_stack([rng.uniform(0, shape[1] * pixel, 7), rng.uniform(0, shape[0] * pixel, 7),
                           rng.uniform(-3, 3, 7)])
    syms = ["Pt", "Pt", "O", "C", "Pt", "O", "Pt"]
    edges = np.array([-np.inf, -1.0, 1.0, np.inf])
    grid = FourierGrid(shape, pixel, q_max)
    got = slice_potential_coefficients(pos, syms, grid, edges)
    qy, qx = grid.qy[:, None], grid.qx[None, :]
    want = np.zeros(got.shape, dtype=np.complex128)
    for (x, y, z), el in zip(pos, syms, strict=True):
        a, b = gaussian_coefficients(el)
        w = slice_weights(np.full(a.size, z), np.sqrt(b / (8 * np.pi**2)), edges)  # (gaussians, slices)
        phase = np.exp(-2j * np.pi * (qx * x + qy * y))
        for g in range(a.size):
            want += w[g][:, None, None] * a[g] * np.exp(-0.25 * b[g] * (qx**2 + qy**2)) * phase
    want *= TWO_PI_A0_E * grid.norm * grid.mask
    assert np.abs(got - want).max() < 2e-6 * np.abs(want).max()
