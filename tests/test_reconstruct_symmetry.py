"""The particle's rotation group from the data (reconstruct.symmetry) and the path modulo it (search.viterbi)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.lattice import prior_map
from tumblebench.reconstruct.projector import prepare_reference, project
from tumblebench.reconstruct.search import viterbi
from tumblebench.reconstruct.symmetry import HalfMapCheck, close_group, find_group, group_from_steps, one_mate
from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.orientation import TWIN, cubic_group, rotation_angle_deg
from tumblebench.simulator.truth_map import particle_frame_positions
from tumblebench.validation.symmetry import find_symmetry

SAMPLING = 0.45


def _turned(preset: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A preset's atoms (particle frame, Å) turned by a random rotation Q, and their rotation group Q s Qᵀ: the
    symmetry axes in general directions, so that a transposed or axis-swapped convention would show."""
    atoms = particle_frame_positions(build_preset(preset))
    q = Rotation.random(random_state=seed).as_matrix()
    return atoms @ q.T, np.einsum("ij,sjk,lk->sil", q, find_symmetry(atoms).rotations, q)


def _nearest_deg(x: np.ndarray, group: np.ndarray) -> float:
    return float(min(rotation_angle_deg(x, g) for g in group))


def test_a_map_with_a_rotation_group_passes_the_check_and_projects_alike_at_r_and_r_g() -> None:
    """The decahedron's rotations (D5, order 10), turned to general axes: the half-map check of every one is 1 (a
    rotation it does not have is far below), and projections at poses R and R·g are the same image (at R and g·R
    not), which is the convention in which the candidates' relative rotations Rᵢᵀ Rⱼ meet the group."""
    atoms, group = _turned("decahedron", 3)
    assert len(group) == 10
    n = 72
    vol = prior_map(atoms, n, SAMPLING, "Pt", 0.9)
    check = HalfMapCheck(vol, vol, SAMPLING, 15.0, (1.2, 3.0))
    assert min(check(g) for g in group) > 0.85  # linear interpolation of 1.2 Å fringes on a 0.45 Å grid
    other = Rotation.from_rotvec([0.0, 0.0, np.radians(36.0)]).as_matrix()  # not in the turned group
    assert _nearest_deg(other, group) > 10 and check(other) < 0.5
    poses = Rotation.random(4, random_state=8).as_matrix()
    ref = prepare_reference(vol)

    def image(p: np.ndarray) -> np.ndarray:  # low-passed: the sharp map's finest fringes differ by interpolation
        return gaussian_filter(project(ref, p), (0, 1.5, 1.5))

    a = image(poses)
    assert max(np.linalg.norm(image(poses @ g) - a) for g in group[1:]) < 0.1 * np.linalg.norm(a)
    assert min(np.linalg.norm(image(g @ poses) - a) for g in group[1:]) > 0.15 * np.linalg.norm(a)  # not g·R
    assert np.linalg.norm(image(poses @ other) - a) > 0.15 * np.linalg.norm(a)


def test_breadth_first_closure_of_slightly_wrong_generators_gives_the_group_order() -> None:
    """A 4-fold and a 3-fold of the cube, or a 5-fold and a 3-fold of the icosahedron, each 0.5° off: their
    closure has 24 and 60 elements, each within a few degrees of the exact group (shortest products: the errors do
    not add up along long words)."""
    rng = np.random.default_rng(1)

    def off(r: np.ndarray) -> np.ndarray:
        axis = rng.normal(size=3)
        return Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(0.5)).as_matrix() @ r

    cube = cubic_group()
    four = Rotation.from_rotvec([0, 0, np.pi / 2]).as_matrix()
    three = Rotation.from_rotvec(np.ones(3) / np.sqrt(3) * 2 * np.pi / 3).as_matrix()
    g = close_group([off(four), off(three)], 15.0, 60)
    assert g is not None and len(g) == 24 and max(_nearest_deg(x, cube) for x in g) < 5.0
    phi = (1 + np.sqrt(5)) / 2
    five = Rotation.from_rotvec(np.array([0, 1, phi]) / np.hypot(1, phi) * 2 * np.pi / 5).as_matrix()
    ico_three = Rotation.from_rotvec(np.ones(3) / np.sqrt(3) * 2 * np.pi / 3).as_matrix()
    exact = close_group([five, ico_three], 1.0, 60)
    assert exact is not None and len(exact) == 60
    g = close_group([off(five), off(ico_three)], 15.0, 60)
    assert g is not None and len(g) == 60 and max(_nearest_deg(x, exact) for x in g) < 5.0
    assert close_group([off(five), off(ico_three)], 15.0, 59) is None  # more than allowed: refused


def test_find_group_recovers_the_cuboctahedron_group_from_candidates_and_half_maps() -> None:
    """Frames whose near-equal candidates are symmetry mates (R·s, 1° of noise) and decoys, some of them
    near-equal too: the finder returns the 24 rotations of the (turned) cuboctahedron, each within 3° of the
    truth. When the near-equal candidates cluster at a 5-fold the maps do not have, the half-map check rejects
    every cluster: the identity alone."""
    atoms, group = _turned("cuboctahedron", 4)
    assert len(group) == 24
    rng = np.random.default_rng(2)
    m, k = 300, 21
    true = Rotation.random(m, random_state=5).as_matrix()
    cands = Rotation.random(m * k, random_state=6).as_matrix().reshape(m, k, 3, 3)
    cc = rng.uniform(0.3, 0.7, (m, k))
    cands[:, 0], cc[:, 0] = true, 1.0
    for j in range(1, 5):
        noise = Rotation.from_rotvec(rng.normal(0, np.radians(1.0), (m, 3))).as_matrix()
        cands[:, j] = true @ group[rng.integers(1, 24, m)] @ noise
        cc[:, j] = rng.uniform(0.92, 1.0, m)
    cc[rng.random(m) < 0.2, 10] = 0.95  # near-equal decoys: their relative rotations scatter
    n = 80
    vol = prior_map(atoms, n, SAMPLING, "Pt", 0.9)
    half = [vol + rng.normal(0, 0.05 * vol.std(), vol.shape).astype(np.float32) for _ in range(2)]
    found, info = find_group(cands, cc, half[0], half[1], SAMPLING, 16.0)
    assert len(found) == 24 and info["order"] == 24
    assert max(_nearest_deg(x, group) for x in found) < 3.0
    five = Rotation.from_rotvec(np.outer(np.arange(1, 5), [0.3, 0.5, 0.8] / np.linalg.norm([0.3, 0.5, 0.8]))
                                * 2 * np.pi / 5).as_matrix()  # mates of a symmetry the particle does not have
    for j in range(1, 5):
        cands[:, j] = true @ five[rng.integers(0, 4, m)]
    found, info = find_group(cands, cc, half[0], half[1], SAMPLING, 16.0)
    assert len(found) == 1 and np.array_equal(found[0], np.eye(3)) and info["clusters"] >= 4


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_path_modulo_a_group_does_not_depend_on_which_mate_a_candidate_is(seed: int) -> None:
    """Turning every candidate into a random one of its cubic mates (C·s) leaves the path modulo the cubic group
    unchanged, and that path is the exact maximiser of Σ score − weight·Σ (angle modulo the group / step)²."""
    rng = np.random.default_rng(seed)
    m, k = 25, 6
    cube = cubic_group()
    base = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.05, (m, 3)), axis=0))
    cands = np.stack([(Rotation.from_rotvec(rng.normal(0, 0.3, (m, 3))) * base).as_matrix() for _ in range(k)], 1)
    scores = rng.normal(0, 1, (m, k))
    path = viterbi(cands, scores, 5.0, 0.3, group=cube)
    mates = np.einsum("nkij,nkjl->nkil", cands, cube[rng.integers(0, 24, (m, k))])
    assert np.array_equal(viterbi(mates, scores, 5.0, 0.3, group=cube), path)
    c = 0.3 / np.radians(5.0) ** 2

    def angle_mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (K, K) angles of Aᵀ B g, minimised over g
        tr = np.einsum("aji,bjk,ski->abs", a, b, cube).max(axis=2)
        return np.arccos(np.clip((tr - 1) / 2, -1, 1))

    acc = scores[0].copy()
    for t in range(1, m):
        acc = (acc[:, None] - c * angle_mod(cands[t - 1], cands[t]) ** 2).max(axis=0) + scores[t]
    r = cands[np.arange(m), path]
    total = scores[np.arange(m), path].sum() - c * sum(
        angle_mod(r[t - 1][None], r[t][None])[0, 0] ** 2 for t in range(1, m))
    assert np.isclose(total, acc.max(), rtol=1e-9, atol=1e-9)


def _brownian(m: int, step_deg: float, seed: int) -> np.ndarray:
    """(M, 3, 3) poses of a Brownian trajectory with steps of about ``step_deg``."""
    rng = np.random.default_rng(seed)
    steps = Rotation.from_rotvec(rng.normal(0, np.radians(step_deg) / np.sqrt(3), (m, 3))).as_matrix()
    out = [Rotation.random(random_state=seed).as_matrix()]
    for r in steps[1:]:
        out.append(out[-1] @ r)
    return np.array(out)


def _on_mates(poses: np.ndarray, group: np.ndarray, runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The poses with ``runs`` stretches each moved to a random mate ``P·g``, and the mate index of every frame."""
    rng = np.random.default_rng(seed)
    mate = np.zeros(len(poses), np.int64)
    for lo in rng.choice(len(poses) - 1, runs, replace=False):
        mate[lo:lo + rng.integers(5, 60)] = rng.integers(1, len(group))
    return np.einsum("nij,njk->nik", poses, group[mate]), mate


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_one_mate_puts_a_trajectory_spread_over_its_mates_back_on_one(seed: int) -> None:
    """A Brownian trajectory (4° steps) whose stretches sit on random cubic mates comes back as the trajectory
    itself times one element of the group (the same for every frame); a trajectory on one mate, or the identity
    group, is returned unchanged."""
    cube = cubic_group()
    true = _brownian(400, 4.0, seed)
    mixed, mate = _on_mates(true, cube, 12, seed)
    assert len(np.unique(mate)) > 2
    back = one_mate(mixed, cube, 4.0, 12.0)
    common = np.einsum("nji,njk->nik", true, back)  # trueᵀ·back: one group element for every frame
    assert rotation_angle_deg(common, common[0]).max() < 1e-6
    assert _nearest_deg(common[0], cube) < 1e-6
    assert np.array_equal(one_mate(true, cube, 4.0, 12.0), true)
    assert np.array_equal(one_mate(mixed, np.eye(3)[None], 4.0, 12.0), mixed)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_one_mate_joins_two_mates_across_a_slide_of_poses_halfway_between(seed: int) -> None:
    """A Brownian trajectory (4° steps) whose second half sits on a cubic mate (90° about an axis), joined by 15
    frames turned 45° about that axis (halfway: no mate of either side, both jumps 45°): the frame-by-frame path
    through the mates finds the two ways across the slide equally long, the runs joined across the gap put both
    halves on one mate."""
    q = Rotation.random(random_state=seed).as_matrix()
    group = np.einsum("ij,sjk,lk->sil", q, cubic_group(), q)  # the cube turned: its 4-fold axis z goes to q·z
    axis = q[:, 2]
    g = Rotation.from_rotvec(np.pi / 2 * axis).as_matrix()
    assert _nearest_deg(g, group) < 1e-6
    half = Rotation.from_rotvec(np.pi / 4 * axis).as_matrix()
    true = _brownian(400, 4.0, seed)
    posed = true.copy()
    posed[200:215] = true[200:215] @ half
    posed[215:] = true[215:] @ g
    back = one_mate(posed, group, 4.0, 12.0)
    outside = np.r_[0:200, 215:400]
    common = np.einsum("nji,njk->nik", true[outside], back[outside])
    assert rotation_angle_deg(common, common[0]).max() < 1e-6
    assert _nearest_deg(common[0], group) < 1e-6


def test_group_from_steps_reads_the_cuboctahedron_group_off_a_trajectory_on_its_mates() -> None:
    """A trajectory whose stretches sit on mates of the (turned) cuboctahedron: the steps between stretches give
    its 24 rotations, closed exactly and each within 3° of the truth (steps of 4° blur the clusters); the same
    trajectory on mates of a rotation group the maps do not have gives the identity alone."""
    atoms, group = _turned("cuboctahedron", 7)
    rng = np.random.default_rng(3)
    n = 80
    vol = prior_map(atoms, n, SAMPLING, "Pt", 0.9)
    half = [vol + rng.normal(0, 0.05 * vol.std(), vol.shape).astype(np.float32) for _ in range(2)]
    true = _brownian(2000, 4.0, 11)
    mixed, _ = _on_mates(true, group, 120, 12)
    found, info = group_from_steps(mixed, lambda: tuple(half), SAMPLING, 16.0)
    assert len(found) == 24 and info["order"] == 24
    prod = np.einsum("aij,bjk->abik", found, found).reshape(-1, 3, 3)
    assert max(_nearest_deg(x, found) for x in prod) < 1e-6  # closed exactly (:func:`exact_group`)
    assert max(_nearest_deg(x, group) for x in found) < 3.0  # its axes within the centres' error of 4° steps
    five = close_group([Rotation.from_rotvec(np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
                                             * 2 * np.pi / 5).as_matrix()], 1.0, 60)
    mixed, _ = _on_mates(true, five, 120, 12)
    found, info = group_from_steps(mixed, lambda: tuple(half), SAMPLING, 16.0)
    assert len(found) == 1 and info["clusters"] >= 4

    def no_maps():
        raise AssertionError("the half maps are not needed when the steps form no cluster")
    found, info = group_from_steps(true, no_maps, SAMPLING, 16.0)  # Brownian steps of 4°: no jumps, no cluster
    assert len(found) == 1 and info["clusters"] == 0


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_one_mate_joins_runs_across_a_projection_twin_flip(seed: int) -> None:
    """A Brownian trajectory (4° steps) whose second half flips to its projection twin (turned 180° about the beam,
    the same image of a centrosymmetric particle; no rotation mate) and sits on a cubic mate: the join continues
    through the twin, so the second half comes back to the first half's mate and keeps its twin."""
    cube = cubic_group()
    true = _brownian(400, 4.0, seed)
    g = cube[1 + seed % (len(cube) - 1)]
    posed = true.copy()
    posed[200:] = TWIN @ true[200:] @ g
    assume(rotation_angle_deg(posed[199], posed[200] @ cube).min() > 12.0)  # no rotation mate continues
    back = one_mate(posed, cube, 4.0, 12.0)
    assert rotation_angle_deg(back[:200], true[:200]).max() < 1e-6
    assert rotation_angle_deg(back[200:], TWIN @ true[200:]).max() < 1e-6


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_one_mate_leaves_a_run_after_a_jump_no_mate_continues_as_it_is(seed: int) -> None:
    """A Brownian trajectory (4° steps) whose second half is turned 60° about a random axis: no cubic mate of it
    (nor of its projection twin) continues the first half within the bound, so the join tells nothing of the
    mates and both halves keep their own poses (not the least bad mate)."""
    cube = cubic_group()
    true = _brownian(400, 4.0, seed)
    axis = np.random.default_rng(seed).normal(size=3)
    posed = true.copy()
    posed[200:] = true[200:] @ Rotation.from_rotvec(np.radians(60.0) * axis / np.linalg.norm(axis)).as_matrix()
    nearest = min(rotation_angle_deg(posed[199], posed[200] @ cube).min(),
                  rotation_angle_deg(posed[199], TWIN @ posed[200] @ cube).min())
    assume(nearest > 12.0)
    assert np.array_equal(one_mate(posed, cube, 4.0, 12.0), posed)
