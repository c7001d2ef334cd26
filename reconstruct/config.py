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

from reconstruct.abinitio import AbInitioConfig
from reconstruct.background import BackgroundConfig
from reconstruct.refine import RefineConfig
from reconstruct.timeresolved import TimeResolvedConfig
from reconstruct.tracking import TrackingConfig
from simulator.errors import require


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
    tracking, background, abinitio, refine, timeresolved
        Stage configurations.
    """

    box: int = 128
    poses: str = "abinitio"
    seed: int = 0
    diameter_A: float = 0.0
    min_frames: int = 50
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    abinitio: AbInitioConfig = field(default_factory=AbInitioConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    timeresolved: TimeResolvedConfig = field(default_factory=TimeResolvedConfig)

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
        require(self.min_frames >= 2, f"min_frames = {self.min_frames} must be >= 2")
