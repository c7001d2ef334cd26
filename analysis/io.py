"""Files of the atoms stage: PDB, extended XYZ, SINGLE's CSV files, penetration.json, and their reader.

Coordinates are in Å in the map frame (voxel (iz, iy, ix) centred at (ix, iy, iz)·sampling), identical in
every file (SINGLE's CSV and PDB differ by one voxel; these do not), so the model overlays its map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ase
import ase.io
import numpy as np
import pandas as pd

from tumblebench.analysis.model import AtomModel, config_dict
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import atomic_output_dir, write_json, write_manifest

FILES = ("atoms.pdb", "atoms.extxyz", "atoms_stats.csv", "nanoparticle_stats.csv", "cn_dependent_stats.csv",
         "penetration.json", "atoms_summary.json")

_B_FIELDS = {
    "b_iso": ("U_ISO", 8 * np.pi**2),
    "u_iso": ("U_ISO", 1.0),
    "valid_corr": ("VALID_CORR", 1.0),
    "cn": ("CN_STD", 1.0),
    "doi": ("DOI", 1.0),
}


def write_pdb(model: AtomModel, path: str | Path, b_factor: str = "b_iso") -> None:
    """Write ATOM (and ANISOU, where the anisotropic fit is valid) records.

    Parameters
    ----------
    model
        The atom model.
    path
        Output file.
    b_factor
        Quantity in the B-factor column: ``b_iso`` (8π²U_iso, Å²), ``u_iso`` (Å²), ``valid_corr``, ``cn``,
        ``doi``.
    """
    if b_factor not in _B_FIELDS:
        raise TumblebenchError(f"b_factor {b_factor!r} unknown; expected one of {', '.join(_B_FIELDS)}")
    col, scale = _B_FIELDS[b_factor]
    bval = np.nan_to_num(model.stats[col].to_numpy(float) * scale, nan=0.0)
    el = model.element.upper()
    name = el if len(el) == 2 else f" {el}"
    lines = [f"REMARK   1 tumblebench atoms: {model.n_atoms} {model.element} atoms; B-factor column = {b_factor}",
             f"REMARK   2 map voxel size {model.sampling:.5f} A, shape {model.map_shape}"]
    U = model.U
    ok = model.stats["ANISO_OK"].to_numpy(bool)
    for i, (x, y, z) in enumerate(model.positions):
        serial = (i + 1) % 100000
        resseq = (i + 1) % 10000
        rec = (f"ATOM  {serial:5d} {name:<4s} {el:>3s} A{resseq:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
               f"{1.0:6.2f}{np.clip(bval[i], -99.99, 999.99):6.2f}          {el:>2s}")
        lines.append(rec)
        if ok[i]:
            u = np.rint(U[i] * 1e4).astype(int)
            lines.append(f"ANISOU{serial:5d} {name:<4s} {el:>3s} A{resseq:4d}  "
                         f"{u[0, 0]:7d}{u[1, 1]:7d}{u[2, 2]:7d}{u[0, 1]:7d}{u[0, 2]:7d}{u[1, 2]:7d}      {el:>2s}")
    lines.append("END")
    Path(path).write_text("\n".join(lines) + "\n")


def write_extxyz(model: AtomModel, path: str | Path) -> None:
    """Extended XYZ with per-atom arrays: U (N, 9) Å², cn, gcn, nn_bond, depth, stacking, grain, u_iso, doi,
    valid_corr, strain (N, 6, dimensionless) and radial_strain (dimensionless)."""
    n = model.n_atoms
    box = np.array(model.map_shape[::-1], float) * model.sampling
    atoms = ase.Atoms(symbols=[model.element] * n, positions=model.positions, cell=np.diag(box), pbc=False)
    s = model.stats
    atoms.arrays["U"] = np.nan_to_num(model.U.reshape(n, 9), nan=0.0)
    atoms.arrays["cn"] = s["CN_STD"].to_numpy(np.int64)
    atoms.arrays["gcn"] = s["CN_GEN"].to_numpy(float)
    atoms.arrays["nn_bond"] = s["NN_BONDL"].to_numpy(float)
    atoms.arrays["depth"] = s["DEPTH"].to_numpy(float)
    atoms.arrays["stacking"] = s["STACKING"].to_numpy(str)
    atoms.arrays["grain"] = s["GRAIN"].to_numpy(np.int64)
    atoms.arrays["u_iso"] = np.nan_to_num(s["U_ISO"].to_numpy(float), nan=0.0)
    atoms.arrays["doi"] = np.nan_to_num(s["DOI"].to_numpy(float), nan=0.0)
    atoms.arrays["valid_corr"] = np.nan_to_num(s["VALID_CORR"].to_numpy(float), nan=0.0)
    cols = ["EXX_STRAIN", "EYY_STRAIN", "EZZ_STRAIN", "EXY_STRAIN", "EYZ_STRAIN", "EXZ_STRAIN"]
    atoms.arrays["strain"] = s[cols].to_numpy(float) / 100.0
    atoms.arrays["radial_strain"] = s["RADIAL_STRAIN"].to_numpy(float) / 100.0
    atoms.info["lattice_constant"] = float(model.table1["lattice_constant_A"])
    atoms.info["voxel_size"] = float(model.sampling)  # the MRC header's name
    ase.io.write(str(path), atoms, format="extxyz")


def summary(model: AtomModel) -> dict[str, Any]:
    """Per-particle summary: Table 1, lattice fit, counts and the run's diagnostics."""
    fit = model.lattice
    return {
        "table1": model.table1,
        "lattice": {"lattice_constant_A": float(fit.lattice_constant),
                    "rotation": np.asarray(fit.rotation).tolist() if hasattr(fit, "rotation") else None,
                    "rms_residual_A": float(getattr(fit, "rms_residual", np.nan)),
                    "n_grains": int(model.info.get("n_grains", 1))},
        "stacking_counts": model.stats["STACKING"].value_counts().to_dict(),
        "info": model.info,
    }


def write_atom_model(model: AtomModel, out: str | Path, overwrite: bool = False, b_factor: str | None = None,
                     inputs: dict[str, str] | None = None) -> Path:
    """Write every output of the stage into ``out`` atomically (all files or none).

    Files: ``atoms.pdb``, ``atoms.extxyz``, ``atoms_stats.csv``, ``nanoparticle_stats.csv``,
    ``cn_dependent_stats.csv``, ``penetration.json``, ``atoms_summary.json``, ``manifest.json``.

    Raises
    ------
    TumblebenchError
        An empty model (never written as a result), or ``out`` exists without ``overwrite``.
    """
    if model.n_atoms == 0 or len(model.stats) == 0:
        raise TumblebenchError("refusing to write an empty atom model")
    out = Path(out)
    with atomic_output_dir(out, overwrite) as tmp:
        write_pdb(model, tmp / "atoms.pdb", b_factor or model.config.b_factor)
        write_extxyz(model, tmp / "atoms.extxyz")
        model.stats.to_csv(tmp / "atoms_stats.csv", index=False, float_format="%.6g")
        model.nanoparticle.to_csv(tmp / "nanoparticle_stats.csv", index=False, float_format="%.6g")
        model.cn_stats.to_csv(tmp / "cn_dependent_stats.csv", index=False, float_format="%.6g")
        write_json(tmp / "penetration.json", model.penetration)
        write_json(tmp / "atoms_summary.json", summary(model))
        write_manifest(tmp, "atoms", config_dict(model.config), None, inputs or {},
                       n_atoms=model.n_atoms, element=model.element, voxel_size=model.sampling)
    return out


def read_atoms(directory: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Positions (N, 3) Å and the per-atom table from an ``atoms`` output directory (or its CSV file).

    The table's numeric columns (SINGLE's and tumblebench's, :mod:`tumblebench.analysis.statistics`) must hold
    numbers (empty or NaN allowed where a fit did not apply, never in X, Y, Z); no two atoms may lie closer
    than 0.5 Å; when the directory's ``manifest.json`` names the element, the median nearest-neighbour
    distance must lie within the range the atoms stage accepts (0.75–1.3 of the element's).

    Raises
    ------
    TumblebenchError
        Missing or malformed ``atoms_stats.csv`` (the message names the file, the column and the expectation).
    """
    from scipy.spatial import cKDTree

    from tumblebench.analysis.statistics import EXTRA_COLUMNS, SINGLE_COLUMNS

    p = Path(directory)
    csv = p / "atoms_stats.csv" if p.is_dir() else p
    if not csv.exists():
        raise TumblebenchError(f"{csv}: no such file (expected the output directory of 'tumblebench atoms')")
    try:
        df = pd.read_csv(csv)
    except (ValueError, OSError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise TumblebenchError(f"{csv}: not a readable CSV file ({type(exc).__name__}: {msg})") from None
    missing = [c for c in ("X", "Y", "Z") if c not in df.columns]
    if missing:
        raise TumblebenchError(f"{csv}: missing column(s) {', '.join(missing)}; expected atoms_stats.csv of "
                               "'tumblebench atoms'")
    for col in (*SINGLE_COLUMNS, *EXTRA_COLUMNS):
        if col not in df.columns or col == "STACKING" or df[col].dtype.kind in "fiub":
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TumblebenchError(f"{csv}: column {col}, row {row + 1}: {df[col].iloc[row]!r} is not a number")
        df[col] = values
    if len(df) == 0:
        raise TumblebenchError(f"{csv}: no atoms")
    pos = df[["X", "Y", "Z"]].to_numpy(float)
    if not np.all(np.isfinite(pos)):
        row = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise TumblebenchError(f"{csv}: columns X, Y, Z: row {row + 1} is not a finite position (Å)")
    if np.abs(pos).max() > 1e5:
        raise TumblebenchError(f"{csv}: columns X, Y, Z: positions beyond ±100,000 Å")
    tree = cKDTree(pos)
    pairs = tree.query_pairs(0.5, output_type="ndarray")
    if len(pairs):
        i, j = sorted(map(int, pairs[0]))
        raise TumblebenchError(f"{csv}: atoms in rows {i + 1} and {j + 1} are "
                               f"{float(np.linalg.norm(pos[i] - pos[j])):.3f} Å apart (closer than 0.5 Å): a "
                               "duplicated atom?")
    element = _manifest_element(csv.parent / "manifest.json")
    if element is not None and len(pos) > 1:
        from tumblebench.simulator.nanocrystal import reference_nn_distance

        d0 = reference_nn_distance(element)
        nn = float(np.median(tree.query(pos, k=2)[0][:, 1]))
        if not 0.75 * d0 <= nn <= 1.3 * d0:
            raise TumblebenchError(f"{csv}: median nearest-neighbour distance {nn:.3f} Å is absurd for {element} "
                                   f"(expected {0.75 * d0:.2f}–{1.3 * d0:.2f} Å)")
    return pos, df


def _manifest_element(path: Path) -> str | None:
    """The element an ``atoms`` manifest names, or None (no manifest, or none named)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise TumblebenchError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    element = data.get("element") if isinstance(data, dict) else None
    if element is None:
        return None
    from ase.data import atomic_numbers

    if not isinstance(element, str) or element not in atomic_numbers or element == "X":
        raise TumblebenchError(f"{path}: field 'element' = {element!r}; expected a chemical symbol such as 'Pt'")
    return element


def read_penetration(directory: str | Path) -> dict[str, Any]:
    """The ``penetration.json`` of an ``atoms`` output directory.

    Raises
    ------
    TumblebenchError
        Missing file, not JSON, not an object, or a ``delta_A`` that is not a number.
    """
    p = Path(directory) / "penetration.json"
    if not p.exists():
        raise TumblebenchError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise TumblebenchError(f"{p}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise TumblebenchError(f"{p}: expected a JSON object, got {type(data).__name__}")
    for key, fit in data.items():
        if fit is None:
            continue
        if not isinstance(fit, dict):
            raise TumblebenchError(f"{p}: field '{key}' must be an object or null")
        d = fit.get("delta_A")
        if d is not None and (isinstance(d, bool) or not isinstance(d, int | float)):
            raise TumblebenchError(f"{p}: field '{key}.delta_A' = {d!r}; expected a number (Å) or null")
    return data
