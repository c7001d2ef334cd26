"""Atom model building (Wietfeldt et al. 2024) on maps rendered from known atoms."""

from __future__ import annotations

import types

import numpy as np
import pytest
from ase.cluster import Decahedron, Icosahedron, Octahedron
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy.spatial.transform import Rotation

from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.denoise import check_map, denoise
from tumblebench.analysis.model import atom_positions, build_atom_model
from tumblebench.analysis.segmentation import local_maxima, segment
from tumblebench.simulator.density import lowpass, render_density
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.truth_map import render_truth_map
from tumblebench.validation.matching import match_atoms

SAMPLING = 0.358


def _particle(positions: np.ndarray, u_iso: np.ndarray) -> types.SimpleNamespace:
    pos = np.asarray(positions, float)
    U = np.asarray(u_iso, float)[:, None, None] * np.eye(3)[None]
    return types.SimpleNamespace(positions=pos, symbols=["Pt"] * len(pos), U=U)


def _cluster(length: int | str, cut: int, rot: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    if length == "deca":  # five twinned grains
        at = Decahedron("Pt", 3, 2, 1)
    elif length == "ico":  # twenty strained grains
        at = Icosahedron("Pt", 4)
    else:
        at = Octahedron("Pt", length, cut)
    pos = at.positions - at.positions.mean(axis=0)
    pos = pos @ rot.T
    r = np.linalg.norm(pos, axis=1)
    u = 0.004 + 0.02 * np.clip((r - (r.max() - 3.0)) / 3.0, 0, 1) + rng.uniform(0, 0.002, len(pos))
    return pos, u


def _render(pos: np.ndarray, u: np.ndarray, box: int, resolution: float = 0.8) -> np.ndarray:
    return render_truth_map(_particle(pos, u), box, SAMPLING, resolution)


@settings(max_examples=6, deadline=None)
@given(shape=hs.sampled_from([(5, 1), (5, 2), (6, 2), ("deca", 0), ("ico", 0)]), seed=hs.integers(0, 10_000))
def test_map_from_known_atoms_returns_them(shape, seed):
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix()
    pos, u = _cluster(*shape, rot, rng)
    box = 64
    vol = _render(pos, u, box)
    model = build_atom_model(vol, SAMPLING)
    true = pos + (box // 2) * SAMPLING
    m = match_atoms(model.positions, true)
    assert m.recall == 1.0 and m.precision == 1.0
    np.testing.assert_array_equal(atom_positions(vol, SAMPLING), model.positions)  # the model's atoms, no statistics
    assert m.rmsd_pm < 5.0
    # CN of every atom exactly right, U_iso close to the truth (map blur accounted for)
    true_cn = np.asarray(model.stats["CN_STD"])[m.pairs[:, 0]]
    from tumblebench.simulator.coordination import cn_cutoff, coordination_numbers

    ref = coordination_numbers(true, cn_cutoff(model.table1["lattice_constant_A"]))[m.pairs[:, 1]]
    assert np.all(true_cn == ref)
    u_est = model.stats["U_ISO"].to_numpy()[m.pairs[:, 0]]
    assert np.median(np.abs(u_est - u[m.pairs[:, 1]])) < 0.003
    if isinstance(shape[0], int):  # single fcc crystal built with a = 3.92 Å
        assert abs(model.table1["lattice_constant_A"] - 3.92) < 0.01


def test_rotation_by_voxel_permutation_leaves_statistics_unchanged():
    rng = np.random.default_rng(3)
    pos, u = _cluster(5, 1, Rotation.from_euler("zyx", [20, 35, 10], degrees=True).as_matrix(), rng)
    vol = _render(pos, u, 64)
    a = build_atom_model(vol, SAMPLING)
    # a 90° rotation about z of the map: (x, y) -> (y, -x) on the grid, an exact voxel permutation
    rolled = np.ascontiguousarray(np.rot90(vol, k=1, axes=(1, 2)))
    b = build_atom_model(rolled, SAMPLING)
    n = vol.shape[1]
    # map b's atoms back: rot90 over axes (y, x) sends voxel (iy, ix) to (n-1-ix, iy)
    bx, by = b.positions[:, 0], b.positions[:, 1]
    back = np.stack([(n - 1) * SAMPLING - by, bx, b.positions[:, 2]], axis=1)
    m = match_atoms(back, a.positions, max_dist=0.1)
    assert m.recall == 1.0 and m.precision == 1.0 and m.rmsd_pm < 0.5
    for col in ("CN_STD", "CN_GEN", "NN_BONDL", "U_ISO", "DOI", "VALID_CORR", "RADIAL_STRAIN", "MAX_INT", "NVOX"):
        va = a.stats[col].to_numpy(float)[m.pairs[:, 1]]
        vb = b.stats[col].to_numpy(float)[m.pairs[:, 0]]
        np.testing.assert_allclose(vb, va, rtol=1e-3, atol=2e-4, err_msg=col)
    assert a.penetration["cn"]["delta_A"] == pytest.approx(b.penetration["cn"]["delta_A"], abs=1e-3)


def test_arbitrary_rotation_leaves_statistics_unchanged():
    rng = np.random.default_rng(5)
    pos, u = _cluster(5, 1, np.eye(3), rng)
    rot = Rotation.from_euler("zyz", [33, 71, -12], degrees=True).as_matrix()
    a = build_atom_model(_render(pos, u, 64), SAMPLING)
    b = build_atom_model(_render(pos @ rot.T, u, 64), SAMPLING)
    c = (64 // 2) * SAMPLING
    back = (b.positions - c) @ rot + c
    m = match_atoms(back, a.positions, max_dist=0.3)
    assert m.recall == 1.0 and m.precision == 1.0
    for col in ("CN_STD", "CN_GEN"):
        np.testing.assert_array_equal(b.stats[col].to_numpy()[m.pairs[:, 0]], a.stats[col].to_numpy()[m.pairs[:, 1]])
    ua = a.stats["U_ISO"].to_numpy()[m.pairs[:, 1]]
    ub = b.stats["U_ISO"].to_numpy()[m.pairs[:, 0]]
    assert np.max(np.abs(ua - ub)) < 0.003  # finite windows sample the atoms differently
    assert a.table1["lattice_constant_A"] == pytest.approx(b.table1["lattice_constant_A"], abs=2e-3)
    assert a.table1["median_cn"] == b.table1["median_cn"]


def test_two_atoms_closer_than_resolution_are_split():
    box = 48
    c = (box // 2) * SAMPLING
    pos = np.array([[c - 1.3, c, c], [c + 1.3, c + 0.1, c]])  # 2.6 Å apart, map band-limited at 1.5 Å
    vol = lowpass(render_density(pos, (box,) * 3, SAMPLING, U=np.full(2, 0.03)), SAMPLING, 1.5)
    raw = check_map(vol, SAMPLING)
    C = denoise(raw, SAMPLING, "Pt", 0.01, 1.5)
    mask = np.ones(C.shape, bool)
    radius = 1.1 / SAMPLING
    peaks = local_maxima(C, mask, 0.0, 2 * radius)
    strong = peaks[C[tuple(peaks.T)] > 0.5 * C.max()]
    assert len(strong) == 2  # two maxima remain in the denoised map
    mid = np.rint(pos.mean(axis=0)[::-1] / SAMPLING).astype(int)
    t = 0.9 * float(C[tuple(mid)])  # just below the saddle between the atoms: one connected blob
    merged = segment(C, mask, t, radius, peaks, split=False)
    assert len(merged.centres_vox) == 1  # one connected blob at this threshold
    split = segment(C, mask, t, radius, peaks, split=True)
    assert split.n_split == 1
    m = match_atoms(split.centres_vox * SAMPLING, pos, max_dist=0.5)
    assert m.recall == 1.0 and m.precision == 1.0 and m.rmsd_pm < 10


def test_threshold_scan_never_scales_to_noise_and_rejects_nothing_on_clean_map():
    rng = np.random.default_rng(1)
    pos, u = _cluster(6, 2, np.eye(3), rng)
    model = build_atom_model(_render(pos, u, 64), SAMPLING)
    assert model.info["n_rejected_correlation"] == 0
    assert model.info["n_rejected_cn"] == 0
    scan = model.info["scan"]
    assert len(scan["thresholds"]) >= 15
    assert model.info["threshold"] >= model.info["threshold_t0"]


def test_real_particle_gives_back_its_314_atoms():
    from tumblebench.simulator.nanocrystal import _read_atoms  # bare PDB reader

    atoms = _read_atoms(__import__("pathlib").Path(__file__).parent / "data" / "stage1_docked_ATMS.pdb")
    pos = atoms.positions - atoms.positions.mean(axis=0)
    assert len(pos) == 314
    u = np.full(len(pos), 0.008)
    vol = _render(pos, u, 128)
    model = build_atom_model(vol, SAMPLING)
    m = match_atoms(model.positions, pos + 64 * SAMPLING)
    assert model.n_atoms == 314
    assert m.recall == 1.0 and m.precision == 1.0 and m.rmsd_pm < 5


def test_noisy_map_with_automatic_mask():
    rng = np.random.default_rng(11)
    pos, u = _cluster(6, 2, Rotation.random(random_state=4).as_matrix(), rng)
    clean = _render(pos, u, 64)
    near = clean > 0.05 * clean.max()
    sigma = np.sqrt(clean[near].var() / 2.0)
    vol = lowpass(clean + rng.normal(0, sigma, clean.shape).astype(np.float32), SAMPLING, 1.0)
    model = build_atom_model(vol, SAMPLING)
    m = match_atoms(model.positions, pos + 32 * SAMPLING)
    assert m.recall >= 0.97 and m.precision >= 0.97
    assert m.rmsd_pm < 15


@pytest.mark.parametrize("kind", ["nan", "noise", "constant", "voxel", "voxel12", "element", "flat2d", "inverted"])
def test_bad_input_is_a_clear_error(kind):
    rng = np.random.default_rng(0)
    pos, u = _cluster(5, 1, np.eye(3), rng)
    vol = _render(pos, u, 64)
    cfg = AtomsConfig()
    sampling = SAMPLING
    match = None
    if kind == "nan":
        vol[3, 4, 5] = np.nan
        match = "NaN"
    elif kind == "noise":
        vol = rng.normal(0, 1, vol.shape).astype(np.float32)
        match = "no particle above noise"
    elif kind == "constant":
        vol = np.ones_like(vol)
        match = "constant"
    elif kind == "voxel":
        sampling = 2 * SAMPLING  # header claims twice the real voxel size
        match = "voxel size"
    elif kind == "voxel12":
        sampling = 1.12 * SAMPLING  # a 12 % error in the header
        match = "voxel size"
    elif kind == "element":
        with pytest.raises(TumblebenchError, match="Xx"):
            AtomsConfig(element="Xx").validate()
        return
    elif kind == "inverted":
        vol = -vol
        match = "inverted"
    elif kind == "flat2d":
        vol = vol[0]
        match = "3D"
    with pytest.raises(TumblebenchError, match=match):
        build_atom_model(vol, sampling, cfg)
    with pytest.raises(TumblebenchError, match=match):
        atom_positions(vol, sampling, cfg)


@pytest.mark.slow
def test_demo_particle_at_snr_025_without_mask():
    """Realistic size: the default preset's truth map with white noise at per-voxel SNR 0.25, low-passed 1 Å."""
    from scipy.spatial import cKDTree

    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.truth_map import particle_frame_positions

    nc = build_preset("default", seed=0)
    true = particle_frame_positions(nc) + 64 * SAMPLING
    clean = render_truth_map(nc, 128, SAMPLING, 0.8)
    grid = np.indices(clean.shape).reshape(3, -1).T[:, ::-1] * SAMPLING
    d, _ = cKDTree(true).query(grid, distance_upper_bound=2.0)
    sigma = np.sqrt(clean[np.isfinite(d).reshape(clean.shape)].var() / 0.25)
    rng = np.random.default_rng(7)
    vol = lowpass(clean + rng.normal(0, sigma, clean.shape).astype(np.float32), SAMPLING, 1.0)
    model = build_atom_model(vol, SAMPLING)
    m = match_atoms(model.positions, true)
    assert m.recall >= 0.97 and m.precision >= 0.97 and m.rmsd_pm <= 10.0


def test_twinned_demo_particle_truth_map():
    """The demo particle (one twin plane, +1.7 % lattice): CN, lattice constant and twin stacking recovered."""
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.truth_map import particle_frame_positions

    nc = build_preset("default", seed=0)
    true = particle_frame_positions(nc) + 64 * SAMPLING
    model = build_atom_model(render_truth_map(nc, 128, SAMPLING, 0.8), SAMPLING)
    m = match_atoms(model.positions, true)
    assert m.recall == 1.0 and m.precision == 1.0 and m.rmsd_pm <= 5.0
    true_cn = np.asarray(nc.atoms.arrays["cn"])[m.pairs[:, 1]]
    assert np.mean(model.stats["CN_STD"].to_numpy()[m.pairs[:, 0]] == true_cn) >= 0.98
    assert abs(model.table1["lattice_constant_A"] - nc.lattice_constant) < 0.005
    core = true_cn == 12
    st_true = np.asarray(nc.atoms.arrays["stacking"])[m.pairs[core, 1]]
    st_est = model.stats["STACKING"].to_numpy(str)[m.pairs[core, 0]]
    assert np.sum(st_true == "hcp") > 0  # the twin plane
    assert np.mean(st_true == st_est) >= 0.98
    assert model.info["n_grains"] >= 2
