"""Shapes of the builder: magic numbers, sizing by diameter or atom count, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.simulator.coordination import max_interatomic_distance
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.shapes import ShapeSpec, build_shape, bulk_lattice_constant

A = 3.924


def _n(**kw: object) -> int:
    return len(build_shape(ShapeSpec(**kw), A).positions)


@pytest.mark.parametrize("shells,n", [(2, 13), (3, 55), (4, 147), (5, 309), (6, 561)])
def test_icosahedron_magic_numbers(shells: int, n: int) -> None:
    assert _n(kind="icosahedron", ase_parameters=(shells,)) == n
    assert _n(kind="icosahedron", n_atoms=n) == n
    assert (10 * shells**3 - 15 * shells**2 + 11 * shells - 3) // 3 == n


@pytest.mark.parametrize("n", [13, 55, 147, 309, 561])
def test_cuboctahedron_magic_numbers(n: int) -> None:
    shape = build_shape(ShapeSpec(kind="cuboctahedron", n_atoms=n), A)
    assert len(shape.positions) == n
    assert shape.lattice_origin is not None


@pytest.mark.parametrize("params,n", [((3, 0), 19), ((5, 0), 85), ((6, 1), 140), ((7, 2), 201), ((9, 3), 405),
                                      ((9, 2), 459), ((10, 3), 586), ((11, 3), 807)])
def test_ase_octahedron_magic_numbers(params: tuple[int, int], n: int) -> None:
    length, c = params
    assert length * (2 * length**2 + 1) // 3 - c * (c + 1) * (2 * c + 1) == n
    kind = "octahedron" if c == 0 else "truncated-octahedron"
    assert _n(kind=kind, ase_parameters=params) == n


def test_decahedron_counts_and_grains() -> None:
    assert _n(kind="decahedron", ase_parameters=(3, 3, 1)) == 192
    assert _n(kind="decahedron", ase_parameters=(4, 2, 1)) == 247
    shape = build_shape(ShapeSpec(kind="decahedron", ase_parameters=(4, 4, 1)), A)
    assert shape.lattice_origin is None
    assert len(np.unique(shape.grain)) == 5


def test_icosahedron_has_twenty_grains() -> None:
    shape = build_shape(ShapeSpec(kind="icosahedron", n_atoms=309), A)
    assert len(np.unique(shape.grain)) == 20


@settings(max_examples=15, deadline=None)
@given(n=st.integers(13, 900), aspect=st.tuples(st.floats(0.6, 1.0), st.floats(0.6, 1.0), st.just(1.0)))
def test_ellipsoid_and_sphere_by_count_are_exact(n: int, aspect: tuple[float, float, float]) -> None:
    assert _n(kind="ellipsoid", n_atoms=n, aspect=aspect) == n
    pos = build_shape(ShapeSpec(kind="sphere", n_atoms=n), A).positions
    assert len(pos) == n
    assert np.allclose(pos.mean(axis=0), 0, atol=1e-9)


@pytest.mark.parametrize("kind", ["sphere", "cuboctahedron", "octahedron", "truncated-octahedron", "wulff",
                                  "decahedron", "icosahedron"])
def test_size_by_diameter_is_close(kind: str) -> None:
    pos = build_shape(ShapeSpec(kind=kind, diameter_A=25.0), A).positions
    d = max_interatomic_distance(pos)
    # magic-size shapes come in steps of about two bond lengths
    assert abs(d - 25.0) < (0.5 if kind == "sphere" else 3.0)


def test_wulff_by_count() -> None:
    n = _n(kind="wulff", n_atoms=300)
    assert abs(n - 300) < 0.25 * 300  # ase rounds the Wulff shape to whole layers


@pytest.mark.parametrize("kw,field", [
    ({"kind": "sphere", "diameter_A": -3.0}, "diameter_A"),
    ({"kind": "sphere", "diameter_A": 0.0}, "diameter_A"),
    ({"kind": "sphere", "n_atoms": 5}, "n_atoms"),
    ({"kind": "sphere", "diameter_A": 4.0}, "at least 13"),
    ({"kind": "octahedron", "diameter_A": 3.0}, "at least 13"),
    ({"kind": "sphere"}, "exactly one size"),
    ({"kind": "sphere", "diameter_A": 20.0, "n_atoms": 100}, "exactly one size"),
    ({"kind": "cube", "diameter_A": 20.0}, "kind"),
])
def test_bad_sizes_raise(kw: dict, field: str) -> None:
    with pytest.raises(TumblebenchError, match=field):
        build_shape(ShapeSpec(**kw), A)


def test_elements() -> None:
    assert bulk_lattice_constant("Pt") == 3.924
    assert bulk_lattice_constant("Au") == pytest.approx(4.078)
    with pytest.raises(TumblebenchError, match="unknown element"):
        bulk_lattice_constant("Xx")
    with pytest.raises(TumblebenchError, match="not an fcc metal"):
        bulk_lattice_constant("Fe")


def test_truncated_octahedron_matches_singles_reference_model() -> None:
    from pathlib import Path

    from ase.io import read

    ref = read(Path(__file__).parent / "data" / "COM_trunc-octa-3_2.7nm.pdb").positions
    ours = build_shape(ShapeSpec(kind="truncated-octahedron", ase_parameters=(10, 3)), 3.912).positions
    assert len(ours) == len(ref) == 586
    r_ref = np.sort(np.linalg.norm(ref - ref.mean(axis=0), axis=1))
    r_ours = np.sort(np.linalg.norm(ours, axis=1))
    assert np.allclose(r_ours, r_ref, atol=2e-3)  # PDB coordinates carry 3 decimals
