"""Ab initio robustness: the built-in pipeline on 8 seeds × 5 particles, each case against the targets.

The cases are the built-in suite ``robustness`` (``validation/suites/robustness.toml``): the default scenario
(2,000 multislice frames, default dose, unknown poses, default settings) for the seeds 0–7 of the default
twinned truncated octahedron, the cuboctahedron, the decahedron, the icosahedron and the real SINGLE-traced
particle. The cases run one at a time and the results file keeps the rows of cases run earlier
(``suite_cases.py``), so the matrix can be filled over several sessions and machines (``--seeds``,
``--particles`` pick a part of it).

Targets per case (symmetry-reduced pose errors):

* median pose error ≤ 3°, ≥ 95 % of frames within 10°;
* FSC(truth) = 0.5, first crossing, ≤ 1.3 Å (density-modified map);
* atoms recall ≥ 0.97, precision ≥ 0.97, RMSD ≤ 19 pm;
* reconstruction ≤ 600 s, the whole case (build to score) ≤ 10 min, on 2 cores.

The issue sets the 10 minutes for ``make demo`` (the default case); applying them to every case is this
benchmark's own reading, so the summary counts the cases meeting every target and, apart, those meeting every
target but the whole-case time.

Prints the matrix as a Markdown table (one row per case, the seeds stated, with the median defocus of the seed's
series) and a table of each seed's imaging conditions (defocus and liquid thickness over its frames, from the
simulator's trajectory of that seed: every particle of a seed has the same one), and writes every case's figures,
the pass/fail of each target, the seeds' conditions and, for each case run since 2026-12-07, ``probe_s``: the time
of a fixed workload (``machine_speed.py``) just before the case, for comparing runs made at different hours, and
``frames_sha256``: the digest of the case's series (for telling, between machines, different frames from
different arithmetic), to ``benchmarks/results/abinitio_robustness.json``. Run from the repository root::

    .venv/bin/python benchmarks/abinitio_robustness.py --work DIR [--seeds 0-7] [--particles default,deca]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from suite_cases import commit_label, commits, merged_rows, run_cases

from tumblebench.simulator.series import series_trajectory
from tumblebench.validation.bench import load_suite
from tumblebench.validation.pipeline import PipelineConfig, effective_series_seed, file_digest, series_config

PARTICLES = ("default", "cubo", "deca", "ico", "real")

#: (scorecard section, key, comparison, target) of each target
TARGETS = {
    "pose_sym_median_deg": (("poses", "reduced_median_error_deg"), "<=", 3.0),
    "pose_sym_within_10deg": (("poses", "reduced_within_10deg_fraction"), ">=", 0.95),
    "fsc_truth_0.5_A": (("map", "fsc_truth_0.5_A"), "<=", 1.3),
    "recall": (("atoms", "recall"), ">=", 0.97),
    "precision": (("atoms", "precision"), ">=", 0.97),
    "rmsd_pm": (("atoms", "rmsd_pm"), "<=", 19.0),
}
RECONSTRUCT_S = 600.0
CASE_S = 600.0


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def seed_conditions(config: PipelineConfig) -> dict:
    """Imaging conditions of the series of case ``config`` (every particle of a seed has the same): the defocus
    over its frames (Å, negative = overfocus; the optics' defocus plus the particle's height in the liquid) and
    the liquid thickness (Å)."""
    series = series_config(config)
    path = series_trajectory(series, effective_series_seed(config))
    defocus = series.imaging.optics.defocus_A + path.heights
    p5, p50, p95 = np.percentile(defocus, [5, 50, 95])
    return {"defocus_median_A": round(float(p50), 1), "defocus_p5_A": round(float(p5), 1),
            "defocus_p95_A": round(float(p95), 1),
            "liquid_thickness_median_A": round(float(np.median(path.thickness)), 1)}


def case_figures(name: str, work: Path) -> dict | None:
    """The figures of a finished case and the pass/fail of each target; None when the case has not run."""
    run = work / "runs" / name / "cases" / name
    if not (run / "scorecard.json").exists():
        return None
    card = json.loads((run / "scorecard.json").read_text())
    timing = json.loads((run / "timing.json").read_text()) if (run / "timing.json").exists() else {}
    row: dict = {"case": name, "seed": int(name.rsplit("-s", 1)[1]), "particle": name.rsplit("-s", 1)[0],
                 **commits(card)}
    passed: dict[str, bool | None] = {}
    for key, ((section, field), op, target) in TARGETS.items():
        value = (card.get(section) or {}).get(field)
        row[key] = value
        passed[key] = None if value is None else (value <= target if op == "<=" else value >= target)
    row["reconstruct_s"] = timing.get("reconstruct")
    # the series' bytes: a row run on another machine tells from this whether its frames or its arithmetic differ
    frames = run / "series" / "frames.mrcs"
    row["frames_sha256"] = file_digest(frames) if frames.exists() else None
    speed = work / "runs" / name / "machine_speed.json"  # the fixed workload's time when the case started
    row["probe_s"] = json.loads(speed.read_text())["probe_s"] if speed.exists() else None
    # the whole case from scratch: a run on cached data has its build/simulate timings from the cache entry's
    # generation; a run on an entry that predates them has no case time
    row["case_s"] = (sum(v for v in timing.values() if isinstance(v, int | float)) if "simulate" in timing
                     else None)
    passed["reconstruct_s"] = None if row["reconstruct_s"] is None else row["reconstruct_s"] <= RECONSTRUCT_S
    passed["case_s"] = None if row["case_s"] is None else row["case_s"] <= CASE_S
    row["passed"] = passed
    row["all_passed"] = all(v is True for v in passed.values())
    return row


def summary(rows: list[dict]) -> dict[str, int]:
    """How many ``rows`` meet every target, and every target but the whole-case time."""
    return {"cases_all_targets": sum(r["all_passed"] for r in rows),
            "cases_all_but_case_time": sum(all(v is True for k, v in r["passed"].items() if k != "case_s")
                                           for r in rows)}


def _fmt(v, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def markdown(rows: list[dict], seeds: dict[int, dict]) -> str:
    """The matrix as a Markdown table (a ✗ marks a figure that misses its target; ``seeds``: :func:`seed_conditions`
    by seed)."""
    cols = [("pose_sym_median_deg", "median °", ".2f"), ("pose_sym_within_10deg", "≤ 10°", ".1%"),
            ("fsc_truth_0.5_A", "FSC(truth) 0.5 Å", ".2f"), ("recall", "recall", ".3f"),
            ("precision", "precision", ".3f"), ("rmsd_pm", "RMSD pm", ".1f"),
            ("reconstruct_s", "reconstruct s", ".0f"), ("case_s", "case s", ".0f")]
    lines = ["| particle | seed | defocus Å | " + " | ".join(c[1] for c in cols) + " | all | commit |",
             "|---|---|---|" + "---|" * len(cols) + "---|---|"]
    for r in rows:
        cells = [_fmt(r[k], f) + (" ✗" if r["passed"].get(k) is False else "") for k, _, f in cols]
        verdict = "yes" if r["all_passed"] else "no"
        lines.append(f"| {r['particle']} | {r['seed']} | {seeds[r['seed']]['defocus_median_A']:.1f} | "
                     + " | ".join(cells) + f" | {verdict} | {commit_label(r)} |")
    return "\n".join(lines)


def seeds_markdown(seeds: dict[int, dict]) -> str:
    """Each seed's imaging conditions as a Markdown table."""
    lines = ["| seed | defocus median Å | defocus 5–95 % Å | liquid thickness median Å |", "|---|---|---|---|"]
    lines += [f"| {s} | {c['defocus_median_A']:.1f} | {c['defocus_p5_A']:.1f} to {c['defocus_p95_A']:.1f} | "
              f"{c['liquid_thickness_median_A']:.0f} |" for s, c in sorted(seeds.items())]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="runs and data cache (kept: the matrix resumes)")
    ap.add_argument("--seeds", default="0-7", help="seeds to run, e.g. 0-7 or 0,3,7 (default 0-7)")
    ap.add_argument("--particles", default=",".join(PARTICLES), help=f"of {', '.join(PARTICLES)} (default all)")
    ap.add_argument("--report-only", action="store_true", help="run nothing; tabulate the cases already run")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "abinitio_robustness.json")
    args = ap.parse_args()
    particles = [p for p in args.particles.split(",") if p]
    unknown = sorted(set(particles) - set(PARTICLES))
    if unknown:
        ap.error(f"--particles: unknown {', '.join(unknown)}; expected some of {', '.join(PARTICLES)}")
    names = [f"{p}-s{s}" for p in particles for s in _seeds(args.seeds)]
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run_cases("robustness", names, args.work)
    every = [f"{p}-s{s}" for p in PARTICLES for s in range(8)]
    rows = merged_rows(every, lambda n: case_figures(n, args.work), args.out)
    cases = {c.name: c.config for c in load_suite("robustness").cases}
    seeds = {s: seed_conditions(cases[f"default-s{s}"]) for s in range(8)}
    print(markdown(rows, seeds))
    counts = summary(rows)
    print(f"\n{counts['cases_all_targets']} of {len(rows)} cases meet every target; "
          f"{counts['cases_all_but_case_time']} every target but the whole-case time.")
    print()
    print(seeds_markdown(seeds))
    result = {"benchmark": "abinitio_robustness", "suite": "robustness", "cases_run": len(rows), "cases_total": 40,
              **counts,
              "all_passed": bool(rows) and len(rows) == 40 and all(r["all_passed"] for r in rows),
              "targets": {k: {"op": op, "target": t} for k, (_, op, t) in TARGETS.items()}
              | {"reconstruct_s": {"op": "<=", "target": RECONSTRUCT_S}, "case_s": {"op": "<=", "target": CASE_S}},
              "seeds": {str(k): v for k, v in seeds.items()}, "rows": rows,
              "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
