"""Numba kernels for the sequential parts of the Brownian dynamics (see :mod:`tumblebench.simulator.dynamics`)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def compose_rotation_increments(q0: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Left-compose rotation-vector increments onto a starting unit quaternion.

    ``q[k+1] = exp(ω[k]/2) ⊗ q[k]`` (scalar-last quaternions, Hamilton product), i.e. each increment is a
    rotation about a lab-frame axis applied after the current pose. Renormalised every step.

    Parameters
    ----------
    q0
        (4,) starting unit quaternion (x, y, z, w).
    omega
        (K, 3) rotation vectors in radians.

    Returns
    -------
    numpy.ndarray
        (K + 1, 4) quaternions; row 0 is ``q0``.
    """
    k_steps = omega.shape[0]
    out = np.empty((k_steps + 1, 4))
    x, y, z, w = q0[0], q0[1], q0[2], q0[3]
    out[0, 0] = x
    out[0, 1] = y
    out[0, 2] = z
    out[0, 3] = w
    for k in range(k_steps):
        ox = omega[k, 0]
        oy = omega[k, 1]
        oz = omega[k, 2]
        angle = np.sqrt(ox * ox + oy * oy + oz * oz)
        half = 0.5 * angle
        if angle > 1e-12:
            s = np.sin(half) / angle
        else:
            s = 0.5 - angle * angle / 48.0
        bx = ox * s
        by = oy * s
        bz = oz * s
        bw = np.cos(half)
        # Hamilton product b ⊗ q
        nx_ = bw * x + bx * w + by * z - bz * y
        ny_ = bw * y - bx * z + by * w + bz * x
        nz_ = bw * z + bx * y - by * x + bz * w
        nw_ = bw * w - bx * x - by * y - bz * z
        norm = np.sqrt(nx_ * nx_ + ny_ * ny_ + nz_ * nz_ + nw_ * nw_)
        x = nx_ / norm
        y = ny_ / norm
        z = nz_ / norm
        w = nw_ / norm
        out[k + 1, 0] = x
        out[k + 1, 1] = y
        out[k + 1, 2] = z
        out[k + 1, 3] = w
    return out


@numba.njit(cache=True)
def linear_recurrence(x0: np.ndarray, decay: np.ndarray, kicks: np.ndarray) -> np.ndarray:
    """``x[k+1] = decay[k]·x[k] + kicks[k]`` for vector states (an exact Ornstein–Uhlenbeck update).

    Parameters
    ----------
    x0
        (D,) initial state.
    decay
        (K,) multiplicative factors.
    kicks
        (K, D) additive terms.

    Returns
    -------
    numpy.ndarray
        (K + 1, D) states; row 0 is ``x0``.
    """
    k_steps, dim = kicks.shape
    out = np.empty((k_steps + 1, dim))
    for d in range(dim):
        out[0, d] = x0[d]
    for k in range(k_steps):
        a = decay[k]
        for d in range(dim):
            out[k + 1, d] = a * out[k, d] + kicks[k, d]
    return out
