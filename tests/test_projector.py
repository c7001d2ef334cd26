"""Projector and back-projector: adjointness, exact-projection reconstruction, rotation covariance, shifts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct._gridding_kernels import extract_slices, insert_slices
from tumblebench.reconstruct.projector import (
    Band,
    Reconstructor,
    SliceSpectra,
    image_ft,
    prepare_reference,
    project,
    shift_phases,
)
from tumblebench.simulator.density import render_density
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import FrameFile, store_frames
from tumblebench.simulator.orientation import random_rotations

SAMPLING = 0.5


def _atoms(rng: np.random.Generator, n_atoms: int = 30, radius: float = 5.0) -> np.ndarray:
    """Random atom cloud inside a sphere (Å, relative to the rotation centre): no symmetry."""
    p = rng.normal(size=(n_atoms, 3))
    p *= radius * rng.uniform(0.2, 1.0, (n_atoms, 1)) / np.linalg.norm(p, axis=1, keepdims=True)
    return p


def _render(pos: np.ndarray, n: int) -> np.ndarray:
    # U = 0.1 Å² keeps every Gaussian well sampled at 0.5 Å voxels (sum and shape rotation invariant)
    return render_density(pos + (n // 2) * SAMPLING, (n, n, n), SAMPLING, U=np.full(len(pos), 0.1))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_extract_and_insert_are_adjoint(seed: int) -> None:
    """<P f, g> = <f, Pᵀ g> for random complex f (3D) and g (slices): the gatherer and scatterer match."""
    rng = np.random.default_rng(seed)
    nn = 16
    f = (rng.normal(size=(nn,) * 3) + 1j * rng.normal(size=(nn,) * 3)).astype(np.complex64)
    rots = random_rotations(5, rng)
    band = Band.make(8, r_max=3.5)
    g = (rng.normal(size=(5, band.kx.size)) + 1j * rng.normal(size=(5, band.kx.size))).astype(np.complex64)
    pf = np.empty_like(g)
    extract_slices(f, rots, band.kx, band.ky, 2.0, pf)
    data = np.zeros(f.shape, np.complex64)
    weight = np.zeros(data.shape, np.float32)
    insert_slices(data, weight, rots, band.kx, band.ky, 2.0, g, np.ones(g.shape, np.float32), 2)
    lhs = np.vdot(pf, g)
    rhs = np.vdot(f, data)
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs)


def test_projection_matches_rendered_projection_of_rotated_atoms() -> None:
    """project(map, A) equals the z-sum of the map rendered from atoms moved by r_lab = A r_particle."""
    rng = np.random.default_rng(3)
    n = 40
    pos = _atoms(rng)
    ref = prepare_reference(_render(pos, n))
    a = random_rotations(3, rng)
    img = project(ref, a)
    for k in range(3):
        direct = _render(pos @ a[k].T, n).sum(axis=0)
        # trilinear interpolation on a 2× padded transform: a few per cent of the peak at most
        assert np.corrcoef(direct.ravel(), img[k].ravel())[0, 1] > 0.997
        assert np.abs(direct - img[k]).max() < 0.1 * direct.max()
        assert img[k].sum() == pytest.approx(direct.sum(), rel=0.05)


def test_projection_with_origin_images_centre_at_minus_origin() -> None:
    """A single blob at the rotation centre appears at box centre − origin (RELION rlnOrigin convention)."""
    n = 32
    ref = prepare_reference(_render(np.zeros((1, 3)), n))
    img = project(ref, np.eye(3)[None], np.array([[2.0, -3.0]]))[0]
    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    assert (ix - n // 2, iy - n // 2) == (-2, 3)


def test_reconstruction_from_exact_projections_returns_the_volume() -> None:
    """Insert rendered projections (not our projector's) at the true poses: the map comes back."""
    rng = np.random.default_rng(1)
    n = 32
    pos = _atoms(rng, 20, 4.0)
    vol = _render(pos, n)
    rots = random_rotations(400, rng)
    imgs = np.stack([_render(pos @ r.T, n).sum(axis=0) for r in rots])
    rec = Reconstructor(n)
    rec.insert(imgs, rots)
    out = rec.reconstruct(1e-3)
    assert np.corrcoef(out.ravel(), vol.ravel())[0, 1] > 0.99
    assert out.sum() == pytest.approx(vol.sum(), rel=0.1)


def test_rotated_volume_reconstructs_to_rotated_map() -> None:
    """Projections of a rotated particle at poses A reconstruct the rotated map; at poses A·G the original."""
    rng = np.random.default_rng(2)
    n = 32
    pos = _atoms(rng, 20, 4.0)
    g = Rotation.from_euler("zyz", [30, 50, -20], degrees=True).as_matrix()
    vol = _render(pos, n)
    vol_rot = _render(pos @ g.T, n)  # particle rotated by g in its own frame
    rots = random_rotations(300, rng)
    imgs = project(prepare_reference(vol_rot), rots)
    rec = Reconstructor(n)
    rec.insert(imgs, rots)
    assert np.corrcoef(rec.reconstruct().ravel(), vol_rot.ravel())[0, 1] > 0.98
    rec2 = Reconstructor(n)
    rec2.insert(imgs, rots @ g)  # the same frames seen as the unrotated particle at poses A·g
    out2 = rec2.reconstruct()
    assert np.corrcoef(out2.ravel(), vol.ravel())[0, 1] > 0.98
    assert np.corrcoef(out2.ravel(), vol_rot.ravel())[0, 1] < 0.9


def test_shifted_frames_are_recentred() -> None:
    """Frames made with origins and inserted with the same origins reconstruct the centred map."""
    rng = np.random.default_rng(4)
    n = 32
    pos = _atoms(rng, 20, 4.0)
    vol = _render(pos, n)
    rots = random_rotations(300, rng)
    sh = rng.uniform(-3, 3, (300, 2))
    imgs = project(prepare_reference(vol), rots, sh)
    rec = Reconstructor(n)
    rec.insert(imgs, rots, sh)
    assert np.corrcoef(rec.reconstruct().ravel(), vol.ravel())[0, 1] > 0.98


def test_image_ft_is_centred_on_the_box_centre() -> None:
    """A delta at pixel n//2 has a flat, real transform."""
    img = np.zeros((1, 16, 16), np.float32)
    img[0, 8, 8] = 1
    ft = image_ft(img)
    assert np.allclose(ft, 1.0)


def test_insertion_gives_the_same_bytes_in_any_number_of_lanes() -> None:
    """The scatter dealt to 1, 2, 3 or 5 lanes of z planes gives identical bytes (each voxel sums its samples
    in the serial order), and no sample is lost or doubled: the weights of the half slices, completed by their
    mirror, sum to the trilinear weights of 1 of every sample of the whole slices (all inside the grid)."""
    rng = np.random.default_rng(7)
    imgs = rng.normal(size=(50, 16, 16)).astype(np.float32)
    rots = random_rotations(50, rng)
    recs = [Reconstructor(16, threads=t) for t in (1, 2, 3, 5)]
    for r in recs:
        r.insert(imgs, rots)
    for r in recs[1:]:
        assert r.data.tobytes() == recs[0].data.tobytes() and r.weight.tobytes() == recs[0].weight.tobytes()
        assert r.count == 50
    band = Band.make(32)  # the padded band of the whole slices (r ≤ 15 < 16: always inside)
    # float32 accumulation of ~10⁵ positive terms: relative error ~1e-7·√terms at most
    assert 2 * float(recs[0].weight.sum(dtype=np.float64)) == pytest.approx(50 * band.kx.size, rel=1e-5)


def _noise_scoring(rng: np.random.Generator, m: int, n: int = 16) -> tuple:
    """A padded transform, a band and m frames' transforms and transfers on it: noise."""
    nn = 2 * n
    vft = (rng.normal(size=(nn,) * 3) + 1j * rng.normal(size=(nn,) * 3)).astype(np.complex64)
    band = Band.make(n, r_max=n / 2 - 1, r_min=1.0).half_plane()
    x = (rng.normal(size=(m, band.kx.size)) + 1j * rng.normal(size=(m, band.kx.size))).astype(np.complex64)
    return vft, band, x, rng.uniform(-1, 1, (m, band.kx.size)).astype(np.float32)


def test_candidate_scores_are_each_poses_own_score_to_the_byte() -> None:
    """score_candidates runs the samples outside and the poses inside (for the cache), each pose's sums in the
    samples' order: its scores are slice_score's, one pose at a time, to the byte."""
    from tumblebench.reconstruct._gridding_kernels import score_candidates, slice_score

    rng = np.random.default_rng(11)
    vft, band, x, ctf = _noise_scoring(rng, 6)
    cands = random_rotations(6 * 26, rng).reshape(6, 26, 3, 3)
    out = np.empty((6, 26))
    score_candidates(vft, cands, band.kx, band.ky, 2.0, x, ctf, out)
    one = [[slice_score(vft, cands[m, k], band.kx, band.ky, 2.0, x[m], ctf[m]) for k in range(26)] for m in range(6)]
    assert out.tobytes() == np.array(one).tobytes()


@pytest.mark.parametrize("lanes", [1, 2, 3, 5])
def test_the_continuity_sweep_is_the_serial_sweep_in_any_number_of_lanes(lanes: int) -> None:
    """sweep_poses deals each step's 26 rotations to ``lanes`` contiguous parts scored in parallel: the same poses,
    scores and moves, to the byte, as a serial sweep scoring every rotation by slice_score, whatever the lanes."""
    from tumblebench.reconstruct._gridding_kernels import slice_score, sweep_poses
    from tumblebench.reconstruct.search import NEIGHBOURS

    rng = np.random.default_rng(12)
    m = 8
    vft0, band, x, ctf = _noise_scoring(rng, m)
    vft1 = vft0[::-1].copy()
    deltas = np.stack([Rotation.from_rotvec(np.radians(s) * NEIGHBOURS).as_matrix() for s in (6.0, 2.0)])
    start = random_rotations(m, rng)
    halves = (np.arange(m) % 2).astype(np.int64)
    cur0 = rng.uniform(0.0, 0.2, m)
    poses, cur, moved = start.copy(), cur0.copy(), np.zeros(m, np.bool_)
    sweep_poses(vft0, vft1, 2.0, band.kx, band.ky, x, ctf, 0, 1, m, halves, poses, cur, deltas, 1, moved, 0.0, lanes)
    ref, ref_cur, ref_moved = start.copy(), cur0.copy(), np.zeros(m, np.bool_)
    for i in range(1, m):
        vft = vft1 if halves[i] else vft0
        pose = ref[i - 1].copy()
        best = slice_score(vft, pose, band.kx, band.ky, 2.0, x[i], ctf[i])
        for d in deltas:
            # d · pose with the kernel's operations in its order
            cands = d[:, :, 0, None] * pose[0] + d[:, :, 1, None] * pose[1] + d[:, :, 2, None] * pose[2]
            sc = [slice_score(vft, c, band.kx, band.ky, 2.0, x[i], ctf[i]) for c in cands]
            for k in range(len(cands)):
                if sc[k] > best:
                    best, pose = sc[k], cands[k].copy()
        if best > ref_cur[i]:
            ref[i], ref_cur[i], ref_moved[i] = pose, best, True
    assert ref_moved.any()
    assert poses.tobytes() == ref.tobytes() and cur.tobytes() == ref_cur.tobytes()
    assert np.array_equal(moved, ref_moved)


@pytest.mark.parametrize("k", [1, 65, 129])
def test_ctf_weighted_insertion_of_any_count_is_the_sum_of_its_parts(k: int) -> None:
    """Images inserted with their CTFs in one call, whatever their number (the inner chunks of 64 leave one image
    at 1, 65, 129), accumulate the same data and weights as the same images inserted one by one."""
    rng = np.random.default_rng(k)
    imgs = rng.normal(size=(k, 16, 16)).astype(np.float32)
    rots = random_rotations(k, rng)
    ctf = rng.uniform(-1.0, 1.0, (k, 32, 32)).astype(np.float32)
    whole, parts = Reconstructor(16, threads=1), Reconstructor(16, threads=1)
    whole.insert(imgs, rots, ctf=ctf)
    for i in range(k):
        parts.insert(imgs[i:i + 1], rots[i:i + 1], ctf=ctf[i:i + 1])
    # float32 sums of the same terms in another grouping: relative error ~1e-7 per term
    np.testing.assert_allclose(whole.weight, parts.weight, rtol=1e-5, atol=1e-5 * float(np.abs(parts.weight).max()))
    np.testing.assert_allclose(whole.data, parts.data, rtol=1e-5, atol=1e-5 * float(np.abs(parts.data).max()))
    assert whole.count == parts.count == k


@pytest.mark.parametrize("r_max", [None, 5.5])
@pytest.mark.parametrize("stored", ["memory", "file"])
def test_spectra_computed_once_insert_the_same_bytes_as_the_images(stored: str, r_max: float | None,
                                                                    tmp_path) -> None:
    """Frames inserted from their :class:`SliceSpectra` (kept in memory, or in a scratch file beside frames kept
    there) accumulate exactly the data and weights of the frames inserted as images: the same samples, scattered
    in the same order, whichever frames (every other one, 67 of them: a part chunk) and whatever shifts and
    CTFs."""
    rng = np.random.default_rng(7)
    n, m = 16, 134
    imgs = rng.normal(size=(m, n, n)).astype(np.float32)
    rots = random_rotations(m, rng)
    shifts = rng.uniform(-2, 2, (m, 2))
    ctf = rng.uniform(-1.0, 1.0, (m, 2 * n, 2 * n)).astype(np.float32)
    frames = imgs
    if stored == "file":
        frames = FrameFile.temporary(m, (n, n), tmp_path)
        store_frames(frames, 0, imgs)
    rows = np.arange(1, m, 2)
    direct, cached = Reconstructor(n), Reconstructor(n)
    direct.insert(imgs[rows], rots[rows], shifts[rows], ctf=ctf[rows], r_max=r_max)
    spectra = SliceSpectra(frames, 2, r_max)
    cached.insert_spectra(spectra, rows, rots[rows], shifts[rows], ctf=ctf[rows])
    assert len(spectra) == m and cached.count == direct.count == rows.size
    np.testing.assert_array_equal(cached.data, direct.data)
    np.testing.assert_array_equal(cached.weight, direct.weight)
    with pytest.raises(TumblebenchError, match="padded 2 times cannot go into a 16-pixel reconstructor padded 3"):
        Reconstructor(n, pad=3).insert_spectra(spectra, rows, rots[rows])


def test_weighted_insertions_add_their_weight_times_the_samples_and_the_ctf_squared() -> None:
    """A frame inserted at weight w adds w times what it adds at weight 1 to the samples and to the weights
    (CTF²): three frames at weights (1, 0.25, 0.75) against the first alone plus the other two scaled, and a frame
    listed twice at two poses with weights summing to 1 against its two unweighted insertions mixed so."""
    rng = np.random.default_rng(11)
    n = 16
    imgs = rng.normal(size=(3, n, n)).astype(np.float32)
    rots = random_rotations(3, rng)
    shifts = rng.uniform(-2, 2, (3, 2))
    ctf = rng.uniform(-1.0, 1.0, (3, 2 * n, 2 * n)).astype(np.float32)
    spectra = SliceSpectra(imgs)
    w = np.array([1.0, 0.25, 0.75])
    weighted = Reconstructor(n)
    weighted.insert_spectra(spectra, np.arange(3), rots, shifts, ctf=ctf, weights=w)
    parts = [Reconstructor(n) for _ in range(3)]
    for i, rec in enumerate(parts):
        rec.insert_spectra(spectra, [i], rots[i:i + 1], shifts[i:i + 1], ctf=ctf[i:i + 1])
    tol = 1e-5 * float(np.abs(parts[0].data).max())
    np.testing.assert_allclose(weighted.data, sum(wi * p.data for wi, p in zip(w, parts, strict=True)),
                               rtol=1e-5, atol=tol)
    np.testing.assert_allclose(weighted.weight, sum(wi * p.weight for wi, p in zip(w, parts, strict=True)),
                               rtol=1e-5, atol=1e-6)
    rows = np.array([0, 0])
    twice = Reconstructor(n)
    twice.insert_spectra(spectra, rows, rots[:2], shifts[[0, 0]], ctf=ctf[[0, 0]], weights=np.array([0.3, 0.7]))
    at_second = Reconstructor(n)
    at_second.insert_spectra(spectra, [0], rots[1:2], shifts[:1], ctf=ctf[:1])
    np.testing.assert_allclose(twice.data, 0.3 * parts[0].data + 0.7 * at_second.data, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(twice.weight, 0.3 * parts[0].weight + 0.7 * at_second.weight, rtol=1e-5, atol=1e-6)


def _mirror(a: np.ndarray) -> np.ndarray:
    """``a[−k]`` of a centred grid: index i ↔ (N − i) mod N on every axis."""
    return np.roll(a[::-1, ::-1, ::-1], 1, axis=(0, 1, 2))


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_half_slices_completed_by_their_mirror_are_the_whole_slices(seed: int) -> None:
    """The reconstructor inserts half of each slice of a real image (the origin at half weight); with the mirror
    of what it holds added, its accumulators equal a scatter of the whole slices, so the map is unchanged."""
    rng = np.random.default_rng(seed)
    n, m = 16, 20
    imgs = rng.normal(size=(m, n, n)).astype(np.float32)
    rots = random_rotations(m, rng)
    shifts = rng.uniform(-2, 2, (m, 2))
    kx, ky = np.meshgrid(np.arange(2 * n) - n, np.arange(2 * n) - n)
    ctf = np.cos(0.02 * (kx**2 + ky**2) + rng.uniform(0, 1, (m, 1, 1))).astype(np.float32)  # even in k
    rec = Reconstructor(n)
    rec.insert(imgs, rots, shifts, ctf=ctf)
    band = Band.make(2 * n)
    padded = np.zeros((m, 2 * n, 2 * n), np.float32)
    padded[:, n // 2:n // 2 + n, n // 2:n // 2 + n] = imgs
    c = band.take(ctf)
    vals = (band.take(image_ft(padded)) * shift_phases(band, shifts) * c).astype(np.complex64)
    data = np.zeros(rec.data.shape, np.complex64)
    weight = np.zeros(rec.weight.shape, np.float32)
    insert_slices(data, weight, rots, band.kx, band.ky, 1.0, vals, np.ascontiguousarray(c * c), 2)
    scale = float(np.abs(data).max())
    np.testing.assert_allclose(rec.data + np.conj(_mirror(rec.data)), data, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(rec.weight + _mirror(rec.weight), weight, rtol=0, atol=1e-5 * float(weight.max()))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_half_plane_scores_are_the_whole_band_scores_over_root_two(seed: int) -> None:
    """Real map, real images, even CTF: every product on the band pairs k with −k as complex conjugates, so the
    correlation the refinement scores on half the plane is the whole band's divided by √2 (the same best pose)."""
    from tumblebench.reconstruct._gridding_kernels import score_candidates

    rng = np.random.default_rng(seed)
    n = 32
    ref = prepare_reference(_render(_atoms(rng), n))
    images = image_ft(project(ref, random_rotations(4, rng)) + rng.normal(0, 0.5, (4, n, n)).astype(np.float32))
    kx, ky = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2)
    ctf = np.cos(0.01 * (kx**2 + ky**2) + rng.uniform(0, 1)).astype(np.float32)  # even in k, as a CTF
    cands = random_rotations(4 * 6, rng).reshape(4, 6, 3, 3)
    whole = Band.make(n, r_max=n / 2 - 1, r_min=1.0)
    assert 2 * whole.half_plane().kx.size == whole.kx.size
    out = {}
    for half in (False, True):
        band = whole.half_plane() if half else whole
        c = np.ascontiguousarray(np.broadcast_to(band.take(ctf), (4, band.kx.size)), np.float32)
        out[half] = np.empty((4, 6))
        score_candidates(ref.vft, cands, band.kx, band.ky, ref.pad, np.ascontiguousarray(band.take(images)), c,
                         out[half])
    np.testing.assert_allclose(out[True] * np.sqrt(2), out[False], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [24, 25])
def test_transforms_in_the_ffts_own_layout_equal_the_centred_ones(n: int) -> None:
    """prepare_reference and Reconstructor.reconstruct place and read the map in the FFT's uncentred layout (no
    shifted copies of the padded volume): the same bytes as the centred ifftshift/fftshift formulas."""
    from tumblebench.reconstruct._gridding_kernels import hermitian_divide
    from tumblebench.reconstruct.projector import _gridding_correction

    rng = np.random.default_rng(n)
    vol = rng.standard_normal((n, n, n)).astype(np.float32)
    nn, o = 2 * n, n - n // 2
    big = np.zeros((nn,) * 3, np.float32)
    big[o:o + n, o:o + n, o:o + n] = vol / _gridding_correction(n, nn)
    centred = scipy.fft.fftshift(scipy.fft.fftn(scipy.fft.ifftshift(big))).astype(np.complex64)
    assert np.array_equal(prepare_reference(vol).vft, centred)

    rec = Reconstructor(n, pad=2)
    rec.insert(rng.standard_normal((20, n, n)).astype(np.float32), Rotation.random(20, random_state=n).as_matrix(),
               np.zeros((20, 2)))
    shells = rec.shell_index()
    nsh = int(shells.max()) + 1
    wmean = 2 * np.bincount(shells.ravel(), rec.weight.ravel(), nsh) / np.maximum(np.bincount(shells.ravel()), 1)
    scale = np.ones(nsh, np.float32)
    scale[n // 2 + 1:] = 0
    ft = np.empty_like(rec.data)
    hermitian_divide(rec.data, rec.weight, shells, (1e-3 * wmean).astype(np.float32), scale, ft)
    full = scipy.fft.fftshift(scipy.fft.ifftn(ft)).real.astype(np.float32)  # ft: uncentred
    want = (full[o:o + n, o:o + n, o:o + n] / _gridding_correction(n, nn)).astype(np.float32)
    assert np.array_equal(rec.reconstruct(1e-3), want)
