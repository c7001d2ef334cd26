"""Stage 3 of the lattice ab initio (the branch labelling) measured against the truth: where does it lose frames?

Run from the repository root::

    .venv/bin/python benchmarks/lattice_labelling.py --work DIR --series-seed 1     # ≈ 8 min on 2 cores
                                                                                    # (+ 75 s to simulate)
    .venv/bin/python benchmarks/lattice_labelling.py --data CACHE/KEY               # a bench case's data

On a default multislice series (2,000 frames) of the default particle (or on the particle and series of a
``bench``/``study`` data-cache entry, ``--data``: e.g. a case of the ``robustness`` suite) it runs stages 1–2 of
:mod:`tumblebench.reconstruct.lattice` for one prior (default ``fcc-twin``, the prior chosen on that particle)
and then measures, with the true poses known:

1. **path**: the temporal path of stage 2, and the **best labelling the path allows**: every frame given the
   branch mate nearest its true pose (under one global rotation and hand). It is the upper bound of any labelling
   of that path;
2. **labelling**: the built-in labelling (:class:`~tumblebench.reconstruct.lattice.BranchLabeller`, as
   ``reconstruct`` runs it), and its half-map FSC (3–1.2 Å), the score by which ``reconstruct`` chooses a prior;
3. **with the right reference**: the map of the best labelling (its shifts refined twice by the labelling's own
   shift search) as the reference, each half of the frames scored against the other half's map (no frame sees
   itself), then the labelling's Viterbi pass. If this recovers the best labelling, the per-frame evidence and
   the continuity suffice and what fails is reaching that reference; the half-map FSC of the best labelling
   says whether the labelling's own score would prefer it.
4. **with the right reference, away from each frame's stretch**: as 3, but the two references are built from
   alternating blocks of ``--window`` successive frames (a frame is scored against the map of the other blocks),
   so no reference holds a frame's temporal neighbours. Even and odd frames see nearly the same views; if 4
   falls short of 3, the right-reference figure of 3 rests on those neighbours rather than on the frame itself.
5. **the labelling from the best labelling**: the built-in labelling run again, its path replaced by the best
   labelling of the path (the same candidates, the same passes). If it stays there and its half-map FSC exceeds
   that of 2, the right labelling is a fixed point of the passes that ``reconstruct`` would choose: where 2 ends
   elsewhere, its passes did not reach that fixed point from the path (a search failure, not a lack of
   information or a wrong score).

Pose errors are those of the scorecard (:func:`tumblebench.validation.poses.pose_errors`: the global rotation and
hand that put the most frames within 10° of the truth, modulo the particle's own rotations and its projection
twin, :func:`tumblebench.validation.symmetry.find_symmetry`); the path's candidates are judged under the
labelling's alignment (:func:`~tumblebench.validation.poses.errors_at`).

Writes ``benchmarks/results/lattice_labelling.json`` (one entry per series: ``seedN`` for a default series,
``PRESET-sN`` for ``--data``, ``STEM-sN`` for a particle read from a structure file) and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumblebench.analysis.reference import atom_reference  # noqa: E402
from tumblebench.reconstruct.abinitio import AbInitioConfig  # noqa: E402
from tumblebench.reconstruct.config import ReconstructConfig  # noqa: E402
from tumblebench.reconstruct.lattice import (  # noqa: E402
    BranchLabeller,
    LabellingFrames,
    LatticeConfig,
    branch_mates,
    fringe_lattice_constant,
    prior_path,
    search_amplitudes,
)
from tumblebench.reconstruct.pipeline import prepare_frames  # noqa: E402
from tumblebench.reconstruct.search import fourier_crop, so3_grid  # noqa: E402
from tumblebench.simulator.builder import build_preset  # noqa: E402
from tumblebench.simulator.nanocrystal import load_nanocrystal  # noqa: E402
from tumblebench.simulator.outputs import git_commit, write_json  # noqa: E402
from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides  # noqa: E402
from tumblebench.simulator.truth_map import particle_frame_positions  # noqa: E402
from tumblebench.validation.poses import errors_at, pose_errors  # noqa: E402
from tumblebench.validation.symmetry import find_symmetry  # noqa: E402

OK_DEG = 10.0


def summary(err: np.ndarray) -> dict:
    ok = err < OK_DEG
    return {"median_deg": float(np.median(err)), "p90_deg": float(np.percentile(err, 90)),
            "within_5deg": float(np.mean(err < 5)), "within_10deg": float(ok.mean()),
            "within_10deg_per_100_frames": [round(float(ok[i:i + 100].mean()), 2) for i in range(0, len(ok), 100)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="working directory of the simulated series (without --data)")
    ap.add_argument("--data", type=Path, help="a data-cache entry (particle/, series/, data.json) to measure instead")
    ap.add_argument("--series-seed", type=int, default=1, help="seed of the default multislice series")
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--prior", default="fcc-twin", help="prior of reconstruct.lattice")
    ap.add_argument("--window", type=int, default=200, help="frames per block of the references of measurement 4")
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    lc, ab = LatticeConfig(), AbInitioConfig()
    if args.data is not None:
        spec = json.loads((args.data / "data.json").read_text())
        nc = load_nanocrystal(args.data / "particle" / "truth.extxyz")
        series = args.data / "series"
        seed, data_key = spec["series_seed"], args.data.name
        particle = spec["particle"]  # a preset, or a structure file (the robustness suite's real particle)
        entry = f"{particle.get('preset') or Path(particle['structure']).stem}-s{seed}"
    elif args.work is not None:
        nc = build_preset("default")
        series = args.work / f"multislice_{args.frames}_seed{args.series_seed}"
        args.work.mkdir(parents=True, exist_ok=True)
        if not (series / "frames.star").exists():
            simulate_series(nc, with_overrides(SeriesConfig(), mode="multislice", n_frames=args.frames),
                            args.series_seed, series, overwrite=True, progress=False)
        seed, data_key = args.series_seed, None
        entry = f"seed{seed}"
    else:
        ap.error("give --work (simulate a default series) or --data (a data-cache entry)")
    cfg = ReconstructConfig()
    pf = prepare_frames(series / "frames.mrcs", series / "frames.star", cfg)
    boxes, origins, diameter, sampling, ctf_fn = pf.boxes, pf.origins, pf.diameter_A, pf.sampling, pf.ctf
    true = pf.true_poses()  # for scoring only
    group = find_symmetry(particle_frame_positions(nc))
    sym, twin = group.rotations, group.mirror_rotations

    def errors(poses: np.ndarray) -> np.ndarray:
        return pose_errors(poses, true, symmetry=sym, projection_twin=twin).angles_deg
    m, n, _ = boxes.shape
    ns = lc.box
    cs = sampling * n / ns
    small = fourier_crop(boxes, ns, zero_mean=True)
    band, amp, c2 = search_amplitudes(small, ns, cs, lc.band_A, ctf_fn)
    a_fit = fringe_lattice_constant(amp, band, c2, n, sampling, ns, diameter, lc.element)
    pp = prior_path(args.prior, amp, band, c2, n, sampling, ns, diameter, lc, ab.step_deg, ab.continuity_weight,
                    so3_grid(lc.grid_size), a_fit)
    cands = branch_mates(pp.path, pp.ops)  # (M, K, 3, 3)
    frames = LabellingFrames.make(small, cs, origins * ns / n, ctf_fn, diameter)
    res: dict = {"data_key": data_key, "series_seed": seed, "frames": m, "prior": args.prior,
                 "branch_mates": cands.shape[1], "particle_rotations": len(sym), "projection_twin": bool(len(twin))}

    # 2. the built-in labelling
    lab = BranchLabeller(frames, lc, pp.ops, ab.step_deg, lc.label_continuity_weights[0], atom_reference)
    poses, shifts, info = lab.run(pp.path)
    pe = pose_errors(poses, true, symmetry=sym, projection_twin=twin)
    res["labelling"] = {**summary(pe.angles_deg), "half_fsc": lab.half_fsc(poses, shifts),
                        "frames_changed": [h["frames_changed"] for h in info["history"]],
                        "mean_correlation": [h["mean_correlation"] for h in info["history"]]}
    # 1. the path and the best labelling it allows, under the labelling's global rotation and hand
    res["path"] = summary(errors(pp.path))
    e_all = errors_at(cands, true, pe.rotation, pe.mirrored, sym, twin)
    best = e_all.argmin(1)
    res["best_labelling_of_path"] = summary(e_all.min(1))
    changes = np.flatnonzero(np.diff(best)) + 1
    runs = np.diff(np.concatenate([[0], changes, [m]]))
    res["best_labelling_runs"] = {"runs": len(runs), "frames_in_runs_of_100_or_more": int(runs[runs >= 100].sum())}

    # 3. the best labelling's map as the reference, cross-half, then one Viterbi pass
    rows_all = np.arange(m)
    right = cands[rows_all, best]
    sh = frames.origins.copy()
    for _ in range(2):  # shifts for the right poses: the labelling's own cross-half search, one candidate
        _, _, sh = lab.label(right[:, None], right, sh, "right poses")
    cc, _ = lab.cross_scores(cands, right, sh, "right poses, other half")
    chosen = lab.choose(cands, cc)
    res["right_reference_cross_half"] = {
        **summary(errors(cands[rows_all, chosen])),
        "per_frame_best_is_right": float(np.mean(cc.argmax(1) == best)),
        "viterbi_agrees_with_best": float(np.mean(chosen == best)),
        "half_fsc_best_labelling": lab.half_fsc(right, sh),
        "half_fsc_best_labelling_tracker_origins": lab.half_fsc(right, frames.origins)}
    # 4. the same, each frame against the map of the blocks of --window frames that do not hold it
    block = (rows_all // args.window) % 2
    cc = np.empty(cands.shape[:2])
    for part in (0, 1):
        ref = lab.reference(rows_all[block != part], right, sh, f"right poses, blocks {1 - part}")
        idx = rows_all[block == part]
        cc[idx] = lab.scores(ref, idx, cands[idx], frames.origins[idx], lab.shift_phi)[0]
    chosen = lab.choose(cands, cc)
    res["right_reference_other_blocks"] = {**summary(errors(cands[rows_all, chosen])), "window": args.window,
                                           "per_frame_best_is_right": float(np.mean(cc.argmax(1) == best))}
    # 5. the built-in labelling started at the best labelling of the path
    poses, shifts, info = lab.run(right)
    res["labelling_from_best"] = {**summary(errors(poses)), "half_fsc": lab.half_fsc(poses, shifts),
                                  "frames_changed": [h["frames_changed"] for h in info["history"]]}
    res.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0, git_commit=git_commit(),
               cores=os.cpu_count(), loadavg=os.getloadavg())
    for key in ("path", "best_labelling_of_path", "labelling", "right_reference_cross_half",
                "right_reference_other_blocks", "labelling_from_best"):
        r = res[key]
        blocks = "".join(str(min(9, int(10 * x))) for x in r["within_10deg_per_100_frames"])
        print(f"{key:28s} median {r['median_deg']:7.2f}°  p90 {r['p90_deg']:6.1f}°  "
              f"within 10° {r['within_10deg']:.3f}  per 100 frames {blocks}")
    print(json.dumps({k: v for k, v in res["labelling"].items() if "per_100" not in k}),
          json.dumps({k: v for k, v in res["right_reference_cross_half"].items() if "per_100" not in k}),
          json.dumps({k: v for k, v in res["labelling_from_best"].items() if "per_100" not in k}),
          json.dumps(res["best_labelling_runs"]), sep="\n")
    out = ROOT / "benchmarks" / "results" / "lattice_labelling.json"
    allres = json.loads(out.read_text()) if out.exists() else {}
    allres[entry] = res
    write_json(out, allres)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
