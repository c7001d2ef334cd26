"""Fourier shell correlation and the filters derived from it.

FSC(k) = Re Σ_shell F₁ F₂* / sqrt(Σ|F₁|² Σ|F₂|²) over shells one Fourier pixel thick. Resolution at a
threshold is the first crossing below it, linearly interpolated, reported in Å.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.grid import shells


def fsc(map1: np.ndarray, map2: np.ndarray, sampling: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two maps of equal cubic shape.

    Parameters
    ----------
    map1, map2
        Real maps [z, y, x].
    sampling
        Voxel edge in Å.

    Returns
    -------
    (frequency, fsc)
        Shell frequencies in 1/Å (0 … Nyquist) and the FSC per shell.
    """
    a = np.asarray(map1, np.float64)
    b = np.asarray(map2, np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise TumblebenchError(f"FSC needs two 3D maps of the same shape, got {a.shape} and {b.shape}")
    fa = scipy.fft.rfftn(a, workers=-1)
    fb = scipy.fft.rfftn(b, workers=-1)
    sh = shells(a.shape, rfft=True).ravel()
    n = min(a.shape)
    nsh = n // 2 + 1
    keep = sh < nsh
    sh = sh[keep]
    fa = fa.ravel()[keep]
    fb = fb.ravel()[keep]
    # rfft halves: columns kx=0 and Nyquist appear once, others stand for two conjugate voxels — the
    # ratio is unaffected to within a negligible weighting difference
    num = np.bincount(sh, weights=(fa * np.conj(fb)).real, minlength=nsh)
    d1 = np.bincount(sh, weights=np.abs(fa) ** 2, minlength=nsh)
    d2 = np.bincount(sh, weights=np.abs(fb) ** 2, minlength=nsh)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where((d1 > 0) & (d2 > 0), num / np.sqrt(d1 * d2), 0.0)
    freq = np.arange(nsh) / (n * sampling)
    return freq, curve


def resolution_at(freq: np.ndarray, curve: np.ndarray, threshold: float, min_freq: float = 0.0) -> float:
    """Resolution (Å) where ``curve`` first falls below ``threshold`` (interpolated).

    Shell 0 is skipped, and so are shells below ``min_freq`` (1/Å; e.g. to score only the band that an
    aberration-corrected phase-contrast CTF transfers). If the curve never falls below the threshold, the
    Nyquist resolution is returned; if it is below from the first shell considered on, ``inf``.
    """
    start = max(1, int(np.searchsorted(freq, min_freq)))
    for i in range(start, len(curve)):
        if curve[i] < threshold:
            if i == start:
                return float("inf")
            f0, f1 = freq[i - 1], freq[i]
            c0, c1 = curve[i - 1], curve[i]
            f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0) if c0 != c1 else f1
            return float(1.0 / f)
    return float(1.0 / freq[-1])


def fsc_weight(curve: np.ndarray) -> np.ndarray:
    """The Rosenthal–Henderson weight sqrt(2F/(1+F)) of a half-map FSC, for the full map (0 where F ≤ 0)."""
    c = np.clip(np.asarray(curve, np.float64), 0.0, 0.999)
    return np.sqrt(2 * c / (1 + c))


def wiener_tau(curve: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Per-shell Wiener regulariser (fraction of the mean weight) 1/SNR of the full map from a half-map FSC.

    SNR_full = 2·FSC/(1 − FSC); returns max(1/SNR, floor), capped at 1e3.
    """
    c = np.clip(np.asarray(curve, np.float64), 1e-4, 0.999)
    snr = 2 * c / (1 - c)
    return np.clip(1.0 / snr, floor, 1e3)
