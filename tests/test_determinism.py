"""Same seed, same bytes whatever the thread count; frames streamed from disk give the same boxes as in memory."""

from __future__ import annotations

import dataclasses as dc
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tumblebench.reconstruct.config import ReconstructConfig
from tumblebench.reconstruct.pipeline import track_and_cut
from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.mrc import FrameFile, MrcStackWriter, open_stack
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides

_GRIDDING = """
import hashlib, numba, numpy as np
from tumblebench.reconstruct.projector import Reconstructor
from tumblebench.simulator.orientation import random_rotations
rng = np.random.default_rng(5)
n = 24
imgs = rng.normal(size=(90, n, n)).astype(np.float32)
rots = random_rotations(90, rng)
ctf = rng.uniform(-1, 1, (90, 2 * n, 2 * n)).astype(np.float32)
rec = Reconstructor(n)
rec.insert(imgs, rots, rng.uniform(-2, 2, (90, 2)), ctf=ctf)
vol = rec.reconstruct(1e-3)
print(numba.get_num_threads(), rec.threads,
      hashlib.sha256(rec.data.tobytes() + rec.weight.tobytes() + vol.tobytes()).hexdigest())
"""


_SWEEP = """
import hashlib, numba, numpy as np
from scipy.spatial.transform import Rotation
from tumblebench.reconstruct.projector import Band, prepare_reference, project_band
from tumblebench.reconstruct.refine import continuity_sweep
from tumblebench.simulator.orientation import random_rotations
rng = np.random.default_rng(6)
n = 24
refs = (prepare_reference(rng.normal(size=(n, n, n)).astype(np.float32)),
        prepare_reference(rng.normal(size=(n, n, n)).astype(np.float32)))
band = Band.make(n, r_max=8, r_min=1)
rots = np.einsum("nij,jk->nik", Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.05, (60, 3)), 0)).as_matrix(),
                 random_rotations(1, rng)[0])
halves = np.arange(60) % 2
x = np.concatenate([project_band(refs[h], rots[i:i + 1], band) for i, h in enumerate(halves)])
x = (x + rng.normal(0, 2, x.shape) + 1j * rng.normal(0, 2, x.shape)).astype(np.complex64)
start = np.einsum("nij,njk->nik", Rotation.from_rotvec(rng.normal(0, 0.1, (60, 3))).as_matrix(), rots)
poses, moved = continuity_sweep(refs, halves, x, band, start, None, (3.0, 1.0, 0.35), block=16)
print(numba.get_num_threads(), moved, hashlib.sha256(poses.tobytes()).hexdigest())
"""


def _run_threads(code: str, threads: int) -> list[str]:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return res.stdout.split()


def test_gridding_gives_the_same_bytes_with_one_and_two_threads() -> None:
    """Back-projection of a small stack (CTF, shifts) in processes with 1 and 2 numba threads: identical
    accumulators and map, and the 2-thread process really scatters in 2 lanes."""
    one = _run_threads(_GRIDDING, 1)
    two = _run_threads(_GRIDDING, 2)
    assert one[:2] == ["1", "1"] and two[:2] == ["2", "2"]
    assert one[2] == two[2]


def test_continuity_sweep_gives_the_same_bytes_with_one_and_two_threads() -> None:
    """The continuity sweep (frames in time order, each step's rotations scored in parallel) moves the same
    frames to the same poses with 1 and 2 numba threads."""
    one = _run_threads(_SWEEP, 1)
    two = _run_threads(_SWEEP, 2)
    assert one[0] == "1" and two[0] == "2" and int(one[1]) > 0
    assert one[1:] == two[1:]


def _small_series(out: Path, n_frames: int) -> Path:
    """A small projection-mode series at high dose (water off, fast tumbling): every frame is tracked."""
    cfg = with_overrides(SeriesConfig(), mode="projection", n_frames=n_frames, dose_per_frame=20000.0)
    dyn = cfg.dynamics
    cfg = dc.replace(
        cfg,
        acquisition=dc.replace(cfg.acquisition, field_px=144, box_size_px=96, exposure_fraction=0.1, substeps=2),
        dynamics=dc.replace(dyn, rotation=dc.replace(dyn.rotation, diffusion_rad2_per_s=12.0)),
        imaging=dc.replace(cfg.imaging, liquid_cell=dc.replace(cfg.imaging.liquid_cell, water=False)),
        output=dc.replace(cfg.output, montage=False),
    )
    simulate_series(build_preset("default"), cfg, 11, out, progress=False, workers=1)
    return out


def test_boxes_streamed_to_disk_equal_boxes_in_memory(tmp_path: Path) -> None:
    """track_and_cut with the boxes in a scratch FrameFile gives the same bytes as in memory (chunked
    normalisation is per box), reads back any subset and its negation exactly, and leaves no file behind."""
    series = _small_series(tmp_path / "s", 40)
    stack, pixel = open_stack(series / "frames.mrcs")
    cfg = dc.replace(ReconstructConfig(), box=96, min_frames=20,
                     tracking=dc.replace(ReconstructConfig().tracking, chunk=16))
    mem = track_and_cut(stack, pixel, cfg, False, True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    disk = track_and_cut(stack, pixel, cfg, False, True, store_dir=scratch)
    assert isinstance(disk[0], FrameFile) and not isinstance(mem[0], FrameFile)
    assert np.asarray(disk[0]).tobytes() == mem[0].tobytes()
    for a, b in zip(mem[1:], disk[1:], strict=True):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b)
    sel = np.array([3, 4, 5, 17, 2])
    assert np.array_equal(disk[0].rows(sel)[1:], mem[0][sel][1:])
    assert np.array_equal(disk[0].negated()[7], -mem[0][7])
    assert list(scratch.iterdir()) == []  # the scratch file has no name


def test_stack_writer_and_frame_file_round_trip(tmp_path: Path) -> None:
    """Frames written out of order through the writer read back exactly, by slice, index array or integer."""
    rng = np.random.default_rng(2)
    frames = rng.normal(size=(9, 5, 7)).astype(np.float32)
    with MrcStackWriter(tmp_path / "f.mrcs", 9, 5, 7, 0.4) as w:
        w.write(4, frames[4:])
        w.write(0, frames[:4])
    stack, ps = open_stack(tmp_path / "f.mrcs")
    assert stack.shape == (9, 5, 7) and ps == pytest.approx(0.4)
    assert np.array_equal(np.asarray(stack), frames)
    assert np.array_equal(stack[[8, 0, 1, 5]], frames[[8, 0, 1, 5]]) and np.array_equal(stack[-1], frames[-1])
    assert np.array_equal(stack[2:7:2, 1], frames[2:7:2, 1])


@pytest.mark.slow
def test_reconstruct_true_poses_gives_the_same_bytes_with_one_and_two_threads(tmp_path: Path) -> None:
    """`tumblebench reconstruct --poses truth` of a small series under 1 and 2 numba threads: every map and
    the poses are byte-identical."""
    series = _small_series(tmp_path / "s", 120)
    digests = []
    for t in (1, 2):
        out = tmp_path / f"r{t}"
        env = {**os.environ, "NUMBA_NUM_THREADS": str(t)}
        subprocess.run([sys.executable, "-c", "import sys; from tumblebench.validation.cli import main; "
                        "sys.exit(main())", "reconstruct", "--frames", str(series / "frames.mrcs"), "--poses",
                        "truth", "--box", "96", "--out", str(out), "--quiet"], env=env, check=True)
        files = sorted(p for p in out.rglob("*") if p.suffix in (".mrc", ".star"))
        assert len(files) >= 7
        digests.append({str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    assert digests[0] == digests[1]
