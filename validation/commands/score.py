"""``tumblebench score RUN_DIR``: score every stage found in a run directory against the truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import atomic_file, check_output_file, write_json
from tumblebench.validation.pipeline import format_scorecard
from tumblebench.validation.scorecard import score_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``score``."""
    p = subparsers.add_parser(
        "score", help="score a run directory against its truth (writes scorecard.json)",
        description="Score whatever stages a run directory holds (particle/, series/, recon/, atoms/) against "
                    "the truth and write RUN_DIR/scorecard.json; stages that did not run are null.")
    p.add_argument("run_dir", help="run directory (as written by 'tumblebench demo')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the run and print the table."""
    if not Path(args.run_dir).is_dir():
        raise TumblebenchError(f"{args.run_dir}: no such run directory")
    check_output_file(Path(args.run_dir) / "scorecard.json")  # a run directory we cannot write is refused first
    card = score_run(args.run_dir)
    with atomic_file(Path(args.run_dir) / "scorecard.json") as tmp:
        write_json(tmp, card)
    print(format_scorecard(card))
    return 0
