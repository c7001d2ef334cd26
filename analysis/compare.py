"""Comparing two atom models of the same particle (e.g. the two halves of a series), as Wietfeldt et al. 2024 does.

Atoms are paired one-to-one (minimum total distance) within 1.76 Å (0.8 of Pt's atomic diameter). Paired
atoms are *common*; an atom of A without a partner is *displaced* when an unpaired atom of B lies within
``displaced_within`` Å of it (it moved by more than 1.76 Å), otherwise *lost*; unpaired atoms of B that no
displaced atom claims are *gained*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from tumblebench.simulator.errors import TumblebenchError


def pair_atoms(a: np.ndarray, b: np.ndarray, max_dist: float) -> np.ndarray:
    """One-to-one pairs (i, j) of ``a`` and ``b`` within ``max_dist`` minimising the summed distance.

    Only atoms with a candidate partner enter the assignment (sparse candidates from a KD-tree).
    """
    a = np.asarray(a, float).reshape(-1, 3)
    b = np.asarray(b, float).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    sd = cKDTree(a).sparse_distance_matrix(cKDTree(b), max_dist, output_type="coo_matrix")
    if sd.nnz == 0:
        return np.zeros((0, 2), np.int64)
    ra, ia = np.unique(sd.row, return_inverse=True)
    rb, ib = np.unique(sd.col, return_inverse=True)
    big = 1e6
    cost = np.full((len(ra), len(rb)), big)
    cost[ia, ib] = sd.data
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] < big
    return np.stack([ra[r[keep]], rb[c[keep]]], axis=1).astype(np.int64)


def compare_models(a: np.ndarray, b: np.ndarray, max_dist: float = 1.76, displaced_within: float = 3.5
                   ) -> dict[str, Any]:
    """Common, lost, gained and displaced atoms between models A and B (same frame).

    Parameters
    ----------
    a, b
        (N, 3) and (M, 3) positions in Å.
    max_dist
        Largest distance (Å) at which two atoms are the same atom (Wietfeldt et al. 2024: 1.76 Å).
    displaced_within
        An unpaired A atom with an unpaired B atom closer than this (Å) counts as displaced, not lost.

    Returns
    -------
    dict
        Counts, percentages (of A, of B, and of the mean count, as Wietfeldt et al. (2024)'s "common (%)"), the RMS and
        median shift of common atoms (pm), and the index lists.
    """
    a = np.asarray(a, float).reshape(-1, 3)
    b = np.asarray(b, float).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        raise TumblebenchError("atoms-compare: both models need at least one atom")
    pairs = pair_atoms(a, b, max_dist)
    ua = np.setdiff1d(np.arange(len(a)), pairs[:, 0])
    ub = np.setdiff1d(np.arange(len(b)), pairs[:, 1])
    disp_pairs = pair_atoms(a[ua], b[ub], displaced_within) if len(ua) and len(ub) else np.zeros((0, 2), int)
    displaced_a = ua[disp_pairs[:, 0]] if len(disp_pairs) else np.zeros(0, int)
    displaced_b = ub[disp_pairs[:, 1]] if len(disp_pairs) else np.zeros(0, int)
    lost = np.setdiff1d(ua, displaced_a)
    gained = np.setdiff1d(ub, displaced_b)
    d = np.linalg.norm(a[pairs[:, 0]] - b[pairs[:, 1]], axis=1) if len(pairs) else np.zeros(0)
    nc = len(pairs)
    return {
        "n_a": len(a), "n_b": len(b), "n_common": nc,
        "common_pct_of_a": 100.0 * nc / len(a), "common_pct_of_b": 100.0 * nc / len(b),
        "common_pct": 100.0 * nc / (0.5 * (len(a) + len(b))),
        "n_lost": len(lost), "n_gained": len(gained), "n_displaced": len(displaced_a),
        "lost_pct_of_a": 100.0 * len(lost) / len(a),
        "rms_shift_common_pm": float(np.sqrt(np.mean(d**2)) * 100) if nc else float("nan"),
        "median_shift_common_pm": float(np.median(d) * 100) if nc else float("nan"),
        "max_dist_A": max_dist,
        "pairs": pairs.tolist(), "lost": lost.tolist(), "gained": gained.tolist(),
        "displaced": [[int(i), int(j)] for i, j in zip(displaced_a, displaced_b, strict=True)],
    }
