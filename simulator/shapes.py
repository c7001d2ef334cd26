"""Particle shapes: lattice cuts and ``ase.cluster`` polyhedra, sized by diameter (Å) or atom count.

Every shape is returned as a :class:`Shape`: ideal positions (Å, perfect lattice at the given lattice
constant, crystal axes along x, y, z), grain labels, and — for single-crystal shapes — the fcc lattice it was
cut from (origin site), which the defect operations and the truth stacking labels use. "Diameter" always
means the largest interatomic distance, as in Wietfeldt et al. (2024)'s Table 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase.cluster import Decahedron, Icosahedron, Octahedron, wulff_construction
from ase.data import atomic_numbers, reference_states

from tumblebench.simulator.coordination import max_interatomic_distance
from tumblebench.simulator.errors import TumblebenchError, require

__all__ = ["SHAPE_KINDS", "Shape", "ShapeSpec", "build_shape", "bulk_lattice_constant", "fcc_sites"]

SHAPE_KINDS = ("sphere", "ellipsoid", "cuboctahedron", "octahedron", "truncated-octahedron", "wulff",
               "decahedron", "icosahedron")

# Bulk room-temperature lattice constants (Å) where they differ from ase's reference_states table.
_BULK_A = {"Pt": 3.924, "Au": 4.078, "Ag": 4.086, "Pd": 3.891, "Cu": 3.615, "Ni": 3.524, "Al": 4.050,
           "Ir": 3.839, "Rh": 3.803}


def bulk_lattice_constant(element: str) -> float:
    """Bulk fcc lattice constant of ``element`` (Å): Pt 3.924 (facts), else ase's reference state.

    Raises
    ------
    TumblebenchError
        Unknown element, or an element whose reference state is not fcc.
    """
    require(element in atomic_numbers, f"element: unknown element {element!r}")
    if element in _BULK_A:
        return _BULK_A[element]
    ref = reference_states[atomic_numbers[element]]
    if not ref or ref.get("symmetry") != "fcc":
        raise TumblebenchError(
            f"element: {element!r} is not an fcc metal (reference state {ref and ref.get('symmetry')}); "
            "give lattice_constant_A explicitly to build it on an fcc lattice")
    return float(ref["a"])


@dataclass(frozen=True)
class ShapeSpec:
    """Shape and size of the particle.

    Attributes
    ----------
    kind
        One of ``sphere``, ``ellipsoid``, ``cuboctahedron``, ``octahedron``, ``truncated-octahedron``,
        ``wulff``, ``decahedron`` (Ino/Marks), ``icosahedron`` (Mackay).
    diameter_A
        Target diameter (largest interatomic distance, Å). Give this or ``n_atoms`` (or ``ase_parameters``).
    n_atoms
        Target atom count (exact for sphere/ellipsoid/wulff-rounding, closest magic size otherwise).
    aspect
        Ellipsoid semi-axis ratios along the crystal x, y, z axes (largest = long axis).
    wulff_surfaces, wulff_energies
        Miller indices and relative surface energies for ``wulff`` (Pt: γ111 < γ100 < γ110).
    marks_reentrance
        Marks re-entrance depth r of the decahedron (0 = Ino decahedron).
    ase_parameters
        Explicit ase.cluster parameters instead of a size: (length, cutoff) for octahedra, (shells,) for
        the icosahedron, (p, q, r) for the decahedron.
    """

    kind: Literal["sphere", "ellipsoid", "cuboctahedron", "octahedron", "truncated-octahedron", "wulff",
                  "decahedron", "icosahedron"] = "truncated-octahedron"
    diameter_A: float | None = None
    n_atoms: int | None = None
    aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)
    wulff_surfaces: tuple[tuple[int, int, int], ...] = ((1, 1, 1), (1, 0, 0), (1, 1, 0))
    wulff_energies: tuple[float, ...] = (1.0, 1.15, 1.25)
    marks_reentrance: int = 1
    ase_parameters: tuple[int, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the offending field."""
        require(self.kind in SHAPE_KINDS, f"kind: expected one of {', '.join(SHAPE_KINDS)}, got {self.kind!r}")
        given = sum(x is not None and x != () for x in (self.diameter_A, self.n_atoms, self.ase_parameters or None))
        require(given == 1, "diameter_A / n_atoms / ase_parameters: give exactly one size")
        if self.diameter_A is not None:
            require(self.diameter_A > 0, f"diameter_A: expected > 0 Å, got {self.diameter_A}")
            require(self.diameter_A <= 200, f"diameter_A: expected <= 200 Å, got {self.diameter_A}")
        if self.n_atoms is not None:
            require(self.n_atoms >= 13, f"n_atoms: expected >= 13, got {self.n_atoms}")
            require(self.n_atoms <= 200_000, f"n_atoms: expected <= 200000, got {self.n_atoms}")
        require(len(self.aspect) == 3 and all(v > 0 for v in self.aspect),
                f"aspect: expected three positive ratios, got {self.aspect}")
        require(len(self.wulff_surfaces) == len(self.wulff_energies) and len(self.wulff_energies) > 0,
                "wulff_energies: expected one energy per entry of wulff_surfaces")
        require(all(e > 0 for e in self.wulff_energies), "wulff_energies: expected positive energies")
        require(self.marks_reentrance >= 0, f"marks_reentrance: expected >= 0, got {self.marks_reentrance}")


@dataclass
class Shape:
    """An ideal particle before defects and strain.

    Attributes
    ----------
    positions
        (N, 3) ideal positions (Å).
    grain
        (N,) grain labels (0 for single crystals).
    lattice_origin
        A site of the fcc lattice (Å) for single-crystal shapes (crystal axes = x, y, z); None for
        multiply twinned shapes (decahedron, icosahedron).
    """

    positions: np.ndarray
    grain: np.ndarray
    lattice_origin: np.ndarray | None


def fcc_sites(a: float, radius: float, origin: np.ndarray | None = None) -> np.ndarray:
    """All fcc lattice sites (cube axes, constant ``a`` Å) within ``radius`` Å of ``origin`` (a site).

    Returns
    -------
    numpy.ndarray
        (M, 3) positions in Å, sorted by distance from ``origin`` then lexicographically.
    """
    origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    m = math.ceil(2 * radius / a) + 1
    r = np.arange(-m, m + 1)
    g = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    g = g[(g.sum(axis=1) % 2) == 0]
    p = g * (a / 2.0)
    d = np.linalg.norm(p, axis=1)
    keep = d <= radius + 1e-9
    p, d = p[keep], d[keep]
    order = np.lexsort((p[:, 2], p[:, 1], p[:, 0], np.round(d, 9)))
    return p[order] + origin


def _ellipsoid(spec: ShapeSpec, a: float) -> np.ndarray:
    asp = np.asarray(spec.aspect, dtype=np.float64)
    asp = asp / asp.max()
    if spec.diameter_A is not None:
        r_long = spec.diameter_A / 2.0
        sites = fcc_sites(a, r_long + 1e-6)
        rho = np.linalg.norm(sites / asp, axis=1)
        return sites[rho <= r_long + 1e-6]
    n = int(spec.n_atoms)
    r_guess = (n * a**3 / 4.0 * 3.0 / (4.0 * math.pi * np.prod(asp))) ** (1 / 3) + 2 * a
    sites = fcc_sites(a, r_guess)
    rho = np.linalg.norm(sites / asp, axis=1)
    order = np.lexsort((sites[:, 2], sites[:, 1], sites[:, 0], np.round(rho, 9)))
    return sites[order[:n]]


def _pick(candidates: list[tuple[tuple[int, ...], np.ndarray]], spec: ShapeSpec) -> np.ndarray:
    """The candidate whose atom count or diameter is closest to the target."""
    if spec.n_atoms is not None:
        errs = [abs(len(p) - spec.n_atoms) for _, p in candidates]
    else:
        errs = [abs(max_interatomic_distance(p) - spec.diameter_A) for _, p in candidates]
    return candidates[int(np.argmin(errs))][1]


def _octahedra(spec: ShapeSpec, a: float, sym: str) -> np.ndarray:
    if spec.ase_parameters:
        require(len(spec.ase_parameters) == 2, "ase_parameters: expected (length, cutoff) for an octahedron")
        length, cut = spec.ase_parameters
        require(length >= 2 and 0 <= cut and 2 * cut < length,
                f"ase_parameters: invalid octahedron (length={length}, cutoff={cut})")
        return Octahedron(sym, int(length), int(cut), latticeconstant=a).positions
    cands = []
    counts: list[tuple[int, int, int]] = []
    for length in range(2, 40):
        if spec.kind == "octahedron":
            cuts = [0]
        elif spec.kind == "cuboctahedron":
            cuts = [(length - 1) // 2] if length % 2 == 1 else []
        else:
            cuts = sorted({c for c in (math.floor((length - 1) / 3), math.ceil((length - 1) / 3))
                           if c >= 1 and 2 * c < length - 1})
        for c in cuts:
            n = length * (2 * length * length + 1) // 3 - c * (c + 1) * (2 * c + 1)
            if spec.n_atoms is not None:  # the count is analytic: build only the best candidate
                counts.append((abs(n - spec.n_atoms), length, c))
                continue
            # the largest distance lies between (L-1)·a/√2 (cuboctahedron) and (L-1)·a (octahedron)
            if spec.diameter_A is not None and not ((length - 1) * a >= spec.diameter_A - 3.0
                                                    and (length - 1) * a / math.sqrt(2) <= spec.diameter_A + 3.0):
                continue
            cands.append(((length, c), Octahedron(sym, length, c, latticeconstant=a).positions))
    if counts:
        _, length, c = min(counts)
        return Octahedron(sym, length, c, latticeconstant=a).positions
    require(len(cands) > 0, f"size: no {spec.kind} matches the requested size")
    return _pick(cands, spec)


def _icosahedron(spec: ShapeSpec, a: float, sym: str) -> np.ndarray:
    if spec.ase_parameters:
        require(len(spec.ase_parameters) == 1 and spec.ase_parameters[0] >= 1,
                "ase_parameters: expected (shells,) for an icosahedron")
        return Icosahedron(sym, int(spec.ase_parameters[0]), latticeconstant=a).positions
    cands = []
    for shells in range(2, 20):
        n = (10 * shells**3 - 15 * shells**2 + 11 * shells - 3) // 3
        if spec.n_atoms is not None and n > 3 * spec.n_atoms + 100:
            break
        if spec.diameter_A is not None and 2 * (shells - 1) * a / math.sqrt(2) > 2.5 * spec.diameter_A + 10:
            break
        cands.append(((shells,), Icosahedron(sym, shells, latticeconstant=a).positions))
    return _pick(cands, spec)


def _decahedron(spec: ShapeSpec, a: float, sym: str) -> np.ndarray:
    if spec.ase_parameters:
        require(len(spec.ase_parameters) == 3, "ase_parameters: expected (p, q, r) for a decahedron")
        p, q, r = spec.ase_parameters
        require(p >= 1 and q >= 1 and r >= 0, f"ase_parameters: invalid decahedron (p={p}, q={q}, r={r})")
        return Decahedron(sym, int(p), int(q), int(r), latticeconstant=a).positions
    cands = []
    for p in range(2, 16):
        pos = Decahedron(sym, p, p, spec.marks_reentrance, latticeconstant=a).positions
        cands.append(((p, p, spec.marks_reentrance), pos))
        if spec.n_atoms is not None and len(pos) > 3 * spec.n_atoms + 100:
            break
        if spec.diameter_A is not None and max_interatomic_distance(pos) > 2 * spec.diameter_A:
            break
    return _pick(cands, spec)


def _wulff(spec: ShapeSpec, a: float, sym: str) -> np.ndarray:
    surfaces = [tuple(s) for s in spec.wulff_surfaces]
    energies = list(spec.wulff_energies)

    def make(n: int) -> np.ndarray:
        return wulff_construction(sym, surfaces, energies, int(n), "fcc", rounding="closest",
                                  latticeconstant=a).positions

    if spec.n_atoms is not None:
        return make(spec.n_atoms)
    # size by diameter: iterate the atom count on the volume scaling N ∝ D³
    n = max(13, round(math.pi / 6 * (spec.diameter_A + a / math.sqrt(2)) ** 3 / (a**3 / 4)))
    best = None
    for _ in range(6):
        pos = make(n)
        d = max_interatomic_distance(pos)
        if best is None or abs(d - spec.diameter_A) < abs(best[0] - spec.diameter_A):
            best = (d, pos)
        if abs(d - spec.diameter_A) < 0.02 * spec.diameter_A:
            break
        n = max(13, round(len(pos) * ((spec.diameter_A + 2.0) / (d + 2.0)) ** 3))
    return best[1]


def _icosahedron_grains(pos: np.ndarray) -> np.ndarray:
    """20 tetrahedral grains of a Mackay icosahedron: the face whose centre direction is closest."""
    r = np.linalg.norm(pos, axis=1)
    if len(pos) < 13:
        return np.zeros(len(pos), dtype=np.int64)
    vert = pos[np.argsort(-r, kind="stable")[:12]]
    vert = vert / np.linalg.norm(vert, axis=1, keepdims=True)
    cosang = vert @ vert.T
    edge = cosang > 0.3  # neighbouring vertices: cos ≈ 0.447; opposite/second neighbours are lower
    faces = []
    for i in range(12):
        for j in range(i + 1, 12):
            for k in range(j + 1, 12):
                if edge[i, j] and edge[j, k] and edge[i, k]:
                    faces.append(vert[i] + vert[j] + vert[k])
    f = np.asarray(faces)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    g = np.argmax(pos @ f.T, axis=1)
    g[r < 1e-6] = 0
    return g.astype(np.int64)


def _decahedron_grains(pos: np.ndarray, a: float) -> np.ndarray:
    """Five tetrahedral grains of a decahedron (5-fold axis along z) by azimuthal sector."""
    from tumblebench.simulator.coordination import cn_cutoff, local_stacking

    st = local_stacking(pos, cn_cutoff(a))
    phi = np.arctan2(pos[:, 1], pos[:, 0])
    rxy = np.hypot(pos[:, 0], pos[:, 1])
    sel = (st == "hcp") & (rxy > 0.5)
    if not np.any(sel):
        sel = rxy >= np.quantile(rxy, 0.95)  # the pentagon corners lie on the twin planes
    phi0 = np.angle(np.mean(np.exp(5j * phi[sel]))) / 5.0
    sector = np.floor(((phi - phi0 + 1e-6) % (2 * np.pi)) / (2 * np.pi / 5)).astype(np.int64) % 5
    sector[rxy < 0.5] = 0
    return sector


def build_shape(spec: ShapeSpec, lattice_constant: float, element: str = "Pt") -> Shape:
    """Build the ideal particle of ``spec`` on an fcc lattice of constant ``lattice_constant`` (Å).

    Returns
    -------
    Shape
        Positions centred on their centroid.

    Raises
    ------
    TumblebenchError
        The size gives fewer than 13 atoms, or impossible parameters.
    """
    spec.validate()
    a = float(lattice_constant)
    sym = element if element in atomic_numbers else "Pt"
    lattice = True
    if spec.kind in ("sphere", "ellipsoid"):
        if spec.ase_parameters:
            raise TumblebenchError(f"ase_parameters: not used by kind {spec.kind!r}; give diameter_A or n_atoms")
        s = spec if spec.kind == "ellipsoid" else ShapeSpec(kind="ellipsoid", diameter_A=spec.diameter_A,
                                                            n_atoms=spec.n_atoms)
        pos = _ellipsoid(s, a)
    elif spec.kind in ("cuboctahedron", "octahedron", "truncated-octahedron"):
        pos = _octahedra(spec, a, sym)
    elif spec.kind == "wulff":
        pos = _wulff(spec, a, sym)
    elif spec.kind == "icosahedron":
        pos, lattice = _icosahedron(spec, a, sym), False
    else:
        pos, lattice = _decahedron(spec, a, sym), False
    pos = np.asarray(pos, dtype=np.float64)
    require(len(pos) >= 13, f"shape.diameter_A/n_atoms: the requested {spec.kind} has {len(pos)} atoms; expected "
            "at least 13 (increase the size)")
    if lattice:
        origin = pos[0].copy()
        centre = pos.mean(axis=0)
        grain = np.zeros(len(pos), dtype=np.int64)
        return Shape(pos - centre, grain, origin - centre)
    pos = pos - pos.mean(axis=0)
    grain = _icosahedron_grains(pos) if spec.kind == "icosahedron" else _decahedron_grains(pos, a)
    return Shape(pos, grain, None)
