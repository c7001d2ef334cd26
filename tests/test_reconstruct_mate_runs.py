"""Whole runs of frames moved to the lattice mate their data prefer (reconstruct.mate_runs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.lattice import domain_swap, prior_map
from tumblebench.reconstruct.mate_runs import best_segments, lattice_mates, move_runs
from tumblebench.reconstruct.projector import prepare_reference, project
from tumblebench.simulator.orientation import cubic_group, rotation_angle_deg


def test_lattice_mates_are_the_cube_group_and_its_twin_swaps_less_the_maps_own_group() -> None:
    o = cubic_group()
    every = lattice_mates(np.eye(3)[None])
    assert every.shape == (48, 3, 3) and np.allclose(every[0], np.eye(3))
    assert np.allclose(np.einsum("nij,nkj->nik", every, every), np.eye(3), atol=1e-12)  # rotations
    swapped = np.einsum("nij,jk->nik", o, domain_swap())
    assert np.allclose(every[24:], swapped)
    # a cubic map's own rotations are left to the mate labelling: the identity and the 24 swaps remain
    left = lattice_mates(o)
    assert left.shape == (25, 3, 3) and np.allclose(left[0], np.eye(3)) and np.allclose(left[1:], swapped)


@pytest.mark.parametrize(("a", "b", "column"), [(500, 570, 7), (0, 40, 0), (1950, 2000, 94)])
def test_a_run_that_scores_better_on_another_mate_is_found_whole(a: int, b: int, column: int) -> None:
    """Every mate scores below the frames' own pose but for one run of frames on one mate, which scores better by about
    less than the noise of one frame: that run is the one segment found, whole."""
    rng = np.random.default_rng(a)
    gain = rng.normal(-0.05, 0.02, (2000, 95))
    gain[a:b, column] += 0.075  # +0.025 a frame on average, 1.25 times the noise of one frame
    (found_a, found_b, found_col, z), *rest = best_segments(gain, 4.5)
    assert not rest and found_col == column and z >= 4.5
    assert abs(found_a - a) <= 2 and abs(found_b - b) <= 2


@pytest.mark.parametrize("seed", range(10))
def test_equally_good_mates_move_no_run(seed: int) -> None:
    """Mates that score as the frames' own poses do, up to independent noise: no run reaches z = 4.5 (over 40
    such series the largest z was 4.3)."""
    gain = np.random.default_rng(seed).normal(0.0, 0.02, (2000, 95))
    assert best_segments(gain, 4.5) == []


@pytest.mark.parametrize("seed", range(5))
def test_a_mate_that_images_nearly_as_the_pose_moves_no_run(seed: int) -> None:
    """One mate's gains have a tenth of the others' spread (it images nearly as the pose itself) and a run of 200
    frames prefers it slightly: by its own spread that run's z is about 14, by the typical spread about 1.4; it
    stays, while a run as strong on a different mate still moves."""
    rng = np.random.default_rng(seed)
    gain = rng.normal(-0.05, 0.02, (2000, 95))
    gain[:, 10] = rng.normal(-0.005, 0.002, 2000)
    gain[600:800, 10] += 0.007  # +0.002 a frame
    assert best_segments(gain, 4.5) == []
    gain[1200:1270, 40] += 0.075  # +0.025 a frame, as in the test of a run found whole
    (a, b, column, _), *rest = best_segments(gain, 4.5)
    assert not rest and column == 40 and abs(a - 1200) <= 2 and abs(b - 1270) <= 2


def brownian_projections(m: int = 300, n: int = 72, sampling: float = 0.45
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default particle's map (n³ voxels of ``sampling`` Å), a Brownian path of ``m`` poses (4° steps) and
    noisy projections (SNR 1) of the map along it: (map, true poses, frames)."""
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.truth_map import particle_frame_positions

    vol = prior_map(particle_frame_positions(build_preset("default")), n, sampling, "Pt", 0.9)
    rng = np.random.default_rng(3)
    steps = Rotation.from_rotvec(rng.normal(0, np.radians(4.0) / np.sqrt(3), (m, 3))).as_matrix()
    true = np.empty((m, 3, 3))
    true[0] = Rotation.random(random_state=5).as_matrix()
    for t in range(1, m):
        true[t] = steps[t] @ true[t - 1]
    clean = project(prepare_reference(vol), true)
    return vol, true, (clean + rng.normal(0, clean.std(), clean.shape)).astype(np.float32)


def test_a_run_put_on_a_mate_goes_back_and_nothing_else_moves() -> None:
    """Noisy projections (SNR 1) of the default particle's map along a Brownian path (4° steps); frames 120–179
    start on the mate ``P·s`` (s a 90° turn about a cube axis), the rest at their true poses: that run, and
    only it, goes back to the true poses."""
    sampling, m = 0.45, 300
    _, true, frames = brownian_projections(m, 72, sampling)
    s = cubic_group()[np.argmin(np.abs(rotation_angle_deg(cubic_group(), np.eye(3)) - 90))]
    start = true.copy()
    start[120:180] = np.einsum("nij,jk->nik", true[120:180], s)
    poses, shifts, runs = move_runs(frames, sampling, 25.0, start, np.zeros((m, 2)), None, np.eye(3)[None], 4.5)
    assert len(runs) == 1
    a, b = runs[0]["frames"]
    assert abs(a - 120) <= 3 and abs(b - 180) <= 3 and runs[0]["angle_deg"] == pytest.approx(90.0)
    err = rotation_angle_deg(poses, true)
    assert np.all(err[:max(a, 120)] < 1e-6) and np.all(err[min(b, 180):] < 1e-6)
    assert np.mean(err[120:180] < 1e-6) >= 0.9
    assert np.all(np.abs(shifts[:a]) < 1e-12)  # frames outside the run keep their origins
