"""The proper symmetry group of a particle, found from its atoms, and pose errors scored modulo it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tumblebench.simulator.builder import DefectSpec, StrainSpec, build, build_preset, preset_spec
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.orientation import random_rotations
from tumblebench.simulator.truth_map import particle_frame_positions
from tumblebench.validation.poses import TWIN, errors_at, mirror_poses, pose_errors
from tumblebench.validation.symmetry import find_symmetry, group_name, rotation_order


def _maps_onto_itself(p: np.ndarray, rot: np.ndarray, tol: float, onto: np.ndarray | None = None) -> bool:
    d, idx = cKDTree(p if onto is None else onto).query(p @ rot.T)
    return bool(d.max() < tol and len(np.unique(idx)) == len(p))


# The presets' groups: the magic-number polyhedra keep their full proper point groups (O, D5 of D5h, I of Ih);
# the default particle's twin boundary lies one (111) layer off the centre and the twinned part is turned about a
# site of that layer, which leaves no proper rotation (C1); the same twin on the central layer gives D3 (of D3h).
# Every preset is achiral (Oh, D5h, Ih; the default keeps one mirror plane, Cs): its mirror rotations, the improper
# operations times −1, are as many as its proper rotations.
@pytest.mark.parametrize(("preset", "name", "order", "centro"), [
    ("cuboctahedron", "O", 24, True),
    ("octahedron", "O", 24, True),
    ("decahedron", "D5", 10, False),
    ("icosahedron", "I", 60, True),
    ("default", "C1", 1, False),
])
def test_preset_groups(preset: str, name: str, order: int, centro: bool) -> None:
    p = particle_frame_positions(build_preset(preset))
    g = find_symmetry(p)
    assert (g.name, g.order, g.centrosymmetric) == (name, order, centro)
    assert g.achiral and len(g.mirror_rotations) == order
    assert centro == any(np.allclose(q, np.eye(3), atol=1e-6) for q in g.mirror_rotations)
    for q in g.mirror_rotations:  # q·(−p) lands on the atoms
        assert np.allclose(q @ q.T, np.eye(3), atol=1e-9) and np.linalg.det(q) > 0
        assert _maps_onto_itself(-p, q, 1e-3, onto=p)
    assert np.allclose(g.rotations[0], np.eye(3))
    for s in g.rotations:  # each is a proper rotation that maps the atoms one-to-one onto themselves
        assert np.allclose(s @ s.T, np.eye(3), atol=1e-9) and np.linalg.det(s) > 0
        assert _maps_onto_itself(p, s, 1e-3)  # exact structures: float precision, far below any tolerance
    assert g.rms_A.max() < 1e-6


def test_central_twin_gives_d3() -> None:
    nc = build(replace(preset_spec("default"), defects=DefectSpec(twin_planes=(0,))))
    g = find_symmetry(particle_frame_positions(nc))
    assert (g.name, g.order, g.centrosymmetric) == ("D3", 6, False)  # D3h: the twin plane is a mirror, no inversion


def test_a_chiral_structure_has_no_mirror_rotations() -> None:
    # a twisted stack of three triangles (a propeller, D3): its mirror image is no rotation of it
    k = np.arange(3)
    a = np.repeat([0.0, 0.35, 0.7], 3) + np.tile(2 * np.pi * k / 3, 3)
    p = np.stack([3 * np.cos(a), 3 * np.sin(a), np.repeat([-2.5, 0.0, 2.5], 3)], axis=1)
    g = find_symmetry(p)
    assert (g.name, g.achiral, g.centrosymmetric) == ("D3", False, False)
    assert g.mirror_rotations.shape == (0, 3, 3)
    gm = find_symmetry(p * np.array([1.0, 1.0, -1.0]))  # the mirror image: the other hand, as chiral
    assert (gm.name, gm.achiral) == ("D3", False)


def test_group_follows_a_rotation_of_the_particle() -> None:
    p = particle_frame_positions(build_preset("decahedron"))
    r = Rotation.from_euler("zyz", [17, 63, -121], degrees=True).as_matrix()
    g0, g1 = find_symmetry(p), find_symmetry(p @ r.T + np.array([3.0, -2.0, 5.0]))  # any origin
    assert g1.order == g0.order == 10
    conj = np.einsum("ij,sjk,lk->sil", r, g0.rotations, r)  # r·s·rᵀ
    for s in g1.rotations:
        assert np.min(np.abs(conj - s).max(axis=(1, 2))) < 1e-6


def test_perturbed_particles_keep_a_subgroup() -> None:
    base = preset_spec("cuboctahedron")
    # static disorder of 0.03 Å rms per axis (0.05 Å per atom) is far inside the tolerance (0.1 d_NN ≈ 0.28 Å):
    # still O; each found rotation is the least-squares one, so its RMS is that of the disorder (~√2·0.05 Å)
    nc = build(replace(base, strain=StrainSpec(uniform=0.0174, static_disorder_A=0.03)), seed=1)
    g = find_symmetry(particle_frame_positions(nc))
    assert g.name == "O" and 0.02 < g.rms_A[1:].max() < 0.15
    # 2 % surface vacancies at random: a subgroup of O (its order divides 24), not O itself
    nc = build(replace(base, defects=DefectSpec(vacancy_fraction=0.02)), seed=1)
    g = find_symmetry(particle_frame_positions(nc))
    assert g.order < 24 and 24 % g.order == 0
    p = particle_frame_positions(nc)
    for s in g.rotations:
        assert _maps_onto_itself(p, s, 1e-3)
    # static disorder of 0.3 Å rms per axis (0.52 Å per atom, above the RMS tolerance): nothing but the identity
    nc = build(replace(preset_spec("icosahedron"), strain=StrainSpec(static_disorder_A=0.3)), seed=2)
    assert find_symmetry(particle_frame_positions(nc)).name == "C1"


def test_rotation_orders_and_names() -> None:
    five = Rotation.from_rotvec([0, 0, np.radians(144)]).as_matrix()
    assert rotation_order(five) == 5 and rotation_order(np.eye(3)) == 1
    cyc = np.array([Rotation.from_rotvec([0, 0, 2 * np.pi * k / 7]).as_matrix() for k in range(7)])
    assert group_name(cyc) == "C7"
    with pytest.raises(TumblebenchError, match="positions"):
        find_symmetry(np.zeros((2, 3)))


def test_pose_errors_modulo_the_found_group() -> None:
    # the frames of an icosahedron whose estimated poses sit on random symmetry mates (true·s), turned by one
    # global rotation: raw errors are large, modulo the found group they vanish (to float precision)
    g = find_symmetry(particle_frame_positions(build_preset("icosahedron")))
    rng = np.random.default_rng(3)
    true = random_rotations(200, rng)
    glob = Rotation.from_euler("xyz", [40, -10, 75], degrees=True).as_matrix()
    est = np.einsum("nij,njk,kl->nil", true, g.rotations[rng.integers(0, g.order, 200)], glob)
    assert pose_errors(est, true).median_deg > 30
    assert pose_errors(est, true, symmetry=g.rotations).median_deg < 1e-4


@given(seed=st.integers(0, 2**31 - 1), twin_fraction=st.floats(0.0, 0.5), mirrored=st.booleans())
@settings(max_examples=10, deadline=None)
def test_errors_at_the_found_alignment_are_pose_errors(seed: int, twin_fraction: float, mirrored: bool) -> None:
    # a decahedron's frames: estimates on symmetry mates and, for some frames, on the projection twin, with noise,
    # under one global rotation and hand; errors_at under the alignment pose_errors found gives its figures, and
    # judged as candidates (the estimate next to a wrong pose) the estimate is each frame's nearer one
    g = find_symmetry(particle_frame_positions(build_preset("decahedron")))
    rng = np.random.default_rng(seed)
    true = random_rotations(120, rng)
    glob = random_rotations(1, rng)[0]
    est = np.einsum("nij,njk,kl->nil", true, g.rotations[rng.integers(0, g.order, 120)], glob)
    tw = rng.random(120) < twin_fraction
    est[tw] = np.einsum("ij,njk,lk,lm->nim", TWIN, true[tw], g.mirror_rotations[0], glob)
    est = np.einsum("nij,njk->nik", est, Rotation.from_rotvec(rng.normal(0, 0.02, (120, 3))).as_matrix())
    if mirrored:
        est = mirror_poses(est)
    pe = pose_errors(est, true, symmetry=g.rotations, projection_twin=g.mirror_rotations)
    at = errors_at(est, true, pe.rotation, pe.mirrored, g.rotations, g.mirror_rotations)
    assert np.allclose(at, pe.angles_deg, atol=1e-9) and pe.median_deg < 3
    wrong = np.einsum("nij,jk->nik", est, Rotation.from_euler("x", 40, degrees=True).as_matrix())
    both = errors_at(np.stack([wrong, est], 1), true, pe.rotation, pe.mirrored, g.rotations, g.mirror_rotations)
    assert both.shape == (120, 2) and np.all(both.argmin(1) == 1)
