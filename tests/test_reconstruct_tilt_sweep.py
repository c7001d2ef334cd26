"""Each frame's tilt out of the image plane re-chosen along the series (reconstruct.tilt_sweep)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from test_reconstruct_mate_runs import brownian_projections

from tumblebench.reconstruct.tilt_sweep import tilt_grid, tilt_sweep
from tumblebench.simulator.orientation import rotation_angle_deg


@settings(max_examples=25, deadline=None)
@given(st.floats(1.0, 30.0), st.floats(0.5, 10.0))
def test_the_tilt_grid_holds_every_in_plane_tilt_of_the_disc_once_the_identity_first(radius: float,
                                                                                     step: float) -> None:
    """Rotation axes in the image plane (the beam along z is never the axis), angles within the radius, the grid's
    points within the disc each once, the untilted pose first."""
    d = tilt_grid(radius, step)
    rv = Rotation.from_matrix(d).as_rotvec()
    assert np.allclose(d[0], np.eye(3))
    assert np.allclose(rv[:, 2], 0.0, atol=1e-12)
    assert np.all(np.degrees(np.linalg.norm(rv, axis=1)) <= radius + 1e-6)
    k = int(np.floor(radius / step))
    g = np.arange(-k, k + 1) * step
    assert len(d) == int(np.sum(np.hypot(*np.meshgrid(g, g)) <= radius + 1e-9))
    assert len({tuple(np.round(np.degrees(v[:2]), 6)) for v in rv}) == len(d)
    # a tilt turns the beam direction in the particle frame by its own angle
    beam = np.einsum("kij,j->ki", d, [0.0, 0.0, 1.0])
    assert np.allclose(np.degrees(np.arccos(np.clip(beam[:, 2], -1, 1))), np.degrees(np.linalg.norm(rv, axis=1)),
                       atol=1e-6)


def test_a_tilted_run_goes_back_and_nothing_else_moves() -> None:
    """Noisy projections (SNR 1) of the default particle's map along a Brownian path (4° steps); frames 120–179
    start tilted by 12° about the image's x axis, the rest at their true poses: against the true map as both
    half maps the run goes back to the true poses and the other frames stay."""
    sampling, m = 0.45, 300
    vol, true, frames = brownian_projections(m, 72, sampling)
    start = true.copy()
    start[120:180] = np.einsum("ij,njk->nik", Rotation.from_rotvec([np.radians(12.0), 0, 0]).as_matrix(),
                               true[120:180])
    poses, shifts, tilted = tilt_sweep(frames, sampling, 25.0, start, np.zeros((m, 2)), None, (vol, vol), 18.0, 3.0,
                                       5.0, 0.3)
    err = rotation_angle_deg(poses, true)
    assert np.mean(err[120:180] < 1e-6) >= 0.9  # the run back at the grid point of its true pose
    rest = np.r_[0:120, 180:m]
    assert np.mean(err[rest] < 1e-6) >= 0.95
    assert np.all(err < 3.0 * np.sqrt(2) + 1e-6)  # no frame farther than the grid's diagonal step
    assert tilted == int(np.count_nonzero(rotation_angle_deg(poses, start) > 1e-6))
    assert np.all(np.abs(shifts) <= 1.2 / sampling + 1e-9)  # within the labelling's shift search
