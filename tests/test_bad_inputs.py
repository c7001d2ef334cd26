"""A catalogue of bad inputs across every sub-command (117 cases): each one exits 2 with exactly one line on stderr, no
traceback, and leaves nothing in the output path (and no hidden partial directory beside it).

Every case fails before any heavy work (the checks run on load), so the whole file takes seconds: the cases
call :func:`tumblebench.validation.cli.main` in-process; a handful run the real ``tumblebench`` entry point in a
subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ase
import ase.cluster
import ase.io
import numpy as np
import pandas as pd
import pytest

from tumblebench.simulator.config import available_memory
from tumblebench.simulator.mrc import MrcStackWriter, write_volume
from tumblebench.simulator.nanocrystal import load_nanocrystal, write_truth
from tumblebench.simulator.series import SeriesConfig, series_memory_bytes
from tumblebench.simulator.star import image_names, write_star
from tumblebench.simulator.truth_map import particle_radius
from tumblebench.validation.cli import main

DATA = Path(__file__).resolve().parent / "data"


# ------------------------------------------------------------------------------------------------ fixtures


def _pt_cluster() -> ase.Atoms:
    """A truncated octahedron of Pt (fcc, NN 2.77 Å) as plain ase.Atoms."""
    return ase.Atoms(ase.cluster.Octahedron("Pt", 5, cutoff=2, latticeconstant=3.924))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Small valid inputs of every kind, written once (a particle, a frame stack with its STAR file, a map, an
    atom model and a run directory)."""
    d = tmp_path_factory.mktemp("inputs")
    files: dict[str, Path] = {"dir": d}
    cluster = _pt_cluster()
    xyz = d / "pt.xyz"
    ase.io.write(xyz, cluster, format="extxyz")
    files["xyz"] = xyz
    nc = load_nanocrystal(xyz)
    (d / "particle").mkdir()
    write_truth(nc, d / "particle")
    files["truth"] = d / "particle" / "truth.extxyz"
    # a 4-frame stack of 32² px at 0.358 Å and its STAR file
    n, m = 4, 32
    with MrcStackWriter(d / "frames.mrcs", n, m, m, 0.358) as w:
        w.write(0, np.random.default_rng(0).poisson(8.0, (n, m, m)).astype(np.float32))
    files["frames"] = d / "frames.mrcs"
    files["star"] = _star(d / "frames.star", image_names(n, "frames.mrcs"))
    # a map and an atom model
    write_volume(d / "map.mrc", np.random.default_rng(1).normal(size=(32, 32, 32)).astype(np.float32), 0.358)
    files["map"] = d / "map.mrc"
    files["atoms"] = _atoms_dir(d / "atoms", cluster.positions + 10.0)
    return files


def _star(path: Path, names: list[str], sampling: float = 0.358) -> Path:
    n = len(names)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0], "rlnSphericalAberration": [-0.015],
                           "rlnAmplitudeContrast": [0.0], "rlnImagePixelSize": [sampling], "rlnImageSize": [32],
                           "tbMode": ["projection"], "tbBoxSize": [32]})
    z = np.zeros(n)
    particles = pd.DataFrame({"rlnImageName": names, "rlnAngleRot": z, "rlnAngleTilt": z, "rlnAnglePsi": z,
                              "rlnCoordinateX": z + 16, "rlnCoordinateY": z + 16, "rlnOriginXAngst": z,
                              "rlnOriginYAngst": z, "rlnDefocusU": z, "rlnDefocusV": z, "rlnDefocusAngle": z,
                              "rlnOpticsGroup": np.ones(n, int), "tbTime": z, "tbDose": z + 1,
                              "tbCumulativeDose": z + 1, "tbLiquidThickness": z, "tbHeight": z})
    write_star(path, optics, particles)
    return path


def _atoms_dir(path: Path, positions: np.ndarray, element: str | None = "Pt", extra: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"INDEX": np.arange(1, len(positions) + 1), "CN_STD": np.full(len(positions), 12),
                       "X": positions[:, 0], "Y": positions[:, 1], "Z": positions[:, 2]})
    for k, v in (extra or {}).items():
        df[k] = v
    df.to_csv(path / "atoms_stats.csv", index=False)
    if element is not None:
        (path / "manifest.json").write_text(json.dumps({"stage": "atoms", "element": element}))
    return path


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _toml(d: Path, text: str | bytes, name: str = "c.toml") -> str:
    return str(_write(d / name, text))


def _bad_structure(d: Path, kind: str) -> str:
    """Structure files that read but cannot be a nanocrystal."""
    atoms = _pt_cluster()
    if kind == "duplicate":
        atoms += ase.Atoms("Pt", positions=[atoms.positions[3] + [0.1, 0, 0]])
    elif kind == "element-x":
        atoms.set_chemical_symbols(["X"] * len(atoms))
    elif kind == "nn":  # positions in the wrong unit (×1.8: NN 5 Å)
        atoms.positions *= 1.8
    elif kind == "nan":
        atoms.arrays["U"] = np.full((len(atoms), 9), 0.01)
        atoms.arrays["U"][7, 4] = np.nan
    elif kind == "small":
        atoms = atoms[:5]
    path = d / f"{kind}.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    if kind == "unknown":  # an element symbol nobody knows
        path.write_text("13\n\n" + "".join(f"Qq {i * 2.8:.3f} 0.0 0.0\n" for i in range(13)))
    return str(path)


# ------------------------------------------------------------------------------------------------- the cases

Case = Callable[[dict[str, Path], Path], list[str]]  # (inputs, scratch dir) -> argv; the output is scratch/out

PROC = "/proc/tumblebench-out"


def _out(d: Path) -> str:
    return str(d / "out")


def _nested_out(d: Path) -> str:
    return str(d / "no-such-parent" / "out")


def _file_parent(d: Path) -> str:
    _write(d / "a-file", "x")
    return str(d / "a-file" / "out")


def _existing_file(d: Path) -> str:
    _write(d / "out", "x")
    return str(d / "out")


CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- build (20)
    "build/seed-negative": lambda f, d: ["build", "--preset", "default", "--seed", "-1", "--out", _out(d)],
    "build/seed-huge": lambda f, d: ["build", "--preset", "default", "--seed", str(2**63), "--out", _out(d)],
    "build/out-missing-parent": lambda f, d: ["build", "--preset", "default", "--out", _nested_out(d)],
    "build/out-under-proc": lambda f, d: ["build", "--preset", "default", "--out", PROC],
    "build/out-parent-is-file": lambda f, d: ["build", "--preset", "default", "--out", _file_parent(d)],
    "build/out-is-file": lambda f, d: ["build", "--preset", "default", "--out", _existing_file(d)],
    "build/config-is-dir": lambda f, d: ["build", "--config", str(d), "--out", _out(d)],
    "build/config-not-utf8": lambda f, d: ["build", "--config", _toml(d, b"element = \"Pt\xff\xfe\"\n"),
                                           "--out", _out(d)],
    "build/config-binary": lambda f, d: ["build", "--config", _toml(d, bytes(range(256))), "--out", _out(d)],
    "build/config-nan": lambda f, d: ["build", "--config", _toml(d, "[strain]\nuniform = nan\n"), "--out", _out(d)],
    "build/config-huge-diameter": lambda f, d: ["build", "--config",
                                                _toml(d, '[shape]\nkind = "sphere"\ndiameter_A = 1e6\n'),
                                                "--out", _out(d)],
    "build/from-duplicate-atoms": lambda f, d: ["build", "--from", _bad_structure(d, "duplicate"), "--out", _out(d)],
    "build/from-element-x": lambda f, d: ["build", "--from", _bad_structure(d, "element-x"), "--out", _out(d)],
    "build/from-unknown-element": lambda f, d: ["build", "--from", _bad_structure(d, "unknown"), "--out", _out(d)],
    "build/from-absurd-nn": lambda f, d: ["build", "--from", _bad_structure(d, "nn"), "--out", _out(d)],
    "build/from-nan-array": lambda f, d: ["build", "--from", _bad_structure(d, "nan"), "--out", _out(d)],
    "build/from-too-small": lambda f, d: ["build", "--from", _bad_structure(d, "small"), "--out", _out(d)],
    "build/from-directory": lambda f, d: ["build", "--from", str(_mkdir(d / "s.xyz")), "--out", _out(d)],
    "build/from-garbage-pdb": lambda f, d: ["build", "--from", str(_write(d / "g.pdb", bytes(range(256)) * 4)),
                                            "--out", _out(d)],
    "build/from-element-x-flag": lambda f, d: ["build", "--from", str(f["xyz"]), "--element", "X", "--out", _out(d)],
    # ---------------------------------------------------------------- simulate (22)
    "simulate/seed-negative": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--seed", "-5",
                                            "--out", _out(d)],
    "simulate/seed-huge": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--seed", str(2**70),
                                        "--out", _out(d)],
    "simulate/frames-zero": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--frames", "0",
                                          "--out", _out(d)],
    "simulate/frames-huge": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--frames", "10000000",
                                          "--out", _out(d)],
    "simulate/dose-zero": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--dose-per-frame", "0",
                                        "--out", _out(d)],
    "simulate/dose-inf": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--dose-per-frame", "inf",
                                       "--out", _out(d)],
    "simulate/dose-nan": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--dose-per-frame", "nan",
                                       "--out", _out(d)],
    "simulate/pixel-100": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                        _toml(d, "[acquisition]\nsampling = 100.0\n"), "--out", _out(d)],
    "simulate/pixel-tiny": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                         _toml(d, "[acquisition]\nsampling = 0.001\n"), "--out", _out(d)],
    "simulate/field-huge": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                         _toml(d, "[acquisition]\nfield_px = 100000\n"), "--out", _out(d)],
    "simulate/field-beyond-300nm": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                                 _toml(d, "[acquisition]\nfield_px = 4096\nsampling = 1.0\n"),
                                                 "--out", _out(d)],
    "simulate/box-huge": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                       _toml(d, "[acquisition]\nbox_size_px = 1024\nfield_px = 2048\n"),
                                       "--out", _out(d)],
    "simulate/frame-rate-huge": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                              _toml(d, "[acquisition]\nframe_rate_hz = 1e9\n"), "--out", _out(d)],
    "simulate/liquid-huge": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                          _toml(d, "[liquid]\ninitial_thickness_A = 1e7\n"), "--out", _out(d)],
    "simulate/config-inf": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                         _toml(d, "[liquid]\nfinal_thickness_A = inf\n"), "--out", _out(d)],
    "simulate/config-is-dir": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config", str(d),
                                            "--out", _out(d)],
    "simulate/config-not-utf8": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                              _toml(d, b"[acquisition]\n# \xc3\x28\n"), "--out", _out(d)],
    "simulate/config-table-not-table": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--config",
                                                     _toml(d, "acquisition = 3\n"), "--out", _out(d)],
    "simulate/out-under-proc": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--out", PROC],
    "simulate/out-missing-parent": lambda f, d: ["simulate", "--structure", str(f["truth"]), "--out", _nested_out(d)],
    "simulate/structure-duplicates": lambda f, d: ["simulate", "--structure", _bad_structure(d, "duplicate"),
                                                   "--out", _out(d)],
    "simulate/structure-nan": lambda f, d: ["simulate", "--structure", _bad_structure(d, "nan"), "--out", _out(d)],
    # ---------------------------------------------------------------- reconstruct (16)
    "reconstruct/seed-negative": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--seed", "-1",
                                               "--out", _out(d)],
    "reconstruct/seed-huge": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--seed", str(2**64),
                                           "--out", _out(d)],
    "reconstruct/box-huge": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--box", "4096",
                                          "--out", _out(d)],
    "reconstruct/box-bigger-than-frames": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--box", "64",
                                                        "--out", _out(d)],
    "reconstruct/config-is-dir": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--config", str(d),
                                               "--out", _out(d)],
    "reconstruct/config-not-utf8": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--config",
                                                 _toml(d, b"box = 64 # \xff\n"), "--out", _out(d)],
    "reconstruct/config-diameter-huge": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--config",
                                                      _toml(d, "diameter_A = 1e5\n"), "--out", _out(d)],
    "reconstruct/frames-not-mrc": lambda f, d: ["reconstruct", "--frames", str(_write(d / "x.mrcs", b"\0" * 2048)),
                                                "--out", _out(d)],
    "reconstruct/frames-missing": lambda f, d: ["reconstruct", "--frames", str(d / "none.mrcs"), "--out", _out(d)],
    "reconstruct/star-other-stack": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--star",
                                                  str(_star(d / "o.star", image_names(4, "other.mrcs"))),
                                                  "--out", _out(d)],
    "reconstruct/star-repeated-index": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--star",
                                                     str(_star(d / "r.star", [f"{i}@frames.mrcs" for i in
                                                                              (1, 2, 2, 4)])), "--out", _out(d)],
    "reconstruct/star-index-beyond": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--star",
                                                   str(_star(d / "b.star", [f"{i}@frames.mrcs" for i in
                                                                            (1, 2, 3, 9)])), "--out", _out(d)],
    "reconstruct/star-bad-name": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--star",
                                               str(_star(d / "n.star", ["frames.mrcs", "a@b", "3@", "-4@frames.mrcs"])),
                                               "--out", _out(d)],
    "reconstruct/star-pixel-mismatch": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--star",
                                                     str(_star(d / "p.star", image_names(4, "frames.mrcs"), 0.5)),
                                                     "--out", _out(d)],
    "reconstruct/out-under-proc": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--out", PROC],
    "reconstruct/out-is-file": lambda f, d: ["reconstruct", "--frames", str(f["frames"]), "--out", _existing_file(d)],
    # ---------------------------------------------------------------- atoms (10)
    "atoms/element-x": lambda f, d: ["atoms", "--map", str(f["map"]), "--element", "X", "--out", _out(d)],
    "atoms/element-unknown": lambda f, d: ["atoms", "--map", str(f["map"]), "--element", "Qq", "--out", _out(d)],
    "atoms/voxel-negative": lambda f, d: ["atoms", "--map", str(f["map"]), "--sampling", "-1", "--out", _out(d)],
    "atoms/voxel-huge": lambda f, d: ["atoms", "--map", str(f["map"]), "--sampling", "100", "--out", _out(d)],
    "atoms/resolution-huge": lambda f, d: ["atoms", "--map", str(f["map"]), "--resolution", "100", "--out", _out(d)],
    "atoms/map-not-mrc": lambda f, d: ["atoms", "--map", str(_write(d / "m.mrc", "not a map")), "--out", _out(d)],
    "atoms/map-missing": lambda f, d: ["atoms", "--map", str(d / "none.mrc"), "--out", _out(d)],
    "atoms/config-is-dir": lambda f, d: ["atoms", "--map", str(f["map"]), "--config", str(d), "--out", _out(d)],
    "atoms/config-table-not-table": lambda f, d: ["atoms", "--map", str(f["map"]), "--config",
                                                  _toml(d, "atoms = 1\n"), "--out", _out(d)],
    "atoms/out-missing-parent": lambda f, d: ["atoms", "--map", str(f["map"]), "--out", _nested_out(d)],
    # ---------------------------------------------------------------- atoms-compare (12)
    "atoms-compare/missing": lambda f, d: ["atoms-compare", str(f["atoms"]), str(d / "none"), "--out", _out(d)],
    "atoms-compare/not-csv": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                           str(_write(_mkdir(d / "b") / "atoms_stats.csv", bytes(range(256)) * 8)),
                                           "--out", _out(d)],
    "atoms-compare/empty-csv": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                             str(_write(_mkdir(d / "b") / "atoms_stats.csv", "")), "--out", _out(d)],
    "atoms-compare/no-xyz": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                          str(_write(_mkdir(d / "b") / "atoms_stats.csv", "A,B\n1,2\n")),
                                          "--out", _out(d)],
    "atoms-compare/nan-position": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                                str(_atoms_dir(d / "b", _with_nan(_pt_cluster().positions))),
                                                "--out", _out(d)],
    "atoms-compare/duplicated-atoms": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                                    str(_atoms_dir(d / "b", np.vstack([_pt_cluster().positions,
                                                                                       _pt_cluster().positions[:1]]))),
                                                    "--out", _out(d)],
    "atoms-compare/absurd-nn": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                             str(_atoms_dir(d / "b", _pt_cluster().positions * 3.0)), "--out", _out(d)],
    "atoms-compare/text-in-number-column": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                                         str(_atoms_dir(d / "b", _pt_cluster().positions,
                                                                        extra={"U_ISO": "x"})),
                                                         "--out", _out(d)],
    "atoms-compare/manifest-element-x": lambda f, d: ["atoms-compare", str(f["atoms"]),
                                                      str(_atoms_dir(d / "b", _pt_cluster().positions, "X")),
                                                      "--out", _out(d)],
    "atoms-compare/max-dist-zero": lambda f, d: ["atoms-compare", str(f["atoms"]), str(f["atoms"]), "--max-dist",
                                                 "0", "--out", _out(d)],
    "atoms-compare/out-missing-parent": lambda f, d: ["atoms-compare", str(f["atoms"]), str(f["atoms"]),
                                                      "--out", _nested_out(d)],
    "atoms-compare/out-is-dir": lambda f, d: ["atoms-compare", str(f["atoms"]), str(f["atoms"]),
                                              "--out", str(_mkdir(d / "out"))],
    # ---------------------------------------------------------------- demo (6)
    "demo/seed-negative": lambda f, d: ["demo", "--seed", "-1", "--out", _out(d)],
    "demo/seed-huge": lambda f, d: ["demo", "--seed", str(2**63), "--out", _out(d)],
    "demo/frames-too-few": lambda f, d: ["demo", "--frames", "10", "--out", _out(d)],
    "demo/out-under-proc": lambda f, d: ["demo", "--out", PROC],
    "demo/out-missing-parent": lambda f, d: ["demo", "--out", _nested_out(d)],
    "demo/out-parent-is-file": lambda f, d: ["demo", "--out", _file_parent(d)],
    # ---------------------------------------------------------------- score (10)
    "score/structure-not-json": lambda f, d: ["score", _run_dir(d, {"particle/structure.json": "{nope"})],
    "score/structure-not-utf8": lambda f, d: ["score", _run_dir(d, {"particle/structure.json": b"\xff\xfe{}"})],
    "score/structure-a-list": lambda f, d: ["score", _run_dir(d, {"particle/structure.json": "[1, 2]"})],
    "score/structure-missing-field": lambda f, d: ["score", _run_dir(d, {"particle/structure.json": "{}"})],
    "score/structure-text-count": lambda f, d: ["score", _run_dir(d, {"particle/structure.json": json.dumps(
        {"n_atoms": "many", "diameter_A": 1, "lattice_constant_A": 3.9, "median_cn": 9, "core_ratio": 0.5})})],
    "score/timing-text": lambda f, d: ["score", _run_dir(d, {"timing.json": '{"build": "fast"}'})],
    "score/frames-star-garbage": lambda f, d: ["score", _run_dir(d, {"series/frames.star": bytes(range(256))})],
    "score/poses-other-stack": lambda f, d: ["score", _run_dir(d, {
        "series/frames.star": f["star"], "recon/poses.star": _star(d / "e.star", image_names(4, "other.mrcs"))})],
    "score/poses-index-beyond": lambda f, d: ["score", _run_dir(d, {
        "series/frames.star": f["star"],
        "recon/poses.star": _star(d / "e.star", [f"{i}@frames.mrcs" for i in (1, 2, 3, 7)])})],
    "score/atom-events-text": lambda f, d: ["score", _run_dir(d, {
        "particle/truth.extxyz": f["truth"], "particle/structure.json": f["truth"].parent / "structure.json",
        "series/truth_map.mrc": f["map"], "series/frames.star": f["star"],
        "series/atom_events.csv": "frame,atom_index,event\n3,banana,dissolved\n",
        "atoms/atoms_stats.csv": f["atoms"] / "atoms_stats.csv"})],
    # ---------------------------------------------------------------- bench (8)
    "bench/suite-unknown": lambda f, d: ["bench", "--suite", "nonesuch", "--out", _out(d)],
    "bench/suite-is-dir": lambda f, d: ["bench", "--suite", str(_mkdir(d / "s.toml")), "--out", _out(d)],
    "bench/suite-not-utf8": lambda f, d: ["bench", "--suite", _toml(d, b"name = \"\xff\"\n", "s.toml"),
                                          "--out", _out(d)],
    "bench/out-under-proc": lambda f, d: ["bench", "--suite", "quick", "--out", PROC],
    "bench/out-missing-parent": lambda f, d: ["bench", "--suite", "quick", "--out", _nested_out(d)],
    "bench/compare-results-not-json": lambda f, d: ["bench", "compare",
                                                    str(_write(_mkdir(d / "a") / "results.json", "{").parent),
                                                    str(_write(_mkdir(d / "b") / "results.json", "{").parent)],
    "bench/compare-rows-without-case": lambda f, d: ["bench", "compare", *(
        str(_write(_mkdir(d / x) / "results.json", '{"cases": [{"recall": 1}]}').parent) for x in "ab")],
    "bench/rescore-case-unfinished": lambda f, d: ["bench", "rescore", str(_write(
        _mkdir(d / "a") / "results.json", '{"suite": "s", "version": 1, "cases": [{"case": "x"}]}').parent)],
    # ---------------------------------------------------------------- regress (3)
    "regress/golden-missing": lambda f, d: ["regress", "--golden", str(d / "none")],
    "regress/golden-suite-not-utf8": lambda f, d: ["regress", "--golden", str(_write(
        _mkdir(d / "g") / "suite.toml", b"name = 1 # \xfe\n").parent)],
    "regress/golden-suite-bad-toml": lambda f, d: ["regress", "--golden", str(_write(
        _mkdir(d / "g") / "suite.toml", "name = [\n").parent)],
    # ---------------------------------------------------------------- study (3)
    "study/out-missing-parent": lambda f, d: ["study", "table1", "--out", _nested_out(d)],
    "study/out-under-proc": lambda f, d: ["study", "table1", "--out", PROC],
    "study/frames-too-few": lambda f, d: ["study", "table1", "--frames", "10", "--out", _out(d)],
    # ---------------------------------------------------------------- dataset (5)
    "dataset/n-zero": lambda f, d: ["dataset", "--spec", _toml(d, ""), "--n", "0", "--out", _out(d)],
    "dataset/spec-is-dir": lambda f, d: ["dataset", "--spec", str(d), "--n", "2", "--out", _out(d)],
    "dataset/spec-not-utf8": lambda f, d: ["dataset", "--spec", _toml(d, b"[dataset]\nseed = 1 # \xff\n"),
                                           "--n", "2", "--out", _out(d)],
    "dataset/spec-missing": lambda f, d: ["dataset", "--spec", str(d / "none.toml"), "--n", "2", "--out", _out(d)],
    "dataset/out-under-proc": lambda f, d: ["dataset", "--spec", _toml(d, ""), "--n", "2", "--out", PROC],
    # ---------------------------------------------------------------- report (5)
    "report/missing": lambda f, d: ["report", str(d / "none")],
    "report/not-a-run-dir": lambda f, d: ["report", str(_mkdir(d / "empty"))],
    "report/structure-not-json": lambda f, d: ["report", _run_dir(d, {"particle/structure.json": "{nope"})],
    "report/not-a-run": lambda f, d: ["report", _run_dir(d, {"notes.txt": "hello"})],
    "report/fsc-csv-garbage": lambda f, d: ["report", _run_dir(d, {
        "series/frames.star": f["star"], "series/truth_map.mrc": f["map"], "recon/map.mrc": f["map"],
        "recon/fsc.csv": "frequency_per_A,fsc_half\n0.1,high\n"})],
}


def _with_nan(positions: np.ndarray) -> np.ndarray:
    out = positions.copy()
    out[2, 1] = np.nan
    return out


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _run_dir(d: Path, files: dict[str, str | bytes | Path]) -> str:
    """A run directory holding ``files`` (text, bytes, or a file to copy)."""
    root = d / "run"
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            target.write_bytes(content.read_bytes())
        else:
            _write(target, content)
    return str(root)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(d.rglob("*"))}


def _commands(cases: dict[str, Case]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in cases:
        counts[name.split("/")[0]] = counts.get(name.split("/")[0], 0) + 1
    return counts


def test_catalogue_covers_every_command() -> None:
    """At least 60 cases, and every sub-command of the CLI has some."""
    from tumblebench.validation.commands import COMMANDS

    counts = _commands(CASES)
    assert sum(counts.values()) >= 60
    assert set(counts) == {c.replace("_", "-") for c in COMMANDS}, counts


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written(case: str, inputs, tmp_path, capsys) -> None:
    if case.startswith("dataset/"):
        pytest.importorskip("zarr", reason="the dataset command needs the dask extra (zarr)")
    argv = CASES[case](inputs, tmp_path)
    before = _snapshot(tmp_path)
    rc = main(argv)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 2, (case, out.err)
    assert len(lines) == 1, out.err
    assert "error" in lines[0] and "Traceback" not in out.err
    # nothing written: the scratch directory (which holds the output path and any partial directory beside it)
    # is byte for byte what it was
    assert _snapshot(tmp_path) == before, case
    assert not Path(PROC).exists()


# ------------------------------------------------------------------------------------- specific messages


@pytest.mark.parametrize(("case", "words"), [
    ("simulate/pixel-100", ["sampling", "100", "[0.05, 2]"]),
    ("simulate/seed-negative", ["--seed", "-5", "2**63"]),
    ("build/from-duplicate-atoms", ["duplicate.extxyz", "0.100 Å apart"]),
    ("build/from-absurd-nn", ["nn.extxyz", "nearest-neighbour", "Pt"]),
    ("build/from-nan-array", ["nan.extxyz", "'U'", "atom 8"]),
    ("build/from-element-x", ["element-x.extxyz", "'X'"]),
    ("build/config-not-utf8", ["c.toml", "UTF-8"]),
    ("reconstruct/star-other-stack", ["o.star", "other.mrcs", "frames.mrcs"]),
    ("atoms-compare/text-in-number-column", ["atoms_stats.csv", "U_ISO", "row 1"]),
    ("score/structure-text-count", ["structure.json", "n_atoms", "'many'"]),
    ("score/timing-text", ["timing.json", "'build'", "number"]),
    ("score/atom-events-text", ["atom_events.csv", "atom_index", "banana"]),
])
def test_the_line_names_the_file_field_and_expectation(case: str, words: list[str], inputs, tmp_path,
                                                       capsys) -> None:
    assert main(CASES[case](inputs, tmp_path)) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)


def test_a_run_too_big_for_the_machine_is_refused_before_it_starts(inputs, tmp_path, capsys) -> None:
    """An 8192² field at 0.358 Å (293 nm, inside every range) needs ~50 GB per rendering process for its field
    arrays: the estimate is checked against the available memory before anything is allocated."""
    config = SeriesConfig()
    config = dataclasses.replace(config, acquisition=dataclasses.replace(config.acquisition, field_px=8192))
    radius = particle_radius(load_nanocrystal(inputs["truth"]))
    if series_memory_bytes(config, radius)["total"] <= available_memory():
        pytest.skip("this machine has the memory for an 8192² field")
    toml = _toml(tmp_path, "[acquisition]\nfield_px = 8192\n")
    assert main(["simulate", "--structure", str(inputs["truth"]), "--config", toml, "--out", _out(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "GB" in err and "field_px" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["simulate/pixel-100", "reconstruct/star-other-stack", "score/structure-not-json"])
def test_real_entry_point(case: str, inputs, tmp_path) -> None:
    """The installed console script behaves as the in-process calls: exit 2, one line, no traceback."""
    argv = CASES[case](inputs, tmp_path)
    before = _snapshot(tmp_path)
    res = subprocess.run([sys.executable, "-m", "tumblebench.validation.cli", *argv], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------- the STAR's image names


def test_star_rows_in_another_order_are_read_in_frame_order(inputs, tmp_path) -> None:
    """RELION matches rows to images by rlnImageName: a shuffled table gives the same frame-ordered rows."""
    from tumblebench.simulator.star import order_by_frame, read_star

    _, particles = read_star(inputs["star"])
    particles = particles.assign(rlnAngleRot=np.arange(len(particles), dtype=float) * 10.0)
    shuffled = particles.iloc[[2, 0, 3, 1]].reset_index(drop=True)
    ordered = order_by_frame(shuffled, "x.star", "frames.mrcs", 4)
    pd.testing.assert_frame_equal(ordered, particles)


# ------------------------------------------------------------------------------ the element column of a PDB


def test_a_pdb_of_water_named_tungsten_warns_and_the_summary_names_the_element(tmp_path, capsys) -> None:
    """SINGLE's COM_trunc-octa PDB: Pt atoms written as water (OW WAT), element column W. Built as is, the
    summary says W and one warning line suggests --element; with --element Pt there is no warning."""
    src = DATA / "COM_trunc-octa-3_2.7nm.pdb"
    assert main(["build", "--from", str(src), "--out", str(tmp_path / "w")]) == 0
    out = capsys.readouterr()
    warning = out.err.strip().splitlines()
    assert len(warning) == 1 and "warning" in warning[0] and "--element" in warning[0]
    assert "WAT" in warning[0] and "bcc" in warning[0]
    assert "atoms of W" in out.out
    assert main(["build", "--from", str(src), "--element", "Pt", "--out", str(tmp_path / "pt")]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "atoms of Pt" in out.out


def test_a_real_pt_pdb_gives_no_warning(tmp_path, capsys) -> None:
    assert main(["build", "--from", str(DATA / "stage1_docked_ATMS.pdb"), "--out", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().err == ""


def test_memory_estimate_covers_the_graphene_lattice_of_a_coarse_sampling() -> None:
    """At 100 Å per pixel the default 192-px field spans 19,200 Å and the graphene sheets' lattice grid is the
    25,501² cells that once exhausted 23 GB: the estimate counts them (160 B per cell), so that this run, were
    it not refused by the sampling range first, would be refused by memory; the default run needs a few GB."""
    config = SeriesConfig()
    coarse = dataclasses.replace(config, acquisition=dataclasses.replace(config.acquisition, sampling=100.0))
    est = series_memory_bytes(coarse, 14.0, 1)
    assert est["graphene_lattice"] == pytest.approx(160.0 * 25_501**2)
    assert est["total"] > 100e9
    assert series_memory_bytes(config, 14.0, 2)["total"] < 3e9
