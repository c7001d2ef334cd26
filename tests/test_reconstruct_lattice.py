"""Lattice-prior ab initio: the priors' symmetry, what amplitudes cannot tell, the fundamental zone, recovery."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.lattice import (
    TWIN,
    BranchLabeller,
    LatticeConfig,
    _shells,
    _whiten,
    amplitude_ambiguity,
    amplitude_search,
    branch_mates,
    choose_prior,
    fundamental_zone,
    prior_group,
    prior_map,
    prior_sites,
    register_halves,
)
from tumblebench.reconstruct.projector import Band, prepare_reference, project_band
from tumblebench.reconstruct.search import so3_grid
from tumblebench.simulator.orientation import cubic_group, rotation_angle_deg
from tumblebench.simulator.shapes import bulk_lattice_constant

A_PT = bulk_lattice_constant("Pt")


def test_priors_have_the_symmetry_of_their_lattice() -> None:
    """The fcc ball keeps the cube's 24 rotations; the ball twinned on a central (111) only the 3-fold about the
    twin normal and three 2-folds in the twin plane (D3); no two sites of the twin overlap at the boundary."""
    g = prior_group(prior_sites("fcc", A_PT, 10.0))
    assert len(g) == 24 and np.allclose(g[0], np.eye(3))
    sites = prior_sites("fcc-twin", A_PT, 10.0)
    gt = prior_group(sites)
    assert len(gt) == 6
    n = np.ones(3) / np.sqrt(3)
    axes = Rotation.from_matrix(gt[1:]).as_rotvec()
    angles = np.degrees(np.linalg.norm(axes, axis=1))
    assert np.allclose(sorted(np.round(angles)), [120, 120, 180, 180, 180])
    two_fold = axes[np.isclose(angles, 180)]
    assert np.allclose(two_fold @ n, 0, atol=1e-9)  # the 2-folds lie in the twin plane
    d = cKDTree(sites).query(sites, k=2)[0][:, 1]
    assert d.min() > 0.99 * A_PT / np.sqrt(2)  # nearest-neighbour distance of fcc
    amb = amplitude_ambiguity("fcc-twin", gt)
    assert len(amb) == 12
    prod = np.einsum("aij,bjk->abik", amb, amb).reshape(-1, 3, 3)  # closed under products: a group (D6)
    assert rotation_angle_deg(prod[:, None], amb[None]).min(axis=1).max() < 1e-6


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_amplitudes_cannot_tell_a_pose_from_its_branch_mates(seed: int) -> None:
    """|F| of the prior's projection is the same at R, R·S (S a rotation of the prior) and TWIN·R (180° about the
    beam); for the twinned prior the swap of its domains changes it only a little, a random pose a lot."""
    n, voxel = 64, 0.358
    band = Band.make(n, r_max=n * voxel / 1.2, r_min=n * voxel / 4.0)
    rng = np.random.default_rng(seed)
    pose = Rotation.random(random_state=seed).as_matrix()

    def amps(ref, poses):
        a = np.abs(project_band(ref, poses, band)).astype(np.float64)
        a -= a.mean(axis=1, keepdims=True)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    for kind in ("fcc", "fcc-twin"):
        sites = prior_sites(kind, A_PT, 9.0)
        group = prior_group(sites)
        ops = amplitude_ambiguity(kind, group)
        ref = prepare_reference(prior_map(sites, n, voxel, "Pt", 0.9))
        mates = branch_mates(pose[None], ops)[0]
        a = amps(ref, mates)
        cc = a @ a[0]
        exact = np.r_[np.arange(len(group)), len(ops) + np.arange(len(group))]  # R·S and TWIN·R·S, S in the group
        assert cc[exact].min() > 0.98
        other = amps(ref, Rotation.random(20, random_state=int(rng.integers(2**31))).as_matrix()) @ a[0]
        assert np.median(other) < 0.6
        if kind == "fcc-twin":  # the domain swap: the same fringes, on the other half of the particle
            assert cc[len(group):len(ops)].min() > np.median(other) + 0.2


def test_fundamental_zone_tiles_rotation_space() -> None:
    """The fundamental zone of O holds 1/24 of a uniform grid, and every rotation has a mate R·S within one
    grid spacing of it."""
    o = cubic_group()
    grid = so3_grid(48000)
    fz = fundamental_zone(grid, o)
    assert abs(len(fz) * 24 / len(grid) - 1) < 0.03
    probe = Rotation.random(300, random_state=3).as_matrix()
    mates = np.einsum("nij,sjk->nsik", probe, o).reshape(-1, 3, 3)
    q_fz = Rotation.from_matrix(fz).as_quat()
    q_fz = np.concatenate([q_fz, -q_fz])
    d, _ = cKDTree(q_fz).query(Rotation.from_matrix(mates).as_quat())
    nearest = np.degrees(4 * np.arcsin(d.reshape(300, 24).min(axis=1) / 2))
    assert nearest.max() < 8.0  # 48,000 poses: ~4° spacing
    assert np.allclose(np.einsum("nij,nkj->nik", TWIN[None], TWIN[None]), np.eye(3))


class _ScriptedLabeller(BranchLabeller):
    """A labeller whose pass k changes the branch of the first ``changes[k]`` frames (of 200) and moves the shifts
    to k; the references of pass k have the band FSC ``fscs[k]``."""

    def __init__(self, changes: list[int], config: LatticeConfig, fscs: list[float] | None = None) -> None:
        self.cfg, self.ops = config, np.eye(3)[None]
        self.fr = SimpleNamespace(origins=np.zeros((200, 2)))
        self.changes, self.passes, self.lab = changes, 0, np.zeros(200, np.int64)
        self.fscs = fscs if fscs is not None else [float("nan")] * len(changes)
        self.references_fsc_ = float("nan")
        self.built = 0
        self.weights = []  # the continuity weight of each pass

    def fit_shifts(self, poses, shifts, what):
        return shifts

    def anneal(self, path, progress=None):  # the start of the passes: the path at the tracker's origins
        self.annealed_weight = self.weight
        if progress is not None:
            progress(len(self.cfg.label_temperatures))
        return path, self.fr.origins.copy()

    def half_references(self, poses, shifts, what):
        self.built += 1
        self.references_fsc_ = self.fscs[self.passes]
        return ("references of pass", self.passes)

    def label(self, cands, poses, shifts, what, refs=None):
        k = self.passes
        if refs is None:
            self.half_references(poses, shifts, what)
        assert refs is None or refs == ("references of pass", k)
        self.passes += 1
        self.weights.append(self.weight)
        self.lab = self.lab.copy()
        self.lab[:self.changes[k]] ^= 1
        self.scores_ = np.full(len(poses), 0.1 * k)
        return self.lab, cands[np.arange(len(poses)), self.lab], np.full_like(shifts, k)


@pytest.mark.parametrize(("changes", "stiff_passes", "passes"), [
    # 2 of 200 frames (1 %) change at stiff pass 3: relaxed from pass 4; 2 again at pass 5: stop there
    ([200, 150, 40, 2, 90, 2, 90, 90, 90, 90], 4, 6),
    # the five stiff passes never converge; the first relaxed one does
    ([200, 150, 40, 90, 90, 2, 90, 90, 90, 90], 5, 6),
    # the last stiff pass converges: it still counts as stiff, and the relaxed passes go on to their own convergence
    ([200, 150, 40, 90, 2, 90, 1, 90, 90, 90], 5, 7),
    ([200, 150, 40, 3, 90, 90, 90, 90, 90, 90], 5, 10),  # never at most 1 %: all ten passes
])
def test_labelling_relaxes_its_weight_after_the_stiff_passes_and_stops_when_at_most_one_percent_change(
        changes, stiff_passes, passes) -> None:
    steps = []
    config = LatticeConfig(label_continuity_weights=(1.0, 0.3), label_stiff_iterations=5)
    lab = _ScriptedLabeller(changes, config)
    _, shifts, info = lab.run(np.tile(np.eye(3), (200, 1, 1)), progress=steps.append)
    assert lab.passes == passes == len(info["history"]) and info["kept_iteration"] is None
    assert lab.weights == [1.0] * stiff_passes + [0.3] * (passes - stiff_passes)
    assert [h["frames_changed"] for h in info["history"]] == changes[:passes]
    assert np.all(shifts == passes - 1) and np.all(lab.scores_ == 0.1 * (passes - 1))
    assert lab.annealed_weight == 1.0  # the soft passes before the first run at the stiff weight
    assert sum(steps) == config.label_iterations + len(config.label_temperatures)  # the bar reaches its end


@pytest.mark.parametrize(("changes", "kept"), [
    ([200, 150, 2, 90, 90, 90, 90, 90, 90, 90], 2),  # converged at stiff pass 2, the seven relaxed passes wander
    ([200, 150, 40, 90, 1, 90, 90, 90, 90, 90], 4),  # converged at the last stiff pass
    ([2] + [90] * 9, 0),  # converged at the first pass
])
def test_a_converged_stiff_labelling_is_kept_when_the_relaxed_passes_after_it_do_not_converge(changes, kept) -> None:
    lab = _ScriptedLabeller(changes, LatticeConfig(label_continuity_weights=(1.0, 0.3), label_stiff_iterations=5))
    poses, shifts, info = lab.run(np.tile(np.eye(3), (200, 1, 1)))
    assert len(info["history"]) == 10 and info["kept_iteration"] == kept
    assert np.all(shifts == kept) and np.all(lab.scores_ == 0.1 * kept)  # the kept pass's shifts and scores
    flips = np.bitwise_xor.reduce(np.arange(200)[None] < np.asarray(changes[:kept + 1])[:, None], axis=0)
    assert np.array_equal(lab.lab_, flips.astype(np.int64))  # its labels: every pass up to it flipped its frames
    assert lab.converged_
    before = lab.passes
    lab.extend(poses, shifts)
    assert lab.passes == before  # a kept converged labelling is not extended


@pytest.mark.parametrize(("stiff_iterations", "changes", "weights"), [
    (0, [200, 2, 90, 2] + [90] * 6, [0.3, 0.3]),  # no stiff pass: relaxed from the start, converged at pass 1
    (10, [200, 2, 90, 2] + [90] * 6, [1.0, 1.0, 0.3, 0.3]),  # stiff until converged, then relaxed to convergence
    (10, [90] * 10, [1.0] * 10),  # stiff passes that never converge take all of label_iterations
])
def test_labelling_with_no_stiff_or_only_stiff_passes(stiff_iterations, changes, weights) -> None:
    lab = _ScriptedLabeller(changes, LatticeConfig(label_stiff_iterations=stiff_iterations))
    lab.run(np.tile(np.eye(3), (200, 1, 1)))
    assert lab.weights == weights


@pytest.mark.parametrize(("fsc", "margin", "chosen"), [
    ({"fcc": 0.420, "fcc-twin": 0.440}, 0.03, "fcc"),  # the twinned prior ahead by less than the margin
    ({"fcc": 0.543, "fcc-twin": 0.639}, 0.03, "fcc-twin"),  # a twinned particle: clearly ahead
    ({"fcc": 0.548, "fcc-twin": 0.368}, 0.03, "fcc"),
    ({"fcc": 0.420, "fcc-twin": 0.440}, 0.0, "fcc-twin"),  # no margin: the highest
    ({"fcc": 0.420, "fcc-twin": 0.460}, 0.03, "fcc-twin"),
    ({"fcc-twin": 0.300}, 0.03, "fcc-twin"),  # one prior tried
    ({"fcc-twin": 0.500, "fcc": 0.520}, 0.03, "fcc-twin"),  # the order tried decides which is the earlier
])
def test_a_later_prior_is_chosen_only_when_its_labelling_beats_the_earlier_by_the_margin(fsc, margin, chosen) -> None:
    assert choose_prior(fsc, margin) == chosen


_FLAT = [0.30, 0.35, 0.40, 0.45, 0.50, 0.49, 0.50, 0.48, 0.50, 0.49]  # references' band FSC of passes 0-9


@pytest.mark.parametrize(("changes", "fscs", "added", "built"), [
    # the references of pass 10 (0.56) rise 0.06 above every earlier pass's: pass 10 runs; pass 11's two passes
    # (0.56, 0.55) are still above passes 0-9 by 0.02: it runs, changes 2 frames (1 %) and the labelling stops
    ([90] * 10 + [90, 2, 90], [*_FLAT, 0.56, 0.55, 0.57], 2, 10 + 2),
    # a labelling that fluctuates: pass 10's references (0.51) are not 0.02 above pass 4's: one build, no pass
    ([90] * 12, [*_FLAT, 0.51, 0.6], 0, 10 + 1),
    # converged at relaxed pass 5: nothing more, not even a build
    ([200, 150, 40, 2, 90, 2] + [90] * 6, [*_FLAT, 0.9, 0.9], 0, 6),
    # always rising and never converging: label_extra_iterations (5) more passes, then stop
    ([90] * 16, [*_FLAT, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1], 5, 15),
])
def test_an_unconverged_labelling_goes_on_while_its_references_improve(changes, fscs, added, built) -> None:
    config = LatticeConfig()
    steps = []
    lab = _ScriptedLabeller(changes, config, fscs)
    poses, shifts, info = lab.run(np.tile(np.eye(3), (200, 1, 1)), progress=steps.append)
    run_passes = len(info["history"])
    poses, shifts, n = lab.extend(poses, shifts, progress=steps.append)
    assert n == added and lab.passes == run_passes + added == len(info["history"]) and lab.built == built
    assert [h["references_fsc"] for h in info["history"]] == fscs[:lab.passes]
    assert np.all(shifts == lab.passes - 1)  # the last pass's labelling is returned
    assert sum(steps) == config.label_iterations + len(config.label_temperatures) + config.label_extra_iterations


def _default_map(n: int, sampling: float) -> np.ndarray:
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.truth_map import particle_frame_positions
    return prior_map(particle_frame_positions(build_preset("default")), n, sampling, "Pt", 0.9)


def _translated(vol: np.ndarray, t_zyx: np.ndarray) -> np.ndarray:
    k = np.meshgrid(*(np.fft.fftfreq(s) for s in vol.shape), indexing="ij")
    return np.fft.ifftn(np.fft.fftn(vol) * np.exp(-2j * np.pi * sum(a * b for a, b in zip(k, t_zyx, strict=True)))).real


@settings(max_examples=8, deadline=None)
@given(t=st.tuples(*[st.floats(-3.0, 3.0)] * 3))
def test_register_halves_brings_a_translated_map_back_halfway_each(t: tuple[float, float, float]) -> None:
    """A map and its copy moved by t (voxels, sub-voxel too) meet halfway: each moved by t/2 the other way. The
    map's atoms are 0.9 Å wide on 0.45 Å voxels, so the parabola's sub-voxel peak is good to ~0.05 voxel."""
    vol = _default_map(64, 0.45)
    t = np.array(t)
    a, b = register_halves(_translated(vol, t), vol, 4.0)
    mid = _translated(vol, t / 2)
    scale = np.abs(vol).max()
    assert np.abs(a - mid).max() < 0.08 * scale and np.abs(b - mid).max() < 0.08 * scale
    # beyond max_px per axis the translation is taken as max_px
    a, b = register_halves(_translated(vol, np.array([0.0, 0.0, 3.0])), vol, 1.0)
    assert np.abs(b - _translated(vol, np.array([0.0, 0.0, 0.5]))).max() < 0.08 * scale


def test_labelling_references_of_halves_apart_by_a_translation_agree() -> None:
    """Noise-free frames of the default particle whose odd frames are fitted to a map 1.4 Å away (their origins
    moved by the projection of that translation): the half maps' fringes fall out of step, but the labeller's two
    references, registered, agree as the halves of frames at one origin do."""
    from tumblebench.reconstruct.fsc import fsc
    from tumblebench.reconstruct.lattice import LabellingFrames
    from tumblebench.reconstruct.projector import project

    n, sampling = 64, 0.45
    vol = _default_map(n, sampling)
    true = Rotation.random(240, random_state=3).as_matrix()
    frames = project(prepare_reference(vol), true)
    fr = LabellingFrames.make(frames, sampling, np.zeros((240, 2)), None, 25.0)
    lab = BranchLabeller(fr, LatticeConfig(box=n), np.eye(3)[None], 5.0, 0.3, None)
    t = np.array([2.0, -1.0, 2.0])  # (x, y, z) voxels: 3 voxels = 1.35 Å
    shifts = np.zeros((240, 2))
    shifts[1::2] = np.einsum("nij,j->ni", true[1::2], t)[:, :2]  # the odd frames' map moves by t

    def agreement(vols) -> float:
        freq, curve = fsc(vols[0], vols[1], sampling)
        return float(curve[(freq >= 1 / 3.0) & (freq <= 1 / 1.3)].mean())
    rows = np.arange(240)
    apart = (lab.build(rows[1::2], true, shifts), lab.build(rows[0::2], true, shifts))
    registered = register_halves(*apart, 6.0)
    assert agreement(apart) < 0.3 < 0.9 < agreement(registered)
    refs = lab.half_references(true, shifts, "test")
    assert np.allclose(refs[0].vft, prepare_reference(registered[0]).vft)


def test_soft_references_of_posteriors_on_one_mate_are_the_half_references_of_those_poses() -> None:
    """The annealing's maps insert every frame at its branch mates in proportion to their posteriors: with all of
    a frame's posterior on one mate they are the labelling's half maps of those poses (the same references to
    float32 rounding), and a frame's posterior split between two mates puts it in the map at both."""
    from tumblebench.reconstruct.lattice import LabellingFrames
    from tumblebench.reconstruct.projector import project

    n, sampling, m = 48, 0.45, 60
    vol = _default_map(n, sampling)
    true = Rotation.random(m, random_state=8).as_matrix()
    fr = LabellingFrames.make(project(prepare_reference(vol), true), sampling, np.zeros((m, 2)), None, 20.0)
    ops = prior_group(prior_sites("fcc", A_PT, 6.0))
    lab = BranchLabeller(fr, LatticeConfig(box=n), ops, 5.0, 0.3, None)
    lab.cands_ = branch_mates(true, ops)
    post = np.zeros(lab.cands_.shape[:2])
    post[np.arange(m), 3] = 1.0  # every frame on its mate 3
    shifts = np.zeros((*post.shape, 2))
    soft = lab.soft_references(post, shifts, "test")
    hard = lab.half_references(lab.cands_[:, 3], np.zeros((m, 2)), "test")
    for a, b in zip(soft, hard, strict=True):
        assert np.allclose(a.vft, b.vft, rtol=1e-4, atol=1e-5 * np.abs(b.vft).max())
    post[:, 5] = post[:, 3] = 0.5
    split = lab.soft_references(post, shifts, "test")
    at_5 = lab.half_references(lab.cands_[:, 5], np.zeros((m, 2)), "test")
    for a, b, c in zip(split, hard, at_5, strict=True):
        assert not np.allclose(a.vft, b.vft, atol=1e-3 * np.abs(b.vft).max())
        assert not np.allclose(a.vft, c.vft, atol=1e-3 * np.abs(c.vft).max())


def test_a_branch_mate_turned_about_the_beam_scores_as_if_projected_on_its_own() -> None:
    """The slice of a real map at ``TWIN·P`` is the complex conjugate of its slice at ``P`` (the same central plane
    read at opposite frequencies), so the labelling projects once per pair of mates: its scores of the mates
    ``TWIN·P·s`` are those of the same candidates projected on their own, to float32 rounding."""
    from tumblebench.reconstruct.lattice import LabellingFrames
    from tumblebench.reconstruct.projector import project

    n, sampling = 48, 0.45
    ref = prepare_reference(_default_map(n, sampling))
    rng = np.random.default_rng(5)
    true = Rotation.random(30, random_state=5).as_matrix()
    band = Band.make(n, r_max=n * sampling / 1.6, r_min=n * sampling / 8.0).half_plane()
    a = project_band(ref, true, band)
    b = project_band(ref, np.einsum("ij,njk->nik", TWIN, true), band)
    assert np.allclose(b, np.conj(a), rtol=1e-5, atol=1e-6 * np.abs(a).max())
    clean = project(ref, true)
    frames = clean + rng.normal(0, clean.std(), clean.shape).astype(np.float32)
    fr = LabellingFrames.make(frames, sampling, np.zeros((30, 2)), None, 20.0)
    ops = prior_group(prior_sites("fcc", bulk_lattice_constant("Pt"), 6.0))
    lab = BranchLabeller(fr, LatticeConfig(box=n), ops, 5.0, 0.3, None)
    cands = branch_mates(true, ops)
    rows, h = np.arange(30), len(ops)
    cc, _ = lab.scores(ref, rows, cands, fr.origins, lab.shift_phi)
    alone = np.concatenate([lab.scores(ref, rows, cands[:, :h], fr.origins, lab.shift_phi)[0],
                            lab.scores(ref, rows, cands[:, h:], fr.origins, lab.shift_phi)[0]], axis=1)
    assert cc.shape == (30, 2 * h) and np.allclose(cc, alone, rtol=1e-5, atol=1e-6)
    assert np.mean(cc.argmax(axis=1) % h == 0) > 0.5  # the noisy frames still prefer their own pose's mates


def test_global_candidates_bring_frames_tens_of_degrees_off_back_to_their_pose() -> None:
    """Noise-free projections of the default particle's map; half the frames start at their true pose, half at a
    pose 20–60° off (and 1 px off-centre): the best-scored global candidate puts the wrong ones within a grid
    spacing of the truth (or its projection twin: the particle has a mirror plane) and leaves the right ones as they
    are."""
    from tumblebench.reconstruct.lattice import global_candidates
    from tumblebench.reconstruct.projector import project
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.truth_map import particle_frame_positions
    from tumblebench.validation.poses import errors_at
    from tumblebench.validation.symmetry import find_symmetry

    atoms = particle_frame_positions(build_preset("default"))
    n, sampling = 72, 0.45
    vol = prior_map(atoms, n, sampling, "Pt", 0.9)
    rng = np.random.default_rng(7)
    true = Rotation.random(24, random_state=11).as_matrix()
    frames = project(prepare_reference(vol), true)
    start = true.copy()
    off = np.arange(24) % 2 == 1
    kick = Rotation.from_rotvec(rng.normal(size=(12, 3))).as_matrix()
    angles = rng.uniform(20, 60, 12)
    kick = Rotation.from_rotvec(Rotation.from_matrix(kick).as_rotvec() / np.linalg.norm(
        Rotation.from_matrix(kick).as_rotvec(), axis=1, keepdims=True) * np.radians(angles)[:, None]).as_matrix()
    start[off] = np.einsum("nij,njk->nik", kick, true[off])
    shifts = np.where(off[:, None], 1.0, 0.0) * np.array([1.0, -1.0])
    cands, cc, cand_shifts = global_candidates(frames, sampling, 25.0, vol, np.arange(24), start, shifts,
                                               LatticeConfig(box=72), 10, 120000)
    assert cands.shape == (24, 21, 3, 3) and np.array_equal(cands[:, 0], start)
    assert np.array_equal(cand_shifts[:, 0], shifts)  # the current pose keeps its origin
    best = cc.argmax(axis=1)
    poses, new_shifts, changed = cands[np.arange(24), best], cand_shifts[np.arange(24), best], best != 0
    sym = find_symmetry(atoms)
    err = errors_at(poses, true, np.eye(3), False, projection_twin=sym.mirror_rotations)  # no global rotation
    assert np.all(changed[off]) and not np.any(changed[~off])
    # 120,000 poses lie ~3.7° apart; the default particle is one atomic layer short of D3h symmetry, so a frame
    # may land on a near-mate instead (one of these twelve does)
    assert np.array_equal(poses[~off], true[~off]) and np.sum(err[off] < 4.0) >= 10
    # the right frames keep their origin; the others find the centre within a step of the shift grid (0.44 px),
    # most of them (the poses are grid poses, up to 3.7° off)
    assert np.all(new_shifts[~off] == 0) and np.median(np.abs(new_shifts[off][err[off] < 4.0])) < 0.45


def test_refine_keeps_a_global_search_that_brings_frames_back_and_says_so() -> None:
    """Noise-free projections of the cuboctahedron's map along a Brownian path (4° steps), a quarter of them
    started 30–60° off, no continuity sweep: the refinement's global search finds rotations of the particle's group
    in the half maps (a subgroup of its 24: 120 frames sample few mates), brings the frames back on the path of best
    continuity modulo that group (a local search cannot), the half maps agree better after it, so it is kept, and
    every frame ends within a few degrees of its true pose (modulo the particle's symmetry and twin)."""
    from tumblebench.reconstruct.projector import project
    from tumblebench.reconstruct.refine import RefineConfig, refine
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.truth_map import particle_frame_positions
    from tumblebench.validation.poses import errors_at
    from tumblebench.validation.symmetry import find_symmetry

    atoms = particle_frame_positions(build_preset("cuboctahedron"))
    n, sampling, m = 80, 0.45, 120
    vol = prior_map(atoms, n, sampling, "Pt", 0.9)
    walk = np.random.default_rng(5).normal(0, np.radians(4.0) / np.sqrt(3), (m, 3))
    true = np.array(list(itertools.accumulate(Rotation.from_rotvec(walk), lambda a, b: b * a))).reshape(m)
    true = np.stack([r.as_matrix() for r in true])
    frames = project(prepare_reference(vol), true)
    off = np.arange(m) % 4 == 0
    axes = Rotation.random(int(off.sum()), random_state=6).as_rotvec()
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.random.default_rng(3).uniform(30, 60, int(off.sum()))
    start = true.copy()
    start[off] = Rotation.from_rotvec(axes * np.radians(angles)[:, None]).as_matrix() @ true[off]
    cfg = RefineConfig(n_iter=1, model_iterations=0, sweep_resolution_A=0.0)
    res = refine(frames, sampling, start, np.zeros((m, 2)), 28.5, cfg)
    entry = next(h for h in res.history if "global_search_frames_changed" in h)
    assert entry["discarded"] is False and entry["band_fsc_after"] > entry["band_fsc_before"]
    assert entry["group_order"] > 1 and 24 % entry["group_order"] == 0
    sym = find_symmetry(atoms)
    err = errors_at(res.poses, true, np.eye(3), False, sym.rotations, sym.mirror_rotations)
    # no model iteration follows here, so a moved frame keeps its grid pose (120,000 poses, ~3.7° apart)
    assert np.all(err[~off] < 6.0) and np.mean(err[off] < 10.0) >= 0.8


@pytest.mark.parametrize("scale", [0.985, 1.047])
def test_prior_lattice_constant_is_fitted_to_the_frames_fringes(scale: float) -> None:
    """Noise-free projections of an fcc ball strained by ``scale`` (np6 of the seed paper's Table 1 is expanded by
    4.7 %): the fitted lattice constant is the ball's within 1 %, between the fit's scale steps as on them (the
    median z-score peaks up to ~0.7 % off the ball's constant on its coarse pose grid; the prior's path is
    insensitive at that level)."""
    from tumblebench.reconstruct.lattice import fringe_lattice_constant, search_amplitudes
    from tumblebench.reconstruct.projector import project

    n, sampling = 64, 0.45
    atoms = prior_sites("fcc", A_PT * scale, 11.0)
    frames = project(prepare_reference(prior_map(atoms, n, sampling, "Pt", 0.9)),
                     Rotation.random(40, random_state=5).as_matrix())
    band, amp, c2 = search_amplitudes(frames.astype(np.float32), n, sampling, LatticeConfig().band_A)
    a_fit = fringe_lattice_constant(amp, band, c2, n, sampling, n, 22.0, "Pt")
    assert abs(a_fit / (A_PT * scale) - 1) < 0.01


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([32, 48, 96]))
def test_whitened_rows_have_zero_shell_means_and_unit_norm(seed: int, n: int) -> None:
    band = Band.make(n, r_max=n / 3, r_min=n / 12).half_plane()
    order, starts = _shells(band)
    x = np.random.default_rng(seed).gamma(2.0, 1.0, (7, band.kx.size)).astype(np.float32) * 1e3
    w = _whiten(x, order, starts)
    assert w.dtype == np.float32 and w.shape == x.shape
    np.testing.assert_allclose(np.linalg.norm(w.astype(np.float64), axis=1), 1.0, atol=1e-5)
    ends = np.append(starts[1:], len(order))
    for a, b in zip(starts, ends, strict=True):  # each shell of each row averages to zero ...
        assert np.all(np.abs(w[:, a:b].astype(np.float64).mean(axis=1)) < 1e-6)
    # ... and the rows are the shell-sorted inputs less their shell means, normalised
    xs = x[:, order].astype(np.float64)
    ref = xs - np.concatenate([np.repeat(xs[:, a:b].mean(axis=1, keepdims=True), b - a, axis=1)
                               for a, b in zip(starts, ends, strict=True)], axis=1)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(w, ref, atol=1e-5)


def test_amplitude_search_finds_the_best_correlations_over_the_whole_grid() -> None:
    """Against the correlation of every frame with every grid pose at once: the same top poses (where their
    correlations differ by more than float32 rounding) and the z-scores against all of them, in any chunking."""
    rng = np.random.default_rng(11)
    n = 32
    band = Band.make(n, r_max=n / 3, r_min=n / 10).half_plane()
    order, starts = _shells(band)
    vol = rng.normal(size=(n, n, n)).astype(np.float32)
    grid = so3_grid(500)
    prepared = prepare_reference(vol)
    ref = _whiten(np.abs(project_band(prepared, grid, band)).astype(np.float32), order, starts)
    truth = rng.integers(0, len(grid), 13)
    x = _whiten(np.abs(project_band(prepared, grid[truth], band)).astype(np.float32)
                * rng.uniform(0.7, 1.3, (13, band.kx.size)).astype(np.float32), order, starts)
    cc = x.astype(np.float64) @ ref.T.astype(np.float64)
    want = np.argsort(-cc, axis=1, kind="stable")[:, :6]
    want_z = (np.take_along_axis(cc, want, 1) - cc.mean(1, keepdims=True)) / cc.std(1, keepdims=True)
    gap = np.abs(np.diff(np.sort(cc, axis=1)[:, ::-1][:, :7], axis=1)).min(axis=1) > 1e-5
    for chunk in (37, 128, 500):
        idx, z = amplitude_search(vol, x, band, grid, np.ones(band.kx.size), 6, chunk=chunk)
        assert np.array_equal(idx[gap], want[gap]) and np.all(np.diff(z, axis=1) <= 0)
        np.testing.assert_allclose(z, want_z, atol=1e-3)
    assert gap.sum() >= 10 and np.mean(idx[:, 0] == truth) > 0.9
