"""Direct-electron detector in counting mode: dose → expected counts → Poisson events (+ optional noise).

Expected counts per pixel = intensity ⊛ MTF × dose (e⁻/Å²) × pixel area (Å²); counting-mode detection then
gives Poisson-distributed counts whose mean and variance both equal that number (for a flat image:
dose × pixel area). The MTF acts on the signal only, as in a counting detector, whose shot noise stays
white. Optional Gaussian read noise and spatially correlated (e.g. gain-reference) noise are added after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.grid import frequencies, gaussian_filter


@dataclass(frozen=True)
class DetectorConfig:
    """Counting-mode direct detector (K2-IS-like at 400 frames/s).

    Attributes
    ----------
    mtf
        ``"none"``, ``"sinc"`` (pixel-area integration, MTF = sinc(πq_x p)·sinc(πq_y p)), or ``"sinc-gauss"``
        (sinc times a Gaussian charge spread exp(−2π² s² q²) of width ``mtf_spread_px`` pixels).
    mtf_spread_px
        Charge-spread width s in pixels for ``"sinc-gauss"``.
    read_noise
        Standard deviation of additive Gaussian read noise, counts per pixel (0 = off; counting mode: 0).
    correlated_noise
        Standard deviation of additive spatially correlated Gaussian noise, counts per pixel (0 = off).
    correlation_length_px
        Gaussian correlation length of ``correlated_noise`` in pixels.
    """

    mtf: str = "sinc"
    mtf_spread_px: float = 0.3
    read_noise: float = 0.0
    correlated_noise: float = 0.0
    correlation_length_px: float = 2.0

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the field when a value is out of range."""
        require(self.mtf in ("none", "sinc", "sinc-gauss"),
                f"detector.mtf = {self.mtf!r}; expected 'none', 'sinc' or 'sinc-gauss'")
        require(self.mtf_spread_px >= 0, f"detector.mtf_spread_px = {self.mtf_spread_px} must be ≥ 0")
        require(self.read_noise >= 0, f"detector.read_noise = {self.read_noise} must be ≥ 0")
        require(self.correlated_noise >= 0, f"detector.correlated_noise = {self.correlated_noise} must be ≥ 0")
        require(self.correlation_length_px > 0,
                f"detector.correlation_length_px = {self.correlation_length_px} must be > 0")


def mtf_2d(shape_yx: tuple[int, int], config: DetectorConfig) -> np.ndarray:
    """The detector MTF on the rfft2 grid of ``shape_yx`` (frequencies in cycles/pixel), float64."""
    qy, qx = frequencies(shape_yx, rfft=True)
    if config.mtf == "none":
        return np.ones((qy.size, qx.size))
    out = np.sinc(qx) * np.sinc(qy)  # numpy sinc(x) = sin(πx)/(πx)
    if config.mtf == "sinc-gauss":
        out = out * np.exp(-2 * np.pi**2 * config.mtf_spread_px**2 * (qx**2 + qy**2))
    return out


def detect(intensity: np.ndarray, dose_e_per_A2: float, sampling: float, rng: np.random.Generator,
           config: DetectorConfig | None = None) -> np.ndarray:
    """Record an intensity image (1.0 = vacuum) as detector counts.

    Parameters
    ----------
    intensity
        (ny, nx) noise-free image intensity relative to vacuum.
    dose_e_per_A2
        Electron dose of the frame, e⁻/Å² (> 0).
    sampling
        Pixel size at the specimen, Å (> 0).
    rng
        Random generator for the Poisson (and optional Gaussian) draws.
    config
        Detector parameters; default :class:`DetectorConfig`.

    Returns
    -------
    numpy.ndarray
        (ny, nx) float32 counts.

    Raises
    ------
    TumblebenchError
        Non-positive dose or pixel size, or a negative/non-finite intensity.
    """
    cfg = DetectorConfig() if config is None else config
    cfg.validate()
    if not (np.isfinite(dose_e_per_A2) and dose_e_per_A2 > 0):
        raise TumblebenchError(f"dose per frame must be > 0 e/Å², got {dose_e_per_A2}")
    if not sampling > 0:
        raise TumblebenchError(f"pixel size must be > 0 Å, got {sampling}")
    img = np.asarray(intensity, dtype=np.float64)
    if img.ndim != 2 or not np.all(np.isfinite(img)):
        raise TumblebenchError("intensity must be a finite 2D array")
    if cfg.mtf != "none":
        img = scipy.fft.irfft2(scipy.fft.rfft2(img, workers=-1) * mtf_2d(img.shape, cfg), s=img.shape, workers=-1)
    lam = np.clip(img, 0.0, None) * (dose_e_per_A2 * sampling**2)
    counts = rng.poisson(lam).astype(np.float32)
    if cfg.read_noise > 0:
        counts += rng.normal(0.0, cfg.read_noise, counts.shape).astype(np.float32)
    if cfg.correlated_noise > 0:
        white = rng.standard_normal(counts.shape)
        filt = gaussian_filter(counts.shape, 1.0, cfg.correlation_length_px, rfft=True)
        field = scipy.fft.irfft2(scipy.fft.rfft2(white) * filt, s=counts.shape)
        field *= cfg.correlated_noise / max(field.std(), 1e-12)
        counts += field.astype(np.float32)
    return counts
