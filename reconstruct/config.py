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

from tumblebench.reconstruct.abinitio import AbInitioConfig
from tumblebench.reconstruct.background import BackgroundConfig
from tumblebench.reconstruct.density import DensityConfig
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


def reconstruct_memory_bytes(n_frames: int, ny: int, nx: int, config: ReconstructConfig) -> dict[str, float]:
    """Estimated peak resident memory of a reconstruction, bytes, by part (from the stack's header only).

    Parameters
    ----------
    n_frames, ny, nx
        Shape of the frame stack.
    config
        The reconstruction's configuration.

    Returns
    -------
    dict
        ``process`` (:data:`tumblebench.simulator.config.PROCESS_BYTES`), ``boxes`` (the boxes cut around the
        particle, float32, and their normalised copy: 8 B per box pixel), ``chunk`` (one chunk of
        ``tracking.chunk`` full frames with their float32 copy and complex128 transforms, ≈ 40 B per pixel),
        ``volumes`` (about six padded complex64 transforms of the box, the references and back-projection
        accumulators of both half sets: 48 B per padded voxel) and ``total``.
    """
    boxes = 8.0 * n_frames * config.box**2
    chunk = 40.0 * min(n_frames, config.tracking.chunk) * ny * nx
    pad = max(2, int(config.refine.pad))
    volumes = 48.0 * float(pad * config.box) ** 3
    return {"process": PROCESS_BYTES, "boxes": boxes, "chunk": chunk, "volumes": volumes,
            "total": PROCESS_BYTES + boxes + chunk + volumes}


def check_reconstruct_memory(n_frames: int, ny: int, nx: int, config: ReconstructConfig) -> None:
    """Refuse a reconstruction whose :func:`reconstruct_memory_bytes` exceeds the available memory."""
    est = reconstruct_memory_bytes(n_frames, ny, nx, config)
    biggest = max(("boxes", "chunk", "volumes"), key=lambda k: est[k])
    hint = {"boxes": "the number of frames or --box", "chunk": "tracking.chunk",
            "volumes": "--box (box)"}[biggest]
    check_memory(est["total"], f"reconstruct ({n_frames} frames of {nx}×{ny} px, box {config.box})", hint)
