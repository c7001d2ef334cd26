"""The known-truth nanocrystal: an ``ase.Atoms`` plus per-atom truth arrays, and its files.

Per-atom arrays (``atoms.arrays``; all survive the ``truth.extxyz`` round trip bit for bit):

========================  =========  ==================================================================
name                      shape      meaning
========================  =========  ==================================================================
``U``                     (N, 9)     anisotropic displacement tensor, row-major 3×3, Å²
``grain``                 (N,) int   perfect-lattice domain (twin planes and faults separate domains)
``stacking``              (N,) str   true local stacking ``fcc`` / ``hcp`` / ``other``
``depth``                 (N,)       radial depth R_NP - R, Å (Wietfeldt et al. 2024)
``cn``                    (N,) int   coordination number, cutoff ā/2·(1+1/√2) (Wietfeldt et al. 2024)
``gcn``                   (N,)       generalized coordination number (Wietfeldt et al. 2024)
``nn_bond``               (N,)       nearest-neighbour distance, Å
``ideal_position``        (N, 3)     site of the perfect lattice at the REFERENCE (bulk) lattice constant, Å
``displacement``          (N, 3)     position - ideal_position, Å
``strain``                (N, 6)     (exx, eyy, ezz, exy, eyz, exz) by :func:`simulator.lattice.strain_tensors`
``radial_strain``         (N,)       ε_RR = R̂ᵀ ε R̂ (Wietfeldt et al. 2024)
``surface``               (N,) bool  CN < 12
========================  =========  ==================================================================

``atoms.info``: ``lattice_constant`` (Å, the per-grain fcc lattice fit of the true positions — what a perfect
analysis returns; a₀·(1 + uniform strain) for a pure uniform expansion),
``reference_lattice_constant`` (Å, the bulk value the ideal positions and strain refer to), ``name``,
``seed``, ``element``, ``penetration_depth`` (Å, of the mobility model), ``source``.

Positions are in the particle frame: Å, centred so that the centroid is 0.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase
import ase.io
import numpy as np

from tumblebench.simulator.coordination import (
    cn_cutoff,
    coordination_numbers,
    generalized_coordination,
    max_interatomic_distance,
    nn_bond_lengths,
    radial_depth,
)
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.lattice import strain_tensors, voigt_to_matrix
from tumblebench.simulator.mobility import MobilitySpec, degree_of_isotropy, displacement_tensors

__all__ = [
    "TRUTH_ARRAYS",
    "Nanocrystal",
    "canonicalise",
    "check_structure",
    "compute_truth",
    "load_nanocrystal",
    "read_structure",
    "reference_nn_distance",
    "structure_summary",
    "structure_warnings",
    "write_pdb",
    "write_truth",
]

TRUTH_ARRAYS: tuple[str, ...] = (
    "U", "grain", "stacking", "depth", "cn", "gcn", "nn_bond", "ideal_position", "displacement", "strain",
    "radial_strain", "surface",
)


@dataclass
class Nanocrystal:
    """A nanocrystal whose every atom is known.

    Attributes
    ----------
    atoms
        Positions (Å) in the particle frame (centroid at 0) with the truth arrays listed in the module
        docstring in ``atoms.arrays`` and metadata in ``atoms.info``.
    """

    atoms: ase.Atoms

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) positions, Å."""
        return self.atoms.positions

    @property
    def symbols(self) -> list[str]:
        """Chemical symbols, one per atom."""
        return self.atoms.get_chemical_symbols()

    @property
    def U(self) -> np.ndarray:
        """(N, 3, 3) anisotropic displacement tensors, Å²."""
        return self.atoms.arrays["U"].reshape(-1, 3, 3)

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.atoms)

    @property
    def lattice_constant(self) -> float:
        """Mean lattice constant of the particle, Å."""
        return float(self.atoms.info["lattice_constant"])

    @property
    def u_iso(self) -> np.ndarray:
        """(N,) isotropic displacement tr(U)/3, Å²."""
        return np.trace(self.U, axis1=1, axis2=2) / 3.0

    def array(self, name: str) -> np.ndarray:
        """A per-atom truth array by name (see the module docstring)."""
        return self.atoms.arrays[name]

    def copy(self) -> Nanocrystal:
        """Deep copy."""
        return Nanocrystal(self.atoms.copy())


def canonicalise(atoms: ase.Atoms) -> ase.Atoms:
    """Pass ``atoms`` through the extxyz writer and reader, so that every float is exactly what a
    ``truth.extxyz`` file holds (8 decimals) and a later write/read round trip is lossless."""
    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    buf.seek(0)
    out = ase.io.read(buf, format="extxyz")
    for key in ("stacking",):
        if key in out.arrays:
            out.arrays[key] = np.asarray(out.arrays[key]).astype("<U5")
    out.calc = None
    return out


def compute_truth(positions: np.ndarray, symbols: list[str] | str, ideal_positions: np.ndarray,
                  grain: np.ndarray, stacking: np.ndarray, reference_lattice_constant: float,
                  lattice_constant: float, mobility: MobilitySpec, rng: np.random.Generator,
                  info: dict[str, Any] | None = None) -> Nanocrystal:
    """Assemble a :class:`Nanocrystal` and compute every derived truth array.

    Parameters
    ----------
    positions
        (N, 3) actual (mean) positions, Å; recentred here so that the centroid is 0.
    symbols
        Element symbols (or one symbol for all).
    ideal_positions
        (N, 3) perfect-lattice sites at ``reference_lattice_constant``, same frame as ``positions``.
    grain, stacking
        (N,) lattice-domain index and true local stacking.
    reference_lattice_constant
        Bulk lattice constant a₀ (Å) the ideal positions refer to; strain cutoffs use it.
    lattice_constant
        Mean lattice constant of the particle (Å); the CN cutoff ā/2·(1+1/√2) uses it.
    mobility
        Mobile-surface model for U.
    rng
        Seeded generator for U.
    info
        Extra metadata for ``atoms.info``.

    Returns
    -------
    Nanocrystal
        Canonicalised (round-trip exact) nanocrystal.
    """
    pos = np.asarray(positions, dtype=np.float64)
    ideal = np.asarray(ideal_positions, dtype=np.float64)
    n = len(pos)
    require(n >= 2, "structure: needs at least two atoms")
    centre = pos.mean(axis=0)
    pos = pos - centre
    ideal = ideal - centre
    cut = cn_cutoff(lattice_constant)
    depth = radial_depth(pos)
    u = displacement_tensors(pos, depth, mobility, rng)
    eps = strain_tensors(pos, ideal, cn_cutoff(reference_lattice_constant))
    eps_m = voigt_to_matrix(eps)
    r = np.linalg.norm(pos, axis=1)
    rhat = np.where(r[:, None] > 1e-6, pos / np.maximum(r, 1e-12)[:, None], 0.0)
    eps_rr = np.where(r > 1e-6, np.einsum("ni,nij,nj->n", rhat, eps_m, rhat), np.trace(eps_m, axis1=1, axis2=2) / 3)
    cn = coordination_numbers(pos, cut)
    atoms = ase.Atoms(symbols=symbols if isinstance(symbols, list) else [symbols] * n, positions=pos)
    atoms.arrays["U"] = u.reshape(n, 9)
    atoms.arrays["grain"] = np.asarray(grain, dtype=np.int64)
    atoms.arrays["stacking"] = np.asarray(stacking).astype("<U5")
    atoms.arrays["depth"] = depth
    atoms.arrays["cn"] = cn
    atoms.arrays["gcn"] = generalized_coordination(pos, cut)
    atoms.arrays["nn_bond"] = nn_bond_lengths(pos)
    atoms.arrays["ideal_position"] = ideal
    atoms.arrays["displacement"] = pos - ideal
    atoms.arrays["strain"] = eps
    atoms.arrays["radial_strain"] = eps_rr
    atoms.arrays["surface"] = cn < 12
    atoms.info.update({
        "lattice_constant": float(lattice_constant),
        "reference_lattice_constant": float(reference_lattice_constant),
        "penetration_depth": float(mobility.penetration_depth_A),
    })
    if info:
        atoms.info.update(info)
    return Nanocrystal(canonicalise(atoms))


def structure_summary(nc: Nanocrystal) -> dict[str, Any]:
    """The Wietfeldt et al. 2024 Table 1 quantities of ``nc`` (what ``structure.json`` holds).

    Returns
    -------
    dict
        ``n_atoms``, ``diameter_A`` (largest interatomic distance), ``median_cn``, ``mean_cn``,
        ``median_nn_bond_A``, ``median_radial_strain_percent``, ``core_ratio`` (fraction with CN = 12),
        ``lattice_constant_A``, ``reference_lattice_constant_A``, plus U and stacking summaries.
    """
    a = nc.atoms.arrays
    cn = a["cn"]
    st = a["stacking"]
    u = nc.U
    return {
        "name": nc.atoms.info.get("name", ""),
        "element": nc.atoms.info.get("element", nc.symbols[0]),
        "n_atoms": nc.n_atoms,
        "diameter_A": max_interatomic_distance(nc.positions),
        "median_cn": float(np.median(cn)),
        "mean_cn": float(np.mean(cn)),
        "median_nn_bond_A": float(np.median(a["nn_bond"])),
        "median_radial_strain_percent": float(np.median(a["radial_strain"]) * 100.0),
        "core_ratio": float(np.mean(cn == 12)),
        "lattice_constant_A": nc.lattice_constant,
        "reference_lattice_constant_A": float(nc.atoms.info.get("reference_lattice_constant", nc.lattice_constant)),
        "penetration_depth_A": float(nc.atoms.info.get("penetration_depth", math.nan)),
        "median_u_iso_A2": float(np.median(nc.u_iso)),
        "median_doi": float(np.median(degree_of_isotropy(u))),
        "n_grains": len(np.unique(a["grain"])),
        "stacking_counts": {k: int(np.sum(st == k)) for k in ("fcc", "hcp", "other")},
        "n_surface": int(np.sum(a["surface"])),
        "seed": nc.atoms.info.get("seed"),
    }


def write_pdb(nc: Nanocrystal, path: str | Path) -> None:
    """Write a PDB file: one ATOM record per atom, B-factor = 8π²·U_iso (Å²), occupancy 1."""
    b = 8.0 * math.pi**2 * nc.u_iso
    lines = ["REMARK   tumblebench truth; B = 8*pi^2*U_iso (A^2); particle frame, centroid at 0"]
    for i, (sym, p, bi) in enumerate(zip(nc.symbols, nc.positions, b, strict=True)):
        name = sym.upper()
        lines.append(
            f"ATOM  {(i + 1) % 100000:5d} {name:<4s} {name:>3s} A{(i + 1) % 10000:4d}    "
            f"{p[0]:8.3f}{p[1]:8.3f}{p[2]:8.3f}{1.0:6.2f}{min(bi, 999.99):6.2f}          {name:>2s}"
        )
    lines.append("END")
    Path(path).write_text("\n".join(lines) + "\n")


def write_truth(nc: Nanocrystal, directory: str | Path) -> None:
    """Write ``truth.extxyz``, ``truth.pdb`` and ``structure.json`` into an existing ``directory``."""
    from tumblebench.simulator.outputs import write_json

    d = Path(directory)
    require(d.is_dir(), f"{d}: output directory does not exist")
    ase.io.write(d / "truth.extxyz", nc.atoms, format="extxyz")
    write_pdb(nc, d / "truth.pdb")
    write_json(d / "structure.json", structure_summary(nc))


#: Two atoms closer than this (Å) are one atom written twice: no bond between metal atoms is this short.
MIN_ATOM_DISTANCE_A = 0.5
#: Accepted range of the median nearest-neighbour distance, as a fraction of the element's reference value
#: (Pt: 2.30–3.30 Å around 2.77 Å; the builder's largest uniform strain, ±10 %, stays inside).
NN_RANGE = (0.83, 1.19)
#: Shapes of the truth arrays beyond the atom axis.
_TRUTH_SHAPES = {"U": (9,), "ideal_position": (3,), "displacement": (3,), "strain": (6,)}
_WATER_RESIDUES = {"HOH", "WAT", "SOL", "H2O", "TIP3", "TIP", "SPC"}


def reference_nn_distance(element: str) -> float:
    """Nearest-neighbour distance (Å) of ``element`` in its reference crystal (ase's reference states:
    fcc a/√2, bcc a√3/2, hcp and simple cubic a, diamond a√3/4), else twice its covalent radius.

    Raises
    ------
    TumblebenchError
        Not a chemical symbol (``X`` included).
    """
    from ase.data import atomic_numbers, covalent_radii, reference_states

    z = atomic_numbers.get(element, 0)
    if z == 0:
        raise TumblebenchError(f"element {element!r}: expected a chemical symbol such as 'Pt'")
    ref = reference_states[z] or {}
    sym, a = ref.get("symmetry"), ref.get("a")
    factors = {"fcc": 1 / math.sqrt(2), "bcc": math.sqrt(3) / 2, "hcp": 1.0, "sc": 1.0, "diamond": math.sqrt(3) / 4}
    if sym in factors and a:
        return float(a) * factors[sym]
    return 2.0 * float(covalent_radii[z])


def check_structure(atoms: ase.Atoms, where: str) -> None:
    """Refuse a structure that reads but cannot be a nanocrystal.

    Checks: every element a real chemical symbol (not ``X``); every number of every per-atom array finite;
    no two atoms closer than :data:`MIN_ATOM_DISTANCE_A`; the median nearest-neighbour distance within
    :data:`NN_RANGE` of the majority element's :func:`reference_nn_distance`; truth arrays of the right shape.

    Raises
    ------
    TumblebenchError
        One line naming ``where`` (the file), the array or atoms, and the expectation.
    """
    from ase.data import chemical_symbols
    from scipy.spatial import cKDTree

    symbols = atoms.get_chemical_symbols()
    numbers = np.asarray(atoms.numbers)
    if np.any((numbers < 1) | (numbers >= len(chemical_symbols))):
        i = int(np.flatnonzero((numbers < 1) | (numbers >= len(chemical_symbols)))[0])
        raise TumblebenchError(f"{where}: atom {i + 1} has element {symbols[i]!r} (unknown); expected a chemical "
                               "symbol such as 'Pt' (use --element to set it)")
    for name, arr in atoms.arrays.items():
        a = np.asarray(arr)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            i = int(np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1))[0])
            raise TumblebenchError(f"{where}: per-atom array '{name}' holds NaN or infinite values (atom {i + 1})")
        if name in _TRUTH_SHAPES and a.shape[1:] != _TRUTH_SHAPES[name]:
            raise TumblebenchError(f"{where}: per-atom array '{name}' has shape {a.shape}; expected "
                                   f"({len(a)}, {', '.join(map(str, _TRUTH_SHAPES[name]))})")
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if np.abs(pos).max() > 1e5:
        raise TumblebenchError(f"{where}: coordinates beyond ±100,000 Å; expected a nanocrystal in Å")
    tree = cKDTree(pos)
    pairs = tree.query_pairs(MIN_ATOM_DISTANCE_A, output_type="ndarray")
    if len(pairs):
        i, j = sorted(map(int, pairs[0]))
        d = float(np.linalg.norm(pos[i] - pos[j]))
        raise TumblebenchError(f"{where}: atoms {i + 1} and {j + 1} are {d:.3f} Å apart (closer than "
                               f"{MIN_ATOM_DISTANCE_A} Å): a duplicated atom?")
    main = max(set(symbols), key=symbols.count)
    d0 = reference_nn_distance(main)
    nn = float(np.median(tree.query(pos, k=2)[0][:, 1]))
    lo, hi = NN_RANGE[0] * d0, NN_RANGE[1] * d0
    if not lo <= nn <= hi:
        raise TumblebenchError(f"{where}: median nearest-neighbour distance {nn:.3f} Å is absurd for {main} "
                               f"(expected {lo:.2f}–{hi:.2f} Å around {d0:.3f} Å); wrong element or units?")


def structure_warnings(atoms: ase.Atoms, where: str) -> list[str]:
    """Signs that a structure file's element column is not what its atoms are (one message per file).

    A PDB whose residue or atom names say water (``HOH``/``WAT``, ``OW``) or whose atoms sit in a close-packed
    (fcc/hcp) arrangement while the element's own crystal is bcc (SINGLE's example PDBs: Pt atoms written as
    water, element ``W``, read as tungsten) gets one message suggesting ``--element``.
    """
    from ase.data import atomic_numbers, reference_states
    from scipy.spatial import cKDTree

    symbols = atoms.get_chemical_symbols()
    main = max(set(symbols), key=symbols.count)
    reasons: list[str] = []
    res = {str(r).strip().upper() for r in atoms.arrays.get("residuenames", [])}
    names = {str(r).strip().upper() for r in atoms.arrays.get("atomtypes", [])}
    water = sorted(res & _WATER_RESIDUES) + sorted(n for n in names if n in {"OW", "HW", "HW1", "HW2"})
    if water and main not in ("O", "H"):
        reasons.append(f"residue/atom names {'/'.join(water)} are water's")
    ref = reference_states[atomic_numbers[main]] or {}
    if ref.get("symmetry") == "bcc" and len(atoms) >= 13:
        pos = np.asarray(atoms.positions, float)
        tree = cKDTree(pos)
        d_nn = float(np.median(tree.query(pos, k=2)[0][:, 1]))
        # within 1.1 NN: 12 neighbours in the core of a close-packed crystal, 8 in a bcc one (its second
        # shell lies at 1.155 NN)
        cn = np.array([len(n) - 1 for n in tree.query_ball_point(pos, 1.1 * d_nn)])
        if cn.max() >= 11:
            reasons.append(f"the atoms are close-packed (fcc/hcp) but {main} is bcc")
    if not reasons:
        return []
    return [f"{where}: element column says {main} but {' and '.join(reasons)}; if the atoms are another element, "
            "pass --element (e.g. --element Pt)"]


def read_structure(path: str | Path, element: str | None = None) -> ase.Atoms:
    """Read and check a structure file (``.pdb``, ``.xyz``, ``.extxyz``): see :func:`check_structure`.

    Parameters
    ----------
    path
        The file.
    element
        Chemical symbol given to every atom, replacing the file's element column (checked).

    Raises
    ------
    TumblebenchError
        Missing, unreadable, too small or implausible structure.
    """
    path = Path(path)
    atoms = _read_atoms(path)
    if element is not None:
        from ase.data import atomic_numbers

        require(element in atomic_numbers and element != "X",
                f"element {element!r}: expected a chemical symbol such as 'Pt'")
        atoms.set_chemical_symbols([element] * len(atoms))
    check_structure(atoms, str(path))
    return atoms


def _read_atoms(path: Path) -> ase.Atoms:
    suffix = path.suffix.lower()
    fmt = {".pdb": "proteindatabank", ".xyz": "extxyz", ".extxyz": "extxyz"}.get(suffix)
    require(fmt is not None, f"{path}: unsupported structure file type {suffix!r}; expected .pdb, .xyz or .extxyz")
    require(not path.is_dir(), f"{path}: is a directory; expected a structure file")
    require(path.is_file(), f"{path}: no such structure file")
    try:
        atoms = ase.io.read(path, format=fmt, index=-1)
    except Exception as exc:  # ase raises many types for malformed files
        msg = " ".join(str(exc).split())[:200]
        raise TumblebenchError(f"{path}: cannot read as {fmt} ({type(exc).__name__}: {msg})") from None
    if not isinstance(atoms, ase.Atoms):
        raise TumblebenchError(f"{path}: cannot read as {fmt} (no structure)")
    require(len(atoms) >= 13, f"{path}: expected a structure of at least 13 atoms, read {len(atoms)}")
    require(bool(np.all(np.isfinite(atoms.positions))), f"{path}: non-finite coordinates")
    return atoms


def load_nanocrystal(path: str | Path, mobility: MobilitySpec | None = None, seed: int = 0,
                     reference_lattice_constant: float | None = None, element: str | None = None,
                     warn: Callable[[str], None] | None = None) -> Nanocrystal:
    """Read a nanocrystal.

    Parameters
    ----------
    path
        ``truth.extxyz`` written by :func:`write_truth` (returned as is), or a ``.pdb`` / ``.xyz`` /
        ``.extxyz`` file of bare atoms: then the lattice is fitted (any orientation, grains found) and every
        truth array and the mobility model are computed, exactly as for a built particle.
    mobility
        Mobility model for bare atoms (default :class:`MobilitySpec`).
    seed
        Seed of the U draw for bare atoms.
    reference_lattice_constant
        Bulk lattice constant (Å) the strain of bare atoms refers to; default the element's bulk value
        (3.924 Å for Pt), or the fitted value for an element without a tabulated fcc lattice constant.
    element
        Chemical symbol given to every atom of a bare-atom file, replacing the file's element column (SINGLE's
        example PDBs store Pt atoms as water, ``OW WAT`` with element ``W``, which would otherwise be read
        as tungsten). Not allowed for a ``truth.extxyz``.
    warn
        Called with each message of :func:`structure_warnings` (an element column that looks wrong) when
        ``element`` is not given; None: no warnings.

    Raises
    ------
    TumblebenchError
        Missing, unreadable or too small file, or a structure :func:`check_structure` refuses.
    """
    path = Path(path)
    atoms = _read_atoms(path)
    truth_file = all(k in atoms.arrays for k in TRUTH_ARRAYS) and "lattice_constant" in atoms.info
    if element is not None:
        from ase.data import atomic_numbers

        require(element in atomic_numbers and element != "X",
                f"element {element!r}: expected a chemical symbol such as 'Pt'")
        require(not truth_file, f"{path}: a truth file keeps its own elements; element={element!r} is for bare atoms")
        atoms.set_chemical_symbols([element] * len(atoms))
    check_structure(atoms, str(path))
    if warn is not None and element is None:
        for message in structure_warnings(atoms, str(path)):
            warn(message)
    if truth_file:
        a = atoms.info.get("lattice_constant")
        require(isinstance(a, int | float) and not isinstance(a, bool) and 1.0 <= float(a) <= 10.0,
                f"{path}: info 'lattice_constant' = {a!r}; expected a lattice constant in [1, 10] Å")
        atoms.arrays["stacking"] = np.asarray(atoms.arrays["stacking"]).astype("<U5")
        atoms.calc = None
        return Nanocrystal(atoms)
    try:
        return nanocrystal_from_atoms(atoms, mobility=mobility, seed=seed,
                                      reference_lattice_constant=reference_lattice_constant,
                                      name=path.stem, source=str(path.name))
    except TumblebenchError as exc:
        raise TumblebenchError(f"{path}: {exc}") from None


def nanocrystal_from_atoms(atoms: ase.Atoms, mobility: MobilitySpec | None = None, seed: int = 0,
                           reference_lattice_constant: float | None = None, name: str = "from-file",
                           source: str = "") -> Nanocrystal:
    """Truth arrays and mobility model for a structure of bare atoms (see :func:`load_nanocrystal`)."""
    from tumblebench.simulator.coordination import local_stacking
    from tumblebench.simulator.lattice import fit_fcc_lattice
    from tumblebench.simulator.shapes import bulk_lattice_constant

    mobility = mobility or MobilitySpec()
    pos = np.asarray(atoms.positions, dtype=np.float64)
    symbols = atoms.get_chemical_symbols()
    nn = float(np.median(nn_bond_lengths(pos)))
    fit = fit_fcc_lattice(pos, lattice_constant_guess=nn * math.sqrt(2.0))
    a_fit = float(fit.lattice_constant)
    main = max(set(symbols), key=symbols.count)
    a_ref = reference_lattice_constant
    if a_ref is None:
        try:
            a_ref = bulk_lattice_constant(main)
        except TumblebenchError:
            a_ref = a_fit
    # ideal positions at the reference lattice constant: scale each grain's fitted lattice about the centroid
    centre = pos.mean(axis=0)
    ideal = centre + (fit.ideal_positions - centre) * (a_ref / a_fit)
    stacking = local_stacking(pos, cn_cutoff(a_fit))
    radius = 0.5 * max_interatomic_distance(pos)
    require(mobility.penetration_depth_A <= radius,
            f"mobility.penetration_depth_A: {mobility.penetration_depth_A} Å is larger than the particle radius "
            f"{radius:.2f} Å")
    return compute_truth(pos, symbols, ideal, fit.grain, stacking, a_ref, a_fit, mobility,
                         np.random.default_rng(seed),
                         info={"name": name, "seed": int(seed), "element": main, "source": source,
                               "fit_rms_residual": float(fit.rms_residual)})
