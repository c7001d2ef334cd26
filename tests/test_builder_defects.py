"""Planar and point defects: twin, lamellar twins, stacking fault, vacancies, adatoms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from tumblebench.simulator.builder import DefectSpec, NanocrystalSpec, ShapeSpec, StrainSpec, build
from tumblebench.simulator.coordination import cn_cutoff, local_stacking
from tumblebench.simulator.errors import TumblebenchError

A = 3.924
NN = A / np.sqrt(2)


def _spec(defects: DefectSpec, shape: ShapeSpec | None = None) -> NanocrystalSpec:
    return NanocrystalSpec(name="t", shape=shape or ShapeSpec(kind="truncated-octahedron", ase_parameters=(8, 2)),
                           defects=defects, strain=StrainSpec(uniform=0.0, shell=0.0))


def _layers(pos: np.ndarray, normal=(1, 1, 1)) -> np.ndarray:
    n = np.asarray(normal, float) / np.sqrt(3)
    h = pos @ n
    return np.round((h - h.min()) / (A / np.sqrt(3))).astype(int)


def _min_dist(pos: np.ndarray) -> float:
    d, _ = cKDTree(pos).query(pos, k=2)
    return float(d[:, 1].min())


@settings(max_examples=12, deadline=None)
@given(twins=st.lists(st.integers(-3, 2), max_size=2, unique=True), fault=st.one_of(st.none(), st.integers(-3, 2)),
       vac=st.floats(0.0, 0.1), region=st.sampled_from(["surface", "interior", "any"]), ad=st.integers(0, 6),
       seed=st.integers(0, 1000))
def test_no_two_atoms_too_close_after_any_defect(twins, fault, vac, region, ad, seed) -> None:
    faults = () if fault is None or fault in twins else (fault,)
    spec = _spec(DefectSpec(twin_planes=tuple(twins), stacking_faults=faults, vacancy_fraction=vac,
                            vacancy_region=region, n_adatoms=ad))
    nc = build(spec, seed=seed)
    assert _min_dist(nc.positions) > 0.85 * NN
    assert _min_dist(nc.array("ideal_position")) > 0.999 * NN
    n0 = 8 * (2 * 64 + 1) // 3 - 2 * 3 * 5
    assert nc.n_atoms == n0 - round(vac * n0) + ad
    assert set(np.unique(nc.array("stacking"))) <= {"fcc", "hcp", "other"}


def test_single_twin_plane_atoms_are_hcp() -> None:
    nc = build(_spec(DefectSpec(twin_planes=(0,))), seed=0)
    pos = nc.positions
    layer = _layers(pos)
    st_ = nc.array("stacking")
    hcp_layers = np.unique(layer[st_ == "hcp"])
    assert len(hcp_layers) == 1  # exactly one layer, all of it hcp, everything else fcc
    assert np.all(st_[layer == hcp_layers[0]] == "hcp")
    assert np.all(st_[layer != hcp_layers[0]] == "fcc")
    # the plane separates two grains; the plane atoms belong to the lower one
    g = nc.array("grain")
    assert np.all(g[layer > hcp_layers[0]] == 1) and np.all(g[layer <= hcp_layers[0]] == 0)
    # common neighbour analysis of the particle itself agrees on its bulk-like atoms
    cna = local_stacking(nc.array("ideal_position"), cn_cutoff(A))
    full = nc.array("cn") == 12
    assert np.array_equal(cna[full], st_[full])
    # twin: the lattice above is the mirror image of the one below; grain 1 not on grain 0's lattice
    ideal = nc.array("ideal_position")
    origin = ideal[np.flatnonzero(g == 0)[0]]
    frac = (ideal[g == 1] - origin) / (A / 2)
    off_lattice = np.any(np.abs(frac - np.round(frac)) > 1e-6, axis=1) | (np.round(frac).sum(axis=1) % 2 == 1)
    assert off_lattice.mean() > 0.5


def test_lamellar_twins_and_stacking_fault_layers() -> None:
    nc = build(_spec(DefectSpec(twin_planes=(-2, 1))), seed=0)
    layer = _layers(nc.positions)
    assert len(np.unique(layer[nc.array("stacking") == "hcp"])) == 2
    assert len(np.unique(nc.array("grain"))) == 3
    nc = build(_spec(DefectSpec(stacking_faults=(0,))), seed=0)
    layer = _layers(nc.positions)
    hcp = np.unique(layer[nc.array("stacking") == "hcp"])
    assert len(hcp) == 2 and hcp[1] - hcp[0] == 1  # an intrinsic fault: two adjacent hcp layers
    assert _min_dist(nc.positions) > 0.99 * NN


def test_vacancies_come_from_the_requested_region() -> None:
    base = build(_spec(DefectSpec()), seed=0)
    nc = build(_spec(DefectSpec(vacancy_fraction=0.1, vacancy_region="interior")), seed=3)
    assert nc.n_atoms == base.n_atoms - round(0.1 * base.n_atoms)
    # interior vacancies leave under-coordinated interior atoms
    assert np.sum((nc.array("cn") < 12) & (nc.array("depth") > 4.0)) > 0
    nc_s = build(_spec(DefectSpec(vacancy_fraction=0.1, vacancy_region="surface")), seed=3)
    # both particles are centred on their own centroid: find the shift that maps nc_s onto base's lattice
    ib, is_ = base.array("ideal_position"), nc_s.array("ideal_position")
    tree = cKDTree(ib)
    shifts = ib - is_[0]
    ok = [t for t in shifts if tree.query(is_ + t)[0].max() < 1e-4]
    assert len(ok) == 1
    _, idx = tree.query(is_ + ok[0])
    removed = np.setdiff1d(np.arange(base.n_atoms), idx)
    assert len(removed) == round(0.1 * base.n_atoms)
    assert np.all(base.array("cn")[removed] < 12)
    with pytest.raises(TumblebenchError, match="vacancy_fraction"):
        build(_spec(DefectSpec(vacancy_fraction=0.45, vacancy_region="interior")), seed=0)


def test_adatoms_sit_in_hollows() -> None:
    base = build(_spec(DefectSpec()), seed=0)
    nc = build(_spec(DefectSpec(n_adatoms=5)), seed=1)
    assert nc.n_atoms == base.n_atoms + 5
    ad = nc.positions[base.n_atoms:]
    d, _ = cKDTree(nc.positions[:base.n_atoms]).query(ad, k=3)
    assert np.allclose(d, NN * (1 + 0.0), atol=0.05 * NN)  # bonded to at least three atoms at bond length
    assert np.all(nc.array("cn")[base.n_atoms:] >= 3)
    assert np.all(nc.array("depth")[base.n_atoms:] < 1.0)  # on the outside


def test_planar_defect_errors() -> None:
    with pytest.raises(TumblebenchError, match="outside the particle"):
        build(_spec(DefectSpec(twin_planes=(40,))), seed=0)
    with pytest.raises(TumblebenchError, match="single-crystal"):
        build(_spec(DefectSpec(twin_planes=(0,)), ShapeSpec(kind="icosahedron", n_atoms=147)), seed=0)
    with pytest.raises(TumblebenchError, match="plane_normal"):
        build(_spec(DefectSpec(twin_planes=(0,), plane_normal=(1, 0, 0))), seed=0)


def test_other_twin_plane_family() -> None:
    nc = build(_spec(DefectSpec(twin_planes=(0,), plane_normal=(1, -1, 1))), seed=0)
    layer = _layers(nc.positions, (1, -1, 1))
    assert len(np.unique(layer[nc.array("stacking") == "hcp"])) == 1
