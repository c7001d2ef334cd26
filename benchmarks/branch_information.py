"""Can the lattice labelling tell a frame's pose from its branch mates? An oracle measurement on a finished run.

The lattice ab initio (``reconstruct/lattice.py``) finds each frame's pose up to its *branch mates* ``A·s`` and
``TWIN·A·s`` (``s`` in the cubic group, 48 poses with the same fringe amplitudes) and lets the phase-sensitive
correlation with a reference map, summed along the Brownian path, choose among them. This script measures how
well that correlation can choose when the reference is perfect: the map of the frames at their *true* poses
(even frames against the map of the odd ones and back, the labelling's own band, shift search and CTF; the maps
built at the shifts ``--shifts`` says: by default fitted as the labelling fits them). Every
frame's 48 mates of its true pose are scored, and it reports

* how often the true mate scores best, per frame and summed over windows of 10, 50 and 200 successive frames;
* how often the best mate is a *near-equivalent* one instead: a mate whose atoms (the truth's, turned by ``s``,
  or inverted and turned for the twin mates) land within 0.5 Å of a true atom for at least 95 % of them, after
  the best translation. Choosing among near-equivalent mates costs a map little; choosing a mate outside them
  mixes different atoms into the map.

A run on a near-symmetric particle (e.g. the ``table1`` ellipsoids, whose two equal short axes lie along cube
axes) shows whether its frames carry enough information to pick a branch. Run from the repository root on runs
of ``bench``/``study``/``demo`` (any pose mode; only the series and the truth are read)::

    .venv/bin/python benchmarks/branch_information.py RUN_DIR [RUN_DIR ...]

Prints a table and adds its rows to ``benchmarks/results/branch_information.json`` (a run measured again
replaces its row).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from ase.io import read
from scipy.spatial import cKDTree

from tumblebench.reconstruct.config import ReconstructConfig
from tumblebench.reconstruct.lattice import BranchLabeller, LabellingFrames, branch_mates
from tumblebench.reconstruct.pipeline import prepare_frames
from tumblebench.reconstruct.search import fourier_crop
from tumblebench.simulator.orientation import cubic_group, pose_matrix

WINDOWS = (1, 10, 50, 200)
NEAR_FRACTION = 0.95
NEAR_DISTANCE_A = 0.5


def overlap_fraction(moved: np.ndarray, atoms: np.ndarray, tree: cKDTree) -> float:
    """Fraction of ``moved`` atoms within :data:`NEAR_DISTANCE_A` of an atom of ``atoms`` after the best translation
    (found by re-centring on the median nearest-neighbour displacement, three times)."""
    shift = np.zeros(3)
    for _ in range(3):
        d, i = tree.query(moved + shift)
        shift += np.median(atoms[i] - (moved + shift), axis=0)
    d, _ = tree.query(moved + shift)
    return float(np.mean(d <= NEAR_DISTANCE_A))


def near_equivalent(atoms: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """(2·S,) bool: mate k (``branch_mates`` order: ``A·s`` then ``TWIN·A·s``) is near-equivalent to the truth."""
    p = atoms - atoms.mean(axis=0)
    tree = cKDTree(p)
    # the image at pose A·s is that of the atoms s·X at pose A; at TWIN·A·s that of −s·X (the inverted particle)
    right = [overlap_fraction(p @ s.T, p, tree) >= NEAR_FRACTION for s in ops]
    twin = [overlap_fraction(-p @ s.T, p, tree) >= NEAR_FRACTION for s in ops]
    return np.array(right + twin)


def measure(run: Path, shifts: str) -> dict:
    cfg = ReconstructConfig()
    lc = cfg.abinitio.lattice
    pf = prepare_frames(run / "series" / "frames.mrcs", run / "series" / "frames.star", cfg, False, None,
                        store_dir=Path(os.environ.get("TMPDIR", "/tmp")))
    t = pf.particles.iloc[pf.rows]
    true = pose_matrix(*(t[c].to_numpy(float) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")))
    true = true.reshape(-1, 3, 3)
    m, n = len(true), pf.boxes.shape[-1]
    ns = min(lc.box, n - n % 2)
    cs = pf.sampling * n / ns
    small = fourier_crop(np.asarray(pf.boxes, np.float32), ns, zero_mean=True)
    fr = LabellingFrames.make(small, cs, pf.origins * ns / n, pf.ctf, pf.diameter_A)
    ops = cubic_group()
    lab = BranchLabeller(fr, lc, ops, 0.0, 0.0, None)
    cands = branch_mates(true, ops)
    rows = np.arange(m)
    if shifts == "fitted":  # as the labelling does: each frame's shift against the other half at its (true) pose
        ref_shifts = lab.fit_shifts(true, fr.origins, "oracle")
    elif shifts == "true":
        ref_shifts = pf.true_shifts_px() * ns / n
    else:
        ref_shifts = fr.origins
    cc = np.empty(cands.shape[:2])
    for part in (0, 1):
        ref = lab.reference(rows[1 - part::2], true, ref_shifts, "oracle")
        cc[part::2], _ = lab.scores(ref, rows[part::2], cands[part::2], fr.origins[part::2], lab.shift_phi)
    near = near_equivalent(read(run / "particle" / "truth.extxyz").positions, ops)
    row: dict = {"run": str(run), "reference_shifts": shifts, "frames": m, "near_equivalent_mates": int(near.sum())}
    for w in WINDOWS:
        k = m // w
        best = cc[:k * w].reshape(k, w, -1).sum(axis=1).argmax(axis=1)
        row[f"true_best_w{w}"] = float(np.mean(best == 0))
        row[f"near_best_w{w}"] = float(np.mean(near[best]))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="run folders with series/ and particle/")
    ap.add_argument("--shifts", choices=("fitted", "tracker", "true"), default="fitted",
                    help="shifts the reference maps are built at: fitted at the true poses as the labelling fits "
                         "them (default), the tracker's origins, or the true ones")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "branch_information.json")
    args = ap.parse_args()
    rows = [measure(r, args.shifts) for r in args.runs]
    head = "| run | frames | near-equivalent mates of 48 | " + " | ".join(
        f"true / near-equivalent best, {w} frame{'s' * (w > 1)}" for w in WINDOWS) + " |"
    print(head)
    print("|" + "---|" * (3 + len(WINDOWS)))
    for r in rows:
        print(f"| {r['run']} | {r['frames']} | {r['near_equivalent_mates']} | " + " | ".join(
            f"{r[f'true_best_w{w}']:.1%} / {r[f'near_best_w{w}']:.1%}" for w in WINDOWS) + " |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # the file keeps the rows of earlier runs; a run measured again (same folder and shifts) replaces its row
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    new = {(r["run"], r["reference_shifts"]) for r in rows}
    kept = [r for r in old.get("rows", []) if (r["run"], r["reference_shifts"]) not in new]
    old.update({"benchmark": "branch_information", "commit": commit, "date_utc": date,
                "rows": kept + [r | {"commit": commit, "date_utc": date} for r in rows]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(old, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
