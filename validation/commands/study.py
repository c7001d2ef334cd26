"""``tumblebench study table1``: the seed paper's Table 1 particles through the pipeline, truth vs recovered."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``study``."""
    p = subparsers.add_parser(
        "study", help="reproduce a table of the seed paper (table1)",
        description="table1: the eight Table 1 particles of Wietfeldt et al., Commun. Chem. (2024) (presets "
                    "table1-np1 ... np8) through build, simulate, reconstruct, atoms and score; writes "
                    "table1.md/.csv/.json with every Table 1 column of the truth next to the recovered model's, "
                    "plus recall, precision and RMSD, and the bench results of the runs.")
    p.add_argument("name", choices=["table1"], help="the study")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--data", type=Path, help="data cache (default: OUT/data)")
    p.add_argument("--particle", action="append", default=[], metavar="npK",
                   help="run only this particle (np1 ... np8; repeatable)")
    p.add_argument("--frames", type=int, help="frames per series (default 2000)")
    p.add_argument("--mode", choices=["multislice", "phase-object", "projection"], help="imaging mode")
    p.add_argument("--poses", help="abinitio (default), truth or truth+noise:DEG")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an existing folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted study in OUT (same options); finished particles are kept")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``study``."""
    from tumblebench.validation.bench import Suite, load_suite, run_suite
    from tumblebench.validation.study import write_table1

    suite = load_suite(args.name)
    changes = {k: v for k, v in (("n_frames", args.frames), ("mode", args.mode), ("poses", args.poses))
               if v is not None}
    if changes:
        cases = []
        for c in suite.cases:
            cfg = dataclasses.replace(c.config, **changes)
            cfg.validate()
            cases.append(dataclasses.replace(c, config=cfg))
        suite = Suite(suite.name, suite.version, suite.description, tuple(cases), suite.source)
    rows = run_suite(suite, args.out, data=args.data, only=args.particle or None, overwrite=args.overwrite,
                     resume=args.resume, progress=not args.quiet)
    table = write_table1(args.out, [r["case"] for r in rows])
    print((args.out / "table1.md").read_text(), end="")
    return 0 if all(r["meets_target"] for r in table) else 1
