"""Per-atom and per-particle statistics of Wietfeldt et al. 2024 with SINGLE's column names.

Structure metrics (CN, GCN, NN bond, radial depth, local stacking, strain) come from the ONE shared
definitions in :mod:`simulator.coordination` and :mod:`simulator.lattice`, so measured and true values are
computed identically. Column names follow SINGLE's ``atoms_stats.csv``; quantities SINGLE does not have are
appended after its columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tumblebench.simulator import coordination, lattice

#: SINGLE's per-atom columns, in its order.
SINGLE_COLUMNS: tuple[str, ...] = (
    "INDEX", "NVOX", "CN_STD", "NN_BONDL", "CN_GEN", "DIAM", "ADJ_CN13", "AVG_INT", "MAX_INT", "CENDIST",
    "VALID_CORR", "U_ISO", "U_MAJ", "U_MED", "U_MIN", "AZIMUTH", "POLAR", "DOI", "DOI_MIN", "ISO_CORR",
    "ANISO_CORR", "X", "Y", "Z", "EXX_STRAIN", "EYY_STRAIN", "EZZ_STRAIN", "EXY_STRAIN", "EYZ_STRAIN",
    "EXZ_STRAIN", "RADIAL_STRAIN",
)

#: Columns appended after SINGLE's (tumblebench additions).
EXTRA_COLUMNS: tuple[str, ...] = (
    "DEPTH", "STACKING", "GRAIN", "SIGMA2_ISO", "U_XX", "U_YY", "U_ZZ", "U_XY", "U_YZ", "U_XZ",
    "MAJ_X", "MAJ_Y", "MAJ_Z", "MIN_X", "MIN_Y", "MIN_Z", "ANISO_OK", "MAX_INT_RAW", "IDEAL_X", "IDEAL_Y",
    "IDEAL_Z",
)

#: Statistics summarised in nanoparticle_stats.csv and cn_dependent_stats.csv (SINGLE's list).
SUMMARY_STATS: tuple[str, ...] = (
    "NVOX", "CN_STD", "NN_BONDL", "CN_GEN", "DIAM", "AVG_INT", "MAX_INT", "VALID_CORR", "U_ISO", "U_MAJ",
    "U_MED", "U_MIN", "AZIMUTH", "POLAR", "DOI", "DOI_MIN", "ISO_CORR", "ANISO_CORR", "RADIAL_STRAIN",
)
_ANISO_STATS = {"U_MAJ", "U_MED", "U_MIN", "AZIMUTH", "POLAR", "DOI", "DOI_MIN", "ANISO_CORR"}


@dataclass
class StructureMetrics:
    """Position-only statistics of a set of atoms (Å, dimensionless strain).

    Attributes
    ----------
    cn, gcn, nn_bond, depth, cendist, adj_cn13, stacking
        Per-atom CN, GCN, NN bond length, radial depth R_NP − R, distance from the centroid, neighbours with
        CN > 12, local stacking ('fcc' / 'hcp' / 'other').
    fit
        The fcc lattice fit (:func:`simulator.lattice.fit_fcc_lattice`): lattice constant, orientation, grains.
    strain, radial_strain
        (N, 6) strain (exx, eyy, ezz, exy, eyz, exz) and (N,) radial strain against ``ideal_positions``.
    ideal_positions
        Ideal lattice sites used as the strain reference.
    cutoff
        CN neighbourhood radius used (Å).
    """

    cn: np.ndarray
    gcn: np.ndarray
    nn_bond: np.ndarray
    depth: np.ndarray
    cendist: np.ndarray
    adj_cn13: np.ndarray
    stacking: np.ndarray
    fit: Any
    strain: np.ndarray
    radial_strain: np.ndarray
    ideal_positions: np.ndarray
    cutoff: float


def coordination_metrics(positions: np.ndarray, lattice_constant: float) -> tuple[np.ndarray, float]:
    """CN with Wietfeldt et al. (2024)'s cutoff for ``lattice_constant`` (Å); returns (cn, cutoff)."""
    cut = coordination.cn_cutoff(lattice_constant)
    return coordination.coordination_numbers(positions, cut), cut


def structure_metrics(positions: np.ndarray, lattice_constant_guess: float,
                      strain_reference: float | None = None) -> StructureMetrics:
    """Fit the fcc lattice (any orientation, per grain) and compute every position statistic.

    Parameters
    ----------
    positions
        (N, 3) atom positions (Å).
    lattice_constant_guess
        Starting lattice constant of the fit (Å).
    strain_reference
        Lattice constant (Å) of the ideal lattice that strain is measured against; None: the fitted one
        (strain is then the local deviation from the particle's own lattice).
    """
    pos = np.asarray(positions, float)
    fit = lattice.fit_fcc_lattice(pos, lattice_constant_guess=lattice_constant_guess)
    a = float(fit.lattice_constant)
    cut = coordination.cn_cutoff(a)
    nl = coordination.neighbour_lists(pos, cut)
    cn = nl.counts().astype(np.int64)
    gcn = coordination.generalized_coordination(pos, cut)
    nn = coordination.nn_bond_lengths(pos)
    depth = coordination.radial_depth(pos)
    centre = pos.mean(axis=0)
    cendist = np.linalg.norm(pos - centre, axis=1)
    adj = np.bincount(nl.rows(), weights=(cn[nl.indices] > 12).astype(float), minlength=len(pos)).astype(np.int64)
    stacking = coordination.local_stacking(pos, cut)
    ideal = np.asarray(fit.ideal_positions, float)
    if strain_reference is not None:
        c0 = ideal.mean(axis=0)
        ideal = c0 + (ideal - c0) * (strain_reference / a)
    strain = lattice.strain_tensors(pos, ideal)
    rstrain = lattice.radial_strain(pos, ideal, centre=centre)
    return StructureMetrics(cn, gcn, nn, depth, cendist, adj, stacking, fit, strain, rstrain, ideal, cut)


def major_axis_angles(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and polar angle (degrees, [0, 180)) of axes ``vec`` (N, 3), sign-folded to the upper half."""
    v = np.asarray(vec, float)
    v = np.where(v[:, 2:3] < 0, -v, v)
    polar = np.degrees(np.arccos(np.clip(v[:, 2], -1, 1)))
    azimuth = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 180.0
    return azimuth, polar


def summary_row(df: pd.DataFrame, prefix_stats: tuple[str, ...] = SUMMARY_STATS) -> dict[str, float]:
    """AVG_/MED_/SDEV_ of each statistic (anisotropic ones over atoms with a valid fit only)."""
    out: dict[str, float] = {}
    ok = df["ANISO_OK"].to_numpy(bool) if "ANISO_OK" in df else np.ones(len(df), bool)
    for s in prefix_stats:
        v = df[s].to_numpy(float)
        if s in _ANISO_STATS:
            v = v[ok]
        v = v[np.isfinite(v)]
        out[f"AVG_{s}"] = float(np.mean(v)) if len(v) else float("nan")
        out[f"MED_{s}"] = float(np.median(v)) if len(v) else float("nan")
        out[f"SDEV_{s}"] = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
    rs = df["RADIAL_STRAIN"].to_numpy(float)
    rs = rs[np.isfinite(rs)]
    out["MIN_RADIAL_STRAIN"] = float(rs.min()) if len(rs) else float("nan")
    out["MAX_RADIAL_STRAIN"] = float(rs.max()) if len(rs) else float("nan")
    return out


def nanoparticle_stats(df: pd.DataFrame, diameter: float) -> pd.DataFrame:
    """SINGLE's ``nanoparticle_stats.csv``: NATOMS, NANISO, DIAM, then AVG_/MED_/SDEV_ of each statistic."""
    row: dict[str, float] = {"NATOMS": len(df), "NANISO": int(df["ANISO_OK"].sum()), "DIAM": diameter}
    row.update(summary_row(df))
    return pd.DataFrame([row])


def cn_dependent_stats(df: pd.DataFrame, cn_min: int = 3, cn_max: int = 13, min_atoms: int = 2,
                       figure_min_atoms: int = 5) -> pd.DataFrame:
    """SINGLE's ``cn_dependent_stats.csv`` (one row per CN with ≥ ``min_atoms`` atoms) plus S/√N errors.

    Columns: CN_STD, NATOMS, NANISO, AVG_/MED_/SDEV_ of each statistic (SINGLE), then SEM_ of each
    (standard deviation / √N, Wietfeldt et al. (2024)'s error bars) and FIG_BIN (True where the bin has ≥
    ``figure_min_atoms`` atoms, the bins Wietfeldt et al. (2024)'s Fig. 5 shows).
    """
    rows = []
    stats = tuple(s for s in SUMMARY_STATS if s != "CN_STD")
    for cn in range(cn_min, cn_max + 1):
        sub = df[df["CN_STD"] == cn]
        if len(sub) < min_atoms:
            continue
        row: dict[str, float] = {"CN_STD": cn, "NATOMS": len(sub), "NANISO": int(sub["ANISO_OK"].sum())}
        summ = summary_row(sub, stats)
        row.update({k: v for k, v in summ.items() if not k.startswith(("MIN_", "MAX_"))})
        row["MIN_RADIAL_STRAIN"] = summ["MIN_RADIAL_STRAIN"]
        row["MAX_RADIAL_STRAIN"] = summ["MAX_RADIAL_STRAIN"]
        ok = sub["ANISO_OK"].to_numpy(bool)
        for s in stats:
            v = sub[s].to_numpy(float)
            if s in _ANISO_STATS:
                v = v[ok]
            v = v[np.isfinite(v)]
            row[f"SEM_{s}"] = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        row["FIG_BIN"] = len(sub) >= figure_min_atoms
        rows.append(row)
    return pd.DataFrame(rows)


def table1(df: pd.DataFrame, diameter: float, lattice_constant: float) -> dict[str, float]:
    """The Table 1 quantities of Wietfeldt et al. 2024 for one particle.

    Returns
    -------
    dict
        n_atoms, diameter_A (largest interatomic distance), median_cn, median_nn_bond_A,
        median_radial_strain_pct, core_ratio (fraction with CN = 12), n_core, lattice_constant_A.
    """
    cn = df["CN_STD"].to_numpy()
    return {
        "n_atoms": len(df),
        "diameter_A": diameter,
        "median_cn": float(np.median(cn)),
        "median_nn_bond_A": float(np.median(df["NN_BONDL"])),
        "median_radial_strain_pct": float(np.median(df["RADIAL_STRAIN"])),
        "core_ratio": float(np.mean(cn == 12)),
        "n_core": int(np.sum(cn == 12)),
        "lattice_constant_A": lattice_constant,
    }
