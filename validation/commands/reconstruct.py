"""``tumblebench reconstruct``: rebuild the particle's 3D density from its frames alone."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import check_output_dir
from tumblebench.validation.commands.algorithm_option import add_algorithm_argument, parse_specs
from tumblebench.validation.commands.config_option import add_config_argument

#: The replaceable stages ``reconstruct`` runs.
RECONSTRUCT_STAGES = ("tracking", "pose", "refine")


#: The config dataclass whose fields the options mirror (defaults and help come from it).
RECONSTRUCT = "tumblebench.reconstruct.config:ReconstructConfig"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reconstruct``."""
    p = subparsers.add_parser(
        "reconstruct",
        help="3D reconstruction from a tumbling-particle series (tracking, ab initio, refinement)",
        description=(
            "Track the particle in every frame, remove the graphene lattice peaks, find the poses ab initio "
            "(lattice-fringe search with temporal continuity), refine them by projection matching with "
            "gold-standard half sets, and write map.mrc (density-modified: the particle's envelope and positivity "
            "fill the shells the CTF does not transfer), map_unmodified.mrc, half1.mrc, half2.mrc, poses.star, "
            "fsc.csv, trajectory.csv, reconstruct.log, summary.json and part1/, part2/ maps. "
            "Oracle modes for benchmarking single stages: --poses truth (the STAR poses and centres, no "
            "refinement) and --poses truth+noise:DEG (STAR poses perturbed by DEG degrees rms, then refined)."
        ),
    )
    p.add_argument("--frames", required=True, type=Path, help="frames.mrcs (full fields of view)")
    p.add_argument("--star", type=Path, help="frames.star (default: frames.star beside the frames, if present)")
    add_config_argument(p, "--poses", config=RECONSTRUCT, field="poses", metavar="abinitio|truth|truth+noise:DEG",
                        help="where the poses come from")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration (reconstruct.config)")
    add_config_argument(p, "--box", config=RECONSTRUCT, field="box", type=int, help="reconstruction box in pixels")
    add_config_argument(p, "--seed", config=RECONSTRUCT, field="seed", type=int, help="random seed")
    add_config_argument(p, "--model-iterations", config=RECONSTRUCT, field="refine.model_iterations", type=int,
                        metavar="N", help="last refinement iterations against each half map's atomic model")
    add_algorithm_argument(p, RECONSTRUCT_STAGES)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``reconstruct``; return the exit status."""
    from tumblebench.analysis.reference import atom_reference
    from tumblebench.reconstruct.config import ReconstructConfig
    from tumblebench.reconstruct.pipeline import reconstruct_series
    from tumblebench.validation.algorithms import (
        Configs,
        check_pose_mode,
        load_with_algorithms,
        resolve_all,
    )

    check_output_dir(args.out, args.overwrite)
    config, specs = load_with_algorithms(ReconstructConfig, args.config) if args.config else (ReconstructConfig(), {})
    specs = parse_specs(args.algorithm, specs)
    over = {}
    if args.poses is not None:
        over["poses"] = args.poses
    if args.box is not None:
        over["box"] = args.box
    if args.seed is not None:
        over["seed"] = args.seed
    if args.model_iterations is not None:
        over["refine"] = dataclasses.replace(config.refine, model_iterations=args.model_iterations)
    config = dataclasses.replace(config, **over)
    try:
        config.validate()
    except TumblebenchError as exc:
        raise TumblebenchError(f"command line: {exc}") from None
    check_pose_mode(config.poses, specs)
    algorithms = resolve_all(specs, Configs(reconstruct=config), RECONSTRUCT_STAGES)
    star = args.star
    if star is None:
        guess = args.frames.with_name("frames.star")
        star = guess if guess.exists() else None
    inputs = {"frames": str(args.frames), "star": str(star) if star else None}
    summary = reconstruct_series(args.frames, star, args.out, config, overwrite=args.overwrite,
                                 progress=not args.quiet, inputs=inputs, reference_model=atom_reference,
                                 algorithms=algorithms)
    if not args.quiet:
        keys = ("poses_mode", "usable_frames", "bad_frames", "lost_frames", "diameter_A", "fsc_half_0.143_A",
                "fsc_half_0.5_A", "timing_s")
        sys.stdout.write(json.dumps({k: summary.get(k) for k in keys}, indent=1, default=float) + "\n")
    return 0
