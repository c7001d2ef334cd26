"""``tumblebench build``: presets, --config, --from, outputs, and one-line exit-2 errors with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from tumblebench.simulator.nanocrystal import TRUTH_ARRAYS, load_nanocrystal
from tumblebench.validation.cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["build", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_build_preset_table1_np5(tmp_path, capsys) -> None:
    out = tmp_path / "x"
    rc, stdout, _ = _run(capsys, "--preset", "table1-np5", "--seed", "3", "--out", str(out))
    assert rc == 0 and "496 atoms" in stdout
    assert {p.name for p in out.iterdir()} == {"truth.extxyz", "truth.pdb", "structure.json", "manifest.json"}
    s = json.loads((out / "structure.json").read_text())
    assert s["n_atoms"] == 496 and abs(s["diameter_A"] / 26.0 - 1) < 0.05
    for key in ("median_cn", "median_nn_bond_A", "median_radial_strain_percent", "core_ratio", "lattice_constant_A"):
        assert key in s
    atoms = ase.io.read(out / "truth.extxyz")
    assert all(k in atoms.arrays for k in TRUTH_ARRAYS)
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "build" and m["seed"] == 3 and m["config"]["name"] == "table1-np5"


def test_build_config_example(tmp_path, capsys) -> None:
    out = tmp_path / "tw"
    rc, _, _ = _run(capsys, "--config", str(ROOT / "examples" / "twinned.toml"), "--seed", "1", "--out", str(out))
    assert rc == 0
    nc = load_nanocrystal(out / "truth.extxyz")
    assert nc.atoms.info["name"] == "twinned-example"
    assert len(np.unique(nc.array("grain"))) == 4  # two twins + one fault
    assert np.sum(nc.array("stacking") == "hcp") > 100


def test_build_from_real_particle(tmp_path, capsys) -> None:
    out = tmp_path / "real"
    rc, _, _ = _run(capsys, "--from", str(DATA / "stage1_docked_ATMS.pdb"), "--out", str(out))
    assert rc == 0
    nc = load_nanocrystal(out / "truth.extxyz")
    assert nc.n_atoms == 314
    assert np.median(nc.array("cn")) == 10
    assert np.median(nc.array("nn_bond")) == pytest.approx(2.68, abs=0.005)
    assert 3.9 < nc.lattice_constant < 4.05
    u = nc.U
    assert np.all(np.linalg.eigvalsh(u)[:, 0] > 0)
    s = json.loads((out / "structure.json").read_text())
    assert s["median_cn"] == 10 and s["n_atoms"] == 314
    # an .xyz of bare atoms is accepted too and gives the same CN
    xyz = tmp_path / "bare.xyz"
    ase.io.write(xyz, ase.io.read(DATA / "stage1_docked_ATMS.pdb"), format="xyz")
    rc, _, _ = _run(capsys, "--from", str(xyz), "--out", str(tmp_path / "bare"))
    assert rc == 0
    assert np.array_equal(load_nanocrystal(tmp_path / "bare" / "truth.extxyz").array("cn"), nc.array("cn"))


def _toml(tmp_path: Path, text: str) -> str:
    p = tmp_path / "spec.toml"
    p.write_text(text)
    return str(p)


def test_build_from_single_pdb_with_element(tmp_path, capsys) -> None:
    """SINGLE's example PDB stores its Pt atoms as water (element W): --element Pt makes them Pt."""
    src = DATA / "COM_trunc-octa-3_2.7nm.pdb"
    assert set(ase.io.read(src).get_chemical_symbols()) == {"W"}  # what the file says
    out = tmp_path / "pt"
    rc, _, _ = _run(capsys, "--from", str(src), "--element", "Pt", "--out", str(out))
    assert rc == 0
    nc = load_nanocrystal(out / "truth.extxyz")
    assert set(nc.atoms.get_chemical_symbols()) == {"Pt"} and nc.n_atoms == 586
    assert nc.lattice_constant == pytest.approx(3.912, abs=1e-3)  # SINGLE's Pt lattice (PROVENANCE.md)
    # the strain refers to Pt's bulk 3.924 Å now, not to the fitted lattice of an element without a table entry
    assert np.median(nc.array("radial_strain")) == pytest.approx(3.912 / 3.924 - 1, abs=1e-3)
    assert json.loads((out / "manifest.json").read_text())["config"]["element"] == "Pt"


@pytest.mark.parametrize("case", ["element", "size", "tiny", "strain", "depth", "unreadable", "missing", "exists",
                                  "unknown-key", "preset", "from-element", "preset-element"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case: str) -> None:
    out = tmp_path / "out"
    args: list[str]
    if case == "element":
        args = ["--config", _toml(tmp_path, 'element = "Xx"\n')]
    elif case == "size":
        args = ["--config", _toml(tmp_path, '[shape]\nkind = "sphere"\ndiameter_A = -5.0\n')]
    elif case == "tiny":
        args = ["--config", _toml(tmp_path, '[shape]\nkind = "sphere"\ndiameter_A = 4.0\n')]
    elif case == "strain":
        args = ["--config", _toml(tmp_path, "[strain]\nuniform = 0.15\n")]
    elif case == "depth":
        args = ["--preset", "default", "--penetration-depth", "40"]
    elif case == "unreadable":
        bad = tmp_path / "bad.pdb"
        bad.write_text("this is not a structure\n")
        args = ["--from", str(bad)]
    elif case == "missing":
        args = ["--from", str(tmp_path / "nothing.xyz")]
    elif case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("keep")
        args = ["--preset", "default"]
    elif case == "from-element":
        args = ["--from", str(DATA / "COM_trunc-octa-3_2.7nm.pdb"), "--element", "Qq"]
    elif case == "preset-element":
        args = ["--preset", "default", "--element", "Pt"]
    elif case == "unknown-key":
        args = ["--config", _toml(tmp_path, "[strain]\nuniformm = 0.01\n")]
    else:
        args = ["--preset", "no-such-preset"]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = _run(capsys, *args, "--out", str(out))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no partial directory
    if case == "exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_overwrite(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert _run(capsys, "--preset", "icosahedron", "--out", str(out))[0] == 0
    assert _run(capsys, "--preset", "cuboctahedron", "--out", str(out), "--overwrite")[0] == 0
    assert json.loads((out / "structure.json").read_text())["name"] == "cuboctahedron"


@pytest.mark.parametrize("name", ["twinned.toml", "icosahedron.toml"])
def test_example_specs_are_valid(name: str) -> None:
    from tumblebench.simulator.builder import NanocrystalSpec, load_spec

    spec = load_spec(ROOT / "examples" / name)
    assert isinstance(spec, NanocrystalSpec)
    assert spec.name != "default"
