"""``tumblebench atoms``: unsupervised atomic model and per-atom statistics of a map (Wietfeldt et al. 2024)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.commands.algorithm_option import add_algorithm_argument, parse_specs
from tumblebench.validation.commands.config_option import add_config_argument

#: The config dataclass whose fields the options mirror (defaults and help come from it).
ATOMS = "tumblebench.analysis.config:AtomsConfig"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``atoms``."""
    p = subparsers.add_parser(
        "atoms",
        help="build the atomic model of a map and compute Wietfeldt et al. (2024)'s per-atom statistics",
        description=(
            "Find every atom of a reconstructed (or truth) map without supervision: denoising by correlation "
            "with one simulated atom, automatic particle envelope, Otsu + correlation threshold scan, "
            "splitting of merged atoms, outlier rejection; then CN, GCN, NN bond, strain against a fitted fcc "
            "lattice, local stacking, intensities, validation correlation, U_iso, anisotropic U, DOI, "
            "per-particle statistics and penetration depths. Writes atoms.pdb, atoms.extxyz, atoms_stats.csv, "
            "nanoparticle_stats.csv, cn_dependent_stats.csv (SINGLE's column names), penetration.json, "
            "atoms_summary.json and manifest.json."
        ),
    )
    p.add_argument("--map", required=True, type=Path, metavar="FILE", help="the map (MRC, voxel size in header)")
    add_config_argument(p, "--element", config=ATOMS, field="element", help="chemical symbol of the particle")
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML file with an [atoms] table (AtomsConfig)")
    p.add_argument("--sampling", type=float, metavar="A", help="voxel size (Å), instead of the header's")
    add_config_argument(p, "--resolution", config=ATOMS, field="resolution_A", type=float, metavar="A",
                        help="band limit of the map (Å); unset: estimated from the map")
    add_config_argument(p, "--mask-diameter", config=ATOMS, field="mask_diameter_A", type=float, metavar="A",
                        help="use a spherical mask of this diameter (Å) instead of the automatic envelope")
    add_config_argument(p, "--min-cn", config=ATOMS, field="min_cn", type=int, metavar="N",
                        help="discard atoms with CN below N (0: off)")
    add_config_argument(p, "--b-factor", config=ATOMS, field="b_factor",
                        choices=["b_iso", "u_iso", "valid_corr", "cn", "doi"],
                        help="quantity in the PDB B-factor column (b_iso = 8π²U_iso)")
    add_algorithm_argument(p, ("atoms",))
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``atoms``; return the exit status."""
    from tqdm import tqdm

    from tumblebench.analysis.config import AtomsConfig
    from tumblebench.analysis.io import write_atom_model
    from tumblebench.analysis.model import atom_statistics
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.outputs import check_output_dir
    from tumblebench.stages import AtomsInput, run_stage
    from tumblebench.validation.algorithms import Configs, load_with_algorithms, resolve

    check_output_dir(args.out, args.overwrite)
    cfg, specs = load_with_algorithms(AtomsConfig, args.config, table="atoms") if args.config else (AtomsConfig(), {})
    specs = parse_specs(args.algorithm, specs)
    if set(specs) - {"atoms"}:
        raise TumblebenchError(f"--algorithm {sorted(set(specs) - {'atoms'})[0]}=…: the atoms command runs only "
                               "the 'atoms' stage")
    changes: dict[str, object] = {}
    if args.element is not None:
        changes["element"] = args.element
    if args.resolution is not None:
        changes["resolution_A"] = args.resolution
    if args.mask_diameter is not None:
        changes["mask"] = "sphere"
        changes["mask_diameter_A"] = args.mask_diameter
    if args.min_cn is not None:
        changes["min_cn"] = args.min_cn
    if args.b_factor is not None:
        changes["b_factor"] = args.b_factor
    cfg = dataclasses.replace(cfg, **changes)
    try:
        cfg.validate()
    except TumblebenchError as exc:
        raise TumblebenchError(f"atoms options: {exc}") from None
    detector = resolve("atoms", specs.get("atoms", "threshold-scan"), Configs(atoms=cfg))
    vol, sampling = read_volume(args.map)
    if args.sampling is not None:
        if not args.sampling > 0:
            raise TumblebenchError(f"--sampling {args.sampling}: expected a positive voxel size in Å")
        sampling = args.sampling
    show = not args.quiet and sys.stderr.isatty()
    with tqdm(total=2, desc="atoms", disable=not show, file=sys.stderr) as bar:
        bar.set_postfix_str("model building")
        detection = run_stage("atoms", detector, AtomsInput(vol, sampling, cfg.element, str(args.map)))
        model = atom_statistics(vol, sampling, detection, cfg, where=str(args.map))
        bar.update()
        bar.set_postfix_str("writing")
        write_atom_model(model, args.out, args.overwrite, inputs={"map": str(args.map)})
        bar.update()
    if not args.quiet:
        t = model.table1
        pen = model.penetration.get("cn") or {}
        print(f"{args.out}: {t['n_atoms']} {cfg.element} atoms, diameter {t['diameter_A']:.1f} Å, "
              f"lattice constant {t['lattice_constant_A']:.4f} Å, median CN {t['median_cn']:.1f}, "
              f"core ratio {t['core_ratio']:.2f}, penetration depth (CN) "
              f"{pen.get('delta_A', float('nan')):.2f} Å")
    return 0
