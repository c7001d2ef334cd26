"""End-to-end reconstruction of simulated series: the shared projection convention, outputs and bad input."""

from __future__ import annotations

import dataclasses as dc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tumblebench.reconstruct.config import ReconstructConfig
from tumblebench.reconstruct.fsc import fsc
from tumblebench.reconstruct.pipeline import prepare_frames, reconstruct_series
from tumblebench.reconstruct.projector import soft_sphere
from tumblebench.reconstruct.refine import filtered_map, reconstruct_halves
from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.config import load_config
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import MrcStackWriter, open_stack, read_volume
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides
from tumblebench.simulator.star import read_star, star_poses, write_star
from tumblebench.validation.cli import main as cli_main

N_FRAMES = 240
BOX = 96


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    """A small projection-mode series at very high dose: water off, short exposure, fast tumbling (coverage)."""
    out = tmp_path_factory.mktemp("series") / "s"
    cfg = with_overrides(SeriesConfig(), mode="projection", n_frames=N_FRAMES, dose_per_frame=20000.0)
    dyn = cfg.dynamics
    cfg = dc.replace(
        cfg,
        acquisition=dc.replace(cfg.acquisition, field_px=160, box_size_px=BOX, exposure_fraction=0.1, substeps=2),
        dynamics=dc.replace(dyn, rotation=dc.replace(dyn.rotation, diffusion_rad2_per_s=12.0)),
        imaging=dc.replace(cfg.imaging, liquid_cell=dc.replace(cfg.imaging.liquid_cell, water=False)),
    )
    simulate_series(build_preset("default"), cfg, 3, out, progress=False)
    return out


def _cfg(**kw) -> ReconstructConfig:
    base = ReconstructConfig()  # these tests call the library without an atomic-model builder
    return dc.replace(base, box=BOX, min_frames=20, refine=dc.replace(base.refine, model_iterations=0), **kw)


def test_true_poses_reconstruct_the_truth_map(series: Path, tmp_path: Path) -> None:
    """Frames of the simulator + their STAR poses → the truth map (one projection convention)."""
    summary = reconstruct_series(series / "frames.mrcs", series / "frames.star", tmp_path / "r",
                                 _cfg(poses="truth"), progress=False)
    truth, sampling = read_volume(series / "truth_map.mrc")
    vol, v2 = read_volume(tmp_path / "r" / "map.mrc")
    assert v2 == pytest.approx(sampling) and vol.shape == truth.shape
    freq, c = fsc(vol, truth, sampling)
    assert c[(freq > 0) & (freq <= 1 / 2.0)].min() > 0.9
    assert c[(freq > 0) & (freq <= 1 / 1.5)].mean() > 0.85
    # the same frames with the transposed (inverse) poses do not give the truth: the test can fail
    _, part = read_star(series / "frames.star")
    assert summary["usable_frames"] == N_FRAMES
    for name in ("map.mrc", "half1.mrc", "half2.mrc", "poses.star", "fsc.csv", "trajectory.csv",
                 "reconstruct.log", "summary.json", "manifest.json", "part1/map.mrc", "part2/map.mrc",
                 "map_unmodified.mrc", "part1/map_unmodified.mrc"):
        assert (tmp_path / "r" / name).exists(), name
    _, est = read_star(tmp_path / "r" / "poses.star")
    assert np.allclose(star_poses(est), star_poses(part), atol=1e-5)


def test_prepared_frames_with_their_true_poses_give_the_truth_map(series: Path) -> None:
    """``prepare_frames`` (the reconstruction's first step, public for benchmarks): its boxes, the STAR's true
    poses and origins for the usable frames, and its CTF (none in projection mode) reconstruct the truth map."""
    pf = prepare_frames(series / "frames.mrcs", series / "frames.star", _cfg(poses="truth"))
    assert pf.boxes.shape == (N_FRAMES, BOX, BOX) and len(pf.rows) == N_FRAMES and pf.ctf is None
    _, part = read_star(series / "frames.star")
    assert np.allclose(pf.true_poses(), star_poses(part)[pf.rows], atol=1e-6)
    halves = (np.arange(N_FRAMES) % 2).astype(np.int64)
    r1, r2 = reconstruct_halves(pf.boxes, pf.true_poses(), pf.true_shifts_px(), halves, pf.ctf, pf.sampling, 2)
    mask = soft_sphere(BOX, (pf.diameter_A / 2 + 3.0) / pf.sampling, 3.0)
    full = filtered_map(r1, r2, mask, pf.sampling)[4]
    truth, sampling = read_volume(series / "truth_map.mrc")
    freq, c = fsc(full, truth, sampling)
    assert c[(freq > 0) & (freq <= 1 / 2.0)].min() > 0.9


def test_wrong_convention_is_detected(series: Path, tmp_path: Path) -> None:
    """Transposed poses (the opposite rotation) reconstruct something that is not the truth."""
    opt, part = read_star(series / "frames.star")
    from tumblebench.simulator.orientation import euler_angles

    ang = euler_angles(np.transpose(star_poses(part), (0, 2, 1)))
    bad = part.copy()
    bad["rlnAngleRot"], bad["rlnAngleTilt"], bad["rlnAnglePsi"] = ang[:, 0], ang[:, 1], ang[:, 2]
    d = tmp_path / "bad"
    d.mkdir()
    (d / "frames.mrcs").symlink_to(series / "frames.mrcs")
    write_star(d / "frames.star", opt, bad)
    reconstruct_series(d / "frames.mrcs", d / "frames.star", tmp_path / "r", _cfg(poses="truth"), progress=False)
    truth, sampling = read_volume(series / "truth_map.mrc")
    vol, _ = read_volume(tmp_path / "r" / "map.mrc")
    freq, c = fsc(vol, truth, sampling)
    assert c[(freq > 1 / 4.0) & (freq <= 1 / 2.0)].mean() < 0.6


def _copy_stack(src: Path, dst: Path, edit=None, n: int | None = None) -> Path:
    data, ps = open_stack(src)
    n = n or data.shape[0]
    with MrcStackWriter(dst, n, data.shape[1], data.shape[2], ps) as w:
        arr = np.array(data[:n])
        if edit is not None:
            edit(arr)
        w.write(0, arr)
    return dst


def test_count_mismatch_is_an_error(series: Path, tmp_path: Path) -> None:
    st = _copy_stack(series / "frames.mrcs", tmp_path / "frames.mrcs", n=N_FRAMES - 5)
    with pytest.raises(TumblebenchError, match="rows but"):
        reconstruct_series(st, series / "frames.star", tmp_path / "r", _cfg(), progress=False)
    assert not (tmp_path / "r").exists()


def test_pixel_size_mismatch_is_an_error(series: Path, tmp_path: Path) -> None:
    opt, part = read_star(series / "frames.star")
    opt = opt.copy()
    opt["rlnImagePixelSize"] = 0.5
    write_star(tmp_path / "frames.star", opt, part)
    with pytest.raises(TumblebenchError, match="rlnImagePixelSize"):
        reconstruct_series(series / "frames.mrcs", tmp_path / "frames.star", tmp_path / "r", _cfg(),
                           progress=False)


def test_nan_and_zero_frames_are_excluded_and_counted(series: Path, tmp_path: Path) -> None:
    def spoil(a):
        a[3] = np.nan
        a[7] = 0.0

    st = _copy_stack(series / "frames.mrcs", tmp_path / "frames.mrcs", spoil)
    summary = reconstruct_series(st, series / "frames.star", tmp_path / "r", _cfg(poses="truth"), progress=False)
    assert summary["bad_frames"] == 2
    assert summary["usable_frames"] == N_FRAMES - 2
    _, est = read_star(tmp_path / "r" / "poses.star")
    assert 3 not in set(est["tbFrame"]) and 7 not in set(est["tbFrame"])
    assert "excluded as bad (NaN/constant): 2" in (tmp_path / "r" / "reconstruct.log").read_text()


def test_particle_lost_in_most_frames_is_an_error(series: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def noise(a):  # 80 % of the frames become pure shot noise: no particle to find
        k = int(0.8 * len(a))
        a[:k] = rng.poisson(float(np.median(a)), a[:k].shape)

    st = _copy_stack(series / "frames.mrcs", tmp_path / "frames.mrcs", noise)
    with pytest.raises(TumblebenchError, match="lost the particle"):
        reconstruct_series(st, series / "frames.star", tmp_path / "r", _cfg(), progress=False)


def test_too_few_frames_is_an_error(series: Path, tmp_path: Path) -> None:
    with pytest.raises(TumblebenchError, match="min_frames"):
        reconstruct_series(series / "frames.mrcs", series / "frames.star", tmp_path / "r",
                           dc.replace(_cfg(), min_frames=N_FRAMES + 1), progress=False)


def test_cli_errors_exit_2(series: Path, tmp_path: Path, capsys) -> None:
    assert cli_main(["reconstruct", "--frames", str(series / "frames.mrcs"), "--poses", "sideways",
                     "--out", str(tmp_path / "r")]) == 2
    assert "poses" in capsys.readouterr().err
    assert cli_main(["reconstruct", "--frames", str(tmp_path / "missing.mrcs"), "--out", str(tmp_path / "r")]) == 2


def test_time_resolved_windows() -> None:
    from tumblebench.reconstruct.timeresolved import TimeResolvedConfig, windows

    assert windows(1001, TimeResolvedConfig()) == [("part1", 0, 500), ("part2", 500, 1001)]
    assert windows(1001, TimeResolvedConfig(parts=False)) == []


def test_score_reconstruction_of_truth_run(series: Path, tmp_path: Path) -> None:
    from tumblebench.validation.registration import score_reconstruction

    reconstruct_series(series / "frames.mrcs", series / "frames.star", tmp_path / "r", _cfg(poses="truth"),
                       progress=False)
    s = score_reconstruction(tmp_path / "r", series)
    assert s["median_error_deg"] < 1e-3 and not s["mirrored"]
    assert s["fsc_truth_0.5_A"] < 2.0


def test_example_config_lists_the_defaults() -> None:
    """examples/reconstruct.toml says it shows the defaults: it loads to exactly ReconstructConfig()."""
    example = Path(__file__).resolve().parent.parent / "examples" / "reconstruct.toml"
    assert load_config(ReconstructConfig, example) == ReconstructConfig()


@pytest.mark.parametrize(("toml", "field"), [
    ('[abinitio]\nmethod = "lattice"\n[abinitio.lattice]\npriors = ["bcc"]\n', "abinitio.lattice.priors"),
    ("[density]\niterations = 0\n", "density.iterations"),
    ("[refine]\nbranch_segment = 30\n", "branch_segment"),  # removed option: an unknown field
    ("[refine]\nfill_iterations = 3\n", "fill_iterations"),  # removed option: an unknown field
    ("[abinitio]\nfill_iter = 50\n", "fill_iter"),  # removed option: an unknown field
    ("[abinitio]\nlocal_from_A = 9.0\n", "local_from_A"),  # removed option: an unknown field
    ("[abinitio]\nkeep_previous_from_A = 2.5\n", "keep_previous_from_A"),  # removed option
    ("[abinitio]\ncandidate_pool = 512\n", "candidate_pool"),  # removed option: an unknown field
    ("[abinitio.lattice]\nshift_refine_A = 0.6\n", "shift_refine_A"),  # removed option: an unknown field
    ("[abinitio.lattice]\nlabel_converged = 1.0\n", "abinitio.lattice.label_converged"),
    ("[abinitio.lattice]\nlabel_continuity_weights = [1.0, -0.3]\n", "abinitio.lattice.label_continuity_weights"),
    ("[abinitio.lattice]\nlabel_continuity_weights = [1.0]\n", "abinitio.lattice.label_continuity_weights"),
    ("[abinitio.lattice]\nlabel_stiff_iterations = -1\n", "abinitio.lattice.label_stiff_iterations"),
    ("[abinitio.lattice]\nlabel_temperatures = [4.0, 0.0]\n", "abinitio.lattice.label_temperatures"),
    ("[abinitio.lattice]\nprior_fsc_margin = -0.01\n", "abinitio.lattice.prior_fsc_margin"),
    ("[refine]\nrun_mate_z = 0.0\n", "refine.run_mate_z"),
    ("[refine]\ntilt_sweep_deg = -3.0\n", "refine.tilt_sweep_deg"),
    ("[refine]\ntilt_sweep_passes = 0\n", "refine.tilt_sweep_passes"),
    ("[refine]\ntilt_sweep_step_deg = 0.0\n", "refine.tilt_sweep_step_deg"),
    ("[abinitio.lattice]\nlabel_continuity_weight = 1.0\n", "label_continuity_weight"),  # removed: now two weights
])
def test_reconstruct_rejects_a_bad_config_field(tmp_path: Path, toml: str, field: str) -> None:
    """Nested TOML tables are checked on load: one line naming the field, exit 2, nothing written."""
    cfg = tmp_path / "r.toml"
    cfg.write_text(toml)
    frames = tmp_path / "frames.mrcs"
    frames.write_bytes(b"")
    res = subprocess.run([sys.executable, "-m", "tumblebench.validation.cli", "reconstruct", "--frames", str(frames),
                          "--config", str(cfg), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and field in res.stderr
    assert not (tmp_path / "r").exists()
