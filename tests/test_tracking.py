"""Tracking: the particle found in noisy frames, the running mean of correlation maps over successive frames."""

from __future__ import annotations

import dataclasses as dc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.reconstruct.tracking import TrackingConfig, locate, running_mean

SAMPLING = 0.358


def _faint_disc_series(seed: int, m: int = 40, n: int = 128, radius: float = 30.0, contrast: float = 0.05,
                       noise: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """A dark disc (particle) wandering ≈ 1 px per frame in white noise: (frames, true centres (x, y))."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.7, (m, 2))
    centres = n / 2 + np.cumsum(steps, axis=0) + rng.uniform(-15, 15, 2)
    yy, xx = np.mgrid[:n, :n]
    frames = np.empty((m, n, n), np.float32)
    for i, (x, y) in enumerate(centres):
        disc = np.clip(radius + 0.5 - np.hypot(xx - x, yy - y), 0, 1)
        frames[i] = 1.0 - contrast * disc + rng.normal(0, noise, (n, n))
    return frames, centres


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_running_mean_of_correlation_maps_finds_a_faint_particle_in_every_frame(seed: int) -> None:
    frames, centres = _faint_disc_series(seed)
    one = TrackingConfig(method="contrast", window_frames=1)
    five = dc.replace(one, window_frames=5)
    xy1, z1 = locate(frames, SAMPLING, 30.0, -1.0, one)
    xy5, z5 = locate(frames, SAMPLING, 30.0, -1.0, five)
    err1 = np.hypot(*(xy1 - centres).T)
    err5 = np.hypot(*(xy5 - centres).T)
    # single frames: the peak is often below the loss threshold; five frames: √5 more signal-to-noise
    assert np.median(z5) > 1.3 * np.median(z1)
    assert np.mean(z5 >= one.min_peak_z) > np.mean(z1 >= one.min_peak_z)
    assert np.mean(z5 >= one.min_peak_z) >= 0.9
    # the particle moves ≈ 1 px per frame, so the windowed peak stays on the frame's own position
    assert np.median(err5) < 2.0
    assert np.median(err5) < np.median(err1)


def test_running_mean_leaves_invalid_maps_out() -> None:
    maps = np.ones((7, 3, 3), np.float32)
    maps[3] = 1e6  # a bad frame (e.g. a detector glitch) in the middle
    valid = np.ones(7, bool)
    valid[3] = False
    out = running_mean(maps, valid, 5)
    np.testing.assert_allclose(out, 1.0, rtol=1e-5)
    # at the ends fewer maps enter, still a mean
    ramp = np.arange(5, dtype=np.float32)[:, None] * np.ones((5, 2), np.float32)
    r = running_mean(ramp, np.ones(5, bool), 3)
    np.testing.assert_allclose(r[:, 0], [0.5, 1.0, 2.0, 3.0, 3.5], rtol=1e-5)


def test_window_frames_must_be_odd() -> None:
    import pytest

    from tumblebench.simulator.errors import TumblebenchError

    with pytest.raises(TumblebenchError, match="window_frames"):
        TrackingConfig(window_frames=4).validate()
