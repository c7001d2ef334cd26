"""``study table1``: the eight Table 1 particles of Wietfeldt et al., Commun. Chem. (2024), truth vs recovered.

Each particle runs through the whole pipeline (suite ``table1``); the table puts every Table 1 column of the
truth (``particle/structure.json``) next to the one measured on the recovered atom model
(``atoms/atoms_summary.json``), with recall, precision and RMSD of the model against the true atoms.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from tumblebench.simulator.outputs import write_json

#: Table 1 columns: (name, key in structure.json, key in the atom model's table1, format). The radial strain is
#: against the bulk lattice on both sides (the truth's definition; the atom model's own table gives it against its
#: fitted lattice, which a uniformly strained particle would show as zero), computed by :func:`table1_row`.
TABLE1_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("atoms", "n_atoms", "n_atoms", "d"),
    ("diameter_A", "diameter_A", "diameter_A", ".1f"),
    ("median_cn", "median_cn", "median_cn", ".1f"),
    ("core_ratio", "core_ratio", "core_ratio", ".3f"),
    ("median_nn_bond_A", "median_nn_bond_A", "median_nn_bond_A", ".3f"),
    ("median_radial_strain_pct", "median_radial_strain_percent", "", ".2f"),
    ("lattice_constant_A", "lattice_constant_A", "lattice_constant_A", ".4f"),
)

#: Targets of the study: relative atom-count error and absolute median-CN error.
ATOM_COUNT_TOL = 0.03
MEDIAN_CN_TOL = 0.3


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def bulk_radial_strain(positions: np.ndarray, bulk_A: float | None, fitted_A: float | None) -> float | None:
    """Median radial strain (%) of atoms at ``positions`` (Å) against the bulk lattice constant ``bulk_A`` (Å), as
    the truth's is (``fitted_A``: a guess of their own lattice constant); None with fewer than 13 atoms or no bulk
    constant."""
    from tumblebench.analysis.statistics import structure_metrics

    if bulk_A is None or len(positions) < 13:
        return None
    sm = structure_metrics(np.asarray(positions, float), float(fitted_A or bulk_A), strain_reference=float(bulk_A))
    return float(np.median(sm.radial_strain) * 100.0)


def _model_radial_strain(model: Path, bulk_A: float | None, fitted_A: float | None) -> float | None:
    """:func:`bulk_radial_strain` of the atom model file ``model`` (None when it does not exist)."""
    from ase.io import read

    return bulk_radial_strain(read(model).positions, bulk_A, fitted_A) if model.exists() else None


def table1_row(run_dir: str | Path) -> dict[str, Any]:
    """Truth and recovered Table 1 figures of one run, with recall, precision, RMSD and the two target checks."""
    run_dir = Path(run_dir)
    truth = _read(run_dir / "particle" / "structure.json")
    found = (_read(run_dir / "atoms" / "atoms_summary.json").get("table1")) or {}
    atoms = (_read(run_dir / "scorecard.json").get("atoms")) or {}
    row: dict[str, Any] = {}
    for name, tkey, fkey, _ in TABLE1_COLUMNS:
        row[f"{name}_true"] = truth.get(tkey)
        row[f"{name}_found"] = found.get(fkey) if fkey else None
    row["median_radial_strain_pct_found"] = _model_radial_strain(run_dir / "atoms" / "atoms.extxyz",
                                                                truth.get("reference_lattice_constant_A"),
                                                                found.get("lattice_constant_A"))
    for k in ("recall", "precision", "rmsd_pm"):
        row[k] = atoms.get(k)
    nt, nf = row["atoms_true"], row["atoms_found"]
    row["atom_count_error"] = None if not nt or nf is None else (nf - nt) / nt
    ct, cf = row["median_cn_true"], row["median_cn_found"]
    row["median_cn_error"] = None if ct is None or cf is None else cf - ct
    row["meets_target"] = (row["atom_count_error"] is not None and row["median_cn_error"] is not None
                           and abs(row["atom_count_error"]) <= ATOM_COUNT_TOL
                           and abs(row["median_cn_error"]) <= MEDIAN_CN_TOL)
    return row


def _f(x: Any, fmt: str) -> str:
    if x is None:
        return "—"
    return format(int(x) if fmt == "d" else float(x), fmt)


def write_table1(out: str | Path, cases: list[str]) -> list[dict[str, Any]]:
    """Write ``table1.csv``, ``table1.json`` and ``table1.md`` for the runs ``out/cases/CASE``; return the rows."""
    out = Path(out)
    rows = [{"particle": c, **table1_row(out / "cases" / c)} for c in cases]
    cols = list(rows[0]) if rows else ["particle"]
    write_json(out / "table1.json", {"atom_count_tol": ATOM_COUNT_TOL, "median_cn_tol": MEDIAN_CN_TOL,
                                     "rows": rows})
    with (out / "table1.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    head = ["particle", *(n for n, *_ in TABLE1_COLUMNS), "recall", "precision", "RMSD (pm)", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["particle"]]
        cells += [f"{_f(r[f'{n}_true'], fmt)} / {_f(r[f'{n}_found'], fmt)}" for n, _, _, fmt in TABLE1_COLUMNS]
        cells += [_f(r["recall"], ".3f"), _f(r["precision"], ".3f"), _f(r["rmsd_pm"], ".1f"),
                  "met" if r["meets_target"] else "NOT met"]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"Truth / recovered. Target: recovered atom count within {ATOM_COUNT_TOL:.0%} and median CN within "
            f"{MEDIAN_CN_TOL} of the truth.\n\n")
    (out / "table1.md").write_text(note + "\n".join(lines) + "\n")
    return rows
