"""Numba kernels for splatting anisotropic Gaussian atoms onto a 3D grid (see :mod:`tumblebench.simulator.density`)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True, fastmath=False)
def splat_gaussians(
    out: np.ndarray,
    positions: np.ndarray,
    amplitude: np.ndarray,
    inv_cov: np.ndarray,
    cutoff: np.ndarray,
    sampling: float,
) -> None:
    """Add Σ_atoms Σ_g amplitude[a, g]·exp(−½ dᵀ inv_cov[a, g] d) to ``out`` [z, y, x] in place.

    ``positions`` are (x, y, z) in Å with voxel (iz, iy, ix) centred at (ix, iy, iz)·sampling; each atom
    contributes inside a sphere of radius ``cutoff[a]`` Å. Parallel over z planes, so no two threads write
    the same voxel.
    """
    nz, ny, nx = out.shape
    n_atoms = positions.shape[0]
    n_g = amplitude.shape[1]
    for iz in numba.prange(nz):
        z = iz * sampling
        for a in range(n_atoms):
            dz = z - positions[a, 2]
            rc = cutoff[a]
            if dz > rc or dz < -rc:
                continue
            rxy = np.sqrt(rc * rc - dz * dz)
            y0 = max(0, int(np.ceil((positions[a, 1] - rxy) / sampling)))
            y1 = min(ny - 1, int(np.floor((positions[a, 1] + rxy) / sampling)))
            for iy in range(y0, y1 + 1):
                dy = iy * sampling - positions[a, 1]
                rem = rxy * rxy - dy * dy
                if rem < 0.0:
                    continue
                rx = np.sqrt(rem)
                x0 = max(0, int(np.ceil((positions[a, 0] - rx) / sampling)))
                x1 = min(nx - 1, int(np.floor((positions[a, 0] + rx) / sampling)))
                for ix in range(x0, x1 + 1):
                    dx = ix * sampling - positions[a, 0]
                    acc = 0.0
                    for g in range(n_g):
                        m = inv_cov[a, g]
                        q = (m[0, 0] * dx * dx + m[1, 1] * dy * dy + m[2, 2] * dz * dz
                             + 2.0 * (m[0, 1] * dx * dy + m[0, 2] * dx * dz + m[1, 2] * dy * dz))
                        acc += amplitude[a, g] * np.exp(-0.5 * q)
                    out[iz, iy, ix] += acc
