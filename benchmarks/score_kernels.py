"""Speed of the refinement's scoring kernels against those of another commit, on the refinement's sizes.

Run from the repository root::

    .venv/bin/python benchmarks/score_kernels.py --against 094e71e      # ≈ 3 min on 2 cores

The local search (``score_candidates``: every frame's 26 moves at a step) and the continuity sweep
(``sweep_poses``: frame after frame, the 26 moves at each of the steps) score slices of a padded 3D transform
against the frames' transforms on a band; the lattice labelling and the amplitude searches project
(``extract_slices``). The kernels of this checkout and those of ``--against`` (its
``reconstruct/_gridding_kernels.py``, loaded from git) run alternately on the same inputs: for scoring, the
refinement's 128-px boxes at 0.358 Å, pad 2 (a 256³ transform), the band 8–1.14 Å on the half plane, the moves
of the local search's steps 4°, 1° and 0.5° and the sweep's 3°, 1° and 0.35°; for projecting, the labelling's
96-px crop at 0.4773 Å, pad 2, band 8–1.6 Å, 40 random poses per frame. The time of a gather does not depend on
what the map shows, so maps and frames are noise. Each figure is the median of ``--repeats`` calls; every pair of
outputs is checked for identical bytes. Writes ``benchmarks/results/score_kernels.json`` (with the commit, core
count and load average).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct import _gridding_kernels as ours
from tumblebench.reconstruct.projector import Band
from tumblebench.reconstruct.search import CENTRE, NEIGHBOURS
from tumblebench.simulator.orientation import random_rotations

ROOT = Path(__file__).resolve().parents[1]
N_BOX, SAMPLING, PAD, BAND_A = 128, 0.358, 2, (8.0, 1.14)
CROP, CROP_SAMPLING, CROP_BAND_A = 96, 0.4773, (8.0, 1.6)


def _kernels_of(rev: str, tmp: Path):
    """The kernel module of commit ``rev``, imported from a temporary file."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:reconstruct/_gridding_kernels.py"],
                         capture_output=True, text=True, check=True).stdout
    path = tmp / f"kernels_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"kernels_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _inputs(frames: int, rng: np.random.Generator) -> dict:
    nn = PAD * N_BOX
    band = Band.make(N_BOX, r_max=N_BOX * SAMPLING / BAND_A[1], r_min=N_BOX * SAMPLING / BAND_A[0]).half_plane()
    p = band.kx.size
    vol = lambda: (rng.standard_normal((nn,) * 3, np.float32)  # noqa: E731
                   + 1j * rng.standard_normal((nn,) * 3, np.float32)).astype(np.complex64)
    return {"vft0": vol(), "vft1": vol(), "kx": band.kx, "ky": band.ky,
            "x": (rng.standard_normal((frames, p), np.float32)
                  + 1j * rng.standard_normal((frames, p), np.float32)).astype(np.complex64),
            "ctf": rng.uniform(-1, 1, (frames, p)).astype(np.float32),
            "poses": random_rotations(frames, rng), **_crop_inputs(40 * frames, rng)}


def _crop_inputs(poses: int, rng: np.random.Generator) -> dict:
    """The lattice labelling's projections: a 96-px crop at 0.4773 Å, pad 2, the band 8–1.6 Å, random poses."""
    band = Band.make(CROP, r_max=CROP * CROP_SAMPLING / CROP_BAND_A[1],
                     r_min=CROP * CROP_SAMPLING / CROP_BAND_A[0]).half_plane()
    nn = PAD * CROP
    vft = (rng.standard_normal((nn,) * 3, np.float32) + 1j * rng.standard_normal((nn,) * 3, np.float32))
    return {"vft_crop": vft.astype(np.complex64), "kx_crop": band.kx, "ky_crop": band.ky,
            "grid": random_rotations(poses, rng)}


def _local(mod, d: dict, step: float) -> tuple[float, np.ndarray]:
    moves = np.delete(Rotation.from_rotvec(np.radians(step) * NEIGHBOURS).as_matrix(), CENTRE, axis=0)
    cands = np.ascontiguousarray(np.einsum("kij,mjl->mkil", moves, d["poses"]))
    out = np.empty(cands.shape[:2])
    t = time.perf_counter()
    mod.score_candidates(d["vft0"], cands, d["kx"], d["ky"], float(PAD), d["x"], d["ctf"], out)
    return time.perf_counter() - t, out


def _sweep(mod, d: dict, frames: int) -> tuple[float, np.ndarray]:
    deltas = np.stack([Rotation.from_rotvec(np.radians(s) * NEIGHBOURS).as_matrix() for s in (3.0, 1.0, 0.35)])
    poses = d["poses"][:frames].copy()
    cur = np.full(frames, -np.inf)
    moved = np.zeros(frames, np.bool_)
    halves = (np.arange(frames) % 2).astype(np.int64)
    args = (d["vft0"], d["vft1"], float(PAD), d["kx"], d["ky"], d["x"], d["ctf"], 0, 1, frames, halves, poses, cur,
            deltas, 1, moved, 0.0)
    # the lanes of the sweep's threads are an argument since this commit's kernels
    lanes = () if mod.sweep_poses.py_func.__code__.co_argcount == len(args) else (numba.get_num_threads(),)
    t = time.perf_counter()
    mod.sweep_poses(*args, *lanes)
    return time.perf_counter() - t, poses


def _extract(mod, d: dict) -> tuple[float, np.ndarray]:
    out = np.empty((len(d["grid"]), d["kx_crop"].size), np.complex64)
    t = time.perf_counter()
    mod.extract_slices(d["vft_crop"], d["grid"], d["kx_crop"], d["ky_crop"], float(PAD), out)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="the commit whose kernels are the peer")
    ap.add_argument("--frames", type=int, default=500, help="frames of the local search (the sweep: a fifth)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "score_kernels.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    d = _inputs(args.frames, rng)
    with tempfile.TemporaryDirectory() as tmp:
        peer = _kernels_of(args.against, Path(tmp))
        cases = [(f"local search {s}°", lambda mod, s=s: _local(mod, d, s)) for s in (4.0, 1.0, 0.5)]
        cases.append(("continuity sweep", lambda mod: _sweep(mod, d, max(2, args.frames // 5))))
        cases.append(("projections", lambda mod: _extract(mod, d)))
        for _, run in cases:  # compile both (numba) before timing
            run(peer), run(ours)
        rows = []
        for name, run in cases:
            times = {"against": [], "this": []}
            for _ in range(args.repeats):
                for key, mod in (("against", peer), ("this", ours)):
                    t, out = run(mod)
                    times[key].append(t)
                    if key == "against":
                        ref = out
                    elif not np.array_equal(out, ref):
                        sys.exit(f"{name}: the two kernels' outputs differ")
            med = {k: float(np.median(v)) for k, v in times.items()}
            rows.append({"case": name, "against_s": med["against"], "this_s": med["this"],
                         "speedup": med["against"] / med["this"], "same_bytes": True})
            print(f"{name:22s} {args.against}: {med['against']:.3f} s   this: {med['this']:.3f} s   "
                  f"{med['against'] / med['this']:.2f}x   same bytes")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result = {"commit": commit, "against": args.against, "frames": args.frames, "repeats": args.repeats,
              "box": N_BOX, "sampling_A": SAMPLING, "pad": PAD, "band_A": list(BAND_A),
              "band_samples": int(d["kx"].size), "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
              "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
