"""Speed of the reconstruction's per-pass map work, before and after two changes that keep its bytes.

Run from the repository root::

    .venv/bin/python benchmarks/reference_pair.py          # the real particle's half maps, 5 repeats

1. *FFT layout.* ``prepare_reference`` used to pad the map at the centre, ``ifftshift`` it, take the FFT and
   ``fftshift`` and copy the result; ``Reconstructor.reconstruct`` divided into a centred transform, shifted it,
   inverted it, shifted the whole padded map back and cropped. Now the map is placed straight into the FFT's
   uncentred layout, the Wiener division writes that layout and the crop is read from it. The ``before`` code is
   kept in this script for the comparison.
2. *Half maps' models side by side.* The reference-model builder (``analysis.reference.atom_reference``) runs on
   two half maps at a time; ``before`` builds them one after the other, ``after`` one in a helper process
   (``reconstruct.model_pair.ReferenceModelPair``; its start-up is left out, it happens once per reconstruction).

The maps are the real SINGLE-traced particle (``tests/data/stage1_docked_ATMS.pdb``) simulated at the sizes the
reconstruction uses: the refinement's half maps (128³ at 0.358 Å, padded to 256³) and the labelling's cropped maps
(96³ at 0.4773 Å, padded to 192³), with noise as in a half map. Each figure is the median of ``--repeats`` runs,
``before`` and ``after`` alternating; every pair is checked for identical bytes. Writes
``benchmarks/results/reference_pair.json`` (with the commit, core count and load average).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numba
import numpy as np
import scipy.fft

from tumblebench.analysis.model import simulate_map
from tumblebench.analysis.reference import atom_reference
from tumblebench.reconstruct.model_pair import ReferenceModelPair, model_pair
from tumblebench.reconstruct.projector import Reconstructor, _gridding_correction, prepare_reference
from tumblebench.simulator.nanocrystal import read_structure
from tumblebench.simulator.orientation import random_rotations

ROOT = Path(__file__).resolve().parents[1]


@numba.njit(cache=True, parallel=True)
def _hermitian_divide_centred(data, weight, shells, reg, scale, out):
    """The Wiener division as it was: the same values as ``hermitian_divide``, written in the centred layout."""
    nn = data.shape[0]
    for z in numba.prange(nn):
        mz = (nn - z) % nn
        for y in range(nn):
            my = (nn - y) % nn
            for x in range(nn):
                mx = (nn - x) % nn
                s = shells[z, y, x]
                d = data[z, y, x] + np.conj(data[mz, my, mx])
                w = weight[z, y, x] + weight[mz, my, mx] + reg[s]
                out[z, y, x] = d * (scale[s] / max(w, np.float32(1e-30)))


def prepare_before(vol: np.ndarray, pad: int = 2) -> np.ndarray:
    n = vol.shape[0]
    nn = pad * n
    big = np.zeros((nn, nn, nn), np.float32)
    o = nn // 2 - n // 2
    big[o:o + n, o:o + n, o:o + n] = vol / _gridding_correction(n, nn)
    return scipy.fft.fftshift(scipy.fft.fftn(scipy.fft.ifftshift(big), workers=-1)).astype(np.complex64)


def reconstruct_before(rec: Reconstructor, tau: float = 1e-3) -> np.ndarray:
    nn, n = rec.data.shape[0], rec.n
    shells = rec.shell_index()
    nsh = int(shells.max()) + 1
    wsum = 2 * np.bincount(shells.ravel(), weights=rec.weight.ravel(), minlength=nsh)
    wmean = wsum / np.maximum(np.bincount(shells.ravel(), minlength=nsh), 1)
    scale = np.ones(nsh)
    scale[n // 2 + 1:] = 0
    ft = np.empty_like(rec.data)
    _hermitian_divide_centred(rec.data, rec.weight, shells, (tau * wmean).astype(np.float32), scale.astype(np.float32),
                              ft)
    big = scipy.fft.fftshift(scipy.fft.ifftn(scipy.fft.ifftshift(ft), workers=-1)).real.astype(np.float32)
    o = nn // 2 - n // 2
    return (big[o:o + n, o:o + n, o:o + n] / _gridding_correction(n, nn)).astype(np.float32)


def half_maps(n: int, sampling: float, seed: int) -> list[np.ndarray]:
    """Two noisy maps of the real particle, centred in an n³ box (potential in V)."""
    pos = read_structure(ROOT / "tests/data/stage1_docked_ATMS.pdb", element="Pt").get_positions()
    pos = pos - pos.mean(axis=0) + (n // 2) * sampling
    clean = simulate_map(pos, (n, n, n), sampling, "Pt", 0.01, 0.9)
    rng = np.random.default_rng(seed)
    return [(clean + 0.3 * clean.std() * rng.standard_normal(clean.shape)).astype(np.float32) for _ in range(2)]


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) if isinstance(a, list) else np.array_equal(a, b)


def measure(what: str, n: int, sampling: float, pair: ReferenceModelPair, repeats: int) -> list[dict]:
    """The three steps on maps of an n³ box (sampling in Å), before and after, alternating."""
    vols = half_maps(n, sampling, seed=n)
    rec = Reconstructor(n, pad=2)
    imgs = np.random.default_rng(1).standard_normal((256, n, n)).astype(np.float32)
    rec.insert(imgs, random_rotations(256, np.random.default_rng(2)), np.zeros((256, 2)))
    cases = {
        "prepare_reference": (lambda: prepare_before(vols[0]), lambda: prepare_reference(vols[0]).vft),
        "Reconstructor.reconstruct": (lambda: reconstruct_before(rec), lambda: rec.reconstruct(1e-3)),
        "atom models of two half maps": (lambda: model_pair(atom_reference, vols, sampling),
                                         lambda: pair.pair(vols, sampling)),
    }
    rows = []
    for name, (before, after) in cases.items():
        before(), after()  # warm-up: numba compilation, the helper's start-up, FFT plans
        tb, ta = [], []
        for _ in range(repeats):
            t0, a = timed(before)
            t1, b = timed(after)
            if not same(a, b):
                raise SystemExit(f"{what}, {name}: before and after differ")
            tb.append(t0)
            ta.append(t1)
        row = {"maps": what, "box": n, "step": name, "before_ms": 1e3 * float(np.median(tb)),
               "after_ms": 1e3 * float(np.median(ta))}
        row["ratio"] = row["before_ms"] / row["after_ms"]
        rows.append(row)
        print(f"{what:24s} {name:30s} before {row['before_ms']:8.1f} ms  after {row['after_ms']:8.1f} ms  "
              f"× {row['ratio']:.2f}  (same bytes)", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reference_pair.json")
    args = ap.parse_args()
    with ReferenceModelPair(atom_reference) as pair:
        rows = [*measure("refinement half maps", 128, 0.358, pair, args.repeats),
                *measure("labelling cropped maps", 96, 0.4773, pair, args.repeats)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    result = {"benchmark": "reference_pair", "commit": commit.strip(), "cores": len(os.sched_getaffinity(0)),
              "load_average_1_5_15_min": list(os.getloadavg()), "repeats": args.repeats, "rows": rows,
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
