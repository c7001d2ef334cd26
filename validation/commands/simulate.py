"""``tumblebench simulate``: image a nanocrystal tumbling in a graphene liquid cell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tumblebench.simulator.config import check_seed, load_config
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import check_output_dir
from tumblebench.validation.commands.config_option import add_config_argument

#: The config dataclass whose fields the options mirror (defaults and help come from it).
SERIES = "tumblebench.simulator.series:SeriesConfig"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``simulate``."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate the liquid-cell TEM image series of a tumbling nanocrystal",
        description=(
            "Turn a nanocrystal into the image series a graphene-liquid-cell TEM records while it tumbles: "
            "frames.mrcs (noisy counts), frames.star (RELION 3.1 with the true pose, shift, defocus, time, "
            "dose and liquid thickness of every frame), truth_map.mrc, montage.png and manifest.json."
        ),
    )
    p.add_argument("--structure", required=True, type=Path,
                   help="particle: DIR/truth.extxyz from 'tumblebench build' (or a .pdb/.xyz of bare atoms)")
    p.add_argument("--config", type=Path, help="TOML series configuration (see examples/simulate.toml)")
    add_config_argument(p, "--mode", config=SERIES, field="imaging.mode",
                        choices=("multislice", "phase-object", "projection"), help="imaging model")
    add_config_argument(p, "--frames", config=SERIES, field="acquisition.n_frames", type=int,
                        help="number of frames")
    add_config_argument(p, "--dose-per-frame", config=SERIES, field="acquisition.dose_per_frame_e_per_A2",
                        type=float, metavar="E_PER_A2", help="dose per frame in e-/Å²")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``simulate``; return the exit status."""
    from tumblebench.simulator.nanocrystal import load_nanocrystal
    from tumblebench.simulator.series import MAX_FRAMES, SeriesConfig, simulate_series, with_overrides

    check_output_dir(args.out, args.overwrite)
    check_seed(args.seed, "--seed")
    if args.frames is not None and not 1 <= args.frames <= MAX_FRAMES:
        raise TumblebenchError(f"--frames {args.frames}: expected 1 to {MAX_FRAMES:,} frames")
    if args.dose_per_frame is not None and not 0 < args.dose_per_frame <= 1e5:
        raise TumblebenchError(f"--dose-per-frame {args.dose_per_frame}: expected a dose in (0, 100000] e/Å²")
    config = load_config(SeriesConfig, args.config) if args.config else SeriesConfig()
    try:
        config = with_overrides(config, mode=args.mode, n_frames=args.frames, dose_per_frame=args.dose_per_frame)
    except TumblebenchError as exc:
        raise TumblebenchError(f"{args.config or 'series configuration'}: {exc}") from None
    nc = load_nanocrystal(args.structure,
                          warn=lambda msg: sys.stderr.write(f"tumblebench simulate: warning: {msg}\n"))
    inputs = {"structure": str(args.structure)}
    if args.config:
        inputs["config"] = str(args.config)
    out = simulate_series(nc, config, args.seed, args.out, overwrite=args.overwrite, progress=not args.quiet,
                          inputs=inputs)
    if not args.quiet:
        acq = config.acquisition
        sys.stdout.write(
            f"simulated {acq.n_frames} frames of {nc.n_atoms} atoms ({config.imaging.mode}) into {out}/\n"
            f"  frames.mrcs  frames.star  truth_map.mrc  montage.png  manifest.json\n"
        )
    return 0
