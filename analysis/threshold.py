"""Automatic binarisation threshold of Wietfeldt et al. 2024: Otsu's T0, a coarse scan to the maximum, then finer scans.

Each candidate threshold T is scored by the Pearson correlation, over the particle envelope, between the
denoised map C and a map simulated from the atoms found at T (every atom the same Gaussian with the width of
a denoised atom: scaling each to C at its centre would reward noise blobs and choose too low a threshold).
SINGLE refines around the single best coarse threshold; here every local maximum of the coarse correlation
curve within 2 % of the best is refined, so a second peak of the curve is not missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from skimage.filters import threshold_otsu

from tumblebench.analysis._kernels import splat_isotropic
from tumblebench.analysis.segmentation import Segmentation, segment
from tumblebench.simulator.errors import TumblebenchError


@dataclass
class ThresholdScan:
    """Result of the threshold search.

    Attributes
    ----------
    t0
        Otsu's threshold of C within the envelope.
    best
        The chosen threshold.
    thresholds, correlations, n_atoms
        Every threshold tried, its correlation and its atom count (coarse then fine, in order tried).
    segmentation
        The atoms at the chosen threshold.
    """

    t0: float
    best: float
    thresholds: list[float] = field(default_factory=list)
    correlations: list[float] = field(default_factory=list)
    n_atoms: list[int] = field(default_factory=list)
    segmentation: Segmentation | None = None


def simulate_gaussians(shape: tuple[int, int, int], centres_vox: np.ndarray, amplitude: np.ndarray,
                       sigma_vox: float) -> np.ndarray:
    """Sum of isotropic Gaussians (σ in voxels) at ``centres_vox`` (x, y, z voxel units), float32 [z, y, x]."""
    out = np.zeros(shape, np.float32)
    if len(centres_vox):
        splat_isotropic(out, np.ascontiguousarray(centres_vox, dtype=np.float64),
                        np.ascontiguousarray(amplitude, dtype=np.float64), float(sigma_vox), 3.5 * sigma_vox)
    return out


def _score(C: np.ndarray, cm: np.ndarray, mask: np.ndarray, seg: Segmentation, sigma_vox: float) -> float:
    if len(seg.centres_vox) == 0:
        return -1.0
    amp = np.ones(len(seg.centres_vox))  # every atom the same simulated atom (Wietfeldt et al. 2024)
    S = simulate_gaussians(C.shape, seg.centres_vox, amp, sigma_vox)[mask]
    cc = np.corrcoef(cm, S)[0, 1]
    return float(cc) if np.isfinite(cc) else -1.0


def scan_thresholds(C: np.ndarray, mask: np.ndarray, peaks: np.ndarray, radius_vox: float, sigma_vox: float,
                    n_coarse: int = 15, n_fine: int = 8, split: bool = True) -> ThresholdScan:
    """Choose the binarisation threshold of the denoised map ``C`` (Wietfeldt et al. 2024).

    Parameters
    ----------
    C
        Denoised map [z, y, x].
    mask
        Particle envelope (bool).
    peaks
        Thinned local maxima of C (voxel indices z, y, x).
    radius_vox
        Theoretical atomic radius in voxels.
    sigma_vox
        σ of a denoised atom in voxels (for the simulated maps).
    n_coarse, n_fine
        Number of coarse thresholds from T0 to max(C), and of fine thresholds around each retained peak.
    split
        Passed to :func:`tumblebench.analysis.segmentation.segment`.

    Raises
    ------
    TumblebenchError
        The envelope holds no foreground above Otsu's threshold.
    """
    cm = C[mask]
    if cm.size < 27 or float(cm.max() - cm.min()) <= 0:
        raise TumblebenchError("the particle envelope holds no density to threshold")
    t0 = float(threshold_otsu(cm))
    cmax = float(cm.max())
    res = ThresholdScan(t0=t0, best=t0)
    cache: dict[float, tuple[float, Segmentation]] = {}

    def trial(t: float) -> float:
        seg = segment(C, mask, t, radius_vox, peaks, split=split)
        # rounded so that decisions between near-equal scores do not hinge on summation order
        sc = round(_score(C, cm, mask, seg, sigma_vox), 6)
        cache[t] = (sc, seg)
        res.thresholds.append(t)
        res.correlations.append(sc)
        res.n_atoms.append(len(seg.centres_vox))
        return sc

    coarse = np.linspace(t0, cmax, n_coarse + 1)[:-1]
    scores = np.array([trial(float(t)) for t in coarse])
    best = float(scores.max())
    step = coarse[1] - coarse[0]
    # every local maximum of the coarse curve close to the best gets a finer scan
    is_peak = np.r_[True, scores[1:] >= scores[:-1]] & np.r_[scores[:-1] >= scores[1:], True]
    cand = np.nonzero(is_peak & (scores >= best - 0.02 * abs(best)))[0]
    for i in cand[np.argsort(-scores[cand])][:3]:
        lo = max(t0, coarse[i] - step)
        hi = min(cmax, coarse[i] + step)
        for t in np.linspace(lo, hi, n_fine + 2)[1:-1]:
            if float(t) not in cache:
                trial(float(t))
    # the middle of the plateau of (near-)best thresholds: stable against rounding-level differences
    top = max(v[0] for v in cache.values())
    near = sorted(t for t, v in cache.items() if v[0] >= top - 1e-4)
    t_best = near[(len(near) - 1) // 2]
    res.best = t_best
    res.segmentation = cache[t_best][1]
    if len(res.segmentation.centres_vox) == 0:
        raise TumblebenchError("no atoms found at any threshold")
    return res
