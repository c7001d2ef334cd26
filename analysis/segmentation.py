"""Binarisation, connected components, atom centres and the splitting of merged atoms (Wietfeldt et al. 2024).

At a threshold T the denoised map C is binarised (within the particle envelope) and its 6-connected
components are the candidate atoms; each centre is the grey-value centre of mass of C over the component.
A component whose centre lies more than one voxel from its maximum, or whose farthest voxel lies more than
1.5 r_th from its centre, holds two or more atoms (Wietfeldt 2024). It is split as Wietfeldt 2024 does: the first new
centre is the component's maximum of C, each further centre the maximum of C outside spheres already drawn,
and the search stops at a candidate closer than 2 r_th to an accepted centre. Done for every component at
once: the local maxima of C are found once per map, thinned greedily by the 2 r_th exclusion (highest
first), and the voxels of a split component go to their nearest accepted maximum in that component.
Everything is vectorised (bincount, KD-trees); no Python loop runs over atoms or voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from tumblebench.analysis.displacement import refine_peaks


def local_maxima(C: np.ndarray, mask: np.ndarray, floor: float, exclusion_vox: float) -> np.ndarray:
    """Local maxima of ``C`` inside ``mask`` above ``floor``, thinned so no two lie within ``exclusion_vox``.

    Greedy non-maximum suppression: a maximum survives unless a higher surviving maximum lies within the
    exclusion distance (iterated to the fixed point of the greedy rule).

    Returns
    -------
    numpy.ndarray
        (P, 3) integer voxel indices (z, y, x) sorted by decreasing C.
    """
    mx = ndimage.maximum_filter(C, size=3, mode="nearest")
    idx = np.argwhere((C >= mx) & mask & (C > floor))
    if len(idx) == 0:
        return idx
    vals = C[tuple(idx.T)]
    order = np.argsort(-vals, kind="stable")
    idx = idx[order]
    n = len(idx)
    pairs = cKDTree(idx.astype(float)).query_pairs(exclusion_vox, output_type="ndarray")
    if len(pairs) == 0:
        return idx
    lo = pairs.min(axis=1)  # higher-ranked (smaller index = higher C)
    hi = pairs.max(axis=1)
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, -1 suppressed
    while True:
        und = state == 0
        if not und.any():
            break
        # an undecided peak is kept when no undecided-or-kept higher peak conflicts with it
        blocking = np.zeros(n, bool)
        live = state[lo] >= 0
        np.logical_or.at(blocking, hi[live & (state[hi] == 0)], True)
        newly_kept = und & ~blocking
        state[newly_kept] = 1
        kept_lo = state[lo] == 1
        sup = np.zeros(n, bool)
        np.logical_or.at(sup, hi[kept_lo], True)
        state[sup & (state == 0)] = -1
        if not newly_kept.any() and not (sup & und).any():  # pragma: no cover - cannot happen (top peak is free)
            break
    return idx[state == 1]


@dataclass
class Segmentation:
    """Atoms found at one threshold.

    Attributes
    ----------
    centres_vox
        (N, 3) atom centres (x, y, z) in voxel units.
    labels
        int32 map [z, y, x]: 0 background, i+1 the voxels of atom i.
    nvox
        (N,) voxels per atom.
    n_components
        Connected components before splitting.
    n_split
        Components split into two or more atoms.
    """

    centres_vox: np.ndarray
    labels: np.ndarray
    nvox: np.ndarray
    n_components: int
    n_split: int


def segment(C: np.ndarray, mask: np.ndarray, threshold: float, radius_vox: float, peaks: np.ndarray,
            split: bool = True, min_voxels: int = 3) -> Segmentation:
    """Binarise ``C`` at ``threshold`` inside ``mask`` and return one centre per atom.

    Parameters
    ----------
    C
        Denoised map [z, y, x].
    mask
        Particle envelope.
    threshold
        Binarisation threshold (units of C).
    radius_vox
        Theoretical atomic radius r_th in voxels.
    peaks
        Thinned local maxima of C (:func:`local_maxima`), (P, 3) voxel indices (z, y, x).
    split
        Split components that hold two or more atoms.
    min_voxels
        Components smaller than this are discarded (SINGLE: 3).
    """
    binary = (C > threshold) & mask
    lab, ncomp = ndimage.label(binary)
    vox = np.nonzero(binary)
    lv = lab[vox]
    n_split = 0
    if split and ncomp > 0 and len(peaks):
        pv = C[tuple(peaks.T)]
        pk = peaks[pv > threshold]
        plab = lab[tuple(pk.T)]
        pk, plab = pk[plab > 0], plab[plab > 0]
        npk = np.bincount(plab, minlength=ncomp + 1)
        # Wietfeldt et al. (2024)'s test: centre far from the maximum, or component too long
        w = C[vox].astype(np.float64)
        wsum = np.bincount(lv, w, ncomp + 1)
        wsum[wsum == 0] = 1
        com = np.stack([np.bincount(lv, w * v, ncomp + 1) for v in vox], axis=1) / wsum[:, None]
        order = np.lexsort((C[vox], lv))
        last = np.r_[np.nonzero(np.diff(lv[order]))[0], len(order) - 1]
        imax = np.zeros((ncomp + 1, 3))
        imax[lv[order][last]] = np.stack([v[order][last] for v in vox], axis=1)
        dmax = np.linalg.norm(com - imax, axis=1)
        vcoord = np.stack(vox, axis=1).astype(np.float64)
        dvox = np.linalg.norm(vcoord - com[lv], axis=1)
        extent = np.zeros(ncomp + 1)
        np.maximum.at(extent, lv, dvox)
        flagged = ((dmax > 1.0) | (extent > 1.5 * radius_vox)) & (npk >= 2)
        flagged[0] = False
        if flagged.any():
            n_split = int(flagged.sum())
            sel_p = flagged[plab]
            pk, plab = pk[sel_p], plab[sel_p]
            new_id = np.arange(len(pk)) + ncomp + 1
            sel_v = flagged[lv]
            vz = vcoord[sel_v]
            tree = cKDTree(pk.astype(float))
            k = int(min(len(pk), 8))
            _, nn = tree.query(vz, k=k)
            nn = nn.reshape(len(vz), k)
            ok = plab[nn] == lv[sel_v][:, None]
            first = np.argmax(ok, axis=1)
            has = ok[np.arange(len(vz)), first]
            assign = np.where(has, new_id[nn[np.arange(len(vz)), first]], lv[sel_v])
            lv = lv.copy()
            lv[sel_v] = assign
    # relabel to consecutive atom ids
    uniq, lv = np.unique(lv, return_inverse=True)
    n = len(uniq)
    nvox = np.bincount(lv, minlength=n)
    keep = nvox >= min_voxels
    remap = np.full(n, -1)
    remap[keep] = np.arange(int(keep.sum()))
    lv = remap[lv]
    good = lv >= 0
    lv = lv[good]
    vox = tuple(v[good] for v in vox)
    n = int(keep.sum())
    nvox = nvox[keep]
    w = C[vox].astype(np.float64) - threshold
    wsum = np.bincount(lv, w, n)
    wsum[wsum == 0] = 1
    com_zyx = np.stack([np.bincount(lv, w * v, n) for v in vox], axis=1) / wsum[:, None]
    centres = com_zyx[:, ::-1].copy()
    if n:  # centres: a quadratic fit to log C around each atom's maximum; the grey-value centre of mass where it fails
        order = np.lexsort((C[vox], lv))
        last = np.r_[np.nonzero(np.diff(lv[order]))[0], len(order) - 1]
        peak_zyx = np.stack([v[order][last] for v in vox], axis=1)
        refined, ok = refine_peaks(C, peak_zyx)
        centres[ok] = refined[ok]
    labels = np.zeros(C.shape, np.int32)
    labels[vox] = lv + 1
    return Segmentation(centres, labels, nvox, int(ncomp), n_split)
