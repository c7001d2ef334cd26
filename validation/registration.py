"""Register a reconstructed map onto the truth map before scoring it (FSC against the truth).

A map from unknown poses lives in its own particle frame: rotated by the global rotation ``G`` that
:func:`validation.poses.pose_errors` finds between its poses and the true ones (``est_i ≈ true_i·G``), possibly
mirrored (the hand), and shifted. With poses ``est`` the particle-frame point ``p`` of the estimate is ``G·p`` of
the truth, so the registered map is ``V_reg(p) = V_est(Gᵀ p)`` (``V_est(M Gᵀ p)`` for the mirror image,
``M = diag(1, 1, −1)``). The rotation is optionally polished by hill climbing on the correlation with the truth,
and the shift comes from the peak of the cross-correlation (sub-voxel, parabola) and is applied in Fourier space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.fsc import fsc, resolution_at
from tumblebench.simulator.errors import TumblebenchError

MIRROR = np.diag([1.0, 1.0, -1.0])


@dataclass
class Registration:
    """Result of :func:`register_map`: the map in the truth frame and how it got there."""

    map: np.ndarray
    rotation: np.ndarray  # particle-frame matrix R with V_reg(p) = V_est(R p) before the shift
    shift_voxels: np.ndarray  # (z, y, x) applied after the rotation
    correlation: float


def rotate_map(vol: np.ndarray, matrix: np.ndarray, order: int = 3) -> np.ndarray:
    """``out(p) = vol(matrix @ p)`` about the box centre n//2; p = (x, y, z) map coordinates."""
    n = vol.shape[0]
    c = np.full(3, n // 2, float)
    perm = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float)  # xyz <-> zyx
    m_zyx = perm @ np.asarray(matrix, float) @ perm
    offset = c - m_zyx @ c
    return ndimage.affine_transform(np.asarray(vol, np.float32), m_zyx, offset=offset, order=order,
                                    mode="constant", cval=0.0).astype(np.float32)


def _shift_to(moving: np.ndarray, fixed: np.ndarray, max_shift: float) -> tuple[np.ndarray, np.ndarray]:
    fa = scipy.fft.fftn(fixed, workers=-1)
    fb = scipy.fft.fftn(moving, workers=-1)
    cc = scipy.fft.ifftn(fa * np.conj(fb), workers=-1).real
    n = np.array(cc.shape)
    grids = np.meshgrid(*[scipy.fft.fftfreq(k) * k for k in cc.shape], indexing="ij")
    cc[np.sqrt(sum(g**2 for g in grids)) > max_shift] = -np.inf
    idx = np.array(np.unravel_index(np.argmax(cc), cc.shape))
    sub = np.zeros(3)
    for ax in range(3):
        e = np.eye(3, dtype=int)[ax]
        a, b, c = cc[tuple((idx - e) % n)], cc[tuple(idx)], cc[tuple((idx + e) % n)]
        den = a - 2 * b + c
        if np.isfinite(den) and den < 0:
            sub[ax] = np.clip(0.5 * (a - c) / den, -0.5, 0.5)
    shift = np.where(idx > n // 2, idx - n, idx) + sub
    phase = np.exp(-2j * np.pi * sum(s * g / k for s, g, k in zip(shift, grids, cc.shape, strict=True)))
    out = scipy.fft.ifftn(fb * phase, workers=-1).real.astype(np.float32)
    return out, shift


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-30))


def register_map(vol: np.ndarray, truth: np.ndarray, rotation: np.ndarray | None = None, mirrored: bool = False,
                 polish_steps_deg: tuple[float, ...] = (1.0, 0.5, 0.25), max_shift_voxels: float = 10.0
                 ) -> Registration:
    """Rotate (and mirror), polish and shift ``vol`` onto ``truth``.

    Parameters
    ----------
    vol, truth
        Cubic maps of equal shape, [z, y, x].
    rotation
        Global rotation G from :func:`tumblebench.validation.poses.pose_errors` (``est ≈ true·G``); None = identity.
    mirrored
        The estimate is the mirror image (``PoseErrors.mirrored``).
    polish_steps_deg
        Hill-climbing steps of the rotation on the correlation with the truth (empty: no polishing).
    max_shift_voxels
        Largest translation searched.

    Returns
    -------
    Registration
    """
    vol = np.asarray(vol, np.float32)
    truth = np.asarray(truth, np.float32)
    if vol.shape != truth.shape or vol.ndim != 3:
        raise TumblebenchError(f"register_map: maps must have the same 3D shape, got {vol.shape}, {truth.shape}")
    g = np.eye(3) if rotation is None else np.asarray(rotation, float)
    base = (MIRROR if mirrored else np.eye(3)) @ g.T
    # polish on Fourier-cropped copies (≤ 64 voxels, i.e. to ~2 Å at 0.358 Å voxels): fast, and the
    # rotation is fixed by the lattice-scale features
    from tumblebench.reconstruct.search import fourier_crop_volume

    n = vol.shape[0]
    small = min(n, 64)
    vol_s, truth_s = fourier_crop_volume(vol, small), fourier_crop_volume(truth, small)

    def apply(mat: np.ndarray, order: int = 1, full: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
        v, t = (vol, truth) if full else (vol_s, truth_s)
        rot = rotate_map(v, mat, order)
        moved, shift = _shift_to(rot, t, max_shift_voxels * (1 if full else small / n))
        return moved, shift, _corr(moved, t)

    best_m = base
    _, _, best_c = apply(base)
    neighbours = np.concatenate([np.eye(3), -np.eye(3)])
    for step in polish_steps_deg:
        improved = True
        while improved:
            improved = False
            for nb in neighbours:
                m = best_m @ Rotation.from_rotvec(np.radians(step) * nb).as_matrix()
                _, _, c = apply(m)
                if c > best_c + 1e-6:
                    best_c, best_m, improved = c, m, True
    moved, shift, c = apply(best_m, order=3, full=True)
    return Registration(moved, best_m, shift, c)


def fsc_to_truth(vol: np.ndarray, truth: np.ndarray, sampling: float) -> dict:
    """FSC of a (registered) map against the truth: curve and resolutions at 0.5 and 0.143 (Å)."""
    freq, curve = fsc(vol, truth, sampling)
    return {"freq": freq, "fsc": curve, "fsc_0.5_A": resolution_at(freq, curve, 0.5),
            "fsc_0.143_A": resolution_at(freq, curve, 0.143)}


def score_reconstruction(run_dir, series_dir, register: bool | None = None) -> dict:
    """Score a ``reconstruct`` output directory against its series' truth (for ``demo`` and ``score``).

    Parameters
    ----------
    run_dir
        Directory with ``map.mrc``, ``poses.star``, ``summary.json`` (from ``tumblebench reconstruct``).
    series_dir
        Directory with ``frames.star`` and ``truth_map.mrc`` (from ``tumblebench simulate``).
    register
        Register the map onto the truth with the global rotation/hand of the poses; default: when the
        run's poses were not the true ones (``summary.json`` ``poses_mode`` != ``"truth"``).

    Returns
    -------
    dict
        ``median_error_deg``, ``p90_error_deg``, ``mirrored``, ``fsc_truth_0.5_A``, ``fsc_truth_0.143_A``,
        ``fsc_truth_0.5_from_3A_A`` (shells finer than 3 Å only), ``fsc_half_0.143_A``.
    """
    import json
    from pathlib import Path

    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.star import order_by_frame, read_star, star_poses
    from tumblebench.validation.poses import pose_errors

    run_dir, series_dir = Path(run_dir), Path(series_dir)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    _, est = read_star(run_dir / "poses.star")
    _, tru = read_star(series_dir / "frames.star")
    tru = order_by_frame(tru, str(series_dir / "frames.star"))
    frames = est["tbFrame"].to_numpy(int) if "tbFrame" in est else np.arange(len(est))
    pe = pose_errors(star_poses(est), star_poses(tru)[frames])
    truth, sampling = read_volume(series_dir / "truth_map.mrc")
    vol, _ = read_volume(run_dir / "map.mrc")
    if vol.shape != truth.shape:
        raise TumblebenchError(f"{run_dir / 'map.mrc'}: shape {vol.shape} differs from the truth map {truth.shape}; "
                               "reconstruct with --box equal to the series' tbBoxSize")
    if register is None:
        register = summary.get("poses_mode", "abinitio") != "truth"
    if register:
        vol = register_map(vol, truth, pe.rotation, pe.mirrored).map
    freq, curve = fsc(vol, truth, sampling)
    return {"median_error_deg": pe.median_deg, "p90_error_deg": pe.p90_deg, "mirrored": pe.mirrored,
            "fsc_truth_0.5_A": resolution_at(freq, curve, 0.5), "fsc_truth_0.143_A": resolution_at(freq, curve, 0.143),
            "fsc_truth_0.5_from_3A_A": resolution_at(freq, curve, 0.5, min_freq=1 / 3.0),
            "fsc_half_0.143_A": summary.get("fsc_half_0.143_A")}
