"""Orientation-free per-grain fcc lattice fit and the one strain definition (simulator.lattice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.cluster import Octahedron
from ase.io import read
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.coordination import cn_cutoff
from tumblebench.simulator.lattice import fit_fcc_lattice, radial_strain, strain_tensors, voigt_to_matrix

A = 3.924
DATA = Path(__file__).parent / "data"


@settings(max_examples=20, deadline=None)
@given(eps=st.floats(-0.05, 0.05), seed=st.integers(0, 2**31 - 1), shift=st.tuples(*[st.floats(-30, 30)] * 3))
def test_uniform_expansion_recovered_in_any_orientation(eps: float, seed: int, shift: tuple[float, ...]) -> None:
    ideal = Octahedron("Pt", 8, 3, latticeconstant=A).positions
    rot = Rotation.random(random_state=seed).as_matrix()
    ideal = ideal @ rot.T + np.asarray(shift)
    c = ideal.mean(axis=0)
    pos = c + (1 + eps) * (ideal - c)
    fit = fit_fcc_lattice(pos, lattice_constant_guess=3.92)
    assert fit.lattice_constant / A - 1 == pytest.approx(eps, abs=1e-4)
    assert fit.rms_residual < 1e-6
    assert np.all(fit.grain == 0)
    # the fitted rotation maps crystal axes onto the particle's cube axes (up to cubic symmetry)
    m = np.abs(fit.rotation.T @ rot)
    assert np.allclose(np.sort(m, axis=1), [[0, 0, 1]] * 3, atol=1e-6)
    # the ONE strain definition: uniform expansion relative to the reference lattice is eps·I everywhere
    eps_t = strain_tensors(pos, ideal, cn_cutoff(A))
    assert np.allclose(eps_t[:, :3], eps, atol=1e-10) and np.allclose(eps_t[:, 3:], 0, atol=1e-10)
    assert np.allclose(radial_strain(pos, ideal), eps, atol=1e-10)
    # ... and with the fit's own ideal positions rescaled to the reference lattice constant
    ref = fit.ideal_positions_at(A, centre=c)
    assert np.allclose(strain_tensors(pos, ref)[:, :3], eps, atol=1e-6)


def test_homogeneous_deformation_gives_symmetric_part() -> None:
    ideal = Octahedron("Pt", 7, 3, latticeconstant=A).positions
    f = np.array([[1.01, 0.004, 0.0], [0.002, 0.995, 0.003], [0.0, -0.001, 1.02]])
    pos = ideal @ f.T
    e = voigt_to_matrix(strain_tensors(pos, ideal))
    expect = 0.5 * (f + f.T) - np.eye(3)
    assert np.allclose(e, expect, atol=1e-12)
    # a rigid rotation carries no shear and (to first order) no strain
    rot = Rotation.from_rotvec([0, 0, 1e-3]).as_matrix()
    assert np.abs(strain_tensors(ideal @ rot.T, ideal)).max() < 1e-6


def test_grains_of_twinned_particle_found_without_labels() -> None:
    rot = Rotation.random(random_state=7).as_matrix()
    # one twin plane: the two grains are recovered exactly (up to relabelling)
    nc = build_preset("default", seed=0)
    fit = fit_fcc_lattice(nc.positions @ rot.T, lattice_constant_guess=3.9)
    true = nc.array("grain")
    assert len(np.unique(fit.grain)) == 2
    assert np.array_equal(fit.grain, true) or np.array_equal(fit.grain, 1 - true)
    # lamellar twins + stacking fault: lattices of different domains share every third layer, so labels are
    # ambiguous there, but every atom's ideal site is found (rotated back, rescaled to the reference lattice)
    nc = build_preset("twinned", seed=0)
    fit = fit_fcc_lattice(nc.positions @ rot.T, lattice_constant_guess=3.9)
    assert 2 <= len(np.unique(fit.grain)) <= len(np.unique(nc.array("grain")))
    ref = fit.ideal_positions_at(nc.atoms.info["reference_lattice_constant"], centre=np.zeros(3)) @ rot
    d = np.linalg.norm(ref - nc.array("ideal_position"), axis=1)
    assert np.all(d < 0.05)
    assert fit.lattice_constant == pytest.approx(nc.lattice_constant, rel=2e-3)


def test_fit_with_given_grains_matches_truth_ideal_positions() -> None:
    nc = build_preset("default", seed=0)
    fit = fit_fcc_lattice(nc.positions, 3.9, grain=nc.array("grain"))
    assert fit.rms_residual < 0.02  # only the small surface-shell strain remains
    ref = fit.ideal_positions_at(nc.atoms.info["reference_lattice_constant"], centre=np.zeros(3))
    # the fitted ideal lattice is the truth ideal lattice up to a sub-0.05 Å offset
    assert np.sqrt(np.mean(np.sum((ref - nc.array("ideal_position")) ** 2, axis=1))) < 0.05


def test_real_particle_fit() -> None:
    pos = read(DATA / "stage1_docked_ATMS.pdb").positions
    fit = fit_fcc_lattice(pos, 3.9)
    assert 3.85 < fit.lattice_constant < 4.05
    assert fit.rms_residual < 0.25
    assert np.bincount(fit.grain).max() > 0.8 * len(pos)


def test_ideal_cluster_from_file_fits_exactly() -> None:
    pos = read(DATA / "COM_trunc-octa-3_2.7nm.pdb").positions
    fit = fit_fcc_lattice(pos @ Rotation.random(random_state=1).as_matrix().T, 3.8)
    assert fit.lattice_constant == pytest.approx(3.912, abs=1e-6)
    assert fit.rms_residual < 1e-6
