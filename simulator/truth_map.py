"""The truth map of a series: what a perfect reconstruction of it would give.

Definition (docs/design.md): the particle's 3D electrostatic potential (V) in the particle frame (pose identity),
its rotation centre (the centroid of the atoms, the origin of the particle frame) at box index ``n // 2`` on
every axis, each atom time-averaged over its thermal motion (its five-Gaussian potential convolved with its
anisotropic U) and weighted by the fraction of the series it was present, band-limited as the imaging is
(a sphere of radius 1/``resolution_A`` in Fourier space).

Accuracy: Pt's narrowest Gaussian (σ ≈ 0.05 Å) is far below a 0.358 Å voxel, so point samples of the
potential alias. The map is therefore rendered on a grid ``oversample`` times finer with a small extra
isotropic blur ``U_extra`` (which makes every Gaussian wide enough for the fine grid), Fourier transformed,
cropped to the band, divided by the extra blur's transfer exp(−2π²·U_extra·k²) and transformed back onto
the reconstruction grid. The result is the exact band-limited potential up to aliasing from beyond the fine
grid's Nyquist frequency (< 0.5 % of the band edge amplitude at the defaults).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.fft

from tumblebench.simulator.density import render_density
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.grid import frequency_squared
from tumblebench.simulator.orientation import box_centre


class _Particle(Protocol):  # the part of simulator.nanocrystal.Nanocrystal used here
    @property
    def positions(self) -> np.ndarray: ...
    @property
    def symbols(self) -> list[str]: ...
    @property
    def U(self) -> np.ndarray: ...


#: Potential tails (Å) beyond an atom centre that must still lie inside the box.
PARTICLE_MARGIN_A = 2.0


def particle_frame_positions(nc: _Particle, centre: np.ndarray | None = None) -> np.ndarray:
    """Atom positions relative to ``centre`` (default: their centroid, the rotation centre), (N, 3) Å."""
    pos = np.asarray(nc.positions, float)
    return pos - (pos.mean(axis=0) if centre is None else np.asarray(centre, float))


def particle_radius(nc: _Particle, centre: np.ndarray | None = None) -> float:
    """Largest distance of an atom from the centroid (or ``centre``) plus three rms thermal displacements, Å."""
    pos = particle_frame_positions(nc, centre)
    u_max = np.linalg.eigvalsh(np.asarray(nc.U, float)).max(axis=1).clip(0, None)
    return float(np.max(np.linalg.norm(pos, axis=1) + 3.0 * np.sqrt(u_max)))


def check_fits_box(nc: _Particle, box_size: int, sampling: float, what: str = "box",
                   centre: np.ndarray | None = None) -> None:
    """Raise unless the particle, in any orientation, fits inside a ``box_size``³ box of ``sampling`` Å."""
    half = (box_size // 2 - 1) * sampling
    radius = particle_radius(nc, centre) + PARTICLE_MARGIN_A
    if radius > half:
        raise TumblebenchError(
            f"{what}: the particle (radius {radius:.1f} Å incl. {PARTICLE_MARGIN_A:.0f} Å margin and 3σ thermal "
            f"motion) does not fit a {box_size}-px box of {sampling} Å (half-width {half:.1f} Å); "
            f"use a box of at least {int(np.ceil(2 * radius / sampling)) + 2} px"
        )


def render_truth_map(nc: _Particle, box_size: int = 128, sampling: float = 0.358, resolution_A: float = 0.8,
                     occupancy: np.ndarray | None = None, oversample: int = 2, u_extra: float = 0.01,
                     table: str = "peng", centre: np.ndarray | None = None) -> np.ndarray:
    """Render the truth map of a series.

    Parameters
    ----------
    nc
        The particle (a :class:`tumblebench.simulator.nanocrystal.Nanocrystal`: positions Å, symbols, U (N, 3, 3) Å²).
    box_size
        Edge of the cubic box, voxels.
    sampling
        Voxel edge, Å.
    resolution_A
        Band limit, Å (the imaging's finest transferred resolution); must be coarser than 2·sampling.
    occupancy
        (N,) fraction of the series each atom was present (default 1).
    oversample
        Fine-grid factor for the alias-free rendering (≥ 1).
    u_extra
        Extra isotropic blur (Å²) on the fine grid, divided out in Fourier space.
    table
        Scattering-factor table.
    centre
        Rotation centre (Å, same frame as the positions) placed at the box centre; default the centroid.
        (A series whose atoms hop renders every position an atom held, each weighted by its fraction of the
        series, about the centroid of the particle as built.)

    Returns
    -------
    numpy.ndarray
        float32 [z, y, x] potential in V; the particle centroid at voxel (n//2, n//2, n//2).

    Raises
    ------
    TumblebenchError
        Voxel too coarse for the band limit, or the particle does not fit the box.
    """
    require(box_size >= 8, f"box_size = {box_size} must be >= 8 voxels")
    require(sampling > 0, f"sampling = {sampling} must be > 0 Å")
    require(oversample >= 1, f"oversample = {oversample} must be >= 1")
    if not resolution_A > 2.0 * sampling:
        raise TumblebenchError(
            f"truth map: voxel size {sampling} Å is too coarse for the band limit {resolution_A} Å "
            f"(needs a voxel < {resolution_A / 2:.4f} Å)"
        )
    check_fits_box(nc, box_size, sampling, "truth map", centre)
    n = int(box_size)
    m = int(oversample)
    big = n * m
    fine = sampling / m
    pos = particle_frame_positions(nc, centre) + box_centre(n, sampling)
    U = np.asarray(nc.U, float).reshape(-1, 3, 3) + u_extra * np.eye(3)[None]
    vol = render_density(pos, (big, big, big), fine, elements=list(nc.symbols), U=U, occupancy=occupancy,
                         table=table)
    ft = scipy.fft.rfftn(vol.astype(np.float64), workers=-1)
    del vol
    # keep the coarse grid's frequencies (indices |j| < n/2 on the full axes, j <= n/2 on the half axis)
    keep = np.r_[0 : (n + 1) // 2, big - n // 2 : big]
    sub = ft[np.ix_(keep, keep, np.arange(n // 2 + 1))]
    del ft
    k2 = frequency_squared((n, n, n), sampling, rfft=True)
    band = k2 <= (1.0 / resolution_A) ** 2
    # drop Nyquist planes (they cannot be represented symmetrically)
    if n % 2 == 0:
        band[n // 2, :, :] = False
        band[:, n // 2, :] = False
        band[:, :, n // 2] = False
    filt = np.where(band, np.exp(2.0 * np.pi**2 * u_extra * k2), 0.0)
    out = scipy.fft.irfftn(sub * filt, s=(n, n, n), workers=-1) / m**3
    return out.astype(np.float32)
