"""CN, GCN, NN bond, radial depth and CNA stacking (simulator.coordination) — Wietfeldt et al. 2024 definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.cluster import Icosahedron, Octahedron
from ase.io import read
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tumblebench.simulator.coordination import (
    cn_cutoff,
    coordination_numbers,
    generalized_coordination,
    local_stacking,
    max_interatomic_distance,
    neighbour_lists,
    nn_bond_lengths,
    radial_depth,
)

A = 3.924
DATA = Path(__file__).parent / "data"


def test_cutoff_is_seed_004_formula() -> None:
    assert cn_cutoff(A) == pytest.approx(A / 2 * (1 + 1 / np.sqrt(2)))
    # between the first (a/√2) and second (a) neighbour shells
    assert A / np.sqrt(2) < cn_cutoff(A) < A


def test_cuboctahedron_cn_of_vertices_edges_facets_and_interior() -> None:
    pos = Octahedron("Pt", 7, 3, latticeconstant=A).positions  # 4-shell cuboctahedron, 147 atoms
    cn = coordination_numbers(pos, cn_cutoff(A))
    counts = np.bincount(cn, minlength=13)
    assert len(pos) == 147
    # 12 vertices CN 5, 24 edges x 2 atoms CN 7, 6 (100) facets x 4 atoms CN 8, 8 (111) facets x 1 atom CN 9
    assert counts[5] == 12 and counts[7] == 48 and counts[8] == 24 and counts[9] == 8
    assert counts[12] == 55  # every interior atom of the ideal particle has CN 12
    assert counts.sum() == 147


def test_octahedron_cn_of_vertices_edges_facets_and_interior() -> None:
    pos = Octahedron("Pt", 5, 0, latticeconstant=A).positions  # 85 atoms
    counts = np.bincount(coordination_numbers(pos, cn_cutoff(A)), minlength=13)
    assert counts[4] == 6 and counts[7] == 36 and counts[9] == 24 and counts[12] == 19


def test_icosahedron_vertices_and_core() -> None:
    pos = Icosahedron("Pt", 3, latticeconstant=A).positions  # 55 atoms
    cn = coordination_numbers(pos, cn_cutoff(A))
    r = np.linalg.norm(pos - pos.mean(0), axis=1)
    assert np.all(cn[np.argsort(r)[:13]] == 12)
    assert np.all(cn[np.argsort(-r)[:12]] == 6)


def test_neighbour_list_is_symmetric_and_sorted() -> None:
    pos = Octahedron("Pt", 6, 2, latticeconstant=A).positions
    nl = neighbour_lists(pos, cn_cutoff(A))
    m = nl.matrix()
    assert (m != m.T).nnz == 0
    assert np.allclose(nl.distances, A / np.sqrt(2))
    for i in (0, 5, 17):
        assert np.all(np.diff(nl.neighbours(i)) > 0)


def test_gcn_seed_004_definition() -> None:
    pos = Octahedron("Pt", 7, 3, latticeconstant=A).positions
    cut = cn_cutoff(A)
    cn = coordination_numbers(pos, cut)
    gcn = generalized_coordination(pos, cut)
    nl = neighbour_lists(pos, cut)
    for i in range(0, len(pos), 7):  # explicit definition on a sample of atoms
        nb = nl.neighbours(i)
        assert gcn[i] == pytest.approx(cn[nb].sum() / cn[nb].max())
    # an atom whose neighbours are all bulk-like has GCN = 12
    r = np.linalg.norm(pos, axis=1)
    assert gcn[np.argmin(r)] == pytest.approx(12.0)
    assert np.all(generalized_coordination(pos, cut, cn_max=12) <= 12 + 1e-12)


def test_nn_bond_and_depth() -> None:
    pos = Octahedron("Pt", 7, 3, latticeconstant=A).positions
    assert np.allclose(nn_bond_lengths(pos), A / np.sqrt(2))
    d = radial_depth(pos)
    dmax = max_interatomic_distance(pos)
    assert dmax == pytest.approx(6 * A / np.sqrt(2))  # cuboctahedron: vertex to opposite vertex
    assert d.min() == pytest.approx(0.0, abs=1e-9)
    assert d.max() == pytest.approx(dmax / 2)


def test_stacking_of_bulk_fcc_and_hcp() -> None:
    fcc = bulk("Pt", "fcc", a=A, cubic=True).repeat((4, 4, 4))
    st_fcc = local_stacking(fcc.positions, cn_cutoff(A))
    centre = np.linalg.norm(fcc.positions - fcc.positions.mean(0), axis=1) < 3.0
    assert np.all(st_fcc[centre] == "fcc")
    d = A / np.sqrt(2)
    hcp = bulk("Pt", "hcp", a=d, c=d * np.sqrt(8 / 3)).repeat((5, 5, 4))
    st_hcp = local_stacking(hcp.positions, cn_cutoff(A))
    centre = np.linalg.norm(hcp.positions - hcp.positions.mean(0), axis=1) < 3.0
    assert centre.sum() > 0 and np.all(st_hcp[centre] == "hcp")
    # surface atoms are 'other' in a finite cluster
    cn = coordination_numbers(hcp.positions, cn_cutoff(A))
    assert np.all(st_hcp[cn < 12] == "other")


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shift=st.tuples(*[st.floats(-50, 50)] * 3))
def test_metrics_invariant_under_rotation_translation_permutation(seed: int, shift: tuple[float, ...]) -> None:
    rng = np.random.default_rng(seed)
    pos = Octahedron("Pt", 8, 2, latticeconstant=A).positions
    pos = pos + rng.normal(0, 0.08, pos.shape)  # generic (non-degenerate) positions
    rot = Rotation.random(random_state=seed).as_matrix()
    perm = rng.permutation(len(pos))
    pos2 = (pos @ rot.T + np.asarray(shift))[perm]
    cut = cn_cutoff(A)
    assert np.array_equal(coordination_numbers(pos, cut)[perm], coordination_numbers(pos2, cut))
    assert np.allclose(generalized_coordination(pos, cut)[perm], generalized_coordination(pos2, cut))
    assert np.allclose(radial_depth(pos)[perm], radial_depth(pos2), atol=1e-9)
    assert np.allclose(nn_bond_lengths(pos)[perm], nn_bond_lengths(pos2))
    assert np.array_equal(local_stacking(pos, cut)[perm], local_stacking(pos2, cut))


def test_real_particle_stage1() -> None:
    pos = read(DATA / "stage1_docked_ATMS.pdb").positions
    assert len(pos) == 314
    cn = coordination_numbers(pos, cn_cutoff(3.912))
    assert np.median(cn) == 10
    assert np.median(nn_bond_lengths(pos)) == pytest.approx(2.68, abs=0.005)
    assert max_interatomic_distance(pos) == pytest.approx(21.6, abs=0.05)


def test_gcn_of_close_packed_facets_matches_calle_vallejo() -> None:
    # large octahedron: central (111) facet atoms have GCN 7.5 (Pt(111) terrace); Wietfeldt 2024's CN_max is 12 there
    pos = Octahedron("Pt", 9, 0, latticeconstant=A).positions
    cut = cn_cutoff(A)
    cn, gcn = coordination_numbers(pos, cut), generalized_coordination(pos, cut)
    assert gcn[cn == 9].max() == pytest.approx(7.5)
    # (100) terraces of a truncated octahedron: CN 8, GCN 80/12 = 6.67
    pos = Octahedron("Pt", 12, 4, latticeconstant=A).positions
    cn, gcn = coordination_numbers(pos, cut), generalized_coordination(pos, cut)
    assert gcn[cn == 8].max() == pytest.approx(80 / 12)
