"""Ab initio robustness: the built-in pipeline on 8 seeds × 5 particles, each case against the targets.

The cases are the built-in suite ``robustness`` (``validation/suites/robustness.toml``): the default scenario
(2,000 multislice frames, default dose, unknown poses, default settings) for the seeds 0–7 of the default
twinned truncated octahedron, the cuboctahedron, the decahedron, the icosahedron and the real SINGLE-traced
particle. Each case runs as its own ``tumblebench bench --suite robustness --case NAME`` into
``WORK/runs/NAME`` (the particles and series are cached in ``WORK/data``); a case whose results exist is not run
again, so the matrix can be filled over several sessions (``--seeds``, ``--particles`` pick a part of it). The
results file keeps the rows of cases run earlier (each with the commit it ran at, and the commit of the scorers
when ``tumblebench bench rescore WORK/runs/NAME`` scored it again) when ``WORK`` no longer holds them, so a new
machine adds to the committed matrix instead of starting it over.

Targets per case (symmetry-reduced pose errors):

* median pose error ≤ 3°, ≥ 95 % of frames within 10°;
* FSC(truth) = 0.5, first crossing, ≤ 1.3 Å (density-modified map);
* atoms recall ≥ 0.97, precision ≥ 0.97, RMSD ≤ 19 pm;
* reconstruction ≤ 600 s, the whole case (build to score) ≤ 10 min, on 2 cores.

Prints the matrix as a Markdown table (one row per case, the seeds stated) and writes every case's figures and
the pass/fail of each target to ``benchmarks/results/abinitio_robustness.json``. Run from the repository root::

    .venv/bin/python benchmarks/abinitio_robustness.py --work DIR [--seeds 0-7] [--particles default,deca]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


def run_case(name: str, work: Path) -> float | None:
    """Run case ``name`` unless its results exist; return its wall time (s) or None when it was there."""
    out = work / "runs" / name
    if (out / "results.json").exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cmd = [str(Path(sys.executable).with_name("tumblebench")), "bench", "--suite", "robustness", "--case", name,
           "--out", str(out), "--data", str(work / "data"), "--overwrite", "--quiet"]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def case_figures(name: str, work: Path) -> dict | None:
    """The figures of a finished case and the pass/fail of each target; None when the case has not run."""
    run = work / "runs" / name / "cases" / name
    if not (run / "scorecard.json").exists():
        return None
    card = json.loads((run / "scorecard.json").read_text())
    timing = json.loads((run / "timing.json").read_text()) if (run / "timing.json").exists() else {}
    commit = (card.get("versions") or {}).get("git_commit")
    scored = (card.get("versions") or {}).get("rescored_at") or commit
    row: dict = {"case": name, "seed": int(name.rsplit("-s", 1)[1]), "particle": name.rsplit("-s", 1)[0],
                 "commit": commit[:7] if commit else None, "scored_commit": scored[:7] if scored else None}
    passed: dict[str, bool | None] = {}
    for key, ((section, field), op, target) in TARGETS.items():
        value = (card.get(section) or {}).get(field)
        row[key] = value
        passed[key] = None if value is None else (value <= target if op == "<=" else value >= target)
    row["reconstruct_s"] = timing.get("reconstruct")
    row["case_s"] = sum(v for v in timing.values() if isinstance(v, int | float)) if timing else None
    passed["reconstruct_s"] = None if row["reconstruct_s"] is None else row["reconstruct_s"] <= RECONSTRUCT_S
    passed["case_s"] = None if row["case_s"] is None else row["case_s"] <= CASE_S
    row["passed"] = passed
    row["all_passed"] = all(v is True for v in passed.values())
    return row


def _fmt(v, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def markdown(rows: list[dict]) -> str:
    """The matrix as a Markdown table (a ✗ marks a figure that misses its target)."""
    cols = [("pose_sym_median_deg", "median °", ".2f"), ("pose_sym_within_10deg", "≤ 10°", ".1%"),
            ("fsc_truth_0.5_A", "FSC(truth) 0.5 Å", ".2f"), ("recall", "recall", ".3f"),
            ("precision", "precision", ".3f"), ("rmsd_pm", "RMSD pm", ".1f"),
            ("reconstruct_s", "reconstruct s", ".0f"), ("case_s", "case s", ".0f")]
    lines = ["| particle | seed | " + " | ".join(c[1] for c in cols) + " | all | commit |",
             "|---|---|" + "---|" * len(cols) + "---|---|"]
    for r in rows:
        cells = [_fmt(r[k], f) + (" ✗" if r["passed"].get(k) is False else "") for k, _, f in cols]
        verdict = "yes" if r["all_passed"] else "no"
        commit = r.get("commit") or "—"
        if r.get("scored_commit") not in (None, r.get("commit")):
            commit += f", scored at {r['scored_commit']}"
        lines.append(f"| {r['particle']} | {r['seed']} | " + " | ".join(cells) + f" | {verdict} | {commit} |")
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
        for i, name in enumerate(names, start=1):
            wall = run_case(name, args.work)
            state = "already run" if wall is None else f"{wall:.0f} s"
            print(f"[{i}/{len(names)}] {name}: {state} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    every = [f"{p}-s{s}" for p in PARTICLES for s in range(8)]
    kept = json.loads(args.out.read_text()).get("rows", []) if args.out.exists() else []
    kept_by_case = {r["case"]: r for r in kept}
    rows = [r for r in (case_figures(n, args.work) or kept_by_case.get(n) for n in every) if r is not None]
    table = markdown(rows)
    print(table)
    result = {"benchmark": "abinitio_robustness", "suite": "robustness", "cases_run": len(rows), "cases_total": 40,
              "all_passed": bool(rows) and len(rows) == 40 and all(r["all_passed"] for r in rows),
              "targets": {k: {"op": op, "target": t} for k, (_, op, t) in TARGETS.items()}
              | {"reconstruct_s": {"op": "<=", "target": RECONSTRUCT_S}, "case_s": {"op": "<=", "target": CASE_S}},
              "rows": rows, "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
