"""Tools shared by the ``sphere`` ab initio and refinement: small band-limited maps (with the positivity fill of
the unmeasured Fourier region) and the correlation of frames with candidate poses.
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
                       ctf: np.ndarray | None, fill_iter: int = 0) -> np.ndarray:
    n = images.shape[-1]
    rec = Reconstructor(n, pad=2)
    rec.insert(images, rots, ctf=ctf, r_max=n / res_px)
    vol = rec.reconstruct(tau=0.05)
    vol = _lowpass_volume(vol, res_px)
    if ctf is None:  # linear projections of a positive potential: positivity is a valid constraint
        if fill_iter > 0:
            return _fill_unmeasured(vol, rec.weight, rec.pad, mask, res_px, fill_iter)
        return np.maximum(vol, 0) * mask
    # through a CTF (and the non-linear contrast of a strong phase object) the low-resolution map need not be
    # positive: only the mask applies
    return vol * mask


def _fill_unmeasured(vol: np.ndarray, weight: np.ndarray, pad: int, mask: np.ndarray, res_px: float,
                     n_iter: int, level: float = 0.1, keep_measured: bool = False) -> np.ndarray:
    """Fill the Fourier region no slice sampled by alternating projections (positivity and support in real
    space, the measured transform where it was measured).

    A Brownian series of a few hundred frames sees its particle from a cap of beam directions only, which
    leaves a double cone of its 3D transform unmeasured (zero after the Wiener division). Clipping such a map
    at zero once (the old constraint) puts the clipped ringing's transform into the measured region too and
    so corrupts the data; these iterations keep the measured transform and let the constraints fill only the
    rest (the missing-wedge filling of tomography). With ``keep_measured`` the result carries the measured
    transform exactly (the constraints' last pass changes only the unmeasured part), otherwise it is the
    constrained (positive) map.
    """
    n = vol.shape[0]
    nn = weight.shape[0]
    k = (np.arange(n) - n // 2) * pad + nn // 2  # unpadded frequencies on the padded (centred) grid
    w = weight[np.ix_(k, k, k)]
    pos = w[w > 0]
    measured = scipy.fft.ifftshift(w > level * (pos.mean() if pos.size else 1.0))
    f_meas = scipy.fft.fftn(vol, workers=-1)
    v = np.maximum(vol, 0) * mask
    data = vol
    for _ in range(n_iter):
        f = scipy.fft.fftn(v, workers=-1)
        f[measured] = f_meas[measured]
        data = scipy.fft.ifftn(f, workers=-1).real
        v = np.maximum(data, 0) * mask
    return _lowpass_volume((data if keep_measured else v).astype(np.float32), res_px) * mask


def _cc(ref, x: np.ndarray, band: Band, cands: np.ndarray, ctf: np.ndarray | None = None) -> np.ndarray:
    """Normalised correlations (M, K) of images ``x`` (M, P) with projections at candidate poses (M, K, 3, 3)."""
    m, k = cands.shape[:2]
    out = np.empty((m, k))
    c = np.ones((m, band.kx.size), np.float32) if ctf is None else np.ascontiguousarray(ctf, np.float32)
    xx = np.ascontiguousarray(x, np.complex64)
    score_candidates(ref.vft, np.ascontiguousarray(cands, np.float64), band.kx, band.ky, ref.pad, xx, c, out)
    nrm = np.sqrt((np.abs(xx) ** 2).sum(axis=1))
    return out / np.maximum(nrm, 1e-30)[:, None]
