"""Tools shared by the ``sphere`` ab initio and refinement: small band-limited maps (with the positivity fill of
the unmeasured Fourier region) and the pseudo-symmetric *branch check* of a trajectory (:func:`realign_segments`).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct._gridding_kernels import score_candidates
from tumblebench.reconstruct.projector import Band, Reconstructor, prepare_reference
from tumblebench.reconstruct.search import NEIGHBOURS

log = logging.getLogger("tumblebench.reconstruct")


def _lowpass_volume(vol: np.ndarray, resolution_px: float) -> np.ndarray:
    n = vol.shape[0]
    ft = scipy.fft.rfftn(vol, workers=-1)
    k = [np.fft.fftfreq(n) * n] * 2 + [np.fft.rfftfreq(n) * n]
    kz, ky, kx = np.meshgrid(*k, indexing="ij", sparse=True)
    r = np.sqrt(kz**2 + ky**2 + kx**2)
    kc = n / resolution_px
    w = np.clip((kc - r) / 2.0 + 0.5, 0, 1)
    return scipy.fft.irfftn(ft * (0.5 - 0.5 * np.cos(np.pi * w)), s=vol.shape, workers=-1).astype(np.float32)


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
    for step in (4.0, 2.0, 1.0):
        d = Rotation.from_rotvec(np.radians(step) * NEIGHBOURS).as_matrix()
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
