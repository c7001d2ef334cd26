"""Ab initio 3D from unknown poses: global orientation search at low resolution with temporal continuity.

This module holds the ``"sphere"`` method (below); the tools both methods share (SO(3) grid, distinct peaks,
the Viterbi pass, Fourier cropping) are in :mod:`tumblebench.reconstruct.search`. The default method, ``"lattice"``, is
:mod:`tumblebench.reconstruct.lattice`: on aberration-corrected multislice frames only the lattice fringes carry
orientation, and the sphere method's featureless start cannot reach them.

No truth is read. For each of several random starts: begin from a featureless model (a sphere of the diameter
measured on the frames) with random poses, then alternate (1) a *global* search of every subset frame over a
quasi-uniform SO(3) grid (super-Fibonacci, Alexa 2022) by normalised cross-correlation with the model's
projections — one matrix product per iteration — and (2) a reconstruction from the chosen poses, raising the
resolution limit every iteration. What is special about a Brownian series is used in the pose choice: each
frame keeps its ``top_k`` best grid poses and a Viterbi pass picks the path through them that maximises the
correlation minus a penalty on the angular step between successive frames (rotational diffusion makes
successive poses close). The start whose final model explains the frames best wins; disagreement between
starts (median pose difference after the best global rotation) is logged as the sign of a local optimum.
Finally every frame (not only the subset) is assigned by the same global search + Viterbi against the winning
model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.branches import _reconstruct_small
from tumblebench.reconstruct.lattice import LatticeConfig, LatticePoses
from tumblebench.reconstruct.poses import AbInitioPoses
from tumblebench.reconstruct.projector import (
    Band,
    image_from_ft,
    image_ft,
    prepare_reference,
    project_band,
    shift_phases,
    soft_sphere,
)
from tumblebench.reconstruct.search import (
    distinct_peaks,
    fourier_crop,
    fourier_crop_volume,
    so3_grid,
    viterbi,
)
from tumblebench.simulator.errors import require
from tumblebench.stages import PoseInput

log = logging.getLogger("tumblebench.reconstruct")


@dataclass(frozen=True)
class AbInitioConfig:
    """Configuration of the ab initio stage.

    Attributes
    ----------
    method
        ``"lattice"``: orientations from the crystal lattice's fringes (:mod:`reconstruct.lattice`, configured by
        ``lattice``); ``"sphere"``: the global search from a featureless model described here (the other
        fields). On aberration-corrected multislice frames of a Pt particle only the lattice method finds the
        orientations.
    lattice
        :class:`tumblebench.reconstruct.lattice.LatticeConfig` (TOML table ``[abinitio.lattice]``).
    box
        Box (pixels) the frames are Fourier-cropped to for the global search.
    subset
        Number of frames (evenly spaced in time) used to build the initial model.
    grid_size
        Number of rotations of the global SO(3) grid (20,000 ≈ 6° spacing).
    resolutions_A
        Resolution limit (Å) of each iteration of the model building; one iteration each.
    n_starts
        Independent random starts.
    top_k
        Candidate poses kept per frame for the temporal (Viterbi) pass.
    step_deg
        Expected rotation between successive frames (deg), sets the continuity penalty.
    continuity_weight
        Weight of the penalty (angle/step)² relative to the z-scored correlation; 0 disables continuity.
    mask_margin_A
        Soft spherical mask radius = diameter/2 + this margin (Å).
    ctf_min
        With a CTF, frequencies below the first where the mean |CTF| exceeds this are not searched.
    """

    method: str = "lattice"
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    box: int = 48
    subset: int = 2000
    grid_size: int = 20000
    resolutions_A: tuple[float, ...] = (8.0, 6.0, 5.0, 4.0, 3.5, 3.0, 2.7, 2.4, 2.4, 2.2, 2.2, 2.2)
    n_starts: int = 2
    top_k: int = 12
    step_deg: float = 5.0
    continuity_weight: float = 0.3
    mask_margin_A: float = 2.0
    ctf_min: float = 0.25

    def validate(self) -> None:
        require(self.method in ("lattice", "sphere"),
                f"abinitio.method = {self.method!r} must be 'lattice' or 'sphere'")
        self.lattice.validate()
        require(16 <= self.box <= 256 and self.box % 2 == 0, f"abinitio.box = {self.box} must be even, 16–256")
        require(self.subset >= 10, f"abinitio.subset = {self.subset} must be >= 10")
        require(self.grid_size >= 100, f"abinitio.grid_size = {self.grid_size} must be >= 100")
        require(len(self.resolutions_A) >= 1 and all(r > 0 for r in self.resolutions_A),
                "abinitio.resolutions_A must be a non-empty list of positive Å")
        require(self.n_starts >= 1, f"abinitio.n_starts = {self.n_starts} must be >= 1")
        require(self.top_k >= 1, f"abinitio.top_k = {self.top_k} must be >= 1")
        require(self.step_deg > 0, f"abinitio.step_deg = {self.step_deg} must be > 0")
        require(self.continuity_weight >= 0, "abinitio.continuity_weight must be >= 0")


def global_scores(model: np.ndarray, images_band: np.ndarray, band: Band, grid: np.ndarray,
                  ctf_band: np.ndarray | None = None, top_k: int = 12, chunk: int = 4000,
                  distinct_deg: float = 0.0, pool: int = 0):
    """Normalised correlation of every image with the model's projections at every grid pose.

    Parameters
    ----------
    model
        Map [z, y, x] of the search box.
    images_band
        complex (M, P) image transforms on ``band`` (CTF-multiplied if a CTF applies: the references are
        then multiplied by the mean CTF², ``ctf_band``).
    band
        Frequencies used.
    grid
        (G, 3, 3) rotations.
    ctf_band
        (P,) transfer applied to the references (e.g. mean CTF²), or None.
    top_k
        How many best poses to return per image.
    chunk
        Grid poses projected at a time.
    distinct_deg
        If > 0, the ``top_k`` returned are *distinct* peaks: of the ``pool`` best grid poses, greedily the best
        ones at least this angle (deg) from every pose already kept (non-maximum suppression). A correlation peak
        spans several grid poses, so without it the ``top_k`` best are a few neighbouring poses of a few peaks;
        with it a symmetric particle's equivalent poses (e.g. the 2 × 24 of a centrosymmetric cubic cluster in
        projection) are all candidates. Rows with fewer distinct peaks repeat their best (score −inf).
    pool
        Grid poses kept per image before the suppression (default ``8·top_k``).

    Returns
    -------
    (indices, zscores) or (indices, zscores, mean, sd)
        (M, top_k) grid indices (best first) and their correlations z-scored over the grid per image.
    """
    keep = top_k if distinct_deg <= 0 else max(pool or 8 * top_k, top_k)
    keep = min(keep, len(grid))
    ref = prepare_reference(model)
    x = np.concatenate([images_band.real, images_band.imag], axis=1).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    m = x.shape[0]
    g = grid.shape[0]
    s1 = np.zeros(m)
    s2 = np.zeros(m)
    best_val = np.full((m, keep), -np.inf, np.float32)
    best_idx = np.zeros((m, keep), np.int64)
    for s in range(0, g, chunk):
        refs = project_band(ref, grid[s:s + chunk], band)
        if ctf_band is not None:
            refs = refs * ctf_band
        r = np.concatenate([refs.real, refs.imag], axis=1).astype(np.float32)
        r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-30)
        cc = x @ r.T  # (M, chunk)
        s1 += cc.sum(axis=1)
        s2 += (cc.astype(np.float64) ** 2).sum(axis=1)
        allv = np.concatenate([best_val, cc], axis=1)
        part = np.argpartition(-allv, keep - 1, axis=1)[:, :keep]
        best_val = np.take_along_axis(allv, part, 1)
        best_idx = np.where(part < keep, np.take_along_axis(best_idx, np.minimum(part, keep - 1), 1),
                            part - keep + s)
    order = np.argsort(-best_val, axis=1)
    best_val = np.take_along_axis(best_val, order, 1)
    best_idx = np.take_along_axis(best_idx, order, 1)
    if distinct_deg > 0:
        out_idx = np.empty((m, top_k), np.int64)
        out_val = np.empty((m, top_k), np.float32)
        distinct_peaks(np.ascontiguousarray(grid, np.float64), best_idx, best_val,
                        float(np.cos(np.radians(distinct_deg))), out_idx, out_val)
        best_idx, best_val = out_idx, out_val
    mean = s1 / g
    sd = np.sqrt(np.maximum(s2 / g - mean**2, 1e-30))
    z = (best_val - mean[:, None]) / sd[:, None]
    return best_idx, z


def best_global_alignment(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median-robust global rotation G (and per-frame angles) such that a_i ≈ b_i G (poses of two runs)."""
    rel = np.einsum("nji,njk->nik", b, a)  # b_iᵀ a_i
    g = Rotation.from_matrix(rel).mean().as_matrix()
    for _ in range(3):
        d = np.einsum("nij,jk->nik", b, g)
        ang = np.degrees(np.arccos(np.clip((np.einsum("nij,nij->n", a, d) - 1) / 2, -1, 1)))
        keep = ang <= np.percentile(ang, 50) + 1e-9
        g = Rotation.from_matrix(rel[keep]).mean().as_matrix()
    d = np.einsum("nij,jk->nik", b, g)
    ang = np.degrees(np.arccos(np.clip((np.einsum("nij,nij->n", a, d) - 1) / 2, -1, 1)))
    return g, ang


def abinitio(boxes: np.ndarray, sampling: float, diameter_A: float, config: AbInitioConfig,
             rng: np.random.Generator, ctf_fn=None, progress=None, monitor=None,
             shifts_px: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Poses of every frame and a low-resolution model, from centred particle boxes alone (the ``sphere``
    method, :class:`SpherePoses`; the parameters and results of :func:`_sphere_abinitio` without the per-frame
    scores)."""
    poses, model, _, info = _sphere_abinitio(boxes, sampling, diameter_A, config, rng, ctf_fn, progress, monitor,
                                             shifts_px)
    return poses, model, info


def _sphere_abinitio(boxes: np.ndarray, sampling: float, diameter_A: float, config: AbInitioConfig,
                     rng: np.random.Generator, ctf_fn=None, progress=None, monitor=None,
                     shifts_px: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Poses of every frame and a low-resolution model, from centred particle boxes alone.

    Parameters
    ----------
    boxes
        (M, n, n) background-subtracted, approximately centred particle boxes in time order.
    sampling
        Å per pixel of ``boxes``.
    diameter_A
        Particle diameter estimated from the frames (Å): sets the starting sphere and the mask.
    config
        :class:`AbInitioConfig`.
    rng
        Seeded generator for the random starts.
    ctf_fn
        Optional callable ``(indices, shape, sampling) -> (len(indices), *shape)`` centred CTFs; None: no CTF.
    progress
        Optional callable ``(n_done)`` advanced once per iteration.
    shifts_px
        Optional (M, 2) RELION origins (pixels of ``boxes``) that re-centre the boxes (e.g. from tracking).
    monitor
        Optional callable ``(start, resolution_A, subset_indices, subset_poses, score)`` called after every
        iteration (for benchmarking the convergence against a known truth; never needed by the algorithm).

    Returns
    -------
    (poses, model, scores, info)
        (M, 3, 3) poses (arbitrary global frame), the model [z, y, x] at ``config.box`` pixels of size
        ``sampling·n/config.box``, (M,) each frame's z-scored correlation at its pose, and a dict of diagnostics
        (per-start scores, start agreement).
    """
    m, n, _ = boxes.shape
    ns = min(config.box, n)
    crop_sampling = sampling * n / ns
    small = fourier_crop(boxes, ns)
    small -= small.mean(axis=(1, 2), keepdims=True)
    if shifts_px is not None:
        full_band = Band.make(ns, r_max=ns)
        ft = full_band.take(image_ft(small)) * shift_phases(full_band, np.asarray(shifts_px) * ns / n)
        small = image_from_ft(full_band.put(ft))
    grid = so3_grid(config.grid_size)
    mask = soft_sphere(ns, diameter_A / 2 / crop_sampling + config.mask_margin_A / crop_sampling, 2.0)
    n_sub = min(config.subset, m)
    sub = np.unique(np.linspace(0, m - 1, n_sub).round().astype(int))
    stride = max(1, (m - 1) / max(len(sub) - 1, 1))
    step_sub = config.step_deg * np.sqrt(stride)
    ft_all = image_ft(small)
    ctf_small = None if ctf_fn is None else ctf_fn(np.arange(m), (ns, ns), crop_sampling)
    ctf_pad = None if ctf_fn is None else ctf_fn(sub, (2 * ns, 2 * ns), crop_sampling)

    # through a CTF only the band where it transfers carries linear information: ignore frequencies below
    # the radius where the mean |CTF| first exceeds ``ctf_min`` and keep every search band an annulus
    r_min = 1.0
    if ctf_small is not None:
        kx, ky = np.meshgrid(np.arange(ns) - ns // 2, np.arange(ns) - ns // 2)
        rr = np.rint(np.hypot(kx, ky)).astype(int).ravel()
        prof = np.bincount(rr, np.abs(ctf_small).mean(axis=0).ravel()) / np.bincount(rr)
        above = np.flatnonzero(prof[1:ns // 2] > config.ctf_min)
        r_min = float(above[0] + 1) if above.size else 1.0
        log.info("ab initio: CTF transfers above %.2f from %.2f Å on", config.ctf_min, ns * crop_sampling / r_min)

    def eff(res: float) -> float:
        return min(max(res, 2.05 * crop_sampling), ns * crop_sampling / (1.3 * r_min))

    def search(model, idx, res, step):
        band = Band.make(ns, r_max=ns * crop_sampling / res, r_min=r_min)
        img = band.take(ft_all[idx])
        cb = None
        if ctf_small is not None:
            c = band.take(ctf_small[idx])
            img = img * c
            cb = (c**2).mean(axis=0)
        ci, cz = global_scores(model, img, band, grid, cb, top_k=config.top_k)
        cands = grid[ci]
        path = viterbi(cands, cz, step, config.continuity_weight)
        rows = np.arange(len(idx))
        return cands[rows, path], cz[rows, path]

    starts = []
    for s in range(config.n_starts):
        # featureless start: the frames back-projected at random poses (a sphere-like blob whose small
        # random asymmetries differ between starts)
        rots = Rotation.random(len(sub), random_state=int(rng.integers(2**31))).as_matrix()
        res0 = eff(config.resolutions_A[0])
        model = _reconstruct_small(small[sub], rots, res0 / crop_sampling, mask, ctf_pad)
        score = 0.0
        for res in config.resolutions_A:
            res_eff = eff(res)
            rots, frame_scores = search(model, sub, res_eff, step_sub)
            score = float(frame_scores.mean())
            model = _reconstruct_small(small[sub], rots, res_eff / crop_sampling, mask, ctf_pad)
            if monitor is not None:
                monitor(s, res_eff, sub, rots, score)
            if progress is not None:
                progress(1)
        log.info("ab initio start %d: mean z-score %.3f", s, score)
        starts.append((score, rots, model, frame_scores))
    scores = [st[0] for st in starts]
    best = int(np.argmax(scores))
    agreement = []
    for s in range(len(starts)):
        if s != best:
            _, ang = best_global_alignment(starts[best][1], starts[s][1])
            agreement.append(float(np.median(ang)))
    if agreement:
        log.info("ab initio: median pose difference of other starts to the best after global rotation: %s deg",
                 ", ".join(f"{a:.1f}" for a in agreement))
    model = starts[best][2]
    if len(sub) == m:
        poses, score, frame_scores = starts[best][1], scores[best], starts[best][3]
    else:  # frames outside the subset: the same global search + continuity against the winning model
        res_final = eff(config.resolutions_A[-1])
        poses, frame_scores = search(model, np.arange(m), res_final, config.step_deg)
        score = float(frame_scores.mean())
    info = {"start_scores": scores, "best_start": best, "start_disagreement_deg": agreement,
            "final_score": score, "search_pixel_size_A": crop_sampling}
    return poses, model, np.asarray(frame_scores, np.float64), info


class SpherePoses(AbInitioPoses):
    """The ``sphere`` pose estimator: global search from a featureless start (module docstring).

    Parameters
    ----------
    config
        :class:`AbInitioConfig` (its ``step_deg`` and ``continuity_weight`` are the continuity penalty).
    """

    name = "sphere"

    def __init__(self, config: AbInitioConfig | None = None):
        self.config = config or AbInitioConfig(method="sphere")
        super().__init__(self.config.step_deg, self.config.continuity_weight)

    def steps(self) -> int:
        """One step per start and resolution."""
        return self.config.n_starts * len(self.config.resolutions_A)

    def _estimate(self, data: PoseInput) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        rng = np.random.default_rng(data.seed)
        poses, _, scores, info = _sphere_abinitio(data.boxes, data.sampling, data.diameter_A, self.config, rng,
                                                  ctf_fn=data.ctf, progress=data.progress,
                                                  shifts_px=data.shifts_px)
        return poses, np.asarray(data.shifts_px, np.float64), scores, info


def pose_estimator(config: AbInitioConfig) -> AbInitioPoses:
    """The built-in pose estimator that ``config.method`` names (``lattice`` or ``sphere``), configured."""
    if config.method == "lattice":
        return LatticePoses(config.lattice, config.step_deg, config.continuity_weight)
    return SpherePoses(config)


def reassign(boxes: np.ndarray, sampling: float, shifts_px: np.ndarray, volume: np.ndarray,
             config: AbInitioConfig, resolution_A: float, ctf_fn=None) -> np.ndarray:
    """Global re-search of every frame against a (refined) map, with the temporal continuity pass.

    Frames that local refinement left in a wrong basin (e.g. a pseudo-symmetric mate) jump to the best pose
    of the whole SO(3) grid that is consistent with their neighbours in time.

    Parameters
    ----------
    boxes
        (M, n, n) particle boxes.
    sampling
        Å per pixel of ``boxes``.
    shifts_px
        (M, 2) current origins (pixels).
    volume
        Map [z, y, x] of ``n`` voxels (the boxes' pixel size).
    config
        :class:`AbInitioConfig` (box, grid, top_k, continuity).
    resolution_A
        Resolution limit of the search (Å), bounded by the search box's Nyquist.
    ctf_fn
        Optional CTF callable.

    Returns
    -------
    numpy.ndarray
        (M, 3, 3) poses (grid poses; refine them locally afterwards).
    """
    m, n, _ = boxes.shape
    ns = min(config.box, n)
    crop_sampling = sampling * n / ns
    small = fourier_crop(boxes, ns)
    full_band = Band.make(ns, r_max=ns)
    ft = full_band.put(full_band.take(image_ft(small)) * shift_phases(full_band, np.asarray(shifts_px) * ns / n))
    vol_small = fourier_crop_volume(volume, ns)
    res = max(resolution_A, 2.05 * crop_sampling)
    band = Band.make(ns, r_max=ns * crop_sampling / res, r_min=1.0)
    img = band.take(ft)
    cb = None
    if ctf_fn is not None:
        c = band.take(ctf_fn(np.arange(m), (ns, ns), crop_sampling))
        img = img * c
        cb = (c**2).mean(axis=0)
    grid = so3_grid(config.grid_size)
    ci, cz = global_scores(vol_small, img, band, grid, cb, top_k=config.top_k)
    path = viterbi(grid[ci], cz, config.step_deg, config.continuity_weight)
    return grid[ci[np.arange(m), path]]
