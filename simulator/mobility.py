"""Mobile-surface model: per-atom anisotropic displacement tensors U (Å²).

Seed 004 finds an ordered crystalline core and a mobile, irregular surface: atoms shallower than a
penetration depth δ ≈ 4–5 Å (≈ 1.6 atomic shells) move more (larger U_iso) and more anisotropically (lower
degree of isotropy DOI = U_min/U_maj) than core atoms, with a transition that is abrupt for some statistics
and logistic for others. :func:`displacement_tensors` draws such U tensors:

* surface weight ``s(depth)``: abrupt ``s = [depth < δ]`` or smooth ``s = 1 / (1 + exp((depth - δ)/w))``;
* ``U_iso = (u_core + (u_surface - u_core)·s) · LogNormal(0, scatter)``;
* ``DOI = doi_core + (doi_surface - doi_core)·s`` (then scattered and clipped into (0, 1]);
* eigenvalues ``∝ (1, √DOI, DOI)`` scaled so their mean is ``U_iso`` (so ``U_min/U_maj = DOI`` exactly);
* major axis radial (surface-normal vibration, as seen for metal surfaces by LEED), tangential, or random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tumblebench.simulator.errors import TumblebenchError, require

__all__ = ["MobilitySpec", "degree_of_isotropy", "displacement_tensors", "surface_weight", "u_iso"]


@dataclass(frozen=True)
class MobilitySpec:
    """Parameters of the mobile-surface model (defaults: realistic for 2–3 nm Pt in a liquid cell).

    Attributes
    ----------
    u_core_A2
        Mean isotropic displacement of core atoms (Å²); 0.007 ≈ Pt at room temperature (B ≈ 0.55 Å²).
    u_surface_A2
        Mean isotropic displacement of the outermost atoms (Å²), Wietfeldt et al. 2024 Fig. 5/6 trends.
    doi_core, doi_surface
        Degree of isotropy U_min/U_maj in the core and at the surface, in (0, 1].
    penetration_depth_A
        δ: depth (Å, from R_NP) of the core/surface transition; 4.5 Å ≈ 1.6 shells (Wietfeldt et al. 2024).
    transition
        ``"smooth"`` (logistic of width ``transition_width_A``) or ``"abrupt"`` (step at δ).
    transition_width_A
        Logistic width w (Å) of the smooth transition.
    scatter
        Log-normal σ of per-atom U_iso scatter and relative σ of per-atom DOI scatter (0 = deterministic).
    major_axis
        Direction of the largest displacement: ``"radial"``, ``"tangential"`` or ``"random"``.
    """

    u_core_A2: float = 0.007
    u_surface_A2: float = 0.040
    doi_core: float = 0.85
    doi_surface: float = 0.45
    penetration_depth_A: float = 4.5
    transition: Literal["smooth", "abrupt"] = "smooth"
    transition_width_A: float = 0.6
    scatter: float = 0.2
    major_axis: Literal["radial", "tangential", "random"] = "radial"

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the offending field."""
        require(0 < self.u_core_A2 <= 1.0, f"u_core_A2: expected in (0, 1] Å², got {self.u_core_A2}")
        require(0 < self.u_surface_A2 <= 1.0, f"u_surface_A2: expected in (0, 1] Å², got {self.u_surface_A2}")
        for name in ("doi_core", "doi_surface"):
            v = getattr(self, name)
            require(0 < v <= 1, f"{name}: expected in (0, 1], got {v}")
        require(self.penetration_depth_A >= 0, f"penetration_depth_A: expected >= 0 Å, got {self.penetration_depth_A}")
        require(self.transition in ("smooth", "abrupt"),
                f"transition: expected 'smooth' or 'abrupt', got {self.transition!r}")
        require(self.transition_width_A > 0, f"transition_width_A: expected > 0 Å, got {self.transition_width_A}")
        require(0 <= self.scatter <= 1, f"scatter: expected in [0, 1], got {self.scatter}")
        require(self.major_axis in ("radial", "tangential", "random"),
                f"major_axis: expected 'radial', 'tangential' or 'random', got {self.major_axis!r}")


def surface_weight(depth: np.ndarray, spec: MobilitySpec) -> np.ndarray:
    """Surface weight in [0, 1] (1 = fully surface-like) at radial depth ``depth`` (Å)."""
    depth = np.asarray(depth, dtype=np.float64)
    if spec.transition == "abrupt":
        return (depth < spec.penetration_depth_A).astype(np.float64)
    z = np.clip((depth - spec.penetration_depth_A) / spec.transition_width_A, -60, 60)
    return 1.0 / (1.0 + np.exp(z))


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def displacement_tensors(positions: np.ndarray, depth: np.ndarray, spec: MobilitySpec,
                         rng: np.random.Generator, centre: np.ndarray | None = None) -> np.ndarray:
    """Draw per-atom anisotropic displacement tensors U (Å²) of the mobile-surface model.

    Parameters
    ----------
    positions
        (N, 3) positions (Å), used for the radial direction.
    depth
        (N,) radial depth R_NP - R (Å).
    spec
        Model parameters.
    rng
        Seeded generator (all draws come from it, in a fixed order).
    centre
        Particle centre (Å); default the centroid.

    Returns
    -------
    numpy.ndarray
        (N, 3, 3) symmetric positive definite tensors with ``U_min/U_maj`` in (0, 1].
    """
    spec.validate()
    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    if n == 0:
        raise TumblebenchError("positions: no atoms")
    s = surface_weight(depth, spec)
    uiso = spec.u_core_A2 + (spec.u_surface_A2 - spec.u_core_A2) * s
    uiso = uiso * np.exp(spec.scatter * rng.standard_normal(n))
    doi = spec.doi_core + (spec.doi_surface - spec.doi_core) * s
    doi = np.clip(doi * (1.0 + 0.5 * spec.scatter * rng.standard_normal(n)), 0.05, 1.0)
    sq = np.sqrt(doi)
    lam = (3.0 * uiso / (1.0 + sq + doi))[:, None] * np.stack([np.ones(n), sq, doi], axis=1)  # maj, med, min
    frames = _random_rotations(n, rng)  # columns: eigenvectors (maj, med, min)
    c = pos.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
    r = pos - c
    rn = np.linalg.norm(r, axis=1)
    ok = rn > 1e-3
    if spec.major_axis != "random" and np.any(ok):
        rhat = r[ok] / rn[ok, None]
        a = frames[ok, :, 1]  # random helper vector -> perpendicular direction
        t1 = a - np.sum(a * rhat, axis=1, keepdims=True) * rhat
        t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
        t2 = np.cross(rhat, t1)
        if spec.major_axis == "radial":
            cols = (rhat, t1, t2)
        else:  # tangential: major and medium in the surface plane, minor along the normal
            cols = (t1, t2, rhat)
        frames[ok] = np.stack(cols, axis=2)
    u = np.einsum("nij,nj,nkj->nik", frames, lam, frames)
    return 0.5 * (u + np.swapaxes(u, 1, 2))


def u_iso(u: np.ndarray) -> np.ndarray:
    """Isotropic equivalent ``U_iso = tr(U)/3`` (Å²) of (N, 3, 3) tensors."""
    return np.trace(np.asarray(u), axis1=1, axis2=2) / 3.0


def degree_of_isotropy(u: np.ndarray) -> np.ndarray:
    """Degree of isotropy ``U_min/U_maj`` (Wietfeldt et al. 2024) of (N, 3, 3) tensors."""
    w = np.linalg.eigvalsh(np.asarray(u, dtype=np.float64))
    return w[:, 0] / w[:, 2]
