"""Time the branch labelling's scores (:meth:`BranchLabeller.scores`) on a series: every frame against its branch
mates, as one labelling pass scores them.

Run from the repository root::

    .venv/bin/python benchmarks/labelling_scores.py --data CACHE/KEY     # a bench case's data, ≈ 1 min on 2 cores

On the frames of a ``bench``/``study`` data-cache entry (e.g. a case of the ``robustness`` suite) the reference is
the map of all frames at their true poses (the timing does not depend on it), the candidates the ``fcc`` prior's
48 branch mates of the true poses (:func:`~tumblebench.reconstruct.lattice.branch_mates`). The scoring projects
the map once per pair of mates ``P·s``, ``TWIN·P·s`` (the second slice is the conjugate of the first); side by
side, in turn, it is timed against the same candidates scored with every mate projected on its own (each half in a
call of its own, as the scoring ran before the pairing). It prints the median seconds of one scoring of all frames
both ways, their ratio, and how many scores differ between the two. Writes
``benchmarks/results/labelling_scores.json`` (one entry per data key and commit).
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

from tumblebench.reconstruct.config import ReconstructConfig  # noqa: E402
from tumblebench.reconstruct.lattice import (  # noqa: E402
    BranchLabeller,
    LabellingFrames,
    LatticeConfig,
    branch_mates,
    prior_group,
    prior_sites,
)
from tumblebench.reconstruct.pipeline import prepare_frames  # noqa: E402
from tumblebench.reconstruct.projector import prepare_reference  # noqa: E402
from tumblebench.reconstruct.search import fourier_crop  # noqa: E402
from tumblebench.simulator.outputs import git_commit, write_json  # noqa: E402
from tumblebench.simulator.shapes import bulk_lattice_constant  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a data-cache entry (particle/, series/, data.json)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    series = args.data / "series"
    lc = LatticeConfig()
    pf = prepare_frames(series / "frames.mrcs", series / "frames.star", ReconstructConfig())
    m, n, _ = pf.boxes.shape
    ns = lc.box
    cs = pf.sampling * n / ns
    small = fourier_crop(pf.boxes, ns, zero_mean=True)
    fr = LabellingFrames.make(small, cs, pf.origins * ns / n, pf.ctf, pf.diameter_A)
    ops = prior_group(prior_sites("fcc", bulk_lattice_constant(lc.element), 8.0))
    lab = BranchLabeller(fr, lc, ops, 5.0, 0.3, None)
    true = pf.true_poses()
    rows = np.arange(m)
    ref = prepare_reference(lab.build(rows, true, fr.origins))
    cands = branch_mates(true, ops)
    h = cands.shape[1] // 2

    def alone() -> np.ndarray:  # each half in a call of its own: every candidate projected, as before the pairing
        return np.concatenate([lab.scores(ref, rows, cands[:, :h], fr.origins, lab.shift_phi)[0],
                               lab.scores(ref, rows, cands[:, h:], fr.origins, lab.shift_phi)[0]], axis=1)

    times, times_alone = [], []
    for _ in range(args.repeats):  # in turn, so that a drift of the machine's speed hits both
        t = time.perf_counter()
        cc = lab.scores(ref, rows, cands, fr.origins, lab.shift_phi)[0]
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        cc_alone = alone()
        times_alone.append(time.perf_counter() - t)
    ratio = np.array(times) / np.array(times_alone)
    res = {"data_key": args.data.name, "frames": m, "mates": cands.shape[1], "box": ns,
           "band_samples": int(lab.band.kx.size), "seconds_min": min(times), "seconds_median": float(np.median(times)),
           "seconds_unpaired_median": float(np.median(times_alone)), "ratio_median": float(np.median(ratio)),
           "scores_differing": int(np.count_nonzero(cc != cc_alone)),
           "max_abs_difference": float(np.max(np.abs(cc - cc_alone))),
           "git_commit": git_commit(), "cores": os.cpu_count(), "loadavg": os.getloadavg()}
    print(f"{m} frames × {cands.shape[1]} mates on {res['band_samples']} band samples: "
          f"{res['seconds_median']:.2f} s, each mate projected on its own {res['seconds_unpaired_median']:.2f} s "
          f"(medians of {args.repeats}, run in turn; ratio {res['ratio_median']:.2f}); "
          f"scores differing from the mates scored alone: {res['scores_differing']} of {cc.size}, "
          f"largest by {res['max_abs_difference']:.1e}")
    out = ROOT / "benchmarks" / "results" / "labelling_scores.json"
    allres = json.loads(out.read_text()) if out.exists() else {}
    allres[f"{args.data.name}@{(res['git_commit'] or 'none')[:7]}"] = res
    write_json(out, allres)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
