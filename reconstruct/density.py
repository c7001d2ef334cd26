"""Density modification of the final map: solvent flattening on the particle's envelope and positivity.

An aberration-corrected lens at small defocus transfers almost nothing between ~4.5 and ~8 Å (sin γ and the
amplitude term cancel: the CTF of the default optics crosses zero near 6 Å), and every frame of a series has
nearly the same defocus. The Wiener-filtered map therefore has a *shell* of missing Fourier data there: FSC
against the truth drops below 0.5 at 6–8 Å for every map of the default series, true poses included, although
the atoms are resolved to 1.1 Å. The same map also carries noise in the liquid around the particle.

Two facts of the object fill that shell and remove that noise (solvent flattening and positivity, as in
crystallographic density modification; Wang 1985, Abrahams & Leslie 1996; and in cryo-EM, Terwilliger et al.
2020):

* the particle is compact: outside its envelope the map is zero;
* its potential is positive.

Each iteration projects the map onto both constraints and puts the measured Fourier coefficients back in
proportion to their reliability, the half-map FSC F(k) of their shell::

    G = FT[max(x, 0) · envelope],    X ← F(k)·X_measured + (1 − F(k))·G

Shells the data determine (F → 1) keep their values; shells without data (F ≈ 0) take what the constraints
imply. The envelope comes from the map itself (low-passed, thresholded, largest connected body, dilated, soft
edge); the truth is never read. A few iterations are best: many iterations let the positivity projection of a
noisy map write its own noise into the weak shells (``docs/measurements.md`` has the figures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.grid import shells

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DensityConfig:
    """Density modification of ``map.mrc`` (TOML table ``[density]``).

    Attributes
    ----------
    enabled
        Apply it (the half maps, ``fsc.csv`` and ``map_unmodified.mrc`` are never modified).
    iterations
        Cycles of envelope + positivity projection and data restoration.
    lowpass_A
        FWHM (Å) of the Gaussian low-pass of the map before the envelope is thresholded.
    threshold
        Envelope threshold as a fraction of the low-passed map's maximum.
    dilation_A
        The thresholded body is grown by this distance (Å).
    edge_A
        Width (Å, Gaussian σ) of the envelope's soft edge.
    min_volume_fraction, max_volume_fraction
        Accepted envelope volume as a fraction of the sphere of the particle's estimated diameter; outside
        this range the envelope is implausible (a map without a particle, or a threshold that caught the
        liquid) and the map is written without modification, with a warning in the log.
    """

    enabled: bool = True
    iterations: int = 3
    lowpass_A: float = 2.0
    threshold: float = 0.05
    dilation_A: float = 1.0
    edge_A: float = 1.0
    min_volume_fraction: float = 0.25
    max_volume_fraction: float = 4.0

    def validate(self) -> None:
        require(1 <= self.iterations <= 100, f"density.iterations = {self.iterations} must be in 1–100")
        require(0 < self.lowpass_A <= 20, f"density.lowpass_A = {self.lowpass_A} must be in (0, 20] Å")
        require(0 < self.threshold < 1, f"density.threshold = {self.threshold} must be in (0, 1)")
        require(0 <= self.dilation_A <= 10, f"density.dilation_A = {self.dilation_A} must be in [0, 10] Å")
        require(0 <= self.edge_A <= 5, f"density.edge_A = {self.edge_A} must be in [0, 5] Å")
        require(0 < self.min_volume_fraction < self.max_volume_fraction,
                f"density.min_volume_fraction = {self.min_volume_fraction} must be > 0 and below "
                f"max_volume_fraction = {self.max_volume_fraction}")


def envelope_mask(volume: np.ndarray, sampling: float, config: DensityConfig | None = None) -> np.ndarray:
    """Soft envelope of the particle in a map.

    The map is low-passed (Gaussian of FWHM ``lowpass_A``), thresholded at ``threshold`` × its maximum; the
    largest connected body is kept, its cavities filled, grown by ``dilation_A`` and given a Gaussian edge of
    ``edge_A``.

    Parameters
    ----------
    volume
        Map [z, y, x] with the particle's density positive.
    sampling
        Voxel edge (Å).
    config
        :class:`DensityConfig` (its envelope fields); default values if None.

    Returns
    -------
    numpy.ndarray
        float64 mask of ``volume``'s shape, 1 inside, 0 far outside.
    """
    cfg = config or DensityConfig()
    v = np.asarray(volume, np.float64)
    if v.ndim != 3:
        raise TumblebenchError(f"envelope_mask needs a 3D map, got shape {v.shape}")
    g = ndimage.gaussian_filter(v, cfg.lowpass_A / sampling / (2 * np.sqrt(2 * np.log(2))))
    top = float(g.max())
    if not np.isfinite(top) or top <= 0:
        return np.zeros_like(v)
    body = g > cfg.threshold * top
    labels, n = ndimage.label(body)
    if n > 1:
        sizes = ndimage.sum(body, labels, np.arange(1, n + 1))
        body = labels == 1 + int(np.argmax(sizes))
    body = ndimage.binary_fill_holes(body)
    if cfg.dilation_A > 0:
        body = ndimage.distance_transform_edt(~body) * sampling <= cfg.dilation_A
    mask = body.astype(np.float64)
    if cfg.edge_A > 0:
        mask = ndimage.gaussian_filter(mask, cfg.edge_A / sampling)
    return mask


def modify_density(volume: np.ndarray, fsc_half: np.ndarray, mask: np.ndarray, iterations: int = 3
                   ) -> np.ndarray:
    """Fill shells without data and flatten the solvent by envelope and positivity projections.

    Parameters
    ----------
    volume
        FSC-weighted full map [z, y, x] (cubic), particle density positive.
    fsc_half
        Half-map FSC per Fourier shell (shells 0 … n/2 of ``volume``'s box, as :func:`tumblebench.reconstruct.fsc.fsc`
        returns): the weight of the measured coefficients in each shell.
    mask
        Soft envelope (:func:`envelope_mask`), same shape.
    iterations
        Projection cycles (≥ 1).

    Returns
    -------
    numpy.ndarray
        float32 modified map, multiplied by ``mask``.
    """
    v = np.asarray(volume, np.float64)
    m = np.asarray(mask, np.float64)
    if v.ndim != 3 or len(set(v.shape)) != 1 or m.shape != v.shape:
        raise TumblebenchError(f"modify_density needs a cubic map and a mask of its shape, got {v.shape} and "
                               f"{m.shape}")
    n = v.shape[0]
    nsh = n // 2 + 1
    curve = np.asarray(fsc_half, np.float64)
    if curve.shape != (nsh,):
        raise TumblebenchError(f"modify_density: fsc_half has {curve.size} shells, the {n}³ map has {nsh}")
    require(iterations >= 1, f"iterations = {iterations} must be >= 1")
    sh = shells(v.shape, rfft=True)
    # shells beyond n/2 (the corners of the cube) carry no FSC estimate: the constraints alone decide them
    w = np.where(sh < nsh, np.clip(curve, 0.0, 1.0)[np.minimum(sh, nsh - 1)], 0.0)
    x = v * m
    measured = scipy.fft.rfftn(x, workers=-1)
    for _ in range(iterations):
        g = scipy.fft.rfftn(np.maximum(x, 0.0) * m, workers=-1)
        x = scipy.fft.irfftn(w * measured + (1.0 - w) * g, v.shape, workers=-1)
    return (x * m).astype(np.float32)


def density_modified_map(volume: np.ndarray, fsc_half: np.ndarray, sampling: float, diameter_A: float,
                         config: DensityConfig) -> tuple[np.ndarray, dict]:
    """The map of ``volume`` after density modification, or ``volume`` unchanged if its envelope is implausible.

    Parameters
    ----------
    volume
        FSC-weighted full map (already flattened outside the particle's sphere).
    fsc_half
        Half-map FSC per shell.
    sampling
        Voxel edge (Å).
    diameter_A
        The particle's estimated diameter (Å): the envelope's volume is checked against its sphere.
    config
        :class:`DensityConfig`.

    Returns
    -------
    (map, info)
        float32 map, and a record for ``summary.json`` (envelope volume in Å³, its fraction of the sphere,
        iterations, whether the modification was applied).
    """
    mask = envelope_mask(volume, sampling, config)
    vol_A3 = float(mask.sum()) * sampling**3
    sphere = 4.0 / 3.0 * np.pi * (diameter_A / 2) ** 3
    frac = vol_A3 / sphere if sphere > 0 else float("nan")
    info = {"envelope_volume_A3": vol_A3, "envelope_sphere_fraction": frac, "iterations": config.iterations,
            "applied": False}
    if not (config.min_volume_fraction <= frac <= config.max_volume_fraction):
        log.warning("density modification skipped: the map's envelope is %.0f Å³, %.2f × the sphere of the "
                    "estimated diameter %.1f Å (accepted %.2f–%.2f)", vol_A3, frac, diameter_A,
                    config.min_volume_fraction, config.max_volume_fraction)
        return np.asarray(volume, np.float32), info
    out = modify_density(volume, fsc_half, mask, config.iterations)
    info["applied"] = True
    log.info("density modification: envelope %.0f Å³ (%.2f × the sphere of %.1f Å), %d iterations", vol_A3, frac,
             diameter_A, config.iterations)
    return out, info
