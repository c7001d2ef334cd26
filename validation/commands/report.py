"""``tumblebench report RUN_DIR``: write RUN_DIR/report.html, the run's figures against its truth on one page."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report``."""
    p = subparsers.add_parser(
        "report", help="write RUN_DIR/report.html (figures of the run against its truth)",
        description="Score the run directory against its truth and write RUN_DIR/report.html: one self-contained "
                    "page (figures embedded) with the particle, raw and noise-free frames, the pose error over the "
                    "series, FSC curves with the CTF's transfer gap, map slices with the true and found atoms, "
                    "CN against depth with the penetration-depth fit, per-atom statistics against CN and the "
                    "truth-against-recovered table.")
    p.add_argument("run_dir", help="run directory (as written by 'tumblebench demo')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from tumblebench.validation.report import write_report  # matplotlib loads only for this command

    print(write_report(Path(args.run_dir)))
    return 0
