"""report.html: every figure present, non-empty and captioned; self-contained; the command's errors."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy.spatial.transform import Rotation

from tumblebench.analysis.io import write_atom_model
from tumblebench.analysis.model import build_atom_model
from tumblebench.reconstruct.fsc import fsc, resolution_at
from tumblebench.simulator.builder import DefectSpec, NanocrystalSpec, ShapeSpec, build
from tumblebench.simulator.mrc import read_volume, write_volume
from tumblebench.simulator.nanocrystal import write_truth
from tumblebench.simulator.orientation import euler_angles
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides
from tumblebench.simulator.star import read_star, star_poses, write_star
from tumblebench.validation.cli import main
from tumblebench.validation.report import FIGURES, write_report


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run of a 147-atom cuboctahedron in seconds: a real 12-frame phase-object series (72-voxel
    truth map), a reconstruction stand-in (the truth map plus independent noise in each half map, poses off by
    ~1°), and the real atoms stage on that map."""
    run = tmp_path_factory.mktemp("report") / "run"
    (run / "particle").mkdir(parents=True)
    nc = build(NanocrystalSpec(name="cubo-147", shape=ShapeSpec(kind="cuboctahedron", n_atoms=147),
                               defects=DefectSpec()), seed=0)
    write_truth(nc, run / "particle")
    cfg = with_overrides(SeriesConfig(), mode="phase-object", n_frames=12)
    cfg = replace(cfg, acquisition=replace(cfg.acquisition, field_px=112, box_size_px=72))
    simulate_series(nc, cfg, 0, run / "series", progress=False, workers=1)
    truth, sampling = read_volume(run / "series" / "truth_map.mrc")
    rng = np.random.default_rng(0)
    sigma = 0.25 * float(truth.std())
    h1 = truth + rng.normal(0, sigma, truth.shape).astype(np.float32)
    h2 = truth + rng.normal(0, sigma, truth.shape).astype(np.float32)
    recon = run / "recon"
    recon.mkdir()
    for name, vol in (("half1.mrc", h1), ("half2.mrc", h2), ("map.mrc", (h1 + h2) / 2)):
        write_volume(recon / name, vol, sampling)
    freq, curve = fsc(h1, h2, sampling)
    pd.DataFrame({"frequency_per_A": freq, "resolution_A": 1 / np.maximum(freq, 1e-12), "fsc_half": curve}
                 ).to_csv(recon / "fsc.csv", index=False)
    optics, particles = read_star(run / "series" / "frames.star")
    est = np.einsum("nij,njk->nik", star_poses(particles),
                    Rotation.from_rotvec(rng.normal(0, np.radians(1.0), (len(particles), 3))).as_matrix())
    ang = euler_angles(est)
    particles = particles.assign(rlnAngleRot=ang[:, 0], rlnAngleTilt=ang[:, 1], rlnAnglePsi=ang[:, 2])
    write_star(recon / "poses.star", optics, particles)
    (recon / "summary.json").write_text(json.dumps({"poses_mode": "truth+noise:1",
                                                    "fsc_half_0.143_A": resolution_at(freq, curve, 0.143)}))
    (recon / "manifest.json").write_text(json.dumps({"stage": "reconstruct", "config": {"amplitude_contrast": 0.1}}))
    vol, _ = read_volume(recon / "map.mrc")
    write_atom_model(build_atom_model(vol, sampling), run / "atoms")
    return run


def _figures(text: str) -> dict[str, tuple[bytes, str]]:
    out = {}
    for m in re.finditer(r'<figure id="fig-(\w+)"><img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">'
                         r"<figcaption>([^<]*)</figcaption></figure>", text):
        out[m.group(1)] = (base64.b64decode(m.group(2)), m.group(3))
    return out


def test_report_has_every_figure_and_caption(small_run: Path) -> None:
    path = write_report(small_run)
    assert path == small_run / "report.html"
    text = path.read_text(encoding="utf-8")
    figs = _figures(text)
    assert set(figs) == set(FIGURES), f"missing: {set(FIGURES) - set(figs)}"
    for key, (png, caption) in figs.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n", key
        img = imread(io.BytesIO(png), format="png")
        assert img.shape[0] >= 300 and img.shape[1] >= 600, (key, img.shape)
        rgb = img[..., :3]
        assert rgb.std() > 0.02, key  # not a blank canvas
        # a drawn figure has content away from the white background in a sizeable area
        assert np.mean(rgb.min(axis=2) < 0.9) > 0.02, key
        assert "Good:" in caption and len(caption) > 60, key
    assert 'class="note"' not in text  # every stage ran, so nothing is missing
    # self-contained: no external resource of any kind
    assert not re.search(r'(src|href)="(?!data:)', text) and "<script" not in text and "<link" not in text
    # the re-rendered noise-free frames reproduce the stored raw frames (same seed, same bytes)
    assert "bit for bit" in figs["frames"][1]
    # the table holds Table 1's columns for truth and recovered, and the matching figures
    table = text[text.index('<table id="table1">'):]
    for row in ("atoms", "median CN", "median NN bond", "median radial strain", "core ratio", "recall",
                "precision", "RMSD"):
        assert row in table
    assert "<td>147</td>" in table
    # the headline says which group and which crossings
    assert "proper symmetry O (order 24)" in text and "within the transferred band" in text


def test_partial_run_reports_what_is_missing(small_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "partial"
    shutil.copytree(small_run / "particle", run / "particle")
    text = write_report(run).read_text(encoding="utf-8")
    figs = _figures(text)
    assert set(figs) == {"particle", "penetration"}
    for key in set(FIGURES) - set(figs):
        assert f'id="fig-{key}">Not shown:' in text


def test_report_command(small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert not (tmp_path / "empty" / "report.html").exists()
    capsys.readouterr()
    assert main(["report", str(small_run)]) == 0
    assert capsys.readouterr().out.strip() == str(small_run / "report.html")
