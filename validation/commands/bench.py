"""``tumblebench bench``: run a benchmark suite, or compare two results folders (``bench compare A B``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tumblebench.validation.commands.algorithm_option import add_algorithm_argument, parse_specs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bench``."""
    from tumblebench.validation.bench import suite_names

    p = subparsers.add_parser(
        "bench", help="run a benchmark suite (or: bench compare A B, bench rescore DIR)",
        description="Run every case of a named, versioned suite through the pipeline (build, simulate, "
                    "reconstruct, atoms, score) and write one run folder and scorecard per case plus "
                    "results.csv, results.json, results.md and index.html. A case's particle and series are "
                    "generated once into the data cache and reused byte for byte by every later run. "
                    "`bench compare A B` diffs two results folders per case and metric (better / worse / same "
                    "within the metric's tolerance). `bench rescore DIR` scores every case of a results folder again "
                    "with today's scorers and rebuilds its results, without reconstructing anything. "
                    f"Built-in suites: {', '.join(suite_names())}; "
                    "--suite also takes a suite TOML file.")
    p.add_argument("compare", nargs="*", metavar="compare A B | rescore DIR",
                   help="compare results folder B against A (prints a table, writes B/compare.md), or score the "
                        "cases of results folder DIR again")
    p.add_argument("--suite", help="built-in suite name or suite TOML file")
    add_algorithm_argument(p, ("tracking", "pose", "refine", "atoms"))
    p.add_argument("--out", type=Path, help="results folder")
    p.add_argument("--data", type=Path, help="data cache shared between runs (default: OUT/data)")
    p.add_argument("--case", action="append", default=[], metavar="NAME", help="run only this case (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an existing folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out: finished cases are kept, the others run")
    p.add_argument("--md", type=Path, help="with compare: Markdown output (default B/compare.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``bench``."""
    from tumblebench.simulator.errors import require
    from tumblebench.simulator.outputs import check_output_file
    from tumblebench.validation.bench import (
        compare_results,
        diff_table,
        load_suite,
        markdown_table,
        rescore_suite,
        result_columns,
        run_suite,
    )

    if args.compare and args.compare[0] == "rescore":
        require(len(args.compare) == 2, f"unexpected argument(s) {' '.join(args.compare)}; expected "
                                        "`bench rescore DIR`")
        rows = rescore_suite(Path(args.compare[1]))
        print(markdown_table(rows, result_columns(rows)))
        print(f"results: {args.compare[1]}/results.md, results.csv, results.json, index.html", file=sys.stderr)
        return 0
    if args.compare:
        require(len(args.compare) == 3 and args.compare[0] == "compare",
                f"unexpected argument(s) {' '.join(args.compare)}; expected `bench compare A B`, "
                "`bench rescore DIR` or `bench --suite NAME --out DIR`")
        a, b = Path(args.compare[1]), Path(args.compare[2])
        check_output_file(args.md or b / "compare.md")
        diffs = compare_results(a, b)
        print(diff_table(diffs, label_a=a.name or str(a), label_b=b.name or str(b)))
        md = args.md or b / "compare.md"
        n_worse = sum(d.verdict == "worse" for d in diffs)
        n_better = sum(d.verdict == "better" for d in diffs)
        md.write_text(f"`{b}` against `{a}`: {n_better} better, {n_worse} worse.\n\n"
                      + diff_table(diffs, markdown=True, label_a=str(a), label_b=str(b)) + "\n")
        print(f"{n_better} better, {n_worse} worse; Markdown: {md}")
        return 0
    require(args.suite is not None, "--suite NAME is required (or `bench compare A B`)")
    require(args.out is not None, "--out DIR is required")
    suite = load_suite(args.suite)
    algorithms = parse_specs(args.algorithm)
    rows = run_suite(suite, args.out, data=args.data, algorithms=algorithms, only=args.case or None,
                     overwrite=args.overwrite, resume=args.resume, progress=not args.quiet)
    print(markdown_table(rows, result_columns(rows)))
    print(f"results: {args.out}/results.md, results.csv, results.json, index.html", file=sys.stderr)
    return 0
