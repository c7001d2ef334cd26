"""Speed cost of the thread-count-independent gridding scatter (:func:`reconstruct._gridding_kernels.insert_slices`).

Run from the repository root (each configuration runs in its own process, so that numba's thread count is set
before numba starts)::

    nice -n 10 .venv/bin/python benchmarks/determinism.py            # 256 frames of a 128-px box, pad 2

``before`` is the scheme the project used until the change: one accumulator per thread (up to 4), frames dealt
round-robin to them, the accumulators summed at the end; its bytes depend on the thread count (the summation
order of each voxel does). ``after`` deals the z planes of one accumulator to the threads, each thread visiting
every sample in the serial order: the same bytes for any thread count, at the cost that every thread computes
every sample's coordinates. Each case reports the best of ``--repeats`` timed insertions (after a warm-up that
compiles the kernels) and the SHA-256 of the accumulated data and weights.

Writes ``benchmarks/results/determinism.json`` (with the commit, core count and load average).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _old_kernel():
    """The per-thread-accumulator scatter as it was (kept here for the comparison only)."""
    import numba

    from tumblebench.reconstruct._gridding_kernels import _corner_setup

    @numba.njit(cache=True, parallel=True)
    def insert_slices_threads(data, weight, rots, kx, ky, pad, values, ctf2):
        nt = data.shape[0]
        nn = data.shape[1]
        c = nn // 2
        m_total = rots.shape[0]
        for t in numba.prange(nt):
            for m in range(t, m_total, nt):
                a = rots[m]
                for j in range(kx.shape[0]):
                    px = pad * (a[0, 0] * kx[j] + a[1, 0] * ky[j])
                    py = pad * (a[0, 1] * kx[j] + a[1, 1] * ky[j])
                    pz = pad * (a[0, 2] * kx[j] + a[1, 2] * ky[j])
                    x0, y0, z0, fx, fy, fz = _corner_setup(px, py, pz, c)
                    if x0 < 0 or y0 < 0 or z0 < 0 or x0 + 1 >= nn or y0 + 1 >= nn or z0 + 1 >= nn:
                        continue
                    v = values[m, j]
                    w2 = ctf2[m, j]
                    for dz in range(2):
                        wz = fz if dz else 1.0 - fz
                        for dy in range(2):
                            wy = fy if dy else 1.0 - fy
                            for dx in range(2):
                                wx = fx if dx else 1.0 - fx
                                w = wz * wy * wx
                                data[t, z0 + dz, y0 + dy, x0 + dx] += w * v
                                weight[t, z0 + dz, y0 + dy, x0 + dx] += w * w2

    return insert_slices_threads


def run_one(scheme: str, frames: int, box: int, repeats: int) -> dict:
    """Time one scheme in this process (numba's thread count is whatever the environment set)."""
    import numba
    import numpy as np

    from tumblebench.reconstruct._gridding_kernels import insert_slices
    from tumblebench.reconstruct.projector import Band, image_ft
    from tumblebench.simulator.orientation import random_rotations

    rng = np.random.default_rng(0)
    nn = 2 * box
    band = Band.make(nn)
    rots = np.ascontiguousarray(random_rotations(frames, rng))
    img = rng.normal(size=(frames, box, box)).astype(np.float32)
    padded = np.zeros((frames, nn, nn), np.float32)
    o = nn // 2 - box // 2
    padded[:, o:o + box, o:o + box] = img
    vals = np.ascontiguousarray(band.take(image_ft(padded)), np.complex64)
    del padded
    w2 = np.ones(vals.shape, np.float32)
    threads = numba.get_num_threads()
    old = _old_kernel() if scheme == "before" else None

    def once():
        if scheme == "before":
            nt = min(threads, 4)
            data = np.zeros((nt, nn, nn, nn), np.complex64)
            weight = np.zeros((nt, nn, nn, nn), np.float32)
            t0 = time.perf_counter()
            old(data, weight, rots, band.kx, band.ky, 1.0, vals, w2)
            d, w = data.sum(axis=0), weight.sum(axis=0)  # the reduction the Reconstructor made when read
        else:
            d = np.zeros((nn, nn, nn), np.complex64)
            w = np.zeros((nn, nn, nn), np.float32)
            t0 = time.perf_counter()
            insert_slices(d, w, rots, band.kx, band.ky, 1.0, vals, w2, threads)
        return time.perf_counter() - t0, d, w

    small = slice(0, 2)  # warm-up: compiles (or loads) the kernel
    if scheme == "before":
        old(np.zeros((1, nn, nn, nn), np.complex64), np.zeros((1, nn, nn, nn), np.float32), rots[small],
            band.kx, band.ky, 1.0, vals[small], w2[small])
    else:
        insert_slices(np.zeros((nn, nn, nn), np.complex64), np.zeros((nn, nn, nn), np.float32), rots[small],
                      band.kx, band.ky, 1.0, vals[small], w2[small], threads)
    times = []
    for _ in range(repeats):
        t, d, w = once()
        times.append(t)
    return {"scheme": scheme, "threads": threads, "seconds_best": min(times), "seconds_all": times,
            "sha256_data": hashlib.sha256(d.tobytes()).hexdigest(),
            "sha256_weight": hashlib.sha256(w.tobytes()).hexdigest()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.frames, args.box, args.repeats)))
        return 0
    sys.path.insert(0, str(ROOT))
    from tumblebench.simulator.outputs import git_commit, write_json

    load0 = os.getloadavg()
    rows = []
    for scheme in ("before", "after"):
        for t in [int(x) for x in args.threads.split(",")]:
            env = {**os.environ, "NUMBA_NUM_THREADS": str(t)}
            res = subprocess.run([sys.executable, __file__, "--child", scheme, "--frames", str(args.frames),
                                  "--box", str(args.box), "--repeats", str(args.repeats)],
                                 env=env, capture_output=True, text=True, check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{scheme:6s} threads {t}: {row['seconds_best']:.2f} s  data {row['sha256_data'][:12]}  "
                  f"weight {row['sha256_weight'][:12]}", flush=True)
    by = {(r["scheme"], r["threads"]): r for r in rows}
    ts = sorted({r["threads"] for r in rows})
    ratios = {f"after/before_{t}_threads": by["after", t]["seconds_best"] / by["before", t]["seconds_best"]
              for t in ts}
    same_after = len({(by["after", t]["sha256_data"], by["after", t]["sha256_weight"]) for t in ts}) == 1
    same_before = len({(by["before", t]["sha256_data"], by["before", t]["sha256_weight"]) for t in ts}) == 1
    after_equals_serial_before = (by["after", ts[0]]["sha256_data"] == by["before", 1]["sha256_data"]
                                  if ("before", 1) in by else None)
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    print(f"same bytes for every thread count: before {same_before}, after {same_after}; after equals the "
          f"serial (1-thread) before: {after_equals_serial_before}")
    out = ROOT / "benchmarks" / "results" / "determinism.json"
    write_json(out, {"frames": args.frames, "box": args.box, "pad": 2, "repeats": args.repeats, "rows": rows,
                     "time_ratios": ratios, "same_bytes_any_threads_before": same_before,
                     "same_bytes_any_threads_after": same_after,
                     "after_equals_serial_before": after_equals_serial_before,
                     "cpu_count": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                     "git_commit": git_commit(),
                     "note": "best of the repeats; the machine was shared (see the load averages)"})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
