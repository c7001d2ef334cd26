"""The graphene liquid cell: two graphene sheets with their real lattice and a water layer between them.

Model
-----
* **Graphene**: two sheets of the honeycomb lattice (a = 2.46 Å, C–C 1.42 Å), each rotated in-plane by its
  own angle, lying at z = ∓t/2 around the mid-plane of a liquid layer of thickness t. Their projected
  potential (Fourier-space, exact, band-limited: :mod:`tumblebench.simulator.potential`) carries the lattice's Fourier
  peaks at d = a√3/2 = 2.13 Å and a/2 = 1.23 Å, as real frames do.
* **Water**: an amorphous layer of O and H atoms at the density of liquid water (0.0334 molecules/Å³),
  placed at random (independent Poisson numbers of O and H atoms per pixel column, i.e. an ideal gas of
  atoms with no intermolecular correlation, redrawn for every frame from the caller's generator). Its
  projected potential minus its mean (a uniform phase has no contrast) is the amorphous phase screen; the
  variance grows linearly with t, so the background is stronger early in a thinning series.
  ``amorphous_scale`` scales this fluctuation (real water diffuses during a millisecond exposure, which
  partly averages its linear contrast).
* **Attenuation** (per frame, from t): inelastic scattering in the liquid, probability 1 − exp(−t/Λ_in),
  removes electrons from the coherent image and returns them as a flat background (their image is blurred
  far beyond the field's detail); elastic scattering outside the objective aperture removes a fraction
  1 − exp(−t/Λ_abs) of all electrons. Λ_in ≈ 330 nm for water/vitreous ice at 300 kV (measured values
  lie around 300–400 nm, e.g. Rice et al. 2018, Ultramicroscopy); Λ_abs is an effective parameter.

Approximation (documented where it is used in :mod:`tumblebench.simulator.imaging`): the cell's layers are weak phase
objects and enter the image to first order in their scattering; the particle's own exit wave is computed
with full multislice in vacuum.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from tumblebench.simulator.errors import require
from tumblebench.simulator.grid import radial_frequency
from tumblebench.simulator.potential import FourierGrid, slice_potential_coefficients
from tumblebench.simulator.scattering import TWO_PI_A0_E, form_factor

#: Graphene lattice constant (Å) and C–C bond a/√3 = 1.42 Å.
GRAPHENE_A = 2.46
#: Number density of liquid water, molecules per Å³ (0.997 g/cm³).
WATER_DENSITY = 0.0334


@dataclass(frozen=True)
class LiquidCellConfig:
    """Graphene liquid cell around the particle.

    Attributes
    ----------
    enabled
        Switch the whole cell (graphene, water, attenuation) on or off.
    graphene
        Include the two graphene sheets.
    graphene_angles_deg
        In-plane rotation of the top and bottom sheet lattices (degrees).
    water
        Include the amorphous water layer (its thickness is given per frame).
    water_density_per_A3
        Molecules per Å³.
    amorphous_scale
        Multiplies the water's potential fluctuation (1 = static random atoms within an exposure).
    inelastic_mfp_A
        Inelastic mean free path Λ_in of the liquid (Å).
    absorption_mfp_A
        Effective mean free path Λ_abs for elastic scattering outside the objective aperture (Å).
    """

    enabled: bool = True
    graphene: bool = True
    graphene_angles_deg: tuple[float, float] = (0.0, 13.2)
    water: bool = True
    water_density_per_A3: float = WATER_DENSITY
    amorphous_scale: float = 1.0
    inelastic_mfp_A: float = 3300.0
    absorption_mfp_A: float = 30000.0

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the field when a value is out of range."""
        require(self.water_density_per_A3 >= 0,
                f"liquid_cell.water_density_per_A3 = {self.water_density_per_A3} must be ≥ 0")
        require(self.amorphous_scale >= 0, f"liquid_cell.amorphous_scale = {self.amorphous_scale} must be ≥ 0")
        require(self.inelastic_mfp_A > 0, f"liquid_cell.inelastic_mfp_A = {self.inelastic_mfp_A} must be > 0")
        require(self.absorption_mfp_A > 0, f"liquid_cell.absorption_mfp_A = {self.absorption_mfp_A} must be > 0")


def graphene_positions(extent_xy_A: tuple[float, float], angle_deg: float, offset_xy_A: tuple[float, float] = (0, 0)
                       ) -> np.ndarray:
    """Carbon positions (x, y) in Å of a graphene sheet covering [0, Lx) × [0, Ly).

    Parameters
    ----------
    extent_xy_A
        (Lx, Ly) of the area to cover, Å.
    angle_deg
        In-plane rotation of the lattice (degrees, counter-clockwise from +x towards +y).
    offset_xy_A
        Translation of the lattice origin, Å.

    Returns
    -------
    numpy.ndarray
        (N, 2) positions.
    """
    a = GRAPHENE_A
    a1 = np.array([a, 0.0])
    a2 = np.array([a / 2, a * np.sqrt(3) / 2])
    basis = np.array([[0.0, 0.0], (a1 + a2) / 3])
    th = np.radians(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lx, ly = extent_xy_A
    r = np.hypot(lx, ly) + 2 * a
    n = int(np.ceil(r / (a * np.sqrt(3) / 2))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    pts = (cells[:, None, :] + basis[None]).reshape(-1, 2) @ rot.T + np.asarray(offset_xy_A, float)
    keep = (pts[:, 0] >= 0) & (pts[:, 0] < lx) & (pts[:, 1] >= 0) & (pts[:, 1] < ly)
    return pts[keep]


def graphene_potential(shape_yx: tuple[int, int], sampling: float, angle_deg: float, q_max: float,
                       table: str = "peng") -> np.ndarray:
    """Band-limited projected potential (V·Å) of one graphene sheet over a field, (ny, nx) float32."""
    ny, nx = shape_yx
    xy = graphene_positions((nx * sampling, ny * sampling), angle_deg)
    pos = np.column_stack([xy, np.zeros(len(xy))])
    grid = FourierGrid(shape_yx, sampling, q_max)
    coeffs = slice_potential_coefficients(pos, "C", grid, table=table, slicing="centre")
    return grid.to_real(coeffs)[0]


def water_potential(shape_yx: tuple[int, int], sampling: float, thickness_A: float, q_max: float,
                    rng: np.random.Generator, density_per_A3: float = WATER_DENSITY, table: str = "peng"
                    ) -> np.ndarray:
    """Fluctuating part of the projected potential (V·Å) of a random water layer, (ny, nx) float32.

    Each pixel column holds Poisson(n·t·p²) O atoms and Poisson(2·n·t·p²) H atoms; the potential is their
    count field convolved with each element's projected potential (exact in Fourier space), band-limited
    at ``q_max``, with its mean removed.
    """
    if thickness_A <= 0 or density_per_A3 <= 0:
        return np.zeros(shape_yx, dtype=np.float32)
    lam = density_per_A3 * thickness_A * sampling**2
    kernels = _water_kernels((int(shape_yx[0]), int(shape_yx[1])), float(sampling), float(q_max), table)
    total = None
    for mult, kern in zip((1.0, 2.0), kernels, strict=True):  # O, H (2 per molecule)
        counts = rng.poisson(lam * mult, size=shape_yx).astype(np.float32)
        term = scipy.fft.rfft2(counts) * kern
        total = term if total is None else total + term
    return scipy.fft.irfft2(total, s=shape_yx).astype(np.float32)


@lru_cache(maxsize=8)
def _water_kernels(shape_yx: tuple[int, int], sampling: float, q_max: float, table: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """2πa₀e·f(q)/p² of O and H on the rfft grid, band-limited, zero at q = 0 (the mean is removed)."""
    q = radial_frequency(shape_yx, sampling, rfft=True)
    out = []
    for el in ("O", "H"):
        k = (TWO_PI_A0_E / sampling**2 * form_factor(el, q, table) * (q <= q_max)).astype(np.complex64)
        k[0, 0] = 0.0
        out.append(k)
    return out[0], out[1]


def attenuation(thickness_A: float, config: LiquidCellConfig) -> tuple[float, float]:
    """(elastic fraction exp(−t/Λ_in), transmitted fraction exp(−t/Λ_abs)) of a liquid layer of ``t`` Å."""
    if not config.enabled or thickness_A <= 0:
        return 1.0, 1.0
    return float(np.exp(-thickness_A / config.inelastic_mfp_A)), float(np.exp(-thickness_A / config.absorption_mfp_A))
