"""Electron scattering factors as sums of Gaussians, and the atomic potentials they imply.

Parametrisations
----------------
``peng`` (default)
    Peng, Ren, Dudarev & Whelan (1996), Acta Cryst. A52, 257–276, elastic fit for 0 < s < 2 Å⁻¹
    (also International Tables for Crystallography Vol. C, Table 4.3.2.2):
    f(s) = Σᵢ aᵢ exp(−bᵢ s²), s = sinθ/λ = q/2, f in Å.
``peng6``
    The same paper's fit for 0 < s < 6 Å⁻¹.

From f to potential (Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed., 2010, ch. 5): with
q = 2s and 2π a₀ e = 47.878 V·Å²,

* 3D potential   V(r)  = 2πa₀e Σᵢ aᵢ (4π/bᵢ)^{3/2} exp(−4π² r²/bᵢ)   [V]
* projected      v_z(r) = 2πa₀e Σᵢ aᵢ (4π/bᵢ) exp(−4π² r²/bᵢ)        [V·Å]

Each term is a normalised Gaussian of variance bᵢ/(8π²) per axis times 2πa₀e·aᵢ. An atom vibrating with
anisotropic displacement tensor U (Å²) time-averages to the same sum with covariance bᵢ/(8π²)·I + U.
"""

from __future__ import annotations

import numpy as np

from simulator.errors import TumblebenchError

#: 2π a₀ e in V·Å² (a₀ = 0.5292 Å Bohr radius, e = 14.40 V·Å), Kirkland (2010) Eq. 5.9.
TWO_PI_A0_E = 2.0 * np.pi * 0.529177 * 14.39964

# Peng et al. (1996), Acta Cryst. A52, 257, Table 1 (0 < s < 2 Å⁻¹): (a1..a5), (b1..b5).
_PENG_2: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "Pt": ((0.9148, 1.8096, 3.2134, 3.2953, 1.5754), (0.2263, 1.3813, 5.3243, 17.5987, 60.0171)),
}

# Peng et al. (1996), Acta Cryst. A52, 257, Table 3 (0 < s < 6 Å⁻¹).
_PENG_6: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "Pt": ((0.3083, 1.4158, 2.9662, 3.9349, 2.1709), (0.0609, 0.5993, 3.1921, 12.5285, 49.7675)),
}

_TABLES = {"peng": _PENG_2, "peng6": _PENG_6}


def available(table: str = "peng") -> tuple[str, ...]:
    """Element symbols with parameters in Gaussian table ``table``."""
    return tuple(sorted(_TABLES[table]))


def gaussian_coefficients(element: str, table: str = "peng") -> tuple[np.ndarray, np.ndarray]:
    """Five-Gaussian electron scattering factor coefficients of ``element``.

    Parameters
    ----------
    element
        Chemical symbol, e.g. ``"Pt"``.
    table
        ``"peng"`` (s < 2 Å⁻¹, default) or ``"peng6"`` (s < 6 Å⁻¹).

    Returns
    -------
    a, b
        Arrays of 5 coefficients: aᵢ in Å, bᵢ in Å², for f(s) = Σ aᵢ exp(−bᵢ s²).

    Raises
    ------
    TumblebenchError
        Unknown table or element without parameters.
    """
    if table not in _TABLES:
        raise TumblebenchError(f"scattering table {table!r} unknown; expected one of {', '.join(_TABLES)}")
    params = _TABLES[table]
    if element not in params:
        raise TumblebenchError(
            f"element {element!r} has no {table} scattering parameters; known: {', '.join(sorted(params))}"
        )
    a, b = params[element]
    return np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)


def scattering_factor(element: str, s: np.ndarray, table: str = "peng") -> np.ndarray:
    """Electron scattering factor f(s) in Å at s = sinθ/λ (Å⁻¹)."""
    a, b = gaussian_coefficients(element, table)
    s2 = np.asarray(s, float)[..., None] ** 2
    return np.sum(a * np.exp(-b * s2), axis=-1)


def potential_3d(element: str, r: np.ndarray, table: str = "peng") -> np.ndarray:
    """Spherical atomic potential V(r) in V at distance ``r`` (Å) of a static atom."""
    a, b = gaussian_coefficients(element, table)
    r2 = np.asarray(r, float)[..., None] ** 2
    return TWO_PI_A0_E * np.sum(a * (4 * np.pi / b) ** 1.5 * np.exp(-4 * np.pi**2 * r2 / b), axis=-1)


def projected_potential(element: str, r: np.ndarray, table: str = "peng") -> np.ndarray:
    """Projected potential v_z(r) in V·Å at in-plane distance ``r`` (Å) of a static atom."""
    a, b = gaussian_coefficients(element, table)
    r2 = np.asarray(r, float)[..., None] ** 2
    return TWO_PI_A0_E * np.sum(a * (4 * np.pi / b) * np.exp(-4 * np.pi**2 * r2 / b), axis=-1)
