"""Whole runs of frames tested against the lattice's mates, with no cost at the run's ends.

The lattice ab initio can leave a run of frames on a mate ``P·s`` or ``TWIN·P·s`` of the right pose (``s`` an
operation of an fcc lattice or of its (111) twin, :func:`lattice_mates`) that the trajectory entered and left
where the two image alike: the poses then have no jump at the run's ends. The refinement's mate labelling
(:func:`~tumblebench.reconstruct.refine.label_mates`) charges every change of mate its rotation as a continuity
cost, so two 180° steps at the ends outweigh a run of tens of frames that all score better on the other mate.
Here each frame's gain on every mate, ``d_j(t) = c_j(t) − c_0(t)`` (its shift-searched correlation with the other
half's map at mate ``j`` minus at its own pose), is summed over the segment of frames where the sum is largest
(the maximum-sum segment, from the running minimum of the cumulative sums), and that segment moves to mate ``j``
when

    z = Σ_{t=a}^{b−1} d_j(t) / (σ_j · √(b − a)) ≥ z_min,

with ``σ_j`` the robust spread of ``d_j`` over all frames (1.4826 × its median absolute deviation), at least the
median spread over the mates. A mate that images nearly as the pose itself (a pose and its projection twin on a
nearly achiral particle) has small gains with a small spread on every frame: scaled by its own spread, the slight
preference of a run for it reads as a large ``z``, but moving the run only blurs the map. Scaled by the typical
spread, ``z`` asks for a gain as large as a different mate's. The segments are taken best first, none within a
frame of one taken before, none of fewer than :data:`MIN_RUN` frames or more than a quarter of them.
"""

from __future__ import annotations

import numpy as np

from tumblebench.reconstruct.lattice import (
    BranchLabeller,
    LabellingFrames,
    LatticeConfig,
    branch_mates,
    domain_swap,
)
from tumblebench.simulator.orientation import cubic_group, rotation_angle_deg
from tumblebench.stages import CtfFunction

#: Fewest frames of a run that is moved.
MIN_RUN = 10


def lattice_mates(group: np.ndarray) -> np.ndarray:
    """Right-side operations ``s`` (pose·s) of an fcc lattice and of its (111) twin, (S, 3, 3), identity first: the
    cube group O and O times the swap of the twin's domains, without those within 1° of a rotation of ``group``
    (G, 3, 3; the half maps' own group, whose mates the mate labelling already chooses among)."""
    o = cubic_group()
    ops = np.concatenate([o, o @ domain_swap()])
    inside = np.array([np.min(rotation_angle_deg(s, group)) < 1.0 for s in ops])
    inside[0] = False
    return ops[~inside]


def best_segments(gain: np.ndarray, z_min: float) -> list[tuple[int, int, int, float]]:
    """Segments ``[a, b)`` of rows of ``gain`` (M, K) to move to column ``j``, best first: ``(a, b, j, z)``.

    Each column's maximum-sum segment among the frames still free is scored by ``z`` (module docstring); the
    best one over the columns is taken while ``z ≥ z_min``, and its frames and their two neighbours are no longer
    free. A segment of fewer than :data:`MIN_RUN` frames is passed over (its frames stay free for the other
    mates); a column whose best segment holds more than a quarter of the frames is dropped (the map it is scored
    against would be mostly the run's own frames); no column's spread counts as less than the median one (module
    docstring).
    """
    m, k = gain.shape
    sigma = 1.4826 * np.median(np.abs(gain - np.median(gain, axis=0)), axis=0)
    # a mate that images nearly as the pose itself (down to TWIN·P of a centrosymmetric map, whose gains are float
    # noise) is held to the typical spread: no rounding and no slight preference counts as a gain
    sigma = np.maximum(sigma, np.median(sigma) + 1e-30)
    free = np.ones(m, bool)
    dead = np.zeros(k, bool)  # columns whose best segment holds more than a quarter of the frames
    short = np.zeros((m, k), bool)  # segments of fewer than MIN_RUN frames, per column
    taken = []
    while free.any():
        x = np.where(free[:, None] & ~short, gain, -1e30)  # a frame no longer free ends every segment
        cum = np.concatenate([np.zeros((1, k)), np.cumsum(x, axis=0)])
        low = np.minimum.accumulate(cum, axis=0)
        best_end = np.argmax(cum - low, axis=0)  # b of each column's best segment
        total = cum[best_end, np.arange(k)] - low[best_end, np.arange(k)]
        start = np.array([int(np.argmin(cum[:e + 1, j])) for j, e in enumerate(best_end)])
        length = np.maximum(best_end - start, 1)
        z = np.where((total > 0) & ~dead, total / (sigma * np.sqrt(length)), -np.inf)
        j = int(np.argmax(z))
        if not z[j] >= z_min:
            break
        a, b = int(start[j]), int(best_end[j])
        if 4 * (b - a) > m:  # the other frames' map would be mostly the run's own: no test of it
            dead[j] = True
            continue
        if b - a < MIN_RUN:  # a few frames' outliers, not a run
            short[a:b, j] = True
            continue
        taken.append((a, b, j, float(z[j])))
        free[max(a - 1, 0):b + 1] = False
    return taken


def move_runs(boxes: np.ndarray, sampling: float, diameter_A: float, poses: np.ndarray, shifts: np.ndarray,
              ctf_fn: CtfFunction | None, group: np.ndarray, z_min: float
              ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Runs of frames moved to the lattice mate their data prefer (module docstring).

    Parameters
    ----------
    boxes, sampling, diameter_A
        (M, n, n) particle boxes, their pixel size (Å) and the particle diameter (Å).
    poses, shifts
        (M, 3, 3) poses and (M, 2) origins (pixels).
    ctf_fn
        The frames' CTFs, or None.
    group
        (G, 3, 3) rotation group of the half maps (the identity alone when none was found).
    z_min
        Smallest ``z`` of a run that is moved.

    Returns
    -------
    (poses, shifts in pixels, the runs moved: frames, operation's angle in degrees, whether turned about the beam, z)
    """
    m, n, _ = boxes.shape
    lattice = LatticeConfig()
    fr = LabellingFrames.from_boxes(boxes, sampling, shifts, ctf_fn, diameter_A, lattice.box)
    ns, origins = fr.small.shape[-1], fr.origins
    ops = lattice_mates(group)
    lab = BranchLabeller(fr, lattice, ops, 0.0, 0.0, None)
    rows = np.arange(m)
    vols = (lab.build(rows[0::2], poses, origins), lab.build(rows[1::2], poses, origins))
    cands = branch_mates(poses, ops)
    cc, peaks = lab.map_scores(vols, cands)
    poses, shifts = np.array(poses, np.float64, copy=True), np.array(shifts, np.float64, copy=True)
    moved = []
    for a, b, j, z in best_segments(cc[:, 1:] - cc[:, :1], z_min):
        col = j + 1
        poses[a:b] = cands[a:b, col]
        shifts[a:b] = peaks[a:b, col] * n / ns
        moved.append({"frames": [a, b], "angle_deg": float(rotation_angle_deg(ops[col % len(ops)], np.eye(3))),
                      "turned": bool(col >= len(ops)), "z": z})
    return poses, shifts, moved
