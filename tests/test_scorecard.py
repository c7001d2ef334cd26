"""The scorecard contract and the carrying of atoms found in a registered map into the truth frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tumblebench.simulator.density import lowpass, render_density
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.matching import match_atoms
from tumblebench.validation.registration import register_map, rotate_map
from tumblebench.validation.scorecard import SCHEMA, atoms_to_truth_frame, empty_scorecard, load_scorecard, score_run


def test_empty_scorecard_has_every_key_and_loads(tmp_path: Path) -> None:
    card = empty_scorecard()
    for name, keys in SCHEMA.items():
        assert set(card[name]) == set(keys)
    path = tmp_path / "scorecard.json"
    path.write_text(json.dumps(card))
    assert load_scorecard(path) == card
    del card["map"]["fsc_truth_0.5_A"]
    path.write_text(json.dumps(card))
    with pytest.raises(TumblebenchError, match=r"fsc_truth_0\.5_A"):
        load_scorecard(path)


def test_score_of_an_empty_run_is_all_null(tmp_path: Path) -> None:
    card = score_run(tmp_path)
    assert all(v is None for name in SCHEMA for v in card[name].values())
    with pytest.raises(TumblebenchError, match="no such run directory"):
        score_run(tmp_path / "missing")


def test_atoms_follow_the_map_registration() -> None:
    rng = np.random.default_rng(5)
    n, vs = 64, 0.4
    c = (n // 2) * vs
    true = rng.normal(0, 3.0, (12, 3))
    true = true[np.all(np.linalg.norm(true[:, None] - true[None], axis=-1) + 10 * np.eye(12) > 2.0, axis=1)]
    truth_map = lowpass(render_density(true + c, (n,) * 3, vs, U=np.full(len(true), 0.02)), vs, 1.0)
    rot = Rotation.from_euler("zyx", [25, -40, 60], degrees=True).as_matrix()
    # the "estimate": the particle rotated about the box centre, then rolled by (1, -2, 3) voxels (z, y, x)
    est_atoms = true @ rot.T + c
    est_map = rotate_map(truth_map, rot.T)
    est_map = np.roll(est_map, (1, -2, 3), axis=(0, 1, 2))
    est_atoms = est_atoms + np.array([3, -2, 1]) * vs
    # register by trying the known rotation (as pose_errors would supply it), then polishing
    reg = register_map(est_map, truth_map, rotation=rot.T, polish_steps_deg=(1.0, 0.5))
    moved = atoms_to_truth_frame(est_atoms, reg.rotation, reg.shift_voxels, n, vs)
    m = match_atoms(moved, true + c, max_dist=1.0)
    assert m.recall == 1.0 and m.precision == 1.0
    assert m.rmsd_pm < 15.0
