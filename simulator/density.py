"""The 3D atom density model: time-averaged electrostatic potential of vibrating atoms on a voxel grid.

Each atom is its five-Gaussian potential (:mod:`tumblebench.simulator.scattering`) convolved with its anisotropic
displacement Gaussian U, which is again a sum of Gaussians with covariance bᵢ/(8π²)·I + U — so the
time-averaged map is exact, not sampled. This one model serves the truth map of a series
(:mod:`simulator`), the map simulations of atom model building (:mod:`analysis`) and synthetic test volumes
(:mod:`reconstruct`).

Coordinates follow :mod:`tumblebench.simulator.orientation`: positions (x, y, z) in Å in the map frame, voxel
(iz, iy, ix) centred at (ix, iy, iz)·sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft

from tumblebench.simulator._density_kernels import splat_gaussians
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.grid import lowpass_filter
from tumblebench.simulator.scattering import TWO_PI_A0_E, gaussian_coefficients


def _per_atom_coefficients(elements: str | Sequence[str], n: int, table: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(elements, str):
        a, b = gaussian_coefficients(elements, table)
        return np.tile(a, (n, 1)), np.tile(b, (n, 1))
    elements = list(elements)
    if len(elements) != n:
        raise TumblebenchError(f"got {len(elements)} element symbols for {n} atoms")
    cache = {el: gaussian_coefficients(el, table) for el in set(elements)}
    return (np.array([cache[el][0] for el in elements]), np.array([cache[el][1] for el in elements]))


def render_density(
    positions: np.ndarray,
    shape: tuple[int, int, int],
    sampling: float,
    elements: str | Sequence[str] = "Pt",
    U: np.ndarray | None = None,
    occupancy: np.ndarray | None = None,
    table: str = "peng",
    cutoff_sigmas: float = 4.5,
    scale: float = 1.0,
) -> np.ndarray:
    """Render atoms as their time-averaged 3D potential on a grid.

    Parameters
    ----------
    positions
        (N, 3) atom centres (x, y, z) in Å, map frame.
    shape
        Grid shape (nz, ny, nx).
    sampling
        Voxel edge in Å.
    elements
        One symbol for all atoms or one per atom.
    U
        (N, 3, 3) anisotropic displacement tensors in Å² (or (N,) isotropic U_iso); None for static atoms.
    occupancy
        (N,) weights in [0, 1] (e.g. the fraction of a series an atom was present); default 1.
    table
        Scattering table (:func:`tumblebench.simulator.scattering.gaussian_coefficients`).
    cutoff_sigmas
        Each atom is evaluated within this many standard deviations of its widest Gaussian.
    scale
        Multiplies the result (1 gives volts).

    Returns
    -------
    numpy.ndarray
        float32 array [z, y, x] of the potential in V (times ``scale``).
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    n = pos.shape[0]
    if sampling <= 0:
        raise TumblebenchError(f"voxel size must be positive, got {sampling} Å")
    a, b = _per_atom_coefficients(elements, n, table)
    if U is None:
        Um = np.zeros((n, 3, 3))
    else:
        Um = np.asarray(U, dtype=np.float64)
        if Um.ndim == 1:
            Um = Um[:, None, None] * np.eye(3)[None]
        Um = Um.reshape(n, 3, 3)
    occ = np.ones(n) if occupancy is None else np.asarray(occupancy, dtype=np.float64).reshape(n)
    cov = (b / (8 * np.pi**2))[:, :, None, None] * np.eye(3)[None, None] + Um[:, None]
    det = np.linalg.det(cov)
    if np.any(det <= 0):
        raise TumblebenchError("displacement tensors U must be symmetric positive semi-definite")
    inv_cov = np.ascontiguousarray(np.linalg.inv(cov))
    amplitude = scale * TWO_PI_A0_E * a * occ[:, None] / ((2 * np.pi) ** 1.5 * np.sqrt(det))
    widest = np.sqrt(np.linalg.eigvalsh(cov).max(axis=(1, 2)))
    cutoff = cutoff_sigmas * widest
    out = np.zeros(tuple(int(s) for s in shape), dtype=np.float64)
    splat_gaussians(out, pos, np.ascontiguousarray(amplitude), inv_cov, np.ascontiguousarray(cutoff),
                    float(sampling))
    return out.astype(np.float32)


def lowpass(volume: np.ndarray, sampling: float, resolution: float, soft_width: float = 0.0) -> np.ndarray:
    """Band-limit ``volume`` to spatial frequencies below 1/``resolution`` (Å).

    Parameters
    ----------
    volume
        Real array (2D or 3D).
    sampling
        Voxel edge in Å.
    resolution
        Cut-off resolution in Å (frequency 1/resolution).
    soft_width
        Width of a raised-cosine edge in Å⁻¹ (0: hard edge).

    Returns
    -------
    numpy.ndarray
        The filtered array (float32).
    """
    vol = np.asarray(volume, dtype=np.float32)
    ft = scipy.fft.rfftn(vol, workers=-1)
    mask = lowpass_filter(vol.shape, sampling, resolution, soft_width, rfft=True)
    if soft_width == 0:
        mask = mask.astype(np.float32)  # 0 or 1: the product stays complex64
    return scipy.fft.irfftn(ft * mask, s=vol.shape, workers=-1).astype(np.float32)
