"""The ``--algorithm STAGE=SPEC`` option of ``reconstruct``, ``atoms`` and ``demo`` (light: no algorithm is
imported here; :mod:`tumblebench.validation.algorithms` resolves the specs)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.stages import STAGE_METHODS

#: The built-in algorithm names of every stage, default first.
BUILTIN_NAMES: dict[str, tuple[str, ...]] = {"tracking": ("correlation",), "pose": ("lattice", "sphere"),
                                             "refine": ("projection-matching",), "atoms": ("threshold-scan",)}


def add_algorithm_argument(parser: argparse.ArgumentParser, stages: tuple[str, ...]) -> None:
    """Register ``--algorithm STAGE=SPEC`` (repeatable) for ``stages``."""
    names = "; ".join(f"{s}: {', '.join(BUILTIN_NAMES[s])}" for s in stages)
    parser.add_argument("--algorithm", action="append", metavar="STAGE=NAME|module:attr",
                        help=f"algorithm of a stage, one per stage (repeatable): a built-in ({names}), an installed "
                             "plugin's name (entry point group tumblebench.algorithms) or an import path module:attr")


def parse_specs(items: list[str] | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``--algorithm STAGE=SPEC`` arguments (one per stage) over ``base`` (e.g. a TOML ``[algorithms]`` table)."""
    out = dict(base or {})
    seen: set[str] = set()
    for item in items or []:
        stage, sep, spec = item.partition("=")
        stage, spec = stage.strip(), spec.strip()
        if not sep or not stage or not spec:
            raise TumblebenchError(f"--algorithm {item!r}: expected STAGE=NAME or STAGE=module:attr")
        if stage in seen:
            raise TumblebenchError(f"--algorithm {stage}=…: given twice (one per stage)")
        if stage not in STAGE_METHODS:
            raise TumblebenchError(f"--algorithm {item!r}: {stage!r} is not a replaceable stage; expected one of "
                                   f"{', '.join(STAGE_METHODS)}")
        seen.add(stage)
        out[stage] = spec
    return out
