"""Projection mode, the liquid cell, and the Imager's input checks."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.simulator.config import from_dict
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.imaging import Imager, ImagingConfig
from tumblebench.simulator.liquid_cell import LiquidCellConfig, graphene_positions
from tumblebench.simulator.optics import OpticsConfig
from tumblebench.simulator.orientation import pose_matrix, to_lab
from tumblebench.simulator.scattering import TWO_PI_A0_E, form_factor

NO_CELL = LiquidCellConfig(enabled=False)
PROJ = ImagingConfig(mode="projection", liquid_cell=NO_CELL)


def test_single_atom_lands_where_the_truth_says():
    """An atom at particle-frame r, pose (rot, tilt, psi), origin (ox, oy): its image peak is at the pixel
    (row, col) = (ny//2 + y_lab/p, nx//2 + x_lab/p) with r_lab = A·r − origin (simulator.orientation)."""
    p, n = 0.358, 96
    r_particle = np.array([[3.58, -1.79, 2.0]])
    a = pose_matrix(90.0, 90.0, 0.0)
    lab = to_lab(r_particle, a, origin_xy=(1.432, -2.148))
    img = Imager(PROJ, (n, n), p).intensity(lab[None], "Pt")
    row, col = np.unravel_index(np.argmax(img), img.shape)
    assert (row, col) == (n // 2 + round(lab[0, 1] / p), n // 2 + round(lab[0, 0] / p))
    # and an atom at the origin images at the box centre
    img0 = Imager(PROJ, (n, n), p).intensity(np.zeros((1, 1, 3)), "Pt")
    assert np.unravel_index(np.argmax(img0), img0.shape) == (n // 2, n // 2)


def test_projection_is_linear_with_exact_integral():
    p, n = 0.358, 64
    im = Imager(PROJ, (n, n), p)
    one = im.intensity(np.array([[[0.5, 0.2, 0.0]]]), "Pt") - 1
    sigma = im.sigma
    assert one.sum() * p * p == pytest.approx(sigma * TWO_PI_A0_E * form_factor("Pt", 0.0), rel=1e-4)
    two = im.intensity(np.array([[[0.5, 0.2, 0.0], [-3.0, 2.0, 5.0]]]), "Pt") - 1
    other = im.intensity(np.array([[[-3.0, 2.0, 5.0]]]), "Pt") - 1
    assert np.allclose(two, one + other, atol=1e-5)
    # band-limited at band_limit_A
    spec = np.abs(np.fft.fft2(one))
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(n, p), np.fft.fftfreq(n, p)))
    assert spec[q > 1.0001 / im.band_limit_A].max() < 1e-6 * spec.max()


def test_band_limit_is_inside_detector_nyquist():
    im = Imager(ImagingConfig(), (64, 64), 0.358)
    assert im.band_limit_A > 2 * 0.358
    assert im.band_limit_A < 0.75


def test_graphene_lattice_and_fourier_peaks():
    xy = graphene_positions((30.0, 30.0), 0.0)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert np.median(d.min(axis=1)) == pytest.approx(1.42, abs=0.01)
    cfg = ImagingConfig(mode="projection", liquid_cell=LiquidCellConfig(water=False, graphene_angles_deg=(0.0, 0.0)))
    n, p = 256, 0.358
    img = Imager(cfg, (n, n), p).intensity(np.zeros((1, 0, 3)), "Pt")
    ps = np.abs(np.fft.fft2(img - img.mean())) ** 2
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(n, p), np.fft.fftfreq(n, p)))
    for d_peak in (2.13, 1.23):
        ring = np.abs(q - 1 / d_peak) < 0.02
        away = (np.abs(q - 1 / d_peak) > 0.05) & (q < 1.3) & (q > 0.3)
        assert ps[ring].max() > 1e3 * np.median(ps[away]), d_peak


def test_liquid_background_stronger_when_thicker_and_deterministic():
    cfg = ImagingConfig(liquid_cell=LiquidCellConfig(graphene=False))
    im = Imager(cfg, (96, 96), 0.358)
    empty = np.zeros((1, 0, 3))
    thin = im.intensity(empty, "Pt", liquid_thickness_A=50.0, rng=np.random.default_rng(1))
    thick = im.intensity(empty, "Pt", liquid_thickness_A=500.0, rng=np.random.default_rng(1))
    assert np.std(thick) > 2 * np.std(thin)
    assert thick.mean() < thin.mean() < 1.0  # attenuation
    again = im.intensity(empty, "Pt", liquid_thickness_A=500.0, rng=np.random.default_rng(1))
    assert thick.tobytes() == again.tobytes()


def test_particle_contrast_weaker_in_thick_liquid():
    cfg = ImagingConfig(liquid_cell=LiquidCellConfig(graphene=False, water=False))
    im = Imager(cfg, (64, 64), 0.358)
    atom = np.zeros((1, 1, 3))
    a = im.intensity(atom, "Pt", liquid_thickness_A=0.0)
    b = im.intensity(atom, "Pt", liquid_thickness_A=1000.0)
    assert (b.max() - b.min()) < (a.max() - a.min())


def test_bad_input():
    with pytest.raises(TumblebenchError, match="does not fit"):
        Imager(PROJ, (32, 32), 0.358).intensity(np.array([[[-20.0, 0, 0], [20.0, 0, 0]]]), "Pt")
    with pytest.raises(TumblebenchError, match="Xx"):
        Imager(PROJ, (32, 32), 0.358).intensity(np.zeros((1, 1, 3)), ["Xx"])
    with pytest.raises(TumblebenchError, match="band_limit_A"):
        Imager(replace(PROJ, band_limit_A=0.5), (32, 32), 0.358)
    with pytest.raises(TumblebenchError, match="liquid thickness"):
        Imager(PROJ, (32, 32), 0.358).intensity(np.zeros((1, 1, 3)), "Pt", liquid_thickness_A=-1.0)
    with pytest.raises(TumblebenchError, match="positions"):
        Imager(PROJ, (32, 32), 0.358).intensity(np.zeros((2, 3, 2)), "Pt")
    with pytest.raises(TumblebenchError, match=r"imaging\.mode"):
        from_dict(ImagingConfig, {"mode": "holography"}, "imaging")
    with pytest.raises(TumblebenchError, match="oversampling"):
        from_dict(ImagingConfig, {"oversampling": 1.3}, "imaging")
    with pytest.raises(TumblebenchError, match="slicing"):
        from_dict(ImagingConfig, {"table": "kirkland"}, "imaging")
    cfg = from_dict(ImagingConfig, {"mode": "phase-object", "optics": {"defocus_A": 10.0},
                                    "liquid_cell": {"water": False}}, "imaging")
    assert cfg.optics.defocus_A == 10.0 and not cfg.liquid_cell.water


@settings(max_examples=8, deadline=None)
@given(di=st.integers(-5, 5), dj=st.integers(-5, 5), seed=st.integers(0, 1000))
def test_projection_shifts_with_the_atoms(di, dj, seed):
    """Moving every atom by whole pixels moves the projection image by the same pixels (periodic field)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-4, 4, size=(1, 6, 3))
    im = Imager(PROJ, (48, 48), 0.358)
    a = im.intensity(pos, "Pt")
    b = im.intensity(pos + np.array([dj * 0.358, di * 0.358, 0.0]), "Pt")
    assert np.allclose(np.roll(a, (di, dj), axis=(0, 1)), b, atol=1e-5)


def test_weak_phase_object_invisible_in_focus():
    """A single carbon atom (weak phase object) has almost no contrast with an ideal in-focus lens and clear
    contrast when defocused (the phase-contrast transfer −sin γ vanishes at γ = 0)."""
    ideal = OpticsConfig(defocus_A=0.0, cs_mm=0.0, c5_mm=0.0, focal_spread_A=0.0, convergence_mrad=0.0)
    cfg = ImagingConfig(liquid_cell=NO_CELL, optics=ideal)
    atom = np.zeros((1, 1, 3))
    focus = Imager(cfg, (48, 48), 0.358).intensity(atom, "C")
    defoc = Imager(replace(cfg, optics=replace(ideal, defocus_A=100.0)), (48, 48), 0.358).intensity(atom, "C")
    assert np.ptp(focus) < 0.05 * np.ptp(defoc)
