"""Tools of the ``sphere`` ab initio: small band-limited maps and the correlation of frames with candidate poses.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft

from tumblebench.reconstruct._gridding_kernels import score_candidates
from tumblebench.reconstruct.projector import Band, Reconstructor

log = logging.getLogger("tumblebench.reconstruct")


def _lowpass_volume(vol: np.ndarray, resolution_px: float) -> np.ndarray:
    n = vol.shape[0]
    ft = scipy.fft.rfftn(vol, workers=-1)
    k = [np.fft.fftfreq(n) * n] * 2 + [np.fft.rfftfreq(n) * n]
    kz, ky, kx = np.meshgrid(*k, indexing="ij", sparse=True)
    r = np.sqrt(kz**2 + ky**2 + kx**2)
    kc = n / resolution_px
    w = np.clip((kc - r) / 2.0 + 0.5, 0, 1)
    return scipy.fft.irfftn(ft * (0.5 - 0.5 * np.cos(np.pi * w)), s=vol.shape, workers=-1).astype(np.float32)


def _reconstruct_small(images: np.ndarray, rots: np.ndarray, res_px: float, mask: np.ndarray,
                       ctf: np.ndarray | None) -> np.ndarray:
    n = images.shape[-1]
    rec = Reconstructor(n, pad=2)
    rec.insert(images, rots, ctf=ctf, r_max=n / res_px)
    vol = rec.reconstruct(tau=0.05)
    vol = _lowpass_volume(vol, res_px)
    if ctf is None:  # linear projections of a positive potential: positivity is a valid constraint
        return np.maximum(vol, 0) * mask
    # through a CTF (and the non-linear contrast of a strong phase object) the low-resolution map need not be
    # positive: only the mask applies
    return vol * mask


def _cc(ref, x: np.ndarray, band: Band, cands: np.ndarray, ctf: np.ndarray | None = None) -> np.ndarray:
    """Normalised correlations (M, K) of images ``x`` (M, P) with projections at candidate poses (M, K, 3, 3)."""
    m, k = cands.shape[:2]
    out = np.empty((m, k))
    c = np.ones((m, band.kx.size), np.float32) if ctf is None else np.ascontiguousarray(ctf, np.float32)
    xx = np.ascontiguousarray(x, np.complex64)
    score_candidates(ref.vft, np.ascontiguousarray(cands, np.float64), band.kx, band.ky, ref.pad, xx, c, out)
    nrm = np.sqrt((np.abs(xx) ** 2).sum(axis=1))
    return out / np.maximum(nrm, 1e-30)[:, None]
