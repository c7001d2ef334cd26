"""Tests of the shared foundation: config loading, atomic outputs, MRC I/O, orientation, density, CLI."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tumblebench.simulator.config import from_dict, load_config
from tumblebench.simulator.density import lowpass, render_density
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import MrcStackWriter, open_stack, read_volume, write_volume
from tumblebench.simulator.orientation import euler_angles, pose_matrix, rotation_angle_deg, to_lab
from tumblebench.simulator.outputs import _commit_of, atomic_output_dir
from tumblebench.simulator.scattering import TWO_PI_A0_E, gaussian_coefficients, potential_3d


@dataclasses.dataclass(frozen=True)
class _Inner:
    depth: float = 4.5
    mode: Literal["smooth", "abrupt"] = "smooth"


@dataclasses.dataclass(frozen=True)
class _Outer:
    n: int = 3
    name: str = "x"
    inner: _Inner = _Inner()
    sizes: tuple[float, ...] = (1.0,)

    def validate(self) -> None:
        if self.n <= 0:
            raise TumblebenchError(f"field 'n' = {self.n} must be positive")


def test_config_roundtrip_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('n = 5\nsizes = [1, 2.5]\n[inner]\ndepth = 3\nmode = "abrupt"\n')
    obj = load_config(_Outer, cfg)
    assert obj == _Outer(n=5, inner=_Inner(depth=3.0, mode="abrupt"), sizes=(1.0, 2.5))
    assert isinstance(obj.inner.depth, float)
    for text, needle in [
        ("m = 1\n", "unknown field"),
        ('n = "a"\n', "expected an integer"),
        ("n = -1\n", "must be positive"),
        ('[inner]\nmode = "wobbly"\n', "not one of"),
        ("n = [\n", "not valid TOML"),
    ]:
        cfg.write_text(text)
        with pytest.raises(TumblebenchError, match=needle) as info:
            load_config(_Outer, cfg)
        assert str(cfg) in str(info.value)
    with pytest.raises(TumblebenchError, match="no such config file"):
        load_config(_Outer, tmp_path / "missing.toml")
    assert from_dict(_Outer, {}) == _Outer()


def test_atomic_output_dir_leaves_nothing_on_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as d:
        (d / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(out) as d:
        (d / "a.txt").write_text("ok")
    assert (out / "a.txt").read_text() == "ok"
    with pytest.raises(TumblebenchError, match="--overwrite"), atomic_output_dir(out):
        pass
    with atomic_output_dir(out, overwrite=True) as d:
        (d / "b.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_commit_names_head_and_marks_uncommitted_python(tmp_path: Path) -> None:
    """A run's recorded commit is HEAD, with ``-dirty`` while a tracked .py file differs from it (not for other
    files, such as results a benchmark rewrites), and None outside a checkout."""
    import subprocess

    assert _commit_of(tmp_path) is None
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "r.json").write_text("{}")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert _commit_of(tmp_path) == head
    (tmp_path / "r.json").write_text("{\"rows\": []}")
    assert _commit_of(tmp_path) == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _commit_of(tmp_path) == head + "-dirty"


def test_output_dir_has_the_users_permissions(tmp_path: Path) -> None:
    """An output directory is made like any other directory of the user: mode 0777 less the umask (not 0700)."""
    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "run") as d:
            (d / "a.txt").write_text("ok")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_mrc_volume_and_stack_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vol = rng.standard_normal((6, 7, 8)).astype(np.float32)
    write_volume(tmp_path / "v.mrc", vol, 0.358)
    back, sampling = read_volume(tmp_path / "v.mrc")
    assert np.array_equal(back, vol) and sampling == pytest.approx(0.358, rel=1e-6)
    frames = rng.standard_normal((5, 9, 10)).astype(np.float32)
    with MrcStackWriter(tmp_path / "f.mrcs", 5, 9, 10, 0.5) as w:
        w.write(0, frames[:2])
        w.write(2, frames[2:])
    stack, sampling = open_stack(tmp_path / "f.mrcs")
    assert np.array_equal(np.asarray(stack), frames) and sampling == pytest.approx(0.5)
    with pytest.raises(TumblebenchError, match="NaN"):
        vol[0, 0, 0] = np.nan
        write_volume(tmp_path / "n.mrc", vol, 1.0)
        read_volume(tmp_path / "n.mrc")
    (tmp_path / "bad.mrc").write_bytes(b"not an mrc")
    with pytest.raises(TumblebenchError, match=r"bad\.mrc"):
        read_volume(tmp_path / "bad.mrc")


def test_stack_writer_abort_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError), MrcStackWriter(tmp_path / "f.mrcs", 3, 4, 4, 1.0) as w:
        w.write(0, np.zeros((1, 4, 4), np.float32))
        raise ValueError
    assert list(tmp_path.iterdir()) == []


angles = st.tuples(st.floats(-180, 180), st.floats(0.5, 179.5), st.floats(-180, 180))


@settings(max_examples=50, deadline=None)
@given(angles)
def test_relion_euler_roundtrip(a: tuple[float, float, float]) -> None:
    A = pose_matrix(*a)
    assert np.allclose(A @ A.T, np.eye(3), atol=1e-12) and np.linalg.det(A) == pytest.approx(1.0)
    assert np.allclose(pose_matrix(*euler_angles(A)), A, atol=1e-9)


def test_relion_matrix_matches_relion_formula() -> None:
    # RELION's Euler_angles2matrix written out (src/euler.cpp), angles alpha=rot, beta=tilt, gamma=psi.
    rot, tilt, psi = np.radians([30.0, 50.0, -70.0])
    ca, sa, cb, sb, cg, sg = np.cos(rot), np.sin(rot), np.cos(tilt), np.sin(tilt), np.cos(psi), np.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    relion = np.array([
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ])
    assert np.allclose(pose_matrix(30.0, 50.0, -70.0), relion, atol=1e-12)
    # tilt 90, rot 0: the beam looks along the particle's +x axis (RELION's projection direction).
    assert np.allclose(pose_matrix(0, 90, 0).T @ [0, 0, 1], [1, 0, 0], atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(angles, angles)
@example((0.0, 0.5, 0.0), (0.0, 0.5, 180.0))  # a half turn: arcsin of the Frobenius distance lost 1.7e-6°
def test_rotations_compose_and_distance(a, b) -> None:
    A, B = pose_matrix(*a), pose_matrix(*b)
    # composing: applying A then B equals the single pose B @ A
    x = np.array([[1.0, 2.0, 3.0]])
    assert np.allclose(to_lab(to_lab(x, A), B), to_lab(x, B @ A))
    ang = rotation_angle_deg(A, B)
    assert ang == pytest.approx(np.degrees(Rotation.from_matrix(A @ B.T).magnitude()), abs=1e-6)
    assert rotation_angle_deg(A, A) == pytest.approx(0.0, abs=1e-5)


def test_origin_shift_convention() -> None:
    lab = to_lab(np.zeros((1, 3)), np.eye(3), (2.0, -1.0))
    assert np.allclose(lab[0, :2], [-2.0, 1.0])


def test_density_peak_and_integral() -> None:
    sampling = 0.1
    n = 81
    c = (n // 2) * sampling
    v = render_density(np.array([[c, c, c]]), (n, n, n), sampling, U=np.array([0.02]))
    a, _ = gaussian_coefficients("Pt")
    # with U the narrowest Gaussian is well sampled at 0.1 Å: the voxel sum is the analytic integral
    assert v.sum() * sampling**3 == pytest.approx(TWO_PI_A0_E * a.sum(), rel=2e-3)
    static = render_density(np.array([[c, c, c]]), (n, n, n), sampling)
    assert static[n // 2, n // 2, n // 2] == pytest.approx(potential_3d("Pt", np.array([0.0]))[0], rel=1e-5)
    assert static[n // 2, n // 2, n // 2 + 10] == pytest.approx(potential_3d("Pt", np.array([1.0]))[0], rel=1e-5)


def test_density_anisotropic_u_covariance() -> None:
    sampling, n = 0.15, 64
    c = (n // 2) * sampling
    U = np.diag([0.02, 0.08, 0.2])  # x, y, z
    R = Rotation.from_euler("xyz", [20, 35, 50], degrees=True).as_matrix()
    Ur = R @ U @ R.T
    v = render_density(np.array([[c, c, c]]), (n, n, n), sampling, U=Ur[None]).astype(np.float64)
    z, y, x = np.meshgrid(*(np.arange(n) * sampling - c,) * 3, indexing="ij")
    w = v / v.sum()
    coords = np.stack([x, y, z], -1).reshape(-1, 3)
    cov = (coords * w.reshape(-1, 1)).T @ coords
    a, b = gaussian_coefficients("Pt")
    static_var = np.sum(a * b / (8 * np.pi**2)) / a.sum()
    assert np.allclose(cov - static_var * np.eye(3), Ur, atol=4e-3)


def test_density_rotation_invariance() -> None:
    rng = np.random.default_rng(3)
    n, sampling = 48, 0.4
    c = (n // 2) * sampling
    pos = rng.normal(0, 2.0, (10, 3))
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()  # (x, y) -> (-y, x)
    v1 = render_density(pos + c, (n, n, n), sampling, U=np.full(10, 0.01))
    v2 = render_density(pos @ R.T + c, (n, n, n), sampling, U=np.full(10, 0.01))
    # v2(x, y) = v1(y, -x) about the centre voxel n//2: v2[z, iy, ix] = v1[z, n - ix, iy]
    iy, ix = np.meshgrid(np.arange(1, n), np.arange(1, n), indexing="ij")
    assert np.allclose(v2[:, iy, ix], v1[:, n - ix, iy], atol=1e-4 * v1.max())


def test_lowpass_removes_high_frequencies() -> None:
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((32, 32, 32)).astype(np.float32)
    out = lowpass(vol, 1.0, 4.0)
    ft = np.abs(np.fft.fftn(out))
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.fft.fftfreq(32),) * 3, indexing="ij")))
    assert ft[k > 0.26].max() < 1e-3 * ft.max()
    assert np.allclose(lowpass(out, 1.0, 4.0), out, atol=1e-4)


def test_unknown_element_is_a_clear_error() -> None:
    with pytest.raises(TumblebenchError, match="Xx"):
        gaussian_coefficients("Xx")
