"""simulate_series end to end at small size: outputs, determinism, dose and noise, geometry, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ase.cluster import Octahedron

from tumblebench.simulator.detector import DetectorConfig
from tumblebench.simulator.dynamics import (
    DynamicsConfig,
    HeightConfig,
    LiquidConfig,
    RotationConfig,
    TranslationConfig,
)
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import open_stack, read_volume
from tumblebench.simulator.orientation import pose_matrix, rotation_angle_deg
from tumblebench.simulator.series import (
    AcquisitionConfig,
    SeriesConfig,
    SeriesSimulation,
    series_trajectory,
    simulate_series,
    with_overrides,
)
from tumblebench.simulator.star import read_star

SAMPLING = 0.358


@dataclass
class _Particle:  # the attributes of simulator.nanocrystal.Nanocrystal the series uses
    positions: np.ndarray
    symbols: list[str]
    U: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)


def _octahedron(u_iso: float = 0.006) -> _Particle:
    at = Octahedron("Pt", 6, 1)  # 140 atoms, radius ~9 Å
    pos = at.positions - at.positions.mean(axis=0)
    n = len(at)
    rng = np.random.default_rng(0)
    scale = 1.0 + 0.5 * rng.random(n)
    return _Particle(pos, ["Pt"] * n, np.eye(3)[None] * (u_iso * scale)[:, None, None])


def _config(mode: str = "projection", n_frames: int = 10, field: int = 80, box: int = 64, **acq) -> SeriesConfig:
    base = SeriesConfig()
    imaging = dataclasses.replace(base.imaging, mode=mode)
    return dataclasses.replace(
        base,
        acquisition=AcquisitionConfig(n_frames=n_frames, field_px=field, box_size_px=box, substeps=3,
                                      sampling=SAMPLING, **acq),
        dynamics=DynamicsConfig(translation=TranslationConfig(20.0, 0.8, (0.0, 0.0)),
                                height=HeightConfig(40.0, 5.0, 0.0)),
        imaging=imaging,
    )


def test_series_writes_every_output_and_is_deterministic(tmp_path):
    nc = _octahedron()
    cfg = _config()
    a = simulate_series(nc, cfg, 7, tmp_path / "a", progress=False)
    b = simulate_series(nc, cfg, 7, tmp_path / "b", progress=False)
    c = simulate_series(nc, cfg, 8, tmp_path / "c", progress=False)
    for name in ("frames.mrcs", "frames.star", "truth_map.mrc", "atom_events.csv", "montage.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "frames.mrcs").read_bytes() != (c / "frames.mrcs").read_bytes()
    frames, ps = open_stack(a / "frames.mrcs")
    assert frames.shape == (10, 80, 80) and frames.dtype == np.float32 and ps == pytest.approx(SAMPLING, abs=1e-4)
    optics, particles = read_star(a / "frames.star")
    assert len(particles) == 10 and int(optics["rlnImageSize"].iloc[0]) == 80
    assert optics["tbMode"].iloc[0] == "projection" and int(optics["tbBoxSize"].iloc[0]) == 64
    dose = cfg.acquisition.dose_per_frame
    assert np.allclose(particles["tbDose"], dose)
    assert np.allclose(particles["tbCumulativeDose"], dose * np.arange(1, 11))
    assert np.allclose(np.diff(particles["tbTime"]), 1 / 400)
    truth, vs = read_volume(a / "truth_map.mrc")
    assert truth.shape == (64, 64, 64) and vs == pytest.approx(SAMPLING, abs=1e-4)
    assert np.unravel_index(np.argmax(np.abs(truth).sum(axis=(1, 2))), (64,)) != 0
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["config"]["acquisition"]["n_frames"] == 10
    assert manifest["versions"]["tumblebench"]
    assert not list(tmp_path.glob(".*partial*"))


def test_truth_map_uses_the_imaging_scattering_factors(tmp_path):
    """The truth map is the potential the frames were made from: imaging.table = peng6 renders it with peng6."""
    from tumblebench.simulator.truth_map import render_truth_map

    nc = _octahedron()
    cfg = _config(n_frames=2)
    cfg = dataclasses.replace(cfg, imaging=dataclasses.replace(cfg.imaging, table="peng6"))
    out = simulate_series(nc, cfg, 0, tmp_path / "s", progress=False)
    truth, _ = read_volume(out / "truth_map.mrc")
    band = json.loads((out / "manifest.json").read_text())["band_limit_A"]
    assert json.loads((out / "manifest.json").read_text())["truth_map"]["table"] == "peng6"
    sim = SeriesSimulation(nc, cfg, 0)
    kw = dict(occupancy=sim.truth_segments()[2], centre=np.zeros(3))
    own = render_truth_map(sim.held(), 64, SAMPLING, band, table="peng6", **kw)
    other = render_truth_map(sim.held(), 64, SAMPLING, band, table="peng", **kw)
    assert np.abs(truth - own).max() < 1e-6 * np.abs(own).max()
    assert np.abs(truth - other).max() > 1e-4 * np.abs(own).max()  # the tables differ by ~4e-4 of the peak


def test_parallel_rendering_gives_the_same_bytes(tmp_path):
    nc = _octahedron()
    cfg = _config(n_frames=6)
    one = simulate_series(nc, cfg, 4, tmp_path / "one", progress=False, workers=1)
    two = simulate_series(nc, cfg, 4, tmp_path / "two", progress=False, workers=2)
    for name in ("frames.mrcs", "frames.star", "truth_map.mrc", "montage.png"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    # frames are independent of the order they are rendered in
    sim = SeriesSimulation(nc, cfg, 4)
    last = sim.render(5)[1]
    first = sim.render(0)[1]
    frames, _ = open_stack(one / "frames.mrcs")
    assert np.array_equal(frames[5], last) and np.array_equal(frames[0], first)


def test_star_poses_defocus_and_liquid_are_the_simulated_truth(tmp_path):
    nc = _octahedron()
    cfg = _config()
    out = simulate_series(nc, cfg, 3, tmp_path / "s", progress=False)
    _, particles = read_star(out / "frames.star")
    tr = series_trajectory(cfg, 3)  # the path alone, without the particle or a frame
    assert np.array_equal(tr.heights, SeriesSimulation(nc, cfg, 3).trajectory.heights)
    poses = pose_matrix(particles["rlnAngleRot"], particles["rlnAngleTilt"], particles["rlnAnglePsi"])
    assert np.all(rotation_angle_deg(poses, tr.poses) < 1e-3)  # Euler angles round-trip
    assert np.allclose(particles["rlnCoordinateX"], 40 + tr.shifts[:, 0] / SAMPLING, atol=1e-5)
    assert np.allclose(particles["rlnCoordinateY"], 40 + tr.shifts[:, 1] / SAMPLING, atol=1e-5)
    d0 = cfg.imaging.optics.defocus_A
    assert np.allclose(0.5 * (particles["rlnDefocusU"] + particles["rlnDefocusV"]), d0 + tr.heights, atol=1e-5)
    assert np.allclose(particles["tbHeight"], tr.heights, atol=1e-5)
    assert np.allclose(particles["tbLiquidThickness"], tr.thickness, atol=1e-5)
    assert np.all(np.diff(particles["tbLiquidThickness"]) <= 0)  # the cell thins


def test_projection_mode_single_atom_lands_at_the_star_coordinate():
    nc = _Particle(np.zeros((1, 3)), ["Pt"], np.zeros((1, 3, 3)))
    from tumblebench.simulator.liquid_cell import LiquidCellConfig

    cfg = _config(n_frames=1, field=80, box=32)
    cfg = dataclasses.replace(
        cfg,
        dynamics=DynamicsConfig(translation=TranslationConfig(0.0, 4.0, (0.0, 0.0))),
        imaging=dataclasses.replace(cfg.imaging, liquid_cell=LiquidCellConfig(enabled=False)),
    )
    sim = SeriesSimulation(nc, cfg, 2)
    clean, _ = sim.render(0)
    _, particles = sim.star_tables()
    x, y = particles["rlnCoordinateX"][0], particles["rlnCoordinateY"][0]
    i, j = np.unravel_index(np.argmax(clean), clean.shape)
    assert abs(i - y) <= 0.5 and abs(j - x) <= 0.5
    ii, jj = np.mgrid[i - 2 : i + 3, j - 2 : j + 3]
    w = np.clip(clean[i - 2 : i + 3, j - 2 : j + 3] - 1.0, 0, None)
    assert abs((w * ii).sum() / w.sum() - y) < 0.25 and abs((w * jj).sum() / w.sum() - x) < 0.25


def test_projection_mode_atoms_land_where_the_truth_says(tmp_path):
    # three atoms with centroid 0, a random frozen pose and a frozen off-centre shift
    r = np.array([[5.0, 0.0, 0.0], [-2.5, 3.0, 1.0], [-2.5, -3.0, -1.0]])
    nc = _Particle(r, ["Pt"] * 3, np.zeros((3, 3, 3)))
    cfg = _config(n_frames=2, field=96, box=64)
    cfg = dataclasses.replace(
        cfg,
        dynamics=DynamicsConfig(rotation=RotationConfig(0.0, 0.0, "random"),
                                translation=TranslationConfig(0.0, 4.0, (0.0, 0.0)),
                                height=HeightConfig(0.0, 0.0, 0.0)),
        liquid=LiquidConfig(0.0, 0.0, "constant"),
    )
    sim = SeriesSimulation(nc, cfg, 21)
    clean, _ = sim.next_frame()
    _, particles = sim.star_tables()
    A = pose_matrix(particles["rlnAngleRot"][0], particles["rlnAngleTilt"][0], particles["rlnAnglePsi"][0])
    cx, cy = particles["rlnCoordinateX"][0], particles["rlnCoordinateY"][0]
    assert abs(cx - 48) > 1 or abs(cy - 48) > 1  # really off-centre
    bg = np.median(clean)
    for atom in r:
        lab = A @ atom
        x, y = cx + lab[0] / SAMPLING, cy + lab[1] / SAMPLING
        i, j = round(y), round(x)
        win = clean[i - 2 : i + 3, j - 2 : j + 3] - bg
        assert win.max() > 0.5 * (clean.max() - bg)
        # the intensity-weighted centre of the peak is within 0.3 px of the prediction
        ii, jj = np.mgrid[i - 2 : i + 3, j - 2 : j + 3]
        w = np.clip(win, 0, None)
        assert abs((w * ii).sum() / w.sum() - y) < 0.3 and abs((w * jj).sum() / w.sum() - x) < 0.3


def test_projection_frame_is_the_projection_of_the_truth_map():
    """Projection mode at pose identity and no shift: (frame − 1)/σ = Σ_z truth_map · voxel (same band limit)."""
    from tumblebench.simulator.liquid_cell import LiquidCellConfig
    from tumblebench.simulator.truth_map import render_truth_map

    at = Octahedron("Pt", 5, 1)
    pos = at.positions - at.positions.mean(axis=0)
    nc = _Particle(pos, ["Pt"] * len(at), np.tile(np.eye(3) * 1e-6, (len(at), 1, 1)))
    cfg = _config(n_frames=1, field=80, box=64)
    cfg = dataclasses.replace(
        cfg,
        dynamics=DynamicsConfig(rotation=RotationConfig(0.0, 0.0, "identity"),
                                translation=TranslationConfig(0.0, 0.0, (0.0, 0.0)),
                                height=HeightConfig(0.0, 0.0, 0.0)),
        imaging=dataclasses.replace(cfg.imaging, liquid_cell=LiquidCellConfig(enabled=False)),
        thermal=dataclasses.replace(cfg.thermal, enabled=False),
    )
    sim = SeriesSimulation(nc, cfg, 0)
    clean, _ = sim.render(0)
    truth = render_truth_map(nc, 64, SAMPLING, sim.band_limit_A)
    proj = truth.sum(axis=0, dtype=np.float64) * SAMPLING  # v_z in V·Å, [y, x]
    frame_v = (clean[40 - 32 : 40 + 32, 40 - 32 : 40 + 32] - 1.0) / cfg.imaging.optics.sigma
    assert np.unravel_index(np.argmax(frame_v), frame_v.shape) == np.unravel_index(np.argmax(proj), proj.shape)
    assert np.abs(frame_v - proj).max() < 0.015 * proj.max()
    assert np.corrcoef(frame_v.ravel(), proj.ravel())[0, 1] > 0.999


def test_frame_mean_count_matches_dose_and_noise_is_poisson():
    nc = _octahedron()
    cfg = _config(mode="projection", n_frames=4, field=96, box=64)
    cfg = dataclasses.replace(cfg, detector=DetectorConfig(mtf="none"))  # ideal counting: Poisson only
    sim = SeriesSimulation(nc, cfg, 5)
    per_px = cfg.acquisition.dose_per_frame * SAMPLING**2
    for _ in range(4):
        intensity, counts = sim.next_frame()
        expected = intensity * per_px
        assert counts.mean() == pytest.approx(expected.mean(), abs=4 * np.sqrt(per_px / counts.size))
        resid = counts - expected
        assert resid.mean() == pytest.approx(0.0, abs=4 * np.sqrt(per_px / counts.size))
        # Poisson: variance equals the mean count (dose × pixel area × intensity)
        assert np.mean(resid**2) == pytest.approx(expected.mean(), rel=0.05)
        assert np.all(counts == np.round(counts))
    # with the default detector (MTF on the signal) the mean count still equals dose × pixel area × mean I
    sim = SeriesSimulation(nc, _config(mode="projection", n_frames=2, field=96, box=64), 5)
    intensity, counts = sim.render(1)
    assert counts.mean() == pytest.approx(intensity.mean() * per_px, abs=4 * np.sqrt(per_px / counts.size))
    assert intensity.mean() == pytest.approx(1.0, abs=0.1)  # the frame's mean count is ~ the dose per pixel


def test_dose_per_frame_and_dose_rate():
    cfg = with_overrides(_config(), dose_per_frame=12.5)
    assert cfg.acquisition.dose_per_frame == 12.5
    rate = dataclasses.replace(cfg.acquisition, dose_rate_e_per_A2_per_s=4000.0)
    assert rate.dose_per_frame == pytest.approx(10.0)
    with pytest.raises(TumblebenchError, match="dose"):
        with_overrides(_config(), dose_per_frame=0.0)
    with pytest.raises(TumblebenchError, match="dose"):
        with_overrides(_config(), dose_per_frame=-3.0)


def test_bad_input_leaves_nothing_behind(tmp_path):
    nc = _octahedron()
    with pytest.raises(TumblebenchError, match="does not fit"):
        simulate_series(nc, _config(box=32, field=72), 0, tmp_path / "x", progress=False)
    big = _Particle(nc.positions * 3, nc.symbols, nc.U)
    with pytest.raises(TumblebenchError, match=r"field|fit"):
        simulate_series(big, _config(box=72, field=72), 0, tmp_path / "x", progress=False)
    alien = _Particle(nc.positions, ["Xx", *nc.symbols[1:]], nc.U)
    with pytest.raises(TumblebenchError, match="Xx"):
        simulate_series(alien, _config(), 0, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []


def test_dissolution_is_recorded_and_weights_the_truth_map(tmp_path):
    from tumblebench.simulator.dynamics import DissolutionConfig

    nc = _octahedron()
    cfg = dataclasses.replace(_config(n_frames=6),
                              dissolution=DissolutionConfig(enabled=True, rate_per_e_per_A2=3e-4, max_cn=7))
    out = simulate_series(nc, cfg, 1, tmp_path / "d", progress=False)
    _, particles = read_star(out / "frames.star")
    present = particles["tbAtomsPresent"].to_numpy()
    events = np.loadtxt(out / "atom_events.csv", delimiter=",", skiprows=1, usecols=(0, 1), ndmin=2)
    assert events.shape[0] > 0 and np.all(np.diff(present) <= 0)
    assert present[-1] == 140 - events.shape[0]
    for f in range(6):
        assert present[f] == 140 - np.sum(events[:, 0] <= f)
    truth, _ = read_volume(out / "truth_map.mrc")
    ref = simulate_series(nc, _config(n_frames=6), 1, tmp_path / "r", progress=False)
    truth_ref, _ = read_volume(ref / "truth_map.mrc")
    assert truth.sum() < truth_ref.sum()


def test_long_series_is_streamed_not_held_in_memory(tmp_path):
    import tracemalloc

    from tumblebench.simulator.liquid_cell import LiquidCellConfig

    nc = _Particle(np.zeros((1, 3)), ["Pt"], np.eye(3)[None] * 0.01)
    peaks = {}
    for n in (64, 500, 2000):  # the first run warms caches (imports, numba, FFT plans)
        cfg = _config(n_frames=n, field=64, box=32)
        cfg = dataclasses.replace(
            cfg,
            dynamics=DynamicsConfig(translation=TranslationConfig(10.0, 1.0, (0.0, 0.0))),
            imaging=dataclasses.replace(cfg.imaging, liquid_cell=LiquidCellConfig(enabled=False)),
            output=dataclasses.replace(cfg.output, montage=False),
        )
        tracemalloc.start()
        out = simulate_series(nc, cfg, 0, tmp_path / f"s{n}", progress=False, workers=1)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert open_stack(out / "frames.mrcs")[0].shape == (n, 64, 64)
    extra_frames_bytes = 1500 * 64 * 64 * 4
    # frames go to the memory-mapped file: 1,500 more frames cost (almost) no more memory
    assert peaks[2000] - peaks[500] < 0.25 * extra_frames_bytes


def test_hopping_is_recorded_imaged_and_time_weighted_in_the_truth_map(tmp_path):
    from tumblebench.simulator.dynamics import DissolutionConfig

    nc = _octahedron(u_iso=0.004)
    cfg = dataclasses.replace(
        _config(n_frames=6, field=88, box=72),
        dissolution=DissolutionConfig(enabled=True, rate_per_e_per_A2=0.0, hop_rate_per_e_per_A2=1e-3),
        thermal=dataclasses.replace(SeriesConfig().thermal, enabled=False),
    )
    sim = SeriesSimulation(nc, cfg, 3)
    hops = [e for e in sim.events if e[2] == "hopped"]
    assert hops and all(e[2] != "dissolved" for e in sim.events)
    f, atom = hops[0][0], hops[0][1]
    assert np.allclose(sim.positions_at(f)[atom], hops[0][3:6])
    if f > 0:
        assert np.allclose(sim.positions_at(f - 1)[atom], sim.positions[atom])
    # the imaged atoms sit at the hopped positions (thermal motion off)
    lab = sim.lab_positions(5)
    expected = sim.positions_at(5) @ sim.trajectory.sub_poses[5, 0].T
    expected[:, :2] += sim.trajectory.sub_shifts[5, 0]
    expected[:, 2] += sim.trajectory.sub_heights[5, 0] - sim.trajectory.heights[5]
    assert np.allclose(lab[0], expected)
    # every atom's time fractions add to one: the truth map keeps its integral, its density moves
    atoms, _, frac = sim.truth_segments()
    assert np.allclose(np.bincount(atoms, weights=frac), 1.0)
    out = simulate_series(nc, cfg, 3, tmp_path / "h", progress=False)
    ref = simulate_series(nc, dataclasses.replace(cfg, dissolution=DissolutionConfig()), 3, tmp_path / "r",
                          progress=False)
    truth, _ = read_volume(out / "truth_map.mrc")
    truth_ref, _ = read_volume(ref / "truth_map.mrc")
    assert truth.sum() == pytest.approx(truth_ref.sum(), rel=1e-4)
    assert np.abs(truth - truth_ref).max() > 0.05 * truth_ref.max()
    text = (out / "atom_events.csv").read_text().splitlines()
    assert text[0] == "frame,atom_index,event,x_A,y_A,z_A" and any(",hopped," in line for line in text[1:])
    # adatoms that leave the reconstruction box are refused before any frame is rendered
    tight = dataclasses.replace(cfg, acquisition=dataclasses.replace(cfg.acquisition, box_size_px=64))
    with pytest.raises(TumblebenchError, match="with hops"):
        simulate_series(nc, tight, 3, tmp_path / "t", progress=False)
    assert not (tmp_path / "t").exists()


def test_frame_bits_do_not_depend_on_the_blas_thread_count(tmp_path):
    """A frame is the same to the bit in a process whose BLAS runs one thread (OPENBLAS_NUM_THREADS=1, as a Dask
    worker's environment or a one-core machine sets it) as here: a product's last bits depend on its threads."""
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "from test_series_simulate import _octahedron, _config;"
        "from tumblebench.simulator.series import SeriesSimulation;"
        "i, c = SeriesSimulation(_octahedron(), _config(n_frames=6), 4).render(5);"
        "np.save(sys.argv[2], i); np.save(sys.argv[3], c)"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path / "i.npy"),
                    str(tmp_path / "c.npy")], env=env, check=True)
    intensity, counts = SeriesSimulation(_octahedron(), _config(n_frames=6), 4).render(5)
    assert np.load(tmp_path / "i.npy").tobytes() == intensity.tobytes()
    assert np.load(tmp_path / "c.npy").tobytes() == counts.tobytes()
