"""Ab initio 3D from unknown poses: global orientation search at low resolution with temporal continuity.

This module holds the ``"sphere"`` method (below); the tools both methods share (SO(3) grid, distinct peaks,
the Viterbi pass, Fourier cropping) are in :mod:`tumblebench.reconstruct.search`. The default method, ``"lattice"``, is
:mod:`tumblebench.reconstruct.lattice`: on aberration-corrected multislice frames only the lattice fringes carry
orientation, and the sphere method's featureless start cannot reach them (default series after refinement:
127° median pose error, 1.85° with the lattice method).

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
import scipy.fft
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.lattice import LatticeConfig
from tumblebench.reconstruct.projector import (
    Band,
    Reconstructor,
    image_from_ft,
    image_ft,
    prepare_reference,
    project_band,
    shift_phases,
    soft_sphere,
)
from tumblebench.reconstruct.search import distinct_peaks, fourier_crop, fourier_crop_volume, so3_grid, viterbi
from tumblebench.simulator.errors import require

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
        orientations (default series: median pose error 127° with ``"sphere"``).
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
    distinct_deg
        The candidates are distinct correlation peaks at least this far apart (deg; 0: the ``top_k`` best grid
        poses, which crowd around a few peaks). A symmetric particle has many equally good poses per frame; the
        continuous path through them exists only if every one of them is a candidate of every frame.
    candidate_pool
        Best grid poses per frame from which the distinct peaks are taken.
    step_deg
        Expected rotation between successive frames (deg), sets the continuity penalty.
    continuity_weight
        Weight of the penalty (angle/step)² relative to the z-scored correlation; 0 disables continuity.
    mask_margin_A
        Soft spherical mask radius = diameter/2 + this margin (Å).
    fill_iter
        Without a CTF: iterations that fill the unmeasured part of each model's transform under positivity and
        the mask (:func:`_fill_unmeasured`); 0 clips the map at zero once instead.
    keep_previous_from_A
        At iterations whose resolution limit is this (Å) or finer, each frame's previous pose is a candidate of
        the continuity pass too (0: never). Earlier, the previous path's continuity would outweigh the new
        model's evidence and freeze the first guess.
    ctf_min
        With a CTF, frequencies below the first where the mean |CTF| exceeds this are not searched.
    local_from_A
        At iterations whose resolution limit is finer than this, the grid poses are polished by a local
        hill-climbing search (which breaks the grid's ~6° granularity) before the model is rebuilt
        (0: never; without half sets it can drift into a self-consistent wrong model).
    """

    method: str = "lattice"
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    box: int = 48
    subset: int = 2000
    grid_size: int = 20000
    resolutions_A: tuple[float, ...] = (8.0, 6.0, 5.0, 4.0, 3.5, 3.0, 2.7, 2.4, 2.4, 2.2, 2.2, 2.2)
    n_starts: int = 2
    top_k: int = 12
    distinct_deg: float = 0.0
    candidate_pool: int = 0
    step_deg: float = 5.0
    continuity_weight: float = 0.3
    mask_margin_A: float = 2.0
    local_from_A: float = 0.0
    ctf_min: float = 0.25
    fill_iter: int = 0
    keep_previous_from_A: float = 0.0

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
        require(self.distinct_deg >= 0 and self.candidate_pool >= 0 and self.fill_iter >= 0
                and self.keep_previous_from_A >= 0,
                "abinitio.distinct_deg, candidate_pool, fill_iter and keep_previous_from_A must be >= 0")


def _lowpass_volume(vol: np.ndarray, resolution_px: float) -> np.ndarray:
    n = vol.shape[0]
    ft = scipy.fft.rfftn(vol, workers=-1)
    k = [np.fft.fftfreq(n) * n] * 2 + [np.fft.rfftfreq(n) * n]
    kz, ky, kx = np.meshgrid(*k, indexing="ij", sparse=True)
    r = np.sqrt(kz**2 + ky**2 + kx**2)
    kc = n / resolution_px
    w = np.clip((kc - r) / 2.0 + 0.5, 0, 1)
    return scipy.fft.irfftn(ft * (0.5 - 0.5 * np.cos(np.pi * w)), s=vol.shape, workers=-1).astype(np.float32)


def global_scores(model: np.ndarray, images_band: np.ndarray, band: Band, grid: np.ndarray,
                  ctf_band: np.ndarray | None = None, top_k: int = 12, chunk: int = 4000,
                  distinct_deg: float = 0.0, pool: int = 0, return_stats: bool = False):
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
    return_stats
        Also return the mean and standard deviation (M,) of each image's correlations over the grid (to z-score
        other poses alike).

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
    return (best_idx, z, mean, sd) if return_stats else (best_idx, z)


def _reconstruct_small(images: np.ndarray, rots: np.ndarray, res_px: float, mask: np.ndarray,
                       ctf: np.ndarray | None, fill_iter: int = 0) -> np.ndarray:
    n = images.shape[-1]
    rec = Reconstructor(n, pad=2)
    rec.insert(images, rots, ctf=ctf, r_max=n / res_px)
    vol = rec.reconstruct(tau=0.05)
    vol = _lowpass_volume(vol, res_px)
    if ctf is None:  # linear projections of a positive potential: positivity is a valid constraint
        if fill_iter > 0:
            return _fill_unmeasured(vol, rec.weight, rec.pad, mask, res_px, fill_iter)
        return np.maximum(vol, 0) * mask
    # through a CTF (and the non-linear contrast of a strong phase object) the low-resolution map need not be
    # positive: only the mask applies
    return vol * mask


def _fill_unmeasured(vol: np.ndarray, weight: np.ndarray, pad: int, mask: np.ndarray, res_px: float,
                     n_iter: int, level: float = 0.1, keep_measured: bool = False) -> np.ndarray:
    """Fill the Fourier region no slice sampled by alternating projections (positivity and support in real
    space, the measured transform where it was measured).

    A Brownian series of a few hundred frames sees its particle from a cap of beam directions only, which
    leaves a double cone of its 3D transform unmeasured (zero after the Wiener division). Clipping such a map
    at zero once (the old constraint) puts the clipped ringing's transform into the measured region too and
    so corrupts the data; these iterations keep the measured transform and let the constraints fill only the
    rest (the missing-wedge filling of tomography). With ``keep_measured`` the result carries the measured
    transform exactly (the constraints' last pass changes only the unmeasured part), otherwise it is the
    constrained (positive) map.
    """
    n = vol.shape[0]
    nn = weight.shape[0]
    k = (np.arange(n) - n // 2) * pad + nn // 2  # unpadded frequencies on the padded (centred) grid
    w = weight[np.ix_(k, k, k)]
    pos = w[w > 0]
    measured = scipy.fft.ifftshift(w > level * (pos.mean() if pos.size else 1.0))
    f_meas = scipy.fft.fftn(vol, workers=-1)
    v = np.maximum(vol, 0) * mask
    data = vol
    for _ in range(n_iter):
        f = scipy.fft.fftn(v, workers=-1)
        f[measured] = f_meas[measured]
        data = scipy.fft.ifftn(f, workers=-1).real
        v = np.maximum(data, 0) * mask
    return _lowpass_volume((data if keep_measured else v).astype(np.float32), res_px) * mask


def _cc(ref, x: np.ndarray, band: Band, cands: np.ndarray, ctf: np.ndarray | None = None) -> np.ndarray:
    """Normalised correlations (M, K) of images ``x`` (M, P) with projections at candidate poses (M, K, 3, 3)."""
    from tumblebench.reconstruct._gridding_kernels import score_candidates

    m, k = cands.shape[:2]
    out = np.empty((m, k))
    c = np.ones((m, band.kx.size), np.float32) if ctf is None else np.ascontiguousarray(ctf, np.float32)
    xx = np.ascontiguousarray(x, np.complex64)
    score_candidates(ref.vft, np.ascontiguousarray(cands, np.float64), band.kx, band.ky, ref.pad, xx, c, out)
    nrm = np.sqrt((np.abs(xx) ** 2).sum(axis=1))
    return out / np.maximum(nrm, 1e-30)[:, None]


def _angle_deg(r: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def _block_op(ref, x: np.ndarray, band: Band, poses: np.ndarray, grid: np.ndarray, ctf: np.ndarray | None,
              polish: bool, chunk: int = 1000) -> tuple[np.ndarray, float, np.ndarray]:
    """The rotation S (poses·S) that best fits a block of frames to ``ref``: (S, angle of S, per-frame gain).

    The per-frame gain is cc(pose·S) − cc(pose): its sum over the block is the evidence for S.
    """
    tot = np.zeros(len(grid))
    for s in range(0, len(grid), chunk):
        cands = np.einsum("nij,gjk->ngik", poses, grid[s:s + chunk])
        tot[s:s + chunk] = _cc(ref, x, band, cands, ctf).sum(axis=0)
    op = grid[int(np.argmax(tot))]
    if polish:
        op = _polish_op(ref, x, band, poses, op, ctf)
    return op, float(_angle_deg(op)), _gain(ref, x, band, poses, op, ctf)


def _gain(ref, x: np.ndarray, band: Band, poses: np.ndarray, op: np.ndarray, ctf: np.ndarray | None) -> np.ndarray:
    """Per-frame gain cc(pose·op) − cc(pose)."""
    two = np.stack([poses, np.einsum("nij,jk->nik", poses, op)], axis=1)
    cc = _cc(ref, x, band, two, ctf)
    return cc[:, 1] - cc[:, 0]


def _polish_op(ref, x: np.ndarray, band: Band, poses: np.ndarray, op: np.ndarray, ctf: np.ndarray | None
               ) -> np.ndarray:
    """Hill-climb a block rotation (poses·op) on the summed correlation of the frames."""
    from tumblebench.reconstruct.refine import _NEIGHBOURS

    for step in (4.0, 2.0, 1.0):
        d = Rotation.from_rotvec(np.radians(step) * _NEIGHBOURS).as_matrix()
        for _ in range(2):
            ops = np.einsum("kij,jl->kil", d, op)
            sc = _cc(ref, x, band, np.einsum("nij,kjl->nkil", poses, ops), ctf).sum(axis=0)
            op = ops[int(np.argmax(sc))]
    return op


def _t_stat(d: np.ndarray) -> float:
    return float(d.mean() / max(d.std(ddof=1), 1e-12) * np.sqrt(len(d))) if len(d) > 1 else 0.0


def _run_t(d: np.ndarray, min_len: int = 3) -> float:
    """t-statistic of the per-frame gains over their best contiguous run (a segment may hold a branch change)."""
    lo, hi = _max_run(d)
    return _t_stat(d[lo:hi + 1]) if hi - lo + 1 >= min_len else 0.0


def realign_segments(images: np.ndarray, x: np.ndarray, band: Band, poses: np.ndarray, res_px: float,
                     mask: np.ndarray, ctf_pad: np.ndarray | None, ctf_band: np.ndarray | None,
                     segment: int, grid: np.ndarray, min_t: float = 3.0, min_angle_deg: float = 20.0,
                     block_frames: int = 24, pair_res_px: float | None = None) -> tuple[np.ndarray, dict]:
    """Put time segments locked in different (pseudo-symmetric) branches into one consistent frame.

    A Brownian trajectory makes the poses within a short time segment consistent with one another, but a
    pseudo-symmetric particle (an fcc cluster is nearly cubic at low resolution) lets different segments settle
    on different symmetry mates. A map built from such a mixture is a patchwork that every segment fits at its
    own poses, so no test against the *whole* map can reveal it. Instead: (1) a map is built from each segment
    alone; every segment's frames are searched, as one rigid block (poses·S for S on an SO(3) grid), against the
    map of every other segment; a best S far from the identity that raises the correlation of the block
    significantly (paired t-statistic of the per-frame gains ≥ ``min_t``) marks the two segments as
    inconsistent (the statistic is taken over the best contiguous run of the block's frames, since a segment may
    contain the branch change). (2) The largest group of mutually consistent segments (greedy) is the majority.
    (3) Every other segment is tested against the map of the majority without the segment's two neighbours in
    time (frames next to a branch change fit both); candidate rotations (the block's best grid rotation and
    those of its pairwise tests) are judged on their best run of frames and polished on it, and the contiguous
    run of frames (within the segment and its neighbours) whose summed gain is largest (maximum-sum subarray)
    is moved by it.

    Parameters
    ----------
    images
        (M, n, n) images (time order) the maps are built from.
    x
        complex (M, P) their transforms on ``band`` (re-centred).
    band
        Frequencies of the correlation.
    poses
        (M, 3, 3) current poses.
    res_px
        Resolution limit of the maps (pixels of ``images``).
    mask
        Real-space mask of the maps.
    ctf_pad, ctf_band
        CTFs on the padded grid (for the maps) and on ``band`` (for the references), or None.
    segment
        Frames per segment.
    grid
        SO(3) grid of the block search.
    min_t, min_angle_deg
        Significance and smallest rotation of a branch change.
    block_frames
        At most this many frames (evenly spaced) of a segment enter its block search.
    pair_res_px
        Coarser resolution limit (pixels) of the pairwise tests (1), which are the costly part; default
        ``res_px``.

    Returns
    -------
    (poses, info)
        Corrected poses and a dict (segments, majority group, moved runs).
    """
    m = len(poses)
    poses = np.asarray(poses, np.float64).copy()
    n_seg = max(1, m // segment)
    if n_seg < 3:
        return poses, {"segments": n_seg, "moved": []}
    edges = np.linspace(0, m, n_seg + 1).round().astype(int)
    segs = [np.arange(edges[k], edges[k + 1]) for k in range(n_seg)]
    blocks = [s[np.unique(np.linspace(0, len(s) - 1, min(block_frames, len(s))).round().astype(int))] for s in segs]

    def model_ref(idx):
        vol = _reconstruct_small(images[idx], poses[idx], res_px, mask, None if ctf_pad is None else ctf_pad[idx])
        return prepare_reference(vol)

    refs = [model_ref(s) for s in segs]
    keep = band.radius <= band.n / max(pair_res_px or res_px, res_px)
    pband = Band(band.n, band.kx[keep], band.ky[keep], band.index[keep], band.radius[keep])
    incons = np.zeros((n_seg, n_seg), bool)
    pair_ops: dict[int, list] = {k: [] for k in range(n_seg)}
    for k in range(n_seg):
        b = blocks[k]
        cb = None if ctf_band is None else ctf_band[b][:, keep]
        for j in range(n_seg):
            if j != k:
                op, ang, d = _block_op(refs[j], x[b][:, keep], pband, poses[b], grid, cb, polish=False)
                incons[k, j] = ang > min_angle_deg and _run_t(d) >= min_t
                if incons[k, j]:
                    pair_ops[k].append(op)
    incons |= incons.T
    # greedy clique of mutually consistent segments, the least contested first
    group: list[int] = []
    for k in np.argsort(incons.sum(axis=1), kind="stable"):
        if not incons[k, group].any():
            group.append(int(k))
    majority = np.sort(np.array(group))
    outside = np.setdiff1d(np.arange(n_seg), majority)
    moved = []
    for k in outside:
        # the reference: the majority without the segment's neighbours in time (a branch change is not sharp:
        # frames next to it fit the segment's own branch and would make the map a patchwork again)
        far = [j for j in majority if abs(j - k) > 1]
        if not far:
            continue
        ref = model_ref(np.concatenate([segs[j] for j in far]))
        b = blocks[k]
        cb = None if ctf_band is None else ctf_band[b]
        # candidate rotations: the best for the whole block and those the pairwise tests found; each is judged
        # on its best run of frames (the off-branch run may be a part of the segment only)
        op, _, d = _block_op(ref, x[b], band, poses[b], grid, cb, polish=False)
        cands = [(op, d)] + [(o, _gain(ref, x[b], band, poses[b], o, cb)) for o in pair_ops[k]]
        runs = [_max_run(g) for _, g in cands]
        c = int(np.argmax([g[lo:hi + 1].sum() for (_, g), (lo, hi) in zip(cands, runs, strict=True)]))
        lo, hi = runs[c]
        if hi < lo:
            continue
        op = _polish_op(ref, x[b[lo:hi + 1]], band, poses[b[lo:hi + 1]], cands[c][0],
                        None if cb is None else cb[lo:hi + 1])
        ang = float(_angle_deg(op))
        if not (ang > min_angle_deg and _run_t(_gain(ref, x[b], band, poses[b], op, cb)) >= min_t):
            continue
        win = np.arange(segs[max(k - 1, 0)][0], segs[min(k + 1, n_seg - 1)][-1] + 1)
        cw = None if ctf_band is None else ctf_band[win]
        lo, hi = _max_run(_gain(ref, x[win], band, poses[win], op, cw))
        if hi >= lo:
            sel = win[lo:hi + 1]
            poses[sel] = np.einsum("nij,jk->nik", poses[sel], op)
            moved.append((int(sel[0]), int(sel[-1]), ang))
    if len(outside):
        log.info("%d of %d time segments disagreed with the largest consistent group; moved frames %s",
                 len(outside), n_seg, ", ".join(f"{a}-{b} by {g:.0f}°" for a, b, g in moved) or "none")
    return poses, {"segments": n_seg, "majority": majority.tolist(), "moved": moved}


def _max_run(gain: np.ndarray) -> tuple[int, int]:
    """First and last index of the contiguous run with the largest positive sum (Kadane); (0, −1) if none."""
    best, cur, start, run = 0.0, 0.0, 0, (0, -1)
    for i, g in enumerate(gain):
        if cur <= 0:
            cur, start = float(g), i
        else:
            cur += float(g)
        if cur > best:
            best, run = cur, (start, i)
    return run

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


def abinitio(boxes: np.ndarray, pixel_size: float, diameter_A: float, config: AbInitioConfig,
             rng: np.random.Generator, ctf_fn=None, progress=None, monitor=None,
             shifts_px: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Poses of every frame and a low-resolution model, from centred particle boxes alone.

    Parameters
    ----------
    boxes
        (M, n, n) background-subtracted, approximately centred particle boxes in time order.
    pixel_size
        Å per pixel of ``boxes``.
    diameter_A
        Particle diameter estimated from the frames (Å): sets the starting sphere and the mask.
    config
        :class:`AbInitioConfig`.
    rng
        Seeded generator for the random starts.
    ctf_fn
        Optional callable ``(indices, shape, pixel_size) -> (len(indices), *shape)`` centred CTFs; None: no CTF.
    progress
        Optional callable ``(n_done)`` advanced once per iteration.
    shifts_px
        Optional (M, 2) RELION origins (pixels of ``boxes``) that re-centre the boxes (e.g. from tracking).
    monitor
        Optional callable ``(start, resolution_A, subset_indices, subset_poses, score)`` called after every
        iteration (for benchmarking the convergence against a known truth; never needed by the algorithm).

    Returns
    -------
    (poses, model, info)
        (M, 3, 3) poses (arbitrary global frame), the model [z, y, x] at ``config.box`` pixels of size
        ``pixel_size·n/config.box``, and a dict of diagnostics (per-start scores, start agreement).
    """
    m, n, _ = boxes.shape
    ns = min(config.box, n)
    ps = pixel_size * n / ns
    small = fourier_crop(boxes, ns)
    small -= small.mean(axis=(1, 2), keepdims=True)
    if shifts_px is not None:
        full_band = Band.make(ns, r_max=ns)
        ft = full_band.take(image_ft(small)) * shift_phases(full_band, np.asarray(shifts_px) * ns / n)
        small = image_from_ft(full_band.put(ft))
    grid = so3_grid(config.grid_size)
    mask = soft_sphere(ns, diameter_A / 2 / ps + config.mask_margin_A / ps, 2.0)
    n_sub = min(config.subset, m)
    sub = np.unique(np.linspace(0, m - 1, n_sub).round().astype(int))
    stride = max(1, (m - 1) / max(len(sub) - 1, 1))
    step_sub = config.step_deg * np.sqrt(stride)
    ft_all = image_ft(small)
    ctf_small = None if ctf_fn is None else ctf_fn(np.arange(m), (ns, ns), ps)
    ctf_pad = None if ctf_fn is None else ctf_fn(sub, (2 * ns, 2 * ns), ps)

    # through a CTF only the band where it transfers carries linear information: ignore frequencies below
    # the radius where the mean |CTF| first exceeds ``ctf_min`` and keep every search band an annulus
    r_min = 1.0
    if ctf_small is not None:
        kx, ky = np.meshgrid(np.arange(ns) - ns // 2, np.arange(ns) - ns // 2)
        rr = np.rint(np.hypot(kx, ky)).astype(int).ravel()
        prof = np.bincount(rr, np.abs(ctf_small).mean(axis=0).ravel()) / np.bincount(rr)
        above = np.flatnonzero(prof[1:ns // 2] > config.ctf_min)
        r_min = float(above[0] + 1) if above.size else 1.0
        log.info("ab initio: CTF transfers above %.2f from %.2f Å on", config.ctf_min, ns * ps / r_min)

    def eff(res: float) -> float:
        return min(max(res, 2.05 * ps), ns * ps / (1.3 * r_min))

    def search(model, idx, res, step, prev=None):
        band = Band.make(ns, r_max=ns * ps / res, r_min=r_min)
        img = band.take(ft_all[idx])
        cb = None
        if ctf_small is not None:
            c = band.take(ctf_small[idx])
            img = img * c
            cb = (c**2).mean(axis=0)
        ci, cz, mean, sd = global_scores(model, img, band, grid, cb, top_k=config.top_k,
                                         distinct_deg=config.distinct_deg, pool=config.candidate_pool,
                                         return_stats=True)
        cands = grid[ci]
        if prev is not None:
            # the previous iteration's (polished) poses compete with the grid's peaks, scored alike: an iteration
            # keeps what the last one found unless the new model prefers another pose
            ref = prepare_reference(model)
            cc = _cc(ref, img, band, prev[:, None], None if cb is None else np.broadcast_to(cb, img.shape))
            cands = np.concatenate([cands, prev[:, None]], axis=1)
            cz = np.concatenate([cz, ((cc[:, 0] - mean) / sd)[:, None]], axis=1)
        path = viterbi(cands, cz, step, config.continuity_weight)
        rows = np.arange(len(idx))
        chosen = cands[rows, path]
        if res <= config.local_from_A:
            from tumblebench.reconstruct.refine import local_search

            ref = prepare_reference(model)
            c_ref = None if ctf_small is None else band.take(ctf_small[idx])
            chosen, _ = local_search(ref, img if ctf_small is None else band.take(ft_all[idx]), band, chosen,
                                     c_ref, (3.0, 1.5, 0.75))
        return chosen, float(cz[rows, path].mean())

    starts = []
    for s in range(config.n_starts):
        # featureless start: the frames back-projected at random poses (a sphere-like blob whose small
        # random asymmetries differ between starts)
        rots = Rotation.random(len(sub), random_state=int(rng.integers(2**31))).as_matrix()
        res0 = eff(config.resolutions_A[0])
        model = _reconstruct_small(small[sub], rots, res0 / ps, mask, ctf_pad, config.fill_iter)
        score = 0.0
        for res in config.resolutions_A:
            res_eff = eff(res)
            prev = rots if res_eff <= config.keep_previous_from_A else None
            rots, score = search(model, sub, res_eff, step_sub, prev)
            model = _reconstruct_small(small[sub], rots, res_eff / ps, mask, ctf_pad, config.fill_iter)
            if monitor is not None:
                monitor(s, res_eff, sub, rots, score)
            if progress is not None:
                progress(1)
        log.info("ab initio start %d: mean z-score %.3f", s, score)
        starts.append((score, rots, model))
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
        poses, score = starts[best][1], scores[best]
    else:  # frames outside the subset: the same global search + continuity against the winning model
        res_final = eff(config.resolutions_A[-1])
        poses, score = search(model, np.arange(m), res_final, config.step_deg)
    info = {"start_scores": scores, "best_start": best, "start_disagreement_deg": agreement,
            "final_score": score, "search_pixel_size_A": ps}
    return poses, model, info


def reassign(boxes: np.ndarray, pixel_size: float, shifts_px: np.ndarray, volume: np.ndarray,
             config: AbInitioConfig, resolution_A: float, ctf_fn=None) -> np.ndarray:
    """Global re-search of every frame against a (refined) map, with the temporal continuity pass.

    Frames that local refinement left in a wrong basin (e.g. a pseudo-symmetric mate) jump to the best pose
    of the whole SO(3) grid that is consistent with their neighbours in time.

    Parameters
    ----------
    boxes
        (M, n, n) particle boxes.
    pixel_size
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
    ps = pixel_size * n / ns
    small = fourier_crop(boxes, ns)
    full_band = Band.make(ns, r_max=ns)
    ft = full_band.put(full_band.take(image_ft(small)) * shift_phases(full_band, np.asarray(shifts_px) * ns / n))
    vol_small = fourier_crop_volume(volume, ns)
    res = max(resolution_A, 2.05 * ps)
    band = Band.make(ns, r_max=ns * ps / res, r_min=1.0)
    img = band.take(ft)
    cb = None
    if ctf_fn is not None:
        c = band.take(ctf_fn(np.arange(m), (ns, ns), ps))
        img = img * c
        cb = (c**2).mean(axis=0)
    grid = so3_grid(config.grid_size)
    ci, cz = global_scores(vol_small, img, band, grid, cb, top_k=config.top_k, distinct_deg=config.distinct_deg,
                           pool=config.candidate_pool)
    path = viterbi(grid[ci], cz, config.step_deg, config.continuity_weight)
    return grid[ci[np.arange(m), path]]
