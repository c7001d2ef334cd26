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


def _pose_run(tmp_path: Path, preset: str, mode: str, n: int = 120) -> tuple[Path, np.ndarray, np.ndarray]:
    """A run with the truth particle, the series' true poses and an estimate (poses.star), nothing else."""
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.nanocrystal import write_truth
    from tumblebench.simulator.series import SeriesConfig, SeriesSimulation, with_overrides
    from tumblebench.simulator.star import star_poses, write_star

    run = tmp_path / "run"
    for d in ("particle", "series", "recon"):
        (run / d).mkdir(parents=True)
    nc = build_preset(preset)
    write_truth(nc, run / "particle")
    sim = SeriesSimulation(nc, with_overrides(SeriesConfig(), mode=mode, n_frames=n), seed=0)
    optics, particles = sim.star_tables()
    write_star(run / "series" / "frames.star", optics, particles)
    return run, star_poses(particles), particles


def _write_estimate(run: Path, particles, est: np.ndarray) -> None:
    from tumblebench.simulator.orientation import euler_angles
    from tumblebench.simulator.star import read_star, write_star

    optics, _ = read_star(run / "series" / "frames.star")
    ang = euler_angles(est)
    df = particles.copy()
    df["rlnAngleRot"], df["rlnAngleTilt"], df["rlnAnglePsi"] = ang[:, 0], ang[:, 1], ang[:, 2]
    write_star(run / "recon" / "poses.star", optics, df)


def test_pose_scores_modulo_the_truths_symmetry(tmp_path: Path) -> None:
    from tumblebench.simulator.orientation import TWIN
    from tumblebench.validation.pipeline import format_scorecard
    from tumblebench.validation.scorecard import score_details

    # a cuboctahedron (O, centrosymmetric) in projection: every estimate on a random symmetry mate, a third of
    # them also turned 180° about the beam (the projection twin), all under one global rotation
    run, true, particles = _pose_run(tmp_path, "cuboctahedron", "projection")
    det = score_details(run)
    sym = det.symmetry
    assert (sym.name, sym.order, sym.centrosymmetric) == ("O", 24, True)
    rng = np.random.default_rng(0)
    glob = Rotation.from_euler("zyz", [30, 50, -20], degrees=True).as_matrix()
    est = np.einsum("nij,njk,kl->nil", true, sym.rotations[rng.integers(0, 24, len(true))], glob)
    twin = rng.random(len(true)) < 1 / 3
    est[twin] = np.einsum("ij,njk->nik", TWIN, est[twin])
    _write_estimate(run, particles, est)
    card = score_run(run)
    s, p = card["structure"], card["poses"]
    assert (s["symmetry_group"], s["symmetry_order"], s["centrosymmetric"]) == ("O", 24, True)
    assert p["median_error_deg"] > 30 and p["within_10deg_fraction"] < 0.5  # raw: the mates count as errors
    # reduced: the mates are exact, so the errors are float round-off of the Euler round trip (≪ 0.01°)
    assert p["reduced_projection_twin"] is True
    assert p["reduced_p90_error_deg"] < 0.01
    assert p["reduced_within_5deg_fraction"] == 1.0 and p["reduced_within_10deg_fraction"] == 1.0
    assert "modulo the particle's symmetry (O, order 24 + projection twin)" in format_scorecard(card)
    # the same poses in multislice: the twin differs only by the order of the slices, and is reduced too
    run2, _, particles2 = _pose_run(tmp_path / "ms", "cuboctahedron", "multislice")
    _write_estimate(run2, particles2, est)
    p2 = score_run(run2)["poses"]
    assert p2["reduced_projection_twin"] is True
    assert p2["reduced_p90_error_deg"] < 0.01
    # a decahedron (D5h): achiral but not centrosymmetric, so its twin is TWIN·A·qᵀ with q·(−X) = X, q ∉ D5; the
    # plain TWIN·A of the centrosymmetric case is no image of it and stays an error
    run4, true4, particles4 = _pose_run(tmp_path / "deca", "decahedron", "multislice")
    sym4 = score_details(run4).symmetry
    assert (sym4.name, sym4.order, sym4.centrosymmetric, sym4.achiral) == ("D5", 10, False, True)
    est4 = np.einsum("nij,njk,kl->nil", true4, sym4.rotations[rng.integers(0, 10, len(true4))], glob)
    mates = est4.copy()
    q = sym4.mirror_rotations[0]
    mates[twin] = np.einsum("ij,njk,lk,lm->nim", TWIN, true4[twin], q, glob)  # TWIN·true·qᵀ·G
    _write_estimate(run4, particles4, mates)
    p4 = score_run(run4)["poses"]
    assert p4["reduced_projection_twin"] is True and p4["reduced_p90_error_deg"] < 0.01
    plain = est4.copy()
    plain[twin] = np.einsum("ij,njk->nik", TWIN, est4[twin])
    _write_estimate(run4, particles4, plain)
    p5 = score_run(run4)["poses"]
    assert abs(p5["reduced_within_5deg_fraction"] - (1 - twin.mean())) < 0.02
    # a particle without proper symmetry (the default, twin plane off the centre; one mirror plane, so a twin): no
    # frame of a noisy estimate lies nearer its twin, so reduced = raw (the twin's re-alignment: float round-off)
    run3, true3, particles3 = _pose_run(tmp_path / "c1", "default", "multislice")
    noisy = np.einsum("nij,njk->nik", true3, Rotation.from_rotvec(rng.normal(0, 0.05, (len(true3), 3))).as_matrix())
    _write_estimate(run3, particles3, noisy)
    c3 = score_run(run3)
    assert c3["structure"]["symmetry_group"] == "C1"
    assert c3["poses"]["median_error_deg"] > 1.0
    assert c3["poses"]["reduced_median_error_deg"] == pytest.approx(c3["poses"]["median_error_deg"], rel=1e-9)
