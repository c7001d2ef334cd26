"""Denoising by correlation with one simulated atom, and the automatic particle envelope.

Seed 004 replaces the map M by C, the correlation of M with the density of a single simulated atom of the
particle's element. The atom's Fourier transform is known exactly (the five-Gaussian scattering factor times
its Debye–Waller factor), so C is computed as one product in Fourier space, band-limited like the map.

The envelope replaces SINGLE's automatic spherical mask (which collapses at low SNR): the map is low-passed
with a Gaussian of a few Å, which averages the noise away while keeping the particle's mean density, then
thresholded by Otsu's method; the largest connected blob, with its holes filled and dilated by a few Å, is
the particle. The contrast of that blob over the low-passed background also tells whether the map holds a
particle at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage
from skimage.filters import threshold_otsu

from tumblebench.simulator import grid
from tumblebench.simulator.config import PROCESS_BYTES, check_memory
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.scattering import gaussian_coefficients


def check_map(volume: np.ndarray, sampling: float, where: str = "map") -> np.ndarray:
    """Validate a map and return it as float32 with its median (the solvent level) subtracted.

    Parameters
    ----------
    volume
        3D array [z, y, x].
    sampling
        Voxel edge in Å.
    where
        Name used in error messages (the file name).

    Raises
    ------
    TumblebenchError
        Not 3D, smaller than 16 voxels along an axis, NaN/inf values, constant, or a voxel size outside
        [0.05, 2] Å (atoms cannot be resolved at coarser sampling).
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise TumblebenchError(f"{where}: expected a 3D map, got shape {vol.shape}")
    if min(vol.shape) < 16:
        raise TumblebenchError(f"{where}: map shape {vol.shape} is too small; need at least 16 voxels per axis")
    if not np.all(np.isfinite(vol)):
        raise TumblebenchError(f"{where}: map holds NaN or infinite values")
    if not (np.isfinite(sampling) and 0.05 <= sampling <= 2.0):
        raise TumblebenchError(
            f"{where}: voxel size {sampling} Å is outside [0.05, 2] Å; atoms cannot be resolved (wrong header?)"
        )
    # the model builder holds about twenty map-sized float32 arrays and a few complex transforms at once
    shape = "×".join(map(str, vol.shape))
    check_memory(PROCESS_BYTES + ATOMS_BYTES_PER_VOXEL * vol.size, f"atoms on {where} (map of {shape} voxels)",
                 "the map (crop it around the particle)")
    vol = vol.astype(np.float32)
    med = np.median(vol)
    if float(vol.max() - vol.min()) <= 0:
        raise TumblebenchError(f"{where}: map is constant; no atoms to find")
    return vol - med


#: Estimated peak memory of the atoms stage per map voxel, bytes (checked before the model is built).
ATOMS_BYTES_PER_VOXEL = 128


def frequency_squared(shape: tuple[int, int, int], sampling: float) -> np.ndarray:
    """|q|² (Å⁻²) on the rfftn grid of ``shape`` (q = 1/d, cycles per Å)."""
    return grid.frequency_squared(shape, sampling, rfft=True).astype(np.float32)


def atom_transfer(element: str, q2: np.ndarray, u_iso: float, resolution: float | None) -> np.ndarray:
    """Normalised Fourier transform of one atom of ``element`` with isotropic displacement ``u_iso``.

    f(s)·exp(−2π²U q²) / f(0) with s = q/2 (Peng five-Gaussian fit), zero beyond 1/``resolution``.

    Parameters
    ----------
    element
        Chemical symbol.
    q2
        Squared spatial frequency (Å⁻²).
    u_iso
        Mean-square displacement along one axis (Å²).
    resolution
        Band limit in Å (None: none).
    """
    a, b = gaussian_coefficients(element)
    out = np.zeros_like(q2, dtype=np.float32)
    for ai, bi in zip(a, b, strict=True):
        out += np.float32(ai) * np.exp(-(bi / 4.0 + 2 * np.pi**2 * u_iso) * q2).astype(np.float32)
    out /= np.float32(a.sum())
    if resolution is not None:
        out[q2 > 1.0 / resolution**2] = 0.0
    return out


@dataclass
class Prepared:
    """A map with its Fourier transform and the derived maps of the stage.

    Attributes
    ----------
    raw
        The map M minus its median, float32 [z, y, x].
    denoised
        C: M correlated with one simulated atom (same units as M: the template sums to 1).
    envelope
        Boolean particle envelope (dilated), or all True without a mask.
    envelope_zscore
        Contrast of the particle blob over the low-passed background, in background standard deviations.
    """

    raw: np.ndarray
    denoised: np.ndarray
    envelope: np.ndarray
    envelope_zscore: float


def denoise(raw: np.ndarray, sampling: float, element: str, template_u: float, resolution: float | None,
            ft: np.ndarray | None = None) -> np.ndarray:
    """Seed 004's denoising: correlation of the map with one simulated atom (float32, same shape)."""
    if ft is None:
        ft = scipy.fft.rfftn(raw, workers=-1)
    q2 = frequency_squared(raw.shape, sampling)
    t = atom_transfer(element, q2, template_u, resolution)
    return scipy.fft.irfftn(ft * t, s=raw.shape, workers=-1).astype(np.float32)


def envelope_mask(raw: np.ndarray, sampling: float, sigma_A: float, dilate_A: float,
                  ft: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Automatic particle envelope and its contrast z-score.

    Parameters
    ----------
    raw
        Map minus its solvent level.
    sampling
        Voxel edge in Å.
    sigma_A
        Gaussian low-pass σ (Å).
    dilate_A
        Dilation of the blob (Å).
    ft
        rfftn of ``raw`` if already computed.

    Returns
    -------
    mask, zscore
        Boolean mask [z, y, x]; (median inside the blob − median outside the mask) / robust σ outside.
    """
    if ft is None:
        ft = scipy.fft.rfftn(raw, workers=-1)
    q2 = frequency_squared(raw.shape, sampling)
    low = scipy.fft.irfftn(ft * np.exp(-2 * np.pi**2 * sigma_A**2 * q2), s=raw.shape, workers=-1)
    t = threshold_otsu(low)
    blob = low > t
    lab, n = ndimage.label(blob)
    if n == 0:
        return np.ones(raw.shape, bool), 0.0
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    blob = lab == int(np.argmax(sizes))
    blob = ndimage.binary_fill_holes(blob)
    # distances from the blob, computed in its bounding box grown by the dilation plus 2σ (the only region
    # where they matter); everything farther is outside the mask and counts as background
    grow = int(np.ceil((dilate_A + 2 * sigma_A) / sampling)) + 1
    nz = [np.nonzero(blob.any(axis=ax))[0] for ax in ((1, 2), (0, 2), (0, 1))]
    box = tuple(slice(max(int(a[0]) - grow, 0), min(int(a[-1]) + grow + 1, n))
                for a, n in zip(nz, raw.shape, strict=True))
    dist = np.full(raw.shape, np.inf, np.float32)
    dist[box] = ndimage.distance_transform_edt(~blob[box], sampling=sampling)
    mask = dist <= dilate_A
    outside = low[dist > dilate_A + 2 * sigma_A]
    if outside.size < 100:
        outside = low[~mask]
    if outside.size < 100:
        hint = (" (the map looks inverted: atoms must be positive)" if float(np.median(low)) > float(t)
                or float(low.min()) < -abs(float(low.max())) else "")
        raise TumblebenchError("the particle envelope fills the whole box; need solvent around the particle"
                               + hint)
    med_out = np.median(outside)
    sd_out = 1.4826 * np.median(np.abs(outside - med_out))
    contrast = float(np.median(low[blob]) - med_out)
    z = contrast / sd_out if sd_out > 0 else float("inf")
    return mask, z


def sphere_mask(shape: tuple[int, int, int], sampling: float, diameter_A: float) -> np.ndarray:
    """Sphere of ``diameter_A`` centred at voxel (n//2, n//2, n//2)."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    r2 = sum(((g - s // 2) * sampling) ** 2 for g, s in zip(grids, shape, strict=True))
    return r2 <= (diameter_A / 2) ** 2


def estimate_band_limit(ft: np.ndarray, shape: tuple[int, int, int], sampling: float) -> float:
    """Resolution (Å) beyond which the map holds no power (its low-pass band limit), else Nyquist.

    The spherically averaged power spectrum of a band-limited map drops by many orders of magnitude at the
    band edge. Power is averaged in thin shells (1/8 of the Fourier pixel); the edge is the upper boundary of
    the last shell whose power exceeds 10⁻⁶ of the median power of the inner half of the band.
    """
    q2 = frequency_squared(shape, sampling)
    dq = 1.0 / (max(shape) * sampling) / 8.0
    shell = np.floor(np.sqrt(q2) / dq).astype(np.int64).ravel()
    power = np.abs(ft).astype(np.float64).ravel() ** 2
    count = np.bincount(shell)
    p = np.bincount(shell, power) / np.maximum(count, 1)
    nyq_shell = int(np.floor(0.5 / sampling / dq))
    p, count = p[: nyq_shell + 1], count[: nyq_shell + 1]
    inner = p[1 : max(2, nyq_shell // 2)][count[1 : max(2, nyq_shell // 2)] > 0]
    ref = float(np.median(inner)) if inner.size else float(p.max())
    live = np.nonzero((p > 1e-6 * ref) & (count > 0))[0]
    last = int(live.max()) if live.size else nyq_shell
    populated = np.nonzero(count > 0)[0]
    if last >= populated[populated <= nyq_shell].max() - 8:
        return 2.0 * sampling
    return float(1.0 / ((last + 1) * dq))
