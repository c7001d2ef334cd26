"""The dataset's manifest: one Parquet row per item, merged by the client from the per-item records.

Columns: ``index``, ``status`` (``done`` / ``failed``), ``error``, ``path`` (the item's run directory,
relative to the dataset), ``zarr_group``, ``wall_time_s`` (the item's own work), ``n_atoms``, ``n_frames``,
``zarr_bytes``, ``zarr_write_s``, ``zarr_write_cpu_s``, ``seed_build``, ``seed_series``, ``seed_reconstruct``,
one column per parameter (``particle.shape.kind``, ``series.acquisition.n_frames``, ...; list values as JSON
text) and, for items that were scored, the scorecard's headline figures (``poses.median_error_deg``,
``map.fsc_truth_0.5_A``, ``atoms.recall``, ...).
"""

from __future__ import annotations

import json
import os
import secrets
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import pandas as pd

from tumblebench.dataset.items import HEADLINE

MANIFEST = "manifest.parquet"
_FIXED = ["index", "status", "error", "path", "zarr_group", "wall_time_s", "n_atoms", "n_frames", "zarr_bytes",
          "zarr_write_s", "zarr_write_cpu_s", "seed_build", "seed_series", "seed_reconstruct"]


def read_records(out: str | Path) -> dict[int, dict[str, Any]]:
    """Every finished item's record on disk (``items/*/record.json`` and ``items/*.failed.json``) by index."""
    items = Path(out) / "items"
    records: dict[int, dict[str, Any]] = {}
    if not items.is_dir():
        return records
    for path in [*items.glob("item_*/record.json"), *items.glob("item_*.failed.json")]:
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        records[int(rec["index"])] = rec
    return records


def _column(values: list[Any]) -> pd.Series:
    """One column with a type Parquet can hold: bool, Int64, float, or text (lists as JSON)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, Integral) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    if present and all(isinstance(v, Real) and not isinstance(v, bool) for v in present):
        return pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
    return pd.Series([None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values],
                     dtype="string")


def manifest_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The manifest table of ``records`` (sorted by index)."""
    records = sorted(records, key=lambda r: int(r["index"]))
    params = sorted({k for r in records for k in (r.get("params") or {})})
    cols: dict[str, list[Any]] = {}
    for key in _FIXED:
        if key.startswith("seed_"):
            cols[key] = [(r.get("seeds") or {}).get(key[5:]) for r in records]
        else:
            cols[key] = [r.get(key) for r in records]
    for key in params:
        cols[key] = [(r.get("params") or {}).get(key) for r in records]
    for key in HEADLINE:
        if any(key in r for r in records):
            cols[key] = [r.get(key) for r in records]
    return pd.DataFrame({k: _column(v) for k, v in cols.items()})


def write_manifest(out: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write ``out/manifest.parquet`` from ``records`` atomically (a reader never sees half a file)."""
    path = Path(out) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        manifest_frame(records).to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
