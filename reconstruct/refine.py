"""Refinement: projection matching with local orientation searches, shift search, CTF correction, Fourier
reconstruction by gridding, gold-standard half sets, FSC-weighted filtering, iterated to convergence.

Local search is hill climbing on SO(3): every frame tries its pose perturbed by the 27 rotation vectors
{−s, 0, s}³ (lab frame), moves to the best, and the step ``s`` shrinks. Scores are normalised
cross-correlations of the frame with the CTF-multiplied projection of its own half-set map (frames with even
index against half 1, odd against half 2; the halves never see each other's frames). Shifts are refined from
the peak of the cross-correlation image of each frame with its reference projection.

Optionally (``model_iterations``), the last iterations search against *model references*: each half map is
handed to a caller-supplied builder (``reference_model``; the command line passes an atomic model traced by
:mod:`analysis` and simulated back to a map) and its sharp output replaces the half map. Half maps built from
poses with errors of a few degrees are blurred by exactly those errors, and a blurred reference keeps the poses
where they are (a fixed point); the model of that map has sharp atoms where the map's atoms are. The two halves
get their own models, so the half sets stay independent.

The time order of a Brownian series is used by a *continuity sweep* after every iteration: it hill-climbs each
frame from its neighbour's pose (forward, then backward), so that good poses propagate through runs of frames
stuck in a wrong local optimum.

A *global search* between the map- and the model-referenced iterations gives every frame candidates from all of
SO(3) scored against its half map, finds the rotation group of the half maps from those candidates
(:mod:`tumblebench.reconstruct.symmetry`), and takes the path through the series that best balances the scores
against continuity measured modulo that group (a run of frames on a symmetry mate of the right pose costs
nothing; one on a different pose does). It is kept only when the half maps agree better after it.

A last *one-mate pass* puts the frames of a symmetric (or nearly symmetric) particle on one of its mates: by
continuity across the trajectory's jumps (:func:`~tumblebench.reconstruct.symmetry.one_mate`), then by each run's
own data where two mates meet and continuity cannot choose (:func:`label_mates`); kept when that labelling
converges, else when the half maps agree better. Then whole runs of frames that sit on another mate of the
lattice, with no jump at their ends, are moved by their summed data (:mod:`tumblebench.reconstruct.mate_runs`),
and last every frame's tilt out of the image plane is chosen afresh along the series
(:mod:`tumblebench.reconstruct.tilt_sweep`), kept when the half maps agree better; and again from the kept tilts
against the better half maps, up to ``refine.tilt_sweep_passes`` passes or until one is not kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct._gridding_kernels import score_candidates, sweep_poses
from tumblebench.reconstruct.fsc import fsc, fsc_weight, resolution_at, wiener_tau
from tumblebench.reconstruct.lattice import (
    BranchLabeller,
    LabellingFrames,
    LatticeConfig,
    branch_mates,
    global_candidates,
)
from tumblebench.reconstruct.mate_runs import move_runs
from tumblebench.reconstruct.model_pair import model_pair
from tumblebench.reconstruct.projector import (
    Band,
    Reconstructor,
    Reference,
    SliceSpectra,
    image_ft,
    prepare_reference,
    project_band,
    shift_phases,
    soft_sphere,
)
from tumblebench.reconstruct.search import MOVES, fourier_crop_volume, local_search, robust_z, viterbi
from tumblebench.reconstruct.symmetry import find_group, group_from_steps, one_mate
from tumblebench.reconstruct.tilt_sweep import tilt_sweep
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.mrc import FrameFile, scratch_like
from tumblebench.simulator.orientation import rotation_angle_deg
from tumblebench.stages import CtfFunction, HalfMaps, ReferenceModel, RefineInput, Refinement

log = logging.getLogger("tumblebench.reconstruct")

# the refinement's global search runs only when its half maps agree at least this well over the checked band
# (mean FSC): below it, as in a 100-frame series (0.013), it moves frames on noise; the cuboctahedra whose half
# maps agree at 0.13 before it need it to put their frames on one mate (docs/measurements.md)
GLOBAL_MIN_FSC = 0.05
#: Most passes of the mate labelling (:func:`label_mates`).
MATE_PASSES = 4

#: The CTF callable of the frames (:data:`tumblebench.stages.CtfFunction`).
CtfFn = CtfFunction


@dataclass(frozen=True)
class RefineConfig:
    """Configuration of the refinement stage.

    Attributes
    ----------
    n_iter
        Maximum refinement iterations (each: reconstruct halves, FSC, local pose + shift search). Default 3:
        from the lattice ab initio's poses the half-map iterations gain little after the third, and the model
        iteration gains more in the same time.
    steps_deg
        Hill-climbing step sizes of the local orientation search, deg (largest first).
    climbs_per_step
        Moves per step size.
    start_resolution_A
        Resolution limit of the first search (Å); later searches go to the current FSC-0.143 resolution.
    finest_search_A
        Never search beyond this resolution (Å).
    max_shift_A
        Largest shift correction per iteration (Å).
    mask_margin_A
        Soft spherical mask radius = particle radius + this margin (Å).
    pad
        Oversampling of the 3D Fourier grid.
    converge_deg
        Stop when the median pose change of an iteration is below this (deg).
    sweep_resolution_A
        Coarsest resolution limit (Å) of the continuity sweep run after every iteration's local search
        (:func:`continuity_sweep`); 0 disables it.
    sweep_tolerance
        Relative correlation deficit within which the sweep prefers the neighbour's pose to the frame's own
        (:func:`continuity_sweep`).
    model_iterations
        Iterations after the map-referenced ones that search against the ``reference_model`` of each half map
        (0: none; needs a ``reference_model``: ``tumblebench reconstruct`` and the demo pass
        :func:`tumblebench.analysis.reference.atom_reference`; calling :func:`refine` or
        :func:`tumblebench.reconstruct.pipeline.reconstruct_series` without one needs ``model_iterations = 0``). Each:
        ``model_rounds`` of shift + local pose search at ``model_search_A``, then the continuity sweep.
    model_rounds
        Alternations of shift refinement and local pose search per model iteration (poses and shifts are
        coupled: shifts refined against wrong poses hold the poses back).
    model_search_A
        Resolution limit (Å) of the model-referenced searches.
    model_steps_deg, model_climbs
        Hill-climbing steps (deg, largest first) and moves per step of those searches.
    global_peaks, global_grid_size
        After the map-referenced iterations, every frame's pose is chosen afresh against its own half map among its
        ``global_peaks`` best distinct poses over an SO(3) grid of ``global_grid_size`` poses by amplitude
        correlation (and their twins) and its current pose (:func:`tumblebench.reconstruct.lattice.global_candidates`,
        with the cropped box, bands and shift grid of the default
        :class:`~tumblebench.reconstruct.lattice.LatticeConfig`; 0 peaks: no global search). It runs only when the
        half maps' mean FSC over the model band is at least :data:`GLOBAL_MIN_FSC`, and its poses are kept only when
        that FSC rises. The model iteration that follows refines the moved frames locally.
    jump_deg
        After each model iteration's continuity sweep, a step between successive frames' poses larger than this
        (deg) marks a run of frames on a wrong branch: :func:`repair_jumps` (0: off). The one-mate pass cuts the
        trajectory at the same steps (:func:`~tumblebench.reconstruct.symmetry.one_mate`). Brownian steps of the
        default series stay below ~10° (its 99th percentile 9.5°).
    step_deg, continuity_weight
        The global search's choice among the candidates: the path through the series that maximises the
        correlations (robust z-scores) minus ``continuity_weight``·(angle/``step_deg``)² between successive frames,
        the angle measured modulo the rotation group of the half maps
        (:func:`tumblebench.reconstruct.symmetry.find_group`); as the ab initio's parameters of the same names.
    mate_continuity_weight
        The continuity weight of the one-mate pass's labelling (:func:`label_mates`): a frame changes mate only
        where the two mates meet, so that a run's choice rests on all of its frames (at the path's 0.3 frames change
        mate one by one and settle on a mixture: ``docs/measurements.md``).
    run_mate_z
        Smallest summed gain (in units of its spread) of a run of frames that the step before the last moves to
        another mate of the lattice (:func:`~tumblebench.reconstruct.mate_runs.move_runs`).
    tilt_sweep_deg, tilt_sweep_step_deg, tilt_sweep_passes
        The last step re-chooses every frame's tilt out of the image plane among its pose's tilts on a grid of
        ``tilt_sweep_step_deg`` within ``tilt_sweep_deg`` (deg; 0: off), on the path of best continuity
        (``step_deg``, ``continuity_weight``; :func:`~tumblebench.reconstruct.tilt_sweep.tilt_sweep`), then
        searches every frame locally from there (``steps_deg``, ``model_rounds``); kept only when the half maps
        then agree better. A kept pass is followed by another from its tilts against its half maps, up to
        ``tilt_sweep_passes`` passes.
    """

    n_iter: int = 3
    steps_deg: tuple[float, ...] = (3.0, 1.0, 0.35)
    climbs_per_step: int = 1
    start_resolution_A: float = 2.2
    finest_search_A: float = 0.9
    max_shift_A: float = 2.0
    mask_margin_A: float = 3.0
    pad: int = 2
    converge_deg: float = 0.3
    sweep_resolution_A: float = 1.5
    sweep_tolerance: float = 0.0
    model_iterations: int = 1
    model_rounds: int = 2
    model_search_A: float = 1.2
    model_steps_deg: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    model_climbs: int = 2
    global_peaks: int = 10
    global_grid_size: int = 120000
    jump_deg: float = 12.0
    step_deg: float = 5.0
    continuity_weight: float = 0.3
    mate_continuity_weight: float = 3.0
    run_mate_z: float = 4.5
    tilt_sweep_deg: float = 18.0
    tilt_sweep_step_deg: float = 3.0
    tilt_sweep_passes: int = 2

    def validate(self) -> None:
        require(self.n_iter >= 1, f"refine.n_iter = {self.n_iter} must be >= 1")
        require(self.run_mate_z > 0, f"refine.run_mate_z = {self.run_mate_z} must be > 0")
        require(self.tilt_sweep_deg >= 0 and self.tilt_sweep_step_deg > 0,
                f"refine.tilt_sweep_deg = {self.tilt_sweep_deg} must be >= 0 (0: off) and refine.tilt_sweep_step_deg "
                f"= {self.tilt_sweep_step_deg} > 0")
        require(self.tilt_sweep_passes >= 1, f"refine.tilt_sweep_passes = {self.tilt_sweep_passes} must be >= 1")
        require(len(self.steps_deg) >= 1 and all(s > 0 for s in self.steps_deg),
                "refine.steps_deg must be a non-empty list of positive degrees")
        require(self.climbs_per_step >= 1, "refine.climbs_per_step must be >= 1")
        require(self.start_resolution_A > 0 and self.finest_search_A > 0, "refine resolutions must be > 0 Å")
        require(self.max_shift_A >= 0, "refine.max_shift_A must be >= 0")
        require(self.pad in (1, 2, 3), f"refine.pad = {self.pad} must be 1, 2 or 3")
        require(self.sweep_resolution_A >= 0, "refine.sweep_resolution_A must be >= 0 Å (0: off)")
        require(0 <= self.sweep_tolerance < 1, "refine.sweep_tolerance must be in [0, 1)")
        require(self.model_iterations >= 0 and self.model_rounds >= 1 and self.model_climbs >= 1,
                "refine.model_iterations must be >= 0, refine.model_rounds and refine.model_climbs >= 1")
        require(self.model_search_A > 0 and len(self.model_steps_deg) >= 1 and all(s > 0 for s in self.model_steps_deg),
                "refine.model_search_A must be > 0 Å and refine.model_steps_deg a non-empty list of positive degrees")
        require(self.global_peaks >= 0 and self.global_grid_size >= 1000,
                "refine.global_peaks must be >= 0 (0: off) and refine.global_grid_size >= 1000")
        require(self.jump_deg >= 0, f"refine.jump_deg = {self.jump_deg} must be >= 0 (0: off)")
        require(self.step_deg > 0, f"refine.step_deg = {self.step_deg} must be > 0")
        require(self.continuity_weight >= 0 and self.mate_continuity_weight >= 0,
                "refine.continuity_weight and refine.mate_continuity_weight must be >= 0")


def refine_shifts(ref: Reference, images_ft: np.ndarray, poses: np.ndarray, ctf: np.ndarray | None,
                  r_max: float, max_shift_px: float) -> np.ndarray:
    """Origins (x, y) in pixels from the cross-correlation peak of each image with its reference projection.

    Parameters
    ----------
    ref
        Prepared reference.
    images_ft
        (M, n, n) centred transforms of the *un-shifted* images.
    poses
        (M, 3, 3).
    ctf
        (M, n, n) centred transfer or None.
    r_max
        Band limit (Fourier pixels).
    max_shift_px
        Search radius (pixels).

    Returns
    -------
    numpy.ndarray
        (M, 2) RELION origins in pixels (the particle centre is at box centre − origin).
    """
    n = images_ft.shape[-1]
    # the images and projections are real: the real part of the inverse transform of the products on half the band
    # is half the cross-correlation over the whole band (the same peak)
    band = Band.make(n, r_max=r_max, r_min=1.0).half_plane()
    proj = project_band(ref, poses, band)
    if ctf is not None:
        proj = proj * band.take(ctf)
    prod = band.put(band.take(images_ft) * np.conj(proj))
    cc = scipy.fft.fftshift(scipy.fft.ifft2(scipy.fft.ifftshift(prod, axes=(-2, -1)), axes=(-2, -1), workers=-1).real,
                            axes=(-2, -1))
    yy, xx = np.mgrid[:n, :n] - n // 2
    cc[:, np.hypot(xx, yy) > max_shift_px] = -np.inf
    flat = np.argmax(cc.reshape(len(cc), -1), axis=1)
    iy, ix = np.unravel_index(flat, (n, n))
    iy = np.clip(iy, 1, n - 2)
    ix = np.clip(ix, 1, n - 2)
    rows = np.arange(len(cc))

    def parabola(a, b, c):
        den = a - 2 * b + c
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(np.isfinite(den) & (den < 0), 0.5 * (a - c) / den, 0.0)
        return np.clip(np.nan_to_num(d), -0.5, 0.5)

    dx = parabola(cc[rows, iy, ix - 1], cc[rows, iy, ix], cc[rows, iy, ix + 1])
    dy = parabola(cc[rows, iy - 1, ix], cc[rows, iy, ix], cc[rows, iy + 1, ix])
    peak = np.stack([ix - n // 2 + dx, iy - n // 2 + dy], axis=1)
    return -peak


@dataclass
class RefineResult:
    """Output of :func:`refine`: maps [z, y, x] float32 at the frames' pixel size, poses, shifts, FSC."""

    map: np.ndarray
    half1: np.ndarray
    half2: np.ndarray
    poses: np.ndarray
    shifts_px: np.ndarray
    fsc_freq: np.ndarray
    fsc_half: np.ndarray
    resolution_0143_A: float
    history: list


def transfer_onset(ctf_fn: CtfFn, m: int, n: int, sampling: float, level: float = 0.5) -> float:
    """Lowest frequency (1/Å) from which the mean |CTF| of (up to 64) frames exceeds ``level``: the start of the
    band a phase-contrast CTF transfers (0 if it never does)."""
    idx = np.unique(np.linspace(0, m - 1, min(64, m)).round().astype(int))
    c = np.abs(ctf_fn(idx, (n, n), sampling)).mean(axis=0)
    k = np.arange(n) - n // 2
    r = np.rint(np.hypot(k[:, None], k[None, :])).astype(int).ravel()
    prof = np.bincount(r, c.ravel()) / np.maximum(np.bincount(r), 1)
    above = np.flatnonzero(prof[1:n // 2] > level)
    return float((above[0] + 1) / (n * sampling)) if above.size else 0.0


def reconstruct_halves(frames: np.ndarray | FrameFile | SliceSpectra, poses: np.ndarray, shifts_px: np.ndarray,
                       halves: np.ndarray, ctf_fn: CtfFn | None, sampling: float, pad: int = 2, chunk: int = 256
                       ) -> tuple[Reconstructor, Reconstructor]:
    """Accumulate the two half sets (``halves`` = 0/1 per frame) of boxes ``frames`` (M, n, n), or of their
    :class:`SliceSpectra` (of ``pad``), into two :class:`Reconstructor`."""
    n = frames.n if isinstance(frames, SliceSpectra) else frames.shape[-1]
    recs = (Reconstructor(n, pad), Reconstructor(n, pad))
    for h in (0, 1):
        idx = np.flatnonzero(halves == h)
        for s in range(0, len(idx), chunk):
            sel = idx[s:s + chunk]
            ctf = None if ctf_fn is None else ctf_fn(sel, (pad * n, pad * n), sampling)
            if isinstance(frames, SliceSpectra):
                recs[h].insert_spectra(frames, sel, poses[sel], shifts_px[sel], ctf=ctf)
            else:
                recs[h].insert(np.asarray(frames[sel], np.float32), poses[sel], shifts_px[sel], ctf=ctf)
    return recs


def filtered_map(rec1: Reconstructor, rec2: Reconstructor, mask: np.ndarray, sampling: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Half maps, FSC between them (masked), and the FSC-weighted Wiener-filtered full map.

    Returns (half1, half2, freq, fsc_curve, full_map).
    """
    h1 = rec1.reconstruct(1e-3)
    h2 = rec2.reconstruct(1e-3)
    freq, curve = fsc(h1 * mask, h2 * mask, sampling)
    full = Reconstructor(rec1.n, rec1.pad, threads=1)
    full.add(rec1)
    full.add(rec2)
    tau = wiener_tau(curve)
    full_map = full.reconstruct(tau=tau, filt=fsc_weight(curve))
    del full
    return h1, h2, freq, curve, full_map


def _band_agreement(rec1: Reconstructor, rec2: Reconstructor, mask: np.ndarray, sampling: float, band_lo: float,
                    band_hi: float) -> tuple[np.ndarray, np.ndarray, float]:
    """FSC of the two half maps (frequencies in 1/Å, curve) and its mean over ``band_lo``–``band_hi`` (1/Å): the
    gold-standard check of the global search and of the model iterations."""
    freq, curve = fsc(rec1.reconstruct(1e-3) * mask, rec2.reconstruct(1e-3) * mask, sampling)
    return freq, curve, float(curve[(freq >= band_lo) & (freq <= band_hi)].mean())


def _filtered_half(rec: Reconstructor, curve: np.ndarray) -> np.ndarray:
    """A half map filtered by its own (half-set) FSC estimate: Wiener with the half-map SNR, then weighted."""
    c = np.clip(curve, 1e-4, 0.999)
    tau = np.clip((1 - c) / c, 1e-3, 1e3)
    return rec.reconstruct(tau=tau, filt=np.sqrt(np.clip(curve, 0, 1)))


def _half_reference(rec: Reconstructor, curve: np.ndarray, mask: np.ndarray) -> Reference:
    return prepare_reference(_filtered_half(rec, curve) * mask, pad=rec.pad)


def continuity_sweep(refs: tuple[Reference, Reference], halves: np.ndarray, x: np.ndarray | FrameFile, band: Band,
                     poses: np.ndarray, ctf: np.ndarray | FrameFile | None, steps_deg: tuple[float, ...],
                     tolerance: float = 0.0, block: int = 1024) -> tuple[np.ndarray, int]:
    """Let good poses propagate along the trajectory: forward, then backward, in time order.

    Successive frames of a Brownian rotation differ by a few degrees, so the pose of frame ``i − 1`` (forward
    sweep) or ``i + 1`` (backward) lies inside the basin of frame ``i``'s true pose. Each frame is hill-climbed
    (one move per step size) from its neighbour's pose against its own half map; the result replaces its pose
    when it correlates better. Being sequential, one sweep carries a correction through a whole run of frames
    stuck in a wrong local optimum (e.g. next to a change of pseudo-symmetric branch), which independent local
    searches cannot.

    Parameters
    ----------
    refs
        The two half-set references (frame ``i`` uses ``refs[halves[i]]``).
    halves
        (M,) 0/1.
    x
        complex (M, P) re-centred image transforms on ``band`` (an array or a
        :class:`~tumblebench.simulator.mrc.FrameFile`, read ``block`` frames at a time).
    band
        Frequencies.
    poses
        (M, 3, 3) poses in time order.
    ctf
        (M, P) transfer on ``band`` (as ``x``) or None.
    steps_deg
        Hill-climbing steps (deg).
    tolerance
        The pose from the neighbour replaces the frame's own when it correlates at least (1 − ``tolerance``)
        times as well (0: only when better). Equivalent poses (a symmetric particle's mates; a centrosymmetric
        one's 180° in-plane twin in projection) correlate equally: a tolerance lets the neighbour's continue
        the trajectory instead of a tie leaving a jump.
    block
        Frames of ``x`` and ``ctf`` in memory at a time (the result does not depend on it).

    Returns
    -------
    (poses, n_moved)
    """
    poses = np.ascontiguousarray(poses, np.float64).copy()
    m = len(poses)
    halves = np.asarray(halves, np.int64)

    def rows(sel) -> tuple[np.ndarray, np.ndarray]:  # x and the transfer (ones without a CTF) of frames sel
        xs = np.ascontiguousarray(x[sel], np.complex64)
        return xs, (np.ones(xs.shape, np.float32) if ctf is None else np.ascontiguousarray(ctf[sel], np.float32))

    cur = np.empty(m)
    for h in (0, 1):
        idx = np.flatnonzero(halves == h)
        for s in range(0, len(idx), block):
            sel = idx[s:s + block]
            out = np.empty((len(sel), 1))
            score_candidates(refs[h].vft, np.ascontiguousarray(poses[sel][:, None]), band.kx, band.ky, refs[h].pad,
                             *rows(sel), out)
            cur[sel] = out[:, 0]
    # the identity is left out: its score is the one the sweep compares with, and only a higher one moves
    deltas = np.stack([Rotation.from_rotvec(np.radians(s) * MOVES).as_matrix() for s in steps_deg])
    moved = np.zeros(m, np.bool_)
    args = (poses, cur, deltas)
    for s in range(1, m, block):  # forward: frames 1 … m − 1
        xs, cs = rows(slice(s, min(s + block, m)))
        sweep_poses(refs[0].vft, refs[1].vft, float(refs[0].pad), band.kx, band.ky, xs, cs, s, s,
                    min(s + block, m), halves, *args, 1, moved, float(tolerance), numba.get_num_threads())
    for e in range(m - 1, 0, -block):  # backward: frames m − 2 … 0
        lo = max(e - block, 0)
        xs, cs = rows(slice(lo, e))
        sweep_poses(refs[0].vft, refs[1].vft, float(refs[0].pad), band.kx, band.ky, xs, cs, lo, e - 1, lo - 1,
                    halves, *args, -1, moved, float(tolerance), numba.get_num_threads())
    return poses, int(moved.sum())


def _shift_and_pose_rounds(ref: Reference, ft: np.ndarray, band: Band, poses: np.ndarray, shifts: np.ndarray,
                           ctf_full: np.ndarray | None, r_max: float, steps_deg: tuple[float, ...], climbs: int,
                           rounds: int, max_shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rounds`` × (origins fitted to the poses within ``max_shift`` pixels, unless 0; local pose search) of images
    with centred transforms ``ft`` (k, n, n) against ``ref`` on ``band`` (``r_max``: its limit, Fourier pixels).
    Returns (poses, shifts, scores at them)."""
    ctf_b = None if ctf_full is None else band.take(ctf_full)
    scores = None
    for _ in range(rounds):
        if max_shift > 0:
            shifts = refine_shifts(ref, ft, poses, ctf_full, r_max, max_shift)
        poses, scores = local_search(ref, band.take(ft) * shift_phases(band, shifts), band, poses, ctf_b, steps_deg,
                                     climbs)
    return poses, shifts, scores


def repair_jumps(refs: tuple[Reference, Reference], halves: np.ndarray, boxes: np.ndarray, sampling: float,
                 poses: np.ndarray, shifts: np.ndarray, ctf_fn: CtfFn | None, res: float, steps_deg: tuple[float, ...],
                 climbs: int, rounds: int, max_shift: float, jump_deg: float, group: np.ndarray | None = None,
                 max_passes: int = 200) -> tuple[np.ndarray, np.ndarray, int]:
    """Take back runs of frames that sit on a wrong branch, from both ends, with each proposed pose's own shift.

    A run of frames on a wrong branch moves smoothly within itself but jumps at its ends (a step between
    successive poses larger than ``jump_deg``, which Brownian tumbling does not make). Its frames keep their poses
    because each pose comes with the shift fitted to it: the right pose at that shift scores lower, so a search at
    fixed shifts (the local search, the continuity sweep) does not leave the pair. Here each frame at a jump is
    proposed its neighbour's pose across the jump, and ``rounds`` × (shift fitted to the pose, local pose search)
    from there; the result replaces the frame's pose and shift when it correlates better than the frame's own pair.
    Repeated while a pass takes a proposal: each pass moves the jump one frame into the run.

    Parameters
    ----------
    refs
        The two half-set references (frame ``i`` uses ``refs[halves[i]]``).
    halves
        (M,) 0/1.
    boxes, sampling
        (M, n, n) particle boxes (time order) and their pixel size (Å).
    poses, shifts
        (M, 3, 3) poses and (M, 2) origins (pixels); not modified.
    ctf_fn
        The frames' CTFs, or None.
    res
        Resolution limit of the scores (Å).
    steps_deg, climbs, rounds, max_shift
        The local search's steps (deg) and moves per step, the alternations of shift fit and pose search, and the
        shift search radius (pixels).
    jump_deg
        Steps between successive poses larger than this (deg) are jumps.
    group
        (G, 3, 3) rotation group of the maps (:func:`tumblebench.reconstruct.symmetry.find_group`; None: the
        identity): steps are measured modulo it (poses ``B`` and ``B·g`` are the same view), and the neighbour's
        pose is proposed as its equivalent nearest to the frame's own.
    max_passes
        Most passes.

    Returns
    -------
    (poses, shifts, number of frames that took a proposal)
    """
    poses = np.array(poses, np.float64)
    shifts = np.array(shifts, np.float64)
    m, n, _ = boxes.shape
    band = Band.make(n, r_max=n * sampling / res, r_min=1.0).half_plane()
    group = np.eye(3)[None] if group is None else np.asarray(group, np.float64)
    tried = np.full((m, 2, 3, 3), np.nan)  # the neighbour's pose last proposed to each frame (from before, after)
    taken = np.zeros(m, np.bool_)
    for _ in range(max_passes):
        # angle between each pose and the equivalents of the next one: (M − 1, G)
        ang = np.stack([rotation_angle_deg(poses[:-1], poses[1:] @ g) for g in group], axis=1)
        jumps = np.flatnonzero(ang.min(axis=1) > jump_deg)
        frame = np.concatenate([jumps + 1, jumps])
        side = np.concatenate([np.zeros(jumps.size, np.int64), np.ones(jumps.size, np.int64)])
        neighbour = np.where(side == 0, frame - 1, frame + 1)
        # the neighbour's equivalent nearest to the frame's own pose: the one at the jump's angle
        g = group[ang[np.minimum(frame, neighbour)].argmin(axis=1)]
        proposal = np.where((side == 0)[:, None, None], poses[neighbour] @ np.transpose(g, (0, 2, 1)),
                            poses[neighbour] @ g)
        new = ~np.all(np.isclose(tried[frame, side], proposal, rtol=0, atol=1e-12), axis=(1, 2))
        frame, side, proposal = frame[new], side[new], proposal[new]
        if frame.size == 0:
            break
        tried[frame, side] = proposal
        got_p, got_s = np.empty((frame.size, 3, 3)), np.empty((frame.size, 2))
        gain = np.empty(frame.size)
        for h in (0, 1):
            k = np.flatnonzero(halves[frame] == h)
            if k.size == 0:
                continue
            sel = frame[k]
            ft = image_ft(np.asarray(boxes[sel], np.float32))
            ctf_full = None if ctf_fn is None else ctf_fn(sel, (n, n), sampling)
            own = _shift_and_pose_rounds(refs[h], ft, band, poses[sel], shifts[sel], ctf_full, n * sampling / res,
                                         (), 1, 1, 0.0)[2]
            got_p[k], got_s[k], score = _shift_and_pose_rounds(refs[h], ft, band, proposal[k], shifts[sel], ctf_full,
                                                               n * sampling / res, steps_deg, climbs, rounds,
                                                               max_shift)
            gain[k] = score - own
        # a frame proposed from both sides takes the better proposal
        order = np.lexsort((-gain, frame))
        first = order[np.unique(frame[order], return_index=True)[1]]
        won = first[gain[first] > 0]
        if won.size == 0:
            break
        poses[frame[won]], shifts[frame[won]] = got_p[won], got_s[won]
        taken[frame[won]] = True
    return poses, shifts, int(taken.sum())


def _model_references(rec1: Reconstructor, rec2: Reconstructor, curve: np.ndarray, mask: np.ndarray,
                      sampling: float, reference_model: ReferenceModel) -> tuple[Reference, Reference]:
    """Each half's Wiener/FSC-filtered map through ``reference_model``, masked and prepared as a reference."""
    vols = [_filtered_half(rec, curve) for rec in (rec1, rec2)]
    refs = []
    for rec, vol, got in zip((rec1, rec2), vols, model_pair(reference_model, vols, sampling), strict=True):
        if isinstance(got, TumblebenchError):
            raise got
        model = np.asarray(got, np.float32)
        require(model.shape == vol.shape and bool(np.isfinite(model).all()),
                f"reference_model returned a map of shape {model.shape} (or with NaN) for a {vol.shape} half map")
        refs.append(prepare_reference(model * mask, pad=rec.pad))
    return refs[0], refs[1]


def _search_frames(boxes: np.ndarray, sampling: float, poses: np.ndarray, shifts: np.ndarray,
                   halves: np.ndarray, refs: tuple[Reference, Reference], ctf_fn: CtfFn | None, res: float,
                   steps_deg: tuple[float, ...], climbs: int, rounds: int, max_shift: float, sweep_res: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple | None]:
    """Every frame against its half's reference to ``res`` (Å): ``rounds`` × (shift search within ``max_shift``
    pixels, local pose search), in chunks.

    Returns (poses, shifts, per-frame pose change in deg, the continuity sweep's inputs ``(x, band, ctf)`` at
    ``max(res, sweep_res)`` or None when ``sweep_res`` is 0).
    """
    m, n, _ = boxes.shape
    # real images and maps: their correlations are carried by half the plane (Band.half_plane)
    band = Band.make(n, r_max=n * sampling / res, r_min=1.0).half_plane()
    start = poses.copy()
    sweep = None
    if sweep_res > 0:  # stored next to the boxes (a scratch file when they are in one)
        sband = Band.make(n, r_max=n * sampling / max(res, sweep_res), r_min=1.0).half_plane()
        sweep = (scratch_like(boxes, m, (sband.kx.size,), np.complex64), sband,
                 None if ctf_fn is None else scratch_like(boxes, m, (sband.kx.size,), np.float32))
    for h in (0, 1):
        idx = np.flatnonzero(halves == h)
        for s in range(0, len(idx), 512):
            sel = idx[s:s + 512]
            ft = image_ft(np.asarray(boxes[sel], np.float32))
            ctf_full = None if ctf_fn is None else ctf_fn(sel, (n, n), sampling)
            poses[sel], shifts[sel], _ = _shift_and_pose_rounds(refs[h], ft, band, poses[sel], shifts[sel], ctf_full,
                                                                n * sampling / res, steps_deg, climbs, rounds,
                                                                max_shift)
            if sweep is not None:
                _put_rows(sweep[0], sel, sweep[1].take(ft) * shift_phases(sweep[1], shifts[sel]))
                if sweep[2] is not None:
                    _put_rows(sweep[2], sel, sweep[1].take(ctf_full))
    return poses, shifts, rotation_angle_deg(poses, start), sweep


def _put_rows(store: np.ndarray | FrameFile, rows: np.ndarray, values: np.ndarray) -> None:
    """``store[rows] = values`` for an array or a writable :class:`FrameFile` (``rows`` increasing)."""
    if not isinstance(store, FrameFile):
        store[rows] = values
        return
    cut = np.flatnonzero(np.diff(rows) != 1) + 1
    for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(rows)], strict=True):
        store.write(int(rows[lo]), values[lo:hi])


def _global_candidates(boxes: np.ndarray, sampling: float, diameter_A: float, vols: tuple[np.ndarray, np.ndarray],
                       halves: np.ndarray, poses: np.ndarray, shifts: np.ndarray, config: RefineConfig,
                       ctf_fn: CtfFn | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~tumblebench.reconstruct.lattice.global_candidates` of every frame against its own half map ``vols[h]``:
    (M, K, 3, 3) poses, (M, K) correlations (−inf: an empty slot) and (M, K, 2) origins, in time order."""
    m, k = len(poses), 2 * config.global_peaks + 1
    cands = np.repeat(poses[:, None], k, axis=1)
    cc = np.full((m, k), -np.inf)
    cand_shifts = np.repeat(shifts[:, None], k, axis=1)
    for h in (0, 1):
        idx = np.flatnonzero(halves == h)
        c, z, sh = global_candidates(boxes, sampling, diameter_A, vols[h], idx, poses[idx], shifts[idx],
                                     LatticeConfig(), config.global_peaks, config.global_grid_size, ctf_fn)
        cands[idx, :c.shape[1]], cc[idx, :c.shape[1]], cand_shifts[idx, :c.shape[1]] = c, z, sh
    return cands, cc, cand_shifts


def require_reference_model(config: RefineConfig, reference_model: ReferenceModel | None) -> None:
    """Raise unless a ``reference_model`` is given where ``config.model_iterations`` asks for one."""
    require(config.model_iterations == 0 or reference_model is not None,
            f"refine.model_iterations = {config.model_iterations} needs a reference_model (e.g. "
            "analysis.reference.atom_reference); set refine.model_iterations = 0 to refine against the half maps")


def _model_search(boxes: np.ndarray, sampling: float, poses: np.ndarray, shifts: np.ndarray, halves: np.ndarray,
                  refs: tuple[Reference, Reference], ctf_fn: CtfFn | None, res: float, max_shift: float,
                  config: RefineConfig, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One model-referenced search: ``config.model_rounds`` × (shift fit, local pose search) to ``res`` (Å), the
    continuity sweep, then :func:`repair_jumps` (modulo ``group``).

    Returns (poses, shifts, frames the sweep moved, frames repaired at jumps).
    """
    poses, shifts, _, sweep = _search_frames(boxes, sampling, poses, shifts, halves, refs, ctf_fn, res,
                                             config.model_steps_deg, config.model_climbs, config.model_rounds,
                                             max_shift, config.sweep_resolution_A)
    n_moved = n_repaired = 0
    if sweep is not None:
        poses, n_moved = continuity_sweep(refs, halves, sweep[0], sweep[1], poses, sweep[2], config.steps_deg,
                                          config.sweep_tolerance)
    del sweep
    if config.jump_deg > 0:
        poses, shifts, n_repaired = repair_jumps(refs, halves, boxes, sampling, poses, shifts, ctf_fn, res,
                                                 config.model_steps_deg, config.model_climbs, config.model_rounds,
                                                 max_shift, config.jump_deg, group)
    return poses, shifts, n_moved, n_repaired


def label_mates(boxes: np.ndarray, sampling: float, diameter_A: float, poses: np.ndarray, shifts: np.ndarray,
                halves: np.ndarray, ctf_fn: CtfFn | None, group: np.ndarray, mask: np.ndarray,
                band: tuple[float, float], config: RefineConfig, spectra: SliceSpectra | None = None
                ) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Each frame's symmetry mate chosen by its own data: the lattice labelling's pass with the half maps'
    rotation group in place of the prior's ambiguity.

    The mates ``P·g`` of a nearly symmetric particle (an ellipsoid whose axes lie along its lattice's cube axes,
    most of whose atoms a 90° turn that swaps two axes maps onto atoms) image alike but for a few atoms. Where the
    beam runs along a 2-fold axis of the group, the trajectory can go on as ``P·g`` or as ``TWIN·P·g'`` (the same
    image), so continuity (:func:`~tumblebench.reconstruct.symmetry.one_mate`) cannot tell which runs hold the
    particle as the others do; summed over a run, the few atoms can. Each pass scores every frame's mates
    ``P·g`` and ``TWIN·P·g`` by their shift-searched correlation with the other half's FSC-filtered map (the
    cropped box and band of the lattice labelling, :meth:`~tumblebench.reconstruct.lattice.BranchLabeller.
    map_scores`), takes the path of best continuity through them (``config.step_deg``,
    ``config.mate_continuity_weight``) and rebuilds the half maps from the chosen mates at the shifts where they
    peaked; until at most ``label_converged`` of the frames change (converged), or :data:`MATE_PASSES` passes.

    Parameters
    ----------
    boxes, sampling, diameter_A
        (M, n, n) particle boxes, their pixel size (Å) and the particle diameter (Å).
    poses, shifts
        (M, 3, 3) poses and (M, 2) origins (pixels).
    halves, ctf_fn, mask
        Half set of each frame, the CTFs (or None) and the maps' mask.
    group
        (G, 3, 3) rotation group of the half maps.
    band
        (low, high) frequencies (1/Å) of the half maps' FSC that filters them.
    config
        :class:`RefineConfig`.
    spectra
        The boxes' :class:`SliceSpectra` (of ``config.pad``), if the caller has them; else computed here.

    Returns
    -------
    (poses, shifts in pixels, passes run, converged)
    """
    m, n, _ = boxes.shape
    spectra = SliceSpectra(boxes, config.pad) if spectra is None else spectra
    lattice = LatticeConfig()
    fr = LabellingFrames.from_boxes(boxes, sampling, shifts, ctf_fn, diameter_A, lattice.box)
    ns = fr.small.shape[-1]
    lab = BranchLabeller(fr, lattice, group, config.step_deg, config.mate_continuity_weight, None)
    cands = branch_mates(poses, group)
    rows = np.arange(m)
    choice = np.zeros(m, np.int64)
    shifts = np.asarray(shifts, np.float64).copy()
    passes, converged = 0, False
    while passes < MATE_PASSES and not converged:
        passes += 1
        rec1, rec2 = reconstruct_halves(spectra, cands[rows, choice], shifts, halves, ctf_fn, sampling, config.pad)
        curve = _band_agreement(rec1, rec2, mask, sampling, *band)[1]
        vols = tuple(fourier_crop_volume(_filtered_half(r, curve).astype(np.float32), ns) for r in (rec1, rec2))
        del rec1, rec2
        cc, peaks = lab.map_scores(vols, cands)
        new = lab.choose(cands, cc)
        changed = int(np.count_nonzero(new != choice))
        choice, shifts = new, peaks[rows, new] * n / ns
        log.info("refine mate labelling pass %d: %d frames changed mate", passes, changed)
        converged = changed <= lattice.label_converged * m
    return cands[rows, choice], shifts, passes, converged


def _one_mate_pass(boxes: np.ndarray, spectra: SliceSpectra, sampling: float, poses: np.ndarray, shifts: np.ndarray,
                   halves: np.ndarray, rec1: Reconstructor, rec2: Reconstructor, mask: np.ndarray, ctf_fn: CtfFn | None,
                   group: np.ndarray, diameter_A: float, band: tuple[float, float], res: float, max_shift: float,
                   config: RefineConfig, reference_model: ReferenceModel,
                   agreement: tuple[np.ndarray, float] | None = None) -> tuple | None:
    """The frames of a symmetric particle put on one of its mates, then searched again; None if not better.

    Frames on different symmetry mates (``P·g``) project alike, but their half maps agree only as far as the map's
    origin is the particle's centre of symmetry, so a series spread over the mates gives blurred maps. The group is
    the global search's, or else the one the trajectory's steps show (:func:`~tumblebench.reconstruct.symmetry.
    group_from_steps`); :func:`~tumblebench.reconstruct.symmetry.one_mate` relabels the poses by continuity,
    :func:`label_mates` by each run's data (where two mates meet, continuity cannot choose), and every frame is
    searched as in a model iteration (:func:`_model_search`, to ``res`` in Å) against its half's model. Kept when
    the labelling converged, else when the half maps then agree better over ``band`` (1/Å) than before. The
    half-map FSC cannot judge a converged labelling: half maps of frames spread over a nearly symmetric particle's
    mates are averaged over the false symmetry and agree better than those of the right mate, though the right
    mate's map is nearer the truth (``docs/measurements.md``, np4). ``agreement`` is the half maps' FSC curve and
    band mean when the caller has them for ``rec1``/``rec2``.

    Returns
    -------
    (poses, shifts, rec1, rec2, history entry) or None
    """
    curve, before = agreement if agreement is not None else _band_agreement(rec1, rec2, mask, sampling, *band)[1:]
    if len(group) == 1:
        group, info = group_from_steps(
            poses, lambda: (_filtered_half(rec1, curve) * mask, _filtered_half(rec2, curve) * mask), sampling,
            diameter_A / 2 + config.mask_margin_A)
        log.info("refine: the trajectory's steps show a rotation group of order %d (%d jumps, %d clusters: "
                 "%s)", len(group), info["steps"], info["clusters"], info["tried"][:6])
    if len(group) == 1:
        return None
    t0 = time.perf_counter()
    mate = one_mate(poses, group, config.step_deg, config.jump_deg)
    mate, mate_shifts, passes, converged = label_mates(boxes, sampling, diameter_A, mate, shifts, halves, ctf_fn,
                                                       group, mask, band, config, spectra)
    moved = int(np.count_nonzero(rotation_angle_deg(mate, poses) > 1e-6))
    if not moved:
        return None
    r1, r2 = reconstruct_halves(spectra, mate, mate_shifts, halves, ctf_fn, sampling, config.pad)
    curve = _band_agreement(r1, r2, mask, sampling, *band)[1]
    try:
        refs = _model_references(r1, r2, curve, mask, sampling, reference_model)
    except TumblebenchError as exc:
        log.warning("refine: the poses on one mate are not refined: no model reference (%s)", exc)
        return None
    del r1, r2
    new_p, new_s, _, _ = _model_search(boxes, sampling, mate, mate_shifts, halves, refs, ctf_fn, res, max_shift,
                                       config, group)
    del refs
    r1, r2 = reconstruct_halves(spectra, new_p, new_s, halves, ctf_fn, sampling, config.pad)
    after = _band_agreement(r1, r2, mask, sampling, *band)[2]
    keep = converged or after > before
    log.info("refine: %d frames put on one mate of the rotation group of order %d (%d labelling passes, %s) and "
             "refined to %.3f Å; half-map FSC over %.2f–%.2f Å %.3f -> %.3f: %s (%.0f s)", moved, len(group), passes,
             "converged" if converged else "not converged", res, 1 / band[0], 1 / band[1], before, after,
             "kept" if keep else "discarded", time.perf_counter() - t0)
    if not keep:
        return None
    return new_p, new_s, r1, r2, {"one_mate_frames_changed": moved, "group_order": len(group),
                                  "mate_labelling_passes": passes, "mate_labelling_converged": converged,
                                  "band_fsc_before": before, "band_fsc_after": after}


def _tilt_sweep_step(boxes: np.ndarray, spectra: SliceSpectra, sampling: float, poses: np.ndarray,
                     shifts: np.ndarray, halves: np.ndarray, rec1: Reconstructor, rec2: Reconstructor, mask: np.ndarray,
                     ctf_fn: CtfFn | None, group: np.ndarray, diameter_A: float, band: tuple[float, float], res: float,
                     max_shift: float, config: RefineConfig, reference_model: ReferenceModel | None) -> tuple:
    """The tilt sweep (:func:`~tumblebench.reconstruct.tilt_sweep.tilt_sweep`) against the half maps ``rec1``/
    ``rec2``, then every frame searched locally from its new tilt (``config.steps_deg``, ``config.model_rounds``
    rounds of shift and pose search to ``res`` in Å; the sweep's tilts lie on a grid of ``tilt_sweep_step_deg``)
    against its half's model (its filtered half map without a ``reference_model``); kept when the half maps then
    agree better over ``band`` (1/Å) than before.

    Returns
    -------
    (poses, shifts, rec1, rec2, history entry): the entry's ``discarded`` tells whether the rest is the sweep's
    """
    t0 = time.perf_counter()
    curve, before = _band_agreement(rec1, rec2, mask, sampling, *band)[1:]
    swept, _, tilted = tilt_sweep(boxes, sampling, diameter_A, poses, shifts, ctf_fn,
                                  (_filtered_half(rec1, curve), _filtered_half(rec2, curve)), config.tilt_sweep_deg,
                                  config.tilt_sweep_step_deg, config.step_deg, config.continuity_weight, group)
    refs = None
    if reference_model is not None:
        try:
            refs = _model_references(rec1, rec2, curve, mask, sampling, reference_model)
        except TumblebenchError as exc:  # a half map without a particle above noise (e.g. 100 frames)
            log.warning("refine tilt sweep: no model reference (%s); searched against the half maps", exc)
    if refs is None:
        refs = (_half_reference(rec1, curve, mask), _half_reference(rec2, curve, mask))
    new_p, new_s, _, _ = _search_frames(boxes, sampling, swept, np.array(shifts, np.float64, copy=True), halves,
                                        refs, ctf_fn, res, config.steps_deg, 1, config.model_rounds, max_shift, 0.0)
    del refs
    r1, r2 = reconstruct_halves(spectra, new_p, new_s, halves, ctf_fn, sampling, config.pad)
    after = _band_agreement(r1, r2, mask, sampling, *band)[2]
    keep = after > before  # gold-standard check: the half maps agree better with the new tilts
    log.info("refine tilt sweep: %d frames took another tilt within %.0f° on the path of best continuity, every frame "
             "then searched locally to %.3f Å; half-map FSC over %.2f–%.2f Å %.3f -> %.3f: %s (%.0f s)", tilted,
             config.tilt_sweep_deg, res, 1 / band[0], 1 / band[1], before, after, "kept" if keep else "discarded",
             time.perf_counter() - t0)
    return new_p, new_s, r1, r2, {"tilt_sweep_frames_changed": tilted, "band_fsc_before": before,
                                  "band_fsc_after": after, "discarded": not keep}


def refine(boxes: np.ndarray, sampling: float, poses: np.ndarray, shifts_px: np.ndarray, diameter_A: float,
           config: RefineConfig, ctf_fn: CtfFn | None = None, progress=None,
           reference_model: ReferenceModel | None = None) -> RefineResult:
    """Gold-standard projection-matching refinement of poses and shifts.

    Parameters
    ----------
    boxes
        (M, n, n) background-subtracted particle boxes (time order).
    sampling
        Å per pixel.
    poses
        (M, 3, 3) starting poses.
    shifts_px
        (M, 2) starting origins (pixels).
    diameter_A
        Particle diameter (Å) for the mask.
    config
        :class:`RefineConfig`.
    ctf_fn
        ``(indices, shape, sampling) -> (k, *shape)`` centred CTFs, or None (no CTF).
    progress
        Optional callable advanced once per iteration (map- and model-referenced).
    reference_model
        Builder of the model references of the last ``config.model_iterations`` iterations
        (:data:`ReferenceModel`). When it raises :class:`~tumblebench.simulator.errors.TumblebenchError` (no model in a
        half map), the remaining model iterations are skipped and the log says why.
    """
    require_reference_model(config, reference_model)
    m, n, _ = boxes.shape
    poses = np.asarray(poses, np.float64).copy()
    shifts = np.asarray(shifts_px, np.float64).copy()
    halves = (np.arange(m) % 2).astype(np.int64)
    mask = soft_sphere(n, (diameter_A / 2 + config.mask_margin_A) / sampling, 3.0)
    spectra = SliceSpectra(boxes, config.pad)  # every half map below inserts the same frames
    res = config.start_resolution_A
    history = []
    max_shift = config.max_shift_A / sampling
    q_transfer = 0.0 if ctf_fn is None else transfer_onset(ctf_fn, m, n, sampling)
    for it in range(config.n_iter):
        rec1, rec2 = reconstruct_halves(spectra, poses, shifts, halves, ctf_fn, sampling, config.pad)
        h1 = rec1.reconstruct(1e-3)
        h2 = rec2.reconstruct(1e-3)
        freq, curve = fsc(h1 * mask, h2 * mask, sampling)
        res_fsc = resolution_at(freq, curve, 0.143)
        # with a CTF the search limit is where the FSC falls below 0.143 *within the band the CTF transfers*: an
        # aberration-corrected CTF transfers almost nothing at 4–8 Å, so the first crossing lies in that gap even
        # when the map is good to 2 Å (searching only up to it made a multislice refinement from true poses + 3°
        # drift to 25°)
        res_band = resolution_at(freq, curve, 0.143, min_freq=q_transfer) if q_transfer > 0 else res_fsc
        res_band = res if not np.isfinite(res_band) else res_band
        search_res = max(config.finest_search_A, 2.0 * sampling + 1e-6, min(res_band, res) if it == 0 else res_band)
        refs = (_half_reference(rec1, curve, mask), _half_reference(rec2, curve, mask))
        del rec1, rec2
        poses, shifts, change, sweep = _search_frames(boxes, sampling, poses, shifts, halves, refs, ctf_fn,
                                                      search_res, config.steps_deg, config.climbs_per_step, 1,
                                                      max_shift, config.sweep_resolution_A)
        if sweep is not None:
            poses, n_moved = continuity_sweep(refs, halves, sweep[0], sweep[1], poses, sweep[2], config.steps_deg,
                                              config.sweep_tolerance)
            log.info("refine iteration %d: continuity sweep moved %d frames to a neighbour's basin", it, n_moved)
        med = float(np.median(change))
        history.append({"iteration": it, "fsc_0.143_A": res_fsc, "search_resolution_A": search_res,
                        "median_pose_change_deg": med})
        log.info("refine iteration %d: half-map FSC 0.143 at %.3f Å, searched to %.3f Å, median pose change "
                 "%.3f deg", it, res_fsc, search_res, med)
        if progress is not None:
            progress(1)
        if med < config.converge_deg:
            break
    rec1, rec2 = reconstruct_halves(spectra, poses, shifts, halves, ctf_fn, sampling, config.pad)
    # the model searches go to model_search_A or to where the map-referenced ones got, whichever is finer; the
    # gold-standard checks (of the global search and of each model iteration) score the band they use
    model_res = max(min(config.model_search_A, search_res), 2.0 * sampling + 1e-6)
    band_lo = max(q_transfer, 1.0 / 8.0)
    band_hi = 1.0 / model_res
    group = np.eye(3)[None]  # of the half maps, when the global search finds one
    if config.global_peaks > 0:
        t_global = time.perf_counter()
        freq, curve, before = _band_agreement(rec1, rec2, mask, sampling, band_lo, band_hi)
        if before < GLOBAL_MIN_FSC:  # the half maps do not agree in the band: nothing to search against
            log.info("refine global search skipped: the half maps agree over %.2f–%.2f Å at FSC %.3f only (< %.3f)",
                     1 / band_lo, 1 / band_hi, before, GLOBAL_MIN_FSC)
            history.append({"iteration": len(history), "global_search_frames_changed": 0, "band_fsc_before": before,
                            "skipped": True})
        else:
            found = (poses.copy(), shifts.copy(), rec1, rec2)
            vols = (_filtered_half(rec1, curve) * mask, _filtered_half(rec2, curve) * mask)
            cands, cc, cand_shifts = _global_candidates(boxes, sampling, diameter_A, vols, halves, poses, shifts,
                                                        config, ctf_fn)
            group, group_info = find_group(cands, cc, vols[0], vols[1], sampling,
                                           diameter_A / 2 + config.mask_margin_A)
            del vols
            path = viterbi(cands, robust_z(cc), config.step_deg, config.continuity_weight, group=group)
            rows = np.arange(m)
            poses, shifts = cands[rows, path], cand_shifts[rows, path]
            moved = int(np.count_nonzero(path))
            rec1, rec2 = reconstruct_halves(spectra, poses, shifts, halves, ctf_fn, sampling, config.pad)
            after = _band_agreement(rec1, rec2, mask, sampling, band_lo, band_hi)[2]
            kept_search = after > before
            log.info("refine global search: the half maps' rotation group has order %d (%d clusters of relative "
                     "rotations tried: %s); %d frames took a pose from their %d best amplitude peaks over %d SO(3) "
                     "poses on the path of best continuity modulo that group; half-map FSC over %.2f–%.2f Å "
                     "%.3f -> %.3f: %s (%.0f s)", len(group), group_info["clusters"], group_info["tried"][:6], moved,
                     config.global_peaks, config.global_grid_size, 1 / band_lo, 1 / band_hi, before, after,
                     "kept" if kept_search else "discarded", time.perf_counter() - t_global)
            if not kept_search:  # gold-standard check: the half maps agree less with the moved frames than without
                poses, shifts, rec1, rec2 = found
            del found
            history.append({"iteration": len(history), "global_search_frames_changed": moved,
                            "group_order": len(group), "band_fsc_before": before, "band_fsc_after": after,
                            "discarded": not kept_search})
        if progress is not None:
            progress(1)
    quality = None
    kept = (poses.copy(), shifts.copy())
    # each pass checks the previous model iteration, then (but the extra last pass) runs the next one
    agreement = None  # (curve, band mean) of rec1, rec2
    for it in range(config.model_iterations + 1 if config.model_iterations else 0):
        freq, curve, now = _band_agreement(rec1, rec2, mask, sampling, band_lo, band_hi)
        agreement = (curve, now)
        if quality is not None and now <= quality:
            # gold-standard check: the half maps of the model-referenced poses agree less with each other than
            # those they started from (a model that misplaces atoms pulls the poses towards its own errors)
            log.info("refine model iteration %d lowered the half-map FSC over %.2f–%.2f Å (%.3f -> %.3f): its "
                     "poses are discarded and the model iterations stop", it - 1, 1 / band_lo, 1 / band_hi,
                     quality, now)
            poses, shifts = kept
            history[-1]["discarded"] = True
            rec1, rec2 = reconstruct_halves(spectra, poses, shifts, halves, ctf_fn, sampling, config.pad)
            agreement = None
            break
        if it == config.model_iterations:
            break
        quality = now
        try:
            refs = _model_references(rec1, rec2, curve, mask, sampling, reference_model)
        except TumblebenchError as exc:
            log.warning("refine: model iterations %d–%d skipped: no model reference (%s)", it,
                        config.model_iterations - 1, exc)
            break
        del rec1, rec2
        kept = (poses.copy(), shifts.copy())
        poses, shifts, n_moved, n_repaired = _model_search(boxes, sampling, poses, shifts, halves, refs, ctf_fn,
                                                           model_res, max_shift, config, group)
        del refs
        med = float(np.median(rotation_angle_deg(poses, kept[0])))
        history.append({"iteration": len(history), "fsc_0.143_A": resolution_at(freq, curve, 0.143),
                        "search_resolution_A": model_res, "median_pose_change_deg": med,
                        "reference": "model", "band_fsc_before": now, "jump_frames_repaired": n_repaired})
        log.info("refine model iteration %d: half-map FSC over %.2f–%.2f Å %.3f before; searched to %.3f Å against "
                 "the half maps' models, continuity sweep moved %d frames, %d frames at pose jumps took their "
                 "neighbour's pose, median pose change %.3f deg", it, 1 / band_lo, 1 / band_hi, now, model_res,
                 n_moved, n_repaired, med)
        if progress is not None:
            progress(1)
        rec1, rec2 = reconstruct_halves(spectra, poses, shifts, halves, ctf_fn, sampling, config.pad)
    if reference_model is not None and config.model_iterations:
        found = _one_mate_pass(boxes, spectra, sampling, poses, shifts, halves, rec1, rec2, mask, ctf_fn, group,
                               diameter_A, (band_lo, band_hi), model_res, max_shift,
                               config, reference_model, agreement)
        if found is not None:
            poses, shifts, rec1, rec2, entry = found
            history.append({"iteration": len(history)} | entry)
    t_runs = time.perf_counter()
    poses, shifts, runs = move_runs(boxes, sampling, diameter_A, poses, shifts, ctf_fn, group, config.run_mate_z)
    if runs:
        rec1, rec2 = reconstruct_halves(spectra, poses, shifts, halves, ctf_fn, sampling, config.pad)
        history.append({"iteration": len(history), "runs_moved": runs})
    log.info("refine: %d runs of frames moved to a lattice mate their data prefer (z >= %.1f): %s (%.0f s)",
             len(runs), config.run_mate_z, ", ".join(f"{r['frames'][0]}-{r['frames'][1] - 1} by {r['angle_deg']:.0f}°"
                                                     f"{' turned' if r['turned'] else ''} (z {r['z']:.1f})"
                                                     for r in runs) or "none", time.perf_counter() - t_runs)
    for _ in range(config.tilt_sweep_passes if config.tilt_sweep_deg > 0 else 0):
        found = _tilt_sweep_step(boxes, spectra, sampling, poses, shifts, halves, rec1, rec2, mask, ctf_fn, group,
                                 diameter_A, (band_lo, band_hi), model_res, max_shift, config, reference_model)
        history.append({"iteration": len(history)} | found[-1])
        if found[-1]["discarded"]:
            break
        poses, shifts, rec1, rec2 = found[:4]
    h1, h2, freq, curve, full = filtered_map(rec1, rec2, mask, sampling)
    res_final = resolution_at(freq, curve, 0.143)
    log.info("refine final: half-map FSC 0.143 at %.3f Å", res_final)
    return RefineResult(full, h1, h2, poses, shifts, freq, curve, res_final, history)


class ProjectionMatching:
    """The built-in refiner (registered as ``projection-matching``): :func:`refine`.

    Parameters
    ----------
    config
        :class:`RefineConfig`.
    """

    name = "projection-matching"

    def __init__(self, config: RefineConfig | None = None):
        self.config = config or RefineConfig()

    def steps(self) -> int:
        """How often the refinement advances ``data.progress`` at most (map- and model-referenced iterations and the
        global search)."""
        return self.config.n_iter + self.config.model_iterations + (self.config.global_peaks > 0)

    def refine(self, data: RefineInput) -> Refinement:
        """Refined poses, shifts and the half maps of the last iteration (:class:`tumblebench.stages.Refiner`)."""
        res = refine(data.boxes, data.sampling, data.poses, data.shifts_px, data.diameter_A, self.config, data.ctf,
                     progress=data.progress, reference_model=data.reference_model)
        maps = HalfMaps(half1=res.half1, half2=res.half2, full=res.map, freq=res.fsc_freq, fsc=res.fsc_half)
        return Refinement(poses=res.poses, shifts_px=res.shifts_px, scores=np.full(len(res.poses), np.nan),
                          maps=maps, info={"history": res.history, "fsc_0.143_A": res.resolution_0143_A})
