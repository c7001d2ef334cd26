"""``tumblebench demo``: the default scenario of docs/design.md end to end, scored against the truth."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from tumblebench.validation.commands.algorithm_option import add_algorithm_argument, parse_specs
from tumblebench.validation.pipeline import QUICK, STAGES, PipelineConfig, format_scorecard, run_pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo", help="build, image, reconstruct, model and score the default particle",
        description="Run the default scenario (docs/design.md) end to end: build the default Pt particle, simulate "
                    "its liquid-cell tumbling series, reconstruct it from unknown poses, build its atom model, "
                    "score every stage against the truth (scorecard.json) and write the report (report.html).")
    p.add_argument("--out", default="demo_run", help="run directory (default: demo_run)")
    p.add_argument("--quick", action="store_true", help=f"every stage at small size ({QUICK.n_frames} frames)")
    p.add_argument("--frames", type=int, help="number of frames (default 2000, --quick 400)")
    p.add_argument("--mode", choices=["multislice", "phase-object", "projection"], default="multislice")
    p.add_argument("--poses", default="abinitio", help="abinitio (default), truth or truth+noise:DEG")
    p.add_argument("--preset", default="default", help="particle preset (default: default)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--stop-after", choices=STAGES, default="score", help="last stage to run")
    add_algorithm_argument(p, ("tracking", "pose", "refine", "atoms"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its scorecard."""
    base = QUICK if args.quick else PipelineConfig()
    cfg = replace(base, preset=args.preset, seed=args.seed, mode=args.mode, poses=args.poses,
                  stop_after=args.stop_after, n_frames=args.frames or base.n_frames,
                  algorithms=parse_specs(args.algorithm, base.algorithms))
    card = run_pipeline(args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    if card:
        print(format_scorecard(card))
        print(f"scorecard: {args.out}/scorecard.json")
    else:
        print(f"stopped after {args.stop_after}: {args.out}", file=sys.stderr)
    return 0
