"""Background removal: graphene lattice peaks out of every frame, and per-frame normalisation.

Graphene is static while the particle tumbles, so its Bragg peaks (2.13 Å and 1.23 Å, the {10-10} and
{11-20} families of the 2.46 Å lattice, and their higher orders 1.065 Å and 0.805 Å within Nyquist) stand
out in the *mean power spectrum* of the series. Fourier pixels of those rings that are local maxima of the
mean power and exceed the ring median by ``peak_threshold`` (robust z-score) are zeroed in every frame, with a
small neighbourhood. The liquid background changes over a series (the cell
thins), so every particle box is divided by its own background level (median of the pixels outside the
particle) and the unit offset removed: box = counts / background − 1, i.e. the relative contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from simulator.errors import require

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
    ring_width: float = 0.04
    peak_threshold: float = 8.0
    peak_dilation: int = 1
    normalise: bool = True

    def validate(self) -> None:
        require(0 < self.ring_width < 0.3, f"background.ring_width = {self.ring_width} must be in (0, 0.3)")
        require(self.peak_threshold > 0, f"background.peak_threshold = {self.peak_threshold} must be > 0")
        require(self.peak_dilation >= 0, f"background.peak_dilation = {self.peak_dilation} must be >= 0")


def lattice_peak_mask(mean_power: np.ndarray, pixel_size: float, config: BackgroundConfig) -> np.ndarray:
    """Boolean mask (fftfreq layout, frames' shape) of the graphene peaks in a mean power spectrum."""
    ny, nx = mean_power.shape
    qy = scipy.fft.fftfreq(ny, pixel_size)[:, None]
    qx = scipy.fft.fftfreq(nx, pixel_size)[None, :]
    q = np.hypot(qy, qx)
    mask = np.zeros(mean_power.shape, bool)
    for d in GRAPHENE_SPACINGS_A:
        q0 = 1.0 / d
        if q0 > 0.5 / pixel_size:
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


def remove_peaks(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the masked Fourier pixels of frames [k, y, x] (the mean level is kept)."""
    ft = scipy.fft.fft2(np.asarray(frames, np.float32), workers=-1)
    ft[:, mask] = 0
    return scipy.fft.ifft2(ft, workers=-1).real.astype(np.float32)


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
