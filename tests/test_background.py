"""Graphene removal: the static lattice (peaks and their leakage) leaves the frames, the tumbling particle stays."""

import numpy as np
import scipy.fft

from tumblebench.reconstruct.background import (
    BackgroundConfig,
    StaticSpectrum,
    clean_frames,
    lattice_peak_mask,
    static_region,
)
from tumblebench.simulator.liquid_cell import graphene_potential

N, P = 96, 0.358


def _series(n_frames: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames = two static graphene sheets (not commensurate with the field) + a moving, changing blob."""
    rng = np.random.default_rng(seed)
    q = 0.98 / (2 * P)
    g = graphene_potential((N, N), P, 0.0, q) + graphene_potential((N, N), P, 13.2, q)
    g = 0.05 * (g - g.mean()) / g.std()
    yy, xx = np.mgrid[:N, :N]
    blobs = np.empty((n_frames, N, N), np.float32)
    for k in range(n_frames):
        cy, cx = N / 2 + rng.normal(0, 6, 2)
        sub = rng.normal(0, 1.2, (6, 2))  # six "atoms" that move from frame to frame
        blobs[k] = sum(np.exp(-((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) / 2.0) for dy, dx in sub)
    frames = (1.0 + g[None] + 0.2 * blobs).astype(np.float32)
    return frames, blobs, g


def _stats(frames: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ft = scipy.fft.fft2(frames)
    ft[:, 0, 0] = 0
    times = np.array([s + (min(s + chunk, len(frames)) - s - 1) / 2 for s in range(0, len(frames), chunk)])
    spectra = np.stack([ft[s:s + chunk].mean(0) for s in range(0, len(frames), chunk)])
    return (np.abs(ft) ** 2).mean(0), times, spectra


def _zero_peaks(frames: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    ft = scipy.fft.fft2(frames)
    ft[:, peaks] = 0
    return scipy.fft.ifft2(ft).real


def test_static_subtraction_removes_graphene_and_its_leakage_and_keeps_the_particle() -> None:
    frames, blobs, g = _series()
    power, times, spectra = _stats(frames, 16)
    cfg = BackgroundConfig()
    peaks = lattice_peak_mask(power, P, cfg)
    assert peaks.sum() >= 24  # 2 sheets × 6 peaks on the 2.13 Å ring alone
    region = static_region(peaks, cfg.static_radius_px)
    static = StaticSpectrum(region, times, spectra[:, region])
    out = clean_frames(frames, np.arange(len(frames)), static)
    # the static lattice is gone from the region (peaks and leakage): the time-mean spectrum of the cleaned
    # frames there is down by > 100× (zeroing only the peak pixels leaves the leakage, 10× more)
    g_max = np.abs(scipy.fft.fft2(g))[region].max()
    left = np.abs(scipy.fft.fft2(out.mean(0)))[region].max()
    zero = _zero_peaks(frames, peaks)  # SINGLE's removal: the peak pixels zeroed
    zeroed = np.abs(scipy.fft.fft2(zero.mean(0)))[region].max()
    assert left < 1e-2 * g_max
    assert zeroed > 10 * left
    # the particle stands out better than with zeroed peaks (whose leakage stays), and keeps its signal:
    # the same static subtraction on the particle alone removes only its slowly varying mean
    for k in (0, 31, 63):
        c_sub, c_zero, c_raw = (np.corrcoef((a[k] - a[k].mean()).ravel(), blobs[k].ravel())[0, 1]
                                for a in (out, zero, frames))
        assert c_sub > 0.8 and c_sub > c_zero + 0.1 and c_zero > c_raw
    part = 0.2 * blobs
    _, _, spec_p = _stats(part, 16)
    kept = clean_frames(part, np.arange(len(frames)), StaticSpectrum(region, times, spec_p[:, region]))
    assert (part - kept).std() < 0.15 * part.std()


def test_static_spectrum_interpolates_linearly_in_time() -> None:
    region = np.zeros((4, 4), bool)
    region[1, 2] = True
    st = StaticSpectrum(region, np.array([10.0, 30.0]), np.array([[1.0 + 0j], [3.0 + 0j]]))
    assert np.allclose(st.at(np.array([0, 10, 20, 30, 99]))[:, 0], [1, 1, 2, 3, 3])
