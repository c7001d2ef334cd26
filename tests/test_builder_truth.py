"""Truth arrays of a built nanocrystal: U model, strain, depth/CN/GCN, files, determinism, validation."""

from __future__ import annotations

import dataclasses
import io
import json

import ase.io
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.simulator.builder import (
    DefectSpec,
    NanocrystalSpec,
    ShapeSpec,
    StrainSpec,
    build,
    build_preset,
    preset_spec,
)
from tumblebench.simulator.coordination import cn_cutoff, coordination_numbers, max_interatomic_distance
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.lattice import fit_fcc_lattice
from tumblebench.simulator.mobility import MobilitySpec, degree_of_isotropy, u_iso
from tumblebench.simulator.nanocrystal import TRUTH_ARRAYS, load_nanocrystal, structure_summary, write_truth

A = 3.924


def _small(**kw: object) -> NanocrystalSpec:
    base = dict(name="t", shape=ShapeSpec(kind="cuboctahedron", n_atoms=309), defects=DefectSpec())
    base.update(kw)
    return NanocrystalSpec(**base)


@settings(max_examples=15, deadline=None)
@given(u_core=st.floats(0.001, 0.02), u_surf=st.floats(0.005, 0.1), doi_core=st.floats(0.05, 1.0),
       doi_surf=st.floats(0.05, 1.0), delta=st.floats(0.0, 8.0), transition=st.sampled_from(["smooth", "abrupt"]),
       axis=st.sampled_from(["radial", "tangential", "random"]), scatter=st.floats(0, 0.5), seed=st.integers(0, 99))
def test_every_u_is_symmetric_positive_definite(u_core, u_surf, doi_core, doi_surf, delta, transition, axis,
                                                scatter, seed) -> None:
    mob = MobilitySpec(u_core_A2=u_core, u_surface_A2=u_surf, doi_core=doi_core, doi_surface=doi_surf,
                       penetration_depth_A=delta, transition=transition, major_axis=axis, scatter=scatter)
    nc = build(_small(mobility=mob), seed=seed)
    u = nc.U
    assert np.array_equal(u, np.swapaxes(u, 1, 2))
    assert np.all(np.linalg.eigvalsh(u)[:, 0] > 0)
    doi = degree_of_isotropy(u)
    assert np.all((doi > 0) & (doi <= 1 + 1e-9))


def test_surface_moves_more_and_less_isotropically() -> None:
    nc = build_preset("default", seed=0)
    depth = nc.array("depth")
    ui, doi = nc.u_iso, degree_of_isotropy(nc.U)
    surface, core = depth < 2.0, depth > 7.0
    assert 0.005 <= np.median(ui[core]) <= 0.01
    assert 0.03 <= np.median(ui[surface]) <= 0.06
    assert np.median(doi[surface]) < np.median(doi[core])
    # U correlates with CN as in Wietfeldt et al. 2024: low-CN atoms move more
    cn = nc.array("cn")
    assert np.median(ui[cn <= 8]) > 2 * np.median(ui[cn == 12])
    # radial major axis: the largest eigenvector of outer atoms points along R
    _, v = np.linalg.eigh(nc.U[surface])
    rhat = nc.positions[surface] / np.linalg.norm(nc.positions[surface], axis=1, keepdims=True)
    assert np.median(np.abs(np.sum(v[:, :, 2] * rhat, axis=1))) > 0.99


def test_abrupt_transition_is_a_step() -> None:
    mob = MobilitySpec(transition="abrupt", scatter=0.0, u_core_A2=0.006, u_surface_A2=0.04)
    nc = build(_small(mobility=mob), seed=0)
    ui, depth = nc.u_iso, nc.array("depth")
    assert np.allclose(ui[depth < 4.5], 0.04) and np.allclose(ui[depth >= 4.5], 0.006)


def test_default_particle_positions_are_realistic() -> None:
    nc = build_preset("default", seed=0)
    assert 400 <= nc.n_atoms <= 600
    assert np.allclose(nc.positions.mean(axis=0), 0, atol=1e-6)
    # the truth lattice constant is the fit of the true positions: +1.74 % plus a little from the surface shell
    assert nc.lattice_constant == pytest.approx(fit_fcc_lattice(nc.positions, 3.9, grain=nc.array("grain"))
                                                .lattice_constant, rel=1e-9)
    assert nc.lattice_constant == pytest.approx(3.924 * 1.0174, rel=2e-3)
    assert np.median(nc.array("nn_bond")) == pytest.approx(3.924 * 1.0174 / np.sqrt(2), abs=0.01)  # ≈ 2.82 Å
    assert 20 <= max_interatomic_distance(nc.positions) <= 30
    assert np.sum(nc.array("stacking") == "hcp") > 30  # one twin plane
    assert len(np.unique(nc.array("grain"))) == 2


def test_uniform_expansion_recovered_and_truth_strain() -> None:
    for eps in (-0.03, 0.0, 0.0174, 0.05):
        nc = build(_small(strain=StrainSpec(uniform=eps, shell=0.0)), seed=0)
        fit = fit_fcc_lattice(nc.positions, 3.9)
        assert fit.lattice_constant / A - 1 == pytest.approx(eps, abs=1e-4)
        assert nc.lattice_constant == pytest.approx(A * (1 + eps), rel=1e-9)
        s = nc.array("strain")
        assert np.allclose(s[:, :3], eps, atol=1e-6) and np.allclose(s[:, 3:], 0, atol=1e-6)
        assert np.allclose(nc.array("radial_strain"), eps, atol=1e-6)
        assert np.allclose(nc.array("displacement"), nc.positions - nc.array("ideal_position"), atol=1e-7)


def test_surface_shell_strain_decays_with_depth() -> None:
    nc = build(_small(strain=StrainSpec(uniform=0.01, shell=0.02, shell_decay_A=2.8)), seed=0)
    rs, depth = nc.array("radial_strain"), nc.array("depth")
    assert np.median(rs[depth < 1.5]) > np.median(rs[depth > 6]) + 0.005
    assert np.median(rs[depth > 8]) == pytest.approx(0.01, abs=0.003)


def test_unstrained_ideal_particle_cn() -> None:
    nc = build(_small(strain=StrainSpec(uniform=0.0, shell=0.0)), seed=0)
    cn = nc.array("cn")
    counts = np.bincount(cn, minlength=13)
    # 5-shell cuboctahedron: 12 vertices CN 5, 72 edge atoms CN 7, 54 (100) atoms CN 8, 24 (111) atoms CN 9
    assert (counts[5], counts[7], counts[8], counts[9], counts[12]) == (12, 72, 54, 24, 147)
    assert np.array_equal(cn, coordination_numbers(nc.positions, cn_cutoff(A)))
    assert np.array_equal(nc.array("surface"), cn < 12)


def test_same_seed_same_bytes_and_round_trip(tmp_path) -> None:
    spec = preset_spec("twinned")
    a = build(spec, seed=5)
    b = build(dataclasses.replace(spec), seed=5)
    c = build(spec, seed=6)
    for d, nc in (("a", a), ("b", b), ("c", c)):
        (tmp_path / d).mkdir()
        write_truth(nc, tmp_path / d)
    for f in ("truth.extxyz", "truth.pdb", "structure.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "truth.extxyz").read_bytes() != (tmp_path / "c" / "truth.extxyz").read_bytes()
    back = load_nanocrystal(tmp_path / "a" / "truth.extxyz")
    for k in TRUTH_ARRAYS:
        assert k in back.atoms.arrays
        assert back.atoms.arrays[k].dtype.kind == a.atoms.arrays[k].dtype.kind
        assert np.array_equal(back.atoms.arrays[k], a.atoms.arrays[k]), k
    assert np.array_equal(back.positions, a.positions)
    for k, v in a.atoms.info.items():
        assert back.atoms.info[k] == v
    # plain ase reads it with nothing lost
    raw = ase.io.read(tmp_path / "a" / "truth.extxyz")
    assert np.array_equal(raw.arrays["U"], a.atoms.arrays["U"])
    # a second write is byte-identical (canonical floats)
    buf1, buf2 = io.StringIO(), io.StringIO()
    ase.io.write(buf1, a.atoms, format="extxyz")
    ase.io.write(buf2, back.atoms, format="extxyz")
    assert buf1.getvalue() == buf2.getvalue()
    summary = json.loads((tmp_path / "a" / "structure.json").read_text())
    assert summary == json.loads(json.dumps(structure_summary(a), default=int))
    # PDB B-factor = 8π²U_iso
    lines = [ln for ln in (tmp_path / "a" / "truth.pdb").read_text().splitlines() if ln.startswith("ATOM")]
    b_fac = np.array([float(ln[60:66]) for ln in lines])
    assert np.allclose(b_fac, 8 * np.pi**2 * u_iso(a.U), atol=0.006)


@pytest.mark.parametrize("kw,match", [
    ({"element": "Xx"}, "unknown element"),
    ({"strain": StrainSpec(uniform=0.12)}, "outside"),
    ({"strain": StrainSpec(uniform=-0.11)}, "outside"),
    ({"strain": StrainSpec(uniform=0.05, shell=0.06)}, "outside"),
    ({"mobility": MobilitySpec(penetration_depth_A=30.0)}, "penetration_depth_A"),
    ({"shape": ShapeSpec(kind="sphere", diameter_A=-1.0)}, "diameter_A"),
    ({"shape": ShapeSpec(kind="sphere", diameter_A=3.0)}, "at least 13"),
])
def test_bad_specs_raise(kw: dict, match: str) -> None:
    with pytest.raises(TumblebenchError, match=match):
        build(_small(**kw), seed=0)


def test_other_fcc_element() -> None:
    nc = build(_small(element="Au", shape=ShapeSpec(kind="icosahedron", n_atoms=147)), seed=0)
    assert set(nc.symbols) == {"Au"}
    assert nc.atoms.info["reference_lattice_constant"] == pytest.approx(4.078)


def test_emt_relaxation_then_imposed_expansion() -> None:
    spec = NanocrystalSpec(name="emt", shape=ShapeSpec(kind="cuboctahedron", n_atoms=55), defects=DefectSpec(),
                           strain=StrainSpec(uniform=0.0, shell=0.0, relax_emt=True, emt_steps=60),
                           mobility=MobilitySpec(penetration_depth_A=2.0))
    nc = build(spec, seed=0)
    # a bare particle in vacuum contracts under EMT (facts: about -2 % for Pt)
    assert np.median(nc.array("nn_bond")) < 3.924 / np.sqrt(2) - 0.02
    assert np.median(nc.array("radial_strain")) < -0.005
    assert nc.lattice_constant < 3.924
