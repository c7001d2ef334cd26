"""Background removal: graphene lattice peaks out of every frame, and per-frame normalisation.

Graphene is static while the particle tumbles, so its Bragg peaks (2.13 Å and 1.23 Å, the {10-10} and
{11-20} families of the 2.46 Å lattice, and their higher orders 1.065 Å and 0.805 Å within Nyquist) stand
out in the *mean power spectrum* of the series. Fourier pixels of those rings that are local maxima of the
mean power and exceed the ring median by ``peak_threshold`` (robust z-score) are the peaks.

Around every peak (``static_radius_px``) the *static* part of the spectrum — the mean Fourier coefficient of
the frames in time windows of ``tracking.chunk`` frames, interpolated linearly in time — is subtracted from
every frame. A lattice that is not commensurate with the field leaks into many Fourier pixels around each peak;
subtracting the static part removes the peak and its leakage (zeroing the peak pixels, as SINGLE does, leaves
the leakage), while the tumbling particle, whose mean over a window is small, keeps its signal.

The liquid background changes over a series (the cell
thins), so every particle box is divided by its own background level (median of the pixels outside the
particle) and the unit offset removed: box = counts / background − 1, i.e. the relative contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from tumblebench.simulator.errors import require
from tumblebench.simulator.grid import frequencies

#: d-spacings (Å) of graphene's reflections (a = 2.46 Å): {10}, {11}, {20}, {21}; SINGLE removes the first two,
#: the higher orders are also recorded at 0.358 Å pixels (Nyquist 0.716 Å).
GRAPHENE_SPACINGS_A = (2.13, 1.23, 1.065, 0.805)


@dataclass(frozen=True)
class BackgroundConfig:
    """Configuration of the background stage.

    Attributes
    ----------
    remove_graphene
        Remove the graphene lattice peaks.
    static_radius_px
        Radius (Fourier pixels of the field) around each peak where the static part is removed.
    ring_width
        Relative half-width of the searched rings around 1/2.13 and 1/1.23 Å⁻¹.
    peak_threshold
        Robust z-score of a Fourier pixel's mean power over its ring's median to count as a lattice peak.
    peak_dilation
        Pixels around a peak also removed.
    normalise
        Divide every box by its background level and subtract 1.
    """

    remove_graphene: bool = True
    static_radius_px: int = 4
    ring_width: float = 0.04
    peak_threshold: float = 8.0
    peak_dilation: int = 1
    normalise: bool = True

    def validate(self) -> None:
        require(0 <= self.static_radius_px <= 16,
                f"background.static_radius_px = {self.static_radius_px} must be in 0–16")
        require(0 < self.ring_width < 0.3, f"background.ring_width = {self.ring_width} must be in (0, 0.3)")
        require(self.peak_threshold > 0, f"background.peak_threshold = {self.peak_threshold} must be > 0")
        require(self.peak_dilation >= 0, f"background.peak_dilation = {self.peak_dilation} must be >= 0")


def lattice_peak_mask(mean_power: np.ndarray, sampling: float, config: BackgroundConfig) -> np.ndarray:
    """Boolean mask (fftfreq layout, frames' shape) of the graphene peaks in a mean power spectrum."""
    ny, nx = mean_power.shape
    q = np.hypot(*frequencies((ny, nx), sampling))
    mask = np.zeros(mean_power.shape, bool)
    for d in GRAPHENE_SPACINGS_A:
        q0 = 1.0 / d
        if q0 > 0.5 / sampling:
            continue  # beyond Nyquist: not recorded
        ring = np.abs(q - q0) <= config.ring_width * q0
        vals = mean_power[ring]
        med = np.median(vals)
        mad = np.median(np.abs(vals - med)) * 1.4826 + 1e-30
        # a peak is a local maximum of the mean power (5×5) well above its ring: the ring's other pixels
        # keep the particle's own signal at that spacing
        local_max = np.fft.ifftshift(ndimage.maximum_filter(np.fft.fftshift(mean_power), size=5, mode="wrap"))
        mask |= ring & (mean_power > med + config.peak_threshold * mad) & (mean_power >= local_max)
    if config.peak_dilation and mask.any():
        shifted = np.fft.fftshift(mask)
        shifted = ndimage.binary_dilation(shifted, iterations=config.peak_dilation)
        mask = np.fft.ifftshift(shifted)
    return mask


@dataclass(frozen=True)
class StaticSpectrum:
    """The static (time-averaged) part of the frames' spectrum in a region of Fourier pixels.

    Attributes
    ----------
    region
        Boolean (ny, nx) mask, fftfreq layout, of the pixels that are corrected.
    times
        (c,) frame index at the centre of every time window (increasing).
    spectra
        (c, r) complex mean Fourier coefficients of the region's r pixels in every window.
    """

    region: np.ndarray
    times: np.ndarray
    spectra: np.ndarray

    def at(self, frames: np.ndarray) -> np.ndarray:
        """(k, r) static coefficients at frame indices ``frames`` (linear in time, constant beyond the ends)."""
        f = np.asarray(frames, float)
        if len(self.times) == 1:
            return np.repeat(self.spectra[:1], len(f), axis=0)
        j = np.clip(np.searchsorted(self.times, f) - 1, 0, len(self.times) - 2)
        a = np.clip((f - self.times[j]) / (self.times[j + 1] - self.times[j]), 0.0, 1.0)[:, None]
        return (1 - a) * self.spectra[j] + a * self.spectra[j + 1]


def static_region(peaks: np.ndarray, radius_px: int) -> np.ndarray:
    """Peaks dilated by a disc of ``radius_px`` Fourier pixels (periodic, fftfreq layout)."""
    if radius_px <= 0:
        return peaks.copy()
    r = radius_px
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = yy**2 + xx**2 <= r * r
    return np.fft.ifftshift(ndimage.binary_dilation(np.fft.fftshift(peaks), structure=disc))


def clean_frames(frames: np.ndarray, frame_idx: np.ndarray, static: StaticSpectrum | None) -> np.ndarray:
    """Frames [k, y, x] (frame indices ``frame_idx``) with the static spectrum subtracted in its region; the
    frames unchanged if ``static`` is None (no graphene peaks)."""
    if static is None:
        return np.asarray(frames, np.float32)
    ft = scipy.fft.fft2(np.asarray(frames, np.float32), workers=-1)
    ft[:, static.region] -= static.at(frame_idx).astype(ft.dtype)
    return scipy.fft.ifft2(ft, workers=-1).real.astype(np.float32)


class CleanedFrames:
    """The frames of a stack with the graphene removed (:func:`clean_frames`), read on demand: ``view[a:b]`` or
    ``view[index_array]`` is float32 (k, H, W), NaN set to 0 (:class:`tumblebench.stages.Frames`).

    Parameters
    ----------
    stack
        (M, H, W) frames (an array or a memory map).
    static
        As :func:`clean_frames`.
    """

    def __init__(self, stack: np.ndarray, static: StaticSpectrum | None):
        self.stack, self.static = stack, static
        self.shape = tuple(stack.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        idx = np.arange(self.shape[0])[key]
        fr = np.nan_to_num(np.asarray(self.stack[key], np.float32))
        return clean_frames(fr, np.atleast_1d(idx), self.static)


def normalise_boxes(boxes: np.ndarray, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Relative contrast of every box: box / background − 1, background = median outside ``radius_px``.

    Returns
    -------
    (boxes, background)
        Normalised float32 boxes and the (k,) background levels (counts).
    """
    n = boxes.shape[-1]
    yy, xx = np.mgrid[:n, :n] - n // 2
    outside = np.hypot(xx, yy) > radius_px
    bg = np.median(np.asarray(boxes)[:, outside], axis=1)
    bg = np.where(bg > 0, bg, np.nan)
    out = np.asarray(boxes, np.float32) / bg[:, None, None].astype(np.float32) - 1.0
    return out.astype(np.float32), bg
