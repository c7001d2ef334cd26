"""Pose errors of a reconstruction from unknown poses, after the best global rotation and hand.

An ab initio reconstruction lives in its own particle frame: its poses equal the true ones up to one global
rotation ``G`` (``est_i ≈ true_i · G``), and — because linear projections cannot tell a particle from its mirror
image — possibly up to the hand: the mirrored map with poses ``P·est_i·P`` (``P = diag(1, 1, −1)``) explains the
frames equally well. A symmetric particle adds its point group ``S`` (``true_i·s`` is as good as ``true_i``).
:func:`pose_errors` finds ``G`` and the hand that put the most frames within :data:`AGREE_DEG` of the truth (the
median breaks ties) and returns the per-frame angular errors. Counting agreeing frames rather than minimising the
median keeps the rotation that the right frames share when fewer than half of them are right: the median of a
series with 46 % right frames and the rest spread over other branches is least at some compromise rotation that
fits no frame.

An *achiral* particle (one with an improper symmetry: a mirror plane, the inversion) adds a per-frame ambiguity,
the projection twin. A projection along the beam cannot tell ``A·X`` from its mirror through the image plane,
which is ``T·A·(−X)`` (``T`` = 180° about the beam, ``diag(−1, −1, 1)``); when ``q·(−X) = X`` for a rotation
``q``, that is the particle itself at the pose ``T·A·qᵀ``. The two poses give the same projected image, and in
multislice images that differ only by the order of the slices — a second-order effect for a particle much
thinner than the depth of field (d²/λ ≈ 13 nm for 1.6 Å fringes at 300 kV against a 2–3 nm particle) — so no
method can tell them apart frame by frame. ``projection_twin=`` (the ``q`` of the truth, e.g.
:attr:`tumblebench.validation.symmetry.SymmetryGroup.mirror_rotations`) scores each frame against the nearer of
the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.orientation import (  # noqa: F401  (cubic_group: re-exported for the scorers)
    TWIN,
    cubic_group,
    rotation_angle_deg,
)

MIRROR = np.diag([1.0, 1.0, -1.0])
AGREE_DEG = 10.0  # a frame within this angle (deg) of the truth counts as agreeing with the global rotation


@dataclass
class PoseErrors:
    """Result of :func:`pose_errors`.

    Attributes
    ----------
    angles_deg : (M,) per-frame angle between the aligned estimate and the truth (deg).
    rotation : (3, 3) global rotation G with est ≈ true·G (after the hand flip if ``mirrored``).
    mirrored : whether the estimate is the mirror image of the truth.
    median_deg, p90_deg : summary statistics of ``angles_deg``.
    """

    angles_deg: np.ndarray
    rotation: np.ndarray
    mirrored: bool
    median_deg: float
    p90_deg: float


def _angles(rel: np.ndarray, g: np.ndarray, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # rel_i ≈ s_i g: the nearest s has the largest tr(rel_i gᵀ sᵀ); its angle comes from the rotation-matrix
    # distance (rotation_angle_deg), which resolves angles down to ~1e-14° where arccos of the trace cannot:
    # one float64 step of a trace near 3 (2⁻⁵¹) is already 1.2e-6°, so an exact pose scored a rounding-dependent error
    sg = np.einsum("sij,jk->sik", sym, g)
    tr = np.einsum("nij,sij->ns", rel, sg)
    best = np.argmax(tr, axis=1)
    return rotation_angle_deg(rel, sg[best]), best


def _rank(ang: np.ndarray) -> tuple[int, float]:
    """Sort key of an alignment: more frames within :data:`AGREE_DEG` first, then the smaller median."""
    return -int(np.sum(ang <= AGREE_DEG)), float(np.median(ang))


def _align(est: np.ndarray, true: np.ndarray, sym: np.ndarray, n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    rel = np.einsum("nji,njk->nik", true, est)  # trueᵀ·est ≈ s·G
    m = len(rel)
    cand_idx = np.unique(np.linspace(0, m - 1, min(n_candidates, m)).round().astype(int))
    g = rel[min(cand_idx, key=lambda i: _rank(_angles(rel, rel[i], sym)[0]))]
    for _ in range(4):  # refine: average the symmetry-reduced relative rotations of the agreeing frames
        ang, s_idx = _angles(rel, g, sym)
        keep = ang <= AGREE_DEG
        if keep.sum() < 3:  # too few agree: the better half
            keep = ang <= np.median(ang) + 1e-9
        reduced = np.einsum("nji,njk->nik", sym[s_idx[keep]], rel[keep])  # sᵀ·rel
        g = Rotation.from_matrix(reduced).mean().as_matrix()
    ang, _ = _angles(rel, g, sym)
    return g, ang


def _twin_poses(true: np.ndarray, projection_twin: np.ndarray | None) -> np.ndarray | None:
    """The twin poses ``TWIN·true_i·qᵀ`` for the first ``q`` of ``projection_twin``; None when it is None or empty."""
    if projection_twin is None or not len(projection_twin):
        return None
    q = np.asarray(projection_twin, np.float64).reshape(-1, 3, 3)[0]
    return np.einsum("ij,njk,lk->nil", TWIN, true, q)


def pose_errors(est: np.ndarray, true: np.ndarray, symmetry: np.ndarray | None = None, allow_mirror: bool = True,
                n_candidates: int = 64, projection_twin: np.ndarray | None = None) -> PoseErrors:
    """Per-frame pose errors after the best global rotation (and hand, and point-group operation).

    Parameters
    ----------
    est, true
        (M, 3, 3) estimated and true pose matrices (particle → lab, :mod:`tumblebench.simulator.orientation`).
    symmetry
        (S, 3, 3) rotations of the particle's point group in the true particle frame (default: identity only).
    allow_mirror
        Also try the mirror-image hand and keep the better.
    n_candidates
        Frames whose relative rotation is tried as the global rotation before refinement.
    projection_twin
        (R, 3, 3) rotations ``q`` with ``q·(−X)`` = ``X`` for the true atoms ``X`` (an achiral particle's
        ``mirror_rotations``; any one of them suffices): each frame may equally be at the twin pose
        ``TWIN·true_i·qᵀ`` (the same projected image); its error is that of the nearer of the two. None or
        empty: no twin.

    Returns
    -------
    PoseErrors
    """
    est = np.asarray(est, np.float64)
    true = np.asarray(true, np.float64)
    if est.shape != true.shape or est.ndim != 3 or est.shape[1:] != (3, 3) or len(est) == 0:
        raise TumblebenchError(f"pose_errors: need two (M, 3, 3) arrays of equal M, got {est.shape}, {true.shape}")
    sym = np.eye(3)[None] if symmetry is None else np.asarray(symmetry, np.float64).reshape(-1, 3, 3)
    twin = _twin_poses(true, projection_twin)
    best = None
    for mirrored in (False, True) if allow_mirror else (False,):
        e = mirror_poses(est) if mirrored else est
        g, ang = _align(e, true, sym, n_candidates)
        if twin is not None:
            for _ in range(3):  # per frame the nearer of the true pose and its twin under the current G; re-align
                a_true, _ = _angles(np.einsum("nji,njk->nik", true, e), g, sym)
                a_twin, _ = _angles(np.einsum("nji,njk->nik", twin, e), g, sym)
                g, ang = _align(e, np.where((a_twin < a_true)[:, None, None], twin, true), sym, n_candidates)
        if best is None or _rank(ang) < _rank(best.angles_deg):
            best = PoseErrors(ang, g, mirrored, float(np.median(ang)), float(np.percentile(ang, 90)))
    return best


def errors_at(est: np.ndarray, true: np.ndarray, rotation: np.ndarray, mirrored: bool,
              symmetry: np.ndarray | None = None, projection_twin: np.ndarray | None = None) -> np.ndarray:
    """Per-frame errors (deg) of ``est`` under a given global rotation and hand, e.g. those :func:`pose_errors`
    found for another estimate of the same frames (the best labelling of a set of candidates is judged so).

    Parameters
    ----------
    est
        (M, 3, 3) poses, or (M, K, 3, 3): K candidate poses per frame.
    true
        (M, 3, 3) true poses.
    rotation, mirrored
        The global rotation ``G`` and the hand (:class:`PoseErrors` ``rotation``, ``mirrored``).
    symmetry, projection_twin
        As for :func:`pose_errors`.

    Returns
    -------
    numpy.ndarray
        (M,) or (M, K) angles (deg) to the nearest symmetry mate (and twin) of the true pose.
    """
    est = np.asarray(est, np.float64)
    true = np.asarray(true, np.float64)
    cands = est if est.ndim == 4 else est[:, None]
    if cands.shape[0] != len(true) or cands.shape[2:] != (3, 3) or true.shape[1:] != (3, 3):
        raise TumblebenchError(f"errors_at: need (M, [K,] 3, 3) and (M, 3, 3) poses, got {est.shape}, {true.shape}")
    m, k = cands.shape[:2]
    e = cands.reshape(-1, 3, 3)
    if mirrored:
        e = mirror_poses(e)
    sym = np.eye(3)[None] if symmetry is None else np.asarray(symmetry, np.float64).reshape(-1, 3, 3)
    twin = _twin_poses(true, projection_twin)
    truths = [true] if twin is None else [true, twin]
    ang = np.min([_angles(np.einsum("nji,njk->nik", np.repeat(t, k, axis=0), e), rotation, sym)[0] for t in truths],
                 axis=0).reshape(m, k)
    return ang if est.ndim == 4 else ang[:, 0]


def mirror_poses(poses: np.ndarray) -> np.ndarray:
    """Poses of the mirror-image map ``V(x, y, −z)``: ``P·A·P`` with ``P = diag(1, 1, −1)``."""
    return np.einsum("ij,njk,kl->nil", MIRROR, np.asarray(poses, np.float64), MIRROR)
