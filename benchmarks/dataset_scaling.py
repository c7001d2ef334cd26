"""``tumblebench dataset`` throughput on this machine: items per hour with 1 and 2 Dask workers.

The item of issue 15: a 147-atom Pt cuboctahedron, 200 frames, build + simulate (default multislice series,
192-px field), Zarr on. For each number of workers a local cluster is started, one warm-up item per worker
is made (each worker process loads the numba kernels once: that is the time to the first item), then
``--items`` items are made through :func:`tumblebench.dataset.run.generate` and timed.

Figures (written to ``benchmarks/results/dataset_scaling.json`` and printed):

* ``items_per_hour`` for 1 and 2 workers, and ``scaling`` = their ratio (target >= 1.7);
* ``overhead_fraction`` = (workers · wall − Σ item time) / Σ item time: the time the workers were not doing
  an item's own work (scheduling, serialisation, the manifest, and waiting at the end) (target <= 0.05);
* ``time_to_first_item_s``: from starting the cluster to the first finished item;
* ``zarr_write_MB_per_s``: uncompressed bytes written to Zarr / wall time spent writing them (and per CPU
  second of the worker process: ``zarr_write_MB_per_cpu_s``, the figure a loaded machine does not distort).

The machine is shared; the load average before and after each run is recorded with the figures. Run with
``nice -n 10 .venv/bin/python benchmarks/dataset_scaling.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tumblebench.dataset.run import connect, generate
from tumblebench.dataset.spec import parse_spec

SPEC = {
    "dataset": {"steps": ["build", "simulate"], "zarr": True},
    "particle": {"shape": {"kind": "cuboctahedron", "n_atoms": 147}},
    "series": {"acquisition": {"n_frames": 200}},
}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        return None


def run_workers(workers: int, n_items: int, work: Path) -> dict:
    """Time a warm-up and ``n_items`` items on a fresh local cluster of ``workers`` workers."""
    spec = parse_spec(SPEC, "dataset_scaling")
    load_before = _load()
    t0 = time.perf_counter()
    client, cluster = connect(None, workers)
    start_s = time.perf_counter() - t0
    try:
        warm = generate(spec.with_seed(1000 + workers), workers, work / f"warm{workers}", client=client,
                        progress=False, log=lambda m: None)
        # generate's first_item_s counts from its own start: add the cluster's start before it
        first = start_s + warm.first_item_s if warm.first_item_s is not None else None
        summary = generate(spec, n_items, work / f"run{workers}", client=client, progress=True,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        client.close()
        cluster.close()
    load_after = _load()
    recs = [r for r in summary.records if r.get("status") == "done"]
    item_s = [float(r["wall_time_s"]) for r in recs]
    zbytes = sum(int(r.get("zarr_bytes") or 0) for r in recs)
    zs = sum(float(r.get("zarr_write_s") or 0.0) for r in recs)
    zcpu = sum(float(r.get("zarr_write_cpu_s") or 0.0) for r in recs)
    busy = sum(item_s)
    return {
        "workers": workers,
        "items": len(recs),
        "failed": summary.failed,
        "wall_s": round(summary.wall_s, 2),
        "items_per_hour": round(len(recs) / summary.wall_s * 3600, 1),
        "item_time_s_median": round(sorted(item_s)[len(item_s) // 2], 2) if item_s else None,
        "item_time_s_sum": round(busy, 2),
        "overhead_fraction": round((workers * summary.wall_s - busy) / busy, 4) if busy else None,
        "time_to_first_item_s": round(first, 2) if first is not None else None,
        "cluster_start_s": round(start_s, 2),
        "warmup_item_time_s": [round(float(r["wall_time_s"]), 2) for r in warm.records],
        "zarr_MB": round(zbytes / 1e6, 2),
        "zarr_write_MB_per_s": round(zbytes / 1e6 / zs, 1) if zs > 0 else None,
        "zarr_write_MB_per_cpu_s": round(zbytes / 1e6 / zcpu, 1) if zcpu > 0 else None,
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=6, help="timed items per number of workers (default 6)")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dataset_scaling.json")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tb_dataset_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        runs = {}
        for w in (1, 2):
            runs[w] = run_workers(w, args.items, work)
            print(json.dumps(runs[w]), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    one, two = runs[1], runs[2]
    result = {
        "benchmark": "dataset_scaling",
        "item": "147-atom Pt cuboctahedron, 200 frames, build + simulate (default multislice, 192-px field), Zarr",
        "items_per_hour_1_worker": one["items_per_hour"],
        "items_per_hour_2_workers": two["items_per_hour"],
        "scaling": round(two["items_per_hour"] / one["items_per_hour"], 3),
        "scaling_target": 1.7,
        "overhead_fraction": max(one["overhead_fraction"], two["overhead_fraction"]),
        "overhead_fraction_target": 0.05,
        "time_to_first_item_s": one["time_to_first_item_s"],
        "zarr_write_MB_per_s": one["zarr_write_MB_per_s"],
        "zarr_write_MB_per_cpu_s": one["zarr_write_MB_per_cpu_s"],
        "runs": [one, two],
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1_5_15_min": _load(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
