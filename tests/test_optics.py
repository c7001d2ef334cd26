"""Optics: wavelength, interaction parameter, CTF sign convention, zeros, envelopes."""

from dataclasses import replace

import numpy as np
import pytest

from tumblebench.simulator.config import from_dict
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.grid import frequencies
from tumblebench.simulator.optics import (
    LensTransfer,
    OpticsConfig,
    ctf_2d,
    first_zero,
    interaction_parameter,
    wave_transfer,
    wavelength,
)

PLAIN = OpticsConfig(defocus_A=500.0, cs_mm=0.0, c5_mm=0.0, aperture_mrad=0.0, focal_spread_A=0.0,
                     convergence_mrad=0.0)


def test_wavelength_and_sigma_at_300kv():
    assert wavelength(300) == pytest.approx(0.019687, abs=2e-6)
    assert interaction_parameter(300) == pytest.approx(6.526e-4, rel=1e-3)
    assert wavelength(200) == pytest.approx(0.025079, abs=2e-6)


def test_ctf_zeros_at_analytic_positions():
    """With Cs = 0: γ = πλΔf q², zeros of sin γ at q_n = √(n/(λΔf))."""
    lam = wavelength(300)
    q1 = first_zero(PLAIN)
    assert q1 == pytest.approx(np.sqrt(1 / (lam * PLAIN.defocus_A)), rel=1e-6)
    n = 256
    p = 0.1
    ctf = ctf_2d((n, n), p, PLAIN)
    q = np.fft.fftfreq(n, p)[1:40]  # up to 1.5 Å⁻¹, where zeros are further apart than the sampling
    row = ctf[0, 1:40]
    sign_changes = q[1:][np.sign(row[1:]) != np.sign(row[:-1])]
    expected = np.sqrt(np.arange(1, 100) / (lam * PLAIN.defocus_A))
    expected = expected[expected < q.max()]
    assert len(sign_changes) == len(expected)
    assert np.allclose(sign_changes, expected, atol=q[1])


def test_scherzer_point_resolution():
    o = OpticsConfig(cs_mm=1.0, c5_mm=0.0)
    lam = wavelength(300)
    assert o.scherzer_defocus() == pytest.approx(np.sqrt(4 / 3 * 1e7 * lam))
    # first zero at Scherzer: q0² = 2Δf/(Csλ²) ⇒ 1/q0 = (3/16)^{1/4}·... = 0.6580 Cs^{1/4} λ^{3/4}
    assert o.scherzer_point_resolution() == pytest.approx((3 / 16) ** 0.25 * (1e7) ** 0.25 * lam**0.75, rel=1e-6)
    assert (3 / 16) ** 0.25 == pytest.approx(0.658, abs=1e-3)


def test_relion_sign_convention():
    """Underfocus (defocus > 0, RELION): the raw-frame CTF is negative at low frequency, so a weak phase
    object's atom is dark (RELION's own CTF is the negative, for contrast-inverted images). Overfocus flips it."""
    ctf = ctf_2d((64, 64), 0.5, PLAIN)
    assert ctf[0, 2] < 0
    over = ctf_2d((64, 64), 0.5, replace(PLAIN, defocus_A=-500.0))
    assert over[0, 2] > 0
    amp = ctf_2d((64, 64), 0.5, PLAIN, amplitude_contrast=0.1)
    assert amp[0, 0] == pytest.approx(-0.1)


def test_astigmatism_axes_follow_relion():
    """DefocusU = Δf + A/2 lies along the astigmatism angle: the first zero is closer to the origin there."""
    o = replace(PLAIN, astigmatism_A=200.0, astigmatism_angle_deg=90.0)
    n, p = 256, 0.1
    ctf = ctf_2d((n, n), p, o)
    along_y = ctf[1 : n // 2, 0]
    along_x = ctf[0, 1 : n // 2]
    zy = np.argmax(np.sign(along_y[1:]) != np.sign(along_y[:-1]))
    zx = np.argmax(np.sign(along_x[1:]) != np.sign(along_x[:-1]))
    assert zy < zx


def test_envelopes_and_aperture():
    o = replace(PLAIN, focal_spread_A=30.0, aperture_mrad=20.0)
    lam = wavelength(300)
    n, p = 128, 0.2
    h = wave_transfer((n, n), p, o)
    qy, qx = frequencies((n, n), p)
    q = np.sqrt(qx**2 + qy**2)
    inside = q <= 0.02 / lam
    assert np.all(np.abs(h[~inside]) == 0)
    et = np.exp(-0.5 * (np.pi * lam * 30.0) ** 2 * q**4)
    assert np.allclose(np.abs(h[inside]), et[inside])
    # spatial envelope: at Δf, Cs = 0 it is exp(−(παΔf q)²)
    o2 = replace(PLAIN, convergence_mrad=0.5)
    h2 = wave_transfer((n, n), p, o2)
    assert np.allclose(np.abs(h2), np.exp(-((np.pi * 0.5e-3 * 500.0 * q) ** 2)), atol=1e-12)


def test_lens_transfer_cache_matches_direct():
    o = OpticsConfig(astigmatism_A=30.0, astigmatism_angle_deg=25.0, c5_mm=3.0, convergence_mrad=0.3)
    qy, qx = frequencies((48, 40), 0.3)
    lt = LensTransfer(qy, qx, o)
    for df in (-80.0, 0.0, 120.0):
        assert np.allclose(lt(df, np.complex128), wave_transfer((48, 40), 0.3, o, defocus_A=df), atol=1e-12)


def test_config_validation():
    with pytest.raises(TumblebenchError, match="aperture_mrad"):
        from_dict(OpticsConfig, {"aperture_mrad": -1.0}, "cfg.toml")
    with pytest.raises(TumblebenchError, match="unknown"):
        from_dict(OpticsConfig, {"defocus": 1.0}, "cfg.toml")
    assert from_dict(OpticsConfig, {"cs_mm": 0.001}, "cfg.toml").cs_mm == 0.001
