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
from tumblebench.simulator.errors import require


@dataclass(frozen=True)
class ReconstructConfig:
    """All stages of the reconstruction.

    Attributes
    ----------
    box
        Reconstruction box (pixels) at the frames' pixel size; 128 matches ``truth_map.mrc``.
    poses
        ``"abinitio"`` (unknown poses), ``"truth"`` (the STAR poses, oracle) or ``"truth+noise:DEG"``
        (the STAR poses perturbed by random rotations of DEG degrees rms angle, oracle).
    seed
        Seed of every random draw (ab initio starts, oracle noise).
    diameter_A
        Particle diameter (Å); 0 = estimate from the frames.
    min_frames
        Fewest usable frames accepted (fewer is an error).
    amplitude_contrast
        Amplitude-contrast fraction Q of the CTF model, CTF = −(√(1−Q²)·sin γ + Q·cos γ); −1 = the STAR's
        rlnAmplitudeContrast. Default 0.1, the value customary in RELION: a strongly scattering particle behind
        an aberration-corrected lens images its low frequencies through cos γ ≈ 1 (the objective aperture's
        loss of high-angle scattering and the second-order term of exp(iσv)), which a pure phase-contrast
        model (Q = 0) cannot account for. Measured on a 1,000-frame multislice series with true poses: FSC
        against the truth at 46 Å is −0.96 with Q = 0 and 0.99 with Q = 0.1 (0.25 gives the same as 0.1).
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
        require(self.diameter_A >= 0, f"diameter_A = {self.diameter_A} must be >= 0 (0 = estimate)")
        require(self.amplitude_contrast == -1 or 0 <= self.amplitude_contrast < 1,
                f"amplitude_contrast = {self.amplitude_contrast} must be in [0, 1) (or -1: the STAR's value)")
        require(self.min_frames >= 2, f"min_frames = {self.min_frames} must be >= 2")
        # the stages' own checks too: a config built in code or changed by a command-line flag
        # (dataclasses.replace) has not been through the TOML loader, which validates each table
        for stage in (self.tracking, self.background, self.abinitio, self.refine, self.timeresolved,
                      self.density):
            check = getattr(stage, "validate", None)
            if callable(check):
                check()
