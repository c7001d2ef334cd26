"""The ``standard`` suite, one case at a time, its rows kept across machines: the README's standard table.

The cases are the built-in suite ``standard`` (``validation/suites/standard.toml``): the default scenario with one
hard factor changed per case. Each case runs as ``tumblebench bench --suite standard --case NAME`` into
``WORK/runs/NAME`` (``suite_cases.py``); the rows of the cases run so far, here or on an earlier machine, go to
``benchmarks/results/bench_standard.json`` (or ``bench_standard_<algorithms>.json`` with ``--algorithm``), and
the table is printed in Markdown with the commit each case ran at. Run from the repository root::

    .venv/bin/python benchmarks/bench_standard.py --work DIR [--cases default,decahedron] [--algorithm pose=random]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from suite_cases import commit_label, commits, merged_rows, run_cases

from tumblebench.validation.bench import load_suite, markdown_table, result_columns


def case_row(name: str, work: Path) -> dict | None:
    """The headline row of a finished case with the commits it ran and was scored at; None when not run."""
    folder = work / "runs" / name
    card_path = folder / "cases" / name / "scorecard.json"
    if not (folder / "results.json").exists() or not card_path.exists():
        return None
    row = json.loads((folder / "results.json").read_text())["cases"][0]
    card = json.loads(card_path.read_text())
    within_10 = (card.get("poses") or {}).get("reduced_within_10deg_fraction")
    return {**row, "pose_sym_within_10deg": within_10, **commits(card)}


# the README's table: the figures a reader compares cases by (every headline column is in the results file)
README_COLUMNS = {"case": "case", "n_atoms": "atoms", "pose_sym_median_deg": "pose median °",
                  "within_10": "≤ 10°", "fsc_truth_0.5_A": "FSC(truth) 0.5 Å",
                  "recall": "recall", "precision": "precision", "rmsd_pm": "RMSD pm", "cn_exact": "CN exact",
                  "time_s": "time s", "commit_label": "commit"}


def readme_table(rows: list[dict]) -> str:
    """The compact Markdown table of the README (pose figures modulo the particle's symmetry and twin)."""
    shown = []
    for r in rows:
        w = r.get("pose_sym_within_10deg")
        shown.append({**r, "within_10": "—" if w is None else f"{100 * w:.1f}%"})
    return markdown_table(shown, list(README_COLUMNS), README_COLUMNS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="runs and data cache (kept: the suite resumes)")
    ap.add_argument("--cases", default="", help="comma-separated cases to run (default: all)")
    ap.add_argument("--algorithm", action="append", default=[], metavar="STAGE=NAME",
                    help="algorithm of a stage, as for tumblebench bench (repeatable)")
    ap.add_argument("--report-only", action="store_true", help="run nothing; tabulate the cases already run")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default benchmarks/results/bench_standard[_ALGORITHMS].json)")
    args = ap.parse_args()
    suite = load_suite("standard")
    every = [c.name for c in suite.cases]
    names = [c for c in args.cases.split(",") if c] or every
    unknown = sorted(set(names) - set(every))
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; the suite has {', '.join(every)}")
    tag = "".join("_" + re.sub(r"[^A-Za-z0-9.-]+", "-", a) for a in args.algorithm)
    out = args.out or Path(__file__).parent / "results" / f"bench_standard{tag}.json"
    work = args.work / tag.lstrip("_") if tag else args.work
    if not args.report_only:
        run_cases("standard", names, work, args.algorithm)
    rows = merged_rows(every, lambda n: case_row(n, work), out)
    for r in rows:
        r["commit_label"] = commit_label(r)
    cols = [c for c in result_columns(rows) if c not in ("n_frames",)] + ["commit_label"]
    print(markdown_table(rows, cols, {"commit_label": "commit"}))
    print("\nREADME table:\n")
    print(readme_table(rows))
    result = {"benchmark": "bench_standard", "suite": "standard", "version": suite.version,
              "algorithms": args.algorithm, "cases_run": len(rows), "cases_total": len(every), "rows": rows,
              "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
