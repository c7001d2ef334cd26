"""Numba kernels of the Fourier-space projected potential (see :mod:`tumblebench.simulator.potential`)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def phase_factors(coord: np.ndarray, damp_b: np.ndarray, coef: np.ndarray, k: np.ndarray, dq: float,
                  out: np.ndarray) -> None:
    """out[m, i] = coef[m] · exp(−damp_b[m]·q²/4) · exp(−2πi·q·coord[m]) with q = k[i]·dq, in place.

    One factor of the separable 2D Fourier transform of a Gaussian (or delta, damp_b = 0) atom: the 2D
    transform is the outer product of an x factor and a y factor, so a slice's transform is one matrix
    product (serial: the work per call is small and threads cost more than they save).
    ``coord`` in Å, ``dq`` in Å⁻¹, ``damp_b`` in Å², ``k`` integer frequency indices (may be
    negative). The phasors and Gaussian factors of q = 0, dq, 2dq, ... are built by exact recurrences
    (z^{n+1} = z^n·z; g_{n+1} = g_n·r^{2n+1}) in float64, so each row costs multiplications only.
    """
    m_rows = coord.shape[0]
    nq = k.shape[0]
    kmax = 0
    for i in range(nq):
        kmax = max(kmax, abs(k[i]))
    two_pi = 2.0 * np.pi
    for m in range(m_rows):
        zr = np.cos(two_pi * dq * coord[m])
        zi = -np.sin(two_pi * dq * coord[m])
        r = np.exp(-0.25 * damp_b[m] * dq * dq)
        r2 = r * r
        pr = np.empty(kmax + 1)
        pim = np.empty(kmax + 1)
        cr = 1.0
        ci = 0.0
        g = coef[m]
        step = r
        for n in range(kmax + 1):
            pr[n] = cr * g
            pim[n] = ci * g
            cr, ci = cr * zr - ci * zi, cr * zi + ci * zr
            g *= step
            step *= r2
        for i in range(nq):
            kk = k[i]
            if kk >= 0:
                out[m, i] = np.complex64(complex(pr[kk], pim[kk]))
            else:
                out[m, i] = np.complex64(complex(pr[-kk], -pim[-kk]))


@numba.njit(inline="always", fastmath=True)
def _cis(ph: float) -> complex:
    """exp(i·ph) in float32 without libm: ph is reduced to h = (ph − 2πk)/2 ∈ [−π/2, π/2], sin h and cos h
    are their Taylor polynomials to h¹³ and h¹² (truncation < 6e-8), and exp(i·ph) = (cos h + i sin h)².
    Max error 5e-7 over |ph| < 4 rad (float32 rounding); vectorises, unlike cos/sin."""
    f = np.float32
    h = f(0.5) * (ph - f(2 * np.pi) * np.float32(np.floor(ph * f(1 / (2 * np.pi)) + f(0.5))))
    h2 = h * h
    sn = h * (f(1) + h2 * (f(-1 / 6) + h2 * (f(1 / 120) + h2 * (f(-1 / 5040) + h2 * (
        f(1 / 362880) + h2 * (f(-1 / 39916800) + h2 * f(1 / 6227020800)))))))
    cs = f(1) + h2 * (f(-0.5) + h2 * (f(1 / 24) + h2 * (f(-1 / 720) + h2 * (
        f(1 / 40320) + h2 * (f(-1 / 3628800) + h2 * f(1 / 479001600))))))
    return complex(cs * cs - sn * sn, f(2) * sn * cs)


@numba.njit(cache=True, fastmath=True)
def apply_phase(psi: np.ndarray, v: np.ndarray, k: int, sigma: float) -> None:
    """psi[b, y, x] *= exp(iσ·v[b, k, y, x]) in place: transmission through slice ``k``'s phase grating.

    ``psi`` complex64 (B, ny, nx), ``v`` float32 (B, S, ny, nx) projected potentials of S slices (V·Å),
    ``sigma`` rad/(V·Å). Serial on purpose: on a shared 2-core machine a threaded version is slower.
    """
    b, ny, nx = psi.shape
    s = np.float32(sigma)
    for i in range(b):
        for y in range(ny):
            for x in range(nx):
                psi[i, y, x] *= _cis(s * v[i, k, y, x])


@numba.njit(cache=True)
def weighted_rows(base: np.ndarray, damping: np.ndarray, atom: np.ndarray, gauss: np.ndarray, coef: np.ndarray,
                  n_lo: np.ndarray, n_hi: np.ndarray, out: np.ndarray) -> None:
    """out[m, i] = coef[m] · base[atom[m], i] · damping[gauss[m], i] (complex64), in place, for the columns
    i < n_lo[m] and i ≥ nq − n_hi[m] of row m only (the others are left untouched).

    Builds the rows of a slice's separable Fourier sum from each atom's phasors (computed once per atom) and
    each Gaussian's damping exp(−b q²/4) (computed once per Gaussian), so an atom split over several slices
    and Gaussians costs one multiplication per element and row; a broad Gaussian's row is filled only on
    the low frequencies where its damping is not negligible.
    """
    m_rows, nq = out.shape
    for m in range(m_rows):
        a = atom[m]
        g = gauss[m]
        c = np.float32(coef[m])
        for i in range(min(n_lo[m], nq)):
            out[m, i] = base[a, i] * (damping[g, i] * c)
        for i in range(max(nq - n_hi[m], n_lo[m]), nq):
            out[m, i] = base[a, i] * (damping[g, i] * c)


@numba.njit(cache=True, fastmath=True)
def phase_grating(v: np.ndarray, sigma: float, out: np.ndarray) -> None:
    """out[...] = exp(iσ·v[...]) (complex64) for float32 ``v`` of any shape flattened to (M, n), in place.

    The transmission function of a slice's projected potential ``v`` (V·Å), ``sigma`` in rad/(V·Å): one
    float32 polynomial exp(iφ) per element (:func:`_cis`; faster than numpy's complex exp).
    """
    m, n = v.shape
    s = np.float32(sigma)
    for i in range(m):
        for j in range(n):
            out[i, j] = _cis(s * v[i, j])


@numba.njit(cache=True)
def add_hermitian_pairs(g: np.ndarray, out: np.ndarray, n_direct: int, neg_rows: np.ndarray,
                        neg_src: np.ndarray) -> None:
    """Accumulate a slice's Fourier sum Σ_m ey[m, qy]·ex[m, qx] into ``out`` from the real product
    ``g`` = Eyᵀ·Ex of the interleaved (re, im) float32 views of the rows, computed for qy ≥ 0 only.

    With ey = a + ib and ex = c + id, g holds AC, AD, BC, BD in its (2r, 2j), (2r, 2j+1), (2r+1, 2j),
    (2r+1, 2j+1) entries. Row r < ``n_direct`` of ``out`` gets (AC − BD) + i(AD + BC); row neg_rows[t]
    (frequency −k) gets the conjugate-row sum (AC + BD) + i(AD − BC) of row neg_src[t] (frequency +k),
    because an atom's y factor at −k is the complex conjugate of that at +k. Half the real
    multiplications of the complex product over all rows.
    """
    nx = g.shape[1] // 2
    for r in range(n_direct):
        for j in range(nx):
            ac = g[2 * r, 2 * j]
            ad = g[2 * r, 2 * j + 1]
            bc = g[2 * r + 1, 2 * j]
            bd = g[2 * r + 1, 2 * j + 1]
            out[r, j] += complex(ac - bd, ad + bc)
    for t in range(neg_rows.shape[0]):
        r = neg_src[t]
        d = neg_rows[t]
        for j in range(nx):
            ac = g[2 * r, 2 * j]
            ad = g[2 * r, 2 * j + 1]
            bc = g[2 * r + 1, 2 * j]
            bd = g[2 * r + 1, 2 * j + 1]
            out[d, j] += complex(ac + bd, ad - bc)
