"""Orientation-search tools shared by the ab initio methods (:mod:`tumblebench.reconstruct.abinitio`,
:mod:`tumblebench.reconstruct.lattice`) and refinement: a quasi-uniform SO(3) grid, Fourier cropping of images and maps,
distinct peaks of a pose search, the Viterbi pass of a Brownian series (best path through per-frame
candidates under a penalty on the angular step between successive frames) and its posteriors over all paths,
and the local (hill-climbing) pose search.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.fft
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct._gridding_kernels import score_candidates
from tumblebench.reconstruct.projector import Band, Reference, image_ft
from tumblebench.simulator.mrc import store_frames


def so3_grid(n: int) -> np.ndarray:
    """Quasi-uniform rotations (super-Fibonacci spiral, Alexa 2022): (n, 3, 3) matrices."""
    phi = np.sqrt(2.0)
    psi = 1.533751168755204288118041
    s = np.arange(n, dtype=np.float64) + 0.5
    t = s / n
    d = 2 * np.pi * s
    r = np.sqrt(t)
    big_r = np.sqrt(1.0 - t)
    alpha = d / phi
    beta = d / psi
    q = np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], axis=1)
    return Rotation.from_quat(q).as_matrix()


def fourier_crop(images: np.ndarray, size: int, chunk: int = 256, out: np.ndarray | None = None,
                 zero_mean: bool = False) -> np.ndarray:
    """Fourier-crop (downsample) images [M, n, n] to [M, size, size] about the box centre (float32).

    ``chunk`` images at a time (each image's result does not depend on it), so that ``images`` may be a
    :class:`~tumblebench.simulator.mrc.FrameFile` read chunk by chunk. ``out``: where the result goes (an array or
    a writable :class:`~tumblebench.simulator.mrc.FrameFile`, e.g. from
    :func:`~tumblebench.simulator.mrc.scratch_like`; default a new array). ``zero_mean``: subtract each cropped
    image's mean.
    """
    n = images.shape[-1]
    if out is None:
        out = np.empty((images.shape[0], size, size), np.float32)
    o = n // 2 - size // 2
    axes = (-2, -1)
    for s in range(0, images.shape[0], chunk):
        im = np.asarray(images[s:s + chunk], np.float32)
        if size < n:
            small = image_ft(im)[:, o:o + size, o:o + size] * (size * size / (n * n))
            im = np.ascontiguousarray(scipy.fft.fftshift(scipy.fft.ifft2(scipy.fft.ifftshift(small, axes=axes),
                                                                         axes=axes, workers=-1), axes=axes).real)
        if zero_mean:
            im = im - im.mean(axis=(1, 2), keepdims=True)
        store_frames(out, s, im)
    return out


def fourier_crop_volume(volume: np.ndarray, size: int) -> np.ndarray:
    """Fourier-crop a cubic map [z, y, x] to ``size`` voxels about its centre (same physical extent)."""
    n = volume.shape[0]
    if size >= n:
        return np.asarray(volume, np.float32)
    ft = scipy.fft.fftshift(scipy.fft.fftn(scipy.fft.ifftshift(np.asarray(volume, np.float32)), workers=-1))
    o = n // 2 - size // 2
    small = ft[o:o + size, o:o + size, o:o + size] * (size / n) ** 3
    return scipy.fft.fftshift(scipy.fft.ifftn(scipy.fft.ifftshift(small), workers=-1)).real.astype(np.float32)


@numba.njit(cache=True, parallel=True)
def distinct_peaks(grid, idx, val, cos_min, out_idx, out_val):
    """Per row: of candidates sorted best first, keep greedily those farther from every kept one than the angle
    whose cosine is ``cos_min`` (cos of the angle between rotations a, b = (tr(aᵀb) − 1)/2), up to
    ``out_idx.shape[1]``."""
    m, k_in = idx.shape
    k_out = out_idx.shape[1]
    for i in numba.prange(m):
        n = 0
        for j in range(k_in):
            g = idx[i, j]
            ok = True
            for q in range(n):
                h = out_idx[i, q]
                tr = 0.0
                for a in range(3):
                    for b in range(3):
                        tr += grid[g, a, b] * grid[h, a, b]
                if (tr - 1.0) / 2.0 > cos_min:
                    ok = False
                    break
            if ok:
                out_idx[i, n] = g
                out_val[i, n] = val[i, j]
                n += 1
                if n == k_out:
                    break
        for q in range(n, k_out):
            out_idx[i, q] = out_idx[i, 0]
            out_val[i, q] = -np.inf


def viterbi(cand_rots, scores: np.ndarray, step_deg: float, weight: float, group: np.ndarray | None = None,
            block: int = 1024) -> np.ndarray:
    """Best path through per-frame candidates: maximise Σ score − weight·Σ (angle/step)².

    With a rotation ``group`` the angle between successive poses ``A`` and ``B`` is measured modulo it:
    min over g of the angle of ``Aᵀ B g`` (poses ``B`` and ``B·g`` are the same view of a map with that symmetry).

    Parameters
    ----------
    cand_rots
        (M, K, 3, 3) candidate poses per frame (frames in time order), or a callable ``(lo, hi) -> (hi − lo, K,
        3, 3)`` giving those of frames ``lo:hi`` (then only ``block`` frames' candidates exist at a time).
    scores
        (M, K) scores (e.g. z-scored correlations; −inf marks an empty candidate slot); float32 or float64 (the
        pass adds them in float64).
    step_deg
        Typical angular step between successive frames (deg).
    weight
        Penalty weight; 0 picks each frame's best candidate.
    group
        (G, 3, 3) rotations (e.g. :func:`tumblebench.reconstruct.symmetry.find_group`); None: the identity alone.
    block
        Frames whose candidates the forward pass holds at a time (the path does not depend on it).

    Returns
    -------
    numpy.ndarray
        (M,) chosen candidate index per frame.
    """
    scores = np.asarray(scores)
    scores = np.ascontiguousarray(scores, np.float32 if scores.dtype == np.float32 else np.float64)
    m, k = scores.shape
    if weight == 0 or m == 1:
        return np.argmax(scores, axis=1)
    get = cand_rots if callable(cand_rots) else (lambda lo, hi: cand_rots[lo:hi])
    back = np.zeros((m, k), np.int32)
    acc = scores[0].astype(np.float64)
    c = weight / np.radians(step_deg) ** 2
    group = np.eye(3)[None] if group is None else np.ascontiguousarray(group, np.float64)
    prev = np.asarray(get(0, 1), np.float64)
    for lo in range(1, m, block):
        hi = min(lo + block, m)
        cur = np.ascontiguousarray(np.concatenate([prev, np.asarray(get(lo, hi), np.float64)]))
        _viterbi_kernel(cur, scores[lo - 1:hi], c, group, back[lo - 1:hi], acc)
        prev = cur[-1:]
    path = np.zeros(m, np.int64)
    path[-1] = int(np.argmax(acc))
    for t in range(m - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


@numba.njit(cache=True, parallel=True)
def _viterbi_kernel(cands, scores, c, group, back, acc):
    """Forward pass of :func:`viterbi` (penalty ``c``·angle², angle in rad, modulo ``group``) over frames 1… of a
    block whose frame 0 is the last one of the previous block: fills ``back`` and updates ``acc`` (the accumulated
    scores of frame 0 in, of the block's last frame out). The candidates of a frame are independent of each other:
    threads share them."""
    m, k = scores.shape
    new = np.empty(k)
    rel = np.empty((k, 3, 3))
    ng = group.shape[0]
    for t in range(1, m):
        for b in numba.prange(k):
            best = -np.inf
            bi = 0
            for a in range(k):
                if acc[a] == -np.inf:
                    continue
                if ng == 1:  # tr(Aᵀ B)
                    tr = 0.0
                    for i in range(3):
                        for j in range(3):
                            tr += cands[t - 1, a, i, j] * cands[t, b, i, j]
                else:  # the largest tr(Aᵀ B g): the smallest angle modulo the group
                    for i in range(3):
                        for j in range(3):
                            rel[b, i, j] = (cands[t - 1, a, 0, i] * cands[t, b, 0, j]
                                            + cands[t - 1, a, 1, i] * cands[t, b, 1, j]
                                            + cands[t - 1, a, 2, i] * cands[t, b, 2, j])
                    tr = -np.inf
                    for s in range(ng):
                        v = 0.0
                        for i in range(3):
                            for j in range(3):
                                v += rel[b, i, j] * group[s, j, i]
                        tr = max(tr, v)
                x = min(max((tr - 1.0) / 2.0, -1.0), 1.0)
                if acc[a] - c * 2.0 * (1.0 - x) <= best:
                    continue  # angle² ≥ 2(1 − cos angle): this predecessor cannot win (exact pruning)
                ang = np.arccos(x)
                v = acc[a] - c * ang * ang
                if v > best:
                    best = v
                    bi = a
            back[t, b] = bi
            new[b] = best + scores[t, b]
        acc[:] = new


def robust_z(cc: np.ndarray) -> np.ndarray:
    """Correlations (M, K) as deviations from each frame's mean over its candidates, in units of the median absolute
    deviation over all frames (−inf kept): the scores of :func:`viterbi` and :func:`path_posteriors`."""
    finite = np.isfinite(cc)
    mean = np.where(finite, cc, 0).sum(axis=1, keepdims=True) / np.maximum(finite.sum(axis=1, keepdims=True), 1)
    dev = np.where(finite, cc - mean, -np.inf)
    scale = float(np.median(np.abs(dev[finite]))) if finite.any() else 1.0
    return dev / max(scale, 1e-12)


def path_posteriors(cands: np.ndarray, scores: np.ndarray, step_deg: float, weight: float,
                    temperature: float) -> np.ndarray:
    """Posterior probability of every candidate of every frame over all paths through the candidates, each path
    weighted by exp((Σ score − weight·Σ (angle/step)²) / temperature): the forward–backward pass of the chain
    :func:`viterbi` maximises (its most probable path as the temperature goes to 0).

    Parameters
    ----------
    cands
        (M, K, 3, 3) candidate poses per frame (frames in time order).
    scores
        (M, K) finite scores.
    step_deg, weight
        The continuity penalty, as in :func:`viterbi`.
    temperature
        Divides the path's whole score (> 0): the higher, the more evenly spread the posteriors.

    Returns
    -------
    numpy.ndarray
        (M, K) posteriors, each row summing to 1.
    """
    c = weight / np.radians(step_deg) ** 2 / temperature
    log_post = _forward_backward(np.ascontiguousarray(cands, np.float64),
                                 np.ascontiguousarray(scores, np.float64) / temperature, c)
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    return post / post.sum(axis=1, keepdims=True)


@numba.njit(cache=True)
def _step_penalties(a, b, c, out):
    """``c``·angle² (angle in rad) between every candidate of ``a`` (K, 3, 3) and of ``b``: ``out[i, j]``."""
    k = a.shape[0]
    for i in range(k):
        for j in range(k):
            tr = 0.0
            for p in range(3):
                for q in range(3):
                    tr += a[i, p, q] * b[j, p, q]
            ang = np.arccos(min(max((tr - 1.0) / 2.0, -1.0), 1.0))
            out[i, j] = c * ang * ang


@numba.njit(cache=True)
def _log_sum_exp(x):
    mx = x.max()
    return mx + np.log(np.sum(np.exp(x - mx)))


@numba.njit(cache=True)
def _forward_backward(cands, e, c):
    """Unnormalised log posteriors (M, K) of the chain with node scores ``e`` and step penalty ``c``·angle²
    (forward and backward messages rescaled to a maximum of 0 at every frame)."""
    m, k = e.shape
    fwd = np.empty((m, k))
    bwd = np.zeros((m, k))
    pen = np.empty((k, k))
    fwd[0] = e[0] - e[0].max()
    for t in range(1, m):
        _step_penalties(cands[t - 1], cands[t], c, pen)
        for j in range(k):
            fwd[t, j] = e[t, j] + _log_sum_exp(fwd[t - 1] - pen[:, j])
        fwd[t] -= fwd[t].max()
    for t in range(m - 2, -1, -1):
        _step_penalties(cands[t], cands[t + 1], c, pen)
        nxt = e[t + 1] + bwd[t + 1]
        for i in range(k):
            bwd[t, i] = _log_sum_exp(nxt - pen[i])
        bwd[t] -= bwd[t].max()
    return fwd + bwd


NEIGHBOURS = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
#: Index of the identity (0, 0, 0) in :data:`NEIGHBOURS`, and the 26 moves without it: a climb knows the score of
#: its current pose, so only the moves need scoring.
CENTRE = int(np.flatnonzero(~NEIGHBOURS.any(axis=1))[0])
MOVES = np.delete(NEIGHBOURS, CENTRE, axis=0)


def local_search(ref: Reference, images: np.ndarray, band: Band, poses: np.ndarray, ctf: np.ndarray | None,
                 steps_deg: tuple[float, ...], climbs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Hill-climb each frame's pose on SO(3) to maximise its correlation with the reference.

    Parameters
    ----------
    ref
        Prepared reference map.
    images
        complex (M, P) re-centred image transforms on ``band``.
    band
        Frequencies used (units of the reference box).
    poses
        (M, 3, 3) starting poses.
    ctf
        (M, P) transfer applied to the reference projections, or None.
    steps_deg
        Step sizes, largest first.
    climbs
        Moves per step size.

    Returns
    -------
    (poses, scores)
    """
    poses = np.asarray(poses, np.float64).copy()
    m = poses.shape[0]
    c = np.ones((m, band.kx.size), np.float32) if ctf is None else np.ascontiguousarray(ctf, np.float32)
    imgs = np.ascontiguousarray(images, np.complex64)
    rows = np.arange(m)
    # only the 26 moves are scored (CENTRE is the current pose, its score known), and the centre's score is put
    # back in its column so that ties break as among all 27
    moves = np.delete(np.arange(len(NEIGHBOURS)), CENTRE)
    scores = np.empty((m, 1))
    score_candidates(ref.vft, np.ascontiguousarray(poses[:, None]), band.kx, band.ky, ref.pad, imgs, c, scores)
    scores = scores[:, 0]
    for step in steps_deg:
        deltas = Rotation.from_rotvec(np.radians(step) * NEIGHBOURS).as_matrix()  # (27, 3, 3)
        climbing = rows  # a frame that stayed put would score the same moves again and stay: it stops climbing
        for _ in range(climbs):
            if climbing.size == 0:
                break
            cands = np.ascontiguousarray(np.einsum("kij,mjl->mkil", deltas, poses[climbing]))
            out = np.empty((climbing.size, len(NEIGHBOURS)))
            part = np.empty((climbing.size, len(moves)))
            score_candidates(ref.vft, np.ascontiguousarray(cands[:, moves]), band.kx, band.ky, ref.pad,
                             imgs[climbing], c[climbing], part)
            out[:, moves], out[:, CENTRE] = part, scores[climbing]
            best = np.argmax(out, axis=1)
            here = np.arange(climbing.size)
            poses[climbing] = cands[here, best]
            scores[climbing] = out[here, best]
            climbing = climbing[best != CENTRE]
    return poses, scores
