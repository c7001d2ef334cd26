"""Numba kernels of the atom analysis stage: fast isotropic Gaussian splatting for the threshold scan."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def splat_isotropic(out: np.ndarray, centres_vox: np.ndarray, amplitude: np.ndarray, sigma_vox: float,
                    radius_vox: float) -> None:
    """Add Σ_a amplitude[a]·exp(−|r − c_a|²/(2σ²)) to ``out`` [z, y, x] in place.

    ``centres_vox`` are (x, y, z) in voxel units (voxel (iz, iy, ix) centred at (ix, iy, iz)); each atom
    contributes within ``radius_vox`` voxels. Parallel over z planes (no two threads write one voxel).
    """
    nz, ny, nx = out.shape
    n = centres_vox.shape[0]
    inv = 0.5 / (sigma_vox * sigma_vox)
    r2 = radius_vox * radius_vox
    for iz in numba.prange(nz):
        for a in range(n):
            dz = iz - centres_vox[a, 2]
            if dz * dz > r2:
                continue
            y0 = max(0, int(np.ceil(centres_vox[a, 1] - radius_vox)))
            y1 = min(ny - 1, int(np.floor(centres_vox[a, 1] + radius_vox)))
            x0 = max(0, int(np.ceil(centres_vox[a, 0] - radius_vox)))
            x1 = min(nx - 1, int(np.floor(centres_vox[a, 0] + radius_vox)))
            for iy in range(y0, y1 + 1):
                dy = iy - centres_vox[a, 1]
                dyz = dy * dy + dz * dz
                if dyz > r2:
                    continue
                for ix in range(x0, x1 + 1):
                    dx = ix - centres_vox[a, 0]
                    d2 = dx * dx + dyz
                    if d2 <= r2:
                        out[iz, iy, ix] += amplitude[a] * np.exp(-d2 * inv)


@numba.njit(cache=True, parallel=True)
def neighbour_sum(centres: np.ndarray, d: np.ndarray, amplitude: np.ndarray, iu: np.ndarray, indptr: np.ndarray,
                  indices: np.ndarray, table: np.ndarray, step: float, out: np.ndarray) -> None:
    """out[i, k] = Σ_{j ∈ nbrs(i)} amplitude[j]·table[iu[j], |centres[i] + d[i, k] − centres[j]|] (linear interp).

    ``d`` (N, K, 3) are window voxel offsets (Å) from each atom's centre, ``indptr``/``indices`` a CSR
    neighbour list, ``table`` (nU, nr) a radial profile sampled every ``step`` Å from 0. Parallel over atoms.
    """
    n, k = d.shape[0], d.shape[1]
    nr = table.shape[1]
    for i in numba.prange(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            a = amplitude[j]
            if a == 0.0:
                continue
            row = iu[j]
            ox = centres[i, 0] - centres[j, 0]
            oy = centres[i, 1] - centres[j, 1]
            oz = centres[i, 2] - centres[j, 2]
            for q in range(k):
                x = d[i, q, 0] + ox
                y = d[i, q, 1] + oy
                z = d[i, q, 2] + oz
                t = np.sqrt(x * x + y * y + z * z) / step
                if t >= nr - 1:
                    continue
                i0 = int(t)
                f = t - i0
                out[i, q] += a * (table[row, i0] * (1.0 - f) + table[row, i0 + 1] * f)
