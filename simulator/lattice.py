"""fcc lattice fitting (any orientation, per grain) and the ONE per-atom strain definition.

Strain definition (used for the builder's truth and by ``analysis/`` on detected atoms)
---------------------------------------------------------------------------------------
For atom ``i`` with ideal (reference-lattice) position ``X_i`` and actual position ``x_i``, take the bonds
``D_ij = X_j - X_i`` to its neighbours ``j`` in the IDEAL structure (``|D_ij| < cutoff``) and the same bonds
in the actual structure ``d_ij = x_j - x_i``. The local deformation gradient is the least-squares fit
``F_i = argmin Σ_j |d_ij - F D_ij|²`` (Falk & Langer 1998; the "atomic strain" of OVITO), and the strain is
the symmetric small-strain tensor ``ε_i = (F_i + F_iᵀ)/2 - I``. The six stored components are
``(exx, eyy, ezz, exy, eyz, exz)`` with TENSOR (not engineering) shear components, in the frame of the
positions (the particle frame). The radial strain of seed 004, ``ε_RR = ∂u_R/∂R``, is the projection
``R̂ᵀ ε R̂`` with ``R̂`` the unit vector from the particle centre to the atom (:func:`radial_strain`).

A uniform expansion ``x = c + (1 + e)(X - c)`` gives ``ε = e·I`` for every atom exactly, whatever ``c``.
"""

from __future__ import annotations

import numpy as np

from simulator.coordination import cn_cutoff, neighbour_lists, nn_bond_lengths
from simulator.errors import require

__all__ = [
    "deformation_gradients",
    "radial_strain",
    "strain_tensors",
]

_SQRT2 = np.sqrt(2.0)


def _check_pair(positions: np.ndarray, ideal_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(positions, dtype=np.float64)
    x0 = np.asarray(ideal_positions, dtype=np.float64)
    require(x.ndim == 2 and x.shape[1] == 3, f"positions: expected shape (N, 3), got {x.shape}")
    require(x0.shape == x.shape, f"ideal_positions: expected shape {x.shape}, got {x0.shape}")
    return x, x0


def _default_cutoff(ideal_positions: np.ndarray) -> float:
    nn = nn_bond_lengths(ideal_positions)
    nn = nn[np.isfinite(nn)]
    require(len(nn) > 0, "ideal_positions: need at least two atoms for a strain cutoff")
    return cn_cutoff(float(np.median(nn)) * _SQRT2)


def deformation_gradients(positions: np.ndarray, ideal_positions: np.ndarray,
                          cutoff: float | None = None) -> np.ndarray:
    """Per-atom least-squares deformation gradient ``F`` mapping ideal bonds onto actual bonds.

    Parameters
    ----------
    positions
        (N, 3) actual positions (Å).
    ideal_positions
        (N, 3) reference positions (Å), same atom order.
    cutoff
        Bond radius in the ideal structure (Å); default :func:`~simulator.coordination.cn_cutoff` of
        ``√2 ×`` the median ideal nearest-neighbour distance.

    Returns
    -------
    numpy.ndarray
        (N, 3, 3). Atoms whose ideal bonds do not span 3D are solved by pseudo-inverse (the unresolved
        directions then carry no strain); atoms without bonds get the identity.
    """
    x, x0 = _check_pair(positions, ideal_positions)
    n = len(x)
    if cutoff is None:
        cutoff = _default_cutoff(x0)
    nl = neighbour_lists(x0, cutoff)
    rows, cols = nl.rows(), nl.indices
    big_d = x0[cols] - x0[rows]  # ideal bonds
    small_d = x[cols] - x[rows]  # actual bonds
    # P_i = Σ d Dᵀ, Q_i = Σ D Dᵀ  -> F = P Q⁻¹
    p = np.zeros((n, 3, 3))
    q = np.zeros((n, 3, 3))
    np.add.at(p, rows, small_d[:, :, None] * big_d[:, None, :])
    np.add.at(q, rows, big_d[:, :, None] * big_d[:, None, :])
    f = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    has = nl.counts() > 0
    if np.any(has):
        qinv = np.linalg.pinv(q[has], rcond=1e-6)
        f_has = p[has] @ qinv
        # directions not spanned by the ideal bonds: keep identity there
        proj = q[has] @ qinv
        f[has] = f_has + (np.eye(3) - proj)
    return f


def strain_tensors(positions: np.ndarray, ideal_positions: np.ndarray, cutoff: float | None = None) -> np.ndarray:
    """THE per-atom strain: symmetric small-strain tensor from the local deformation gradient.

    Parameters
    ----------
    positions
        (N, 3) actual positions (Å).
    ideal_positions
        (N, 3) ideal lattice positions (Å) at the reference lattice constant (the builder's truth uses
        the bulk value, e.g. 3.924 Å for Pt, so a uniform lattice expansion shows up as strain).
    cutoff
        Bond radius (Å) in the ideal structure; default from the ideal nearest-neighbour distance.

    Returns
    -------
    numpy.ndarray
        (N, 6) float64 ``(exx, eyy, ezz, exy, eyz, exz)``, dimensionless (tensor shear components).
    """
    f = deformation_gradients(positions, ideal_positions, cutoff)
    e = 0.5 * (f + np.swapaxes(f, 1, 2)) - np.eye(3)
    return np.stack([e[:, 0, 0], e[:, 1, 1], e[:, 2, 2], e[:, 0, 1], e[:, 1, 2], e[:, 0, 2]], axis=1)


def voigt_to_matrix(strain: np.ndarray) -> np.ndarray:
    """(N, 6) ``(exx, eyy, ezz, exy, eyz, exz)`` → (N, 3, 3) symmetric tensors."""
    s = np.asarray(strain, dtype=np.float64)
    m = np.empty((len(s), 3, 3))
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = s[:, 0], s[:, 1], s[:, 2]
    m[:, 0, 1] = m[:, 1, 0] = s[:, 3]
    m[:, 1, 2] = m[:, 2, 1] = s[:, 4]
    m[:, 0, 2] = m[:, 2, 0] = s[:, 5]
    return m


def radial_strain(positions: np.ndarray, ideal_positions: np.ndarray, centre: np.ndarray | None = None,
                  cutoff: float | None = None) -> np.ndarray:
    """Radial strain ``ε_RR = ∂u_R/∂R = R̂ᵀ ε R̂`` of seed 004 (dimensionless).

    Parameters
    ----------
    positions, ideal_positions
        (N, 3) actual and ideal positions (Å).
    centre
        Particle centre (Å); default the centroid of ``positions``.
    cutoff
        Bond radius (Å) for :func:`strain_tensors`.

    Returns
    -------
    numpy.ndarray
        (N,) radial strain; an atom at the centre (R < 1e-6 Å) gets the mean normal strain ``tr(ε)/3``.
    """
    x, x0 = _check_pair(positions, ideal_positions)
    eps = voigt_to_matrix(strain_tensors(x, x0, cutoff))
    c = x.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
    r = x - c
    rn = np.linalg.norm(r, axis=1)
    out = np.trace(eps, axis1=1, axis2=2) / 3.0
    ok = rn > 1e-6
    u = r[ok] / rn[ok, None]
    out[ok] = np.einsum("ni,nij,nj->n", u, eps[ok], u)
    return out
