"""How much orientation information do the frames carry, band by band? (why ab initio works or does not)

Run from the repository root::

    .venv/bin/python benchmarks/pose_information.py            # ≈ 4 min on 2 cores
    .venv/bin/python benchmarks/pose_information.py --frames 400 --work /tmp/tb_poseinfo

For 400-frame series of the default particle in ``projection`` and ``multislice`` mode (default dose; the
multislice series also at a defocus of +150 Å underfocus instead of the default −63 Å NCSI overfocus, which
transfers the 3–8 Å band) it measures, with the truth known:

1. **per-band signal**: the median over frames of the normalised correlation, in resolution bands, between a
   frame (tracked, background removed, as ``reconstruct`` cuts it) and the truth map projected at the frame's
   true pose and shift, multiplied by the CTF ``reconstruct`` assumes (amplitude contrast 0.1). It is the
   fraction of a frame's power in that band that the linear image model explains;
2. **oracle global search**: the truth map itself as the reference, every frame searched over the 20,000-point
   SO(3) grid of the ab initio stage (8–2.2 Å, CTF-weighted, no continuity): the fraction of frames that land
   within 8° of their true pose, and, with each frame's exact true pose added to the grid, the fraction of
   frames whose own true pose scores best. This is an upper bound for any per-frame global search;
3. **ab initio**: the pose error after every iteration of the default ab initio stage from a featureless start
   (subset = every frame, one start), scored after the best global rotation and hand.

A fourth case, ``projection_highpass3.3A``, is the projection series with every frequency below 1/3.3 Å removed
from the boxes: projection-mode frames reduced to the band where the default multislice frames carry their
signal, to tell a lack of information from the imaging non-linearity.

Writes ``benchmarks/results/pose_information.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumblebench.reconstruct.abinitio import AbInitioConfig, abinitio, global_scores  # noqa: E402
from tumblebench.reconstruct.config import ReconstructConfig  # noqa: E402
from tumblebench.reconstruct.pipeline import prepare_frames  # noqa: E402
from tumblebench.reconstruct.projector import (  # noqa: E402
    Band,
    image_from_ft,
    image_ft,
    prepare_reference,
    project,
    shift_phases,
)
from tumblebench.reconstruct.search import fourier_crop, fourier_crop_volume, so3_grid  # noqa: E402
from tumblebench.simulator.builder import build_preset  # noqa: E402
from tumblebench.simulator.mrc import read_volume  # noqa: E402
from tumblebench.simulator.outputs import git_commit, write_json  # noqa: E402
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides  # noqa: E402
from tumblebench.validation.poses import pose_errors  # noqa: E402

BANDS_A = ((22.9, 11.5), (11.5, 7.6), (7.6, 5.7), (5.7, 4.6), (4.6, 3.3), (3.3, 2.3), (2.3, 1.64), (1.64, 1.15),
           (1.15, 0.92))


def simulate(out: Path, mode: str, n_frames: int, defocus_A: float | None) -> Path:
    """A series of the default particle (cached by directory)."""
    if (out / "frames.star").exists():
        return out
    cfg = with_overrides(SeriesConfig(), mode=mode, n_frames=n_frames)
    if defocus_A is not None:
        cfg = dc.replace(cfg, imaging=dc.replace(cfg.imaging,
                                                 optics=dc.replace(cfg.imaging.optics, defocus_A=defocus_A)))
    simulate_series(build_preset("default"), cfg, 0, out, overwrite=True, progress=False)
    return out


def measure(series: Path, highpass_A: float | None = None) -> dict:
    """The three measurements on one series (see the module docstring); ``highpass_A``: remove every frequency
    below 1/highpass_A from the boxes first."""
    cfg = ReconstructConfig(poses="truth")
    pf = prepare_frames(series / "frames.mrcs", series / "frames.star", cfg)
    boxes, origins, rows, diameter, ctf_fn = pf.boxes, pf.origins, pf.rows, pf.diameter_A, pf.ctf
    sampling = pf.sampling
    truth_poses = pf.true_poses()
    truth, _ = read_volume(series / "truth_map.mrc")
    n = boxes.shape[-1]
    if highpass_A is not None:
        keep = Band.make(n, r_max=n, r_min=n * sampling / highpass_A)
        boxes = image_from_ft(keep.put(keep.take(image_ft(boxes))))
    m = len(rows)

    # 1. per-band signal at the true pose and shift
    shifts = pf.true_shifts_px()
    proj = project(prepare_reference(np.asarray(truth, np.float32)), truth_poses, shifts)
    f = image_ft(boxes - boxes.mean(axis=(1, 2), keepdims=True))
    p = image_ft(proj - proj.mean(axis=(1, 2), keepdims=True))
    if ctf_fn is not None:
        p = p * ctf_fn(np.arange(m), (n, n), sampling)
    k = np.arange(n) - n // 2
    rr = np.hypot(*np.meshgrid(k, k))
    bands = {}
    for lo_a, hi_a in BANDS_A:
        sel = (rr >= n * sampling / lo_a) & (rr < n * sampling / hi_a)
        a, b = f[:, sel], p[:, sel]
        cc = (a * b.conj()).real.sum(1) / np.sqrt((np.abs(a) ** 2).sum(1) * (np.abs(b) ** 2).sum(1))
        bands[f"{lo_a}-{hi_a}"] = float(np.median(cc))

    # 2. oracle global search with the truth map as the reference
    acfg = AbInitioConfig()
    ns = acfg.box
    crop_sampling = sampling * n / ns
    full = Band.make(ns, r_max=ns)
    ft = full.put(full.take(image_ft(fourier_crop(boxes, ns))) * shift_phases(full, np.asarray(origins) * ns / n))
    band = Band.make(ns, r_max=ns * crop_sampling / 2.2, r_min=ns * crop_sampling / 8.0)
    img = band.take(ft)
    cb = None
    if ctf_fn is not None:
        c = band.take(ctf_fn(np.arange(m), (ns, ns), crop_sampling))
        img, cb = img * c, (c**2).mean(axis=0)
    vol = fourier_crop_volume(truth, ns)
    grid = so3_grid(acfg.grid_size)
    ci, _ = global_scores(vol, img, band, grid, cb, top_k=1)
    ang = np.degrees(np.arccos(np.clip((np.einsum("nij,nij->n", grid[ci[:, 0]], truth_poses) - 1) / 2, -1, 1)))
    ci2, _ = global_scores(vol, img, band, np.concatenate([grid, truth_poses]), cb, top_k=1)
    own = float(np.mean(ci2[:, 0] == len(grid) + np.arange(m)))

    # 3. ab initio from a featureless start, error after every iteration
    trace = []

    def monitor(start, res, sub, rots, score):
        trace.append({"resolution_A": round(float(res), 3),
                      "median_pose_error_deg": float(pose_errors(rots, truth_poses[sub]).median_deg)})

    t = time.perf_counter()
    poses, _, _ = abinitio(boxes, sampling, diameter, dc.replace(acfg, n_starts=1), np.random.default_rng(0),
                           ctf_fn=ctf_fn, monitor=monitor, shifts_px=origins)
    return {"frames": m, "band_correlation": bands, "oracle_within_8deg": float(np.mean(ang < 8.0)),
            "oracle_median_deg": float(np.median(ang)), "oracle_own_pose_wins": own,
            "abinitio_trace": trace, "abinitio_median_deg": float(pose_errors(poses, truth_poses).median_deg),
            "abinitio_seconds": time.perf_counter() - t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400, help="frames per series")
    ap.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tb_poseinfo_"))
    work.mkdir(parents=True, exist_ok=True)
    cases = {"projection": ("projection", None, None), "multislice": ("multislice", None, None),
             "multislice_defocus+150A": ("multislice", 150.0, None),
             "projection_highpass3.3A": ("projection", None, 3.3)}
    results: dict = {"cases": {}, "git_commit": git_commit(), "loadavg_start": os.getloadavg()}
    for name, (mode, df, hp) in cases.items():
        ser = simulate(work / (mode if hp else name), mode, args.frames, df)
        results["cases"][name] = measure(ser, hp)
        print(f"{name}: {json.dumps(results['cases'][name])}", flush=True)
    results["loadavg_end"] = os.getloadavg()
    write_json(ROOT / "benchmarks" / "results" / "pose_information.json", results)
    names = list(cases)
    print("\nmedian per-frame correlation with the CTF-weighted truth projection at the true pose")
    print("| band (Å) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for b in results["cases"][names[0]]["band_correlation"]:
        print(f"| {b} | " + " | ".join(f"{results['cases'][c]['band_correlation'][b]:.3f}" for c in names) + " |")
    for key, label in (("oracle_within_8deg", "oracle search: frames within 8°"),
                       ("oracle_own_pose_wins", "oracle search: own true pose scores best"),
                       ("abinitio_median_deg", "ab initio (no refinement): median error (deg)")):
        print(f"| {label} | " + " | ".join(f"{results['cases'][c][key]:.2f}" for c in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
