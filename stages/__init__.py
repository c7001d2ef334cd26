"""The replaceable stages of tumblebench: one small interface per stage, with typed inputs and outputs.

A stage algorithm is any object with the stage's method (a :class:`typing.Protocol`: no base class is needed).
Its input and output are the dataclasses below; arrays follow :mod:`tumblebench.simulator.orientation`:

* lengths in Å, pixel and voxel edges ``sampling`` in Å; positions in pixels (frames, boxes) or Å (atoms);
* images [row, col] = [y, x], maps [z, y, x]; a point (x, y) in pixels has pixel (row y, col x) at its centre;
* a pose is a rotation matrix ``A`` (particle → lab, RELION's matrix of rot, tilt, psi), the beam along lab +z;
* a shift is RELION's origin in pixels of the box: the particle's centre is imaged at box centre − origin;
* atom positions (x, y, z) in Å in the map frame: voxel (iz, iy, ix) is centred at (ix, iy, iz) · sampling.

Stages and their built-ins (registered names, :mod:`tumblebench.validation.algorithms`):

=========== ======================== ===================================================== =====================
stage       method                   what it does                                          built-ins
=========== ======================== ===================================================== =====================
tracking    ``track(TrackingInput)`` frames → per-frame particle centres and a kept mask   ``correlation``
pose        ``estimate(PoseInput)``  centred boxes (+ CTF) → rotations, shifts, scores     ``lattice``, ``sphere``
refine      ``refine(RefineInput)``  boxes + poses → poses, shifts (and half maps)         ``projection-matching``
atoms       ``detect(AtomsInput)``   map → atom positions and per-atom scores              ``threshold-scan``
=========== ======================== ===================================================== =====================

Everything around the stages stays tumblebench's, so that every algorithm is scored alike: graphene removal and
box cutting around the tracker, the CTF model, the gold-standard maps made from the refined poses (unless a
refiner returns its own), density modification, and the per-atom statistics (CN, strain, U, …) of the detected
atoms. This module depends only on numpy and :mod:`tumblebench.simulator.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tumblebench.simulator.errors import TumblebenchError

#: The replaceable stages, in pipeline order, and the method each interface asks for.
STAGE_METHODS: dict[str, str] = {"tracking": "track", "pose": "estimate", "refine": "refine", "atoms": "detect"}

#: ``(indices, shape, sampling) -> (len(indices), *shape)`` float32 CTFs (centred, fftshift layout) of the frames
#: ``indices`` (rows of the stage's boxes) on a ``shape`` grid of ``sampling`` Å per pixel.
CtfFunction = Callable[[np.ndarray, tuple[int, int], float], np.ndarray]

#: ``(map [z, y, x], sampling Å) -> reference map`` of the same shape (e.g. the map simulated from the atoms traced
#: in the map); may raise :class:`tumblebench.simulator.errors.TumblebenchError` when the map holds no model.
ReferenceModel = Callable[[np.ndarray, float], np.ndarray]

#: ``(n_done)``: advance a progress bar.
Progress = Callable[[int], None]


class Frames(Protocol):
    """A stack of frames read on demand: ``len``, ``shape`` (M, H, W), and ``frames[a:b]`` or
    ``frames[index_array]`` returning float32 (k, H, W). A numpy array is one."""

    shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------------- tracking
@dataclass(frozen=True)
class TrackingInput:
    """What a tracker gets.

    Attributes
    ----------
    frames
        (M, H, W) full frames in time order, graphene lattice already removed (:class:`Frames`).
    sampling
        Pixel edge (Å).
    radius_px
        First guess of the particle's radius (pixels of the frames).
    contrast_sign
        +1 if the particle is brighter than its surroundings on the series' mean frame, −1 if darker.
    valid
        (M,) bool: frames that hold data (False: NaN or constant frames, which a tracker must not keep).
    linear_contrast
        True when the frames are linear in the particle's potential (no CTF, e.g. ``projection`` mode).
    seed
        Seed of any random draw (``numpy.random.default_rng(seed)``).
    progress
        Optional progress callback, advanced by frames done.
    """

    frames: Frames
    sampling: float
    radius_px: float
    contrast_sign: float
    valid: np.ndarray
    linear_contrast: bool = False
    seed: int = 0
    progress: Progress | None = None


@dataclass(frozen=True)
class Track:
    """What a tracker returns.

    Attributes
    ----------
    centres_px
        (M, 2) float (x, y) position of the particle's centre in every frame, pixels (finite for every kept
        frame); boxes are cut around them.
    kept
        (M,) bool: frames in which the particle was found (subset of ``valid``).
    scores
        (M,) per-frame confidence, higher is better (NaN where none).
    raw_px
        (M, 2) per-frame detections before any smoothing (NaN where not kept), or None (= ``centres_px``).
    info
        Diagnostics (JSON-serialisable), e.g. the method chosen.
    """

    centres_px: np.ndarray
    kept: np.ndarray
    scores: np.ndarray
    raw_px: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Tracker(Protocol):
    """Tracking stage: frames → per-frame centres and a kept mask."""

    def track(self, data: TrackingInput) -> Track:
        """Find the particle in every frame."""
        ...


# ------------------------------------------------------------------------------------------------------ poses
@dataclass(frozen=True)
class PoseInput:
    """What a pose estimator gets.

    Attributes
    ----------
    boxes
        (M, n, n) float32 particle boxes in time order, background removed, approximately centred by the
        tracker. Without a CTF (``ctf`` None) the particle's density is positive.
    sampling
        Pixel edge of the boxes (Å).
    diameter_A
        Particle diameter estimated from the frames (Å).
    shifts_px
        (M, 2) origins from tracking (pixels of the boxes): the residual offsets of the particle.
    ctf
        :data:`CtfFunction` of the boxes' rows, or None (linear projections, no CTF).
    seed
        Seed of any random draw (``numpy.random.default_rng(seed)``).
    reference_model
        Optional :data:`ReferenceModel` (tumblebench passes the atomic-model builder).
    progress
        Optional progress callback.
    """

    boxes: np.ndarray
    sampling: float
    diameter_A: float
    shifts_px: np.ndarray
    ctf: CtfFunction | None = None
    seed: int = 0
    reference_model: ReferenceModel | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class PoseEstimate:
    """What a pose estimator returns.

    Attributes
    ----------
    poses
        (M, 3, 3) rotation matrices (particle → lab), in an arbitrary global frame and hand: the scorecard
        aligns them to the truth by one global rotation.
    shifts_px
        (M, 2) origins (pixels of the boxes).
    scores
        (M,) per-frame score of the chosen pose, higher is better (NaN where none).
    info
        Diagnostics (JSON-serialisable); written to ``summary.json`` under ``abinitio``.
    """

    poses: np.ndarray
    shifts_px: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class PoseEstimator(Protocol):
    """Pose estimation stage (ab initio): centred boxes + CTF → rotations, shifts, per-frame scores."""

    def estimate(self, data: PoseInput) -> PoseEstimate:
        """Poses of every box from the boxes alone."""
        ...


# ------------------------------------------------------------------------------------------------- refinement
@dataclass(frozen=True)
class RefineInput:
    """What a refiner gets: :class:`PoseInput`'s boxes with starting poses.

    Attributes
    ----------
    boxes, sampling, diameter_A, ctf, seed, reference_model, progress
        As :class:`PoseInput`. ``ctf`` here also gives zero weight to Fourier pixels removed with the
        graphene lattice.
    poses
        (M, 3, 3) starting poses.
    shifts_px
        (M, 2) starting origins (pixels).
    """

    boxes: np.ndarray
    sampling: float
    diameter_A: float
    poses: np.ndarray
    shifts_px: np.ndarray
    ctf: CtfFunction | None = None
    seed: int = 0
    reference_model: ReferenceModel | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class HalfMaps:
    """Gold-standard maps of a refiner (frames 0, 2, 4, … in ``half1``, 1, 3, 5, … in ``half2``).

    Attributes
    ----------
    half1, half2
        (n, n, n) float32 half maps [z, y, x] at the boxes' sampling.
    full
        (n, n, n) float32 full map (FSC-weighted).
    freq
        (K,) shell frequencies (1/Å).
    fsc
        (K,) FSC between the masked half maps.
    """

    half1: np.ndarray
    half2: np.ndarray
    full: np.ndarray
    freq: np.ndarray
    fsc: np.ndarray


@dataclass(frozen=True)
class Refinement:
    """What a refiner returns.

    Attributes
    ----------
    poses
        (M, 3, 3) refined poses.
    shifts_px
        (M, 2) refined origins (pixels).
    scores
        (M,) per-frame score, higher is better (NaN where none).
    maps
        The refiner's own half maps, or None: tumblebench then reconstructs them from ``poses`` and
        ``shifts_px`` (even/odd frames, CTF-weighted Fourier gridding, FSC-weighted full map).
    info
        Diagnostics (JSON-serialisable); its ``history`` list goes to ``summary.json``.
    """

    poses: np.ndarray
    shifts_px: np.ndarray
    scores: np.ndarray
    maps: HalfMaps | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Refiner(Protocol):
    """Refinement stage: boxes + poses → poses, shifts (and optionally half maps)."""

    def refine(self, data: RefineInput) -> Refinement:
        """Refine the poses."""
        ...


# ------------------------------------------------------------------------------------------------------ atoms
@dataclass(frozen=True)
class AtomsInput:
    """What an atom detector gets.

    Attributes
    ----------
    volume
        (Z, Y, X) float32 map, potential-like (atoms positive).
    sampling
        Voxel edge (Å).
    element
        Chemical symbol of the particle.
    name
        Name of the map for messages (e.g. its file).
    """

    volume: np.ndarray
    sampling: float
    element: str = "Pt"
    name: str = "map"


@dataclass(frozen=True)
class AtomDetection:
    """What an atom detector returns.

    Attributes
    ----------
    positions
        (N, 3) atom centres (x, y, z) in Å, map frame.
    scores
        (N,) per-atom confidence, higher is better.
    labels
        Optional (Z, Y, X) int32 volume: voxel value k + 1 belongs to atom k, 0 to none. None: tumblebench
        assigns every voxel within one atomic radius to its nearest atom.
    resolution_A
        Optional band limit of the map (Å) the detector found; None: estimated by the statistics.
    info
        Diagnostics (JSON-serialisable).
    """

    positions: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None
    resolution_A: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AtomDetector(Protocol):
    """Atom detection stage: map → atom positions and per-atom scores."""

    def detect(self, data: AtomsInput) -> AtomDetection:
        """Find the atoms of the map."""
        ...


#: The interface (Protocol) of every stage.
INTERFACES: dict[str, type] = {"tracking": Tracker, "pose": PoseEstimator, "refine": Refiner,
                               "atoms": AtomDetector}


class StageOutputError(TumblebenchError):
    """A stage algorithm returned something that breaks its interface (wrong type, shape, or values)."""


def _shape(name: str, stage: str, a: Any, shape: tuple, finite: bool = True) -> np.ndarray:
    arr = np.asarray(a)
    ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape, strict=False))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise StageOutputError(f"{stage}: {name} has shape {arr.shape}, expected {want}")
    if finite and arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise StageOutputError(f"{stage}: {name} holds NaN or infinite values")
    return arr


def check_track(out: Any, data: TrackingInput, stage: str = "tracking") -> Track:
    """``out`` if it is a valid :class:`Track` for ``data``; else raise :class:`StageOutputError`."""
    if not isinstance(out, Track):
        raise StageOutputError(f"{stage}: returned {type(out).__name__}, expected tumblebench.stages.Track")
    m = len(data.frames)
    kept = _shape("kept", stage, out.kept, (m,)).astype(bool)
    c = _shape("centres_px", stage, out.centres_px, (m, 2), finite=False)
    if not np.isfinite(c[kept]).all():
        raise StageOutputError(f"{stage}: centres_px is not finite for every kept frame")
    if (kept & ~np.asarray(data.valid, bool)).any():
        raise StageOutputError(f"{stage}: kept frames that hold no data (valid is False)")
    _shape("scores", stage, out.scores, (m,), finite=False)
    if out.raw_px is not None:
        _shape("raw_px", stage, out.raw_px, (m, 2), finite=False)
    return out


def _check_rotations(stage: str, poses: Any, m: int) -> None:
    p = _shape("poses", stage, poses, (m, 3, 3))
    err = np.abs(np.einsum("nji,njk->nik", p, p) - np.eye(3)).max(initial=0.0)
    det = np.linalg.det(p) if m else np.ones(0)
    if err > 1e-4 or (m and np.abs(det - 1).max() > 1e-4):
        raise StageOutputError(f"{stage}: poses are not rotation matrices (|AᵀA − I| up to {err:.2g}, "
                               f"det down to {det.min() if m else 1:.3f})")


def check_pose_estimate(out: Any, data: PoseInput, stage: str = "pose") -> PoseEstimate:
    """``out`` if it is a valid :class:`PoseEstimate` for ``data``; else raise :class:`StageOutputError`."""
    if not isinstance(out, PoseEstimate):
        raise StageOutputError(f"{stage}: returned {type(out).__name__}, expected tumblebench.stages.PoseEstimate")
    m = len(data.boxes)
    _check_rotations(stage, out.poses, m)
    _shape("shifts_px", stage, out.shifts_px, (m, 2))
    _shape("scores", stage, out.scores, (m,), finite=False)
    return out


def check_refinement(out: Any, data: RefineInput, stage: str = "refine") -> Refinement:
    """``out`` if it is a valid :class:`Refinement` for ``data``; else raise :class:`StageOutputError`."""
    if not isinstance(out, Refinement):
        raise StageOutputError(f"{stage}: returned {type(out).__name__}, expected tumblebench.stages.Refinement")
    m, n = len(data.boxes), data.boxes.shape[-1]
    _check_rotations(stage, out.poses, m)
    _shape("shifts_px", stage, out.shifts_px, (m, 2))
    _shape("scores", stage, out.scores, (m,), finite=False)
    if out.maps is not None:
        for name in ("half1", "half2", "full"):
            _shape(f"maps.{name}", stage, getattr(out.maps, name), (n, n, n))
        k = len(np.asarray(out.maps.freq))
        _shape("maps.fsc", stage, out.maps.fsc, (k,), finite=False)
    return out


def check_detection(out: Any, data: AtomsInput, stage: str = "atoms") -> AtomDetection:
    """``out`` if it is a valid :class:`AtomDetection` for ``data``; else raise :class:`StageOutputError`."""
    if not isinstance(out, AtomDetection):
        raise StageOutputError(f"{stage}: returned {type(out).__name__}, expected tumblebench.stages.AtomDetection")
    pos = _shape("positions", stage, out.positions, (None, 3))
    _shape("scores", stage, out.scores, (len(pos),), finite=False)
    if out.labels is not None:
        lab = _shape("labels", stage, out.labels, tuple(data.volume.shape))
        if lab.dtype.kind not in "iu" or lab.min(initial=0) < 0 or lab.max(initial=0) > len(pos):
            raise StageOutputError(f"{stage}: labels must be integers in 0–{len(pos)} (0: no atom)")
    if out.resolution_A is not None and not out.resolution_A > 0:
        raise StageOutputError(f"{stage}: resolution_A = {out.resolution_A} must be > 0 Å or None")
    return out


_CHECKS: dict[str, Callable[[Any, Any], Any]] = {"tracking": check_track, "pose": check_pose_estimate,
                                                 "refine": check_refinement, "atoms": check_detection}


def algorithm_name(algorithm: Any) -> str:
    """``module.Class`` of a stage algorithm (for messages and manifests)."""
    cls = algorithm if isinstance(algorithm, type) else type(algorithm)
    return f"{cls.__module__}.{cls.__qualname__}"


def run_stage(stage: str, algorithm: Any, data: Any) -> Any:
    """Call ``algorithm``'s method of ``stage`` on ``data`` and check its output against the interface.

    An exception raised by the algorithm propagates unchanged (its own traceback, once) with a note naming the
    stage and the algorithm; an output that breaks the interface raises :class:`StageOutputError` naming the
    stage and what is wrong.
    """
    method = STAGE_METHODS[stage]
    try:
        out = getattr(algorithm, method)(data)
    except TumblebenchError:
        raise
    except Exception as exc:
        exc.add_note(f"raised by the {stage} algorithm {algorithm_name(algorithm)}.{method}")
        raise
    return _CHECKS[stage](out, data)
