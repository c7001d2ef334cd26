"""Can a generic fcc lattice give the ab initio stage its global orientations? (measured, not in the package)

Run from the repository root::

    .venv/bin/python benchmarks/lattice_prior.py --work /tmp/tb_lattice      # ≈ 3 min on 2 cores (+ 75 s to
                                                                             # simulate the series once)

On the default multislice series (2,000 frames) the reference is a Pt ball (bulk lattice constant from
:mod:`analysis.config`, radius from the frames' estimated diameter, atoms on the lattice through the box
centre) simulated by :func:`analysis.model.simulate_map`: no truth. The ball is invariant under the cube's 24
rotations O (``pose·S`` projects like ``pose``), so the search covers only the fundamental zone of O, 24× denser
than a whole-SO(3) grid of the same cost. The score is shift-free (the tracker's origins are ~0.6 Å off and the
ball's lattice origin need not be the particle's centroid): the correlation of the shell-whitened amplitudes
|F|·|CTF| of a frame with those of the ball's projection times the mean CTF², on a Fourier-cropped box and a
band where the lattice fringes are. Amplitudes cannot tell a pose from the pose turned 180° about the beam
(``TWIN·pose``), so the per-frame errors are scored modulo O and TWIN. A Viterbi pass over the trajectory then
chooses, among each frame's top-K distinct peaks expanded by the 48 operations, the smoothest path; its result is
scored per frame (modulo O and TWIN: does the frame have the right orientation up to the ambiguity?) and with
:func:`validation.poses.pose_errors` (one global rotation: are the frames consistent with each other?).

Writes ``benchmarks/results/lattice_prior.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.config import LATTICE_CONSTANTS_A  # noqa: E402
from analysis.model import simulate_map  # noqa: E402
from reconstruct.abinitio import _distinct_peaks, fourier_crop, fourier_crop_volume, so3_grid, viterbi  # noqa: E402
from reconstruct.config import ReconstructConfig  # noqa: E402
from reconstruct.pipeline import _check_inputs, _oracle_poses, make_ctf_fn, track_and_cut  # noqa: E402
from reconstruct.projector import Band, image_ft, prepare_reference, project_band  # noqa: E402
from simulator.builder import build_preset  # noqa: E402
from simulator.orientation import rotation_angle_deg  # noqa: E402
from simulator.outputs import git_commit, write_json  # noqa: E402
from simulator.series import SeriesConfig, simulate_series, with_overrides  # noqa: E402
from validation.poses import TWIN, cubic_group, pose_errors  # noqa: E402

O = cubic_group()


def ball_map(a: float, radius: float, n: int, voxel: float) -> np.ndarray:
    """Map of the fcc sites (cube axes along x, y, z, a site at the centre) within ``radius`` Å of the centre."""
    cell = bulk("Pt", "fcc", a=a, cubic=True)
    k = int(np.ceil(radius / a)) + 1
    pos = cell.repeat((2 * k, 2 * k, 2 * k)).get_positions() - k * a
    pos = pos[np.linalg.norm(pos, axis=1) <= radius]
    return simulate_map(pos + (n // 2) * voxel, (n, n, n), voxel, "Pt", 0.01, 0.9)


def fundamental_zone(n_full: int) -> np.ndarray:
    """The poses of ``so3_grid(n_full)`` that are the nearest to identity among their 24 mates ``g·S``."""
    g = so3_grid(n_full)
    assert np.allclose(O[0], np.eye(3))
    return g[np.argmax(np.einsum("nij,sji->ns", g, O), axis=1) == 0]


def error_mod(est: np.ndarray, true: np.ndarray, twin: bool) -> np.ndarray:
    """Per frame: angle between ``true`` and the nearest of ``est·S`` (and ``TWIN·est·S``), S in O (deg)."""
    mates = np.einsum("nij,sjk->nsik", est, O)
    if twin:
        mates = np.concatenate([mates, np.einsum("ij,nsjk->nsik", TWIN, mates)], axis=1)
    return rotation_angle_deg(mates, true[:, None]).min(axis=1)


def _whiten(x: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    xs = x[:, order]
    cnt = np.diff(np.append(starts, xs.shape[1]))
    xs = xs - np.repeat(np.add.reduceat(xs, starts, axis=1) / cnt, cnt, axis=1)
    xs /= np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-30)
    return np.ascontiguousarray(xs, np.float32)


def amplitude_search(vol: np.ndarray, amp: np.ndarray, band: Band, grid: np.ndarray, c2: np.ndarray, top_k: int,
                     chunk: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Top-``top_k`` grid poses per frame by the correlation of shell-whitened amplitudes; (idx, z-scores)."""
    shell = np.rint(band.radius).astype(int)
    order = np.argsort(shell, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(shell[order]) != 0])
    x = _whiten(amp.astype(np.float32), order, starts)
    ref = prepare_reference(vol)
    m, g = len(x), len(grid)
    s1, s2 = np.zeros(m), np.zeros(m)
    best_v = np.full((m, top_k), -np.inf, np.float32)
    best_i = np.zeros((m, top_k), np.int64)
    for s in range(0, g, chunk):
        r = _whiten((np.abs(project_band(ref, grid[s:s + chunk], band)) * c2).astype(np.float32), order, starts)
        cc = x @ r.T
        s1 += cc.sum(1)
        s2 += (cc.astype(np.float64) ** 2).sum(1)
        v = np.concatenate([best_v, cc], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(s, s + len(r)), cc.shape)], axis=1)
        part = np.argpartition(-v, top_k - 1, axis=1)[:, :top_k]
        best_v, best_i = np.take_along_axis(v, part, 1), np.take_along_axis(i, part, 1)
    o = np.argsort(-best_v, axis=1)
    best_v, best_i = np.take_along_axis(best_v, o, 1), np.take_along_axis(best_i, o, 1)
    mean = s1 / g
    sd = np.sqrt(np.maximum(s2 / g - mean**2, 1e-30))
    return best_i, (best_v - mean[:, None]) / sd[:, None]


def fractions(e: np.ndarray) -> dict:
    return {"within_3deg": float(np.mean(e < 3)), "within_5deg": float(np.mean(e < 5)),
            "within_8deg": float(np.mean(e < 8)), "median_deg": float(np.median(e))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="frames of the default multislice series")
    ap.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    ap.add_argument("--crop", type=int, default=96, help="Fourier-cropped box (pixels)")
    ap.add_argument("--band", default="4,1.1", help="band of the score, low,high resolution (Å)")
    ap.add_argument("--grid", type=int, default=480000, help="whole-SO(3) grid reduced to the fundamental zone")
    ap.add_argument("--top-k", type=int, default=20, help="distinct peaks (6° apart) per frame for the Viterbi")
    ap.add_argument("--weight", type=float, default=0.3, help="continuity weight of the Viterbi")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tb_lattice_"))
    series = work / f"multislice_{args.frames}"
    if not (series / "frames.star").exists():
        simulate_series(build_preset("default"), with_overrides(SeriesConfig(), mode="multislice",
                                                                  n_frames=args.frames),
                        0, series, overwrite=True, progress=False)
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = ReconstructConfig(poses="truth")
    stack, pixel, optics, particles = _check_inputs(series / "frames.mrcs", series / "frames.star", cfg)
    boxes, _, rows, _, _, diameter, _, _ = track_and_cut(stack, pixel, cfg, False, False)
    del stack
    manifest = json.loads((series / "manifest.json").read_text())
    ctf_fn = make_ctf_fn(optics, particles, manifest, rows, cfg.amplitude_contrast)
    true = _oracle_poses(particles, rows, "truth", np.random.default_rng(0))  # for scoring only
    m, n, _ = boxes.shape
    ns = args.crop
    ps = pixel * n / ns
    lo, hi = (float(x) for x in args.band.split(","))
    band = Band.make(ns, r_max=ns * ps / hi, r_min=ns * ps / lo)
    half = (band.ky > 0) | ((band.ky == 0) & (band.kx > 0))  # |F| is centrosymmetric: half the band suffices
    band = Band(band.n, band.kx[half].copy(), band.ky[half].copy(), band.index[half].copy(),
                band.radius[half].copy())
    amp = np.empty((m, band.kx.size), np.float32)
    c2 = np.zeros(band.kx.size)
    for s in range(0, m, 500):
        sel = np.arange(s, min(s + 500, m))
        c = band.take(ctf_fn(sel, (ns, ns), ps))
        amp[sel] = np.abs(band.take(image_ft(fourier_crop(boxes[sel], ns)))) * np.abs(c)
        c2 += (c**2).sum(axis=0)
    c2 /= m
    a = LATTICE_CONSTANTS_A["Pt"]
    vol = fourier_crop_volume(ball_map(a, diameter / 2, n, pixel), ns)
    grid = fundamental_zone(args.grid)
    t_prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    idx, z = amplitude_search(vol, amp, band, grid, c2, 8 * args.top_k)
    t_search = time.perf_counter() - t1
    best = grid[idx[:, 0]]
    cand_idx = np.empty((m, args.top_k), np.int64)
    cand_val = np.empty((m, args.top_k), np.float32)
    _distinct_peaks(np.ascontiguousarray(grid), idx, z.astype(np.float32), float(np.cos(np.radians(6.0))),
                    cand_idx, cand_val)
    cand = grid[cand_idx]
    recall = {}
    for k in sorted({1, 3, 10, args.top_k}):
        ek = np.stack([error_mod(cand[:, j], true, True) for j in range(k)], 1).min(1)
        recall[f"top{k}_within_5deg"] = float(np.mean(ek < 5))
    # Viterbi over the candidates expanded by the 48 operations (right O, left TWIN)
    t2 = time.perf_counter()
    ex = np.einsum("nkij,sjl->nksil", cand, O)
    ex = np.stack([ex, np.einsum("ij,nksjl->nksil", TWIN, ex)], 2).reshape(m, -1, 3, 3)
    sc = np.repeat(cand_val[:, :, None].astype(np.float64), 48, axis=2).reshape(m, -1)
    # a Brownian step size (ab initio would have to estimate it)
    step = float(np.median(rotation_angle_deg(true[1:], true[:-1])))
    path = viterbi(ex, sc, step, args.weight)
    est = ex[np.arange(m), path]
    t_viterbi = time.perf_counter() - t2
    pe = pose_errors(est, true)
    res = {
        "frames": m, "crop": ns, "band_A": [lo, hi], "lattice_constant_A": a, "ball_radius_A": diameter / 2,
        "fz_grid": len(grid), "top_k": args.top_k, "viterbi_weight": args.weight, "viterbi_step_deg": step,
        "best_pose_mod_O": fractions(error_mod(best, true, False)),
        "best_pose_mod_O_twin": fractions(error_mod(best, true, True)),
        "candidates_mod_O_twin": recall,
        "viterbi_per_frame_mod_O_twin": fractions(error_mod(est, true, True)),
        "viterbi_global_median_deg": pe.median_deg,
        "viterbi_global_within_5deg": float(np.mean(pe.angles_deg < 5)),
        "seconds": {"prepare": t_prep, "search": t_search, "viterbi": t_viterbi},
        "cpu_seconds": time.process_time() - c0, "git_commit": git_commit(), "loadavg": os.getloadavg(),
    }
    write_json(ROOT / "benchmarks" / "results" / "lattice_prior.json", res)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
