"""Stage interfaces: every built-in algorithm (and the example plugins) passes the conformance test of its stage.

Each case is small and has a known truth: a disc moving on a known path (tracking), projection-mode frames of a
tumbling asymmetric Pt cluster at known poses (pose estimation, refinement), a map rendered from known atoms
(atom detection). Shapes, units and conventions (:mod:`tumblebench.simulator.orientation`) are checked against it:
a known rotation in, the same rotation out.
"""

from __future__ import annotations

import dataclasses as dc
import importlib.util
import types

import numpy as np
import pytest
from ase.cluster import Octahedron
from scipy.spatial.transform import Rotation

from tumblebench.analysis.model import atom_statistics, build_atom_model
from tumblebench.reconstruct.abinitio import AbInitioConfig
from tumblebench.reconstruct.projector import prepare_reference, project
from tumblebench.simulator.density import lowpass, render_density
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.orientation import rotation_angle_deg
from tumblebench.simulator.truth_map import render_truth_map
from tumblebench.stages import (
    INTERFACES,
    AtomDetection,
    AtomsInput,
    PoseEstimate,
    PoseInput,
    RefineInput,
    StageOutputError,
    TrackingInput,
    run_stage,
)
from tumblebench.validation.algorithms import BUILTINS, Configs, check_pose_mode, resolve
from tumblebench.validation.commands.algorithm_option import BUILTIN_NAMES, parse_specs
from tumblebench.validation.matching import match_atoms
from tumblebench.validation.poses import pose_errors

VOXEL = 0.358
SIGMA = 6.526e-4  # rad/(V·Å) at 300 kV
PLUGINS = importlib.util.find_spec("tumblebench_example_plugins") is not None


def _asymmetric_cluster() -> np.ndarray:
    at = Octahedron("Pt", 7, 3)  # the 147-atom cuboctahedron, 60 % of its atoms kept: no symmetry left
    pos = at.positions - at.positions.mean(axis=0)
    return pos[np.random.default_rng(99).random(len(pos)) < 0.6]


@pytest.fixture(scope="module")
def tumbling() -> tuple[np.ndarray, np.ndarray]:
    """150 projection-mode frames (40 px) of the cluster on a Brownian path (r_lab = A r_particle), Poisson noise
    at high dose: (frames, true poses)."""
    n, m, dose, seed = 40, 150, 200.0, 0
    rng = np.random.default_rng(seed)
    pos = _asymmetric_cluster()
    vol = lowpass(render_density(pos + (n // 2) * VOXEL, (n, n, n), VOXEL, U=np.full(len(pos), 0.02)), VOXEL, 0.9,
                  0.1)
    steps = Rotation.from_rotvec(rng.normal(0, np.radians(3.1), (m, 3)))
    rots = [Rotation.random(random_state=seed)]
    for i in range(1, m):
        rots.append(steps[i] * rots[-1])
    rots = np.array([r.as_matrix() for r in rots])
    img = project(prepare_reference(vol), rots) * VOXEL
    frames = rng.poisson(np.clip(1 + SIGMA * img, 0, None) * dose) / dose - 1
    return frames.astype(np.float32), rots


def test_every_builtin_is_registered_and_satisfies_its_interface() -> None:
    assert {k: tuple(v) for k, v in BUILTINS.items()} == BUILTIN_NAMES
    for stage, names in BUILTINS.items():
        for name in names:
            assert isinstance(resolve(stage, name), INTERFACES[stage])


# ------------------------------------------------------------------------------------------------- tracking
def test_tracker_finds_a_disc_on_its_known_path() -> None:
    """A bright disc wandering ≈ 0.4 px per frame: centres (x, y) in pixels, (col, row) convention, kept mask."""
    rng = np.random.default_rng(3)
    m, n, radius = 60, 96, 12.0
    centres = n / 2 + np.cumsum(rng.normal(0, 0.3, (m, 2)), axis=0) + np.array([9.0, -14.0])  # off centre in x, y
    yy, xx = np.mgrid[:n, :n]
    frames = np.stack([np.clip(radius + 0.5 - np.hypot(xx - x, yy - y), 0, 1) for x, y in centres])
    frames = (frames + rng.normal(0, 0.3, frames.shape)).astype(np.float32)
    valid = np.ones(m, bool)
    valid[7] = False  # a frame without data is never kept
    tracker = resolve("tracking", "correlation", Configs())
    track = run_stage("tracking", tracker, TrackingInput(frames, VOXEL, radius, 1.0, valid, linear_contrast=True))
    assert track.kept.dtype == bool and not track.kept[7] and track.kept.sum() == m - 1
    raw = np.hypot(*(track.raw_px - centres).T)[track.kept]
    err = np.hypot(*(track.centres_px - centres).T)[track.kept]
    # per-frame peaks: sub-pixel (measured median 0.14, max 0.32 px); the smoothed path (σ = 2 frames) lags a 0.3-px
    # random walk by a fraction of a pixel (measured median 0.26, max 0.74 px)
    assert np.median(raw) < 0.3 and raw.max() < 1.0
    assert np.median(err) < 0.5 and err.max() < 1.5


# ---------------------------------------------------------------------------------------------------- poses
POSE_CONFIGS = {
    "lattice": Configs(),
    "sphere": Configs(reconstruct=dc.replace(Configs().reconstruct, abinitio=AbInitioConfig(
        method="sphere", box=40, grid_size=10000, n_starts=1))),
}


@pytest.mark.parametrize(("name", "bound_deg"), [("lattice", 5.0), ("sphere", 30.0)])
def test_pose_estimator_returns_the_known_rotations(tumbling, name: str, bound_deg: float) -> None:
    """Poses up to one global rotation (and hand): the relative rotations of the truth come out. Bounds: the
    lattice method measured … ; the sphere method (featureless start, one start) … on this case."""
    frames, rots = tumbling
    est = resolve("pose", name, POSE_CONFIGS[name])
    shifts = np.zeros((len(frames), 2))
    data = PoseInput(frames, VOXEL, 12.0, shifts, seed=0)
    out = run_stage("pose", est, data)
    assert isinstance(out, PoseEstimate) and out.poses.shape == (len(frames), 3, 3) and out.scores.shape == (150,)
    assert np.abs(out.shifts_px).max() <= 2.0 / VOXEL + 1e-9  # pixels of the boxes, within the shift range
    assert pose_errors(out.poses, rots).median_deg < bound_deg


@pytest.mark.skipif(not PLUGINS, reason="the example plugins are not installed (pip install -e examples/plugins)")
def test_random_pose_plugin_is_the_floor(tumbling) -> None:
    """The example plugin's uniformly random rotations on the same case: far off (uniform rotations: ≈ 126°
    median after the best global rotation; the fit of a global rotation to 150 random frames lowers it a little),
    and the same bytes for the same seed."""
    frames, rots = tumbling
    est = resolve("pose", "random")
    data = PoseInput(frames, VOXEL, 12.0, np.zeros((len(frames), 2)), seed=4)
    a, b = run_stage("pose", est, data), run_stage("pose", est, data)
    assert np.array_equal(a.poses, b.poses)
    assert pose_errors(a.poses, rots).median_deg > 60.0


def test_refiner_returns_the_same_rotations_it_was_given_close_to(tumbling) -> None:
    """Start 5° rms off the true poses: the refined poses approach the truth in the *same* frame (no global
    rotation is allowed to a refiner)."""
    frames, rots = tumbling
    rng = np.random.default_rng(1)
    start = np.einsum("nij,njk->nik", Rotation.from_rotvec(rng.normal(0, np.radians(5 / np.sqrt(3)),
                                                                      (len(rots), 3))).as_matrix(), rots)
    cfg = Configs()
    refiner = resolve("refine", "projection-matching", Configs(reconstruct=dc.replace(
        cfg.reconstruct, refine=dc.replace(cfg.reconstruct.refine, model_iterations=0))))
    out = run_stage("refine", refiner, RefineInput(frames, VOXEL, 12.0, start, np.zeros((len(rots), 2))))
    before = np.median(rotation_angle_deg(start, rots))
    after = np.median(rotation_angle_deg(out.poses, rots))
    assert out.maps is not None and out.maps.half1.shape == (40, 40, 40)
    assert after < 0.5 * before and after < 2.5


# ---------------------------------------------------------------------------------------------------- atoms
@pytest.fixture(scope="module")
def atom_map() -> tuple[np.ndarray, np.ndarray]:
    """A 79-atom Pt octahedron rendered at 0.9 Å: (map [z, y, x], true positions (x, y, z) Å in the map frame)."""
    at = Octahedron("Pt", 5, 1)
    pos = at.positions - at.positions.mean(0)
    u = np.full(len(pos), 0.006)
    p = types.SimpleNamespace(positions=pos, symbols=["Pt"] * len(pos), U=u[:, None, None] * np.eye(3)[None])
    n, centre = 64, np.array([0.4, -0.7, 0.2])  # the rotation centre off the centroid: atoms off the voxel grid
    return render_truth_map(p, n, VOXEL, 0.9, centre=centre), pos - centre + (n // 2) * VOXEL


DETECTORS = [("threshold-scan", 0.05)] + ([("peak-local-max", 0.35)] if PLUGINS else [])


@pytest.mark.parametrize(("name", "rmsd_A"), DETECTORS)
def test_atom_detector_returns_the_known_atoms(atom_map, name: str, rmsd_A: float) -> None:
    """Positions (x, y, z) in Å in the map frame (voxel (iz, iy, ix) at (ix, iy, iz)·sampling). The built-in
    refines centres (measured RMSD < 1 pm); the plugin keeps voxel centres (bound: half a voxel diagonal)."""
    vol, truth = atom_map
    out = run_stage("atoms", resolve("atoms", name), AtomsInput(vol, VOXEL, "Pt"))
    match = match_atoms(out.positions, truth)
    assert match.recall == 1.0 and match.rmsd_pm < 100 * rmsd_A
    assert np.all(np.isfinite(out.scores)) and out.scores.shape == (len(out.positions),)
    model = atom_statistics(vol, VOXEL, out)  # tumblebench's statistics of any detector's atoms
    assert model.n_atoms == len(out.positions) and np.isfinite(model.stats["CN_STD"]).all()


def test_builtin_detector_plus_statistics_is_the_atom_model_builder(atom_map) -> None:
    vol, _ = atom_map
    det = run_stage("atoms", resolve("atoms", "threshold-scan"), AtomsInput(vol, VOXEL, "Pt"))
    a, b = atom_statistics(vol, VOXEL, det), build_atom_model(vol, VOXEL)
    assert np.array_equal(a.positions, b.positions) and a.stats.equals(b.stats) and a.table1 == b.table1


# ------------------------------------------------------------------------------------------ bad algorithms
class _NoMethod:
    pass


class _NeedsArgs:
    def __init__(self, x):
        self.x = x

    def detect(self, data):
        return None


class _WrongShape:
    def detect(self, data):
        return AtomDetection(positions=np.zeros((5, 2)), scores=np.zeros(5))


class _NotRotations:
    def estimate(self, data):
        m = len(data.boxes)
        return PoseEstimate(poses=np.ones((m, 3, 3)), shifts_px=np.zeros((m, 2)), scores=np.zeros(m))


class _Raises:
    def detect(self, data):
        raise ZeroDivisionError("the plugin's own bug")


@pytest.mark.parametrize(("stage", "spec", "message"), [
    ("atoms", "nosuch", "no atoms algorithm named 'nosuch'"),
    ("atoms", "no_such_module_xyz:Thing", "cannot import 'no_such_module_xyz'"),
    ("atoms", "test_stages:Missing", "has no attribute 'Missing'"),
    ("atoms", "test_stages:_NoMethod", "has no method 'detect'"),
    ("atoms", "test_stages:_NeedsArgs", "cannot be created without arguments"),
    ("pose", "test_stages:_Raises", "has no method 'estimate'"),
    ("posture", "lattice", "'posture' is not a replaceable stage"),
])
def test_bad_algorithm_is_one_error_naming_the_stage(stage: str, spec: str, message: str) -> None:
    with pytest.raises(TumblebenchError, match=message) as exc:
        resolve(stage, spec)
    assert f"{stage}={spec}" in str(exc.value) and "\n" not in str(exc.value)


def test_wrong_outputs_are_one_error_naming_the_stage(atom_map) -> None:
    vol, _ = atom_map
    with pytest.raises(StageOutputError, match=r"atoms: positions has shape \(5, 2\), expected \(\*, 3\)"):
        run_stage("atoms", resolve("atoms", "test_stages:_WrongShape"), AtomsInput(vol, VOXEL))
    boxes = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(StageOutputError, match="pose: poses are not rotation matrices"):
        run_stage("pose", resolve("pose", "test_stages:_NotRotations"), PoseInput(boxes, 1.0, 4.0, np.zeros((4, 2))))


def test_an_algorithm_that_raises_keeps_its_own_exception(atom_map) -> None:
    vol, _ = atom_map
    with pytest.raises(ZeroDivisionError, match="the plugin's own bug") as exc:
        run_stage("atoms", resolve("atoms", "test_stages:_Raises"), AtomsInput(vol, VOXEL))
    assert exc.value.__cause__ is None and exc.value.__context__ is None  # one traceback, the plugin's
    assert any("raised by the atoms algorithm test_stages._Raises.detect" in n for n in exc.value.__notes__)


def test_specs_one_per_stage_and_pose_mode() -> None:
    assert parse_specs(["pose=random", "atoms=pkg.mod:Det"], {"pose": "lattice", "tracking": "correlation"}) == {
        "pose": "random", "atoms": "pkg.mod:Det", "tracking": "correlation"}
    for bad, msg in ((["pose=a", "pose=b"], "given twice"), (["pose"], "expected STAGE=NAME"),
                     (["posture=x"], "not a replaceable stage")):
        with pytest.raises(TumblebenchError, match=msg):
            parse_specs(bad)
    with pytest.raises(TumblebenchError, match="runs no refinement"):
        check_pose_mode("truth", {"refine": "projection-matching"})
    with pytest.raises(TumblebenchError, match="estimates no poses"):
        check_pose_mode("truth+noise:3", {"pose": "lattice"})


# -------------------------------------------------------------------------------------------- command line
def test_atoms_command_takes_the_algorithm_from_toml_and_flag(atom_map, tmp_path, capsys) -> None:
    from tumblebench.simulator.mrc import write_volume
    from tumblebench.validation.cli import main as cli_main

    vol, _ = atom_map
    write_volume(tmp_path / "m.mrc", vol, VOXEL)
    bad = tmp_path / "bad.toml"
    bad.write_text('[algorithms]\natoms = "test_stages:_NoMethod"\n')
    assert cli_main(["atoms", "--map", str(tmp_path / "m.mrc"), "--config", str(bad), "--out",
                     str(tmp_path / "a0"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "atoms=test_stages:_NoMethod" in err and "has no method 'detect'" in err
    assert not (tmp_path / "a0").exists()  # checked before any work
    # the flag wins over the table; the built-in by name gives the default model
    assert cli_main(["atoms", "--map", str(tmp_path / "m.mrc"), "--config", str(bad), "--algorithm",
                     "atoms=threshold-scan", "--out", str(tmp_path / "a1"), "--quiet"]) == 0
    assert (tmp_path / "a1" / "atoms_stats.csv").exists()


def test_reconstruct_command_rejects_a_bad_algorithm_before_any_work(tmp_path, capsys) -> None:
    from tumblebench.validation.cli import main as cli_main

    frames = tmp_path / "none.mrcs"  # never read: the algorithm is checked first
    for spec, msg in (("pose=no_such_module_xyz:X", "cannot import"), ("atoms=threshold-scan", "runs no 'atoms'"),
                      ("refine=test_stages:_Raises", "has no method 'refine'")):
        assert cli_main(["reconstruct", "--frames", str(frames), "--algorithm", spec, "--out",
                         str(tmp_path / "r"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and msg in err, err
    assert not (tmp_path / "r").exists()


class _RaisingTracker:
    def track(self, data):
        raise RuntimeError("tracker bug")


class _BadTracker:
    def track(self, data):
        from tumblebench.stages import Track

        m = len(data.frames)
        return Track(centres_px=np.zeros((m, 3)), kept=np.ones(m, bool), scores=np.zeros(m))


def test_a_failing_stage_leaves_the_run_complete_up_to_the_last_finished_stage(tmp_path, capsys) -> None:
    """demo with a tracker that raises: its own exception (once), particle/ and series/ kept, no recon/; with a
    tracker that returns wrong shapes: one line naming the stage, exit 2."""
    from tumblebench.validation.cli import main as cli_main

    case = ["demo", "--frames", "50", "--mode", "projection", "--quiet", "--out"]
    with pytest.raises(RuntimeError, match="tracker bug") as exc:
        cli_main([*case, str(tmp_path / "run"), "--algorithm", "tracking=test_stages:_RaisingTracker"])
    assert exc.value.__context__ is None and "raised by the tracking algorithm" in exc.value.__notes__[0]
    run = tmp_path / "run"
    assert (run / "particle" / "truth.extxyz").exists() and (run / "series" / "frames.mrcs").exists()
    assert not (run / "recon").exists() and not (run / "scorecard.json").exists()
    assert cli_main([*case, str(tmp_path / "run2"), "--algorithm", "tracking=test_stages:_BadTracker"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and "tracking: centres_px has shape (50, 3), expected (50, 2)" in err[0]
    assert not (tmp_path / "run2" / "recon").exists() and (tmp_path / "run2" / "series" / "frames.mrcs").exists()
