"""Ab initio poses from unknown orientations: SO(3) grid, temporal continuity, global search, full stage."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.abinitio import AbInitioConfig, abinitio, global_scores
from tumblebench.reconstruct.projector import Band, image_ft, prepare_reference, project
from tumblebench.reconstruct.refine import RefineConfig, refine
from tumblebench.reconstruct.search import local_search, path_posteriors, so3_grid, viterbi
from tumblebench.simulator.density import lowpass, render_density
from tumblebench.simulator.orientation import rotation_angle_deg
from tumblebench.validation.poses import cubic_group, mirror_poses, pose_errors

SAMPLING = 0.358
SIGMA = 6.526e-4  # rad/(V·Å) at 300 kV
#: a pose error that is zero up to float64 rounding (validation.poses measures it by rotation-matrix distance)
POSE_EXACT_DEG = 1e-9


def _cuboctahedron() -> np.ndarray:
    from ase.cluster import Octahedron

    at = Octahedron("Pt", 7, 3)  # the 147-atom cuboctahedron (magic number)
    assert len(at) == 147
    return at.positions - at.positions.mean(axis=0)


def _series(pos: np.ndarray, n: int, m: int, dose: float, seed: int, step_deg: float = 3.1):
    """Projection-mode frames of a Brownian tumbling particle (poses r_lab = A r_particle), Poisson noise."""
    rng = np.random.default_rng(seed)
    vol = lowpass(render_density(pos + (n // 2) * SAMPLING, (n, n, n), SAMPLING, U=np.full(len(pos), 0.02)),
                  SAMPLING, 0.9, 0.1)
    steps = Rotation.from_rotvec(rng.normal(0, np.radians(step_deg), (m, 3)))
    rots = [Rotation.random(random_state=seed)]
    for i in range(1, m):
        rots.append(steps[i] * rots[-1])
    rots = np.array([r.as_matrix() for r in rots])
    img = project(prepare_reference(vol), rots) * SAMPLING
    frames = rng.poisson(np.clip(1 + SIGMA * img, 0, None) * dose) / dose - 1
    return frames.astype(np.float32), rots, vol


def test_so3_grid_covers_rotations_uniformly() -> None:
    g = so3_grid(5000)
    q = Rotation.from_matrix(g).as_quat()
    q = np.concatenate([q, -q])  # q and −q are one rotation
    probe = Rotation.random(2000, random_state=1).as_quat()
    d, _ = cKDTree(q).query(probe)
    worst_deg = np.degrees(4 * np.arcsin(d.max() / 2))
    assert worst_deg < 15.0  # 5000 rotations: typical spacing ~8°
    assert np.allclose(np.einsum("nij,nkj->nik", g, g), np.eye(3), atol=1e-9)


def test_viterbi_prefers_the_continuous_path() -> None:
    """A noisy best-candidate that jumps away loses to a slightly worse candidate that stays close."""
    rng = np.random.default_rng(0)
    true = Rotation.from_rotvec(np.outer(np.arange(20), [0, 0, np.radians(3)])).as_matrix()
    decoy = Rotation.random(20, random_state=2).as_matrix()
    cands = np.stack([true, decoy], axis=1)
    scores = np.stack([np.full(20, 3.0), np.full(20, 3.0) + rng.uniform(0, 0.5, 20)], axis=1)
    assert np.all(np.argmax(scores, axis=1) == 1)
    assert np.all(viterbi(cands, scores, step_deg=5.0, weight=0.3) == 0)
    assert np.all(viterbi(cands, scores, step_deg=5.0, weight=0.0) == 1)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12), step=st.floats(0.5, 30.0))
def test_viterbi_kernel_equals_brute_force_dynamic_programming(seed: int, k: int, step: float) -> None:
    """The pruned, threaded kernel returns the exact maximiser of Σ score − weight·Σ (angle/step)²: the same
    total as a plain numpy dynamic programme (random candidates that crowd around a path, some slots empty)."""
    rng = np.random.default_rng(seed)
    m = 30
    base = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.05, (m, 3)), axis=0))
    cands = np.stack([(Rotation.from_rotvec(rng.normal(0, 0.3, (m, 3))) * base).as_matrix() for _ in range(k)], 1)
    scores = rng.normal(0, 1, (m, k))
    scores[rng.random((m, k)) < 0.1] = -np.inf
    scores[:, 0] = rng.normal(0, 1, m)  # every frame keeps a candidate
    c = 0.3 / np.radians(step) ** 2

    def total(path):
        r = cands[np.arange(m), path]
        ang = np.radians(rotation_angle_deg(r[1:], r[:-1]))
        return scores[np.arange(m), path].sum() - c * (ang**2).sum()

    acc = scores[0].copy()
    for t in range(1, m):
        ang = np.radians(rotation_angle_deg(cands[t - 1][:, None], cands[t][None]))
        acc = (acc[:, None] - c * ang**2).max(axis=0) + scores[t]
    path = viterbi(cands, scores, step, 0.3)
    assert np.isclose(total(path), acc.max(), rtol=1e-7, atol=1e-6)  # arccos vs rotation_angle_deg rounding


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), temperature=st.floats(0.3, 10.0))
def test_path_posteriors_equal_the_sums_over_every_path(seed: int, k: int, temperature: float) -> None:
    """On a chain short enough to list every path, each candidate's posterior is the summed weight
    exp((Σ score − weight·Σ (angle/step)²) / temperature) of the paths through it, normalised; as the temperature
    falls, the most probable candidates are the Viterbi path."""
    rng = np.random.default_rng(seed)
    m = 6
    base = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.05, (m, 3)), axis=0))
    cands = np.stack([(Rotation.from_rotvec(rng.normal(0, 0.3, (m, 3))) * base).as_matrix() for _ in range(k)], 1)
    scores = rng.normal(0, 2, (m, k))
    c = 0.3 / np.radians(5.0) ** 2
    paths = np.array(list(itertools.product(range(k), repeat=m)))
    r = cands[np.arange(m), paths]  # (P, m, 3, 3)
    ang = np.radians(rotation_angle_deg(r[:, 1:], r[:, :-1]))
    logw = (scores[np.arange(m), paths].sum(1) - c * (ang**2).sum(1)) / temperature
    w = np.exp(logw - logw.max())
    brute = np.stack([np.bincount(paths[:, t], weights=w, minlength=k) for t in range(m)]) / w.sum()
    post = path_posteriors(cands, scores, 5.0, 0.3, temperature)
    assert np.allclose(post.sum(1), 1.0) and np.allclose(post, brute, atol=1e-9)
    cold = path_posteriors(cands, scores, 5.0, 0.3, 1e-3)
    best = paths[np.argmax(logw)]
    raw = np.sort(logw * temperature)
    if k == 1 or raw[-2] < raw[-1] - 0.05:  # a best path ahead of the next by e^50 at the cold temperature
        assert np.array_equal(cold.argmax(1), best) and np.array_equal(viterbi(cands, scores, 5.0, 0.3), best)


def test_global_search_against_the_true_model_finds_the_poses() -> None:
    pos = _cuboctahedron()[np.random.default_rng(5).random(147) < 0.6]  # break the symmetry
    frames, rots, vol = _series(pos, 40, 30, 1e5, 0)
    band = Band.make(40, r_max=40 * SAMPLING / 1.5, r_min=1)
    grid = so3_grid(20000)
    idx, _ = global_scores(vol, band.take(image_ft(frames)), band, grid, top_k=3)
    assert np.median(pose_errors(grid[idx[:, 0]], rots, allow_mirror=False).angles_deg) < 6.0


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_local_search_climbs_twice_as_two_single_climbs(seed: int) -> None:
    """Two climbs per step are two one-climb searches in a row, bit for bit (a frame that stayed put after the
    first climb is not scored again: it would score the same moves and stay)."""
    pos = _cuboctahedron()[np.random.default_rng(5).random(147) < 0.6]
    frames, rots, vol = _series(pos, 40, 12, 1e5, seed % 7)
    band = Band.make(40, r_max=40 * SAMPLING / 1.5, r_min=1).half_plane()
    ref = prepare_reference(vol)
    x = band.take(image_ft(frames))
    rng = np.random.default_rng(seed)
    start = Rotation.from_rotvec(rng.normal(0, np.radians(3), (12, 3))).as_matrix() @ rots
    twice, s2 = local_search(ref, x, band, start, None, (2.0,), climbs=2)
    once, _ = local_search(ref, x, band, start, None, (2.0,), climbs=1)
    again, s1 = local_search(ref, x, band, once, None, (2.0,), climbs=1)
    assert np.array_equal(twice, again) and np.array_equal(s2, s1)
    assert not np.array_equal(once, start)  # the climbs moved frames: the comparison is not vacuous


def test_distinct_peaks_are_apart_and_led_by_the_best_pose() -> None:
    """With non-maximum suppression the candidates are separate peaks (pairwise ≥ distinct_deg), the first being
    the plain search's best pose."""
    pos = _cuboctahedron()[np.random.default_rng(5).random(147) < 0.6]
    frames, _, vol = _series(pos, 40, 12, 1e5, 0)
    band = Band.make(40, r_max=40 * SAMPLING / 2.5, r_min=1)
    grid = so3_grid(5000)
    x = band.take(image_ft(frames))
    plain, _ = global_scores(vol, x, band, grid, top_k=1)
    idx, z = global_scores(vol, x, band, grid, top_k=10, distinct_deg=12.0, pool=200)
    assert np.array_equal(idx[:, 0], plain[:, 0])
    for row, zs in zip(idx, z, strict=True):
        r = grid[row[np.isfinite(zs)]]
        tr = np.einsum("aij,bij->ab", r, r)
        ang = np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1)))[np.triu_indices(len(r), 1)]
        assert len(r) == 10 and ang.min() >= 12.0


@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 1000))
@example(seed=466)  # the sphere method left 44 % of the trajectory on a pseudo-symmetric mate (median 12.8°)
@example(seed=127)  # the sphere method: 71° after ab initio, 84° after refinement (lattice: 0.80°)
def test_abinitio_and_refinement_find_poses_of_an_asymmetric_particle(seed: int) -> None:
    """No truth read: a tumbling asymmetric 88-atom cluster, high dose, 150 frames of 40 px; the default (lattice)
    method + refinement. Measured (seeds 0, 127, 210, 466): 0.49–1.57° median after refinement."""
    from tumblebench.reconstruct.lattice import LatticeConfig, LatticePoses, lattice_abinitio

    pos = _cuboctahedron()[np.random.default_rng(99).random(147) < 0.6]
    frames, rots, _ = _series(pos, 40, 150, 200.0, seed)
    cfg = AbInitioConfig()
    done: list[int] = []
    poses, shifts, info = lattice_abinitio(frames, SAMPLING, 12.0, LatticeConfig(), cfg.step_deg, cfg.continuity_weight,
                                           progress=done.append)
    assert info["prior"] in ("fcc", "fcc-twin") and len(info["priors"]) == 2
    # each labelling pass records the band FSC of the half maps it scored against: a correlation coefficient
    assert all(-1.0 <= h["references_fsc"] <= 1.0 for p in info["priors"].values() for h in p["history"])
    assert sum(done) == LatticePoses(LatticeConfig()).steps()  # the progress bar ends full, converged early or not
    res = refine(frames, SAMPLING, poses, shifts, 12.0, RefineConfig(n_iter=3, model_iterations=0))
    err = pose_errors(res.poses, rots)
    assert err.median_deg < 3.0
    assert np.mean(err.angles_deg < 5.0) > 0.5


def test_sphere_method_runs_its_starts_and_returns_a_model() -> None:
    """The earlier ``"sphere"`` method (featureless start): its starts, its model; its accuracy is the subject of
    the trajectory-options test below (it fails on some seeds of the asymmetric cluster: seed 127, 84°)."""
    pos = _cuboctahedron()[np.random.default_rng(99).random(147) < 0.6]
    frames, rots, _ = _series(pos, 40, 150, 200.0, 0)
    cfg = AbInitioConfig(box=40, grid_size=10000, n_starts=2)
    poses, model, info = abinitio(frames, SAMPLING, 12.0, cfg, np.random.default_rng(0))
    assert model.shape == (40, 40, 40) and len(info["start_scores"]) == 2
    assert pose_errors(poses, rots).median_deg < 30.0  # seed 0: a start that finds the particle


def test_centrosymmetric_particle_projects_identically_at_a_pose_and_its_twin() -> None:
    """Projection of a centrosymmetric particle: pose A and TWIN·A (180° about the beam) give the same image, so
    ``pose_errors(..., projection_twin=[I])`` (q = I) scores each frame against the nearer of the two."""
    from tumblebench.validation.poses import TWIN

    _, _, vol = _series(_cuboctahedron(), 64, 1, 1e9, 0)  # box wide enough that no density reaches its edge
    a = Rotation.random(3, random_state=5).as_matrix()
    ref = prepare_reference(vol)
    p1 = project(ref, a)[:, 1:, 1:]  # row/column 0 has no partner under inversion about the centre pixel
    p2 = project(ref, np.einsum("ij,njk->nik", TWIN, a))[:, 1:, 1:]
    assert np.abs(p1 - p2).max() < 1e-2 * np.abs(p1).max()  # 0.3 %: trilinear Fourier interpolation
    # an asymmetric cluster's images differ
    asym = _series(_cuboctahedron()[np.random.default_rng(99).random(147) < 0.6], 64, 1, 1e9, 0)[2]
    q1 = project(prepare_reference(asym), a)[:, 1:, 1:]
    q2 = project(prepare_reference(asym), np.einsum("ij,njk->nik", TWIN, a))[:, 1:, 1:]
    assert np.abs(q1 - q2).max() > 0.1 * np.abs(q1).max()
    # the metric: random frames on the twin, a global rotation, the mirror hand — all recovered exactly
    true = Rotation.random(200, random_state=6).as_matrix()
    g = Rotation.random(random_state=7).as_matrix()
    est = np.einsum("nij,jk->nik", true, g)
    flip = np.random.default_rng(8).random(200) < 0.4
    est[flip] = np.einsum("ij,njk->nik", TWIN, est[flip])
    est = mirror_poses(est)
    # exact up to float64 rounding: the poses, G and the rotation mean carry ~1e-16 relative error, which the
    # rotation-matrix distance turns into ~1e-14-1e-12°; 1e-9° leaves three orders of margin (an arccos of the
    # trace could not be tested this way: one float step below a trace of 3 is already 1.2e-6°)
    assert pose_errors(est, true, projection_twin=np.eye(3)[None]).median_deg < POSE_EXACT_DEG
    assert np.percentile(pose_errors(est, true).angles_deg, 80) > 30  # without it the twinned frames count as wrong


def test_pose_errors_recover_global_rotation_and_hand() -> None:
    true = Rotation.random(200, random_state=3).as_matrix()
    g = Rotation.random(random_state=4).as_matrix()
    est = mirror_poses(np.einsum("nij,jk->nik", true, g))
    e = pose_errors(est, true)
    assert e.mirrored and e.median_deg < POSE_EXACT_DEG  # exact up to rounding (see the test above)
    sym = cubic_group()
    est2 = np.einsum("nij,njk->nik", true, sym[np.random.default_rng(0).integers(0, 24, 200)])
    assert pose_errors(est2, true, symmetry=sym).median_deg < POSE_EXACT_DEG
    assert pose_errors(est2, true).median_deg > 30


@given(seed=st.integers(0, 2**32 - 1), right=st.floats(0.3, 0.45))
@settings(max_examples=10, deadline=None)
def test_pose_errors_keep_the_rotation_of_the_right_frames_when_they_are_few(seed: int, right: float) -> None:
    """Fewer than half the frames right, the rest spread evenly over three other branches (90° about x, y, z,
    each fewer than the right ones): the alignment is the right frames' rotation, so exactly they score 0°."""
    rng = np.random.default_rng(seed)
    m = 400
    true = Rotation.random(m, random_state=rng).as_matrix()
    g = Rotation.random(random_state=rng).as_matrix()
    n_right = int(right * m)
    branch = np.concatenate([np.zeros(n_right, int), 1 + np.arange(m - n_right) % 3])
    wrong = np.concatenate([np.eye(3)[None], Rotation.from_rotvec(np.eye(3) * np.pi / 2).as_matrix()])
    est = np.einsum("nij,njk,kl->nil", true, wrong[rng.permutation(branch)], g)
    e = pose_errors(est, true)
    assert np.sum(e.angles_deg < 1e-6) == n_right  # exact frames, up to rounding
    assert np.all(e.angles_deg[e.angles_deg >= 1e-6] > 80)


@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 1000))
def test_abinitio_cuboctahedron_within_2_degrees(seed: int) -> None:
    """Issue #4: ab initio (the default lattice method, both priors tried) + refinement on a small, high-dose,
    projection-mode series of the 147-atom cuboctahedron finds every frame's pose within 2° (median; scored
    modulo the particle's cubic symmetry and, as this centrosymmetric particle projects identically at a pose
    and its 180°-in-plane twin, against the nearer of the two). The single-crystal prior must win. Measured
    (seeds 0–5, fcc prior alone): 0.54–0.75° after refinement, 2.6–3.0° straight from the labelling."""
    from tumblebench.reconstruct.lattice import LatticeConfig, lattice_abinitio

    frames, rots, _ = _series(_cuboctahedron(), 48, 200, 200.0, seed)
    cfg = AbInitioConfig()
    poses, shifts, info = lattice_abinitio(frames, SAMPLING, 12.0, LatticeConfig(), cfg.step_deg, cfg.continuity_weight)
    assert info["prior"] == "fcc"
    res = refine(frames, SAMPLING, poses, shifts, 12.0, RefineConfig(n_iter=4, model_iterations=0))
    assert pose_errors(res.poses, rots, symmetry=cubic_group(), projection_twin=np.eye(3)[None]).median_deg <= 2.0


def test_continuity_sweep_pulls_a_stuck_run_back_from_its_neighbours() -> None:
    """Frames stuck ~12° off (a run, each turned differently) are recovered from their neighbours' poses."""
    from tumblebench.reconstruct.refine import continuity_sweep

    pos = _cuboctahedron()[np.random.default_rng(99).random(147) < 0.6]
    frames, rots, vol = _series(pos, 40, 60, 200.0, 3)
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(20, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    poses = rots.copy()
    poses[20:40] = np.einsum("nij,njk->nik", Rotation.from_rotvec(np.radians(12) * axes).as_matrix(), rots[20:40])
    band = Band.make(40, r_max=40 * SAMPLING / 1.5, r_min=1)
    ref = prepare_reference(vol)
    new, n_moved = continuity_sweep((ref, ref), np.arange(60) % 2, band.take(image_ft(frames)), band, poses, None,
                                    (3.0, 1.0, 0.35))
    err = pose_errors(new, rots, allow_mirror=False).angles_deg
    assert n_moved >= 20 and np.max(err[20:40]) < 3.0


def test_repair_jumps_takes_back_a_run_on_a_wrong_branch_from_both_ends() -> None:
    """A run of 16 frames turned by one rotation of 25° (a jump at each end, none elsewhere: the series steps
    ~3°) goes back to the true poses from its neighbours; the other frames are not touched."""
    from tumblebench.reconstruct.refine import repair_jumps

    pos = _cuboctahedron()[np.random.default_rng(99).random(147) < 0.6]
    frames, rots, vol = _series(pos, 40, 60, 500.0, 4)
    turn = Rotation.from_rotvec(np.radians(25) * np.array([0.6, -0.8, 0.0])).as_matrix()
    poses = rots.copy()
    poses[22:38] = turn @ rots[22:38]
    ref = prepare_reference(vol)
    new, shifts, n = repair_jumps((ref, ref), np.arange(60) % 2, frames, SAMPLING, poses, np.zeros((60, 2)), None,
                                  1.5, (3.0, 1.0, 0.35), 1, 2, 2.0, 12.0)
    err = pose_errors(new, rots, allow_mirror=False).angles_deg
    assert n == 16 and np.max(err[22:38]) < 3.0
    assert np.array_equal(new[:22], rots[:22]) and np.array_equal(new[38:], rots[38:])
    assert np.max(np.abs(shifts)) < 1.0


def test_repair_jumps_measures_steps_modulo_the_maps_group() -> None:
    """Poses B and B·g of a map with rotation group G are the same view: a run relabelled by g ∈ G is not a jump
    (nothing proposed, nothing moved), and the same run is one without the group."""
    from tumblebench.reconstruct.refine import repair_jumps

    pos = _cuboctahedron()[np.random.default_rng(99).random(147) < 0.6]
    frames, rots, vol = _series(pos, 40, 60, 500.0, 4)
    group = Rotation.from_rotvec(np.outer(np.arange(4) * np.pi / 2, [0.0, 0.0, 1.0])).as_matrix()  # C4 about z
    poses = rots.copy()
    poses[22:38] = rots[22:38] @ group[1]
    ref = prepare_reference(vol)
    args = ((ref, ref), np.arange(60) % 2, frames, SAMPLING, poses, np.zeros((60, 2)), None, 1.5, (3.0, 1.0, 0.35),
            1, 2, 2.0, 12.0)
    same, _, n = repair_jumps(*args, group=group)
    assert n == 0 and np.array_equal(same, poses)
    # without the group: two jumps of 90°, and the map has no C4 symmetry
    assert repair_jumps(*args)[2] > 0


def test_label_mates_takes_a_run_back_where_two_mates_meet() -> None:
    """An fcc ellipsoid (long axis along the lattice's x) tumbles through a pose with the beam along [110]: there
    the pose ``A`` equals ``TWIN·A·h`` (h the 2-fold turn about [110], which swaps x and y), so from that frame on
    the trajectory may go on as ``TWIN·A·h`` without a step: the same images, the long axis along y. Continuity
    cannot tell the two; the ends of the long axis can: ``label_mates`` puts the last 40 frames back on the mate of
    the first 60 (the majority, which the half maps show)."""
    from ase.build import bulk

    from tumblebench.reconstruct.projector import soft_sphere
    from tumblebench.reconstruct.refine import label_mates
    from tumblebench.simulator.orientation import TWIN

    a = 3.92
    pos = bulk("Pt", "fcc", a=a, cubic=True).repeat((6, 6, 6)).get_positions() - 3 * a
    pos = pos[(pos[:, 0] / 7.5) ** 2 + (pos[:, 1] / 5.0) ** 2 + (pos[:, 2] / 5.0) ** 2 <= 1.0]
    n, m, k = 48, 100, 60
    rng = np.random.default_rng(5)
    beam = Rotation.align_vectors([[0.0, 0.0, 1.0]], [[1 / np.sqrt(2), 1 / np.sqrt(2), 0.0]])[0]
    rots = np.empty((m, 3, 3))
    rots[k] = (Rotation.from_rotvec([0.0, 0.0, 0.7]) * beam).as_matrix()
    steps = Rotation.from_rotvec(rng.normal(0, np.radians(3.0), (m, 3))).as_matrix()
    for i in range(k + 1, m):
        rots[i] = steps[i] @ rots[i - 1]
    for i in range(k - 1, -1, -1):
        rots[i] = steps[i] @ rots[i + 1]
    vol = lowpass(render_density(pos + (n // 2) * SAMPLING, (n, n, n), SAMPLING, U=np.full(len(pos), 0.02)),
                  SAMPLING, 0.9, 0.1)
    img = project(prepare_reference(vol), rots) * SAMPLING
    frames = (rng.poisson(np.clip(1 + SIGMA * img, 0, None) * 500.0) / 500.0 - 1).astype(np.float32)
    h = Rotation.from_rotvec(np.pi * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)).as_matrix()
    poses = rots.copy()
    poses[k:] = np.einsum("ij,njk,kl->nil", TWIN, rots[k:], h)
    assert np.max(rotation_angle_deg(poses[:-1], poses[1:])) < 15  # no jump: one_mate would keep it
    long_axis = [g for g in cubic_group() if abs(g[0, 0]) > 0.5]  # the turns that keep the long axis
    within = lambda p: np.mean(pose_errors(p, rots, symmetry=np.array(long_axis),  # noqa: E731
                                           projection_twin=np.eye(3)[None]).angles_deg < 3.0)
    assert within(poses) <= 0.65
    new, shifts, _, converged = label_mates(frames, SAMPLING, 15.0, poses, np.zeros((m, 2)), np.arange(m) % 2,
                                            None, cubic_group(), soft_sphere(n, 9.5 / SAMPLING, 3.0),
                                            (1 / 8.0, 1 / 1.2), RefineConfig())
    assert within(new) >= 0.95 and converged
    assert np.max(np.abs(shifts)) < 1.0 / SAMPLING
