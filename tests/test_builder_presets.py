"""Presets: every preset builds; table1-np1..8 match Wietfeldt 2024's Table 1 atom counts and diameters within 5 %."""

from __future__ import annotations

import numpy as np
import pytest

from tumblebench.simulator.builder import PRESETS, TABLE1, build_preset
from tumblebench.simulator.coordination import max_interatomic_distance
from tumblebench.simulator.mobility import degree_of_isotropy
from tumblebench.simulator.nanocrystal import structure_summary

REQUIRED = ("default", "cuboctahedron", "decahedron", "icosahedron", "twinned",
            *(f"table1-np{k}" for k in range(1, 9)))


def test_required_presets_listed() -> None:
    assert set(REQUIRED) <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_with_sane_truth(name: str) -> None:
    nc = build_preset(name, seed=0)
    s = structure_summary(nc)
    assert 13 <= s["n_atoms"] <= 1000
    assert 2.7 < s["median_nn_bond_A"] < 2.95
    assert np.min(nc.array("nn_bond")) > 0.85 * 3.924 / np.sqrt(2)
    assert np.all(np.linalg.eigvalsh(nc.U)[:, 0] > 0)
    doi = degree_of_isotropy(nc.U)
    assert np.all((doi > 0) & (doi <= 1))
    assert set(np.unique(nc.array("stacking"))) <= {"fcc", "hcp", "other"}


@pytest.mark.parametrize("k", sorted(TABLE1))
def test_table1_presets_match_counts_and_diameters(k: int) -> None:
    n, diameter, strain_pct = TABLE1[k]
    nc = build_preset(f"table1-np{k}", seed=0)
    assert abs(nc.n_atoms / n - 1) <= 0.05
    assert abs(max_interatomic_distance(nc.positions) / diameter - 1) <= 0.05
    assert np.median(nc.array("radial_strain")) * 100 == pytest.approx(strain_pct, abs=0.05)


def test_kinds_of_named_presets() -> None:
    assert build_preset("icosahedron").atoms.info["shape"] == "icosahedron"
    assert len(np.unique(build_preset("icosahedron").array("grain"))) == 20
    assert len(np.unique(build_preset("decahedron").array("grain"))) == 5
    assert build_preset("cuboctahedron").n_atoms == 561
    tw = build_preset("twinned")
    assert len(np.unique(tw.array("grain"))) == 4
