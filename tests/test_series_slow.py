"""A realistic series (default particle and scenario, multislice, 400 frames): run with ``pytest -m slow``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.mrc import open_stack, read_volume
from tumblebench.simulator.orientation import rotation_angle_deg
from tumblebench.simulator.series import SeriesConfig, simulate_series
from tumblebench.simulator.star import read_star, star_poses


@pytest.mark.slow
def test_default_series_400_frames(tmp_path):
    nc = build_preset("default")
    cfg = SeriesConfig()
    cfg = dataclasses.replace(cfg, acquisition=dataclasses.replace(cfg.acquisition, n_frames=400))
    out = simulate_series(nc, cfg, 0, tmp_path / "s", progress=False)
    frames, ps = open_stack(out / "frames.mrcs")
    assert frames.shape == (400, 192, 192) and ps == pytest.approx(0.358, abs=1e-4)
    per_px = cfg.acquisition.dose_per_frame * 0.358**2
    # the mean count per pixel is the dose per pixel (minus the little the liquid and aperture take away)
    mean = float(frames[::20].mean())
    assert 0.9 * per_px < mean < 1.02 * per_px
    _, particles = read_star(out / "frames.star")
    poses = star_poses(particles)
    steps = rotation_angle_deg(poses[1:], poses[:-1])
    assert 2.0 < np.sqrt(np.mean(steps**2)) < 8.0  # successive frames differ by a few degrees
    assert rotation_angle_deg(poses[0], poses[-1]) > 20.0  # and the particle tumbles over the series
    thick = particles["tbLiquidThickness"].to_numpy()
    assert thick[0] > thick[-1]
    truth, _ = read_volume(out / "truth_map.mrc")
    z, y, x = np.indices(truth.shape)
    w = np.clip(truth, 0, None)
    centroid = [(w * a).sum() / w.sum() for a in (x, y, z)]
    assert np.allclose(centroid, 64, atol=0.5)
