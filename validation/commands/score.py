"""``tumblebench score``: score every stage of a run (a run directory, or the stand-alone commands' outputs)
against the truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import atomic_file, check_output_file, write_json
from tumblebench.validation.pipeline import format_scorecard
from tumblebench.validation.scorecard import STAGE_FILES, RunLayout, score_run

#: The stage options: (option, RunLayout field, the command that writes such a directory).
STAGE_OPTIONS = (("particle", "particle_dir", "build"), ("series", "series_dir", "simulate"),
                 ("recon", "recon_dir", "reconstruct"), ("atoms", "atoms_dir", "atoms"))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``score``."""
    p = subparsers.add_parser(
        "score", help="score a run against its truth (writes scorecard.json)",
        description="Score whatever stages a run holds against the truth and write scorecard.json; stages that "
                    "did not run are null. The run is a run directory (particle/, series/, recon/, atoms/, as "
                    "'tumblebench demo' writes it; the scorecard goes to RUN_DIR/scorecard.json) or the output "
                    "directories of the stand-alone commands given one by one (--particle, --series, --recon, "
                    "--atoms; the scorecard goes to --out). Options given with RUN_DIR replace its stages.")
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR",
                   help="run directory (as written by 'tumblebench demo')")
    for name, _, command in STAGE_OPTIONS:
        p.add_argument(f"--{name}", type=Path, metavar="DIR",
                       help=f"output directory of 'tumblebench {command}' ({STAGE_FILES[name]} and the rest)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="where to write the scorecard (default RUN_DIR/scorecard.json; required without RUN_DIR)")
    p.set_defaults(func=run)


def layout_from_args(args: argparse.Namespace) -> tuple[RunLayout, Path]:
    """The run's layout and the scorecard's path from the command line; every directory is checked first.

    Raises
    ------
    TumblebenchError
        RUN_DIR is not a run directory, a stage directory lacks its output, or there is nowhere to write.
    """
    given = {name: getattr(args, name) for name, _, _ in STAGE_OPTIONS if getattr(args, name) is not None}
    if args.run_dir is None and not given:
        raise TumblebenchError("nothing to score: give a RUN_DIR or the stage directories (--particle, "
                               "--series, --recon, --atoms)")
    for name, d in given.items():
        if not d.is_dir():
            raise TumblebenchError(f"--{name} {d}: not a directory")
        if not (d / STAGE_FILES[name]).is_file():
            command = dict((n, c) for n, _, c in STAGE_OPTIONS)[name]
            raise TumblebenchError(f"--{name} {d}: no {STAGE_FILES[name]} (expected an output directory of "
                                   f"'tumblebench {command}')")
    fields = {f: given[name] for name, f, _ in STAGE_OPTIONS if name in given}
    layout = RunLayout(args.run_dir, **fields)
    if args.run_dir is not None:
        if not args.run_dir.is_dir():
            raise TumblebenchError(f"{args.run_dir}: no such run directory")
        if not RunLayout(args.run_dir).stages_present() and not given:
            raise TumblebenchError(
                f"{args.run_dir}: not a run directory (expected at least one of "
                + ", ".join(f"{n}/{f}" for n, f in STAGE_FILES.items()) + ", as 'tumblebench demo' writes them)")
    if args.out is None and args.run_dir is None:
        raise TumblebenchError("--out FILE: required when the stages are given without a RUN_DIR")
    out = check_output_file(args.out if args.out is not None else args.run_dir / "scorecard.json")
    return layout, out


def run(args: argparse.Namespace) -> int:
    """Score the run, write the scorecard and print the table."""
    layout, out = layout_from_args(args)
    card = score_run(layout)
    with atomic_file(out) as tmp:
        write_json(tmp, card)
    print(format_scorecard(card))
    return 0
