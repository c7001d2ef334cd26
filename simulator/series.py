"""``simulate``: the image series a graphene-liquid-cell TEM records while a nanocrystal tumbles.

A series is a function of the particle, a :class:`SeriesConfig` and a seed (same seed, same bytes):

1. the rigid-body path (:mod:`tumblebench.simulator.dynamics`: rotational diffusion on SO(3), in-plane wander and
   drift, height) and the liquid thickness are drawn for every frame on a grid of ``2·S`` instants per
   exposure;
2. every frame is imaged at its ``S`` sub-steps — each with its own pose and shift and a fresh thermal
   displacement of every atom drawn exactly from its U in the particle frame and rotated with the pose
   (so the lab-frame covariance is A·U·Aᵀ) — and the sub-step intensities are averaged by the
   :class:`tumblebench.simulator.imaging.Imager` (motion blur and thermal smearing as a real exposure);
3. the detector turns the mean intensity into counts for the frame's dose
   (:func:`tumblebench.simulator.detector.detect`);
4. optionally, under-coordinated surface atoms dissolve or hop to adsorption sites with dose
   (:class:`tumblebench.simulator.dynamics.Dissolution`); the truth map weights every position by the time it was held.

Outputs (:func:`simulate_series`): ``frames.mrcs`` (float32 counts [frame, y, x], pixel size in the header,
streamed to disk), ``frames.star`` (RELION 3.1, :mod:`tumblebench.simulator.star`), ``truth_map.mrc``
(:mod:`simulator.truth_map`), ``atom_events.csv`` (frame, atom index, event ``dissolved``/``hopped``, and the
position in the particle frame: the atoms lost and moved),
``montage.png`` (raw frames above their noise-free counterparts) and ``manifest.json``.

Frames, poses and shifts follow :mod:`tumblebench.simulator.orientation`. The particle's rotation centre is its
centroid; its mid-exposure image position goes into rlnCoordinateX/Y (origin 0 in the full frame). Height
``h`` is the centre's displacement along the beam (lab +z, downstream): the focal plane lies upstream of the
specimen by the defocus (underfocus positive), so a particle that moves downstream by ``h`` is imaged at
defocus ``defocus + h`` — rlnDefocusU/V include it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import multiprocessing
import os
import pickle
import shutil
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft

from tumblebench.simulator.config import PROCESS_BYTES, check_memory, check_range, check_seed, to_dict
from tumblebench.simulator.detector import DetectorConfig, detect, mtf_2d
from tumblebench.simulator.dynamics import (
    Dissolution,
    DissolutionConfig,
    DynamicsConfig,
    LiquidConfig,
    Trajectory,
    displacement_factors,
    simulate_trajectory,
    thermal_positions,
)
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.imaging import Imager, ImagingConfig
from tumblebench.simulator.mrc import MrcStackWriter, write_volume
from tumblebench.simulator.orientation import euler_angles
from tumblebench.simulator.outputs import atomic_output_dir, check_output_dir, write_manifest
from tumblebench.simulator.processes import available_cores, end_with_parent, stop_workers
from tumblebench.simulator.scattering import GAUSSIAN_TABLES, form_factor, gaussian_coefficients
from tumblebench.simulator.star import image_names, write_star
from tumblebench.simulator.truth_map import check_fits_box, particle_frame_positions, particle_radius, render_truth_map

#: Most frames a series may have (250 s at 400 frames/s).
MAX_FRAMES = 100_000
#: Largest field of view, Å (300 nm).
MAX_FIELD_A = 3000.0

#: Default dose per frame: 8.5 e⁻/pixel at 0.358 Å pixels (17,000 e⁻/pixel over 2,000 frames, Wietfeldt et al. 2024).
DEFAULT_DOSE_PER_FRAME = 8.5 / 0.358**2


# --------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class AcquisitionConfig:
    """Detector geometry, timing and dose of a series.

    Attributes
    ----------
    n_frames
        Number of frames, in [1, 100,000] (100,000 frames is 250 s at 400 frames/s, beyond any recorded
        liquid-cell series of one particle).
    frame_rate_hz
        Frames per second (K2-IS: 400), in [0.1, 10,000] Hz (the fastest direct-detector imaging modes).
    exposure_fraction
        Fraction of each frame period the detector integrates (1: continuous readout), in (0, 1].
    dose_per_frame_e_per_A2
        Electron dose per frame, e⁻/Å² (default 8.5 e⁻/pixel at 0.358 Å ≈ 66.3 e⁻/Å²), in (0, 100,000]
        (10⁵ e⁻/Å² in one frame is beyond any counting detector's frame and destroys a Pt nanocrystal).
    dose_rate_e_per_A2_per_s
        If set, the dose rate at the specimen (e⁻/Å²/s), in (0, 10⁷]; the dose per frame is then
        ``dose_rate · exposure_fraction / frame_rate`` and ``dose_per_frame_e_per_A2`` is ignored.
    sampling
        Detector pixel size at the specimen, Å, in [0.05, 2]: below 0.05 Å the Nyquist frequency (10 Å⁻¹) is
        far beyond any microscope's information limit; above 2 Å (Nyquist 4 Å) no Pt lattice fringe (the
        widest, {111}, is 2.27 Å) can be imaged.
    field_px
        Edge of the square frame (full field of view), pixels, in [16, 8192] (the largest direct-detector
        frame edge), with the field ``field_px · sampling`` at most 3,000 Å: a field of more than a few
        hundred nm is not a liquid-cell frame of one nanocrystal.
    box_size_px
        Edge of the reconstruction box the truth map uses, pixels (``tbBoxSize``), in [16, 512] and at most
        ``field_px``.
    substeps
        Imaged sub-steps per exposure (motion blur and thermal averaging within a frame), in [1, 64].
    """

    n_frames: int = 2000
    frame_rate_hz: float = 400.0
    exposure_fraction: float = 1.0
    dose_per_frame_e_per_A2: float = DEFAULT_DOSE_PER_FRAME
    dose_rate_e_per_A2_per_s: float | None = None
    sampling: float = 0.358
    field_px: int = 192
    box_size_px: int = 128
    substeps: int = 3

    def validate(self) -> None:
        check_range(self.n_frames, 1, MAX_FRAMES, "n_frames")
        check_range(self.frame_rate_hz, 0.1, 1e4, "frame_rate_hz", "Hz")
        check_range(self.exposure_fraction, 0, 1, "exposure_fraction", lo_open=True)
        check_range(self.dose_per_frame_e_per_A2, 0, 1e5, "dose_per_frame_e_per_A2", "e/Å²", lo_open=True)
        if self.dose_rate_e_per_A2_per_s is not None:
            check_range(self.dose_rate_e_per_A2_per_s, 0, 1e7, "dose_rate_e_per_A2_per_s", "e/Å²/s", lo_open=True)
            check_range(self.dose_per_frame, 0, 1e5, "dose per frame (dose_rate · exposure_fraction / frame_rate)",
                        "e/Å²", lo_open=True)
        check_range(self.sampling, 0.05, 2.0, "sampling", "Å")
        check_range(self.field_px, 16, 8192, "field_px")
        require(self.field_px * self.sampling <= MAX_FIELD_A,
                f"field_px · sampling = {self.field_px} · {self.sampling} = "
                f"{self.field_px * self.sampling:.0f} Å is more than {MAX_FIELD_A:.0f} Å (300 nm), not a "
                "liquid-cell frame of one particle; reduce field_px")
        check_range(self.box_size_px, 16, 512, "box_size_px")
        require(self.box_size_px <= self.field_px,
                f"box_size_px = {self.box_size_px} must not exceed field_px = {self.field_px}")
        check_range(self.substeps, 1, 64, "substeps")

    @property
    def dose_per_frame(self) -> float:
        """The dose per frame actually used, e⁻/Å²."""
        if self.dose_rate_e_per_A2_per_s is not None:
            return self.dose_rate_e_per_A2_per_s * self.exposure_fraction / self.frame_rate_hz
        return self.dose_per_frame_e_per_A2


@dataclass(frozen=True)
class ThermalConfig:
    """Thermal displacements drawn from each atom's U at every sub-step.

    Attributes
    ----------
    enabled
        Switch (off: atoms sit at their mean positions).
    scale
        Multiplies the displacements (1: exactly N(0, U)).
    """

    enabled: bool = True
    scale: float = 1.0

    def validate(self) -> None:
        require(self.scale >= 0, f"scale = {self.scale} must be >= 0")


@dataclass(frozen=True)
class OutputConfig:
    """Optional outputs.

    Attributes
    ----------
    montage
        Write ``montage.png`` (raw frames above their noise-free counterparts).
    montage_frames
        Number of evenly spaced frames in the montage.
    """

    montage: bool = True
    montage_frames: int = 5

    def validate(self) -> None:
        require(1 <= self.montage_frames <= 16, f"montage_frames = {self.montage_frames} must be in [1, 16]")


@dataclass(frozen=True)
class SeriesConfig:
    """Everything that defines a series apart from the particle and the seed (TOML tables of the same names)."""

    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    liquid: LiquidConfig = field(default_factory=LiquidConfig)
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    dissolution: DissolutionConfig = field(default_factory=DissolutionConfig)
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            sub = getattr(self, f.name)
            check = getattr(sub, "validate", None)
            if callable(check):
                try:
                    check()
                except TumblebenchError as exc:
                    raise TumblebenchError(f"[{f.name}] {exc}") from None


def series_trajectory(config: SeriesConfig, seed: int) -> Trajectory:
    """The Brownian trajectory of the series ``config`` and ``seed`` (poses, shifts, heights, liquid thickness):
    the same path :func:`simulate_series` images, without building the particle or imaging a frame.

    Its heights set each frame's defocus, ``config.imaging.optics.defocus_A + heights`` (Å; negative is overfocus).
    """
    acq = config.acquisition
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    return simulate_trajectory(config.dynamics, config.liquid, acq.n_frames, acq.frame_rate_hz, acq.substeps, rng,
                               acq.exposure_fraction)


def with_overrides(config: SeriesConfig, *, mode: str | None = None, n_frames: int | None = None,
                   dose_per_frame: float | None = None) -> SeriesConfig:
    """``config`` with the command-line overrides applied and validated.

    Parameters
    ----------
    config
        Base configuration.
    mode
        Imaging mode (``multislice``, ``phase-object`` or ``projection``).
    n_frames
        Number of frames.
    dose_per_frame
        Dose per frame, e⁻/Å² (clears any dose rate).
    """
    acq = config.acquisition
    if n_frames is not None:
        acq = dataclasses.replace(acq, n_frames=int(n_frames))
    if dose_per_frame is not None:
        acq = dataclasses.replace(acq, dose_per_frame_e_per_A2=float(dose_per_frame), dose_rate_e_per_A2_per_s=None)
    imaging = config.imaging
    if mode is not None:
        imaging = dataclasses.replace(imaging, mode=mode)
        check = getattr(imaging, "validate", None)
        if callable(check):
            check()
    out = dataclasses.replace(config, acquisition=acq, imaging=imaging)
    out.validate()
    return out


# ------------------------------------------------------------------------------------------ memory


def series_memory_bytes(config: SeriesConfig, radius_A: float, workers: int = 1) -> dict[str, float]:
    """Estimated peak resident memory of a series, bytes, by part (checked before anything is allocated).

    Parameters
    ----------
    config
        Series configuration.
    radius_A
        Particle radius (Å, :func:`tumblebench.simulator.truth_map.particle_radius`).
    workers
        Processes rendering frames.

    Returns
    -------
    dict
        ``process`` (per process: the interpreter, the libraries and the compiled kernels, 0.6 GB), ``field``
        (per process: the field's frequency grids, both graphene sheets and their spectra, a frame's
        background layers and temporaries, and the cache of up to 65 complex64 lens transfers, ≈ 1,300 B per
        field pixel), ``graphene_lattice`` (per process, transient: the lattice grid
        :func:`tumblebench.simulator.liquid_cell.graphene_positions` builds to cover the field, ≈ 160 B per
        cell), ``window`` (per process: the sub-steps' slice potentials on the oversampled window, ≈ 40 B per
        point), ``main`` (the trajectory, ≈ 200 B per sub-step, and the truth map, ≈ 40 B per voxel) and
        ``total``.
    """
    acq = config.acquisition
    img = config.imaging
    p = acq.sampling
    f2 = float(acq.field_px) ** 2
    field = 1300.0 * f2
    extent = acq.field_px * p
    a = 2.46  # graphene lattice constant, Å
    n = math.ceil((math.hypot(extent, extent) + 2 * a) / (a * math.sqrt(3) / 2)) + 2
    lattice = 160.0 * (2 * n + 1) ** 2 if img.liquid_cell.enabled and img.liquid_cell.graphene else 0.0
    span = 2.0 * radius_A + 2.0 * img.window_margin_A
    w_det = max(16, math.ceil(span / p))
    w_int = math.ceil(w_det * img.oversampling)
    n_slices = max(1, math.ceil(2.0 * radius_A / img.slice_thickness_A) + 1) if img.mode == "multislice" else 1
    window = 40.0 * acq.substeps * n_slices * w_int**2
    if img.mode == "projection":
        window = 40.0 * f2
    main = 200.0 * 2 * acq.substeps * acq.n_frames + 40.0 * float(acq.box_size_px) ** 3
    per_worker = PROCESS_BYTES + field + lattice + window
    n = max(1, int(workers))
    # with workers the main process only streams frames to disk: it holds the trajectory and the truth map
    total = (PROCESS_BYTES + main if n > 1 else main) + n * per_worker
    return {"process": PROCESS_BYTES, "field": field, "graphene_lattice": lattice, "window": window, "main": main,
            "total": total}


def check_series_memory(config: SeriesConfig, radius_A: float, workers: int = 1) -> None:
    """Refuse a series whose :func:`series_memory_bytes` exceeds the available memory (one line: what to reduce)."""
    est = series_memory_bytes(config, radius_A, workers)
    biggest = max(("field", "graphene_lattice", "window", "main"), key=lambda k: est[k])
    hint = {"field": "acquisition.field_px (or the rendering workers)",
            "graphene_lattice": "acquisition.field_px or acquisition.sampling (the field in Å the graphene "
                                "sheets cover)",
            "window": "imaging.oversampling, acquisition.substeps or the particle size",
            "main": "acquisition.n_frames or acquisition.box_size_px"}[biggest]
    check_memory(est["total"], f"simulate ({max(1, int(workers))} rendering process(es))", hint)


# ------------------------------------------------------------------------------------------ simulation


@dataclass
class _Held:
    """Atom positions held during a series (one row per atom and site), as the truth map reads a particle."""

    positions: np.ndarray
    symbols: list[str]
    U: np.ndarray


class SeriesSimulation:
    """A series whose every frame can be rendered independently (and so in parallel).

    Everything sequential is drawn up front: the rigid-body path and, if enabled, the dissolution history
    (it depends on the dose only). Each frame then draws its thermal displacements, water layer and detector
    noise from its own generator, ``SeedSequence(seed, spawn_key=(2, frame))``, so a frame's bytes do not
    depend on the order in which frames are rendered or on how many processes render them.

    Parameters
    ----------
    nc
        The particle (:class:`tumblebench.simulator.nanocrystal.Nanocrystal`).
    config
        Series configuration.
    seed
        Seed of every random draw.

    Raises
    ------
    TumblebenchError
        Unknown element, pixel too coarse for the band limit, particle larger than the box or leaving the
        field of view, non-positive dose.
    """

    def __init__(self, nc, config: SeriesConfig, seed: int) -> None:
        config.validate()
        self.config = config
        self.seed = check_seed(seed)
        acq = config.acquisition
        check_series_memory(config, particle_radius(nc))
        symbols = list(nc.symbols)
        table = getattr(config.imaging, "table", "peng")
        for el in sorted(set(symbols)):
            try:
                gaussian_coefficients(el, "peng")  # the truth map
                form_factor(el, np.zeros(1), table)  # the imaging
            except (TumblebenchError, KeyError) as exc:
                raise TumblebenchError(f"structure: element {el!r} has no scattering factors ({exc})") from None
        self.positions = particle_frame_positions(nc)
        self.symbols = np.asarray(symbols)
        self.factors_U = np.asarray(nc.U, float).reshape(-1, 3, 3)
        self.factors = displacement_factors(self.factors_U)
        self.radius = particle_radius(nc)
        check_fits_box(nc, acq.box_size_px, acq.sampling, "acquisition.box_size_px")
        self.shape = (acq.field_px, acq.field_px)
        self.imager = Imager(config.imaging, self.shape, acq.sampling)
        self.band_limit_A = float(self.imager.band_limit_A)
        if not self.band_limit_A > 2.0 * acq.sampling:
            raise TumblebenchError(
                f"acquisition.sampling = {acq.sampling} Å is too coarse for the imaging band limit "
                f"{self.band_limit_A:.3f} Å (needs a pixel < {self.band_limit_A / 2:.4f} Å)"
            )
        self.dose = float(acq.dose_per_frame)
        # dissolution history (sequential, dose-driven): removed_frame[i] = first frame without atom i
        self.removed_frame = np.full(len(symbols), -1, dtype=np.int64)
        #: (frame, atom, event, x, y, z): dissolutions (last position) and hops (new position), particle frame
        self.events: list[tuple[int, int, str, float, float, float]] = []
        self._hop_frame = np.empty(0, dtype=np.int64)
        self._hop_atom = np.empty(0, dtype=np.int64)
        self._hop_pos = np.empty((0, 3))
        if config.dissolution.enabled:
            diss = Dissolution(self.positions, config.dissolution)
            rng_diss = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
            rng_hop = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(3,)))
            hops: list[tuple[int, int, np.ndarray]] = []
            for f in range(acq.n_frames):
                left = diss.step(self.dose, f, rng_diss)
                self.events.extend((f, int(i), "dissolved", *map(float, diss.positions[i])) for i in left)
                for atom, site in diss.hop(self.dose, f, rng_hop):
                    hops.append((f, atom, site))
                    self.events.append((f, atom, "hopped", *map(float, site)))
            self.removed_frame = diss.removed_frame.copy()
            if hops:
                self._hop_frame = np.array([h[0] for h in hops], dtype=np.int64)
                self._hop_atom = np.array([h[1] for h in hops], dtype=np.int64)
                self._hop_pos = np.array([h[2] for h in hops])
        if self._hop_frame.size:  # adatoms may stick out: the box and the field must hold them too
            held = self.held()
            self.radius = max(self.radius, particle_radius(held, np.zeros(3)))
            check_fits_box(held, acq.box_size_px, acq.sampling, "acquisition.box_size_px (with hops)",
                           np.zeros(3))
        self.trajectory = series_trajectory(config, self.seed)
        self._check_field()
        lost = np.bincount(self.removed_frame[self.removed_frame >= 0], minlength=acq.n_frames)
        #: atoms present in each frame
        self.n_present = len(symbols) - np.cumsum(lost)[: acq.n_frames]
        self._next = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["imager"] = None  # rebuilt in the worker (caches stay local)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        acq = self.config.acquisition
        self.imager = Imager(self.config.imaging, self.shape, acq.sampling)

    def _check_field(self) -> None:
        acq = self.config.acquisition
        half = (acq.field_px // 2 - 1) * acq.sampling
        reach = np.abs(self.trajectory.sub_shifts).max(axis=(1, 2)) + self.radius + 2.0
        out = np.flatnonzero(reach > half)
        if out.size:
            f = int(out[0])
            raise TumblebenchError(
                f"acquisition.field_px = {acq.field_px}: the particle (reach {reach[f]:.1f} Å from the field "
                f"centre) leaves the {half:.1f} Å half-field at frame {f}; enlarge the field or reduce "
                "dynamics.translation (confinement_A, drift_A_per_s)"
            )

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.config.acquisition.n_frames

    def present(self, frame: int) -> np.ndarray:
        """(N,) bool: the atoms present in ``frame``."""
        return (self.removed_frame < 0) | (self.removed_frame > frame)

    def positions_at(self, frame: int) -> np.ndarray:
        """(N, 3) mean atom positions (particle frame, Å) during ``frame``, after the hops up to it."""
        k = int(np.searchsorted(self._hop_frame, frame, side="right"))
        if k == 0:
            return self.positions
        pos = self.positions.copy()
        for atom, site in zip(self._hop_atom[:k], self._hop_pos[:k], strict=True):
            pos[atom] = site
        return pos

    def truth_segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (atom, position) the series held, with the fraction of the frames it held it.

        Returns
        -------
        atoms, positions, fractions
            (M,) atom indices, (M, 3) particle-frame positions (Å), (M,) fraction of the series' frames.
        """
        n_atoms = len(self.positions)
        seg_atom = list(range(n_atoms))
        seg_pos = list(self.positions)
        seg_start = [0] * n_atoms
        seg_stop: list[int | None] = [None] * n_atoms
        current = list(range(n_atoms))
        for f, atom, site in zip(self._hop_frame, self._hop_atom, self._hop_pos, strict=True):
            seg_stop[current[atom]] = int(f)
            current[atom] = len(seg_atom)
            seg_atom.append(int(atom))
            seg_pos.append(site)
            seg_start.append(int(f))
            seg_stop.append(None)
        end = np.where(self.removed_frame >= 0, self.removed_frame, self.n_frames)
        atoms = np.array(seg_atom, dtype=np.int64)
        stop = np.array([end[a] if e is None else e for a, e in zip(seg_atom, seg_stop, strict=True)])
        frac = np.clip(stop - np.array(seg_start), 0, None) / self.n_frames
        return atoms, np.array(seg_pos), frac

    def held(self) -> _Held:
        """Every position an atom held during the series, as a particle for :func:`render_truth_map`."""
        seg_atoms, seg_pos, _ = self.truth_segments()
        return _Held(seg_pos, [str(x) for x in self.symbols[seg_atoms]], self.factors_U[seg_atoms])

    def frame_rngs(self, frame: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
        """The frame's own generators (thermal, imaging, detector)."""
        ss = np.random.SeedSequence(self.seed, spawn_key=(2, int(frame)))
        return tuple(np.random.default_rng(c) for c in ss.spawn(3))  # type: ignore[return-value]

    def lab_positions(self, frame: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Lab-frame atom positions of the present atoms at the frame's sub-steps, (S, N, 3) Å.

        Thermal displacements are drawn from N(0, U) in the particle frame and rotated with each sub-step's
        pose. x, y are relative to the field centre; z relative to the particle's mid-exposure height (the
        frame's height enters through the defocus offset, see the module docstring).
        """
        tr = self.trajectory
        present = self.present(frame)
        therm = self.config.thermal
        scale = therm.scale if therm.enabled else 0.0
        rng = self.frame_rngs(frame)[0] if rng is None else rng
        snaps = thermal_positions(self.positions_at(frame)[present], self.factors[present],
                                  self.config.acquisition.substeps, rng, scale)
        lab = np.einsum("sij,snj->sni", tr.sub_poses[frame], snaps)
        lab[..., 0] += tr.sub_shifts[frame, :, 0, None]
        lab[..., 1] += tr.sub_shifts[frame, :, 1, None]
        lab[..., 2] += (tr.sub_heights[frame] - tr.heights[frame])[:, None]
        return lab

    def render(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Render frame ``frame``; return (noise-free intensity (ny, nx) float64, counts float32)."""
        require(0 <= frame < self.n_frames, f"series: frame {frame} outside 0..{self.n_frames - 1}")
        rng_thermal, rng_imaging, rng_detector = self.frame_rngs(frame)
        lab = self.lab_positions(frame, rng_thermal)
        intensity = self.imager.intensity(lab, list(self.symbols[self.present(frame)]),
                                          defocus_offset_A=float(self.trajectory.heights[frame]),
                                          liquid_thickness_A=float(self.trajectory.thickness[frame]),
                                          rng=rng_imaging)
        counts = detect(intensity, self.dose, self.config.acquisition.sampling, rng_detector,
                        self.config.detector)
        return intensity, np.asarray(counts, dtype=np.float32)

    def next_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Render the frame after the last one rendered by this method (see :meth:`render`)."""
        out = self.render(self._next)
        self._next += 1
        return out

    def occupancy(self) -> np.ndarray:
        """(N,) fraction of the series' frames in which each atom was present."""
        gone = np.where(self.removed_frame >= 0, self.removed_frame, self.n_frames)
        return gone / self.n_frames

    def star_tables(self, stack_name: str = "frames.mrcs") -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``data_optics`` and ``data_particles`` tables of the series (truth of every frame)."""
        acq = self.config.acquisition
        optics_cfg = self.config.imaging.optics
        tr = self.trajectory
        n = self.n_frames
        with warnings.catch_warnings():  # gimbal lock at tilt 0/180 is handled by setting psi = 0
            warnings.simplefilter("ignore", UserWarning)
            ang = euler_angles(tr.poses).reshape(n, 3)
        c = acq.field_px // 2
        base = float(optics_cfg.defocus_A) + tr.heights
        astig = float(getattr(optics_cfg, "astigmatism_A", 0.0))
        angle = float(getattr(optics_cfg, "astigmatism_angle_deg", 0.0))
        optics = pd.DataFrame({
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnVoltage": [float(optics_cfg.voltage_kv)],
            "rlnSphericalAberration": [float(optics_cfg.cs_mm)],
            "rlnAmplitudeContrast": [0.0],
            "rlnImagePixelSize": [acq.sampling],
            "rlnImageSize": [acq.field_px],
            "rlnImageDimensionality": [2],
            "tbMode": [str(self.config.imaging.mode)],
            "tbBoxSize": [acq.box_size_px],
        })
        particles = pd.DataFrame({
            "rlnImageName": image_names(n, stack_name),
            "rlnAngleRot": ang[:, 0],
            "rlnAngleTilt": ang[:, 1],
            "rlnAnglePsi": ang[:, 2],
            "rlnCoordinateX": c + tr.shifts[:, 0] / acq.sampling,
            "rlnCoordinateY": c + tr.shifts[:, 1] / acq.sampling,
            "rlnOriginXAngst": np.zeros(n),
            "rlnOriginYAngst": np.zeros(n),
            "rlnDefocusU": base + astig / 2.0,
            "rlnDefocusV": base - astig / 2.0,
            "rlnDefocusAngle": np.full(n, angle),
            "rlnOpticsGroup": np.ones(n, dtype=np.int64),
            "tbTime": tr.times,
            "tbDose": np.full(n, self.dose),
            "tbCumulativeDose": self.dose * np.arange(1, n + 1),
            "tbLiquidThickness": tr.thickness,
            "tbHeight": tr.heights,
            "tbRotationalDiffusion": tr.rotational_diffusion,
            "tbAtomsPresent": self.n_present,
        })
        return optics, particles


# -------------------------------------------------------------------------------------------- outputs


def expected_counts(intensity: np.ndarray, dose_e_per_A2: float, sampling: float,
                    detector: DetectorConfig) -> np.ndarray:
    """Noise-free counts of a frame: intensity blurred by the detector MTF × dose × pixel area (float32)."""
    img = np.asarray(intensity, dtype=np.float64)
    if getattr(detector, "mtf", "none") != "none":
        img = scipy.fft.irfft2(scipy.fft.rfft2(img, workers=-1) * mtf_2d(img.shape, detector), s=img.shape,
                               workers=-1)
    return (img * dose_e_per_A2 * sampling**2).astype(np.float32)


def save_montage(raw: list[np.ndarray], clean: list[np.ndarray], labels: list[str], path: str | Path,
                 title: str = "") -> None:
    """Save a PNG montage: raw frames (top row) above their noise-free expected counts (bottom row).

    Parameters
    ----------
    raw, clean
        Equal-length lists of 2D frames (counts).
    labels
        One caption per column.
    path
        Output PNG.
    title
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(raw)
    fig, axes = plt.subplots(2, k, figsize=(2.6 * k, 6.0), squeeze=False, gridspec_kw={"hspace": 0.25})
    for j in range(k):
        for row, (img, name) in enumerate(((raw[j], "raw"), (clean[j], "noise-free"))):
            ax = axes[row, j]
            lo, hi = np.percentile(img, [0.5, 99.5])
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{labels[j]} {name}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9 if title else 0.95, wspace=0.05)
    fig.savefig(path, dpi=110)
    plt.close(fig)


_WORKER_SIM: SeriesSimulation | None = None


def _init_worker(state_path: str, parent_pid: int) -> None:
    # the simulation (tens of MB of sub-step positions) is read from a file, not sent through the process
    # start-up pipe: a child that dies while starting would otherwise leave the parent blocked on that pipe
    global _WORKER_SIM
    end_with_parent(parent_pid)
    with open(state_path, "rb") as fh:
        _WORKER_SIM = pickle.load(fh)


def _dump_state(sim: SeriesSimulation, directory: str) -> str:
    path = os.path.join(directory, "simulation.pickle")
    with open(path, "wb") as fh:
        pickle.dump(sim, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _render_in_worker(task: tuple[int, bool]) -> tuple[int, np.ndarray, np.ndarray | None]:
    frame, keep_intensity = task
    assert _WORKER_SIM is not None
    intensity, counts = _WORKER_SIM.render(frame)
    return frame, counts, (intensity if keep_intensity else None)


def _default_workers(n_frames: int) -> int:
    if multiprocessing.current_process().daemon:  # e.g. inside a Dask or multiprocessing worker: no children
        return 1
    return max(1, min(available_cores(), 8)) if n_frames >= 64 else 1


def simulate_series(nc, config: SeriesConfig, seed: int, out_dir: str | Path, overwrite: bool = False,
                    progress: bool = True, inputs: dict[str, str] | None = None,
                    workers: int | None = None,
                    on_frame: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                    simulation: SeriesSimulation | None = None) -> Path:
    """Simulate a tumbling-particle series and write it to ``out_dir``.

    Parameters
    ----------
    nc
        The particle (:class:`tumblebench.simulator.nanocrystal.Nanocrystal`), positions in the particle frame.
    config
        Series configuration.
    seed
        Seed of every random draw; the same seed gives the same bytes (whatever ``workers``).
    out_dir
        Output directory (created atomically: nothing is left behind on error or interrupt).
    overwrite
        Replace an existing ``out_dir``.
    progress
        Show a tqdm progress bar on stderr (only when stderr is a terminal).
    inputs
        Input files to record in the manifest.
    workers
        Processes rendering frames in parallel (default: the available cores for series of ≥ 64 frames,
        else 1; always 1 inside a daemonic worker process). Frames are streamed to ``frames.mrcs`` in order
        as they arrive. The workers are started with the ``spawn`` method, so a script that calls this with
        more than one worker must guard its top level with ``if __name__ == "__main__":``.
    on_frame
        Called in frame order as ``on_frame(frame, counts, noise_free)`` with each frame's counts and its
        noise-free expected counts (both float32 (ny, nx); :func:`expected_counts`): denoising pairs at the
        cost of one detector-MTF filter per frame.
    simulation
        The :class:`SeriesSimulation` of ``nc``, ``config`` and ``seed`` if the caller already made it (to read
        its trajectory); built here otherwise.

    Returns
    -------
    Path
        ``out_dir``. It holds ``frames.mrcs``, ``frames.star``, ``truth_map.mrc``, ``atom_events.csv``,
        ``montage.png`` (if enabled) and ``manifest.json``.

    Raises
    ------
    TumblebenchError
        Bad configuration or particle (see :class:`SeriesSimulation`), or an existing ``out_dir``.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    config.validate()
    n = config.acquisition.n_frames
    n_workers = _default_workers(n) if workers is None else max(1, int(workers))
    if multiprocessing.current_process().daemon:
        n_workers = 1
    check_series_memory(config, particle_radius(nc), n_workers)
    # validates everything before anything is written
    sim = SeriesSimulation(nc, config, seed) if simulation is None else simulation
    acq = config.acquisition
    k = min(config.output.montage_frames, n)
    montage_idx = set(np.unique(np.linspace(0, n - 1, k).round().astype(int)).tolist())
    raw_m: list[np.ndarray] = []
    clean_m: list[np.ndarray] = []
    with atomic_output_dir(out_dir, overwrite) as tmp:
        bar = tqdm(total=n, unit="frame", desc="simulate", file=sys.stderr, dynamic_ncols=True,
                   disable=not (progress and sys.stderr.isatty()))
        with MrcStackWriter(tmp / "frames.mrcs", n, acq.field_px, acq.field_px, acq.sampling) as writer:

            def consume(f: int, counts: np.ndarray, intensity: np.ndarray | None) -> None:
                writer.write(f, counts[None])
                if on_frame is not None and intensity is not None:
                    on_frame(f, counts, expected_counts(intensity, sim.dose, acq.sampling, config.detector))
                if f in montage_idx and intensity is not None:
                    raw_m.append(counts.copy())
                    clean_m.append(expected_counts(intensity, sim.dose, acq.sampling, config.detector))
                bar.update(1)

            if n_workers > 1:
                # an executor, not a Pool: a worker that dies raises BrokenProcessPool instead of hanging
                ctx = multiprocessing.get_context("spawn")
                # the workers' start-up state lives in the hidden output directory (removed with it on any
                # failure, or by the next run after a SIGKILL), not in /tmp where a killed run would leave it
                state_dir = tmp / ".worker-state"
                state_dir.mkdir()
                try:
                    pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker,
                                               initargs=(_dump_state(sim, str(state_dir)), os.getpid()))
                    try:
                        tasks = [(f, on_frame is not None or f in montage_idx) for f in range(n)]
                        for f, counts, intensity in pool.map(_render_in_worker, tasks, chunksize=4):
                            consume(f, counts, intensity)
                    except BaseException:
                        stop_workers(pool)
                        raise
                    pool.shutdown(wait=True)
                except BrokenProcessPool as exc:
                    raise TumblebenchError(
                        f"a frame-rendering worker process died ({exc}); a script that calls simulate_series "
                        "must guard its top level with `if __name__ == \"__main__\":` (workers are started with "
                        "'spawn' and import the script), or pass workers=1") from exc
                finally:
                    shutil.rmtree(state_dir, ignore_errors=True)
            else:
                for f in range(n):
                    intensity, counts = sim.render(f)
                    consume(f, counts, intensity)
        bar.close()
        optics, particles = sim.star_tables("frames.mrcs")
        write_star(tmp / "frames.star", optics, particles)
        # the imaging's own scattering factors where they are a Gaussian sum (peng, peng6); Peng's otherwise
        truth_table = config.imaging.table if config.imaging.table in GAUSSIAN_TABLES else "peng"
        truth = render_truth_map(sim.held(), acq.box_size_px, acq.sampling, sim.band_limit_A,
                                 occupancy=sim.truth_segments()[2], centre=np.zeros(3), table=truth_table)
        write_volume(tmp / "truth_map.mrc", truth, acq.sampling)
        with (tmp / "atom_events.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["frame", "atom_index", "event", "x_A", "y_A", "z_A"])
            w.writerows([(f, a, e, f"{x:.4f}", f"{y:.4f}", f"{z:.4f}") for f, a, e, x, y, z in sim.events])
        if config.output.montage:
            labels = [f"frame {i + 1}" for i in sorted(montage_idx)]
            save_montage(raw_m, clean_m, labels, tmp / "montage.png",
                         f"{len(sim.positions)} atoms, {config.imaging.mode}, {sim.dose:.1f} e/Å² per frame "
                         f"({sim.dose * acq.sampling**2:.1f} e/px), {acq.sampling} Å/px")
        write_manifest(
            tmp, "simulate", to_dict(config), seed, inputs,
            n_atoms=len(sim.positions),
            n_frames=n,
            dose_per_frame_e_per_A2=sim.dose,
            dose_per_pixel_per_frame=sim.dose * acq.sampling**2,
            total_dose_e_per_A2=sim.dose * n,
            band_limit_A=sim.band_limit_A,
            truth_map={"box_size": acq.box_size_px, "voxel_size_A": acq.sampling,
                       "resolution_A": sim.band_limit_A, "centre_index": acq.box_size_px // 2,
                       "table": truth_table},
            atoms_lost=len(sim.events),
            outputs=[*sorted(p.name for p in tmp.iterdir()), "manifest.json"],
        )
    return out_dir
