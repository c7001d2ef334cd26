"""The rotations under which the particle's map looks the same, found from the data alone.

A frame of a (near-)symmetric particle correlates almost equally well with its true pose ``R`` and with ``R·g``
for every operation ``g`` of the particle's rotation group. So the relative rotations ``Rᵢᵀ Rⱼ`` between a frame's
near-equal candidate poses cluster at the group's operations (the other pairs scatter). Each cluster centre ``g``
is checked on the two half maps: the correlation of half 1 with half 2 rotated by ``g``, relative to the
correlation without rotation, over the lattice-fringe band, must reach ``accept``. A centre is accepted only if every
element of the group it generates with the operations accepted before passes the same check (closure by breadth-
first composition: each element is reached by a shortest product, so the centres' small errors do not add up).

The pose continuity of a Brownian series is then measured modulo this group (:func:`tumblebench.reconstruct.search.
viterbi` with ``group``): a frame may take any of its symmetry mates without a penalty, a run of frames on a
different mate no longer pulls its neighbours, and a particle with no symmetry gets the identity alone.

Frames of a symmetric particle may each sit on any of its symmetry mates. The projections do not care, but the map
does: half maps whose frames spread over the mates agree only if the map's origin is the particle's centre of
symmetry to a fraction of an atom spacing. So the group is also read from the steps of the pose trajectory (a
run of frames that changed mate steps by an operation, :func:`group_from_steps`), and the poses are put back on
one mate by the path of least steps through the mates (:func:`one_mate`); the runs between pose jumps are joined
across the gaps by Brownian continuity, so a slide of wrong poses between two mates does not break the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.branches import lowpass_volume
from tumblebench.reconstruct.search import viterbi
from tumblebench.simulator.orientation import TWIN, rotation_angle_deg

#: least members of a cluster of trajectory steps (:func:`group_from_steps`)
STEP_CLUSTER_MIN = 5
#: averaging rounds of :func:`exact_group`
EXACT_ITERATIONS = 10
#: least frames of a run between pose jumps that :func:`one_mate` puts on one mate as a whole
ANCHOR_MIN_FRAMES = 10
#: runs before it that a run may be joined to (:func:`anchor_mates`)
ANCHOR_LOOKBACK = 6

#: array axes are [z, y, x]: a rotation ``g`` of (x, y, z) acts on array indices as ``P g P``
_P = np.eye(3)[::-1]


@dataclass(frozen=True)
class GroupConfig:
    """Parameters of :func:`find_group` (defaults are those measured on the robustness matrix).

    Attributes
    ----------
    near
        A candidate is near-equal to a frame's best when its correlation is within ``1 − near`` of the best's
        (relative).
    min_angle_deg
        Relative rotations smaller than this (deg) are the same pose found twice, not a mate.
    radius_deg
        Cluster radius of the relative rotations (deg).
    min_frames
        A cluster needs at least ``max(10, min_frames · M)`` members (M frames).
    accept
        Least rotated-to-unrotated half-map correlation of an operation and of every element of its closure.
    band_A
        Band (finest, coarsest; Å) of the half-map check: the lattice fringes.
    merge_deg
        Two products closer than this (deg) are the same group element.
    max_order
        Largest group accepted (the icosahedron's 60).
    max_rejected
        Stop after this many rejected centres (they are tried densest first; the group's operations are the
        densest clusters).
    """

    near: float = 0.9
    min_angle_deg: float = 15.0
    radius_deg: float = 4.0
    min_frames: float = 0.01
    accept: float = 0.5
    band_A: tuple[float, float] = (1.2, 3.0)
    merge_deg: float = 15.0
    max_order: int = 60
    max_rejected: int = 20


def relative_rotations(cands: np.ndarray, scores: np.ndarray, near: float, min_angle_deg: float) -> np.ndarray:
    """``Cᵢ,bestᵀ Cᵢ,ⱼ`` and its inverse for every near-equal candidate ``j`` of every frame ``i``.

    Parameters
    ----------
    cands
        (M, K, 3, 3) candidate poses per frame.
    scores
        (M, K) their correlations (−inf: an empty slot).
    near, min_angle_deg
        As :class:`GroupConfig`.

    Returns
    -------
    numpy.ndarray
        (L, 3, 3) relative rotations at least ``min_angle_deg`` from the identity.
    """
    m = len(scores)
    best = np.argmax(scores, axis=1)
    top = scores[np.arange(m), best]
    close = (scores >= (top - (1.0 - near) * np.abs(top))[:, None]) & np.isfinite(scores)
    close[np.arange(m), best] = False
    i, j = np.nonzero(close)
    return _turns_and_inverses(cands[i, best[i]], cands[i, j], min_angle_deg)


def _turns_and_inverses(a: np.ndarray, b: np.ndarray, min_angle_deg: float) -> np.ndarray:
    """``Aᵀ B`` of the pairs of rotations (L, 3, 3) at least ``min_angle_deg`` from the identity, and their inverses."""
    rel = np.einsum("nji,njk->nik", a, b)
    rel = rel[rotation_angle_deg(rel, np.eye(3)) >= min_angle_deg]
    return np.concatenate([rel, np.transpose(rel, (0, 2, 1))])


def cluster_centres(rel: np.ndarray, radius_deg: float, min_count: int) -> list[tuple[np.ndarray, int]]:
    """Centres (mean rotations) of the densest clusters of ``rel`` and their member counts, densest first, at least
    ``2·radius_deg`` apart, each with at least ``min_count`` members within ``radius_deg``."""
    if len(rel) == 0:
        return []
    q = Rotation.from_matrix(rel).as_quat()
    tree = cKDTree(np.concatenate([q, -q]))  # q and −q are the same rotation
    chord = 2.0 * np.sin(np.radians(radius_deg) / 4.0)  # |q1 − q2| at a rotation angle of radius_deg
    members = [np.asarray(b) % len(q) for b in tree.query_ball_point(q, chord)]
    count = np.array([len(b) for b in members])
    centres: list[tuple[np.ndarray, int]] = []
    covered = np.zeros(len(q), bool)  # within 2·radius_deg of a centre already taken
    for i in np.argsort(-count, kind="stable"):
        if count[i] < min_count:
            break
        if covered[i]:
            continue
        sel = q[members[i]]
        mean = Rotation.from_quat(sel * np.sign(sel @ q[i])[:, None]).mean()
        centres.append((mean.as_matrix(), int(count[i])))
        near = tree.query_ball_point(mean.as_quat(), 2.0 * np.sin(np.radians(2.0 * radius_deg) / 4.0))
        covered[np.asarray(near, np.int64) % len(q)] = True
    return centres


def close_group(ops: list[np.ndarray], merge_deg: float, max_order: int) -> np.ndarray | None:
    """The group generated by ``ops``: breadth-first products, elements within ``merge_deg`` merged.

    Returns
    -------
    numpy.ndarray or None
        (G, 3, 3), the identity first; None when it would exceed ``max_order`` elements.
    """
    group = [np.eye(3)]
    frontier = list(ops)
    while frontier:
        x = frontier.pop(0)
        if rotation_angle_deg(np.array(group), x).min() < merge_deg:
            continue
        group.append(x)
        if len(group) > max_order:
            return None
        frontier += [x @ g for g in group] + [g @ x for g in group]
    return np.array(group)


class HalfMapCheck:
    """Correlation of half 1 with half 2 rotated by ``g``, relative to that without rotation.

    Parameters
    ----------
    half1, half2
        (n, n, n) half maps [z, y, x].
    sampling
        Å per voxel.
    radius_A
        Radius (Å) of the spherical mask around the box centre.
    band_A
        (finest, coarsest) Å of the band-pass.
    """

    def __init__(self, half1: np.ndarray, half2: np.ndarray, sampling: float, radius_A: float,
                 band_A: tuple[float, float]):
        n = half1.shape[0]
        r = np.linalg.norm(np.indices((n,) * 3) - n // 2, axis=0) * sampling
        mask = (r < radius_A).astype(np.float32)

        def bandpass(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, np.float32)
            return lowpass_volume(v, band_A[0] / sampling) - lowpass_volume(v, band_A[1] / sampling)

        inside = np.nonzero(mask)
        self._b1 = bandpass(half1)[inside]  # the correlation runs over the mask's voxels only
        self._b2 = bandpass(half2) * mask
        self._centre = np.full((3, 1), float(n // 2))
        self._offsets = np.array(inside, np.float64) - self._centre
        self._zero = self._corr(np.eye(3))

    def _corr(self, g: np.ndarray) -> float:
        v = map_coordinates(self._b2, (_P @ g @ _P) @ self._offsets + self._centre, order=1)
        den = float(np.linalg.norm(self._b1) * np.linalg.norm(v))
        return float(np.dot(self._b1, v)) / den if den > 0 else 0.0

    def __call__(self, g: np.ndarray) -> float:
        """Rotated-to-unrotated correlation ratio of rotation ``g`` (1: the maps look the same under ``g``)."""
        return self._corr(g) / self._zero if self._zero > 0 else 0.0


def find_group(cands: np.ndarray, scores: np.ndarray, half1: np.ndarray, half2: np.ndarray, sampling: float,
               radius_A: float, config: GroupConfig | None = None) -> tuple[np.ndarray, dict]:
    """The particle's rotation group from the frames' candidate poses and the two half maps.

    Parameters
    ----------
    cands
        (M, K, 3, 3) candidate poses per frame (e.g. the global search's).
    scores
        (M, K) their correlations with the frame's half map.
    half1, half2
        (n, n, n) half maps [z, y, x] in the candidates' frame.
    sampling
        Å per voxel.
    radius_A
        Mask radius of the check (Å): the particle's radius and a margin.
    config
        :class:`GroupConfig`.

    Returns
    -------
    (group, info)
        (G, 3, 3) rotations, the identity first (poses ``R`` and ``R·g`` are the same view of the map), and a
        summary: number of clusters, the check's ratio of each tried centre and what became of it.
    """
    config = config or GroupConfig()
    rel = relative_rotations(cands, scores, config.near, config.min_angle_deg)
    centres = cluster_centres(rel, config.radius_deg, max(10, int(config.min_frames * len(scores))))
    group, info = _grow_group(centres, HalfMapCheck(half1, half2, sampling, radius_A, config.band_A), config)
    return group, {"relative_rotations": len(rel), "clusters": len(centres)} | info


def _grow_group(centres: list[tuple[np.ndarray, int]], check: HalfMapCheck, config: GroupConfig
                ) -> tuple[np.ndarray, dict]:
    """The group of the cluster ``centres`` (densest first) that pass ``check`` with their closures (each closure
    made exact by :func:`exact_group` before its elements are checked)."""
    group = np.eye(3)[None]
    tried: list[tuple[int, float, str]] = []  # (cluster members, check ratio, outcome)
    for g, count in centres:
        if sum(t[2] != "accepted" for t in tried) >= config.max_rejected:
            break
        if rotation_angle_deg(group, g).min() < config.merge_deg:
            continue
        ratio = check(g)
        outcome = "rejected"
        if ratio >= config.accept:
            closed = close_group([*group, g], config.merge_deg, config.max_order)
            if closed is None:
                outcome = f"closure exceeds {config.max_order}"
            else:
                closed = exact_group(closed)
                new = [x for x in closed if rotation_angle_deg(group, x).min() >= config.merge_deg]
                worst = min(check(x) for x in new)
                if worst >= config.accept:
                    group = closed
                    outcome = "accepted"
                else:
                    outcome = f"closure element at {worst:.2f}"
        tried.append((count, round(ratio, 3), outcome))
    return group, {"tried": tried, "order": len(group)}


def exact_group(group: np.ndarray) -> np.ndarray:
    """The nearest closed group to ``group`` (G, 3, 3; the identity first) whose elements are a few degrees off.

    In an exact group ``g_k = g_aᵀ·g_(a·k)`` for every element ``a`` (``a·k`` the element nearest to ``g_a·g_k``);
    each element is replaced by the mean of those G estimates, :data:`EXACT_ITERATIONS` times, so the elements'
    independent errors average out over the group instead of adding up along products."""
    g = np.asarray(group, np.float64).copy()
    if len(g) == 1:
        return g
    for _ in range(EXACT_ITERATIONS):
        prod = np.einsum("aij,kjl->akil", g, g)  # g_a·g_k
        tr = np.einsum("akij,bij->akb", prod, g)
        mul = tr.argmax(axis=2)  # the element nearest to each product
        est = np.einsum("aji,akjl->kail", g, g[mul])  # for each k: g_aᵀ·g_(a·k), over a
        g = np.array([Rotation.from_matrix(e).mean().as_matrix() for e in est])
    return g


def step_rotations(poses: np.ndarray, min_angle_deg: float) -> np.ndarray:
    """``Pᵢᵀ Pᵢ₊₁`` of successive poses at least ``min_angle_deg`` from the identity, and their inverses (L, 3, 3).

    A run of frames on another symmetry mate of a particle (poses ``P·g``) begins and ends with such a step at
    ``g`` or its inverse (times a Brownian step of a few degrees)."""
    poses = np.asarray(poses, np.float64)
    return _turns_and_inverses(poses[:-1], poses[1:], min_angle_deg)


def group_from_steps(poses: np.ndarray, half_maps: Callable[[], tuple[np.ndarray, np.ndarray]], sampling: float,
                     radius_A: float, config: GroupConfig | None = None) -> tuple[np.ndarray, dict]:
    """The particle's rotation group from the steps of a pose trajectory and the two half maps.

    As :func:`find_group`, with the clusters of :func:`step_rotations` (larger than ``config.min_angle_deg``) in
    place of the candidates' relative rotations; a cluster needs :data:`STEP_CLUSTER_MIN` members (random steps
    of a few hundred jumps almost never put that many within ``config.radius_deg`` of each other).

    Parameters
    ----------
    poses
        (M, 3, 3) poses of the frames in time order.
    half_maps
        Returns the two half maps (as :func:`find_group`'s); called only when the steps form a cluster.
    sampling, radius_A, config
        As :func:`find_group`.
    """
    config = config or GroupConfig()
    rel = step_rotations(poses, config.min_angle_deg)
    centres = cluster_centres(rel, config.radius_deg, STEP_CLUSTER_MIN)
    info = {"steps": len(rel) // 2, "clusters": len(centres)}
    if not centres:
        return np.eye(3)[None], info | {"tried": [], "order": 1}
    group, grown = _grow_group(centres, HalfMapCheck(*half_maps(), sampling, radius_A, config.band_A), config)
    return group, info | grown


def one_mate(poses: np.ndarray, group: np.ndarray, step_deg: float, jump_deg: float) -> np.ndarray:
    """The poses put on one symmetry mate: ``Pᵢ·gᵢ`` with ``gᵢ`` of ``group`` (G, 3, 3; the identity first).

    The trajectory is cut where successive poses are more than ``jump_deg`` (deg) apart; the runs of at least
    :data:`ANCHOR_MIN_FRAMES` frames are anchors, each put on one mate by :func:`anchor_mates` (continuity across
    the gaps between anchors, a run of wrong poses left out). The other frames take the mates of the path of
    least summed squared steps (:func:`~tumblebench.reconstruct.search.viterbi`, in units of ``step_deg``) through
    the anchors' mates. A trajectory that stays on one mate is returned as it is."""
    poses = np.asarray(poses, np.float64)
    group = np.asarray(group, np.float64)
    if len(group) == 1:
        return poses.copy()
    m = len(poses)
    cut = np.flatnonzero(rotation_angle_deg(poses[:-1], poses[1:]) > jump_deg) + 1
    runs = np.stack([np.r_[0, cut], np.r_[cut, m]], axis=1)
    runs = runs[runs[:, 1] - runs[:, 0] >= ANCHOR_MIN_FRAMES]
    mates = np.einsum("nij,gjk->ngik", poses, group)
    keep = np.zeros(mates.shape[:2])
    for (lo, hi), g in anchor_mates(mates, runs, step_deg, jump_deg).items():
        keep[lo:hi] = -np.inf
        keep[lo:hi, g] = 0.0
    keep[:, 0] += 1e-9  # of paths with equal steps (the whole trajectory on another mate), the frames' own poses
    path = viterbi(mates, keep, step_deg, 1.0)
    return mates[np.arange(m), path]


def anchor_mates(mates: np.ndarray, runs: np.ndarray, step_deg: float, jump_deg: float
                 ) -> dict[tuple[int, int], int]:
    """One mate per run of frames, by Brownian continuity across the gaps between runs.

    Maximises −Σ (θ/``step_deg``)²/k over successive kept runs (θ the angle between the last pose of one and the
    first of the next or its projection twin ``TWIN·P``, whichever is nearer; k the frames' steps between them: a
    Brownian angle grows as √k) minus the frames of the runs left out. The twin (the image turned 180° about the
    beam: the same image of a centrosymmetric particle) is where the lattice labelling leaves whole runs; it is
    no rotation mate, and the run keeps it. A run of wrong poses that are no mate of the right ones (a slide
    from one mate to another) is left out instead of breaking the chain, so the mates on its two sides are still
    compared directly. Each run is joined to one of the :data:`ANCHOR_LOOKBACK` runs before it. A join that no
    mate makes continuous (θ > ``jump_deg``·√k at every mate: the mirror twin of an achiral particle without a
    centre of symmetry, or a group the particle only nearly has) tells nothing of the mates: the run after it
    keeps its own poses, at the cost of a join at that bound.

    Parameters
    ----------
    mates
        (M, G, 3, 3) poses of the frames at every mate (``Pᵢ·g``; the identity first).
    runs
        (A, 2) [first, end) frames of the runs, in time order.
    step_deg
        Typical step between successive frames (deg).
    jump_deg
        Largest step between successive frames of a run (deg).

    Returns
    -------
    dict
        ``(first, end) -> mate index`` of the kept runs.
    """
    a = len(runs)
    if a == 0:
        return {}
    frames = (runs[:, 1] - runs[:, 0]).astype(np.float64)
    before = np.r_[0.0, np.cumsum(frames)]  # frames of the runs before run i: before[i]
    best = np.empty((a, mates.shape[1]))
    came = {}
    for i, (lo, _) in enumerate(runs):
        best[i] = -before[i]  # the first run kept: all before it left out
        best[i, 0] += 1e-9
        twins = TWIN @ mates[lo]  # (G, 3, 3): the projection twins of run i's first mates
        for j in range(max(0, i - ANCHOR_LOOKBACK), i):
            end = runs[j, 1] - 1
            # (G, G): mate of j, mate of i (or its projection twin, whichever is nearer)
            angle = np.minimum(rotation_angle_deg(mates[end][:, None], mates[lo][None]),
                               rotation_angle_deg(mates[end][:, None], twins[None]))
            cost = (angle / step_deg) ** 2 / (lo - end)
            if angle.min() > jump_deg * np.sqrt(lo - end):  # no mate continues run j: a break, run i as it is
                cost = np.full_like(cost, np.inf)
                cost[:, 0] = (jump_deg / step_deg) ** 2
            total = best[j][:, None] - cost - (before[i] - before[j + 1])
            better = total.max(axis=0) > best[i]
            best[i] = np.where(better, total.max(axis=0), best[i])
            for g in np.flatnonzero(better):
                came[i, int(g)] = (j, int(total[:, g].argmax()))
    last = before[-1] - before[1:]  # frames of the runs after run i
    i = int(np.argmax(best.max(axis=1) - last))
    g = int(best[i].argmax())
    out = {(int(runs[i, 0]), int(runs[i, 1])): g}
    while (i, g) in came:
        i, g = came[i, g]
        out[int(runs[i, 0]), int(runs[i, 1])] = g
    return out
