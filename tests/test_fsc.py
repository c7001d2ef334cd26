"""Fourier shell correlation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.reconstruct.fsc import fsc, fsc_weight, resolution_at, wiener_tau
from tumblebench.simulator.errors import TumblebenchError


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_fsc_of_map_with_itself_is_one(seed: int) -> None:
    vol = np.random.default_rng(seed).normal(size=(24, 24, 24))
    freq, c = fsc(vol, 2.5 * vol, 0.5)
    assert np.allclose(c, 1.0)
    assert freq[-1] == pytest.approx(1 / (2 * 0.5))
    assert resolution_at(freq, c, 0.5) == pytest.approx(1.0)


def test_fsc_of_independent_noise_falls_to_zero() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(48, 48, 48))
    b = rng.normal(size=(48, 48, 48))
    _, c = fsc(a, b)
    # beyond the first few shells (few voxels) each shell has hundreds of samples: |FSC| ~ 1/sqrt(N)
    assert np.abs(c[5:]).max() < 0.1
    assert abs(c[5:].mean()) < 0.02


def test_fsc_signal_plus_noise_crosses_where_snr_drops() -> None:
    """Low-pass signal + white noise: FSC is high at low frequency and low at high frequency."""
    rng = np.random.default_rng(1)
    n = 48
    sig = rng.normal(size=(n, n, n))
    ft = np.fft.rfftn(sig)
    k = np.sqrt(sum(g**2 for g in np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), np.fft.rfftfreq(n),
                                              indexing="ij", sparse=True)))
    sig = np.fft.irfftn(ft * np.exp(-((k / 0.12) ** 2)) * 20, s=(n, n, n), axes=(0, 1, 2))
    freq, c = fsc(sig + rng.normal(size=sig.shape), sig + rng.normal(size=sig.shape), 1.0)
    r = resolution_at(freq, c, 0.5)
    assert c[2] > 0.9 and c[-1] < 0.2
    assert 1 / 0.45 < r < 1 / 0.06


def test_fsc_rejects_mismatched_maps() -> None:
    with pytest.raises(TumblebenchError):
        fsc(np.zeros((8, 8, 8)), np.zeros((8, 8, 10)))


def test_filters_are_bounded() -> None:
    c = np.linspace(1, -0.2, 20)
    w = fsc_weight(c)
    assert np.all((w >= 0) & (w <= 1))
    assert np.all(np.diff(wiener_tau(c)) >= 0)
