"""Speed of the reconstruction's half maps with the frames' padded transforms computed once (``SliceSpectra``).

Run from the repository root::

    .venv/bin/python benchmarks/slice_spectra.py          # 2,000 frames, 5 repeats

Every half map of the refinement inserts the same particle boxes at new poses and shifts, and every map of the
lattice labelling the same cropped frames. ``before`` pads and transforms the frames for each map
(``Reconstructor.insert``); ``after`` takes their transforms on the insert band from a ``SliceSpectra`` computed
once (``Reconstructor.insert_spectra``). The sizes are the reconstruction's: the refinement's 128-px boxes at
0.358 Å (all frequencies to Nyquist) and the labelling's 96-px crops at 0.4773 Å (to ``map_resolution_A``), each
with its CTF and shifts, both half sets of ``--frames`` frames per map as ``reconstruct_halves`` and
``BranchLabeller.build`` insert them. The cost of gridding does not depend on what the frames show, so they are
noise. Each figure is the median of ``--repeats`` maps, ``before`` and ``after`` alternating; every pair is checked
for identical bytes. Writes ``benchmarks/results/slice_spectra.json`` (with the commit, core count and load
average).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from tumblebench.reconstruct.lattice import LatticeConfig
from tumblebench.reconstruct.projector import Reconstructor, SliceSpectra
from tumblebench.simulator.orientation import random_rotations

ROOT = Path(__file__).resolve().parents[1]


def _ctf(m: int, nn: int, rng: np.random.Generator) -> np.ndarray:
    """(m, nn, nn) float32 transfer, even in k, a defocus of its own per frame."""
    k = np.arange(nn) - nn // 2
    k2 = (k[:, None] ** 2 + k[None, :] ** 2).astype(np.float32)
    return np.cos(k2[None] * np.float32(3e-3) + rng.uniform(0, 1, (m, 1, 1)).astype(np.float32))


def _halves(rec_n: int, frames: np.ndarray | SliceSpectra, rots: np.ndarray, shifts: np.ndarray, ctf: np.ndarray,
            r_max: float | None) -> tuple[Reconstructor, Reconstructor]:
    """Both half sets (even, odd frames) inserted 256 frames at a time, as ``reconstruct_halves`` does."""
    recs = (Reconstructor(rec_n), Reconstructor(rec_n))
    m = len(rots)
    for h in (0, 1):
        idx = np.arange(h, m, 2)
        for s in range(0, len(idx), 256):
            sel = idx[s:s + 256]
            if isinstance(frames, SliceSpectra):
                recs[h].insert_spectra(frames, sel, rots[sel], shifts[sel], ctf=ctf[sel])
            else:
                recs[h].insert(frames[sel], rots[sel], shifts[sel], ctf=ctf[sel], r_max=r_max)
    return recs


def measure(name: str, n: int, sampling: float, r_max: float | None, m: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((m, n, n)).astype(np.float32)
    ctf = _ctf(m, 2 * n, rng)
    t = time.perf_counter()
    spectra = SliceSpectra(frames, 2, r_max)
    once = time.perf_counter() - t
    before, after = [], []
    for rep in range(repeats + 1):  # the first pair compiles and warms; not counted
        rots = random_rotations(m, rng)
        shifts = rng.uniform(-3, 3, (m, 2))
        t = time.perf_counter()
        a = _halves(n, frames, rots, shifts, ctf, r_max)
        t_a = time.perf_counter() - t
        t = time.perf_counter()
        b = _halves(n, spectra, rots, shifts, ctf, r_max)
        t_b = time.perf_counter() - t
        for x, y in zip(a, b, strict=True):
            if not (np.array_equal(x.data, y.data) and np.array_equal(x.weight, y.weight)):
                raise SystemExit(f"{name}: the spectra's half maps differ from the frames' (repeat {rep})")
        if rep:
            before.append(t_a)
            after.append(t_b)
    row = {"maps": name, "box": n, "sampling_A": sampling, "r_max_px": r_max, "frames": m,
           "before_s_per_map_pair": float(np.median(before)), "after_s_per_map_pair": float(np.median(after)),
           "spectra_once_s": once}
    row["saved_s_per_map_pair"] = row["before_s_per_map_pair"] - row["after_s_per_map_pair"]
    row["ratio"] = row["before_s_per_map_pair"] / row["after_s_per_map_pair"]
    row["break_even_map_pairs"] = once / row["saved_s_per_map_pair"] if row["saved_s_per_map_pair"] > 0 else None
    print(f"{name} ({n} px, {m} frames): before {row['before_s_per_map_pair']:.2f} s, after "
          f"{row['after_s_per_map_pair']:.2f} s per pair of half maps ({row['ratio']:.2f}x); spectra once "
          f"{once:.2f} s, paid back after {row['break_even_map_pairs']:.1f} pairs; the same bytes")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/slice_spectra.json")
    args = ap.parse_args()
    lattice = LatticeConfig()
    crop_sampling = 0.358 * 128 / lattice.box
    rows = [measure("refinement half maps", 128, 0.358, None, args.frames, args.repeats),
            measure("labelling maps", lattice.box, crop_sampling, lattice.box * crop_sampling /
                    lattice.map_resolution_A, args.frames, args.repeats)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    result = {"benchmark": "slice_spectra", "commit": commit.strip(), "cores": len(os.sched_getaffinity(0)),
              "load_average_1_5_15_min": list(os.getloadavg()), "repeats": args.repeats, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
