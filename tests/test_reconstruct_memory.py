"""Memory that does not grow with the series: per-frame data streamed through scratch files, block sizes that do
not change a result, and a pre-flight estimate whose terms cover the arrays each stage allocates."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.config import (
    TABLE_BYTES_PER_FRAME,
    VOLUME_BYTES_PER_VOXEL,
    ReconstructConfig,
    pose_search_bytes_per_frame,
    reconstruct_memory_bytes,
)
from tumblebench.reconstruct.lattice import (
    SEARCH_CHUNK,
    LatticeConfig,
    amplitude_ambiguity,
    amplitude_search,
    prior_group,
    prior_sites,
    search_amplitudes,
)
from tumblebench.reconstruct.projector import Band, Reconstructor, image_ft, prepare_reference
from tumblebench.reconstruct.refine import continuity_sweep
from tumblebench.reconstruct.search import fourier_crop, so3_grid, viterbi
from tumblebench.simulator.mrc import FrameFile, scratch_like, store_frames

SAMPLING = 0.358


def _random_walk(m: int, seed: int, step_deg: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rv = np.cumsum(rng.normal(0, np.radians(step_deg) / np.sqrt(3), (m, 3)), axis=0)
    return Rotation.from_rotvec(rv).as_matrix()


def test_scratch_store_lives_next_to_a_scratch_file_and_in_memory_otherwise(tmp_path) -> None:
    rng = np.random.default_rng(0)
    boxes = FrameFile.temporary(10, (8, 8), tmp_path)
    frames = rng.normal(size=(10, 8, 8)).astype(np.float32)
    boxes.write(0, frames)
    store = scratch_like(boxes.rows(np.arange(2, 10)), 5, (3,), np.complex64)
    assert isinstance(store, FrameFile) and store.directory == tmp_path and store.dtype == np.complex64
    vals = (rng.normal(size=(5, 3)) + 1j * rng.normal(size=(5, 3))).astype(np.complex64)
    store_frames(store, 0, vals[:2])
    store_frames(store, 2, vals[2:])
    assert np.array_equal(store[:], vals) and np.array_equal(store[[4, 1]], vals[[4, 1]])
    mem = scratch_like(frames, 5, (3,), np.complex64)
    assert isinstance(mem, np.ndarray) and mem.shape == (5, 3)
    # cropping into a scratch file gives the bytes of cropping in memory
    out = fourier_crop(boxes, 6, chunk=3, out=scratch_like(boxes, 10, (6, 6)), zero_mean=True)
    ref = fourier_crop(frames, 6, zero_mean=True)
    assert isinstance(out, FrameFile) and np.array_equal(out[:], ref)
    assert np.allclose(ref.mean(axis=(1, 2)), 0, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(2, 40), k=st.integers(1, 6), block=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_viterbi_path_does_not_depend_on_the_block_of_candidates_in_memory(m, k, block, seed) -> None:
    rng = np.random.default_rng(seed)
    cands = Rotation.random(m * k, random_state=seed).as_matrix().reshape(m, k, 3, 3)
    scores = rng.normal(size=(m, k)).astype(np.float32)
    scores[rng.random((m, k)) < 0.2] = -np.inf
    scores[:, 0] = np.abs(scores[:, 0])  # every frame has a candidate
    whole = viterbi(cands, scores, 5.0, 0.3, block=10**6)
    assert np.array_equal(viterbi(cands, scores, 5.0, 0.3, block=block), whole)
    assert np.array_equal(viterbi(lambda lo, hi: cands[lo:hi], scores, 5.0, 0.3, block=block), whole)
    # float32 scores are added in float64: the same path as their float64 copy
    assert np.array_equal(viterbi(cands, scores.astype(np.float64), 5.0, 0.3), whole)


def test_amplitude_search_does_not_depend_on_the_frame_block() -> None:
    rng = np.random.default_rng(3)
    ns = 32
    small = rng.normal(size=(11, ns, ns)).astype(np.float32)
    band, x, c2 = search_amplitudes(small, ns, 0.5, (4.0, 1.2), chunk=4)
    _, x_one, _ = search_amplitudes(small, ns, 0.5, (4.0, 1.2), chunk=500)
    assert np.array_equal(x, x_one) and x.dtype == np.float32
    # the whitened amplitudes have zero mean per shell and unit norm per frame
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    vol = rng.normal(size=(ns, ns, ns)).astype(np.float32)
    grid = so3_grid(300)
    whole = amplitude_search(vol, x, band, grid, c2, 7, chunk=128, block=1024)
    parts = amplitude_search(vol, x, band, grid, c2, 7, chunk=128, block=2)
    assert np.array_equal(whole[0], parts[0]) and np.array_equal(whole[1], parts[1])


def test_continuity_sweep_reads_its_transforms_block_by_block_from_a_scratch_file(tmp_path) -> None:
    rng = np.random.default_rng(5)
    n, m = 24, 23
    vol = rng.normal(size=(n, n, n)).astype(np.float32)
    ref = prepare_reference(vol)
    band = Band.make(n, r_max=6, r_min=1)
    x = band.take(image_ft(rng.normal(size=(m, n, n)).astype(np.float32)))
    ctf = rng.uniform(0.2, 1.0, x.shape).astype(np.float32)
    poses = _random_walk(m, 1)
    halves = np.arange(m) % 2
    whole = continuity_sweep((ref, ref), halves, x, band, poses, ctf, (3.0, 1.0), block=10**6)
    xs = FrameFile.temporary(m, x.shape[1:], tmp_path, np.complex64)
    xs.write(0, x)
    cs = FrameFile.temporary(m, x.shape[1:], tmp_path, np.float32)
    cs.write(0, ctf)
    for block in (1, 4, 7):
        part = continuity_sweep((ref, ref), halves, xs, band, poses, cs, (3.0, 1.0), block=block)
        assert np.array_equal(part[0], whole[0]) and part[1] == whole[1]
    assert whole[1] > 0  # the sweep moved frames: the comparison covers the sequential updates


def test_memory_estimate_covers_the_arrays_of_each_stage_and_grows_only_by_the_per_frame_terms() -> None:
    cfg = ReconstructConfig(box=32)
    # the map stage: three accumulators of the padded grid fit within the volume term with room for transients
    rec = Reconstructor(32, cfg.refine.pad, threads=1)
    est = reconstruct_memory_bytes(1000, 192, 192, cfg)
    assert 3 * (rec.data.nbytes + rec.weight.nbytes) < est["volumes"] == VOLUME_BYTES_PER_VOXEL * rec.data.size
    # boxes are not held in memory: only the per-frame terms grow with the series
    est2 = reconstruct_memory_bytes(3000, 192, 192, cfg)
    assert np.isclose(est2["total"] - est["total"], est2["per_frame"] - est["per_frame"])
    assert est2["per_frame"] > est["per_frame"]
    truth_cfg = ReconstructConfig(box=32, poses="truth")
    truth = reconstruct_memory_bytes(1000, 192, 192, truth_cfg)
    spectrum = np.zeros((192, 192), np.complex64)  # the background stage keeps one per chunk of frames
    assert truth["per_frame"] >= 1000 * TABLE_BYTES_PER_FRAME + 1000 / truth_cfg.tracking.chunk * spectrum.nbytes


def test_pose_search_per_frame_bound_covers_the_lattice_arrays() -> None:
    """The lattice method's per-frame arrays (whitened amplitudes, search peaks, Viterbi scores and back-pointers
    of every branch mate) at the default box, measured by their sizes."""
    cfg = ReconstructConfig()
    lc = LatticeConfig()
    ns = lc.box
    m = 6
    small = np.random.default_rng(0).normal(size=(m, ns, ns)).astype(np.float32)
    # the widest search band: its high limit at the cropped box's Nyquist (the coarsest pixel the method accepts)
    crop = lc.band_A[1] * (ns / 2 - 1) / ns
    _, x, _ = search_amplitudes(small, ns, crop, lc.band_A)
    mates = max(2 * len(amplitude_ambiguity(k, prior_group(prior_sites(k, 3.92, 12.0)))) for k in ("fcc", "fcc-twin"))
    k = lc.top_k * mates
    arrays = (x.nbytes / m + 4 * SEARCH_CHUNK  # amplitudes and their correlations with a chunk of grid poses
              + 8 * lc.top_k * (4 + 8)  # the search's best 8·top_k (float32 score, int64 index)
              + k * (4 + 4)  # Viterbi scores (float32) and back-pointers (int32) of every candidate
              + mates * (9 * 8 + 8 + 8))  # the labelling's branch mates, their scores and chosen shift steps
    assert arrays <= pose_search_bytes_per_frame(cfg)
