"""fcc lattice fitting (any orientation, per grain) and the ONE per-atom strain definition.

Strain definition (used for the builder's truth and by ``analysis/`` on detected atoms)
---------------------------------------------------------------------------------------
For atom ``i`` with ideal (reference-lattice) position ``X_i`` and actual position ``x_i``, take the bonds
``D_ij = X_j - X_i`` to its neighbours ``j`` in the IDEAL structure (``|D_ij| < cutoff``) and the same bonds
in the actual structure ``d_ij = x_j - x_i``. The local deformation gradient is the least-squares fit
``F_i = argmin Σ_j |d_ij - F D_ij|²`` (Falk & Langer 1998; the "atomic strain" of OVITO), and the strain is
the symmetric small-strain tensor ``ε_i = (F_i + F_iᵀ)/2 - I``. The six stored components are
``(exx, eyy, ezz, exy, eyz, exz)`` with TENSOR (not engineering) shear components, in the frame of the
positions (the particle frame). The radial strain of Wietfeldt et al. 2024, ``ε_RR = ∂u_R/∂R``, is the projection
``R̂ᵀ ε R̂`` with ``R̂`` the unit vector from the particle centre to the atom (:func:`radial_strain`).

A uniform expansion ``x = c + (1 + e)(X - c)`` gives ``ε = e·I`` for every atom exactly, whatever ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from tumblebench.simulator.coordination import cn_cutoff, neighbour_lists, nn_bond_lengths
from tumblebench.simulator.errors import require

__all__ = [
    "LatticeFit",
    "deformation_gradients",
    "fit_fcc_lattice",
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
        Bond radius in the ideal structure (Å); default :func:`~tumblebench.simulator.coordination.cn_cutoff` of
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
    """Radial strain ``ε_RR = ∂u_R/∂R = R̂ᵀ ε R̂`` of Wietfeldt et al. 2024 (dimensionless).

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


# ------------------------------------------------------------------------------------------ lattice fit
_NN110 = np.array([[1, 1, 0], [1, -1, 0], [-1, 1, 0], [-1, -1, 0], [1, 0, 1], [1, 0, -1], [-1, 0, 1],
                   [-1, 0, -1], [0, 1, 1], [0, 1, -1], [0, -1, 1], [0, -1, -1]], dtype=np.float64) / _SQRT2


@dataclass
class LatticeFit:
    """Result of :func:`fit_fcc_lattice`.

    Attributes
    ----------
    lattice_constant
        Fitted lattice constant (Å); with several grains the inlier-weighted mean of ``lattice_constants``.
    rotation
        (3, 3) rotation of the largest grain: crystal axes -> particle frame (``x = origin + a/2·R·g``).
    origin
        (3,) a lattice site of the largest grain (Å).
    ideal_positions
        (N, 3) nearest site of each atom's grain lattice (Å), at that grain's fitted lattice constant.
    grain
        (N,) grain index of each atom (0 = the largest grain).
    rms_residual
        Root-mean-square distance between atoms and their ideal positions (Å).
    rotations, origins, lattice_constants
        Per grain: (G, 3, 3), (G, 3), (G,).
    residuals
        (N,) distance of each atom from its ideal position (Å).
    """

    lattice_constant: float
    rotation: np.ndarray
    origin: np.ndarray
    ideal_positions: np.ndarray
    grain: np.ndarray
    rms_residual: float
    rotations: np.ndarray
    origins: np.ndarray
    lattice_constants: np.ndarray
    residuals: np.ndarray

    def ideal_positions_at(self, lattice_constant: float, centre: np.ndarray | None = None) -> np.ndarray:
        """Ideal positions rescaled about ``centre`` (default their centroid) so that the lattice constant is
        ``lattice_constant`` (Å) — e.g. the bulk value, for strain relative to bulk as in Wietfeldt et al. 2024."""
        c = self.ideal_positions.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
        return c + (self.ideal_positions - c) * (float(lattice_constant) / self.lattice_constant)


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Proper rotation R minimising Σ|dst - R src|² (no translation)."""
    h = dst.T @ src
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _similarity(model: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale s, rotation R, translation t minimising Σ|x - (s R m + t)|²."""
    mm, mx = model.mean(axis=0), x.mean(axis=0)
    m0, x0 = model - mm, x - mx
    cov = x0.T @ m0 / len(x)
    u, sv, vt = np.linalg.svd(cov)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ d @ vt
    var = np.mean(np.einsum("ij,ij->i", m0, m0))
    s = float(np.trace(np.diag(sv) @ d) / var)
    return s, rot, mx - s * rot @ mm


def _round_fcc(f: np.ndarray) -> np.ndarray:
    """Nearest fcc site in units of a/2 (integer coordinates with even sum)."""
    g = np.round(f)
    odd = (g.sum(axis=1) % 2) != 0
    if np.any(odd):
        r = f[odd] - g[odd]
        k = np.argmax(np.abs(r), axis=1)
        rows = np.flatnonzero(odd)
        g[rows, k] += np.where(r[np.arange(len(k)), k] >= 0, 1.0, -1.0)
    return g


def _sites(x: np.ndarray, a: float, rot: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = _round_fcc((x - origin) @ rot / (a / 2.0))
    ideal = origin + (a / 2.0) * g @ rot.T
    return g, ideal


def _initial_rotation(bonds: np.ndarray) -> np.ndarray:
    """Orientation from the bond vectors of one atom.

    Two bonds at ~60° are mapped onto [110] and [101] and the rotation is refined on all bonds. Half of the
    60° pairs give the TWIN orientation (a proper rotation cannot map an ordered pair onto its mirror image),
    so every candidate partner is tried and the orientation that fits all bonds best is kept.
    """
    u = bonds / np.linalg.norm(bonds, axis=1, keepdims=True)
    b1 = u[0]
    cos = u @ b1
    partners = np.flatnonzero(np.abs(cos - 0.5) < 0.25)
    if len(partners) == 0:
        partners = np.array([int(np.argmin(np.abs(cos - 0.5)))])
    src = np.array([_NN110[0], _NN110[4], np.cross(_NN110[0], _NN110[4])])
    src[2] /= np.linalg.norm(src[2])
    best, best_err = np.eye(3), np.inf
    for j in partners:  # at most a handful of candidates
        b2 = u[j]
        dst = np.array([b1, b2, np.cross(b1, b2)])
        dst[2] /= max(np.linalg.norm(dst[2]), 1e-12)
        rot = _kabsch(src, dst)
        for _ in range(3):  # refine on all bonds
            k = np.argmax(u @ (_NN110 @ rot.T).T, axis=1)
            rot = _kabsch(_NN110[k], u)
        err = float(np.sum(1.0 - np.max(u @ (_NN110 @ rot.T).T, axis=1)))
        if err < best_err - 1e-12:
            best, best_err = rot, err
    return best


def _fit_one(x: np.ndarray, a: float, seed: int, tol: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Fit one fcc lattice grown outward from atom ``seed``; returns a, R, origin, residuals (all atoms)."""
    d_nn = a / _SQRT2
    cut = cn_cutoff(a)
    tree = cKDTree(x)
    nb = [j for j in tree.query_ball_point(x[seed], cut) if j != seed]
    require(len(nb) >= 2, "positions: the seed atom has fewer than two neighbours; cannot orient a lattice")
    rot = _initial_rotation(x[nb] - x[seed])
    origin = x[seed].copy()
    r_seed = np.linalg.norm(x - x[seed], axis=1)
    radii = [1.5 * d_nn, 2.5 * d_nn, 4 * d_nn, 6 * d_nn, np.inf]
    res = np.full(len(x), np.inf)
    for radius in radii:
        for _ in range(2):
            g, ideal = _sites(x, a, rot, origin)
            res = np.linalg.norm(x - ideal, axis=1)
            sel = (r_seed <= radius) & (res < tol * d_nn)
            if np.count_nonzero(sel) < 4:
                sel = r_seed <= radius
            s, rot_new, t = _similarity((g[sel] / 2.0), x[sel])
            # guard against degenerate fits of tiny neighbourhoods
            if 0.8 * a < s < 1.25 * a:
                a, rot, origin = s, rot_new, t
            d_nn = a / _SQRT2
    g, ideal = _sites(x, a, rot, origin)
    res = np.linalg.norm(x - ideal, axis=1)
    return a, rot, origin, res


def _seed_atom(x: np.ndarray, members: np.ndarray, a: float) -> int:
    """Best-coordinated atom of ``members`` nearest their centroid."""
    from tumblebench.simulator.coordination import coordination_numbers

    cn = coordination_numbers(x, cn_cutoff(a))[members]
    c = x[members].mean(axis=0)
    r = np.linalg.norm(x[members] - c, axis=1)
    best = np.flatnonzero(cn == cn.max())
    return int(members[best[np.argmin(r[best])]])


def fit_fcc_lattice(positions: np.ndarray, lattice_constant_guess: float = 3.92,
                    grain: np.ndarray | None = None, tol: float = 0.3, max_grains: int = 24) -> LatticeFit:
    """Least-squares fcc lattice fit in ANY orientation, per grain.

    Each grain's lattice is seeded at a well-coordinated atom (orientation from its bonds, matched to the
    twelve <110> directions) and grown outward: atoms are assigned to their nearest lattice site and the
    similarity transform (lattice constant, rotation, origin) is refitted by Umeyama's method on the inliers
    (residual < ``tol`` × NN distance), first in a small neighbourhood and then over the whole particle.

    Parameters
    ----------
    positions
        (N, 3) atom positions (Å).
    lattice_constant_guess
        Starting lattice constant (Å); within ~10 % of the truth.
    grain
        (N,) grain labels to fit separately, or None to find grains: a lattice is fitted, its inliers form a
        grain, and the rest is fitted again until fewer than ``max(13, 5 % of N)`` atoms remain; each atom then
        joins the grain that fits it best (ties, e.g. twin-plane atoms or sites shared by a twin's lattices,
        are settled by the majority of the atom's unambiguous neighbours).
    tol
        Inlier threshold as a fraction of the NN distance.
    max_grains
        Most grains to look for.

    Returns
    -------
    LatticeFit
    """
    x = np.asarray(positions, dtype=np.float64)
    require(x.ndim == 2 and x.shape[1] == 3 and len(x) >= 4, f"positions: expected (N >= 4, 3), got {x.shape}")
    require(lattice_constant_guess > 0, f"lattice_constant_guess: expected > 0 Å, got {lattice_constant_guess}")
    n = len(x)
    a0 = float(lattice_constant_guess)
    fits: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    if grain is not None:
        labels = np.asarray(grain)
        require(labels.shape == (n,), f"grain: expected shape ({n},), got {labels.shape}")
        for g in np.unique(labels):
            members = np.flatnonzero(labels == g)
            if len(members) < 4:
                fits.append(fits[0] if fits else _fit_one(x, a0, _seed_atom(x, np.arange(n), a0), tol))
                continue
            xs = x[members]
            a, rot, org, _ = _fit_one(xs, a0, _seed_atom(xs, np.arange(len(xs)), a0), tol)
            fits.append((a, rot, org, None))
        assign = np.searchsorted(np.unique(labels), labels)
    else:
        remaining = np.ones(n, bool)
        min_size = max(13, int(0.05 * n))
        while np.count_nonzero(remaining) >= min_size and len(fits) < max_grains:
            seed = _seed_atom(x, np.flatnonzero(remaining), a0)
            a, rot, org, res = _fit_one(x, a0, seed, tol)
            inl = res < tol * a / _SQRT2
            if np.count_nonzero(inl & remaining) < min_size:
                break
            fits.append((a, rot, org, None))
            remaining &= ~inl
        if not fits:
            a, rot, org, _ = _fit_one(x, a0, _seed_atom(x, np.arange(n), a0), tol)
            fits.append((a, rot, org, None))
        assign = None
    ideal_all = np.empty((len(fits), n, 3))
    res_all = np.empty((len(fits), n))
    for k, (a, rot, org, _) in enumerate(fits):
        _, ideal_all[k] = _sites(x, a, rot, org)
        res_all[k] = np.linalg.norm(x - ideal_all[k], axis=1)
    if assign is None:
        assign = np.argmin(res_all, axis=0)
        if len(fits) > 1:
            thr = tol * np.asarray([f[0] for f in fits]) / _SQRT2
            good = res_all < thr[:, None]
            ambiguous = good.sum(axis=0) > 1
            unique = good.sum(axis=0) == 1
            if np.any(ambiguous):
                from tumblebench.simulator.coordination import neighbour_lists

                nl = neighbour_lists(x, cn_cutoff(float(np.mean([f[0] for f in fits]))))
                rows = nl.rows()
                for _ in range(3):
                    votes = np.zeros((n, len(fits)))
                    w = unique[nl.indices]
                    np.add.at(votes, (rows[w], assign[nl.indices[w]]), 1.0)
                    cand = np.where(good.T, votes, -1.0)
                    new = np.argmax(cand, axis=1)
                    assign = np.where(ambiguous & (cand.max(axis=1) > 0), new, assign)
        # relabel grains by size (0 = largest)
        sizes = np.bincount(assign, minlength=len(fits))
        order = np.argsort(-sizes, kind="stable")
        keep = [k for k in order if sizes[k] > 0]
        remap = np.full(len(fits), -1)
        remap[keep] = np.arange(len(keep))
        fits = [fits[k] for k in keep]
        ideal_all, res_all = ideal_all[keep], res_all[keep]
        assign = remap[assign]
    ideal = ideal_all[assign, np.arange(n)]
    res = res_all[assign, np.arange(n)]
    sizes = np.bincount(assign, minlength=len(fits))
    consts = np.asarray([f[0] for f in fits])
    main = int(np.argmax(sizes))
    return LatticeFit(
        lattice_constant=float(np.sum(consts * sizes) / max(sizes.sum(), 1)),
        rotation=fits[main][1], origin=fits[main][2], ideal_positions=ideal, grain=assign.astype(np.int64),
        rms_residual=float(np.sqrt(np.mean(res**2))), rotations=np.asarray([f[1] for f in fits]),
        origins=np.asarray([f[2] for f in fits]), lattice_constants=consts, residuals=res,
    )
