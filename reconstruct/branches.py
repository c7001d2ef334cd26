"""Small band-limited maps of the ``sphere`` ab initio (positivity without a CTF, the mask)."""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft

from tumblebench.reconstruct.projector import Reconstructor

log = logging.getLogger("tumblebench.reconstruct")


def lowpass_volume(vol: np.ndarray, resolution_px: float) -> np.ndarray:
    """``vol`` (cubic) low-passed to ``resolution_px`` (pixels per period) with a raised-cosine edge of 2 Fourier
    pixels, as float32."""
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
    vol = lowpass_volume(vol, res_px)
    if ctf is None:  # linear projections of a positive potential: positivity is a valid constraint
        return np.maximum(vol, 0) * mask
    # through a CTF (and the non-linear contrast of a strong phase object) the low-resolution map need not be
    # positive: only the mask applies
    return vol * mask
