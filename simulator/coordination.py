"""Per-atom structure metrics: CN, GCN, nearest-neighbour bond, radial depth, local stacking.

ONE definition shared by the builder (truth) and by ``analysis/`` (measured on detected atoms), following the
methods of Wietfeldt et al. 2024 (Pt nanocrystals by SINGLE):

* CN: number of other atoms within the sphere of radius ``d = ā/2·(1 + 1/√2)`` (:func:`cn_cutoff`), i.e. half
  way between the first (a/√2) and second (a) fcc neighbour shells.
* GCN: ``GCN_i = Σ_k CN_k / CN_max`` over the neighbours ``k`` of atom ``i``, where ``CN_max`` is the largest
  CN among those neighbours (Wietfeldt et al. (2024)'s definition); pass ``cn_max=12`` for the bulk-normalised
  Calle-Vallejo variant.
* NN bond length: distance to the closest other atom.
* Radial depth: ``R_NP - R``, ``R`` the distance from the centroid, ``R_NP`` half the largest interatomic
  distance.
* Local stacking: common neighbour analysis (Honeycutt–Andersen / Faken–Jónsson signatures): 12 neighbours
  all of type (4,2,1) → ``'fcc'``; 12 neighbours, six (4,2,1) and six (4,2,2) → ``'hcp'``; anything else
  → ``'other'``.

Everything is vectorised (``scipy.spatial.cKDTree`` and sparse matrices): no Python loops over atoms.
All functions are invariant under rotation, translation and permutation of the atoms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.spatial.distance import pdist

from tumblebench.simulator.errors import require

__all__ = [
    "NeighbourList",
    "cn_cutoff",
    "coordination_numbers",
    "generalized_coordination",
    "local_stacking",
    "max_interatomic_distance",
    "neighbour_lists",
    "nn_bond_lengths",
    "radial_depth",
]


class NeighbourList(NamedTuple):
    """Neighbours of every atom in compressed sparse row form.

    Attributes
    ----------
    indptr
        (N+1,) int64; the neighbours of atom ``i`` are ``indices[indptr[i]:indptr[i+1]]``.
    indices
        (M,) int64 neighbour indices, sorted within each row.
    distances
        (M,) float64 distances (Å) matching ``indices``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:  # number of atoms
        return len(self.indptr) - 1

    def neighbours(self, i: int) -> np.ndarray:
        """Indices of the neighbours of atom ``i``."""
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def counts(self) -> np.ndarray:
        """(N,) number of neighbours of each atom."""
        return np.diff(self.indptr)

    def rows(self) -> np.ndarray:
        """(M,) the atom each entry of ``indices`` belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.counts())

    def matrix(self) -> sp.csr_matrix:
        """Boolean (N, N) symmetric adjacency matrix."""
        n = len(self)
        data = np.ones(len(self.indices), dtype=np.int32)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(n, n))


def _as_positions(positions: np.ndarray) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    require(pos.ndim == 2 and pos.shape[1] == 3, f"positions: expected shape (N, 3), got {pos.shape}")
    require(bool(np.all(np.isfinite(pos))), "positions: contain NaN or infinite values")
    return pos


def cn_cutoff(lattice_constant: float) -> float:
    """CN neighbourhood radius of Wietfeldt et al. 2024: ``d = ā/2·(1 + 1/√2)`` (Å).

    Parameters
    ----------
    lattice_constant
        Mean fcc lattice constant ā (Å), e.g. 3.924 for bulk Pt (d = 3.349 Å).
    """
    require(lattice_constant > 0, f"lattice_constant: expected > 0 Å, got {lattice_constant}")
    return float(lattice_constant) / 2.0 * (1.0 + 1.0 / np.sqrt(2.0))


def neighbour_lists(positions: np.ndarray, cutoff: float) -> NeighbourList:
    """All pairs closer than ``cutoff`` (Å), as a symmetric CSR neighbour list.

    Parameters
    ----------
    positions
        (N, 3) atom positions (Å).
    cutoff
        Neighbour radius (Å), typically :func:`cn_cutoff`.

    Returns
    -------
    NeighbourList
        ``indptr``, ``indices``, ``distances`` (Å); an atom is never its own neighbour.
    """
    pos = _as_positions(positions)
    require(cutoff > 0, f"cutoff: expected > 0 Å, got {cutoff}")
    n = len(pos)
    if n == 0:
        return NeighbourList(np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    tree = cKDTree(pos)
    pairs = tree.query_pairs(float(cutoff), output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(np.int64)
    j = np.concatenate([pairs[:, 1], pairs[:, 0]]).astype(np.int64)
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    d = np.linalg.norm(pos[i] - pos[j], axis=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=n), out=indptr[1:])
    return NeighbourList(indptr, j, d)


def coordination_numbers(positions: np.ndarray, cutoff: float) -> np.ndarray:
    """Standard coordination number: atoms within ``cutoff`` (Å) of each atom (Wietfeldt et al. 2024).

    Returns
    -------
    numpy.ndarray
        (N,) int64.
    """
    return neighbour_lists(positions, cutoff).counts().astype(np.int64)


def generalized_coordination(positions: np.ndarray, cutoff: float, cn_max: float | None = None) -> np.ndarray:
    """Generalized coordination number ``GCN_i = Σ_k CN_k / CN_max`` (Wietfeldt et al. 2024).

    Parameters
    ----------
    positions
        (N, 3) positions (Å).
    cutoff
        Neighbour radius (Å).
    cn_max
        ``None`` (default): Wietfeldt 2024's definition, ``CN_max`` = the largest CN among the neighbours of atom
        ``i``; a number (e.g. 12): the usual bulk normalisation of Calle-Vallejo et al.

    Returns
    -------
    numpy.ndarray
        (N,) float64; 0 for an atom without neighbours.
    """
    nl = neighbour_lists(positions, cutoff)
    cn = nl.counts().astype(np.float64)
    n = len(cn)
    rows = nl.rows()
    total = np.bincount(rows, weights=cn[nl.indices], minlength=n)
    if cn_max is None:
        denom = np.zeros(n)
        np.maximum.at(denom, rows, cn[nl.indices])
    else:
        require(cn_max > 0, f"cn_max: expected > 0, got {cn_max}")
        denom = np.full(n, float(cn_max))
    out = np.zeros(n)
    ok = denom > 0
    out[ok] = total[ok] / denom[ok]
    return out


def nn_bond_lengths(positions: np.ndarray) -> np.ndarray:
    """Distance from each atom to its nearest other atom (Å); ``inf`` for a single atom."""
    pos = _as_positions(positions)
    if len(pos) < 2:
        return np.full(len(pos), np.inf)
    d, _ = cKDTree(pos).query(pos, k=2)
    return d[:, 1].astype(np.float64)


def max_interatomic_distance(positions: np.ndarray) -> float:
    """Largest distance between any two atoms (Å): the particle diameter of Wietfeldt et al. (2024)'s Table 1."""
    pos = _as_positions(positions)
    if len(pos) < 2:
        return 0.0
    pts = pos
    if len(pos) > 8:
        try:
            pts = pos[ConvexHull(pos).vertices]
        except (QhullError, ValueError):
            pts = pos
    return float(pdist(pts).max())


def radial_depth(positions: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Radial depth ``R_NP - R`` (Å) of Wietfeldt et al. 2024.

    Parameters
    ----------
    positions
        (N, 3) positions (Å).
    centre
        Particle centre (Å); default the centroid (mean position).

    Returns
    -------
    numpy.ndarray
        (N,) float64; ``R`` is the distance from the centre and ``R_NP`` half the largest interatomic
        distance, so outermost atoms have depth ≈ 0 (slightly negative for protruding atoms).
    """
    pos = _as_positions(positions)
    c = pos.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
    r = np.linalg.norm(pos - c, axis=1)
    return 0.5 * max_interatomic_distance(pos) - r


def _cna_bond_signatures(nl: NeighbourList) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every directed bond (row, col) of ``nl``: common neighbours, bonds among them, longest chain.

    The longest chain is computed exactly for the cases that matter (≤ 2 bonds among the common neighbours:
    1 if they are disjoint, 2 if they share an atom); for more bonds it is the largest degree in the
    common-neighbour subgraph, enough to tell the (4,2,1)/(4,2,2) signatures apart from everything else.
    """
    a = nl.matrix()
    rows = nl.rows()
    cols = nl.indices
    common = a[rows].multiply(a[cols]).tocsr()  # (M, N): common neighbours of each bond
    n_common = np.asarray(common.sum(axis=1)).ravel()
    degree = (common @ a).multiply(common).tocsr()  # degree of each common neighbour inside the subgraph
    n_bonds = np.asarray(degree.sum(axis=1)).ravel() // 2
    max_degree = degree.max(axis=1).toarray().ravel() if degree.shape[0] else np.zeros(0)
    return n_common.astype(np.int64), n_bonds.astype(np.int64), np.asarray(max_degree, dtype=np.int64)


def local_stacking(positions: np.ndarray, cutoff: float) -> np.ndarray:
    """Common neighbour analysis: ``'fcc'``, ``'hcp'`` or ``'other'`` per atom.

    Parameters
    ----------
    positions
        (N, 3) positions (Å).
    cutoff
        Neighbour radius (Å) between the first and second shells, e.g. :func:`cn_cutoff`.

    Returns
    -------
    numpy.ndarray
        (N,) array of str (dtype ``<U5``). Atoms with fewer than 12 neighbours (surface atoms) are
        ``'other'``; the builder's truth labels those from the extended (infinite) crystal instead.
    """
    nl = neighbour_lists(positions, cutoff)
    n = len(nl)
    out = np.full(n, "other", dtype="<U5")
    if n == 0 or len(nl.indices) == 0:
        return out
    n_common, n_bonds, chain = _cna_bond_signatures(nl)
    rows = nl.rows()
    is421 = (n_common == 4) & (n_bonds == 2) & (chain == 1)
    is422 = (n_common == 4) & (n_bonds == 2) & (chain == 2)
    c421 = np.bincount(rows, weights=is421, minlength=n)
    c422 = np.bincount(rows, weights=is422, minlength=n)
    cn = nl.counts()
    out[(cn == 12) & (c421 == 12)] = "fcc"
    out[(cn == 12) & (c421 == 6) & (c422 == 6)] = "hcp"
    return out
