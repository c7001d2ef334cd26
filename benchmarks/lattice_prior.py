"""Stages 1–2 of the lattice ab initio (:mod:`tumblebench.reconstruct.lattice`) measured against the truth, per prior.

Run from the repository root::

    .venv/bin/python benchmarks/lattice_prior.py --work /tmp/tb_lattice      # ≈ 1.5 min on 2 cores (+ 75 s to
                                                                             # simulate the series once)

On the default multislice series (2,000 frames) each prior of :mod:`reconstruct.lattice` — a Pt ball (``fcc``)
and a Pt ball twinned on a central (111) plane (``fcc-twin``), radius from the frames' estimated diameter — is
searched over the fundamental zone of its rotation group by the shift-free amplitude score, and a Viterbi pass
over each frame's distinct peaks expanded by all branch mates (``pose·S``, ``TWIN·pose·S``; S: the prior's
rotations, for the twinned prior also the swap of its domains) gives the temporal path, exactly as
:func:`tumblebench.reconstruct.lattice.lattice_abinitio` does before its branch labelling. Reported per prior: the best
peak, the top-K peaks and the path scored per frame *modulo the branch mates* (does the frame have the right
orientation up to what the amplitudes cannot tell?) and the path with :func:`validation.poses.pose_errors` (one
global rotation: are the frames on one branch?). The labelling that follows, and the refinement, are measured
by ``benchmarks/reconstruct.py --only abinitio``.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumblebench.reconstruct.abinitio import AbInitioConfig  # noqa: E402
from tumblebench.reconstruct.config import ReconstructConfig  # noqa: E402
from tumblebench.reconstruct.lattice import (  # noqa: E402
    LatticeConfig,
    branch_mates,
    fringe_lattice_constant,
    prior_path,
    search_amplitudes,
)
from tumblebench.reconstruct.pipeline import prepare_frames  # noqa: E402
from tumblebench.reconstruct.search import fourier_crop, so3_grid  # noqa: E402
from tumblebench.simulator.builder import build_preset  # noqa: E402
from tumblebench.simulator.orientation import rotation_angle_deg  # noqa: E402
from tumblebench.simulator.outputs import git_commit, write_json  # noqa: E402
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides  # noqa: E402
from tumblebench.simulator.shapes import bulk_lattice_constant  # noqa: E402
from tumblebench.validation.poses import pose_errors  # noqa: E402


def error_mod(est: np.ndarray, true: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """Per frame: angle between ``true`` and the nearest of its branch mates ``est·S`` and ``TWIN·est·S`` (deg)."""
    return rotation_angle_deg(branch_mates(est, ops), true[:, None]).min(axis=1)


def fractions(e: np.ndarray) -> dict:
    return {"within_3deg": float(np.mean(e < 3)), "within_5deg": float(np.mean(e < 5)),
            "within_8deg": float(np.mean(e < 8)), "median_deg": float(np.median(e))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="frames of the default multislice series")
    ap.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    ap.add_argument("--priors", default="fcc,fcc-twin", help="comma-separated priors of reconstruct.lattice")
    args = ap.parse_args()
    lc = LatticeConfig()
    work = args.work or Path(tempfile.mkdtemp(prefix="tb_lattice_"))
    series = work / f"multislice_{args.frames}"
    if not (series / "frames.star").exists():
        simulate_series(build_preset("default"), with_overrides(SeriesConfig(), mode="multislice",
                                                                  n_frames=args.frames),
                        0, series, overwrite=True, progress=False)
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = ReconstructConfig(poses="truth")
    pf = prepare_frames(series / "frames.mrcs", series / "frames.star", cfg)
    boxes, diameter, sampling, ctf_fn = pf.boxes, pf.diameter_A, pf.sampling, pf.ctf
    true = pf.true_poses()  # for scoring only
    m, n, _ = boxes.shape
    ns = lc.box
    crop_sampling = sampling * n / ns
    band, amp, c2 = search_amplitudes(fourier_crop(boxes, ns), ns, crop_sampling, lc.band_A, ctf_fn)
    so3 = so3_grid(lc.grid_size)
    ab = AbInitioConfig()
    a_fit = fringe_lattice_constant(amp, band, c2, n, sampling, ns, diameter, lc.element)
    res = {"frames": m, "crop": ns, "band_A": list(lc.band_A), "lattice_constant_A": a_fit,
           "bulk_lattice_constant_A": bulk_lattice_constant(lc.element),
           "ball_radius_A": diameter / 2, "top_k": lc.top_k, "viterbi_weight": ab.continuity_weight,
           "viterbi_step_deg": ab.step_deg, "priors": {},
           "true_median_step_deg": float(np.median(rotation_angle_deg(true[1:], true[:-1])))}
    for kind in args.priors.split(","):
        t1 = time.perf_counter()
        pp = prior_path(kind, amp, band, c2, n, sampling, ns, diameter, lc, ab.step_deg, ab.continuity_weight, so3,
                        a_fit)
        recall = {}
        for k in sorted({1, 3, 10, lc.top_k}):
            ek = np.stack([error_mod(pp.peaks[:, j], true, pp.ops) for j in range(k)], 1).min(1)
            recall[f"top{k}_within_5deg"] = float(np.mean(ek < 5))
        pe = pose_errors(pp.path, true)
        res["priors"][kind] = {
            "sites": len(pp.sites), "rotation_group": len(pp.group), "branch_mates": 2 * len(pp.ops),
            "fz_grid": len(pp.grid), "best_pose_mod_mates": fractions(error_mod(pp.peaks[:, 0], true, pp.ops)),
            "candidates_mod_mates": recall,
            "viterbi_per_frame_mod_mates": fractions(error_mod(pp.path, true, pp.ops)),
            "viterbi_global_median_deg": pe.median_deg,
            "viterbi_global_within_5deg": float(np.mean(pe.angles_deg < 5)),
            "seconds": time.perf_counter() - t1}
        print(kind, json.dumps(res["priors"][kind], indent=1), flush=True)
    res.update(cpu_seconds=time.process_time() - c0, seconds=time.perf_counter() - t0, git_commit=git_commit(),
               loadavg=os.getloadavg())
    write_json(ROOT / "benchmarks" / "results" / "lattice_prior.json", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
