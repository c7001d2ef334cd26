"""Numba kernels of the Fourier-slice projector and the gridding back-projector.

Layout shared by all kernels:

* ``vft``: a 3D Fourier transform on an ``N³`` grid (``N = pad·n``), *centred* (fftshift layout, frequency 0
  at index ``N // 2``), complex64, indexed [kz, ky, kx] in the particle frame.
* 2D Fourier images: ``n × n`` centred (fftshift layout, frequency 0 at ``n // 2``), indexed [ky, kx] in the
  lab frame. A 2D frequency ``(kx, ky)`` (units 1/(n·p)) is the 3D frequency ``pad · Aᵀ (kx, ky, 0)``
  (units 1/(N·p)) — the Fourier-slice theorem for ``r_lab = A r_particle`` (see :mod:`simulator.orientation`).
* Interpolation is trilinear; :func:`insert_slices` scatters with exactly the weights that
  :func:`extract_slices` gathers with, so the two are adjoint.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _corner_setup(px, py, pz, c):
    x = px + c
    y = py + c
    z = pz + c
    x0 = int(np.floor(x))
    y0 = int(np.floor(y))
    z0 = int(np.floor(z))
    return x0, y0, z0, x - x0, y - y0, z - z0


@numba.njit(cache=True, inline="always")
def _slice_value(vft, a, kx, ky, pad):
    """``vft`` at ``pad · aᵀ (kx, ky, 0)`` by trilinear interpolation; 0 where a corner falls off the grid."""
    nn = vft.shape[0]
    x0, y0, z0, fx, fy, fz = _corner_setup(pad * (a[0, 0] * kx + a[1, 0] * ky), pad * (a[0, 1] * kx + a[1, 1] * ky),
                                           pad * (a[0, 2] * kx + a[1, 2] * ky), nn // 2)
    if x0 < 0 or y0 < 0 or z0 < 0 or x0 + 1 >= nn or y0 + 1 >= nn or z0 + 1 >= nn:
        return 0j
    # real and imaginary parts apart: a real weight times a complex voxel as complex arithmetic would multiply
    # by a zero imaginary part too (twice the work, the same sums: the parts never start at −0)
    re = 0.0
    im = 0.0
    for dz in range(2):
        wz = fz if dz else 1.0 - fz
        for dy in range(2):
            wy = fy if dy else 1.0 - fy
            for dx in range(2):
                wx = fx if dx else 1.0 - fx
                w = wz * wy * wx
                v = vft[z0 + dz, y0 + dy, x0 + dx]
                re += w * v.real
                im += w * v.imag
    return complex(re, im)


@numba.njit(cache=True, parallel=True)
def extract_slices(vft, rots, kx, ky, pad, out):
    """Gather central slices: ``out[m, j] = vft(pad · rots[m]ᵀ (kx[j], ky[j], 0))`` (trilinear).

    Parameters
    ----------
    vft : complex64 (N, N, N) centred 3D transform.
    rots : float64 (M, 3, 3) pose matrices (particle → lab).
    kx, ky : float64 (P,) 2D frequencies in units of 1/(n·p).
    pad : float, N / n.
    out : complex64 (M, P), overwritten.
    """
    for m in numba.prange(rots.shape[0]):
        a = rots[m]
        for j in range(kx.shape[0]):
            out[m, j] = _slice_value(vft, a, kx[j], ky[j], pad)


@numba.njit(cache=True, inline="always")
def slice_score(vft, a, kx, ky, pad, image, ctf):
    """Normalised correlation ``Re Σ_j conj(ctf·P)[j] · image[j] / sqrt(Σ_j |ctf·P|²)`` of one image (P,) on the
    band ``kx, ky`` with the slice P of ``vft`` at pose ``a`` (trilinear interpolation; serial): :func:`slice_scores`
    of the one pose (``a`` C-contiguous)."""
    out = np.empty(1)
    slice_scores(vft, a.reshape(1, 3, 3), kx, ky, pad, image, ctf, out)
    return out[0]


@numba.njit(cache=True, inline="always")
def slice_scores(vft, rots, kx, ky, pad, image, ctf, out):
    """:func:`slice_score` of one image (P,) at each of the poses ``rots`` (K, 3, 3), into ``out`` (K,) (serial).

    The samples run in the outer loop and the poses in the inner one: nearby poses (a local search's moves) read
    nearly the same voxels at a sample, which are then in cache. Each pose's sums still run over the samples in
    order: the same bytes as one pose at a time."""
    nk = rots.shape[0]
    num = np.zeros(nk)
    den = np.zeros(nk)
    for j in range(kx.shape[0]):
        v = image[j]
        c = ctf[j]
        for k in range(nk):
            acc = _slice_value(vft, rots[k], kx[j], ky[j], pad)
            pr = acc.real * c
            pi = acc.imag * c
            num[k] += pr * v.real + pi * v.imag
            den[k] += pr * pr + pi * pi
    for k in range(nk):
        out[k] = num[k] / np.sqrt(den[k]) if den[k] > 0 else 0.0


@numba.njit(cache=True, parallel=True)
def score_candidates(vft, rots, kx, ky, pad, images, ctf, out):
    """Correlation of each image with the projections of ``vft`` at its candidate poses.

    ``out[m, k] = Re Σ_j conj(ctf·P_k)[j] · images[m, j] / sqrt(Σ_j |ctf·P_k|²)`` with ``P_k`` the slice of
    ``vft`` at ``rots[m, k]``. Fused: no projection is stored.

    Parameters
    ----------
    vft : complex64 (N, N, N) centred transform of the reference.
    rots : float64 (M, K, 3, 3) candidate poses per image.
    kx, ky : float64 (P,) frequencies of the band used.
    pad : float.
    images : complex64 (M, P) image transforms on the band (already shifted to the current origin).
    ctf : float32 (M, P) transfer per image sample (1 for none).
    out : float64 (M, K), overwritten.
    """
    for m in numba.prange(rots.shape[0]):
        slice_scores(vft, rots[m], kx, ky, pad, images[m], ctf[m], out[m])


@numba.njit(cache=True, parallel=True)
def insert_slices(data, weight, rots, kx, ky, pad, values, ctf2, lanes):
    """Back-project (scatter) central slices into a Fourier volume by trilinear gridding, the adjoint of
    :func:`extract_slices`; the same bytes whatever the number of threads.

    ``data += w · values`` and ``weight += w · ctf2`` at the eight trilinear neighbours of each sample. The
    volume's z planes are dealt to ``lanes`` lanes (plane ``z`` to lane ``z mod lanes``), run in parallel; every
    lane visits the samples in their order (frame, then sample) and adds only to its own planes. Each voxel
    therefore receives its contributions in the same order as a serial scatter, whatever ``lanes`` and however
    many threads run them: no write races and no order that depends on the threads. The two planes of a sample
    lie in different lanes (``lanes`` ≥ 2), so two lanes share the scatter evenly; every lane computes the
    sample coordinates itself.

    Parameters
    ----------
    data : complex64 (N, N, N) accumulator (centred).
    weight : float32 (N, N, N) accumulator.
    rots : float64 (M, 3, 3).
    kx, ky : float64 (P,) 2D frequencies (units 1/(n·p)).
    pad : float.
    values : complex64 (M, P) samples (e.g. CTF · image transform).
    ctf2 : float32 (M, P) weights of each sample (e.g. CTF², or 1).
    lanes : int ≥ 1, parallel lanes (e.g. the number of threads; the result does not depend on it).
    """
    nn = data.shape[0]
    c = nn // 2
    m_total = rots.shape[0]
    for t in numba.prange(lanes):
        for m in range(m_total):
            a = rots[m]
            for j in range(kx.shape[0]):
                pz = pad * (a[0, 2] * kx[j] + a[1, 2] * ky[j])
                z = pz + c
                z0 = int(np.floor(z))
                if z0 < 0 or z0 + 1 >= nn:
                    continue
                own0 = z0 % lanes == t
                own1 = (z0 + 1) % lanes == t
                if not (own0 or own1):
                    continue
                px = pad * (a[0, 0] * kx[j] + a[1, 0] * ky[j])
                py = pad * (a[0, 1] * kx[j] + a[1, 1] * ky[j])
                x0, y0, _, fx, fy, _ = _corner_setup(px, py, pz, c)
                if x0 < 0 or y0 < 0 or x0 + 1 >= nn or y0 + 1 >= nn:
                    continue
                fz = z - z0
                v = values[m, j]
                w2 = ctf2[m, j]
                for dz in range(2):
                    if not (own1 if dz else own0):
                        continue
                    wz = fz if dz else 1.0 - fz
                    for dy in range(2):
                        wy = fy if dy else 1.0 - fy
                        for dx in range(2):
                            wx = fx if dx else 1.0 - fx
                            w = wz * wy * wx
                            data[z0 + dz, y0 + dy, x0 + dx] += w * v
                            weight[z0 + dz, y0 + dy, x0 + dx] += w * w2


@numba.njit(cache=True, parallel=True)
def sweep_poses(vft0, vft1, pad, kx, ky, x, ctf, off, start, stop, halves, poses, cur, deltas, direction, moved,
                tol, lanes):
    """A sequential hill-climbing sweep of the poses along time, in place (``direction`` +1 forward, −1 back),
    over frames ``start``, ``start + direction``, … (not ``stop``); ``x`` and ``ctf`` hold the rows of frames
    ``off``, ``off + 1``, … (a block of the series: the caller reads them block by block).

    Frame ``i`` starts from the pose of frame ``i − direction`` and takes, per step size ``s``, the best of the
    rotations ``deltas[s, k] · pose`` scored by :func:`slice_score` against ``vft0`` or ``vft1`` (its half,
    ``halves[i]``); the result replaces ``poses[i]`` (and ``cur[i]``, ``moved[i] = True``) when its score is
    above ``cur[i] − tol·|cur[i]|``. The frames run in order (each starts where its neighbour ended); a step's
    rotations are scored in ``lanes`` contiguous parts in parallel (e.g. the number of threads;
    :func:`slice_scores`), then taken in the order of ``k`` (the first of equal scores wins), so the result does
    not depend on the lanes or the threads. Kept in this module beside :func:`slice_score`: numba's cache is
    invalidated by a change of the file that holds a kernel, not of the files of the kernels it calls.
    """
    nk = deltas.shape[1]
    cands = np.empty((nk, 3, 3))
    sc = np.empty(nk)
    lanes = max(1, min(lanes, nk))
    for i in range(start, stop, direction):
        vft = vft0 if halves[i] == 0 else vft1
        pose = poses[i - direction].copy()
        best = slice_score(vft, pose, kx, ky, pad, x[i - off], ctf[i - off])
        for s in range(deltas.shape[0]):
            for k in range(nk):
                for a in range(3):
                    for b in range(3):
                        cands[k, a, b] = (deltas[s, k, a, 0] * pose[0, b] + deltas[s, k, a, 1] * pose[1, b]
                                          + deltas[s, k, a, 2] * pose[2, b])
            for t in numba.prange(lanes):
                lo = t * nk // lanes
                hi = (t + 1) * nk // lanes
                slice_scores(vft, cands[lo:hi], kx, ky, pad, x[i - off], ctf[i - off], sc[lo:hi])
            for k in range(nk):
                if sc[k] > best:
                    best = sc[k]
                    pose[:, :] = cands[k]
        if best > cur[i] - tol * abs(cur[i]):
            poses[i] = pose
            cur[i] = best
            moved[i] = True


@numba.njit(cache=True, parallel=True)
def hermitian_divide(data, weight, shells, reg, scale, out):
    """The Wiener-divided transform of accumulators that hold half of every slice, completed by Hermitian symmetry:

    ``out[k] = scale[s] · (data[k] + conj(data[−k])) / max(weight[k] + weight[−k] + reg[s], 1e−30)``, with ``s =
    shells[k]`` and ``−k`` the voxel mirrored through the centre ``N // 2`` (index ``i`` ↔ ``(N − i) mod N``). The
    map is real, so its transform at ``−k`` is the conjugate of that at ``k``: the slices' other halves are the
    mirror of the inserted ones.

    Parameters
    ----------
    data : complex64 (N, N, N) accumulated samples (centred).
    weight : float32 (N, N, N) accumulated weights.
    shells : int32 (N, N, N) shell index of every voxel.
    reg : float32 (S,) Wiener regulariser per shell.
    scale : float32 (S,) multiplier per shell (0 beyond the band kept).
    out : complex64 (N, N, N), overwritten in the *uncentred* layout (``ifftshift``: frequency 0 at index 0), ready
    for the inverse FFT: the value of centred index ``i`` goes to ``(i − N // 2) mod N``.
    """
    nn = data.shape[0]
    h = nn // 2
    for z in numba.prange(nn):
        mz = (nn - z) % nn
        oz = (z - h) % nn
        for y in range(nn):
            my = (nn - y) % nn
            oy = (y - h) % nn
            for x in range(nn):
                mx = (nn - x) % nn
                s = shells[z, y, x]
                d = data[z, y, x] + np.conj(data[mz, my, mx])
                w = weight[z, y, x] + weight[mz, my, mx] + reg[s]
                out[oz, oy, (x - h) % nn] = d * (scale[s] / max(w, np.float32(1e-30)))
