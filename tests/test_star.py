"""RELION 3.1 STAR files of a series: round trips, Euler angles, validation, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.orientation import euler_angles, random_rotations, rotation_angle_deg
from tumblebench.simulator.star import PARTICLE_COLUMNS, image_names, read_star, star_poses, write_star


def _tables(poses: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = poses.shape[0]
    ang = euler_angles(poses).reshape(n, 3)
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
        "rlnSphericalAberration": [0.0], "rlnAmplitudeContrast": [0.0], "rlnImagePixelSize": [0.358],
        "rlnImageSize": [192], "tbMode": ["projection"], "tbBoxSize": [128],
    })
    t = np.arange(n) / 400 + 1 / 800
    particles = pd.DataFrame({
        "rlnImageName": image_names(n), "rlnAngleRot": ang[:, 0], "rlnAngleTilt": ang[:, 1],
        "rlnAnglePsi": ang[:, 2], "rlnCoordinateX": np.full(n, 96.5), "rlnCoordinateY": np.full(n, 95.25),
        "rlnOriginXAngst": np.zeros(n), "rlnOriginYAngst": np.zeros(n), "rlnDefocusU": np.full(n, 80.0),
        "rlnDefocusV": np.full(n, 80.0), "rlnDefocusAngle": np.zeros(n), "rlnOpticsGroup": np.ones(n, int),
        "tbTime": t, "tbDose": np.full(n, 66.3), "tbCumulativeDose": 66.3 * (np.arange(n) + 1),
        "tbLiquidThickness": np.linspace(120, 50, n), "tbHeight": np.linspace(-3, 3, n),
    })
    return optics, particles


@pytest.mark.filterwarnings("ignore:Gimbal lock")
@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_star_euler_angles_round_trip(tmp_path_factory, seed):
    poses = random_rotations(25, np.random.default_rng(seed))
    poses[0] = np.eye(3)  # gimbal-lock cases: tilt 0 and 180
    poses[1] = np.diag([1.0, -1.0, -1.0])
    path = tmp_path_factory.mktemp("star") / "frames.star"
    write_star(path, *_tables(poses))
    optics, particles = read_star(path)
    back = star_poses(particles)
    assert np.all(rotation_angle_deg(back, poses) < 1e-4)
    assert particles["rlnImageName"].iloc[0] == "000001@frames.mrcs"
    assert list(particles.columns[: len(PARTICLE_COLUMNS)]) == list(PARTICLE_COLUMNS)
    assert optics["tbMode"].iloc[0] == "projection" and int(optics["tbBoxSize"].iloc[0]) == 128


def test_star_is_relion31_and_deterministic(tmp_path):
    poses = random_rotations(5, np.random.default_rng(0))
    a, b = tmp_path / "a.star", tmp_path / "b.star"
    write_star(a, *_tables(poses))
    write_star(b, *_tables(poses))
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "# version 30001" in text and "data_optics" in text and "data_particles" in text
    blocks = starfile.read(a)  # plain starfile reads it too
    assert set(blocks) == {"optics", "particles"}
    assert len(blocks["particles"]) == 5


def test_star_rejects_missing_columns_and_corrupt_files(tmp_path):
    optics, particles = _tables(random_rotations(3, np.random.default_rng(1)))
    with pytest.raises(TumblebenchError, match="rlnDefocusU"):
        write_star(tmp_path / "x.star", optics, particles.drop(columns=["rlnDefocusU"]))
    assert not (tmp_path / "x.star").exists()
    bad = particles.copy()
    bad.loc[1, "tbDose"] = np.nan
    with pytest.raises(TumblebenchError, match="tbDose"):
        write_star(tmp_path / "x.star", optics, bad)
    bad_group = particles.copy()
    bad_group["rlnOpticsGroup"] = 2
    with pytest.raises(TumblebenchError, match="optics group"):
        write_star(tmp_path / "x.star", optics, bad_group)
    (tmp_path / "c.star").write_text("data_particles\nloop_\n_rlnImageName #1\n000001@frames.mrcs\n")
    with pytest.raises(TumblebenchError, match=r"data_optics|column"):
        read_star(tmp_path / "c.star")
    (tmp_path / "g.star").write_bytes(b"\x00\xff garbage")
    with pytest.raises(TumblebenchError):
        read_star(tmp_path / "g.star")
    with pytest.raises(TumblebenchError, match="no such"):
        read_star(tmp_path / "missing.star")
