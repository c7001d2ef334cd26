"""``reconstruct_series``: frames.mrcs (+ frames.star) → map.mrc, half maps, poses, FSC, time-resolved maps.

Stages (each its own function and config, see :mod:`tumblebench.reconstruct.config`): input checks → background
(graphene peaks, bad frames) → tracking (trajectory, boxes) → normalisation → poses (ab initio, or the STAR
poses in the oracle modes) → refinement → final maps (density modification, :mod:`tumblebench.reconstruct.density`) →
time-resolved maps. Nothing from ``truth_map.mrc`` is
read; the STAR poses are read only in the oracle modes ``truth`` and ``truth+noise:DEG``. In ``truth`` mode the
STAR particle centres are used as well (a pure test of the reconstruction), and no refinement runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from tumblebench.reconstruct.abinitio import pose_estimator
from tumblebench.reconstruct.background import (
    CleanedFrames,
    StaticSpectrum,
    lattice_peak_mask,
    normalise_boxes,
    static_region,
)
from tumblebench.reconstruct.config import ReconstructConfig, check_reconstruct_memory
from tumblebench.reconstruct.density import density_modified_map
from tumblebench.reconstruct.fsc import resolution_at
from tumblebench.reconstruct.model_pair import ReferenceModelPair
from tumblebench.reconstruct.poses import AbInitioPoses
from tumblebench.reconstruct.projector import soft_sphere
from tumblebench.reconstruct.refine import (
    ProjectionMatching,
    filtered_map,
    reconstruct_halves,
    require_reference_model,
)
from tumblebench.reconstruct.timeresolved import time_resolved_maps
from tumblebench.reconstruct.tracking import (
    CorrelationTracker,
    Trajectory,
    contrast_sign,
    cut_boxes,
    estimate_diameter,
)
from tumblebench.simulator.config import to_dict
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.mrc import FrameFile, open_stack, write_volume
from tumblebench.simulator.optics import ctf_2d, series_optics
from tumblebench.simulator.orientation import euler_angles, pose_matrix
from tumblebench.simulator.outputs import atomic_output_dir, write_manifest
from tumblebench.simulator.star import order_by_frame, read_star, write_star
from tumblebench.stages import (
    PoseInput,
    ReferenceModel,
    RefineInput,
    Tracker,
    TrackingInput,
    algorithm_name,
    run_stage,
)

log = logging.getLogger("tumblebench.reconstruct")


def _bar(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, leave=False)


def make_ctf_fn(optics_df: pd.DataFrame | None, particles: pd.DataFrame | None, manifest: dict | None,
                rows: np.ndarray, amplitude_contrast: float = -1.0) -> Callable | None:
    """CTF callable ``(indices, shape, sampling) -> centred CTFs`` for the usable frames, or None.

    ``projection``-mode series (``tbMode``) have no CTF. The optics come from the series' ``manifest.json``
    (``config.imaging.optics``) when present, else from the STAR optics table; the defocus of every frame from
    rlnDefocusU/V/Angle (binned to 1 Å, cached). ``amplitude_contrast`` ≥ 0 replaces the STAR's
    rlnAmplitudeContrast (−1 keeps it).
    """
    if optics_df is None or particles is None:
        return None
    mode = str(optics_df["tbMode"].iloc[0]) if "tbMode" in optics_df else "multislice"
    if mode == "projection":
        return None
    try:
        opt = manifest["config"]["imaging"]["optics"] if manifest else None
    except (KeyError, TypeError):
        opt = None
    base, q0 = series_optics(optics_df, opt, amplitude_contrast)
    du = particles["rlnDefocusU"].to_numpy(float)[rows]
    dv = particles["rlnDefocusV"].to_numpy(float)[rows]
    ang = particles["rlnDefocusAngle"].to_numpy(float)[rows] if "rlnDefocusAngle" in particles else 0 * du
    cache: dict = {}

    def ctf_fn(idx: np.ndarray, shape: tuple[int, int], sampling: float) -> np.ndarray:
        out = np.empty((len(idx), *shape), np.float32)
        for j, i in enumerate(np.asarray(idx)):
            key = (round((du[i] + dv[i]) / 2), round(abs(du[i] - dv[i])), round(ang[i]), shape, sampling)
            if key not in cache:
                o = replace(base, defocus_A=float(key[0]), astigmatism_A=float(key[1]),
                            astigmatism_angle_deg=float(key[2]))
                cache[key] = np.fft.fftshift(ctf_2d(shape, sampling, o, amplitude_contrast=q0)).astype(np.float32)
            out[j] = cache[key]
        return out

    return ctf_fn


def _check_inputs(frames_path: Path, star_path: Path | None, config: ReconstructConfig):
    stack, sampling = open_stack(frames_path)
    require(0.05 <= sampling <= 2.0, f"{frames_path}: header pixel size {sampling} Å is outside [0.05, 2] Å (the "
                                     "simulator's range; atoms are not resolved at coarser sampling)")
    check_reconstruct_memory(*stack.shape, config)
    optics = particles = None
    if star_path is not None:
        optics, particles = read_star(star_path)
        require(len(particles) == stack.shape[0],
                f"{star_path}: data_particles has {len(particles)} rows but {frames_path} has "
                f"{stack.shape[0]} frames; they must describe the same frames")
        # rows matched to frames by rlnImageName (INDEX@STACK), never by their position in the table
        particles = order_by_frame(particles, str(star_path), frames_path.name, stack.shape[0])
        if "rlnImagePixelSize" in optics:
            star_sampling = float(optics["rlnImagePixelSize"].iloc[0])
            require(abs(star_sampling - sampling) <= 1e-3 * sampling,
                    f"{star_path}: rlnImagePixelSize = {star_sampling} Å but {frames_path} header says {sampling} Å")
    elif config.poses != "abinitio":
        raise TumblebenchError(f"--poses {config.poses} needs --star (the true poses are read from it)")
    require(stack.shape[1] >= config.box and stack.shape[2] >= config.box,
            f"{frames_path}: frames of {stack.shape[2]}×{stack.shape[1]} px are smaller than the box {config.box}")
    return stack, sampling, optics, particles


def _frame_stats(stack: np.ndarray, chunk: int, bar) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Bad-frame flags (non-finite or constant), the mean frame and the mean power spectrum of good frames, and
    per chunk of frames the mean frame index and the mean spectrum of its good frames (NaN if none)."""
    m = stack.shape[0]
    bad = np.zeros(m, bool)
    mean = np.zeros(stack.shape[1:], np.float64)
    power = np.zeros(stack.shape[1:], np.float64)
    times, spectra = [], []
    for s in range(0, m, chunk):
        fr = np.asarray(stack[s:s + chunk], np.float32)
        finite = np.isfinite(fr).all(axis=(1, 2))
        flat = np.zeros(len(fr), bool)
        flat[finite] = fr[finite].std(axis=(1, 2)) == 0
        b = ~finite | flat
        bad[s:s + chunk] = b
        good = fr[~b]
        if good.size:
            mean += good.sum(axis=0)
            ft = np.fft.fft2(good)
            ft[:, 0, 0] = 0.0
            power += (np.abs(ft) ** 2).sum(axis=0)
            times.append(s + np.flatnonzero(~b).mean())
            spectra.append(ft.mean(axis=0).astype(np.complex64))
        bar.update(len(fr))
    n_good = max(int((~bad).sum()), 1)
    return bad, mean / n_good, power / n_good, np.asarray(times), np.asarray(spectra)


def track_and_cut(stack: np.ndarray | FrameFile, sampling: float, config: ReconstructConfig, progress: bool,
                  linear_contrast: bool = False, tracker: Tracker | None = None, seed: int = 0,
                  store_dir: Path | None = None
                  ) -> tuple[np.ndarray | FrameFile, np.ndarray, np.ndarray, Trajectory, np.ndarray, float, dict]:
    """Background + tracking stages: returns (boxes, origins_px, usable frame indices, trajectory, box centres,
    diameter_A, counts). ``linear_contrast``: the frames are
    linear in the potential (no CTF), so that the ``auto`` tracking method follows the particle's contrast rather
    than its local power. ``tracker``: the tracking stage (:class:`tumblebench.stages.Tracker`; default the
    built-in :class:`~tumblebench.reconstruct.tracking.CorrelationTracker` of ``config.tracking``). ``store_dir``:
    the boxes go to a scratch :class:`FrameFile` in that directory (read back chunk by chunk by every later
    stage) instead of an array in memory; the frames are cut and normalised a chunk at a time either way."""
    m = stack.shape[0]
    ch = config.tracking.chunk
    with _bar(m, "frames: statistics", progress) as bar:
        bad, mean_frame, mean_power, chunk_times, chunk_spectra = _frame_stats(stack, ch, bar)
    require(int((~bad).sum()) >= config.min_frames,
            f"only {int((~bad).sum())} of {m} frames are usable (others all-zero/constant or NaN); "
            f"at least min_frames = {config.min_frames} are needed")
    peaks = lattice_peak_mask(mean_power, sampling, config.background) if config.background.remove_graphene else None
    n_peaks = int(peaks.sum()) if peaks is not None else 0
    static = None
    if n_peaks:
        region = static_region(peaks, config.background.static_radius_px)
        static = StaticSpectrum(region, chunk_times, chunk_spectra[:, region])
    sign, _ = contrast_sign(mean_frame, sampling, config.tracking.lowpass_A)
    radius_guess = (config.diameter_A / 2 if config.diameter_A > 0 else 10.0) / sampling
    clean = CleanedFrames(stack, static)
    tracker = tracker or CorrelationTracker(config.tracking)
    with _bar(m, "tracking", progress) as bar:
        data = TrackingInput(frames=clean, sampling=sampling, radius_px=radius_guess, contrast_sign=sign, valid=~bad,
                             linear_contrast=linear_contrast, seed=seed, progress=bar.update)
        track = run_stage("tracking", tracker, data)
    usable = np.asarray(track.kept, bool)
    lost = ~bad & ~usable
    frac_lost = lost.sum() / max((~bad).sum(), 1)
    require(frac_lost <= config.tracking.max_lost_fraction,
            f"the tracker lost the particle in {lost.sum()} of {(~bad).sum()} frames "
            f"({100 * frac_lost:.0f} % > max_lost_fraction = {100 * config.tracking.max_lost_fraction:.0f} %)")
    require(int(usable.sum()) >= config.min_frames,
            f"only {int(usable.sum())} usable frames after tracking; min_frames = {config.min_frames}")
    smooth = np.asarray(track.centres_px, np.float64)
    raw = smooth if track.raw_px is None else np.asarray(track.raw_px, np.float64)
    traj = Trajectory(raw=np.where(usable[:, None], raw, np.nan), smooth=smooth,
                      peak_z=np.asarray(track.scores, np.float64), lost=lost, sign=sign)
    idx = np.flatnonzero(usable)
    shape = (idx.size, config.box, config.box)
    boxes = np.empty(shape, np.float32) if store_dir is None else FrameFile.temporary(shape[0], shape[1:], store_dir)
    origins = np.empty((idx.size, 2))
    bg = np.ones(idx.size)
    with _bar(idx.size, "boxes", progress) as bar:
        for s in range(0, idx.size, ch):
            sel = idx[s:s + ch]
            b, o = cut_boxes(clean[sel], smooth[sel], config.box)
            b = np.asarray(b, np.float32)
            if config.background.normalise:  # per box: the same bytes chunk by chunk
                b, bg[s:s + ch] = normalise_boxes(b, 0.42 * config.box)
            if store_dir is None:
                boxes[s:s + ch] = b
            else:
                boxes.write(s, b)
            origins[s:s + ch] = o
            bar.update(len(sel))
    ok = np.isfinite(bg)
    if not ok.all():
        idx, boxes, origins = idx[ok], (boxes[ok] if store_dir is None else boxes.rows(ok)), origins[ok]
    diameter = config.diameter_A if config.diameter_A > 0 else estimate_diameter(boxes, sampling, sign, energy=True)
    diameter = float(np.clip(diameter, 4 * sampling, 0.8 * config.box * sampling))
    counts = {"frames": m, "bad_frames": int(bad.sum()), "lost_frames": int(lost.sum()),
              "tracking_method": track.info.get("tracking_method", type(tracker).__name__),
              "usable_frames": int(idx.size), "graphene_peak_pixels": n_peaks, "contrast_sign": sign}
    return boxes, origins, idx, traj, smooth[idx], diameter, counts


def _oracle_poses(particles: pd.DataFrame, rows: np.ndarray, spec: str, rng: np.random.Generator) -> np.ndarray:
    poses = pose_matrix(particles["rlnAngleRot"].to_numpy(float)[rows], particles["rlnAngleTilt"].to_numpy(float)[rows],
                        particles["rlnAnglePsi"].to_numpy(float)[rows])
    if spec.startswith("truth+noise:"):
        deg = float(spec.split(":", 1)[1])
        # random axis, angle with rms ``deg``: rotation vector ~ N(0, (deg/√3)² I) per component
        rv = rng.normal(0.0, np.radians(deg) / np.sqrt(3.0), (len(rows), 3))
        poses = np.einsum("nij,njk->nik", Rotation.from_rotvec(rv).as_matrix(), poses)
    return poses


def _oracle_shifts(particles: pd.DataFrame, rows: np.ndarray, sampling: float, centres: np.ndarray) -> np.ndarray:
    """True origins (pixels) of boxes cut at ``rint(centres)``, from the STAR's coordinates and origins."""
    cx = particles["rlnCoordinateX"].to_numpy(float)[rows]
    cy = particles["rlnCoordinateY"].to_numpy(float)[rows]
    ox = particles["rlnOriginXAngst"].to_numpy(float)[rows] / sampling if "rlnOriginXAngst" in particles else 0
    oy = particles["rlnOriginYAngst"].to_numpy(float)[rows] / sampling if "rlnOriginYAngst" in particles else 0
    return -(np.stack([cx - ox, cy - oy], axis=1) - np.rint(centres))


@dataclass
class PreparedFrames:
    """A series' frames as the reconstruction's stages receive them (:func:`prepare_frames`).

    Attributes
    ----------
    stack
        The frames (M₀, ny, nx) as opened (memory-mapped).
    sampling
        Pixel size (Å).
    optics, particles
        The STAR's optics and particle tables (particles in frame order), or None without a STAR.
    boxes
        (M, n, n) background-subtracted particle boxes of the usable frames (atoms positive after the CTF; without
        a CTF, of positive contrast), an array or a scratch :class:`~tumblebench.simulator.mrc.FrameFile`.
    origins
        (M, 2) RELION origins from tracking (pixels of ``boxes``).
    rows
        (M,) indices of the usable frames in ``stack``.
    trajectory
        The tracker's :class:`~tumblebench.reconstruct.tracking.Trajectory` (every frame).
    centres
        (M, 2) box centres in the frames (pixels).
    diameter_A
        Particle diameter estimated from the frames (Å).
    counts
        Frames, bad and lost frames, graphene peak pixels removed, contrast sign.
    ctf
        ``(indices, shape, sampling) -> centred CTFs`` of the usable frames, or None (projection mode).
    """

    stack: np.ndarray | FrameFile
    sampling: float
    optics: pd.DataFrame | None
    particles: pd.DataFrame | None
    boxes: np.ndarray | FrameFile
    origins: np.ndarray
    rows: np.ndarray
    trajectory: Trajectory
    centres: np.ndarray
    diameter_A: float
    counts: dict
    ctf: Callable | None

    def true_poses(self) -> np.ndarray:
        """(M, 3, 3) true poses of the usable frames from the STAR (for scoring; needs a STAR)."""
        require(self.particles is not None, "true poses need the series' STAR file")
        return _oracle_poses(self.particles, self.rows, "truth", np.random.default_rng(0))

    def true_shifts_px(self) -> np.ndarray:
        """(M, 2) true origins (pixels of ``boxes``) from the STAR (for scoring; needs a STAR)."""
        require(self.particles is not None, "true shifts need the series' STAR file")
        return _oracle_shifts(self.particles, self.rows, self.sampling, self.centres)


def prepare_frames(frames: str | Path, star: str | Path | None, config: ReconstructConfig, progress: bool = False,
                   tracker: Tracker | None = None, store_dir: Path | None = None) -> PreparedFrames:
    """Check the inputs, track the particle and cut its boxes, and build the frames' CTF: everything the pose and
    refinement stages start from (the first step of :func:`reconstruct_series`, public for benchmarks and
    notebooks).

    Parameters
    ----------
    frames, star
        The frame stack (MRC) and its STAR file (None: no optics, no CTF, no truth).
    config
        :class:`ReconstructConfig` (box, tracking, background, amplitude contrast, seed).
    progress
        Show a progress bar.
    tracker
        The tracking stage (default the built-in one of ``config.tracking``).
    store_dir
        Put the boxes in a scratch file in this directory instead of memory.
    """
    frames = Path(frames)
    star = None if star is None else Path(star)
    stack, sampling, optics, particles = _check_inputs(frames, star, config)
    manifest = None
    if star is not None and (star.parent / "manifest.json").exists():
        try:
            manifest = json.loads((star.parent / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError):
            manifest = None
    linear = optics is None or ("tbMode" in optics and str(optics["tbMode"].iloc[0]) == "projection")
    boxes, origins, rows, traj, centres, diameter, counts = track_and_cut(stack, sampling, config, progress, linear,
                                                                         tracker, config.seed, store_dir=store_dir)
    ctf_fn = make_ctf_fn(optics, particles, manifest, rows, config.amplitude_contrast)
    if ctf_fn is None and counts["contrast_sign"] < 0:
        # without a CTF the map is of the particle's contrast: keep its density positive
        boxes = boxes.negated() if isinstance(boxes, FrameFile) else -boxes
    return PreparedFrames(stack, sampling, optics, particles, boxes, origins, rows, traj, centres,
                          diameter, counts, ctf_fn)


def reconstruct_series(frames: str | Path, star: str | Path | None, out_dir: str | Path,
                       config: ReconstructConfig | None = None, overwrite: bool = False, progress: bool = True,
                       inputs: dict | None = None, reference_model: ReferenceModel | None = None,
                       algorithms: Mapping[str, Any] | None = None) -> dict:
    """Rebuild the particle's 3D density from its frames.

    Parameters
    ----------
    frames
        ``frames.mrcs`` (full fields of view, [frame, y, x]).
    star
        ``frames.star`` (needed for the CTF of non-projection series and for the oracle pose modes); None
        for frames alone (then no CTF is applied).
    out_dir
        Output directory (written atomically): ``map.mrc`` (density-modified, :mod:`tumblebench.reconstruct.density`),
        ``map_unmodified.mrc`` (the map before it; not written if ``density.enabled`` is false), ``half1.mrc``,
        ``half2.mrc``, ``poses.star``,
        ``fsc.csv``, ``trajectory.csv``, ``reconstruct.log``, ``summary.json``, ``manifest.json`` and
        ``part1/``, ``part2/`` (and windows) with their maps.
    config
        :class:`ReconstructConfig` (defaults if None).
    overwrite
        Replace an existing ``out_dir``.
    progress
        Progress bars on stderr (only when stderr is a terminal).
    inputs
        What the manifest records as the inputs (default: the two paths).
    reference_model
        Builder of the references of the model-referenced refinement iterations
        (:data:`tumblebench.reconstruct.refine.ReferenceModel`; ``tumblebench reconstruct`` passes
        :func:`tumblebench.analysis.reference.atom_reference`); required when ``config.refine.model_iterations > 0``.
    algorithms
        Algorithms of the stages ``tracking``, ``pose`` and ``refine`` (objects with the interfaces of
        :mod:`tumblebench.stages`; :mod:`tumblebench.validation.algorithms` makes them from names). A stage not
        given runs its built-in: the tracker of ``config.tracking``, the pose estimator ``config.abinitio.method``
        and the refinement of ``config.refine``.

    Returns
    -------
    dict
        The summary (also written to ``summary.json``): resolutions, counts, timings, ab initio diagnostics.
    """
    config = config or ReconstructConfig()
    config.validate()
    if config.poses != "truth":  # checked before anything is read or written (true poses are not refined)
        require_reference_model(config.refine, reference_model)
    frames = Path(frames)
    star = Path(star) if star is not None else None
    progress = bool(progress) and sys.stderr.isatty()
    rng = np.random.default_rng(config.seed)
    timings: dict[str, float] = {}
    with atomic_output_dir(out_dir, overwrite) as tmp:
        handler = logging.FileHandler(tmp / "reconstruct.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        old_level = log.level
        log.setLevel(logging.INFO)
        try:
            # the half maps' reference models side by side on two cores (the same models as one after the other)
            with contextlib.nullcontext(None) if reference_model is None else ReferenceModelPair(reference_model) as rm:
                summary = _run(frames, star, tmp, config, progress, rng, timings, rm, dict(algorithms or {}))
            summary["timing_s"] = timings
            summary["algorithms"] = {k: algorithm_name(v) for k, v in (algorithms or {}).items()}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
            write_manifest(tmp, "reconstruct", {**to_dict(config), "algorithms": summary["algorithms"]}, config.seed,
                           inputs or {"frames": str(frames), "star": str(star) if star else None})
        finally:
            log.removeHandler(handler)
            handler.close()
            log.setLevel(old_level)
    return summary


def _run(frames: Path, star: Path | None, out: Path, config: ReconstructConfig, progress: bool,
         rng: np.random.Generator, timings: dict, reference_model: ReferenceModel | None = None,
         algorithms: dict[str, Any] | None = None) -> dict:
    algorithms = algorithms or {}
    t0 = time.perf_counter()
    pf = prepare_frames(frames, star, config, progress, algorithms.get("tracking"), store_dir=out)
    stack, sampling, optics, particles = pf.stack, pf.sampling, pf.optics, pf.particles
    boxes, origins, rows, traj, centres, diameter, counts = (pf.boxes, pf.origins, pf.rows, pf.trajectory,
                                                             pf.centres, pf.diameter_A, pf.counts)
    ctf_fn = pf.ctf
    log.info("input: %s (%d frames of %d×%d px, %.4f Å/px), star: %s, poses: %s", frames, stack.shape[0],
             stack.shape[2], stack.shape[1], sampling, star, config.poses)
    timings["tracking"] = time.perf_counter() - t0
    log.info("frames: %d, excluded as bad (NaN/constant): %d, lost by the tracker: %d, usable: %d; graphene peak "
             "pixels removed: %d; particle diameter %.1f Å", counts["frames"], counts["bad_frames"],
             counts["lost_frames"], counts["usable_frames"], counts["graphene_peak_pixels"], diameter)
    nyq_needed = 2 * sampling
    require(len(rows) >= config.min_frames, f"{len(rows)} usable frames < min_frames = {config.min_frames}")
    n = config.box
    mask = soft_sphere(n, (diameter / 2 + config.refine.mask_margin_A) / sampling, 3.0)
    info: dict = {}
    t1 = time.perf_counter()
    if config.poses == "truth":
        poses = _oracle_poses(particles, rows, "truth", rng)
        shifts = _oracle_shifts(particles, rows, sampling, centres)
        halves = (np.arange(len(rows)) % 2).astype(np.int64)
        with _bar(1, "reconstruction (true poses)", progress) as bar:
            r1, r2 = reconstruct_halves(boxes, poses, shifts, halves, ctf_fn, sampling, config.refine.pad)
            h1, h2, freq, curve, full = filtered_map(r1, r2, mask, sampling)
            bar.update(1)
        del r1, r2
        history: list = []
    else:
        estimator = algorithms.get("pose") or pose_estimator(config.abinitio)
        if config.poses == "abinitio":
            steps = estimator.steps() if isinstance(estimator, AbInitioPoses) else None
            label = f"ab initio ({estimator.name})" if isinstance(estimator, AbInitioPoses) else "ab initio"
            with _bar(steps, label, progress) as bar:
                data = PoseInput(boxes=boxes, sampling=sampling, diameter_A=diameter, shifts_px=origins, ctf=ctf_fn,
                                 seed=config.seed, reference_model=reference_model, progress=bar.update)
                estimate = run_stage("pose", estimator, data)
            poses, origins, info = estimate.poses, estimate.shifts_px, estimate.info
        else:
            poses = _oracle_poses(particles, rows, config.poses, rng)
        timings["abinitio" if config.poses == "abinitio" else "oracle_poses"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        refiner = algorithms.get("refine")
        if refiner is None:
            refiner = ProjectionMatching(config.refine)
        steps = refiner.steps() if isinstance(refiner, ProjectionMatching) else None
        with _bar(steps, "refinement", progress) as bar:
            data = RefineInput(boxes=boxes, sampling=sampling, diameter_A=diameter, poses=poses, shifts_px=origins,
                               ctf=ctf_fn, seed=config.seed, reference_model=reference_model, progress=bar.update)
            res = run_stage("refine", refiner, data)
        timings["refine"] = time.perf_counter() - t2
        poses, shifts, history = res.poses, res.shifts_px, list(res.info.get("history", []))
        if res.maps is not None:
            h1, h2, full, freq, curve = res.maps.half1, res.maps.half2, res.maps.full, res.maps.freq, res.maps.fsc
        else:  # the refiner made no maps: the same gold-standard reconstruction as the true poses get
            with _bar(1, "reconstruction (refined poses)", progress) as bar:
                r1, r2 = reconstruct_halves(boxes, poses, shifts, (np.arange(len(rows)) % 2).astype(np.int64),
                                            ctf_fn, sampling, config.refine.pad)
                h1, h2, freq, curve, full = filtered_map(r1, r2, mask, sampling)
                bar.update(1)
            del r1, r2
    t3 = time.perf_counter()
    res0143 = resolution_at(freq, curve, 0.143)
    res05 = resolution_at(freq, curve, 0.5)
    if res0143 < nyq_needed * 1.0001:
        log.info("half-map FSC stays above 0.143 up to Nyquist (%.3f Å)", nyq_needed)
    solvent = mask if config.flatten_solvent else 1.0
    final, density = _final_map(full * solvent, curve, sampling, diameter, config, out)
    write_volume(out / "map.mrc", final, sampling)
    write_volume(out / "half1.mrc", h1, sampling)
    write_volume(out / "half2.mrc", h2, sampling)
    with np.errstate(divide="ignore"):
        pd.DataFrame({"frequency_per_A": freq, "resolution_A": np.where(freq > 0, 1 / np.maximum(freq, 1e-12),
                                                                        np.inf), "fsc_half": curve}
                     ).to_csv(out / "fsc.csv", index=False)
    _write_poses(out / "poses.star", frames, rows, poses, shifts, centres, sampling, optics, particles)
    pd.DataFrame({"frame": np.arange(len(traj.smooth)), "x_raw": traj.raw[:, 0], "y_raw": traj.raw[:, 1],
                  "x": traj.smooth[:, 0], "y": traj.smooth[:, 1], "peak_z": traj.peak_z, "lost": traj.lost}
                 ).to_csv(out / "trajectory.csv", index=False)
    with _bar(2, "time-resolved maps", progress) as bar:
        tr = time_resolved_maps(boxes, rows, poses, shifts, sampling, stack.shape[0], mask, config.timeresolved,
                                ctf_fn, config.refine.pad, progress=bar.update)
    parts = {}
    for name, d in tr.items():
        (out / name).mkdir()
        part_map, _ = _final_map(d["map"] * solvent, d["fsc"], sampling, diameter, config, out / name)
        write_volume(out / name / "map.mrc", part_map, sampling)
        write_volume(out / name / "half1.mrc", d["half1"], sampling)
        write_volume(out / name / "half2.mrc", d["half2"], sampling)
        parts[name] = {"frames": list(d["frames"]), "n_used": int(d["n_used"]), "fsc_half_0.143_A": d["fsc_0.143_A"]}
    timings["maps"] = time.perf_counter() - t3
    log.info("map: half-map FSC 0.143 at %.3f Å, 0.5 at %.3f Å", res0143, res05)
    return {"poses_mode": config.poses, "pixel_size_A": sampling, "box": n, "diameter_A": diameter, **counts,
            "fsc_half_0.143_A": res0143, "fsc_half_0.5_A": res05, "refine_history": history,
            "abinitio": info, "density_modification": density, "time_resolved": parts}


def _final_map(full: np.ndarray, curve: np.ndarray, sampling: float, diameter: float, config: ReconstructConfig,
               out: Path) -> tuple[np.ndarray, dict]:
    """The map written as ``map.mrc``: ``full`` after density modification (if enabled), which also writes the
    map before it as ``map_unmodified.mrc`` in ``out``."""
    if not config.density.enabled:
        return np.asarray(full, np.float32), {}
    write_volume(out / "map_unmodified.mrc", full, sampling)
    return density_modified_map(full, curve, sampling, diameter, config.density)


def _write_poses(path: Path, frames: Path, rows: np.ndarray, poses: np.ndarray, shifts: np.ndarray,
                 centres: np.ndarray, sampling: float, optics: pd.DataFrame | None, particles: pd.DataFrame | None
                 ) -> None:
    """poses.star: one row per usable frame; rlnCoordinateX/Y is the centre of the box cut from the full frame
    and rlnOrigin*Angst the refined origin within it (RELION: particle centre = box centre − origin)."""
    ang = euler_angles(poses).reshape(-1, 3)
    c = np.rint(centres)
    m = len(rows)
    if particles is not None:
        df = particles.iloc[rows].reset_index(drop=True).copy()
    else:
        df = pd.DataFrame({"rlnDefocusU": np.zeros(m), "rlnDefocusV": np.zeros(m), "rlnDefocusAngle": np.zeros(m),
                           "tbTime": np.zeros(m), "tbDose": np.zeros(m), "tbCumulativeDose": np.zeros(m),
                           "tbLiquidThickness": np.zeros(m), "tbHeight": np.zeros(m)})
    df["rlnImageName"] = [f"{i + 1:06d}@{frames.name}" for i in rows]
    df["rlnCoordinateX"] = c[:, 0]
    df["rlnCoordinateY"] = c[:, 1]
    df["rlnAngleRot"] = ang[:, 0]
    df["rlnAngleTilt"] = ang[:, 1]
    df["rlnAnglePsi"] = ang[:, 2]
    df["rlnOriginXAngst"] = shifts[:, 0] * sampling
    df["rlnOriginYAngst"] = shifts[:, 1] * sampling
    df["rlnOpticsGroup"] = np.ones(m, np.int64)
    df["tbFrame"] = rows
    if optics is None:
        optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
                               "rlnSphericalAberration": [0.0], "rlnAmplitudeContrast": [0.0],
                               "rlnImagePixelSize": [sampling], "rlnImageSize": [0], "tbMode": ["unknown"],
                               "tbBoxSize": [len(poses) and 0]})
    write_star(path, optics, df)
