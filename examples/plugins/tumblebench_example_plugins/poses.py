"""A pose estimator that ignores the data: uniformly random rotations (Haar measure on SO(3))."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from tumblebench.stages import PoseEstimate, PoseInput


class RandomPoses:
    """Uniformly random poses, one per box, from a generator seeded by the run's seed; the tracker's shifts.

    The floor of pose estimation: after the best global rotation the median angular error of random rotations
    is about 126° (the median of the angle's distribution (1 − cos θ)/π on [0, π]).
    """

    def estimate(self, data: PoseInput) -> PoseEstimate:
        """Random rotations (M, 3, 3), the input shifts and no scores (NaN)."""
        rng = np.random.default_rng(data.seed)
        m = len(data.boxes)
        poses = Rotation.random(m, random_state=rng).as_matrix()
        return PoseEstimate(poses=poses, shifts_px=np.asarray(data.shifts_px, np.float64).copy(),
                            scores=np.full(m, np.nan), info={"method": "random", "seed": data.seed})
