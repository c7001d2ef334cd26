"""Property-based fuzzing of every reader: whatever the bytes, a reader returns or raises TumblebenchError.

Readers: MRC volumes and stacks, STAR files (and the matching of their rows to stack frames), structure files
(PDB, XYZ, extended XYZ, the truth file), TOML configs of every stage, and the CSV and JSON files that
``score`` and ``atoms-compare`` read. Inputs are random bytes, and valid files with random edits (bytes flipped,
lines cut, numbers replaced by text, NaN, infinities or huge values), which reach deeper into the readers.
``max_examples`` is kept small so that the file runs in seconds; ``HYPOTHESIS_PROFILE=explore`` draws fresh
examples and ``TUMBLEBENCH_FUZZ_EXAMPLES=N`` draws N per reader.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import ase
import ase.cluster
import ase.io
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.io import read_atoms, read_penetration
from tumblebench.reconstruct.config import ReconstructConfig
from tumblebench.simulator.builder import NanocrystalSpec
from tumblebench.simulator.config import load_config
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import MrcStackWriter, open_stack, read_volume, write_volume
from tumblebench.simulator.nanocrystal import load_nanocrystal, read_structure, write_truth
from tumblebench.simulator.series import SeriesConfig
from tumblebench.simulator.star import image_names, order_by_frame, read_star, write_star
from tumblebench.validation.scorecard import RunLayout, read_atom_events, score_structure

#: examples per reader (``TUMBLEBENCH_FUZZ_EXAMPLES`` raises it for a longer search)
FUZZ = settings(max_examples=int(os.environ.get("TUMBLEBENCH_FUZZ_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="tumblebench-fuzz-"))


def _only_project_errors(fn: Callable[[], object]) -> None:
    try:
        fn()
    except TumblebenchError as exc:
        assert str(exc).strip(), "an error must say what is wrong"


# ------------------------------------------------------------------------------------------ valid seeds

def _pt() -> ase.Atoms:
    return ase.Atoms(ase.cluster.Octahedron("Pt", 5, cutoff=2, latticeconstant=3.924))


def _mrc_bytes(stack: bool) -> bytes:
    d = _scratch()
    if stack:
        with MrcStackWriter(d / "s.mrcs", 3, 16, 16, 0.358) as w:
            w.write(0, np.ones((3, 16, 16), np.float32))
        return (d / "s.mrcs").read_bytes()
    write_volume(d / "v.mrc", np.arange(16**3, dtype=np.float32).reshape(16, 16, 16), 0.358)
    return (d / "v.mrc").read_bytes()


VOLUME = _mrc_bytes(False)
STACK = _mrc_bytes(True)


def _nan_cell(data: bytes) -> bytes:
    """The MRC with NaN cell lengths (header bytes 40–51): a voxel size of NaN Å."""
    return data[:40] + np.full(3, np.nan, np.float32).tobytes() + data[52:]


def _star_text() -> str:
    d = _scratch()
    z = np.zeros(4)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0], "rlnSphericalAberration": [-0.015],
                           "rlnAmplitudeContrast": [0.0], "rlnImagePixelSize": [0.358], "rlnImageSize": [32],
                           "tbMode": ["projection"], "tbBoxSize": [32]})
    particles = pd.DataFrame({"rlnImageName": image_names(4, "frames.mrcs"), "rlnAngleRot": z, "rlnAngleTilt": z,
                              "rlnAnglePsi": z, "rlnCoordinateX": z + 16, "rlnCoordinateY": z + 16,
                              "rlnOriginXAngst": z, "rlnOriginYAngst": z, "rlnDefocusU": z, "rlnDefocusV": z,
                              "rlnDefocusAngle": z, "rlnOpticsGroup": np.ones(4, int), "tbTime": z, "tbDose": z + 1,
                              "tbCumulativeDose": z + 1, "tbLiquidThickness": z, "tbHeight": z})
    write_star(d / "f.star", optics, particles)
    return (d / "f.star").read_text()


def _truth_text() -> str:
    d = _scratch()
    ase.io.write(d / "pt.xyz", _pt(), format="extxyz")
    write_truth(load_nanocrystal(d / "pt.xyz"), d)
    return (d / "truth.extxyz").read_text()


STAR = _star_text()
TRUTH = _truth_text()
PDB_BUF = io.StringIO()
ase.io.write(PDB_BUF, _pt(), format="proteindatabank")
PDB = PDB_BUF.getvalue()
XYZ = "\n".join([str(len(_pt())), "Pt cluster"] + [f"Pt {x:.4f} {y:.4f} {z:.4f}" for x, y, z in _pt().positions]) + "\n"
ATOMS_CSV = pd.DataFrame({"INDEX": np.arange(1, 5), "CN_STD": [12, 9, 7, 12], "U_ISO": [0.01, 0.02, np.nan, 0.01],
                          "X": [0.0, 2.77, 0.0, 2.77], "Y": [0.0, 0.0, 2.77, 2.77], "Z": [0.0, 0.0, 0.0, 2.0]}
                         ).to_csv(index=False)
EVENTS_CSV = "frame,atom_index,event,x_A,y_A,z_A\n3,1,dissolved,0.1,0.2,0.3\n5,2,hopped,1.0,2.0,3.0\n"
STRUCTURE_JSON = json.dumps({"n_atoms": 55, "diameter_A": 13.3, "lattice_constant_A": 3.92, "median_cn": 9,
                             "core_ratio": 0.4})
PENETRATION_JSON = json.dumps({"cn": {"delta_A": 2.1, "m": 1.0, "c": 11.0}, "u_iso": {"error": "too few"}})


# ------------------------------------------------------------------------------------------ mutations

NASTY = ["nan", "inf", "-inf", "1e400", "-1", "0", "", "x", "1@", "@", "\x00", "é", "99999999999999999999999",
         "[", "]", "{", "\"", "'", "#", "=", ",", "data_", "loop_", "_rlnImageName"]


@st.composite
def edited_text(draw, base: str) -> str:
    """``base`` with a few random edits: a token replaced by a nasty one, a line cut or repeated, a cut-off end."""
    lines = base.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["token", "drop", "dup", "truncate", "swap"]))
        if kind == "token":
            words = lines[i].split(" ")
            j = draw(st.integers(0, len(words) - 1))
            words[j] = draw(st.sampled_from(NASTY) | st.text(max_size=6))
            lines[i] = " ".join(words)
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "truncate":
            lines = [*lines[:i], lines[i][: draw(st.integers(0, len(lines[i])))]]
        else:
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
    return "".join(lines)


@st.composite
def edited_bytes(draw, base: bytes) -> bytes:
    """``base`` with random bytes overwritten (header fields included) and possibly truncated or extended."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, min(len(data) - 1, 1100)))  # mostly the 1024-byte header
        data[pos] = draw(st.integers(0, 255))
    cut = draw(st.sampled_from([None, None, 0, 100, 1024, len(data) - 4]))
    if cut is not None:
        data = data[:cut]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=64))
    return bytes(data)


def _write(name: str, content: str | bytes) -> Path:
    path = _scratch() / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


# ------------------------------------------------------------------------------------------ MRC


@FUZZ
@given(st.one_of(edited_bytes(VOLUME), st.binary(max_size=2048)))
@example(_nan_cell(VOLUME))
def test_mrc_volume_reader(data: bytes) -> None:
    path = _write("m.mrc", data)
    _only_project_errors(lambda: read_volume(path))


@FUZZ
@given(st.one_of(edited_bytes(STACK), st.binary(max_size=2048)))
@example(_nan_cell(STACK))
def test_mrc_stack_reader(data: bytes) -> None:
    path = _write("s.mrcs", data)

    def read() -> None:
        stack, sampling = open_stack(path)
        assert sampling > 0
        np.asarray(stack[:1]).sum()

    _only_project_errors(read)


# ------------------------------------------------------------------------------------------ STAR


@FUZZ
@given(st.one_of(edited_text(STAR), st.text(max_size=400)))
@example(STAR.replace("000001@frames.mrcs", "0@frames.mrcs"))
@example(STAR.replace("000002@frames.mrcs", "000001@frames.mrcs"))
@example(STAR.replace("000003@frames.mrcs", "３@frames.mrcs"))
def test_star_reader_and_frame_matching(text: str) -> None:
    path = _write("f.star", text)

    def read() -> None:
        _, particles = read_star(path)
        order_by_frame(particles, str(path), "frames.mrcs", 4)

    _only_project_errors(read)


# ------------------------------------------------------------------------------------------ structures


@FUZZ
@given(st.one_of(edited_text(PDB), st.text(max_size=300)))
def test_pdb_reader(text: str) -> None:
    path = _write("s.pdb", text)
    _only_project_errors(lambda: read_structure(path))


@FUZZ
@given(st.one_of(edited_text(XYZ), st.text(max_size=300)))
def test_xyz_reader(text: str) -> None:
    path = _write("s.xyz", text)
    _only_project_errors(lambda: read_structure(path))


@FUZZ
@given(edited_text(TRUTH))
def test_truth_extxyz_reader(text: str) -> None:
    """The truth file is read as is (no refit): every per-atom array it carries is checked."""
    path = _write("truth.extxyz", text)

    def read() -> None:
        nc = load_nanocrystal(path)
        assert np.all(np.isfinite(nc.U)) and np.all(np.isfinite(nc.positions))

    _only_project_errors(read)


# ------------------------------------------------------------------------------------------ TOML


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


SCALARS = st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["mode", "n_frames", "sampling", "kind", "x"]), inner, max_size=3), max_leaves=6)


def _keys(cls: type) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]


@st.composite
def toml_document(draw, cls: type, table: str | None) -> str:
    """A TOML document of ``cls``'s real keys (and sub-tables) with random values."""
    import dataclasses

    lines = []
    keys = _keys(cls)
    for key in draw(st.lists(st.sampled_from([*keys, "unknown_key"]), max_size=4, unique=True)):
        lines.append(f"{key} = {_toml_value(draw(VALUES))}")
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None) and draw(st.booleans()):
            sub = f.default_factory
            lines.append(f"[{f.name}]")
            for key in draw(st.lists(st.sampled_from(_keys(sub)), max_size=3, unique=True)):
                lines.append(f"{key} = {_toml_value(draw(VALUES))}")
    body = "\n".join(lines) + "\n"
    if table is not None:
        body = f"[{table}]\n" + body.replace("\n[", f"\n[{table}.")
    return body


@FUZZ
@given(st.one_of(toml_document(SeriesConfig, None), edited_text('[acquisition]\nn_frames = 20\nsampling = 0.358\n'),
                 st.binary(max_size=200)))
def test_series_config_reader(doc: str | bytes) -> None:
    path = _write("s.toml", doc)
    _only_project_errors(lambda: load_config(SeriesConfig, path))


@FUZZ
@given(st.one_of(toml_document(ReconstructConfig, None), st.text(max_size=200)))
def test_reconstruct_config_reader(doc: str) -> None:
    path = _write("r.toml", doc)
    _only_project_errors(lambda: load_config(ReconstructConfig, path))


@FUZZ
@given(st.one_of(toml_document(AtomsConfig, "atoms"), st.text(max_size=200)))
def test_atoms_config_reader(doc: str) -> None:
    path = _write("a.toml", doc)
    _only_project_errors(lambda: load_config(AtomsConfig, path, table="atoms"))


@FUZZ
@given(st.one_of(toml_document(NanocrystalSpec, None), st.text(max_size=200)))
def test_build_spec_reader(doc: str) -> None:
    path = _write("b.toml", doc)
    _only_project_errors(lambda: load_config(NanocrystalSpec, path))


# ------------------------------------------------------------------------------------------ CSV and JSON


@FUZZ
@given(st.one_of(edited_text(ATOMS_CSV), st.binary(max_size=300)),
       st.one_of(st.none(), st.sampled_from(['{"element": "Pt"}', '{"element": 3}', "[]", "{", '{"element": "X"}'])))
def test_atoms_stats_reader(csv: str | bytes, manifest: str | None) -> None:
    d = _scratch()
    (d / "atoms_stats.csv").write_bytes(csv if isinstance(csv, bytes) else csv.encode("utf-8", "surrogatepass"))
    if manifest is not None:
        (d / "manifest.json").write_text(manifest)
    _only_project_errors(lambda: read_atoms(d))


@FUZZ
@given(st.one_of(edited_text(PENETRATION_JSON), st.binary(max_size=100)))
def test_penetration_json_reader(text: str | bytes) -> None:
    d = _scratch()
    (d / "penetration.json").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    _only_project_errors(lambda: read_penetration(d))


@FUZZ
@given(st.one_of(edited_text(STRUCTURE_JSON), st.binary(max_size=100)))
def test_structure_json_reader(text: str | bytes) -> None:
    d = _scratch()
    (d / "particle").mkdir()
    (d / "particle" / "structure.json").write_bytes(
        text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    _only_project_errors(lambda: score_structure(RunLayout(d)))


@FUZZ
@given(st.one_of(edited_text(EVENTS_CSV), st.binary(max_size=100)))
def test_atom_events_reader(text: str | bytes) -> None:
    path = _write("atom_events.csv", text)
    _only_project_errors(lambda: read_atom_events(path, 10))
