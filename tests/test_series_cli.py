"""``tumblebench simulate`` on the command line: the files it writes and its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.mrc import open_stack, read_volume
from tumblebench.simulator.nanocrystal import write_truth
from tumblebench.simulator.star import read_star

CONFIG = """
[acquisition]
n_frames = 3
field_px = 160
box_size_px = 128
substeps = 2

[imaging]
mode = "projection"
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tumblebench.validation.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def particle_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("particle")
    write_truth(build_preset("default"), d)
    (d / "series.toml").write_text(CONFIG)
    return d


def test_simulate_writes_the_series(particle_dir, tmp_path):
    out = tmp_path / "s"
    res = _run("simulate", "--structure", str(particle_dir / "truth.extxyz"), "--config",
               str(particle_dir / "series.toml"), "--frames", "4", "--seed", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "frames.mrcs" in res.stdout
    for name in ("frames.mrcs", "frames.star", "truth_map.mrc", "manifest.json", "montage.png"):
        assert (out / name).is_file(), name
    frames, ps = open_stack(out / "frames.mrcs")
    assert frames.shape == (4, 160, 160) and ps == pytest.approx(0.358, abs=1e-4)
    _, particles = read_star(out / "frames.star")
    assert len(particles) == 4
    truth, _ = read_volume(out / "truth_map.mrc")
    assert truth.shape == (128, 128, 128) and np.isfinite(truth).all()
    # existing output without --overwrite: one line, exit 2, the series untouched
    res = _run("simulate", "--structure", str(particle_dir / "truth.extxyz"), "--out", str(out))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "overwrite" in res.stderr


@pytest.mark.parametrize("case", ["corrupt", "dose", "negative-dose", "coarse", "box", "element", "config"])
def test_simulate_bad_input_is_one_line_exit_2(particle_dir, tmp_path, case):
    structure = particle_dir / "truth.extxyz"
    extra: list[str] = ["--config", str(particle_dir / "series.toml")]
    if case == "corrupt":
        structure = tmp_path / "broken.extxyz"
        structure.write_text("12\nnot an extxyz header\nPt 0 0\n")
    elif case == "dose":
        extra += ["--dose-per-frame", "0"]
    elif case == "negative-dose":
        extra += ["--dose-per-frame", "-5"]
    elif case == "coarse":
        cfg = tmp_path / "c.toml"
        cfg.write_text(CONFIG.replace('mode = "projection"', 'mode = "projection"\nband_limit_A = 0.6'))
        extra = ["--config", str(cfg)]
    elif case == "box":
        cfg = tmp_path / "b.toml"
        cfg.write_text(CONFIG.replace("box_size_px = 128", "box_size_px = 64"))
        extra = ["--config", str(cfg)]
    elif case == "element":
        structure = tmp_path / "alien.xyz"
        structure.write_text("3\n\nXx 0 0 0\nXx 2.7 0 0\nXx 0 2.7 0\n")
    elif case == "config":
        cfg = tmp_path / "t.toml"
        cfg.write_text("[acquisition]\nn_frame = 3\n")
        extra = ["--config", str(cfg)]
    out = tmp_path / "out"
    res = _run("simulate", "--structure", str(structure), *extra, "--out", str(out), "--quiet")
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "error" in res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
