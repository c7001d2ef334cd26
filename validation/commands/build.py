"""``tumblebench build``: make a known-truth nanocrystal from a preset, a TOML spec or a structure file."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.outputs import atomic_output_dir, check_output_dir, write_manifest
from tumblebench.validation.commands.config_option import add_config_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``build``."""
    from tumblebench.simulator.builder import PRESETS

    p = subparsers.add_parser(
        "build",
        help="build a known-truth nanocrystal (truth.extxyz, truth.pdb, structure.json)",
        description=(
            "Build a nanocrystal whose every atom is known: shape, twins/faults, vacancies, adatoms, strain and "
            "a mobile surface (per-atom anisotropic U). Writes truth.extxyz (all per-atom truth arrays), "
            "truth.pdb (B = 8*pi^2*U_iso), structure.json (Wietfeldt 2024 Table 1 quantities) and manifest.json. "
            f"Presets: {', '.join(PRESETS)}."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", metavar="NAME", help="a named preset (see the list above)")
    src.add_argument("--config", type=Path, metavar="FILE", help="TOML spec (see examples/twinned.toml)")
    src.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                     help="a measured/external structure (.pdb, .xyz, .extxyz): truth arrays and mobility "
                          "model are computed for its atoms")
    p.add_argument("--element", metavar="SYMBOL",
                   help="with --from: the element of every atom, replacing the file's element column (SINGLE's "
                        "example PDBs store Pt atoms as water, element W)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    add_config_argument(p, "--penetration-depth", config="tumblebench.simulator.mobility:MobilitySpec",
                        field="penetration_depth_A", type=float, metavar="A",
                        help="mobility penetration depth delta (Å); with --preset/--config it overrides the spec's")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``build``; return the exit status."""
    from tumblebench.simulator.builder import build, load_spec, preset_spec
    from tumblebench.simulator.config import check_seed, to_dict
    from tumblebench.simulator.mobility import MobilitySpec
    from tumblebench.simulator.nanocrystal import (
        load_nanocrystal,
        nanocrystal_from_atoms,
        structure_summary,
        write_truth,
    )

    check_output_dir(args.out, args.overwrite)
    check_seed(args.seed, "--seed")
    inputs: dict[str, str] = {}
    if args.from_file is not None:
        mobility = MobilitySpec()
        if args.penetration_depth is not None:
            mobility = dataclasses.replace(mobility, penetration_depth_A=args.penetration_depth)
        try:
            mobility.validate()
        except TumblebenchError as exc:
            raise TumblebenchError(f"--penetration-depth: {exc}") from None
        nc = load_nanocrystal(args.from_file, mobility=mobility, seed=args.seed, element=args.element,
                              warn=lambda msg: sys.stderr.write(f"tumblebench build: warning: {msg}\n"))
        if nc.atoms.info.get("penetration_depth") != mobility.penetration_depth_A:  # a truth file, new delta
            nc = nanocrystal_from_atoms(nc.atoms, mobility=mobility, seed=args.seed, name=args.from_file.stem,
                                        source=args.from_file.name)
        config = {"from": str(args.from_file), "element": args.element, "mobility": to_dict(mobility)}
        inputs["structure"] = str(args.from_file)
    else:
        require(args.element is None, "--element applies to --from FILE only (a preset or spec names its element)")
        spec = load_spec(args.config) if args.config is not None else preset_spec(args.preset)
        if args.penetration_depth is not None:
            spec = dataclasses.replace(
                spec, mobility=dataclasses.replace(spec.mobility, penetration_depth_A=args.penetration_depth))
        try:
            nc = build(spec, seed=args.seed)
        except TumblebenchError as exc:
            where = str(args.config) if args.config is not None else f"preset {args.preset}"
            raise TumblebenchError(f"{where}: {exc}") from None
        config = to_dict(spec)
        if args.config is not None:
            inputs["config"] = str(args.config)
    summary = structure_summary(nc)
    with atomic_output_dir(args.out, args.overwrite) as tmp:
        write_truth(nc, tmp)
        write_manifest(tmp, "build", config, args.seed, inputs, preset=args.preset, structure=summary)
    if not args.quiet:
        sys.stdout.write(
            f"{summary['name']}: {summary['n_atoms']} atoms of {summary['element']}, "
            f"diameter {summary['diameter_A']:.2f} Å, "
            f"median CN {summary['median_cn']:g}, median NN {summary['median_nn_bond_A']:.3f} Å, "
            f"median radial strain {summary['median_radial_strain_percent']:.2f} %, core ratio "
            f"{summary['core_ratio']:.2f}, a = {summary['lattice_constant_A']:.4f} Å -> {args.out}\n")
    return 0
