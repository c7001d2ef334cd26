"""Multislice propagation of a fast-electron wave through sliced projected potentials (Kirkland 2010, ch. 6).

ψ_{n+1} = F⁻¹[ P(q) · B(q) · F[ t_n · ψ_n ] ],  t_n = B ⊛ exp(iσ v_n),  P(q) = exp(−iπλΔz q²),

with B the band limit |q| ≤ q_max (normally 2/3 of the grid's Nyquist frequency): both the transmission
function and the wave are band-limited so that the product t·ψ does not alias (Kirkland 2010, §6.8).
The beam travels along +z; all arrays are complex64 and batched over a leading axis (the motion sub-steps
of an exposure), so every FFT runs on a stack.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from tumblebench.simulator._potential_kernels import apply_phase, phase_grating
from tumblebench.simulator.grid import frequency_squared


def band_mask(shape_yx: tuple[int, int], sampling: float, q_max: float | None) -> np.ndarray:
    """(ny, nx) float32 mask of |q| ≤ q_max on the full FFT grid; all ones when ``q_max`` is None."""
    ny, nx = shape_yx
    if q_max is None:
        return np.ones((ny, nx), dtype=np.float32)
    return (frequency_squared(shape_yx, sampling) <= q_max**2).astype(np.float32)


def propagator(shape_yx: tuple[int, int], sampling: float, wavelength_A: float, dz_A: float,
               q_max: float | None) -> np.ndarray:
    """Fresnel propagator exp(−iπλΔz q²) times the band limit, (ny, nx) complex64 (full FFT layout)."""
    p = np.exp(-1j * np.pi * wavelength_A * dz_A * frequency_squared(shape_yx, sampling))
    return (p * band_mask(shape_yx, sampling, q_max)).astype(np.complex64)


def transmission(potential: np.ndarray, sigma: float, mask: np.ndarray | None, workers: int = -1) -> np.ndarray:
    """Band-limited transmission functions exp(iσ v) of projected potentials ``potential`` (…, ny, nx) V·Å.

    ``mask`` is the Fourier-space band limit (full FFT layout) or None for the raw phase grating.
    """
    v = np.ascontiguousarray(potential, dtype=np.float32)
    t = np.empty(v.shape, dtype=np.complex64)
    n = v.shape[-1] if v.ndim else 1
    phase_grating(v.reshape(-1, n), sigma, t.reshape(-1, n))
    if mask is None:
        return t
    ft = scipy.fft.fft2(t, workers=workers, overwrite_x=True)
    ft *= mask
    return scipy.fft.ifft2(ft, workers=workers, overwrite_x=True)


def multislice(transmissions: np.ndarray, prop: np.ndarray, psi0: np.ndarray | None = None,
               sigma: float | None = None, workers: int = -1) -> np.ndarray:
    """Propagate a wave through slices; return the Fourier transform of the exit wave.

    Parameters
    ----------
    transmissions
        (B, S, ny, nx): B independent waves (sub-steps) and S slices each, in beam order; complex64
        transmission functions, or float32 projected potentials (V·Å) when ``sigma`` is given, in which
        case the raw phase grating exp(iσv) of the (already band-limited) potential is applied on the fly
        by a numba kernel (the grating itself is not band-limited again: with the potential band-limited
        at the grid's Nyquist frequency and the wave at 2/3 of it this matches a converged reference, see
        :mod:`tumblebench.simulator.imaging`).
    prop
        (ny, nx) propagator over one slice thickness including the band limit (:func:`propagator`).
    psi0
        (B, ny, nx) incident wave; default a unit plane wave.
    sigma
        Interaction parameter (rad/(V·Å)) when ``transmissions`` holds potentials.
    workers
        scipy.fft threads (−1: all cores; 1 is faster for small windows on a busy machine).

    Returns
    -------
    numpy.ndarray
        (B, ny, nx) complex64: F[ψ] at the exit plane, i.e. after the last slice and its propagation
        over one slice thickness (scipy.fft normalisation: F[1] = ny·nx at q = 0).
    """
    b, s, ny, nx = transmissions.shape
    if sigma is not None:
        transmissions = np.ascontiguousarray(transmissions, dtype=np.float32)
    psi = np.ones((b, ny, nx), dtype=np.complex64) if psi0 is None else psi0.astype(np.complex64, copy=True)
    out = None
    for k in range(s):
        if sigma is None:
            psi = psi * transmissions[:, k]
        else:
            apply_phase(psi, transmissions, k, sigma)
        out = scipy.fft.fft2(psi, workers=workers, overwrite_x=True)
        out *= prop
        if k < s - 1:
            psi = scipy.fft.ifft2(out, workers=workers, overwrite_x=True)
    if out is None:
        out = scipy.fft.fft2(psi, workers=workers)
    return out
