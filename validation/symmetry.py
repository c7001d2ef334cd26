"""The proper rotations that map a particle's atoms onto themselves, found from the atoms alone.

A pose ``A`` and a pose ``A·s`` image the same particle when ``s`` maps the particle onto itself, so no method
can tell them apart and pose errors are scored modulo that group (:func:`tumblebench.validation.poses.pose_errors`,
``symmetry=``). Nothing about the particle's shape is assumed:

1. the atoms are centred on their centroid (the rotation centre of the particle frame,
   :mod:`tumblebench.simulator.orientation`);
2. a rotation that maps the structure onto itself maps each atom onto an atom at the same distance from the
   centre. Two non-collinear *anchor* atoms ``a``, ``b`` are chosen from the sparsest radial shells; every
   pair ``(c, d)`` with ``|c| ≈ |a|``, ``|d| ≈ |b|`` and ``|c − d| ≈ |a − b|`` defines the one proper
   rotation taking the frame of ``(a, b)`` to that of ``(c, d)`` — the candidates. Every symmetry of the
   structure is among them (it takes ``a``, ``b`` to such a pair);
3. a candidate is accepted when it moves every atom to within ``max_fraction`` of the nearest-neighbour
   distance of a distinct atom (a one-to-one matching: a vacancy or adatom that has no image breaks it) and
   the RMS of those distances is below ``rms_fraction`` of the nearest-neighbour distance; the accepted
   rotation is then refined by a least-squares (Kabsch) fit over all matched atoms;
4. the accepted rotations are reduced to a set closed under composition (an approximate symmetry whose
   products drift out of tolerance is dropped), and the group is named (Schoenflies: C1, Cn, Dn, T, O, I).

The same search with the inverted atoms ``−p`` as the source finds the *mirror rotations*: the proper ``q`` with
``q·(−p)`` ≈ ``p``, the structure's improper symmetries times −1. A structure that has any is achiral, and its
images have a projection twin (:mod:`tumblebench.validation.poses`).

The nearest-neighbour distance sets the scale, so the tolerances mean the same for any lattice constant.
Static disorder well below the tolerance leaves the group; vacancies, adatoms or an off-centre twin plane
reduce it to the subgroup they respect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from tumblebench.simulator.errors import TumblebenchError


@dataclass(frozen=True)
class SymmetryGroup:
    """The proper rotation group of a structure.

    Attributes
    ----------
    rotations
        (S, 3, 3) rotation matrices in the particle frame (centroid at 0), identity first; each ``s`` maps
        atom positions ``p`` to ``s @ p`` ≈ another atom.
    name
        Schoenflies symbol of the proper group (``C1``, ``Cn``, ``Dn``, ``T``, ``O``, ``I``), or ``order S``
        when it is none of these.
    rms_A
        (S,) RMS distance (Å) between the rotated atoms and their matched partners, per rotation.
    centrosymmetric
        The inversion ``p → −p`` maps the structure onto itself within the same tolerances.
    nn_distance_A
        Median nearest-neighbour distance of the structure (Å), the scale of the tolerances.
    max_distance_A, rms_tolerance_A
        The tolerances used (Å).
    mirror_rotations
        (R, 3, 3) proper rotations ``q`` that map the inverted structure onto itself (``q·(−p)`` ≈ an atom): the
        improper symmetries (mirrors, inversion, roto-inversions) times −1. Empty for a chiral structure; holds
        the identity for a centrosymmetric one.
    """

    rotations: np.ndarray
    name: str
    rms_A: np.ndarray
    centrosymmetric: bool
    nn_distance_A: float
    max_distance_A: float
    rms_tolerance_A: float
    mirror_rotations: np.ndarray

    @property
    def achiral(self) -> bool:
        """The structure is its own mirror image up to a rotation (it has an improper symmetry)."""
        return len(self.mirror_rotations) > 0

    @property
    def order(self) -> int:
        """Number of rotations in the group."""
        return len(self.rotations)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary (no matrices)."""
        return {"name": self.name, "order": self.order, "centrosymmetric": self.centrosymmetric,
                "achiral": self.achiral,
                "max_rms_A": float(np.max(self.rms_A)), "nn_distance_A": self.nn_distance_A,
                "max_distance_A": self.max_distance_A, "rms_tolerance_A": self.rms_tolerance_A}


def _frame(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Orthonormal right-handed frame (columns) spanned by u and v (u first)."""
    e1 = u / np.linalg.norm(u)
    w = v - (v @ e1) * e1
    e2 = w / np.linalg.norm(w)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


def _match(moved: np.ndarray, tree: cKDTree, n: int, max_dist: float) -> tuple[np.ndarray, np.ndarray] | None:
    """One-to-one partners of ``moved`` among the tree's atoms, all within ``max_dist``; None if there are none."""
    dist, idx = tree.query(moved, distance_upper_bound=max_dist)
    if np.any(~np.isfinite(dist)):
        return None
    if len(np.unique(idx)) == n:
        return dist, idx
    # two atoms claim the same partner (only possible for a loose tolerance): optimal assignment instead
    pairs = tree.sparse_distance_matrix(cKDTree(moved), max_dist, output_type="coo_matrix")
    cost = np.full((n, n), 1e6)
    cost[pairs.col, pairs.row] = pairs.data
    rows, cols = linear_sum_assignment(cost)
    d = cost[rows, cols]
    if np.any(d > max_dist):
        return None
    return d, cols


def _kabsch(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Proper rotation R minimising Σ|R p_i − q_i|² (both centred on the origin)."""
    u, _, vt = np.linalg.svd(q.T @ p)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _close(rots: list[np.ndarray], tol_deg: float) -> list[int]:
    """Indices of the largest set left by dropping the worst offenders until every product lies in the set."""
    mats = np.asarray(rots, float)
    keep = list(range(len(mats)))
    cos_tol = 1.0 + 2.0 * np.cos(np.radians(tol_deg))  # trace(m·rᵀ) above this: m within tol_deg of r
    while True:
        m = mats[keep]
        prod = np.einsum("aij,bjk->abik", m, m)  # (S, S, 3, 3) all products
        tr = np.einsum("abik,cik->abc", prod, m)  # trace(prod · mᵀ) against every member
        bad = ~(tr.max(axis=2) > cos_tol)
        if not bad.any():
            return keep
        fails = bad.sum(axis=0) + bad.sum(axis=1)
        fails[0] = -1  # never drop the identity
        keep.pop(int(np.argmax(fails)))


def rotation_order(r: np.ndarray, max_order: int = 60, tol_deg: float = 2.0) -> int:
    """Order of a rotation: the smallest k with r^k = identity (within ``tol_deg``); 0 if none up to ``max_order``.

    A rotation by 144° has order 5, as one by 72° (both generate the same five-fold axis).
    """
    ang = np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))
    for k in range(1, max_order + 1):
        turns = k * ang / 360.0
        if abs(turns - round(turns)) * 360.0 < tol_deg:
            return k
    return 0


def group_name(rotations: np.ndarray) -> str:
    """Schoenflies symbol of a finite proper rotation group: C1, Cn, Dn, T, O or I (``order S`` otherwise)."""
    s = len(rotations)
    orders = np.array([rotation_order(r) for r in rotations])
    nmax = int(orders.max())
    if s == 1:
        return "C1"
    if s == 60 and np.sum(orders == 5) == 24:
        return "I"
    if s == 24 and np.sum(orders == 4) == 6 and np.sum(orders == 3) == 8:
        return "O"
    if s == 12 and np.sum(orders == 3) == 8 and np.sum(orders == 2) == 3:
        return "T"
    if s == nmax:
        return f"C{nmax}"
    if s == 2 * nmax and np.sum(orders == 2) >= nmax:
        return f"D{nmax}"
    return f"order {s}"


def find_symmetry(positions: np.ndarray, max_fraction: float = 0.25, rms_fraction: float = 0.1,
                  closure_tol_deg: float = 2.0) -> SymmetryGroup:
    """The proper rotations mapping ``positions`` onto themselves (module docstring).

    Parameters
    ----------
    positions
        (N, 3) atom positions in Å (any origin: they are centred on their centroid).
    max_fraction
        Largest distance of any rotated atom from its partner, as a fraction of the median nearest-neighbour
        distance (0.25: 0.69 Å for Pt). Below 0.4 the partners are unique for any packed structure.
    rms_fraction
        Largest RMS of those distances, as a fraction of the nearest-neighbour distance (0.1: 0.28 Å for Pt).
    closure_tol_deg
        Angle (deg) within which a product of two found rotations counts as one of them.

    Returns
    -------
    SymmetryGroup

    Raises
    ------
    TumblebenchError
        Fewer than 3 atoms, non-finite positions, or all atoms on one line.
    """
    pos = np.asarray(positions, float)
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) < 3 or not np.all(np.isfinite(pos)):
        raise TumblebenchError(f"find_symmetry: need (N ≥ 3, 3) finite positions, got shape {pos.shape}")
    p = pos - pos.mean(axis=0)
    n = len(p)
    tree = cKDTree(p)
    d_nn = float(np.median(tree.query(p, k=2)[0][:, 1]))
    max_dist, rms_tol = max_fraction * d_nn, rms_fraction * d_nn
    r = np.linalg.norm(p, axis=1)
    off = np.flatnonzero(r > 0.5 * d_nn)  # not the central atom
    if len(off) < 2:
        raise TumblebenchError("find_symmetry: need at least two atoms away from the centre")
    shell_size = np.array([np.sum(np.abs(r[off] - r[i]) <= max_dist) for i in off])
    order = off[np.lexsort((r[off], shell_size))]
    a = int(order[0])
    unit = p / np.maximum(r, 1e-12)[:, None]
    sines = np.linalg.norm(np.cross(unit[a], unit[order]), axis=1)
    ok = np.flatnonzero(sines > 0.3)
    if not len(ok):
        raise TumblebenchError("find_symmetry: all atoms lie on one line through the centre")
    b = int(order[ok[0]])
    found, rms = _rotations_onto(p, p, tree, a, b, max_dist, rms_tol)
    ident = [i for i, f in enumerate(found) if np.abs(f - np.eye(3)).max() < 1e-2]
    if not ident:  # the identity is always a symmetry; it is found unless the tolerance is absurdly tight
        found.insert(0, np.eye(3))
        rms.insert(0, 0.0)
    else:
        i = ident[0]
        found.insert(0, found.pop(i))
        rms.insert(0, rms.pop(i))
    keep = _close(found, closure_tol_deg)
    rots = np.array([found[i] for i in keep])
    inv = _match(-p, tree, n, max_dist)
    centro = inv is not None and float(np.sqrt(np.mean(inv[0] ** 2))) <= rms_tol
    mirror, _ = _rotations_onto(-p, p, tree, a, b, max_dist, rms_tol)
    return SymmetryGroup(rots, group_name(rots), np.array([rms[i] for i in keep]), bool(centro), d_nn, max_dist,
                         rms_tol, np.array(mirror).reshape(-1, 3, 3))


def _rotations_onto(src: np.ndarray, p: np.ndarray, tree: cKDTree, a: int, b: int, max_dist: float,
                    rms_tol: float) -> tuple[list[np.ndarray], list[float]]:
    """Proper rotations ``q`` with ``q·src`` ≈ ``p`` atom for atom (module docstring, steps 2–3), and their RMS (Å).

    ``src`` is ``p`` itself (the symmetries) or ``−p`` (the improper symmetries times −1); ``a``, ``b`` are the
    anchor atoms and ``tree`` holds ``p``.
    """
    n = len(p)
    r = np.linalg.norm(p, axis=1)
    unit = p / np.maximum(r, 1e-12)[:, None]
    fa = _frame(src[a], src[b])
    # a symmetry moves every atom by at most max_dist from a partner, so the partners of a and b lie on
    # their shells within max_dist, and their separation is that of a and b within 2·max_dist
    cand_c = np.flatnonzero(np.abs(r - r[a]) <= max_dist)
    cand_d = np.flatnonzero(np.abs(r - r[b]) <= max_dist)
    dab = np.linalg.norm(src[a] - src[b])
    found: list[np.ndarray] = []
    rms: list[float] = []
    for c in cand_c:
        dcd = np.linalg.norm(p[cand_d] - p[c], axis=1)
        for d in cand_d[np.abs(dcd - dab) <= 2 * max_dist]:
            if d == c or np.linalg.norm(np.cross(unit[c], unit[d])) < 0.1:
                continue
            rot = _frame(p[c], p[d]) @ fa.T
            if any(np.abs(rot - f).max() < 1e-3 for f in found):
                continue
            m = _match(src @ rot.T, tree, n, max_dist)
            if m is None:
                continue
            rot = _kabsch(src, p[m[1]])  # least squares over every matched atom
            m = _match(src @ rot.T, tree, n, max_dist)
            if m is None:
                continue
            e = float(np.sqrt(np.mean(m[0] ** 2)))
            if e <= rms_tol and not any(np.abs(rot - f).max() < 1e-3 for f in found):
                found.append(rot)
                rms.append(e)
    return found, rms
