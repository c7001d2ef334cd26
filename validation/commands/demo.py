"""``tumblebench demo``: the default scenario of docs/design.md end to end, scored against the truth."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from tumblebench.validation.commands.algorithm_option import add_algorithm_argument, parse_specs
from tumblebench.validation.commands.config_option import add_config_argument
from tumblebench.validation.pipeline import MODES, QUICK, STAGES, PipelineConfig, format_scorecard, run_pipeline

#: The config dataclass whose fields the options mirror (defaults and help come from it).
PIPELINE = "tumblebench.validation.pipeline:PipelineConfig"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo", help="build, image, reconstruct, model and score the default particle",
        description="Run the default scenario (docs/design.md) end to end: build the default Pt particle, simulate "
                    "its liquid-cell tumbling series, reconstruct it from unknown poses, build its atom model, "
                    "score every stage against the truth (scorecard.json) and write the report (report.html).")
    p.add_argument("--out", default="demo_run", help="run directory (default: demo_run)")
    p.add_argument("--quick", action="store_true", help=f"every stage at small size ({QUICK.n_frames} frames)")
    add_config_argument(p, "--frames", config=PIPELINE, field="n_frames", type=int,
                        help=f"number of frames (--quick: {QUICK.n_frames})")
    add_config_argument(p, "--mode", config=PIPELINE, field="mode", choices=MODES, help="imaging mode")
    add_config_argument(p, "--poses", config=PIPELINE, field="poses", metavar="abinitio|truth|truth+noise:DEG",
                        help="pose mode of the reconstruction")
    add_config_argument(p, "--preset", config=PIPELINE, field="preset", metavar="NAME", help="particle preset")
    add_config_argument(p, "--seed", config=PIPELINE, field="seed", type=int, help="seed of every random draw")
    add_config_argument(p, "--stop-after", config=PIPELINE, field="stop_after", choices=STAGES,
                        help="last stage to run")
    add_algorithm_argument(p, ("tracking", "pose", "refine", "atoms"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its scorecard."""
    base = QUICK if args.quick else PipelineConfig()
    given = {"preset": args.preset, "seed": args.seed, "mode": args.mode, "poses": args.poses,
             "stop_after": args.stop_after, "n_frames": args.frames}
    cfg = replace(base, **{k: v for k, v in given.items() if v is not None},
                  algorithms=parse_specs(args.algorithm, base.algorithms))
    card = run_pipeline(args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    if card:
        print(format_scorecard(card))
        print(f"scorecard: {args.out}/scorecard.json")
    else:
        print(f"stopped after {args.stop_after}: {args.out}", file=sys.stderr)
    return 0
