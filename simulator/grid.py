"""Fourier grids of sampled images and maps: spatial frequencies, Fourier shells and low-pass filters.

A grid is an array ``shape`` (any number of axes, [z, y, x] or [y, x]) sampled every ``sampling`` Å on every
axis. Frequencies are in cycles per Å (q = 1/d, no factor 2π) in the order of :mod:`scipy.fft` (zero first,
negative frequencies in the upper half); with ``rfft`` the last axis is the half spectrum of
:func:`scipy.fft.rfftn`. Every array is built from :func:`scipy.fft.fftfreq` / :func:`scipy.fft.rfftfreq`
and summed over the axes in axis order, so the results are those of the same expressions written by hand.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from tumblebench.simulator.errors import TumblebenchError


def _check(shape: tuple[int, ...], sampling: float) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    if not shape or min(shape) < 1:
        raise TumblebenchError(f"grid shape {shape} must have at least one axis, each of at least 1 sample")
    if not sampling > 0:
        raise TumblebenchError(f"grid sampling {sampling} Å must be > 0")
    return shape


def frequencies(shape: tuple[int, ...], sampling: float = 1.0, rfft: bool = False, centred: bool = False
                ) -> tuple[np.ndarray, ...]:
    """Spatial frequency of every axis (Å⁻¹), as an open grid that broadcasts to the Fourier grid.

    Parameters
    ----------
    shape
        Grid shape (samples per axis).
    sampling
        Å per sample (pixel or voxel edge); 1 gives cycles per sample.
    rfft
        The last axis is the half spectrum (:func:`scipy.fft.rfftfreq`).
    centred
        Zero frequency at index ``n // 2`` (:func:`scipy.fft.fftshift` order) instead of first; not with ``rfft``.

    Returns
    -------
    tuple of numpy.ndarray
        One float64 array per axis, of length ``n`` (``n // 2 + 1`` on a half axis) along its own axis and 1
        along the others: ``fftfreq(n, sampling)`` reshaped, e.g. ``(qy[:, None], qx[None, :])`` in 2D.
    """
    shape = _check(shape, sampling)
    if rfft and centred:
        raise TumblebenchError("a centred grid has no half (rfft) axis")
    out = []
    for axis, n in enumerate(shape):
        q = scipy.fft.rfftfreq(n, d=sampling) if rfft and axis == len(shape) - 1 else scipy.fft.fftfreq(n, d=sampling)
        if centred:
            q = scipy.fft.fftshift(q)
        view = [1] * len(shape)
        view[axis] = q.size
        out.append(q.reshape(view))
    return tuple(out)


def frequency_squared(shape: tuple[int, ...], sampling: float = 1.0, rfft: bool = False) -> np.ndarray:
    """|q|² (Å⁻²) at every point of the Fourier grid (float64; arguments as :func:`frequencies`)."""
    q2 = None
    for q in frequencies(shape, sampling, rfft):
        q2 = q**2 if q2 is None else q2 + q**2
    return q2


def radial_frequency(shape: tuple[int, ...], sampling: float = 1.0, rfft: bool = False) -> np.ndarray:
    """|q| (Å⁻¹) at every point of the Fourier grid (float64; arguments as :func:`frequencies`)."""
    return np.sqrt(frequency_squared(shape, sampling, rfft))


def shells(shape: tuple[int, ...], rfft: bool = False) -> np.ndarray:
    """Fourier shell of every point of the grid: its radius in Fourier samples, rounded (int64).

    On a cubic grid of edge ``n`` shell ``s`` holds the frequencies with ``|q| ≈ s / (n · sampling)``; the
    shells along the axes run 0 … ``n // 2``. The radius is that of the integer frequency indices
    (−n/2 … n/2 − 1 per axis), independent of the sampling.
    """
    shape = _check(shape, 1.0)
    r2 = None
    for axis, n in enumerate(shape):
        half = rfft and axis == len(shape) - 1
        k = np.arange(n // 2 + 1) if half else np.r_[0:(n + 1) // 2, -(n // 2):0]
        view = [1] * len(shape)
        view[axis] = k.size
        k2 = (k.astype(np.float64) ** 2).reshape(view)
        r2 = k2 if r2 is None else r2 + k2
    return np.rint(np.sqrt(r2)).astype(np.int64)


def lowpass_filter(shape: tuple[int, ...], sampling: float, resolution: float, soft_width: float = 0.0,
                   rfft: bool = False) -> np.ndarray:
    """Transfer of a low-pass at ``1 / resolution`` Å⁻¹: 1 inside, 0 outside (float64).

    Parameters
    ----------
    shape, sampling, rfft
        The grid, as :func:`frequencies`.
    resolution
        Cut-off (Å): the filter passes ``|q| <= 1 / resolution``.
    soft_width
        Width (Å⁻¹) of a raised-cosine edge centred on the cut-off; 0: a hard edge. Narrower than
        ``2 / resolution``, the filter is 1 at q = 0.
    """
    if not resolution > 0 or soft_width < 0:
        raise TumblebenchError(f"low-pass: resolution {resolution} Å must be > 0 and soft_width {soft_width} >= 0")
    q = radial_frequency(shape, sampling, rfft)
    qc = 1.0 / resolution
    if soft_width > 0:
        w = np.clip((qc - q) / soft_width + 0.5, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * w)
    return (q <= qc).astype(np.float64)


def gaussian_filter(shape: tuple[int, ...], sampling: float, sigma: float, rfft: bool = False) -> np.ndarray:
    """Transfer exp(−2π²σ²|q|²) of a unit-integral Gaussian blur of standard deviation ``sigma`` (Å), float64.

    ``sigma`` is in the units of ``sampling`` (pass ``sampling = 1`` for σ in samples).
    """
    if sigma < 0:
        raise TumblebenchError(f"Gaussian filter: sigma {sigma} must be >= 0")
    return np.exp(-2 * np.pi**2 * sigma**2 * frequency_squared(shape, sampling, rfft))
