"""A finished run's wrong frames against the truth: do the frames lack the information, or does the reference hold them?

Run from the repository root on a run folder of ``demo``, ``bench`` or the robustness benchmark (a case folder
with ``series/``, ``particle/`` and ``recon/``)::

    .venv/bin/python benchmarks/wrong_frames.py RUN_DIR        # ≈ 2 min on 2 cores

The frames whose final pose is more than 10° from the truth (modulo the particle's symmetry and projection twin,
as the scorecard counts them) are hill-climbed (the refinement's local search: steps 4, 2, 1, 0.5°, two moves
each, band to 1.1 Å, CTF-weighted) from two starts, the true pose and the run's pose, against these references:

1. **the truth map** (``series/truth_map.mrc``) at the true shifts: if the true pose's basin scores higher, the
   frame carries the information to tell its pose; and at the run's shifts (fitted to the run's poses);
2. **its own half map** (``recon/half1.mrc`` or ``half2.mrc``, the half that holds the frame, as the refinement
   scores it) at the run's shifts, and at the true shifts;
3. **the other half map**;
4. **its half map rebuilt without the wrong frames** (the truth tells which), and, as a control, without as many
   frames picked at random among the right ones: if leaving the wrong frames out lets their true basin win
   where their own half map did not, their own contribution to the map is what holds them;
5. **its half map without its own group**: each half split into two groups (alternate pairs of frames), every
   frame against the map of the other group of its half (no truth used: a reference a refinement could use);
6. **its half map's atomic model**: the reference of the refinement's model iteration (the half maps rebuilt at
   the run's poses, FSC-filtered, their traced atoms simulated back: ``analysis.reference.atom_reference``).

For each, the fraction of wrong frames whose run's basin scores at least as high as the true pose's, and the
median score difference (true − run's; the local search's score: image amplitude units, comparable within a
frame). Writes the entry ``<case folder name>`` of ``benchmarks/results/wrong_frames.json`` and prints the
figures.
"""

from __future__ import annotations

import argparse
import dataclasses as dc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumblebench.analysis.reference import atom_reference  # noqa: E402
from tumblebench.reconstruct.config import ReconstructConfig  # noqa: E402
from tumblebench.reconstruct.fsc import fsc  # noqa: E402
from tumblebench.reconstruct.pipeline import prepare_frames  # noqa: E402
from tumblebench.reconstruct.projector import (  # noqa: E402
    Band,
    Reference,
    image_ft,
    prepare_reference,
    shift_phases,
    soft_sphere,
)
from tumblebench.reconstruct.refine import _model_references, reconstruct_halves  # noqa: E402
from tumblebench.reconstruct.search import local_search  # noqa: E402
from tumblebench.simulator.errors import TumblebenchError  # noqa: E402
from tumblebench.simulator.mrc import read_volume  # noqa: E402
from tumblebench.simulator.nanocrystal import load_nanocrystal  # noqa: E402
from tumblebench.simulator.outputs import git_commit, write_json  # noqa: E402
from tumblebench.simulator.star import image_indices, read_star  # noqa: E402
from tumblebench.simulator.truth_map import particle_frame_positions  # noqa: E402
from tumblebench.validation.poses import mirror_poses, pose_errors  # noqa: E402
from tumblebench.validation.symmetry import find_symmetry  # noqa: E402

STEPS_DEG = (4.0, 2.0, 1.0, 0.5)
CLIMBS = 2
SEARCH_A = 1.1
MASK_MARGIN_A = 3.0


def run_poses(pf, star: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's poses (M, 3, 3) and origins (M, 2; pixels of the boxes) of the usable frames, from its STAR."""
    _, est = read_star(star)
    idx, _ = image_indices(est, str(star))
    table = pf.particles.copy()
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnCoordinateX", "rlnCoordinateY", "rlnOriginXAngst",
            "rlnOriginYAngst"]
    table.loc[table.index[idx], cols] = est[cols].to_numpy(float)
    missing = np.setdiff1d(pf.rows, idx)
    if missing.size:
        raise TumblebenchError(f"{star}: no pose for {missing.size} usable frames (first: {missing[0]}); "
                               "expected a poses.star of this series' reconstruction")
    as_run = dc.replace(pf, particles=table)
    return as_run.true_poses(), as_run.true_shifts_px()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="case folder with series/, particle/ and recon/")
    args = ap.parse_args()
    run = args.run
    t0, c0 = time.perf_counter(), time.process_time()
    pf = prepare_frames(run / "series" / "frames.mrcs", run / "series" / "frames.star", ReconstructConfig())
    m, n, _ = pf.boxes.shape
    smp = pf.sampling
    true, true_sh = pf.true_poses(), pf.true_shifts_px()
    est, est_sh = run_poses(pf, run / "recon" / "poses.star")
    sym = find_symmetry(particle_frame_positions(load_nanocrystal(run / "particle" / "truth.extxyz")))
    twin = sym.mirror_rotations if sym.achiral else None
    pe = pose_errors(est, true, symmetry=sym.rotations, projection_twin=twin)
    err = pe.angles_deg
    # est ≈ true·s·G (est mirrored first when the run found the other hand): each pose in the other's frame
    est_m = mirror_poses(est) if pe.mirrored else est
    est_in_truth = np.einsum("nij,kj->nik", est_m, pe.rotation)
    true_in_run = np.einsum("nij,jk->nik", true, pe.rotation)
    true_in_run = mirror_poses(true_in_run) if pe.mirrored else true_in_run
    wrong = np.flatnonzero(err >= 10)
    res: dict = {"run": str(run), "frames": int(m), "within_10deg": float(np.mean(err < 10)),
                 "wrong_frames": int(wrong.size)}
    if wrong.size == 0:
        print("no frame is more than 10° off")
    else:
        band = Band.make(n, r_max=n * smp / SEARCH_A, r_min=1.0).half_plane()  # as the refinement
        mask = soft_sphere(n, (pf.diameter_A / 2 + MASK_MARGIN_A) / smp, 3.0)
        halves = (np.arange(m) % 2).astype(np.int64)

        def best(ref: Reference, sel: np.ndarray, start: np.ndarray, shifts: np.ndarray) -> np.ndarray:
            vals = band.take(image_ft(np.asarray(pf.boxes[sel], np.float32))) * shift_phases(band, shifts[sel])
            ctf = band.take(pf.ctf(sel, (n, n), smp))
            return local_search(ref, vals, band, start[sel], ctf, STEPS_DEG, CLIMBS)[1]

        def report(name: str, d: np.ndarray) -> None:  # d: true − run's score per wrong frame
            res[name] = {"run_basin_wins": float(np.mean(d <= 0)), "median_true_minus_run": float(np.median(d))}
            print(f"{name:42s} run's basin scores ≥ the true one for {np.mean(d <= 0):5.1%} of the wrong frames "
                  f"(median true − run {np.median(d):+9.2f})", flush=True)

        def compare(name: str, refs: tuple[Reference, Reference], poses_true: np.ndarray, poses_run: np.ndarray,
                    shifts: np.ndarray) -> None:
            diff = []
            for h in (0, 1):
                sel = wrong[halves[wrong] == h]
                if sel.size:
                    diff.append(best(refs[h], sel, poses_true, shifts) - best(refs[h], sel, poses_run, shifts))
            report(name, np.concatenate(diff))

        truth = prepare_reference(read_volume(run / "series" / "truth_map.mrc")[0] * mask)
        compare("truth_map", (truth, truth), true, est_in_truth, true_sh)
        compare("truth_map_at_run_shifts", (truth, truth), true, est_in_truth, est_sh)
        own = [prepare_reference(read_volume(run / "recon" / f"half{h + 1}.mrc")[0] * mask) for h in (0, 1)]
        compare("own_half_map", (own[0], own[1]), true_in_run, est, est_sh)
        compare("own_half_map_at_true_shifts", (own[0], own[1]), true_in_run, est, true_sh)
        shift_err = np.linalg.norm(est_sh - true_sh, axis=1)
        res["shift_error_px_median"] = {"wrong": float(np.median(shift_err[wrong])),
                                        "right": float(np.median(shift_err[err < 10]))}
        print(f"median |run's − true shift|: wrong frames {res['shift_error_px_median']['wrong']:.2f} px, right "
              f"frames {res['shift_error_px_median']['right']:.2f} px")
        compare("other_half_map", (own[1], own[0]), true_in_run, est, est_sh)
        del own
        rng = np.random.default_rng(0)
        control = rng.choice(np.flatnonzero(err < 10), wrong.size, replace=False)
        for name, left_out in (("own_half_map_without_wrong_frames", wrong),
                               ("own_half_map_without_as_many_right_frames", control)):
            h_out = halves.copy()
            h_out[left_out] = 2  # in neither half
            recs = reconstruct_halves(pf.boxes, est, est_sh, h_out, pf.ctf, smp)
            refs = (prepare_reference(recs[0].reconstruct(1e-3) * mask),
                    prepare_reference(recs[1].reconstruct(1e-3) * mask))
            del recs
            compare(name, refs, true_in_run, est, est_sh)
        # no oracle: each half split into two groups (alternate pairs of frames), every frame against the map of
        # the other group of its half: no frame sees itself, and the halves stay apart
        group = (np.arange(m) // 2) % 2
        diff = []
        for q in (0, 1):
            h_out = np.where(group == 1 - q, halves, 2)
            recs = reconstruct_halves(pf.boxes, est, est_sh, h_out, pf.ctf, smp)
            for h in (0, 1):
                sel = wrong[(halves[wrong] == h) & (group[wrong] == q)]
                if sel.size:
                    ref = prepare_reference(recs[h].reconstruct(1e-3) * mask)
                    diff.append(best(ref, sel, true_in_run, est_sh) - best(ref, sel, est, est_sh))
            del recs
        report("own_half_map_without_own_group", np.concatenate(diff))
        recs = reconstruct_halves(pf.boxes, est, est_sh, halves, pf.ctf, smp)
        curve = fsc(recs[0].reconstruct(1e-3) * mask, recs[1].reconstruct(1e-3) * mask, smp)[1]
        models = _model_references(recs[0], recs[1], curve, mask, smp, atom_reference)
        del recs
        compare("own_half_map_atom_model", models, true_in_run, est, est_sh)
    res.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0, git_commit=git_commit(),
               cores=os.cpu_count(), loadavg=os.getloadavg())
    print(f"{run.name}: {res['wrong_frames']} of {m} frames more than 10° off ({1 - res['within_10deg']:.1%})")
    out = ROOT / "benchmarks" / "results" / "wrong_frames.json"
    allres = json.loads(out.read_text()) if out.exists() else {}
    allres[run.name] = res
    write_json(out, allres)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except TumblebenchError as exc:
        print("wrong_frames.py: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        raise SystemExit(2) from None
