"""Counting detector: Poisson statistics from the dose, MTF, bad input."""

import numpy as np
import pytest

from tumblebench.simulator.detector import DetectorConfig, detect, mtf_2d
from tumblebench.simulator.errors import TumblebenchError


@pytest.mark.parametrize("mtf", ["none", "sinc", "sinc-gauss"])
def test_noise_mean_and_variance_equal_dose_times_pixel_area(mtf):
    rng = np.random.default_rng(3)
    dose, p = 66.3, 0.358
    counts = detect(np.ones((256, 256)), dose, p, rng, DetectorConfig(mtf=mtf))
    lam = dose * p * p
    assert counts.dtype == np.float32
    assert counts.mean() == pytest.approx(lam, rel=0.01)
    assert counts.var() == pytest.approx(lam, rel=0.03)


def test_mtf_attenuates_signal_not_noise():
    cfg = DetectorConfig(mtf="sinc")
    m = mtf_2d((64, 64), cfg)
    assert m[0, 0] == 1.0
    assert m[0, 32] == pytest.approx(2 / np.pi)  # sinc at Nyquist
    img = 1 + 0.5 * np.cos(np.pi * np.arange(64))[None, :] * np.ones((64, 1))  # Nyquist stripes
    rng = np.random.default_rng(0)
    c = detect(img, 1e6, 1.0, rng, cfg) / 1e6
    assert np.abs(c[:, ::2].mean() - c[:, 1::2].mean()) == pytest.approx(2 * 0.5 * 2 / np.pi, rel=0.01)


def test_deterministic_and_read_noise():
    img = np.ones((32, 32))
    a = detect(img, 10.0, 0.5, np.random.default_rng(7), DetectorConfig(read_noise=1.0, correlated_noise=0.5))
    b = detect(img, 10.0, 0.5, np.random.default_rng(7), DetectorConfig(read_noise=1.0, correlated_noise=0.5))
    assert a.tobytes() == b.tobytes()
    assert a.var() > 10.0 * 0.25 + 0.9


@pytest.mark.parametrize("dose", [0.0, -1.0, np.nan])
def test_bad_dose(dose):
    with pytest.raises(TumblebenchError, match="dose"):
        detect(np.ones((8, 8)), dose, 0.358, np.random.default_rng(0))


def test_bad_config():
    with pytest.raises(TumblebenchError, match=r"detector\.mtf"):
        detect(np.ones((8, 8)), 1.0, 0.358, np.random.default_rng(0), DetectorConfig(mtf="gauss"))
