"""Configuration of ``tumblebench reconstruct``: one dataclass per stage, loadable from TOML.

Example TOML::

    box = 128
    poses = "abinitio"
    [tracking]
    lowpass_A = 4.0
    [abinitio]
    n_starts = 3
    [refine]
    n_iter = 6
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tumblebench.reconstruct.abinitio import AbInitioConfig
from tumblebench.reconstruct.background import BackgroundConfig
from tumblebench.reconstruct.density import DensityConfig
from tumblebench.reconstruct.lattice import SEARCH_CHUNK
from tumblebench.reconstruct.refine import RefineConfig
from tumblebench.reconstruct.timeresolved import TimeResolvedConfig
from tumblebench.reconstruct.tracking import TrackingConfig
from tumblebench.simulator.config import PROCESS_BYTES, check_memory, check_seed
from tumblebench.simulator.errors import require
from tumblebench.simulator.series import MAX_FRAMES


@dataclass(frozen=True)
class ReconstructConfig:
    """All stages of the reconstruction.

    Attributes
    ----------
    box
        Reconstruction box (pixels) at the frames' pixel size; 128 matches ``truth_map.mrc``. Even, in
        [16, 512] (512³ maps with their padded transforms need tens of GB).
    poses
        ``"abinitio"`` (unknown poses), ``"truth"`` (the STAR poses, oracle) or ``"truth+noise:DEG"``
        (the STAR poses perturbed by random rotations of DEG degrees rms angle, oracle).
    seed
        Seed of every random draw (ab initio starts, oracle noise).
    diameter_A
        Particle diameter (Å); 0 = estimate from the frames; in [0, 500] (50 nm, far beyond a nanocrystal
        whose atoms this method resolves).
    min_frames
        Fewest usable frames accepted (fewer is an error), in [2, 100,000] (the longest series).
    amplitude_contrast
        Amplitude-contrast fraction Q of the CTF model, CTF = −(√(1−Q²)·sin γ + Q·cos γ); −1 = the STAR's
        rlnAmplitudeContrast. Default 0.1, the value customary in RELION: a strongly scattering particle behind
        an aberration-corrected lens images its low frequencies through cos γ ≈ 1 (the objective aperture's
        loss of high-angle scattering and the second-order term of exp(iσv)), which a pure phase-contrast
        model (Q = 0) cannot account for.
    flatten_solvent
        Multiply ``map.mrc`` (and the part maps) by the soft spherical mask of the particle (radius = estimated
        diameter/2 + ``refine.mask_margin_A``): the liquid around an isolated particle holds no structure,
        only residual background (graphene leakage, noise). Half maps are written unmasked.
    tracking, background, abinitio, refine, timeresolved, density
        Stage configurations (``density``: the density modification of ``map.mrc``,
        :class:`tumblebench.reconstruct.density.DensityConfig`).
        Stage configurations.
    """

    box: int = 128
    poses: str = "abinitio"
    seed: int = 0
    diameter_A: float = 0.0
    min_frames: int = 50
    amplitude_contrast: float = 0.1
    flatten_solvent: bool = True
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    abinitio: AbInitioConfig = field(default_factory=AbInitioConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    timeresolved: TimeResolvedConfig = field(default_factory=TimeResolvedConfig)
    density: DensityConfig = field(default_factory=DensityConfig)

    def validate(self) -> None:
        require(16 <= self.box <= 512 and self.box % 2 == 0, f"box = {self.box} must be an even size in 16–512")
        require(self.poses in ("abinitio", "truth") or self.poses.startswith("truth+noise:"),
                f"poses = {self.poses!r} must be 'abinitio', 'truth' or 'truth+noise:DEG'")
        if self.poses.startswith("truth+noise:"):
            try:
                deg = float(self.poses.split(":", 1)[1])
            except ValueError:
                deg = -1.0
            require(deg >= 0, f"poses = {self.poses!r}: DEG must be a non-negative number of degrees")
        require(0 <= self.diameter_A <= 500, f"diameter_A = {self.diameter_A} must be in [0, 500] Å (0 = estimate)")
        check_seed(self.seed, "seed")
        require(self.amplitude_contrast == -1 or 0 <= self.amplitude_contrast < 1,
                f"amplitude_contrast = {self.amplitude_contrast} must be in [0, 1) (or -1: the STAR's value)")
        require(2 <= self.min_frames <= MAX_FRAMES, f"min_frames = {self.min_frames} must be in [2, {MAX_FRAMES}]")
        require(1 <= self.tracking.chunk <= 4096, f"tracking.chunk = {self.tracking.chunk} must be in [1, 4096] frames")
        # the stages' own checks too: a config built in code or changed by a command-line flag
        # (dataclasses.replace) has not been through the TOML loader, which validates each table
        for stage in (self.tracking, self.background, self.abinitio, self.refine, self.timeresolved,
                      self.density):
            check = getattr(stage, "validate", None)
            if callable(check):
                check()


#: Bytes per pixel of a chunk of full frames in the tracking stage: the float32 frames, their complex64 transform,
#: the complex128 products and inverse transforms of the correlation, the float32 correlation maps and their
#: running mean (the frame statistics before it need less).
TRACKING_BYTES_PER_PIXEL = 64
#: Bytes per voxel of the padded Fourier grid in the map stages: the two half-set accumulators and their sum
#: (complex64 samples + float32 weights, 12 B each) and the transients of one reconstruction (shell indices,
#: regularised weights, the divided transform, its shifted copies and inverse transform, 44 B).
VOLUME_BYTES_PER_VOXEL = 80
#: Bytes per frame of the tables kept for every frame whatever the stage (the STAR row as a pandas row with its
#: image name, the trajectory, poses, shifts and the per-frame results written to ``poses.star``).
TABLE_BYTES_PER_FRAME = 1000


def reconstruct_memory_bytes(n_frames: int, ny: int, nx: int, config: ReconstructConfig) -> dict[str, float]:
    """Estimated peak resident memory of a reconstruction, bytes, by part (from the stack's header only).

    The frames are read a chunk at a time and the boxes cut from them, like every other image-sized array per frame
    (the lattice method's cropped boxes, the refinement's continuity-sweep transforms), are kept in a scratch file
    and read back a chunk at a time. The peak is that of the largest stage plus what every frame keeps in memory.

    Parameters
    ----------
    n_frames, ny, nx
        Shape of the frame stack.
    config
        The reconstruction's configuration.

    Returns
    -------
    dict
        ``process`` (:data:`tumblebench.simulator.config.PROCESS_BYTES`), ``tracking`` (one chunk of
        ``tracking.chunk`` frames and the running-mean halo through the tracker,
        :data:`TRACKING_BYTES_PER_PIXEL`), ``volumes`` (the map stages, :data:`VOLUME_BYTES_PER_VOXEL` of the
        ``refine.pad``-times padded grid), ``per_frame`` (kept in memory for every frame: the tables,
        :data:`TABLE_BYTES_PER_FRAME`, the background stage's complex64 mean spectrum of every chunk of frames, and
        with unknown poses the pose search's per-frame arrays, :func:`pose_search_bytes_per_frame`) and ``total``
        = process + the larger stage + per_frame.
    """
    tracking = float(TRACKING_BYTES_PER_PIXEL) * min(n_frames, config.tracking.chunk + config.tracking.window_frames
                                                     - 1) * ny * nx
    pad = max(2, int(config.refine.pad))
    volumes = float(VOLUME_BYTES_PER_VOXEL) * float(pad * config.box) ** 3
    search = 0.0 if config.poses != "abinitio" else pose_search_bytes_per_frame(config)
    spectra = 8.0 * ny * nx / config.tracking.chunk  # the background stage's mean spectrum of every chunk
    per_frame = float(n_frames) * (TABLE_BYTES_PER_FRAME + spectra + search)
    return {"process": PROCESS_BYTES, "tracking": tracking, "volumes": volumes, "per_frame": per_frame,
            "total": PROCESS_BYTES + max(tracking, volumes) + per_frame}


def pose_search_bytes_per_frame(config: ReconstructConfig) -> float:
    """Bytes per frame that the ab initio pose search keeps in memory for the whole series (an upper bound).

    ``lattice``: the shell-whitened amplitudes on the search band (float32; the band is at most the half disc of
    the cropped box), their correlations with one chunk of grid poses
    (:data:`~tumblebench.reconstruct.lattice.SEARCH_CHUNK`, float32), the amplitude search's best 8·``top_k``
    poses (float32 score, int64 index), the ``top_k`` distinct peaks, the Viterbi pass's score and back-pointer of
    every branch mate of every peak (at most 48: the fcc prior's 24 rotations, each also turned 180° about the
    beam; float32 + int32), the labelling's branch mates (float64 matrices), their scores and its CTF on the
    labelling band (float32, same bound). ``sphere``
    (the featureless-model search) holds its cropped boxes, their transforms and CTFs in memory: 32 B per
    cropped pixel.
    """
    ab = config.abinitio
    if ab.method != "lattice":
        return 32.0 * min(ab.box, config.box) ** 2
    lc = ab.lattice
    ns = min(lc.box, config.box)
    half_disc = np.pi * (ns / 2) ** 2 / 2
    mates = 48
    return float(4 * half_disc + 4 * SEARCH_CHUNK + 8 * lc.top_k * 12 + lc.top_k * (12 + 72) + mates * lc.top_k * 8
                 + mates * (72 + 16) + 4 * half_disc + 4 * 72)


def check_reconstruct_memory(n_frames: int, ny: int, nx: int, config: ReconstructConfig) -> None:
    """Refuse a reconstruction whose :func:`reconstruct_memory_bytes` exceeds the available memory."""
    est = reconstruct_memory_bytes(n_frames, ny, nx, config)
    biggest = max(("per_frame", "tracking", "volumes"), key=lambda k: est[k])
    hint = {"per_frame": "the number of frames", "tracking": "tracking.chunk", "volumes": "--box (box)"}[biggest]
    check_memory(est["total"], f"reconstruct ({n_frames} frames of {nx}×{ny} px, box {config.box})", hint)
