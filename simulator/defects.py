"""Planar and point defects of fcc particles: twin boundaries, stacking faults, vacancies, adatoms.

Planar defects act on (111) layers, numbered relative to the layer closest to the particle centroid
(layer 0), with normal along a chosen <111> direction:

* twin boundary at layer k: every atom above layer k is rotated by 180° about the layer normal through a
  site of layer k. For an fcc lattice (centrosymmetric about a site) this equals the mirror through the
  (111) plane, so the upper part becomes the twin (…ABCABC|BACBA…); the plane atoms get hcp stacking.
  Several twin planes give lamellar twins.
* intrinsic stacking fault at layer k: every atom above layer k is translated by the Shockley partial
  a/6<112> (in the plane) that puts layer k+1 in the stacking position not used by layer k
  (…ABCA|CABC…); layers k and k+1 get hcp stacking.

The operations are applied both to the particle and to an extended block of the same lattice around it,
so that every atom's TRUE local stacking is that of the infinite defected crystal (common neighbour
analysis on the block), also for surface atoms.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from tumblebench.simulator.coordination import cn_cutoff, local_stacking, neighbour_lists
from tumblebench.simulator.errors import TumblebenchError, require

__all__ = [
    "PlanarResult",
    "adatom_sites",
    "apply_planar_defects",
    "choose_adatoms",
    "choose_vacancies",
]


def _normal(plane_normal: tuple[int, int, int]) -> np.ndarray:
    n = np.asarray(plane_normal, dtype=np.float64)
    require(n.shape == (3,) and np.all(np.abs(np.abs(n) - 1) < 1e-9),
            f"plane_normal: expected a <111> direction such as (1, 1, 1) or (1, -1, 1), got {plane_normal}")
    return n / np.linalg.norm(n)


class PlanarResult:
    """Particle and block after planar defects.

    Attributes
    ----------
    positions, block
        (N, 3) particle and (M, 3) extended-block positions (Å).
    grain
        (N,) lattice-domain index: the number of defect planes below the atom's layer.
    block_grain
        (M,) the same for the block.
    stacking
        (N,) true local stacking from common neighbour analysis of the block.
    block_stacking
        (M,) stacking of the block sites.
    """

    def __init__(self, positions: np.ndarray, block: np.ndarray, grain: np.ndarray, block_grain: np.ndarray,
                 stacking: np.ndarray, block_stacking: np.ndarray) -> None:
        self.positions = positions
        self.block = block
        self.grain = grain
        self.block_grain = block_grain
        self.stacking = stacking
        self.block_stacking = block_stacking


def _shockley_candidates(a: float, n: np.ndarray) -> np.ndarray:
    vecs = []
    for p in set(itertools.permutations((1, 1, -2))) | set(itertools.permutations((-1, -1, 2))):
        v = np.asarray(p, dtype=np.float64) * a / 6.0
        if abs(v @ n) < 1e-9:
            vecs.append(v)
    vecs.sort(key=lambda v: tuple(np.round(v, 9)))
    return np.asarray(vecs)


def apply_planar_defects(positions: np.ndarray, lattice_origin: np.ndarray, lattice_constant: float,
                         twin_planes: tuple[int, ...] = (), stacking_faults: tuple[int, ...] = (),
                         plane_normal: tuple[int, int, int] = (1, 1, 1)) -> PlanarResult:
    """Apply twin boundaries and intrinsic stacking faults on (111) layers of a single-crystal particle.

    Parameters
    ----------
    positions
        (N, 3) ideal particle positions (Å), centroid at 0, crystal axes along x, y, z.
    lattice_origin
        One fcc lattice site (Å) of the particle's lattice.
    lattice_constant
        a (Å).
    twin_planes, stacking_faults
        Layer indices (relative to the layer nearest the centroid) of twin boundaries and faults.
    plane_normal
        The <111> normal of the defect planes.

    Returns
    -------
    PlanarResult
    """
    from tumblebench.simulator.shapes import fcc_sites

    a = float(lattice_constant)
    n = _normal(plane_normal)
    pos = np.asarray(positions, dtype=np.float64).copy()
    spacing = a / math.sqrt(3.0)
    origin = np.asarray(lattice_origin, dtype=np.float64)
    # block centred on the lattice site nearest the centroid
    k0 = np.round((np.zeros(3) - origin) / (a / 2.0))
    if int(k0.sum()) % 2:
        k0[np.argmax(np.abs((np.zeros(3) - origin) / (a / 2.0) - k0))] += 1
    centre_site = origin + k0 * a / 2.0
    rmax = float(np.linalg.norm(pos, axis=1).max()) if len(pos) else 0.0
    block = fcc_sites(a, rmax + 2.5 * a, origin=centre_site)
    # particle sites are block sites: index them
    tree = cKDTree(block)
    dist, idx = tree.query(pos)
    require(bool(np.all(dist < 1e-6)), "internal: particle positions are not on the given fcc lattice")

    def layer(x: np.ndarray) -> np.ndarray:
        return np.round((x - centre_site) @ n / spacing).astype(np.int64)

    layer_c = int(np.round((np.zeros(3) - centre_site) @ n / spacing))
    planes: list[tuple[int, str]] = sorted(
        [(layer_c + int(k), "twin") for k in twin_planes] + [(layer_c + int(k), "fault") for k in stacking_faults]
    )
    ks = [k for k, _ in planes]
    require(len(set(ks)) == len(ks), "twin_planes/stacking_faults: each layer may carry only one planar defect")
    player = layer(block)
    lo, hi = int(layer(pos).min()), int(layer(pos).max())
    for k, kind in planes:
        require(lo <= k < hi, f"{'twin_planes' if kind == 'twin' else 'stacking_faults'}: layer {k - layer_c} "
                f"is outside the particle (layers {lo - layer_c}..{hi - layer_c - 1} have atoms above them)")
    nd = 1.0 / math.sqrt(2.0) * a
    for k, kind in planes:
        above = player > k
        if kind == "twin":
            in_plane = np.flatnonzero(player == k)
            d_axis = block[in_plane] - np.outer(block[in_plane] @ n, n)
            p = block[in_plane[np.argmin(np.einsum("ij,ij->i", d_axis, d_axis))]]
            rot = 2.0 * np.outer(n, n) - np.eye(3)
            block[above] = p + (block[above] - p) @ rot.T
        else:
            lower = block[player == k]
            next_layer = block[player == k + 1]
            low_tree = cKDTree(lower)
            chosen = None
            for b in _shockley_candidates(a, n):
                dmin, _ = low_tree.query(next_layer + b)
                if np.all(dmin > 0.9 * nd):
                    chosen = b
                    break
            if chosen is None:  # pragma: no cover - geometry guarantees a candidate
                raise TumblebenchError("internal: no Shockley partial gives a valid stacking fault")
            block[above] = block[above] + chosen
    block_grain = np.searchsorted(np.asarray(ks, dtype=np.int64), player, side="left").astype(np.int64)
    block_stacking = local_stacking(block, cn_cutoff(a))
    return PlanarResult(block[idx].copy(), block, block_grain[idx].copy(), block_grain, block_stacking[idx].copy(),
                        block_stacking)


def choose_vacancies(cn: np.ndarray, fraction: float, region: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of atoms to remove: ``round(fraction·N)`` drawn from the surface (CN < 12), interior
    (CN = 12) or any atoms.

    Raises
    ------
    TumblebenchError
        More vacancies requested than atoms in the region.
    """
    cn = np.asarray(cn)
    n_remove = round(fraction * len(cn))
    if n_remove == 0:
        return np.zeros(0, dtype=np.int64)
    cand = {"surface": np.flatnonzero(cn < 12), "interior": np.flatnonzero(cn >= 12),
            "any": np.arange(len(cn))}[region]
    require(n_remove <= len(cand), f"defects.vacancy_fraction: {n_remove} vacancies requested but only "
            f"{len(cand)} {region} atoms")
    return np.sort(rng.choice(cand, size=n_remove, replace=False)).astype(np.int64)


def adatom_sites(positions: np.ndarray, lattice_constant: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface hollow sites: above every triangle of mutually bonded surface atoms, at bond distance from
    all three (fcc and hcp hollows of (111) facets; on (100) facets the 4-fold hollow), kept when no atom is
    closer than 0.95 × the bond length.

    Returns
    -------
    sites
        (K, 3) positions (Å), deduplicated and sorted.
    n_neighbours
        (K,) number of particle atoms within the CN cutoff of each site.
    """
    pos = np.asarray(positions, dtype=np.float64)
    a = float(lattice_constant)
    cut = cn_cutoff(a)
    d_nn = a / math.sqrt(2.0)
    nl = neighbour_lists(pos, cut)
    cn = nl.counts()
    surf = cn < 12
    adj = nl.matrix().tolil()
    s_idx = np.flatnonzero(surf)
    sub = sp.csr_matrix(adj[s_idx][:, s_idx])
    coo = sp.triu(sub, k=1).tocoo()
    ei, ej = coo.row, coo.col
    if len(ei) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    common = sub[ei].multiply(sub[ej]).tocoo()
    keep = common.col > ej[common.row]
    ti, tj, tk = ei[common.row[keep]], ej[common.row[keep]], common.col[keep]
    p1, p2, p3 = pos[s_idx[ti]], pos[s_idx[tj]], pos[s_idx[tk]]
    # circumcentre and height above the triangle plane
    ab, ac = p2 - p1, p3 - p1
    nrm = np.cross(ab, ac)
    nn2 = np.einsum("ij,ij->i", nrm, nrm)
    ok = nn2 > 1e-12
    ab, ac, nrm, nn2, p1 = ab[ok], ac[ok], nrm[ok], nn2[ok], p1[ok]
    cc = p1 + (np.cross(nrm, ab) * np.einsum("ij,ij->i", ac, ac)[:, None]
               + np.cross(ac, nrm) * np.einsum("ij,ij->i", ab, ab)[:, None]) / (2 * nn2[:, None])
    rc2 = np.einsum("ij,ij->i", cc - p1, cc - p1)
    h2 = d_nn**2 - rc2
    ok = h2 > 0
    cc, nrm, h = cc[ok], nrm[ok] / np.sqrt(nn2[ok])[:, None], np.sqrt(h2[ok])
    centre = pos.mean(axis=0)
    flip = np.einsum("ij,ij->i", nrm, cc - centre) < 0
    nrm[flip] *= -1
    sites = cc + h[:, None] * nrm
    if len(sites) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    dmin, _ = cKDTree(pos).query(sites)
    sites = sites[dmin > 0.95 * d_nn]
    if len(sites) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    # deduplicate (several triangles of a square give the same 4-fold hollow)
    key = np.round(sites / 0.05).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    sites = sites[np.sort(first)]
    st = cKDTree(sites)
    pairs = st.query_pairs(0.3, output_type="ndarray")
    if len(pairs):
        drop = np.zeros(len(sites), bool)
        drop[np.maximum(pairs[:, 0], pairs[:, 1])] = True
        sites = sites[~drop]
    order = np.lexsort((sites[:, 2], sites[:, 1], sites[:, 0]))
    sites = sites[order]
    nnb = np.asarray([len(x) for x in cKDTree(pos).query_ball_point(sites, cut)], dtype=np.int64)
    return sites, nnb


def choose_adatoms(positions: np.ndarray, lattice_constant: float, n_adatoms: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_adatoms`` hollow sites, no two closer than the bond length.

    Returns
    -------
    sites
        (n_adatoms, 3) positions (Å).
    n_neighbours
        (n_adatoms,) particle atoms within the CN cutoff of each adatom.

    Raises
    ------
    TumblebenchError
        Not enough separated hollow sites.
    """
    if n_adatoms == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    sites, nnb = adatom_sites(positions, lattice_constant)
    d_nn = lattice_constant / math.sqrt(2.0)
    chosen: list[int] = []
    for i in rng.permutation(len(sites)):  # loop over candidates until n_adatoms accepted (small)
        if chosen and np.min(np.linalg.norm(sites[chosen] - sites[i], axis=1)) < 0.999 * d_nn:
            continue
        chosen.append(int(i))
        if len(chosen) == n_adatoms:
            break
    require(len(chosen) == n_adatoms, f"defects.n_adatoms: only {len(chosen)} separated hollow sites available, "
            f"{n_adatoms} requested")
    idx = np.asarray(chosen, dtype=np.int64)
    return sites[idx], nnb[idx]
