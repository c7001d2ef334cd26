"""Each frame's tilt out of the image plane chosen along the series: the refinement's last step.

A projection fixes the particle's rotation about the beam sharply and its tilt away from the beam less. The local
searches can leave frames 10–30° off in tilt (the error's axis in the image plane), at an optimum of their
correlation nearer than the right pose, which lies beyond the searches' steps; the continuity sweep carries such
an error along a run. Every frame's candidates here are its pose tilted about the image's axes,

    P' = D(θx, θy)·P,   D the rotation by |θ| about the lab axis (θx, θy, 0)/|θ|,

with (θx, θy) on a square grid of ``step_deg`` within a disc of ``radius_deg`` (the pose maps particle to lab
coordinates, the beam along the lab z; the untilted pose first). Each candidate is scored by its shift-searched
correlation with the FSC-filtered map of the frame's own half set, on the lattice labelling's cropped box and
band (:meth:`~tumblebench.reconstruct.lattice.BranchLabeller.map_scores`), and the path of best continuity through
the candidates is chosen (:func:`~tumblebench.reconstruct.search.viterbi`, its steps measured modulo the half maps'
rotation group): a run's frames move together, which one frame cannot (its best tilt alone is as often wrong as
right).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.lattice import BranchLabeller, LabellingFrames, LatticeConfig
from tumblebench.reconstruct.search import fourier_crop_volume, robust_z, viterbi
from tumblebench.stages import CtfFunction


def tilt_grid(radius_deg: float, step_deg: float) -> np.ndarray:
    """Lab-frame rotations (K, 3, 3) about in-plane axes: rotation vectors (θx, θy, 0) on a square grid of
    ``step_deg`` within ``radius_deg`` (degrees), the identity first."""
    g = np.arange(-np.floor(radius_deg / step_deg), np.floor(radius_deg / step_deg) + 1) * step_deg
    tx, ty = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    keep = np.hypot(tx, ty) <= radius_deg + 1e-9
    order = np.argsort(np.hypot(tx, ty)[keep], kind="stable")  # the untilted pose first
    rv = np.radians(np.stack([tx[keep], ty[keep], np.zeros(keep.sum())], axis=1))[order]
    return Rotation.from_rotvec(rv).as_matrix()


def tilt_sweep(boxes: np.ndarray, sampling: float, diameter_A: float, poses: np.ndarray, shifts: np.ndarray,
               ctf_fn: CtfFunction | None, half_maps: tuple[np.ndarray, np.ndarray], radius_deg: float,
               step_deg: float, path_step_deg: float, continuity_weight: float, group: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """Poses re-chosen among their tilts along the series (module docstring).

    Parameters
    ----------
    boxes, sampling, diameter_A
        (M, n, n) particle boxes in time order, their pixel size (Å) and the particle diameter (Å).
    poses, shifts
        (M, 3, 3) poses and (M, 2) origins (pixels of ``boxes``).
    ctf_fn
        The frames' CTFs, or None.
    half_maps
        The FSC-filtered maps of the frames of even index and of those of odd index (the box and ``sampling`` of
        ``boxes``).
    radius_deg, step_deg
        The tilt grid (:func:`tilt_grid`), degrees.
    path_step_deg, continuity_weight
        The path's typical step between successive frames (deg) and its continuity weight (:func:`viterbi`).
    group
        (G, 3, 3) rotation group of the half maps: the path's steps are measured modulo it (successive frames on
        two mates of a symmetric particle do not pull each other's tilts); None: the identity alone.

    Returns
    -------
    (poses, shifts in pixels, frames whose tilt changed)
    """
    m, n, _ = boxes.shape
    lattice = LatticeConfig()
    fr = LabellingFrames.from_boxes(boxes, sampling, shifts, ctf_fn, diameter_A, lattice.box)
    ns = fr.small.shape[-1]
    lab = BranchLabeller(fr, lattice, np.eye(3)[None], path_step_deg, continuity_weight, None)
    even, odd = (fourier_crop_volume(np.asarray(v, np.float32), ns) for v in half_maps)
    cands = np.einsum("kij,mjl->mkil", tilt_grid(radius_deg, step_deg), poses)
    cc, peaks = lab.map_scores((odd, even), cands)  # each frame against its own half's map
    choice = viterbi(cands, robust_z(cc), path_step_deg, continuity_weight, group=group)
    rows = np.arange(m)
    return cands[rows, choice], peaks[rows, choice] * n / ns, int(np.count_nonzero(choice))
