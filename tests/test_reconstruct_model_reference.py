"""Refinement against the half maps' atomic models (``refine.model_iterations`` + analysis.reference).

Where it does not help (measured, 147-atom cuboctahedron, 300 frames of 48 px, true poses + 6°, dose 100): when
the half-map refinement already reaches 1–2°, two model iterations gave 1.81/1.48/1.75/1.87° → 0.60/1.08/2.36/
0.98° on seeds 0–3 (seed 2 worse); after ab initio on the issue's cuboctahedron series (dose 200, 200 frames)
5.11/10.07/3.83/2.01° → 5.27/10.47/4.15/2.26° (seeds 0–3; the atoms of two seeds' half maps were rejected).
"""

from __future__ import annotations

import dataclasses as dc
import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from test_reconstruct_abinitio import SAMPLING, _cuboctahedron, _series

from tumblebench.analysis.reference import atom_reference
from tumblebench.reconstruct.refine import RefineConfig, refine
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.poses import cubic_group, pose_errors


def test_atom_reference_is_the_map_of_the_traced_atoms() -> None:
    """A map of a known cluster → its atoms → their simulated map: atoms back where they were."""
    from tumblebench.analysis.model import simulate_map

    n = 48
    pos = _cuboctahedron() + n // 2 * SAMPLING
    vol = simulate_map(pos, (n, n, n), SAMPLING, "Pt", 0.02, 0.9)
    ref = atom_reference(vol, SAMPLING)
    assert ref.shape == vol.shape and ref.dtype == np.float32
    assert np.corrcoef(ref.ravel(), vol.ravel())[0, 1] > 0.95


def test_model_iterations_need_a_builder() -> None:
    frames = np.zeros((4, 16, 16), np.float32)
    with pytest.raises(TumblebenchError, match=r"refine\.model_iterations"):
        refine(frames, SAMPLING, np.repeat(np.eye(3)[None], 4, 0), np.zeros((4, 2)), 5.0,
               RefineConfig(model_iterations=1))


@settings(max_examples=1, deadline=None)
@given(seed=st.integers(0, 1000))
@example(seed=2)  # the seed where the median gains least (2.28° → 2.44°); p90 7.1° → 4.8°
def test_atom_model_references_pull_poses_out_of_the_blurred_map_fixed_point(seed: int) -> None:
    """From true poses + 8° at low dose, refinement against the half maps stalls with a long tail of frames a few
    degrees off (their errors blur the maps that align them); the half maps' atomic models are sharp and pull
    that tail in. Measured p90 over seeds 0–3: 5.3/6.2/7.1/6.0° → 1.8/3.5/4.8/2.2°."""
    m = 400
    frames, rots, _ = _series(_cuboctahedron(), 48, m, 30.0, seed)
    rv = np.random.default_rng(seed).normal(size=(m, 3))
    rv *= np.radians(8.0) / np.linalg.norm(rv, axis=1, keepdims=True)
    start = np.einsum("nij,njk->nik", Rotation.from_rotvec(rv).as_matrix(), rots)
    cfg = RefineConfig(n_iter=3, model_iterations=0, global_peaks=0, tilt_sweep_deg=0.0)  # the model iterations alone
    base = refine(frames, SAMPLING, start, np.zeros((m, 2)), 14.0, cfg)
    model = refine(frames, SAMPLING, start, np.zeros((m, 2)), 14.0, dc.replace(cfg, model_iterations=2),
                   reference_model=atom_reference)
    e0 = pose_errors(base.poses, rots, symmetry=cubic_group(), allow_mirror=False)
    e1 = pose_errors(model.poses, rots, symmetry=cubic_group(), allow_mirror=False)
    assert e1.p90_deg < 0.8 * e0.p90_deg
    assert e1.median_deg < 1.15 * e0.median_deg
    assert [h.get("reference") for h in model.history].count("model") == 2


def test_pipeline_refuses_model_iterations_without_a_builder(tmp_path) -> None:
    """The check comes before anything is read or written."""
    from tumblebench.reconstruct.config import ReconstructConfig
    from tumblebench.reconstruct.pipeline import reconstruct_series

    base = ReconstructConfig()
    cfg = dc.replace(base, refine=dc.replace(base.refine, model_iterations=2))
    with pytest.raises(TumblebenchError, match=r"refine\.model_iterations = 2 needs a reference_model"):
        reconstruct_series(tmp_path / "frames.mrcs", None, tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out").exists()


def _refined_cuboctahedron(reference_model=None, **changes):
    """A small cuboctahedron series (150 frames) refined from its true poses: the half-map iterations alone, with
    the ``RefineConfig`` fields ``changes`` and the builder ``reference_model``."""
    m = 150
    frames, rots, _ = _series(_cuboctahedron(), 40, m, 200.0, 1)
    cfg = RefineConfig(n_iter=2, model_iterations=0, global_peaks=0, tilt_sweep_deg=0.0)
    return refine(frames, SAMPLING, rots, np.zeros((m, 2)), 14.0, dc.replace(cfg, **changes),
                  reference_model=reference_model)


def _against_noise_models(**changes):
    """The half-map refinement alone, and with ``changes`` against a builder whose maps are noise: (base, noisy)."""
    rng = np.random.default_rng(0)
    return (_refined_cuboctahedron(),
            _refined_cuboctahedron(lambda v, p: rng.normal(size=v.shape).astype(np.float32), **changes))


def test_a_model_iteration_that_lowers_the_half_map_fsc_is_discarded() -> None:
    """Fault injection: a builder whose maps carry no information (noise) scrambles the poses; the gold-standard
    check sees the half maps agree less and restores the poses of the half-map refinement exactly."""
    base, noisy = _against_noise_models(model_iterations=2)
    assert noisy.history[-1].get("discarded") is True
    assert [h.get("reference") for h in noisy.history].count("model") == 1  # stopped after the first
    np.testing.assert_array_equal(noisy.poses, base.poses)
    np.testing.assert_array_equal(noisy.shifts_px, base.shifts_px)


def test_a_tilt_sweep_that_lowers_the_half_map_fsc_is_discarded() -> None:
    """Fault injection: the tilt sweep's local search against a builder's noise scrambles the poses; the
    gold-standard check sees the half maps agree less and restores the poses before the sweep exactly."""
    base, noisy = _against_noise_models(tilt_sweep_deg=18.0, tilt_sweep_passes=2)
    entry = noisy.history[-1]
    assert "tilt_sweep_frames_changed" in entry and entry["discarded"] is True
    assert sum("tilt_sweep_frames_changed" in h for h in noisy.history) == 1  # no pass after a discarded one
    assert entry["band_fsc_after"] < entry["band_fsc_before"]
    np.testing.assert_array_equal(noisy.poses, base.poses)
    np.testing.assert_array_equal(noisy.shifts_px, base.shifts_px)


def test_a_kept_tilt_sweep_is_followed_by_another_from_its_poses_and_half_maps() -> None:
    """The passes of the tilt sweep chain: each starts from the poses and half maps the one before kept (its band FSC
    before is the previous pass's after, to the last bit), the first is the single pass's, and the second moves
    the poses again."""
    one = _refined_cuboctahedron(tilt_sweep_deg=18.0, tilt_sweep_passes=1)
    three = _refined_cuboctahedron(tilt_sweep_deg=18.0, tilt_sweep_passes=3)
    sweeps = [h for h in three.history if "tilt_sweep_frames_changed" in h]
    first = [h for h in one.history if "tilt_sweep_frames_changed" in h]
    assert len(first) == 1 and not first[0]["discarded"]
    assert sweeps[0] == first[0]
    assert len(sweeps) == 3 or sweeps[-1]["discarded"]
    assert all(not h["discarded"] for h in sweeps[:-1])
    for prev, nxt in itertools.pairwise(sweeps):
        assert nxt["band_fsc_before"] == prev["band_fsc_after"]
    assert not np.array_equal(three.poses, one.poses)


def test_a_tilt_sweep_without_a_model_searches_against_the_half_maps() -> None:
    """A builder that finds no particle in a half map (as in a 100-frame series) does not stop the refinement:
    the tilt sweep's local search runs against the half maps instead, the same poses as without a builder."""
    def no_particle(vol, sampling):
        raise TumblebenchError("half map: no particle above noise")

    plain = _refined_cuboctahedron(tilt_sweep_deg=18.0)
    failing = _refined_cuboctahedron(no_particle, tilt_sweep_deg=18.0)
    assert "tilt_sweep_frames_changed" in failing.history[-1]
    np.testing.assert_array_equal(failing.poses, plain.poses)
    np.testing.assert_array_equal(failing.shifts_px, plain.shifts_px)
