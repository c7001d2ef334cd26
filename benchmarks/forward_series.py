"""Benchmark: the default demo series (forward model) — wall time, its split, and how it scales.

Runs from the repository root::

    .venv/bin/python benchmarks/forward_series.py [--repeats 3] [--frames 2000] [--quick]

Measures
--------
* ``demo_series_seconds``: median wall time of :func:`tumblebench.simulator.series.simulate_series` for the default
  particle (``build_preset("default")``) and the default :class:`~tumblebench.simulator.series.SeriesConfig`
  (docs/design.md scenario: 2,000 frames, 0.358 Å pixels, 400 frames/s, the default imaging mode), writing every output.
  Target ≤ 120 s on 2 cores. Numba compilation is excluded (a 2-frame warm-up run first).
* the split of that time between the potential (building atom potentials: the imaging module's potential
  functions and numba kernels), FFTs (``scipy.fft``/``numpy.fft``) and the rest, measured with cProfile
  (exclusive times) on a shorter run of the same configuration and scaled to the full run;
* the time per frame versus the number of atoms (field fixed) and versus the field size (atoms fixed);
* a PNG montage of raw frames above their noise-free counterparts
  (``benchmarks/results/forward_series_montage.png``).

Writes ``benchmarks/results/forward_series.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tumblebench.simulator.builder import build_preset  # noqa: E402
from tumblebench.simulator.outputs import git_commit  # noqa: E402
from tumblebench.simulator.series import SeriesConfig, SeriesSimulation, simulate_series  # noqa: E402
from tumblebench.simulator.truth_map import render_truth_map  # noqa: E402

TARGET_SECONDS = 120.0
TRUTH_FILES = ("simulator/truth_map.py", "simulator/density.py", "simulator/_density_kernels.py")
POTENTIAL_FILES = ("simulator/potential.py", "simulator/_potential_kernels.py", "simulator/scattering.py",
                   "simulator/liquid_cell.py")


def _config(n_frames: int, field: int | None = None) -> SeriesConfig:
    cfg = SeriesConfig()
    acq = dataclasses.replace(cfg.acquisition, n_frames=n_frames)
    if field is not None:
        acq = dataclasses.replace(acq, field_px=field, box_size_px=min(acq.box_size_px, field))
    return dataclasses.replace(cfg, acquisition=acq)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the frame-rendering workers), s."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _run(nc, cfg: SeriesConfig, work: Path, name: str) -> tuple[float, float]:
    """Wall time and CPU time (all processes) of one simulate_series run, s."""
    out = work / name
    c0 = _cpu_seconds()
    t0 = time.perf_counter()
    simulate_series(nc, cfg, 0, out, overwrite=True, progress=False)
    return time.perf_counter() - t0, _cpu_seconds() - c0


def _profile_split(nc, cfg: SeriesConfig, work: Path) -> dict[str, float]:
    """Exclusive cProfile times of an in-process (1 worker) run, by category."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    simulate_series(nc, cfg, 0, work / "profiled", overwrite=True, progress=False, workers=1)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    potential = fft = truth = 0.0
    rest: dict[str, float] = {}
    for (filename, line, func), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        f = filename.replace("\\", "/")
        if any(f.endswith(p) for p in POTENTIAL_FILES):
            potential += tottime
        elif "/scipy/fft/" in f or "/numpy/fft/" in f or "pocketfft" in func:
            fft += tottime
        elif any(f.endswith(p) for p in TRUTH_FILES):
            truth += tottime
        else:
            where = f.split("/work/main/")[-1].split("site-packages/")[-1]
            rest[f"{where}:{line}({func})"] = tottime
    top = dict(sorted(rest.items(), key=lambda kv: -kv[1])[:8])
    return {"profiled_wall_s": wall, "potential_s": potential, "fft_s": fft, "truth_map_s": truth,
            "rest_s": max(wall - potential - fft - truth, 0.0), "rest_top": top}


def _seconds_per_frame(nc, cfg: SeriesConfig, n: int) -> tuple[float, float]:
    """Median wall and CPU time to render one frame in-process (the first frame, which fills caches, excluded)."""
    sim = SeriesSimulation(nc, cfg, 0)
    sim.render(0)
    walls, cpus = [], []
    for f in range(1, n + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        sim.render(f)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of the full series (median reported)")
    ap.add_argument("--frames", type=int, default=None, help="frames of the demo series (default: config)")
    ap.add_argument("--scaling-frames", type=int, default=60, help="frames per point of the scaling study")
    ap.add_argument("--quick", action="store_true", help="one repeat, shorter profile and scaling runs")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    nc = build_preset("default")
    n_frames = args.frames or SeriesConfig().acquisition.n_frames
    cfg = _config(n_frames)
    work = Path(tempfile.mkdtemp(prefix="tb-bench-series-"))
    load_before = os.getloadavg()
    try:
        _run(nc, _config(2), work, "warmup")  # numba compile + caches
        times, cpus = [], []
        for r in range(repeats):
            wall, cpu = _run(nc, cfg, work, "demo")
            times.append(wall)
            cpus.append(cpu)
            print(f"  run {r + 1}/{repeats}: {wall:.1f} s wall, {cpu:.1f} s CPU (all processes), "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
        demo = statistics.median(times)
        demo_cpu = statistics.median(cpus)
        shutil.copy(work / "demo" / "montage.png", results_dir / "forward_series_montage.png")
        manifest = json.loads((work / "demo" / "manifest.json").read_text())

        n_prof = max(20, n_frames // (20 if args.quick else 10))
        split = _profile_split(nc, _config(n_prof), work)
        # the truth map is a fixed cost; the per-frame categories scale with the frames
        per_frame_wall = split["profiled_wall_s"] - split["truth_map_s"]
        frac = {k: split[k] / per_frame_wall for k in ("potential_s", "fft_s", "rest_s")}
        split_full = {k.replace("_s", "_seconds"): (demo - split["truth_map_s"]) * v for k, v in frac.items()}
        split_full["truth_map_seconds"] = split["truth_map_s"]

        nsc = max(10, args.scaling_frames // (2 if args.quick else 1))
        by_atoms = []
        for preset in ("table1-np1", "default", "table1-np5", "table1-np8"):
            try:
                p = build_preset(preset)
            except Exception as exc:  # a preset the builder does not provide
                print(f"  skip preset {preset}: {exc}")
                continue
            wall, cpu = _seconds_per_frame(p, _config(nsc + 1), nsc)
            by_atoms.append({"preset": preset, "n_atoms": p.n_atoms, "seconds_per_frame": wall,
                             "cpu_seconds_per_frame": cpu})
        by_field = []
        for field in (160, 192, 256, 384):
            wall, cpu = _seconds_per_frame(nc, _config(nsc + 1, field), nsc)
            by_field.append({"field_px": field, "seconds_per_frame": wall, "cpu_seconds_per_frame": cpu})
        by_box = []
        for box in (96, 128, 192):
            render_truth_map(nc, box, 0.358, 0.7306)
            t0 = time.perf_counter()
            render_truth_map(nc, box, 0.358, 0.7306)
            by_box.append({"box_px": box, "truth_map_seconds": time.perf_counter() - t0})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = {
        "benchmark": "forward_series",
        "demo_series_seconds": demo,
        "demo_series_runs_seconds": times,
        "demo_series_cpu_seconds": demo_cpu,
        "demo_series_cpu_runs_seconds": cpus,
        "demo_series_idle_estimate_seconds": demo_cpu / (os.cpu_count() or 1),
        "idle_estimate_note": "CPU seconds of all processes / cores: the wall time on otherwise idle cores if the "
                              "frame workers scale perfectly; the measured wall time is inflated by other load",
        "target_seconds": TARGET_SECONDS,
        "target_met": demo <= TARGET_SECONDS,
        "n_frames": n_frames,
        "n_atoms": nc.n_atoms,
        "mode": cfg.imaging.mode,
        "oversampling": cfg.imaging.oversampling,
        "antialias_transmission": cfg.imaging.antialias_transmission,
        "field_px": cfg.acquisition.field_px,
        "substeps": cfg.acquisition.substeps,
        "pixel_size_A": cfg.acquisition.sampling,
        "seconds_per_frame": demo / n_frames,
        "split_seconds": split_full,
        "split_fraction_of_frame_time": {k.replace("_s", ""): v for k, v in frac.items()},
        "split_profiled_frames": n_prof,
        "split_rest_top_functions_profiled_seconds": split["rest_top"],
        "split_method": "cProfile exclusive times of an in-process (1 worker) run of split_profiled_frames "
                        "frames: truth_map as measured (a fixed cost), the per-frame categories' fractions "
                        "applied to the rest of demo_series_seconds",
        "scaling_frames_per_point": nsc,
        "scaling_atoms": by_atoms,
        "scaling_field": by_field,
        "scaling_truth_map_box": by_box,
        "band_limit_A": manifest.get("band_limit_A"),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "commit": git_commit(),
        "montage": "benchmarks/results/forward_series_montage.png",
    }
    (results_dir / "forward_series.json").write_text(json.dumps(out, indent=2) + "\n")

    print(f"forward_series: default demo series, {nc.n_atoms} atoms, {n_frames} frames, {cfg.imaging.mode} "
          f"(oversampling {cfg.imaging.oversampling}), "
          f"field {cfg.acquisition.field_px} px, {cfg.acquisition.substeps} sub-steps, {os.cpu_count()} cores, "
          f"load {load_before[0]:.1f}")
    print(f"  demo_series_seconds   {demo:8.1f} s   (target <= {TARGET_SECONDS:.0f} s: "
          f"{'MET' if demo <= TARGET_SECONDS else 'NOT MET'}; load {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after)")
    print(f"  CPU time (all procs)  {demo_cpu:8.1f} s   -> {demo_cpu / (os.cpu_count() or 1):.1f} s on "
          f"{os.cpu_count()} idle cores")
    for k, v in split_full.items():
        print(f"    {k:<20s} {v:8.1f} s  ({100 * v / demo:4.1f} %)")
    print("  time per frame vs atoms (field fixed, one process): wall / CPU")
    for row in by_atoms:
        print(f"    {row['n_atoms']:5d} atoms ({row['preset']:<11s}) {1e3 * row['seconds_per_frame']:7.1f} ms"
              f" / {1e3 * row['cpu_seconds_per_frame']:6.1f} ms")
    print("  time per frame vs field (default particle, one process): wall / CPU")
    for row in by_field:
        print(f"    {row['field_px']:5d} px {1e3 * row['seconds_per_frame']:16.1f} ms"
              f" / {1e3 * row['cpu_seconds_per_frame']:6.1f} ms")
    print("  truth map vs box:")
    for row in by_box:
        print(f"    {row['box_px']:5d} px {row['truth_map_seconds']:16.2f} s")
    print(f"  wrote benchmarks/results/forward_series.json and {out['montage']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
