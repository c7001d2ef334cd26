"""``tumblebench dataset``: training data and parameter sweeps on a Dask cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tumblebench.simulator.errors import TumblebenchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dataset``."""
    p = subparsers.add_parser(
        "dataset",
        help="generate N labelled items (particle, series, ...) drawn from a spec, on a Dask cluster",
        description=(
            "Draw N items from the distributions of a spec (examples/dataset_training.toml, "
            "examples/dataset_sweep.toml) and make each one (build, simulate, and optionally reconstruct, atoms, "
            "score) on a Dask cluster: a local one, or the scheduler given. Writes DIR/items/item_NNNNNN/ (the "
            "files of each step), DIR/dataset.zarr (frames, noise-free frames, per-frame truth and per-atom "
            "labels, one group per item) and DIR/manifest.parquet (one row per item). Item i depends only on the "
            "spec, the root seed and i; rerunning the same command finishes the missing items."),
    )
    p.add_argument("--spec", required=True, type=Path, help="TOML dataset spec")
    p.add_argument("--n", required=True, type=int, help="number of items (items 0 .. N-1)")
    p.add_argument("--out", required=True, type=Path, help="dataset directory (created, or resumed)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://HOST:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, help="worker processes of the local cluster (default: the cores)")
    p.add_argument("--seed", type=int, help="root seed (overrides [dataset] seed; default 0)")
    p.add_argument("--retry-failed", action="store_true", help="make the items that failed before again")
    p.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``dataset``; return the exit status."""
    from tumblebench.dataset.run import generate
    from tumblebench.dataset.spec import load_spec
    from tumblebench.simulator.outputs import check_writable_parent

    if args.n < 1:
        raise TumblebenchError(f"--n {args.n}: expected a number of items >= 1")
    if args.workers is not None and args.workers < 1:
        raise TumblebenchError(f"--workers {args.workers}: expected >= 1")
    check_writable_parent(Path(args.out).parent, "dataset directory")
    spec = load_spec(args.spec)
    if args.seed is not None:
        spec = spec.with_seed(args.seed)
    try:
        summary = generate(spec, args.n, args.out, scheduler=args.scheduler, workers=args.workers,
                           spec_text=args.spec.read_text(), progress=not args.quiet,
                           retry_failed=args.retry_failed)
    except KeyboardInterrupt:
        sys.stderr.write(f"tumblebench dataset: interrupted; finished items are kept in {args.out}, rerun the same "
                         "command to make the rest\n")
        return 130
    per_h = summary.done / summary.wall_s * 3600 if summary.wall_s > 0 else 0.0
    sys.stdout.write(
        f"dataset {args.out}: {summary.done} items made, {summary.failed} failed, {summary.already} already there "
        f"(of {summary.n}); {summary.wall_s:.1f} s, {per_h:.1f} items/h; manifest {summary.manifest}\n")
    failed = [r for r in summary.records if r.get("status") != "done"]
    for rec in failed[:10]:
        sys.stdout.write(f"  item {rec['index']} failed: {rec.get('error')}\n")
    if len(failed) > 10:
        sys.stdout.write(f"  ... and {len(failed) - 10} more (manifest column 'error')\n")
    return 0
