"""The built-in ab initio pose estimators share one base class (one subclass per method, as ASPIRE's
``CLOrient3D`` family does): :class:`AbInitioPoses`, implemented by
:class:`tumblebench.reconstruct.lattice.LatticePoses` (``lattice``, the default) and
:class:`tumblebench.reconstruct.abinitio.SpherePoses` (``sphere``).

Both use what is special about a Brownian series: successive frames differ by a small rotation, so a temporal
(Viterbi) pass through each frame's candidate poses with a penalty on the step between successive frames
(``step_deg``, ``continuity_weight``) picks the path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from tumblebench.stages import PoseEstimate, PoseInput


class AbInitioPoses(ABC):
    """Base of the built-in pose estimators (:class:`tumblebench.stages.PoseEstimator`).

    Parameters
    ----------
    step_deg
        Expected rotation between successive frames (deg): the scale of the continuity penalty.
    continuity_weight
        Weight of the penalty (angle/step)² relative to the frames' z-scored correlations; 0 disables it.
    """

    #: The registered name of the method.
    name: str = ""

    def __init__(self, step_deg: float = 5.0, continuity_weight: float = 0.3):
        self.step_deg = float(step_deg)
        self.continuity_weight = float(continuity_weight)

    def estimate(self, data: PoseInput) -> PoseEstimate:
        """Poses, shifts and per-frame scores of every box (:class:`tumblebench.stages.PoseEstimator`)."""
        poses, shifts, scores, info = self._estimate(data)
        return PoseEstimate(poses=np.asarray(poses, np.float64), shifts_px=np.asarray(shifts, np.float64),
                            scores=np.asarray(scores, np.float64), info=info)

    @abstractmethod
    def _estimate(self, data: PoseInput) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """(poses (M, 3, 3), shifts (M, 2) px, per-frame scores (M,), diagnostics) of the method."""

    @abstractmethod
    def steps(self) -> int:
        """How often the method advances ``data.progress`` (the progress bar's total)."""
