"""Benchmark of ``tumblebench reconstruct`` on simulated series of the default particle.

Run from the repository root::

    .venv/bin/python benchmarks/reconstruct.py            # the three targets (≈ 20–30 min on 2 cores)
    .venv/bin/python benchmarks/reconstruct.py --scaling  # + frames 500/1000/2000/4000 and dose ×0.5/×4
    .venv/bin/python benchmarks/reconstruct.py --scaling-only multislice --scaling-poses truth --work DIR

Cases (every series is simulated here with a fixed seed, then reconstructed; scores against the truth):

* ``truth_projection``: ``projection`` mode at very high dose (20,000 e⁻/Å² per frame), water layer off and a
  short exposure (0.2 of the frame time, 8 sub-steps) so that neither liquid noise nor motion blur limits the
  map; reconstructed with ``--poses truth``; the minimum FSC against ``truth_map.mrc`` up to 1.0 Å
  [``truth_projection_min_fsc_to_1A``] is the proof that simulator and reconstruction share one projection
  convention.
* every case also reports ``bound_fsc05_A`` / ``bound_fsc05_from_3A_A``: where sqrt(2F/(1+F)) of the half-map
  FSC F falls below 0.5 — the best FSC against the truth that an unbiased map from these frames could reach
  (Rosenthal & Henderson 2003), i.e. the data's limit for ``truth_fsc05_A``.
* every case also reports ``fsc05_from_3A_A``: the 0.5 crossing scanning only shells finer than 3 Å (the
  aberration-corrected phase-contrast CTF transfers almost nothing linearly at lower resolution).
* ``map.mrc`` is density-modified (:mod:`reconstruct.density`: envelope and positivity fill the shells the CTF
  does not transfer); every FSC key is also given for the map before it, ``map_unmodified.mrc``, with the
  prefix ``unmodified_``. The bound keys come from the half maps, which are never modified: density
  modification adds prior knowledge (a compact, positive object), so the modified map can pass them.
* ``truth_multislice``: the default series (multislice, default dose, 2,000 frames) with ``--poses truth``:
  FSC(truth) = 0.5 [``truth_fsc05_A``] (first crossing) and, because a strong-phase Pt particle under an
  aberration-corrected lens transfers almost no low frequencies linearly, also the FSC averaged over 3–1 Å.
* ``abinitio_projection`` (extra): ab initio + refinement on a ``projection``-mode series at the default dose
  (linear image formation, liquid included), to separate the pose search from the imaging non-linearity.
* ``abinitio``: the same default series from unknown poses (ab initio + refinement): median pose error after
  the best global rotation and hand [``abinitio_median_pose_error_deg``], FSC(truth) = 0.5 after registration
  [``abinitio_fsc05_A``] and the wall time of ``reconstruct_series`` [``abinitio_seconds``] (numba kernels
  compiled beforehand by a small warm-up run).

Writes ``benchmarks/results/reconstruct.json``. A 10-minute reconstruction cannot be repeated several times
within a work session: timings are single runs (recorded with the machine load).
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumblebench.analysis.reference import atom_reference  # noqa: E402
from tumblebench.reconstruct.config import ReconstructConfig  # noqa: E402
from tumblebench.reconstruct.fsc import fsc, fsc_weight, resolution_at  # noqa: E402
from tumblebench.reconstruct.pipeline import reconstruct_series  # noqa: E402
from tumblebench.simulator.builder import build_preset  # noqa: E402
from tumblebench.simulator.mrc import read_volume  # noqa: E402
from tumblebench.simulator.outputs import git_commit, write_json  # noqa: E402
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides  # noqa: E402
from tumblebench.simulator.star import order_by_frame, read_star, star_poses  # noqa: E402
from tumblebench.validation.poses import pose_errors  # noqa: E402
from tumblebench.validation.registration import register_map  # noqa: E402


def finite(obj):
    """JSON-safe copy: non-finite floats (an FSC that never crosses its threshold) become None."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def simulate(out: Path, mode: str, n_frames: int, dose: float | None = None, clean: bool = False,
             seed: int = 0) -> Path:
    """Simulate a series of the default particle (cached by directory name)."""
    if (out / "frames.star").exists():
        return out
    cfg = with_overrides(SeriesConfig(), mode=mode, n_frames=n_frames, dose_per_frame=dose)
    if clean:
        lc = dc.replace(cfg.imaging.liquid_cell, water=False)
        cfg = dc.replace(cfg, imaging=dc.replace(cfg.imaging, liquid_cell=lc),
                         acquisition=dc.replace(cfg.acquisition, exposure_fraction=0.2, substeps=8))
    t = time.perf_counter()
    simulate_series(build_preset("default"), cfg, seed, out, overwrite=True, progress=False)
    print(f"  simulated {out.name}: {time.perf_counter() - t:.0f} s", flush=True)
    return out


def score(run: Path, series: Path, abinitio: bool) -> dict:
    """Pose errors (ab initio) and FSC against the truth map (registered for ab initio)."""
    truth, sampling = read_volume(series / "truth_map.mrc")
    vol, _ = read_volume(run / "map.mrc")
    out: dict = {}
    if abinitio:
        _, est = read_star(run / "poses.star")
        _, tru = read_star(series / "frames.star")
        tru = order_by_frame(tru, str(series / "frames.star"))
        frames = est["tbFrame"].to_numpy(int)
        pe = pose_errors(star_poses(est), star_poses(tru)[frames])
        out.update(median_pose_error_deg=pe.median_deg, p90_pose_error_deg=pe.p90_deg, mirrored=pe.mirrored)
    maps = {"": vol}
    if (run / "map_unmodified.mrc").exists():  # the map before density modification, scored alongside
        maps["unmodified_"] = read_volume(run / "map_unmodified.mrc")[0]
    for prefix, v in maps.items():
        if abinitio:
            v = register_map(v, truth, pe.rotation, pe.mirrored).map
        freq, curve = fsc(v, truth, sampling)
        band = (freq >= 1 / 3.0) & (freq <= 1 / 1.0)
        out.update({f"{prefix}fsc05_A": resolution_at(freq, curve, 0.5),
                    f"{prefix}fsc0143_A": resolution_at(freq, curve, 0.143),
                    f"{prefix}fsc05_from_3A_A": resolution_at(freq, curve, 0.5, min_freq=1 / 3.0),
                    f"{prefix}min_fsc_to_1A": float(curve[(freq > 0) & (freq <= 1.0)].min()),
                    f"{prefix}mean_fsc_3_to_1A": float(curve[band].mean())})
    # the best FSC against the truth that any unbiased map from these frames could reach, shell by shell:
    # sqrt(2F/(1+F)) of the half-map FSC F (Rosenthal & Henderson 2003), and where it falls below 0.5
    half = pd.read_csv(run / "fsc.csv")
    hf, bound = half["frequency_per_A"].to_numpy(), fsc_weight(half["fsc_half"].to_numpy())
    out.update(bound_fsc05_A=resolution_at(hf, bound, 0.5),
               bound_fsc05_from_3A_A=resolution_at(hf, bound, 0.5, min_freq=1 / 3.0))
    summary = json.loads((run / "summary.json").read_text())
    out.update(fsc_half_0143_A=summary["fsc_half_0.143_A"], usable_frames=summary["usable_frames"],
               lost_frames=summary["lost_frames"], timing_s=summary["timing_s"])
    return out


def run_case(series: Path, work: Path, name: str, poses: str, model_iterations: int | None = None) -> dict:
    cfg = dc.replace(ReconstructConfig(), poses=poses)
    if model_iterations is not None:
        cfg = dc.replace(cfg, refine=dc.replace(cfg.refine, model_iterations=model_iterations))
    t = time.perf_counter()
    reconstruct_series(series / "frames.mrcs", series / "frames.star", work / name, cfg, overwrite=True,
                       progress=False, reference_model=atom_reference)
    wall = time.perf_counter() - t
    res = score(work / name, series, poses != "truth")
    res["seconds"] = wall
    print(f"  {name}: {json.dumps({k: v for k, v in res.items() if k != 'timing_s'}, default=float)}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scaling", action="store_true", help="also frames 500–4000 and dose ×0.5/×4 (ab initio)")
    ap.add_argument("--frames-list", default="500,1000,2000,4000", help="frame counts of the scaling study")
    ap.add_argument("--dose-list", default="0.5,4", help="dose factors (× default) of the scaling study")
    ap.add_argument("--no-projection-abinitio", action="store_true",
                    help="skip the extra ab initio case on a projection-mode series at the default dose")
    ap.add_argument("--only", choices=("truth_projection", "truth_multislice", "abinitio", "abinitio_projection",
                                       "refine_multislice"),
                    help="re-run one case and merge it into the existing results JSON")
    ap.add_argument("--scaling-only", choices=("projection", "multislice"),
                    help="run only the scaling study on series of this mode and merge it into the JSON")
    ap.add_argument("--scaling-poses", choices=("abinitio", "truth"), default="abinitio",
                    help="poses of the --scaling-only study: ab initio, or the true poses (the map's data limit)")
    ap.add_argument("--work", type=Path, help="working directory for series and runs (default: a temp dir)")
    ap.add_argument("--series-seed", type=int, default=0,
                    help="with --only: simulate the series with this seed (0 = the default series of the targets; "
                         "other seeds are recorded as cases '<case>_seed<N>' and leave the target keys alone)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tb_bench_rec_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", flush=True)
    t_all = time.perf_counter()
    # warm-up: compile the numba kernels on a tiny series so that no timing below includes compilation
    warm = simulate(work / "warm", "projection", 60)
    reconstruct_series(warm / "frames.mrcs", warm / "frames.star", work / "warm_run",
                       dc.replace(ReconstructConfig(), min_frames=20,
                                  abinitio=dc.replace(ReconstructConfig().abinitio, n_starts=1,
                                                      resolutions_A=(6.0,), grid_size=500),
                                  refine=dc.replace(ReconstructConfig().refine, n_iter=1)),
                       overwrite=True, progress=False, reference_model=atom_reference)
    results: dict = {"cases": {}}
    load0 = os.getloadavg()
    commit = git_commit()
    out = ROOT / "benchmarks" / "results" / "reconstruct.json"
    if args.scaling_only:
        old = json.loads(out.read_text())
        mode, poses = args.scaling_only, args.scaling_poses
        scaling = {}
        for n in [int(x) for x in args.frames_list.split(",") if x]:
            ser = simulate(work / f"{mode}_{n}", mode, n)
            scaling[f"frames_{n}"] = run_case(ser, work, f"r_{mode}_{n}_{poses}", poses)
        base = SeriesConfig().acquisition.dose_per_frame
        for f in [float(x) for x in args.dose_list.split(",") if x]:
            ser = simulate(work / f"{mode}_dose{f}", mode, 2000, dose=base * f)
            scaling[f"dose_x{f}"] = run_case(ser, work, f"r_{mode}_dose{f}_{poses}", poses)
        key = mode if poses == "abinitio" else f"{mode}_truth_poses"
        # merged case by case: a study can be run in parts (e.g. frame counts now, doses later)
        entry = old.setdefault("scaling", {}).setdefault(key, {"cases": {}})
        entry["cases"].update({k: {**v, "git_commit": commit} for k, v in scaling.items()})
        entry.update(git_commit=commit, loadavg_start=load0, loadavg_end=os.getloadavg())
        write_json(out, finite(old))
        print("| case | frames used | seconds | median pose err (deg) | FSC(truth)=0.5 (Å) | from 3 Å (Å) | "
              "bound from 3 Å (Å) | half-map 0.143 (Å) |")
        print("|---|---|---|---|---|---|---|---|")
        for k, r in scaling.items():
            pe = f"{r['median_pose_error_deg']:.2f}" if "median_pose_error_deg" in r else "(true poses)"
            print(f"| {k} | {r['usable_frames']} | {r['seconds']:.0f} | {pe} | "
                  f"{r['fsc05_A']:.2f} | {r['fsc05_from_3A_A']:.2f} | {r['bound_fsc05_from_3A_A']:.2f} | "
                  f"{r['fsc_half_0143_A']:.2f} |")
        return 0
    if args.only == "refine_multislice":
        # the refinement stage alone: true poses + 6° on the default multislice series, against the half maps
        # and with two model-referenced iterations (analysis.reference.atom_reference)
        old = json.loads(out.read_text())
        ser = simulate(work / "multislice_default", "multislice", 2000)
        for key, mi in (("refine_multislice", 0), ("refine_multislice_model", 2)):
            case = run_case(ser, work, f"r_{key}", "truth+noise:6", model_iterations=mi)
            case.update(git_commit=commit, loadavg_start=load0, loadavg_end=os.getloadavg(), model_iterations=mi)
            old["cases"][key] = case
        write_json(out, finite(old))
        print(f"updated refine_multislice(_model) in {out}")
        return 0
    if args.only:
        old = json.loads(out.read_text())
        spec = {"truth_projection": ("proj_clean_hi", "projection", 20000.0, True, "truth"),
                "truth_multislice": ("multislice_default", "multislice", None, False, "truth"),
                "abinitio": ("multislice_default", "multislice", None, False, "abinitio"),
                "abinitio_projection": ("projection_default", "projection", None, False, "abinitio")}[args.only]
        sfx = f"_seed{args.series_seed}" if args.series_seed else ""
        ser = simulate(work / f"{spec[0]}{sfx}", spec[1], 2000, dose=spec[2], clean=spec[3], seed=args.series_seed)
        case = run_case(ser, work, f"r_{args.only}{sfx}", spec[4])
        case.update(git_commit=commit, loadavg_start=load0, loadavg_end=os.getloadavg(), series_seed=args.series_seed)
        old["cases"][f"{args.only}{sfx}"] = case
        # the target keys are those of the default series (seed 0)
        key = {"truth_projection": ("truth_projection_min_fsc_to_1A", "min_fsc_to_1A"),
               "truth_multislice": ("truth_fsc05_A", "fsc05_A")}.get(args.only)
        if key and not sfx:
            old[key[0]] = case[key[1]]
        if args.only == "abinitio" and not sfx:
            old.update(abinitio_median_pose_error_deg=case["median_pose_error_deg"], abinitio_fsc05_A=case["fsc05_A"],
                       abinitio_fsc05_from_3A_A=case["fsc05_from_3A_A"], abinitio_seconds=case["seconds"])
        write_json(out, finite(old))
        print(f"updated {args.only}{sfx} in {out}")
        return 0
    proj = simulate(work / "proj_clean_hi", "projection", 2000, dose=20000.0, clean=True)
    results["cases"]["truth_projection"] = run_case(proj, work, "r_truth_projection", "truth")
    ms = simulate(work / "multislice_default", "multislice", 2000)
    results["cases"]["truth_multislice"] = run_case(ms, work, "r_truth_multislice", "truth")
    results["cases"]["abinitio"] = run_case(ms, work, "r_abinitio", "abinitio")
    if not args.no_projection_abinitio:
        pr = simulate(work / "projection_default", "projection", 2000)
        results["cases"]["abinitio_projection"] = run_case(pr, work, "r_abinitio_projection", "abinitio")
    if args.scaling:
        scaling = {}
        for n in [int(x) for x in args.frames_list.split(",") if x]:
            s = simulate(work / f"multislice_{n}", "multislice", n) if n != 2000 else ms
            scaling[f"frames_{n}"] = results["cases"]["abinitio"] if n == 2000 else run_case(
                s, work, f"r_abinitio_{n}", "abinitio")
        base = SeriesConfig().acquisition.dose_per_frame
        for f in [float(x) for x in args.dose_list.split(",") if x]:
            s = simulate(work / f"multislice_dose{f}", "multislice", 2000, dose=base * f)
            scaling[f"dose_x{f}"] = run_case(s, work, f"r_abinitio_dose{f}", "abinitio")
        results["scaling"] = scaling
    c = results["cases"]
    results.update({
        "truth_projection_min_fsc_to_1A": c["truth_projection"]["min_fsc_to_1A"],
        "truth_fsc05_A": c["truth_multislice"]["fsc05_A"],
        "abinitio_median_pose_error_deg": c["abinitio"]["median_pose_error_deg"],
        "abinitio_fsc05_A": c["abinitio"]["fsc05_A"],
        "abinitio_fsc05_from_3A_A": c["abinitio"]["fsc05_from_3A_A"],
        "abinitio_seconds": c["abinitio"]["seconds"],
        "targets": {"truth_projection_min_fsc_to_1A": ">= 0.9", "truth_fsc05_A": "<= 1.0",
                    "abinitio_median_pose_error_deg": "<= 3", "abinitio_fsc05_A": "<= 1.3",
                    "abinitio_seconds": "<= 600"},
        "cpu_count": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
        "git_commit": commit, "work_dir": str(work), "total_seconds": time.perf_counter() - t_all,
        "note": "timings are single runs (each reconstruction takes minutes); the machine was shared",
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, finite(results))
    print("\n| key | measured | target |\n|---|---|---|")
    for k, tgt in results["targets"].items():
        v = results[k]
        print(f"| {k} | {v:.3f} | {tgt} |" if isinstance(v, float) else f"| {k} | {v} | {tgt} |")
    print("(inf / null: the FSC never rises to the threshold from the lowest shell on)")
    if "scaling" in results:
        print("\n| case | frames used | seconds | median pose err (deg) | FSC(truth)=0.5 (Å) | half-map 0.143 (Å) |")
        print("|---|---|---|---|---|---|")
        for k, r in results["scaling"].items():
            print(f"| {k} | {r['usable_frames']} | {r['seconds']:.0f} | {r['median_pose_error_deg']:.2f} | "
                  f"{r['fsc05_A']:.2f} | {r['fsc_half_0143_A']:.2f} |")
    print(f"\nwrote {out} (load average {results['loadavg_start']} → {results['loadavg_end']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
