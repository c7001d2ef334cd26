"""``tumblebench atoms-compare``: common, lost, gained and displaced atoms between two atom models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``atoms-compare``."""
    p = subparsers.add_parser(
        "atoms-compare",
        help="compare two atom models of the same particle (e.g. the two halves of a series)",
        description=(
            "Pair the atoms of two 'tumblebench atoms' outputs one-to-one within 1.76 Å (Wietfeldt 2024) and report "
            "common atoms (%), atoms lost, gained and displaced by more than the pairing distance, and the "
            "shift of common atoms. Prints JSON; --out also writes it to a file."
        ),
    )
    p.add_argument("dir_a", type=Path, metavar="DIR_A", help="first atoms output directory (e.g. part1/)")
    p.add_argument("dir_b", type=Path, metavar="DIR_B", help="second atoms output directory (e.g. part2/)")
    p.add_argument("--max-dist", type=float, default=1.76, metavar="A", help="pairing distance (Å, default 1.76)")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON here")
    p.add_argument("--full", action="store_true", help="include the index lists (pairs, lost, gained, displaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``atoms-compare``; return the exit status."""
    from tumblebench.analysis.compare import compare_models
    from tumblebench.analysis.io import read_atoms
    from tumblebench.simulator.errors import TumblebenchError
    from tumblebench.simulator.outputs import atomic_file, check_output_file, write_json

    if not 0 < args.max_dist <= 10:
        raise TumblebenchError(f"--max-dist {args.max_dist}: expected a pairing distance in (0, 10] Å")
    if args.out is not None:
        check_output_file(args.out)
    a, _ = read_atoms(args.dir_a)
    b, _ = read_atoms(args.dir_b)
    res = compare_models(a, b, args.max_dist)
    if not args.full:
        res = {k: v for k, v in res.items() if k not in ("pairs", "lost", "gained", "displaced")}
    res = {"a": str(args.dir_a), "b": str(args.dir_b), **res}
    if args.out is not None:
        with atomic_file(args.out) as tmp:
            write_json(tmp, res)
    print(json.dumps(res, indent=2))
    return 0
