"""Per-atom statistics, Eq. 1 penetration fits, model comparison, output files and the CLI of the atoms stage."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
import scipy.fft
from ase.cluster import Octahedron
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy.spatial.transform import Rotation

from tumblebench.analysis.compare import compare_models
from tumblebench.analysis.denoise import atom_transfer
from tumblebench.analysis.displacement import fit_displacements, profile_table
from tumblebench.analysis.io import read_atoms, write_atom_model
from tumblebench.analysis.model import build_atom_model
from tumblebench.analysis.penetration import eq1, fit_penetration
from tumblebench.analysis.statistics import SINGLE_COLUMNS
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import write_volume
from tumblebench.simulator.truth_map import render_truth_map
from tumblebench.validation.cli import main

SAMPLING = 0.358


def _anisotropic_atom(U: np.ndarray, offset: np.ndarray, band: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """One exactly band-limited atom with anisotropic U, built in Fourier space; returns (map, centre Å)."""
    fz = scipy.fft.fftfreq(n, d=SAMPLING)[:, None, None]
    fy = scipy.fft.fftfreq(n, d=SAMPLING)[None, :, None]
    fx = scipy.fft.rfftfreq(n, d=SAMPLING)[None, None, :]
    q2 = fx**2 + fy**2 + fz**2
    qUq = U[0, 0] * fx**2 + U[1, 1] * fy**2 + U[2, 2] * fz**2 + 2 * (U[0, 1] * fx * fy + U[0, 2] * fx * fz
                                                                    + U[1, 2] * fy * fz)
    f = atom_transfer("Pt", q2.astype(np.float32), 0.0, band) * np.exp(-2 * np.pi**2 * qUq)
    c = np.array([n // 2] * 3, float) + offset
    phase = np.exp(-2j * np.pi * SAMPLING * (fx * c[0] + fy * c[1] + fz * c[2]))
    return scipy.fft.irfftn(f * phase, s=(n, n, n)), c * SAMPLING


@settings(max_examples=8, deadline=None)
@given(seed=hs.integers(0, 10_000))
def test_anisotropic_displacement_recovered(seed):
    rng = np.random.default_rng(seed)
    R = Rotation.random(random_state=seed).as_matrix()
    ev = np.sort(rng.uniform(0.004, 0.04, 3))
    U = R @ np.diag(ev) @ R.T
    vol, c = _anisotropic_atom(U, rng.uniform(0, 1, 3), 0.8)
    fit = fit_displacements(vol, c[None], SAMPLING, 1.04, profile_table("Pt", 0.8))
    assert fit.aniso_ok[0]
    est = np.linalg.eigvalsh(fit.U[0])
    np.testing.assert_allclose(est, ev, atol=0.003)
    assert fit.u_iso[0] == pytest.approx(ev.mean(), abs=0.003)
    if ev[2] - ev[0] > 0.015:  # the major axis is found
        maj = np.linalg.eigh(fit.U[0])[1][:, 2]
        assert abs(maj @ R[:, 2]) > 0.95


def test_isotropic_u_independent_of_subvoxel_position():
    tab = profile_table("Pt", 0.8)
    for u in (0.0, 0.01, 0.03):
        vals = []
        for off in ([0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.1, 0.45]):
            vol, c = _anisotropic_atom(u * np.eye(3), np.array(off, float), 0.8)
            vals.append(fit_displacements(vol, c[None], SAMPLING, 1.04, tab).u_iso[0])
        assert np.ptp(vals) < 5e-4
        assert np.mean(vals) == pytest.approx(u, abs=1e-3)


@settings(max_examples=15, deadline=None)
@given(delta=hs.floats(2.5, 7.0), m=hs.floats(0.5, 2.0), c=hs.floats(10.2, 11.8), seed=hs.integers(0, 1000))
def test_eq1_fit_recovers_parameters(delta, m, c, seed):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0, 12, 600)
    y = eq1(depth, delta, m, c) + rng.normal(0, 0.05, depth.size)
    fit = fit_penetration(depth, y)
    assert fit.delta_A == pytest.approx(delta, abs=0.3)
    assert fit.c == pytest.approx(c, abs=0.1)
    assert 10.0 <= fit.c <= 12.0


def test_eq1_plateau_bounded_and_free():
    depth = np.linspace(0, 10, 200)
    y = eq1(depth, 4.0, 2.0, 13.0)
    bounded = fit_penetration(depth, y)
    assert bounded.c == pytest.approx(12.0)
    free = fit_penetration(depth, y, c_bounds=None)
    assert free.c == pytest.approx(13.0, abs=0.05) and free.delta_A == pytest.approx(4.0, abs=0.2)
    with pytest.raises(TumblebenchError):
        fit_penetration(depth[:10], y[:10])


def test_compare_models_counts():
    rng = np.random.default_rng(0)
    a = Octahedron("Pt", 5, 1).positions
    b = a + rng.normal(0, 0.05, a.shape)
    b = b[5:]  # 5 lost
    b = np.concatenate([b, a[:2] + np.array([30.0, 0, 0])])  # 2 gained far away
    b[0] += [2.0, 0, 0]  # one atom displaced by 2 Å (beyond 1.76)
    res = compare_models(a, b)
    assert res["n_common"] == len(a) - 6
    assert res["n_displaced"] == 1
    assert res["n_lost"] == 5
    assert res["n_gained"] == 2
    assert res["rms_shift_common_pm"] < 12


@pytest.fixture(scope="module")
def small_map(tmp_path_factory):
    at = Octahedron("Pt", 5, 1)
    pos = at.positions - at.positions.mean(axis=0)
    r = np.linalg.norm(pos, axis=1)
    u = 0.005 + 0.02 * (r > r.max() - 2.0)
    nc = types.SimpleNamespace(positions=pos, symbols=["Pt"] * len(pos), U=u[:, None, None] * np.eye(3))
    vol = render_truth_map(nc, 64, SAMPLING, 0.8)
    d = tmp_path_factory.mktemp("atoms")
    write_volume(d / "map.mrc", vol, SAMPLING)
    return d, vol, pos + 32 * SAMPLING


def test_outputs_have_single_columns_and_agree(small_map, tmp_path):
    _, vol, _ = small_map
    model = build_atom_model(vol, SAMPLING)
    out = write_atom_model(model, tmp_path / "run")
    for name in ("atoms.pdb", "atoms.extxyz", "atoms_stats.csv", "nanoparticle_stats.csv", "cn_dependent_stats.csv",
                 "penetration.json", "manifest.json"):
        assert (out / name).stat().st_size > 0
    df = pd.read_csv(out / "atoms_stats.csv")
    assert tuple(df.columns[: len(SINGLE_COLUMNS)]) == SINGLE_COLUMNS
    pos, _ = read_atoms(out)
    np.testing.assert_allclose(pos, model.positions, atol=1e-4)
    np_stats = pd.read_csv(out / "nanoparticle_stats.csv")
    assert int(np_stats["NATOMS"][0]) == model.n_atoms
    assert np_stats["MED_CN_STD"][0] == pytest.approx(np.median(df["CN_STD"]))
    cn = pd.read_csv(out / "cn_dependent_stats.csv")
    assert cn["NATOMS"].sum() == np.sum(np.isin(df["CN_STD"], cn["CN_STD"]))
    assert np.all(cn["NATOMS"] >= 2)
    pdb = [ln for ln in (out / "atoms.pdb").read_text().splitlines() if ln.startswith("ATOM")]
    assert len(pdb) == model.n_atoms
    xyz = np.array([[float(ln[30:38]), float(ln[38:46]), float(ln[46:54])] for ln in pdb])
    np.testing.assert_allclose(xyz, model.positions, atol=1e-3)  # same frame as the CSV (no voxel offset)
    pen = json.loads((out / "penetration.json").read_text())
    assert {"cn", "gcn", "u_iso", "max_int", "doi", "valid_corr"} <= set(pen)
    # surface atoms (CN < 12) move more than core atoms in this particle, and it shows
    core = df["CN_STD"] == 12
    assert df.loc[~core, "U_ISO"].median() > df.loc[core, "U_ISO"].median() + 0.01


def test_cli_atoms_and_compare(small_map, tmp_path, capsys):
    d, _, _ = small_map
    assert main(["atoms", "--map", str(d / "map.mrc"), "--element", "Pt", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert main(["atoms", "--map", str(d / "map.mrc"), "--out", str(tmp_path / "b"), "--quiet",
                 "--b-factor", "valid_corr", "--min-cn", "0"]) == 0
    capsys.readouterr()
    assert main(["atoms-compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["common_pct"] == pytest.approx(100.0)
    # existing output without --overwrite, unknown element, NaN map: exit 2, nothing written
    assert main(["atoms", "--map", str(d / "map.mrc"), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert main(["atoms", "--map", str(d / "map.mrc"), "--element", "Xx", "--out", str(tmp_path / "c"),
                 "--quiet"]) == 2
    assert not (tmp_path / "c").exists()
    noise = np.random.default_rng(0).normal(0, 1, (64, 64, 64)).astype(np.float32)
    write_volume(tmp_path / "noise.mrc", noise, SAMPLING)
    assert main(["atoms", "--map", str(tmp_path / "noise.mrc"), "--out", str(tmp_path / "n"), "--quiet"]) == 2
    assert not (tmp_path / "n").exists()
    assert main(["atoms-compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
