"""Build a known-truth :class:`~tumblebench.simulator.nanocrystal.Nanocrystal` from a typed, validated spec.

Pipeline of :func:`build` (each stage draws from its own stream spawned from the seed, so that changing one
option does not reshuffle the others):

1. shape on the reference lattice (:mod:`tumblebench.simulator.shapes`);
2. planar defects — twin boundaries, lamellar twins, intrinsic stacking faults — and the true local
   stacking of every atom (:mod:`tumblebench.simulator.defects`);
3. vacancies (surface / interior / any) and adatoms on surface hollow sites;
4. imposed strain (:mod:`tumblebench.simulator.strain_field`): uniform expansion, radial surface shell, optional EMT;
5. truth arrays and the mobile-surface U model (:mod:`simulator.nanocrystal`, :mod:`simulator.mobility`).

A spec is loadable from TOML with :func:`load_spec` (tables ``[shape]``, ``[defects]``, ``[strain]``,
``[mobility]``; see ``examples/*.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

from tumblebench.simulator.config import load_config
from tumblebench.simulator.coordination import cn_cutoff, coordination_numbers, local_stacking, max_interatomic_distance
from tumblebench.simulator.defects import apply_planar_defects, choose_adatoms, choose_vacancies
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.lattice import fit_fcc_lattice
from tumblebench.simulator.mobility import MobilitySpec
from tumblebench.simulator.nanocrystal import Nanocrystal, compute_truth
from tumblebench.simulator.shapes import ShapeSpec, build_shape, bulk_lattice_constant
from tumblebench.simulator.strain_field import StrainSpec, apply_strain

__all__ = [
    "PRESETS",
    "DefectSpec",
    "MobilitySpec",
    "NanocrystalSpec",
    "ShapeSpec",
    "StrainSpec",
    "build",
    "build_preset",
    "load_spec",
    "preset_spec",
]


@dataclass(frozen=True)
class DefectSpec:
    """Planar and point defects.

    Attributes
    ----------
    twin_planes
        (111) layer indices (0 = the layer nearest the centroid) carrying a twin boundary; several give
        lamellar twins.
    stacking_faults
        (111) layer indices carrying an intrinsic stacking fault.
    plane_normal
        The <111> normal shared by the planar defects.
    vacancy_fraction
        Fraction of atoms removed (0 ≤ f < 0.5).
    vacancy_region
        ``surface`` (CN < 12), ``interior`` (CN = 12) or ``any``.
    n_adatoms
        Atoms added on surface hollow sites.
    """

    twin_planes: tuple[int, ...] = ()
    stacking_faults: tuple[int, ...] = ()
    plane_normal: tuple[int, int, int] = (1, 1, 1)
    vacancy_fraction: float = 0.0
    vacancy_region: Literal["surface", "interior", "any"] = "surface"
    n_adatoms: int = 0

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the offending field."""
        require(0 <= self.vacancy_fraction < 0.5,
                f"vacancy_fraction: expected in [0, 0.5), got {self.vacancy_fraction}")
        require(self.vacancy_region in ("surface", "interior", "any"),
                f"vacancy_region: expected 'surface', 'interior' or 'any', got {self.vacancy_region!r}")
        require(self.n_adatoms >= 0, f"n_adatoms: expected >= 0, got {self.n_adatoms}")
        require(all(abs(int(v)) == 1 for v in self.plane_normal) and len(self.plane_normal) == 3,
                f"plane_normal: expected a <111> direction such as (1, 1, 1), got {self.plane_normal}")


_DEFAULT_SHAPE = ShapeSpec(kind="truncated-octahedron", ase_parameters=(9, 3))


@dataclass(frozen=True)
class NanocrystalSpec:
    """Everything that defines a built nanocrystal.

    The defaults are a ~2.5 nm Pt truncated octahedron (405 atoms) without defects, +1.74 % uniform expansion
    plus a +0.5 % surface shell, and the default mobile surface; the ``default`` preset adds one twin plane
    (the default demo particle of docs/design.md).

    Attributes
    ----------
    name
        Label stored in the truth files.
    element
        Chemical symbol of an fcc metal (default Pt).
    lattice_constant_A
        Reference (bulk) lattice constant in Å; default the element's bulk value (Pt 3.924 Å).
    shape, defects, strain, mobility
        Sub-specs (TOML tables ``[shape]``, ``[defects]``, ``[strain]``, ``[mobility]``).
    """

    name: str = "default"
    element: str = "Pt"
    lattice_constant_A: float | None = None
    shape: ShapeSpec = _DEFAULT_SHAPE
    defects: DefectSpec = field(default_factory=DefectSpec)
    strain: StrainSpec = field(default_factory=lambda: StrainSpec(uniform=0.0174, shell=0.005))
    mobility: MobilitySpec = field(default_factory=MobilitySpec)

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the offending field."""
        from ase.data import atomic_numbers

        require(self.element in atomic_numbers, f"element: unknown element {self.element!r}")
        if self.lattice_constant_A is None:
            try:
                bulk_lattice_constant(self.element)
            except TumblebenchError as exc:
                raise TumblebenchError(str(exc)) from None
        else:
            require(1.5 < self.lattice_constant_A < 8.0,
                    f"lattice_constant_A: expected in (1.5, 8) Å, got {self.lattice_constant_A}")
        for name in ("shape", "defects", "strain", "mobility"):
            try:
                getattr(self, name).validate()
            except TumblebenchError as exc:
                raise TumblebenchError(f"{name}.{exc}") from None

    @property
    def reference_lattice_constant(self) -> float:
        """The reference lattice constant (Å)."""
        return float(self.lattice_constant_A or bulk_lattice_constant(self.element))


def load_spec(path: str | Path) -> NanocrystalSpec:
    """Load a :class:`NanocrystalSpec` from a TOML file (top-level keys and sub-tables)."""
    return load_config(NanocrystalSpec, path)


def build(spec: NanocrystalSpec, seed: int = 0) -> Nanocrystal:
    """Build the nanocrystal of ``spec``.

    Parameters
    ----------
    spec
        The validated spec.
    seed
        Seed of every random draw (vacancies, adatoms, static disorder, U); same seed, same bytes.

    Returns
    -------
    Nanocrystal

    Raises
    ------
    TumblebenchError
        Invalid spec, a size with fewer than 13 atoms, planar defects on a multiply twinned shape or
        outside the particle, a penetration depth larger than the particle radius.
    """
    spec.validate()
    require(isinstance(seed, int | np.integer) and seed >= 0, f"seed: expected a non-negative integer, got {seed}")
    streams = np.random.SeedSequence(int(seed)).spawn(4)
    rng_vac, rng_ad, rng_strain, rng_u = (np.random.default_rng(s) for s in streams)
    a0 = spec.reference_lattice_constant
    cut0 = cn_cutoff(a0)
    shape = build_shape(spec.shape, a0, spec.element)
    d = spec.defects
    if shape.lattice_origin is not None:
        planar = apply_planar_defects(shape.positions, shape.lattice_origin, a0, d.twin_planes, d.stacking_faults,
                                      d.plane_normal)
        pos, grain, stacking = planar.positions, planar.grain, planar.stacking
        block_tree = cKDTree(planar.block)
    else:
        require(not d.twin_planes and not d.stacking_faults,
                f"defects: twin_planes/stacking_faults need a single-crystal shape, not {spec.shape.kind!r} "
                "(which is already multiply twinned)")
        pos, grain = shape.positions, shape.grain
        stacking = local_stacking(pos, cut0)
        block_tree, planar = None, None
    # vacancies
    vac = choose_vacancies(coordination_numbers(pos, cut0), d.vacancy_fraction, d.vacancy_region, rng_vac)
    keep = np.setdiff1d(np.arange(len(pos)), vac)
    pos, grain, stacking = pos[keep], grain[keep], stacking[keep]
    # adatoms
    if d.n_adatoms:
        sites, nnb = choose_adatoms(pos, a0, d.n_adatoms, rng_ad)
        ad_stack = np.where(nnb == 3, "hcp", "other").astype("<U5")
        if block_tree is not None:
            dist, idx = block_tree.query(sites)
            on = dist < 1e-3
            ad_stack[on] = planar.block_stacking[idx[on]]
        _, near = cKDTree(pos).query(sites)
        pos = np.vstack([pos, sites])
        grain = np.concatenate([grain, grain[near]])
        stacking = np.concatenate([stacking, ad_stack])
    require(len(pos) >= 13, f"shape: the particle has {len(pos)} atoms after defects; expected at least 13")
    radius = 0.5 * max_interatomic_distance(pos)
    require(spec.mobility.penetration_depth_A <= radius,
            f"mobility.penetration_depth_A: {spec.mobility.penetration_depth_A} Å is larger than the particle "
            f"radius {radius:.2f} Å")
    symbols = [spec.element] * len(pos)
    actual = apply_strain(pos, symbols, spec.strain, rng_strain)
    # the particle's lattice constant is what a perfect analysis would fit: the per-grain lattice fit of the
    # true positions (= a0·(1 + uniform) exactly for a pure uniform expansion)
    a_particle = fit_fcc_lattice(actual, a0 * (1.0 + spec.strain.uniform), grain=grain).lattice_constant
    return compute_truth(actual, symbols, pos, grain, stacking, a0, a_particle, spec.mobility, rng_u,
                         info={"name": spec.name, "seed": int(seed), "element": spec.element,
                               "shape": spec.shape.kind, "source": "build"})


# ----------------------------------------------------------------------------------------------- presets
# Table 1 of Wietfeldt et al. 2024: (atoms, diameter Å, median radial strain %). The presets are ellipsoids cut from the
# Pt lattice whose aspect ratios were chosen so that the atom count and the largest interatomic distance
# match the table (within 5 %, checked by tests/test_builder_presets.py); the uniform strain is the table's
# median radial strain.
TABLE1: dict[int, tuple[int, float, float]] = {
    1: (219, 21.3, 1.6), 2: (357, 25.1, 4.4), 3: (373, 23.5, 1.7), 4: (390, 23.7, 1.8),
    5: (496, 26.0, 2.1), 6: (569, 27.3, 4.7), 7: (667, 29.5, 1.4), 8: (710, 30.0, 1.8),
}
_TABLE1_ASPECT: dict[int, tuple[float, float, float]] = {
    1: (1.0, 0.71, 0.71), 2: (1.0, 0.79, 0.79), 3: (1.0, 0.88, 0.88), 4: (1.0, 0.9, 0.9),
    5: (1.0, 0.83, 0.83), 6: (1.0, 0.9, 0.9), 7: (1.0, 0.82, 0.82), 8: (1.0, 0.82, 0.82),
}


def _table1_spec(k: int) -> NanocrystalSpec:
    n, _diam, strain = TABLE1[k]
    return NanocrystalSpec(
        name=f"table1-np{k}",
        shape=ShapeSpec(kind="ellipsoid", n_atoms=n, aspect=_TABLE1_ASPECT[k]),
        defects=DefectSpec(),
        strain=StrainSpec(uniform=strain / 100.0, shell=0.0),
    )


def preset_spec(name: str) -> NanocrystalSpec:
    """The spec of preset ``name`` (one of :data:`PRESETS`)."""
    if name == "default":
        return NanocrystalSpec(name="default", defects=DefectSpec(twin_planes=(1,)))
    if name == "cuboctahedron":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="cuboctahedron", n_atoms=561), defects=DefectSpec())
    if name == "octahedron":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="octahedron", n_atoms=344), defects=DefectSpec())
    if name == "decahedron":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="decahedron", diameter_A=25.0, marks_reentrance=1),
                               defects=DefectSpec())
    if name == "icosahedron":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="icosahedron", n_atoms=561), defects=DefectSpec())
    if name == "twinned":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="truncated-octahedron", ase_parameters=(10, 3)),
                               defects=DefectSpec(twin_planes=(-2, 1), stacking_faults=(3,), vacancy_fraction=0.02,
                                                  n_adatoms=4))
    if name == "wulff":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="wulff", n_atoms=500), defects=DefectSpec())
    if name == "sphere":
        return NanocrystalSpec(name=name, shape=ShapeSpec(kind="sphere", diameter_A=25.0), defects=DefectSpec())
    if name.startswith("table1-np") and name[len("table1-np"):].isdigit() and int(name[9:]) in TABLE1:
        return _table1_spec(int(name[9:]))
    raise TumblebenchError(f"preset: unknown preset {name!r}; expected one of {', '.join(PRESETS)}")


PRESETS: tuple[str, ...] = (
    "default", "cuboctahedron", "octahedron", "decahedron", "icosahedron", "twinned", "wulff", "sphere",
    *(f"table1-np{k}" for k in range(1, 9)),
)


def build_preset(name: str, seed: int = 0) -> Nanocrystal:
    """Build preset ``name`` (see :data:`PRESETS`) with ``seed``."""
    return build(preset_spec(name), seed)


def with_overrides(spec: NanocrystalSpec, **changes: object) -> NanocrystalSpec:
    """A copy of ``spec`` with top-level fields replaced (convenience for scripts and tests)."""
    return replace(spec, **changes)

