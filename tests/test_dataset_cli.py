"""Bad input to ``tumblebench dataset``: one line naming the file/field, exit 2, before any work and with
nothing written."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tumblebench.dataset.run import _init_output
from tumblebench.dataset.spec import load_spec
from tumblebench.validation.cli import main

TINY = Path(__file__).parent / "data" / "dataset_tiny.toml"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace("shape.n_atoms = 13", "shape.n_atom = 13"), "particle.shape.n_atom: unknown parameter"),
    (lambda t: t.replace("high = 200.0", "high = 200.0 }\nliquid.final_thickness_A = { dist = \"uniform\", "
                                         "low = -10.0, high = 50.0"),
     "series.liquid.final_thickness_A: uniform low -10.0 is outside the physical range"),
])
def test_bad_spec_is_refused_before_anything_is_written(tmp_path, capsys, edit, expected):
    spec = tmp_path / "bad.toml"
    spec.write_text(edit(TINY.read_text()))
    out = tmp_path / "out"
    assert main(["dataset", "--spec", str(spec), "--n", "2", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert str(spec) in line and expected in line
    assert not out.exists()


def test_n_zero_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["dataset", "--spec", str(TINY), "--n", "0", "--out", str(out)]) == 2
    assert "--n 0" in one_error_line(capsys)
    assert not out.exists()


def test_unreachable_scheduler_is_one_line_not_a_hang(tmp_path, capsys):
    import distributed  # noqa: F401  (imported before the clock starts: the bound is on the connection)

    with socket.socket() as s:  # a free port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    t = time.monotonic()
    assert main(["dataset", "--spec", str(TINY), "--n", "2", "--out", str(out),
                 "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - t < 10.0  # the bound: a clear line within 10 s
    line = one_error_line(capsys)
    assert f"--scheduler tcp://127.0.0.1:{port}" in line and "no Dask scheduler answered" in line
    assert not out.exists()


def test_a_directory_of_another_spec_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    _init_output(out, load_spec(TINY), TINY.read_text())
    before = snapshot(out)
    assert main(["dataset", "--spec", str(TINY), "--n", "2", "--out", str(out), "--seed", "5"]) == 2
    assert "holds a dataset of a different spec (seed 0 -> 5)" in one_error_line(capsys)
    other = tmp_path / "other.toml"
    other.write_text(TINY.read_text().replace("low = 20.0, high = 200.0", "low = 30.0, high = 200.0"))
    assert main(["dataset", "--spec", str(other), "--n", "2", "--out", str(out)]) == 2
    assert "series.acquisition.dose_per_frame_e_per_A2" in one_error_line(capsys)
    assert snapshot(out) == before


def test_a_non_dataset_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["dataset", "--spec", str(TINY), "--n", "2", "--out", str(out)]) == 2
    assert "holds no dataset" in one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
