"""Brownian dynamics: rotation on SO(3), OU translation/height, schedules, thermal draws, dissolution."""

from __future__ import annotations

import numpy as np
import pytest
from ase.cluster import Octahedron
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tumblebench.simulator._dynamics_kernels import compose_rotation_increments
from tumblebench.simulator.dynamics import (
    Dissolution,
    DissolutionConfig,
    DynamicsConfig,
    HeightConfig,
    LiquidConfig,
    RotationConfig,
    TranslationConfig,
    displacement_factors,
    ou_path,
    rotational_diffusion_path,
    simulate_trajectory,
    thermal_positions,
    time_grid,
)
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.orientation import rotation_angle_deg


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rotation_increments_compose_like_scipy(seed):
    rng = np.random.default_rng(seed)
    omega = rng.normal(scale=0.3, size=(7, 3))
    q0 = Rotation.random(random_state=seed).as_quat()
    quats = compose_rotation_increments(q0, omega)
    expected = Rotation.from_quat(q0)
    for k in range(7):
        expected = Rotation.from_rotvec(omega[k]) * expected  # lab-frame increment applied after the pose
        assert rotation_angle_deg(Rotation.from_quat(quats[k + 1]).as_matrix(), expected.as_matrix()) < 1e-6


def test_rotational_diffusion_step_statistics_and_decorrelation():
    d_rot, dt, n = 1.0, 0.01, 40000
    times = np.arange(n) * dt
    poses = rotational_diffusion_path(times, np.full(n, d_rot), np.eye(3), np.random.default_rng(3))
    # proper rotations
    assert np.allclose(np.einsum("kij,kil->kjl", poses, poses), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(poses), 1.0)
    # mean squared step angle = 6 D dt for a Gaussian rotation vector of variance 2 D dt per axis
    theta = np.radians(rotation_angle_deg(poses[1:], poses[:-1]))
    assert np.mean(theta**2) == pytest.approx(6 * d_rot * dt, rel=0.03)
    # a body axis decorrelates as exp(-2 D t)
    for lag_steps in (10, 50):
        u = poses[:, :, 2]  # lab image of the particle's z axis
        corr = np.mean(np.sum(u[lag_steps:] * u[:-lag_steps], axis=1))
        assert corr == pytest.approx(np.exp(-2 * d_rot * lag_steps * dt), abs=0.06)


def test_ou_path_stationary_statistics():
    sigma, diff, dt, n = 4.0, 32.0, 0.01, 100000
    x = ou_path(np.arange(n) * dt, diff, sigma, 2, np.random.default_rng(5))
    assert x.shape == (n, 2)
    assert np.var(x) == pytest.approx(sigma**2, rel=0.1)
    tau = sigma**2 / diff
    lag1 = np.mean(x[1:] * x[:-1]) / np.mean(x * x)
    assert lag1 == pytest.approx(np.exp(-dt / tau), abs=0.005)
    free = ou_path(np.arange(n) * dt, diff, 0.0, 2, np.random.default_rng(5))
    steps = np.diff(free, axis=0)
    assert np.var(steps) == pytest.approx(2 * diff * dt, rel=0.03)


def test_time_grid_midexposure_and_substeps():
    g = time_grid(3, 400.0, 3)
    assert g.shape == (3, 6)
    period = 1 / 400
    assert np.allclose(g[:, 3], np.arange(3) * period + period / 2)  # exact mid-exposure
    sub = g[:, 1::2] - g[:, :1]
    assert np.allclose(sub, (2 * np.arange(3) + 1) / 6 * period)  # centres of the 3 equal parts
    with pytest.raises(TumblebenchError):
        time_grid(0, 400.0, 3)


def test_liquid_schedules_pass_through_end_points():
    for schedule in ("linear", "exponential"):
        liq = LiquidConfig(120.0, 50.0, schedule)
        h = liq.thickness(np.linspace(0, 5, 101), 5.0)
        assert h[0] == pytest.approx(120.0) and h[-1] == pytest.approx(50.0)
        assert np.all(np.diff(h) <= 1e-12)
    assert np.all(LiquidConfig(schedule="constant").thickness(np.linspace(0, 5, 5), 5.0) == 120.0)


def test_trajectory_deterministic_and_rotation_slows_as_cell_thins():
    cfg = DynamicsConfig(rotation=RotationConfig(0.6, 1.0))
    liq = LiquidConfig(120.0, 30.0, "linear")
    a = simulate_trajectory(cfg, liq, 400, 400.0, 3, np.random.default_rng(11))
    b = simulate_trajectory(cfg, liq, 400, 400.0, 3, np.random.default_rng(11))
    c = simulate_trajectory(cfg, liq, 400, 400.0, 3, np.random.default_rng(12))
    assert np.array_equal(a.poses, b.poses) and np.array_equal(a.sub_shifts, b.sub_shifts)
    assert not np.allclose(a.poses, c.poses)
    assert a.rotational_diffusion[-1] == pytest.approx(0.6 * a.thickness[-1] / 120.0, rel=1e-6)
    steps = rotation_angle_deg(a.poses[1:], a.poses[:-1])
    first, last = np.mean(steps[:100] ** 2), np.mean(steps[-100:] ** 2)
    assert last < first  # D falls 4x: mean squared step falls
    # the mid-exposure pose lies between the sub-steps that bracket it
    mid_to_sub = rotation_angle_deg(a.poses[:, None], a.sub_poses)
    assert np.all(mid_to_sub[:, 1] < 5.0)


def test_translation_drift_centres_series():
    cfg = DynamicsConfig(translation=TranslationConfig(0.0, 0.0, (10.0, -4.0)),
                         height=HeightConfig(0.0, 0.0, 7.0))
    tr = simulate_trajectory(cfg, LiquidConfig(), 400, 400.0, 2, np.random.default_rng(0))
    duration = 1.0
    assert np.allclose(tr.shifts[:, 0], 10.0 * (tr.times - duration / 2))
    assert np.allclose(tr.shifts[:, 1], -4.0 * (tr.times - duration / 2))
    assert np.allclose(tr.heights, 7.0)


def test_thermal_draws_have_covariance_U():
    rng = np.random.default_rng(2)
    m = rng.normal(size=(3, 3, 3))
    U = np.einsum("aij,akj->aik", m, m) * 0.01
    U[2] = 0.0  # a frozen atom is allowed
    L = displacement_factors(U)
    assert np.allclose(np.einsum("aij,akj->aik", L, L), U, atol=1e-12)
    pos = np.zeros((3, 3))
    snaps = thermal_positions(pos, L, 40000, np.random.default_rng(9))
    cov = np.einsum("sai,saj->aij", snaps, snaps) / snaps.shape[0]
    assert np.allclose(cov, U, atol=0.05 * np.abs(U).max())
    assert np.all(snaps[:, 2] == 0.0)
    # rotated into the lab frame the covariance is A U Aᵀ
    A = Rotation.from_euler("ZYZ", [30, 60, 10], degrees=True).as_matrix()
    lab = snaps @ A.T
    cov_lab = np.einsum("sai,saj->aij", lab, lab) / snaps.shape[0]
    assert np.allclose(cov_lab[0], A @ U[0] @ A.T, atol=0.05 * np.abs(U).max())
    bad = U.copy()
    bad[0] = -np.eye(3) * 0.01
    with pytest.raises(TumblebenchError):
        displacement_factors(bad)


def test_dissolution_removes_low_coordinated_atoms_first():
    atoms = Octahedron("Pt", 7, 2)
    pos = atoms.positions
    diss = Dissolution(pos, DissolutionConfig(enabled=True, rate_per_e_per_A2=2e-3, max_cn=7, cutoff_A=3.35))
    cn0 = diss.coordination()
    rng = np.random.default_rng(0)
    left = diss.step(66.0, 0, rng)
    assert left.size > 0
    assert np.all(cn0[left] <= 7)
    assert np.all(diss.removed_frame[left] == 0) and not np.any(diss.present[left])
    # coordination counts only atoms still present
    assert np.all(diss.coordination() <= cn0) and diss.coordination().sum() < cn0.sum()
    off = Dissolution(pos, DissolutionConfig(enabled=False))
    assert off.step(66.0, 0, np.random.default_rng(0)).size == 0 and off.present.all()


def test_hopping_moves_surface_atoms_to_vacant_adsorption_sites():
    atoms = Octahedron("Pt", 7, 2)
    pos0 = atoms.positions.copy()
    cfg = DissolutionConfig(enabled=True, rate_per_e_per_A2=0.0, max_cn=7, cutoff_A=3.35,
                            hop_rate_per_e_per_A2=2e-3)
    diss = Dissolution(pos0, cfg)
    cn0 = diss.coordination()
    rng = np.random.default_rng(4)
    hops = []
    for f in range(3):
        assert diss.step(66.0, f, rng).size == 0  # no dissolution at rate 0
        hops += diss.hop(66.0, f, rng)
    assert len(hops) > 0
    moved = sorted({a for a, _ in hops})
    assert np.all(cn0[moved] <= 7)
    pos = diss.positions
    d_nn = 3.92 / np.sqrt(2)
    from scipy.spatial import cKDTree

    tree = cKDTree(pos)
    for atom, site in hops:
        assert np.linalg.norm(pos0[atom] - site) > 1.0  # really moved
        dists, _ = tree.query(site, k=4)
        # a lattice site: its neighbours at ~NN distance, at least three of them, nobody on top of it
        assert dists[1] > 0.85 * d_nn and dists[3] < 1.1 * d_nn
    assert cKDTree(pos).query(pos, k=2)[0][:, 1].min() > 0.85 * d_nn  # no two atoms overlap
    assert diss.present.all()
    off = Dissolution(pos0, DissolutionConfig(enabled=True))
    assert off.hop(66.0, 0, np.random.default_rng(0)) == []
