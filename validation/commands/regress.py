"""``tumblebench regress``: run the regression configurations and compare them with their golden scorecards."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``regress``."""
    p = subparsers.add_parser(
        "regress", help="run the regression baselines; exit 1 if any score got worse",
        description="Run the small configurations of GOLDEN/suite.toml, compare every headline figure with the "
                    "golden scorecards GOLDEN/CASE.json (tolerance per metric: float reproducibility, "
                    "not hiding regressions), print the table and exit 1 if any score is worse. --update "
                    "rewrites the golden scorecards and prints what changed.")
    p.add_argument("--golden", type=Path, default=Path("tests/golden"),
                   help="folder of suite.toml and the golden scorecards (default: tests/golden)")
    p.add_argument("--update", action="store_true", help="rewrite the golden scorecards with this run's")
    p.add_argument("--work", type=Path, help="keep the runs in this folder (default: a temporary folder)")
    p.add_argument("--data", type=Path, help="data cache (default: WORK/data)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``regress``."""
    import json

    from tumblebench.validation.bench import (
        baseline_rows,
        compare_rows,
        diff_table,
        golden_suite,
        headline,
        regressions,
        run_suite,
        update_baselines,
    )

    suite = golden_suite(args.golden)
    with tempfile.TemporaryDirectory(prefix="tumblebench_regress_") as tmp:
        work = args.work or Path(tmp) / "runs"
        rows = run_suite(suite, work, data=args.data, overwrite=True, progress=not args.quiet)
        cards = {r["case"]: json.loads((work / "cases" / r["case"] / "scorecard.json").read_text())
                 for r in rows}
    if args.update:
        changes = update_baselines(args.golden, cards)
        print("\n".join(changes) if changes else "no figure changed")
        print(f"baselines rewritten: {args.golden}")
        return 0
    diffs = compare_rows(baseline_rows(args.golden, suite),
                         {name: {"case": name, **headline(card)} for name, card in cards.items()})
    print(diff_table(diffs, label_a="golden", label_b="now"))
    bad = regressions(diffs)
    if bad:
        print(f"REGRESSION: {len(bad)} figure(s) worse than the baseline beyond tolerance: "
              + ", ".join(f"{d.case} {d.metric}" for d in bad))
        return 1
    print("no regression")
    return 0
