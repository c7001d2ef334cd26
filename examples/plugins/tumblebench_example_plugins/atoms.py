"""An atom detector built on ``skimage.feature.peak_local_max``: local maxima of the map above a noise level."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max

from tumblebench.stages import AtomDetection, AtomsInput

#: Nearest-neighbour distances (Å) of the fcc metals this example knows.
NN_DISTANCE_A = {"Pt": 2.775, "Au": 2.884, "Pd": 2.751, "Ag": 2.889, "Cu": 2.556, "Ni": 2.492, "Ir": 2.715,
                 "Rh": 2.690}


class PeakLocalMaxDetector:
    """Atoms at the local maxima of the lightly smoothed map.

    Parameters
    ----------
    smooth_A
        Gaussian σ (Å) of the smoothing before the peak search.
    min_separation
        Fraction of the element's nearest-neighbour distance two peaks must be apart.
    z_threshold
        Peaks below the map's median plus this many robust standard deviations (MAD) are noise.
    """

    def __init__(self, smooth_A: float = 0.3, min_separation: float = 0.6, z_threshold: float = 6.0):
        self.smooth_A, self.min_separation, self.z_threshold = smooth_A, min_separation, z_threshold

    def detect(self, data: AtomsInput) -> AtomDetection:
        """Peak positions (x, y, z) in Å (voxel centres) and their heights in robust standard deviations."""
        v = float(data.sampling)
        vol = ndimage.gaussian_filter(np.asarray(data.volume, np.float32), self.smooth_A / v)
        med = float(np.median(vol))
        mad = 1.4826 * float(np.median(np.abs(vol - med))) or 1.0
        nn = NN_DISTANCE_A.get(data.element, 2.8)
        peaks = peak_local_max(vol, min_distance=max(1, int(self.min_separation * nn / v)),
                               threshold_abs=med + self.z_threshold * mad, exclude_border=False)
        z = (vol[tuple(peaks.T)] - med) / mad
        return AtomDetection(positions=peaks[:, ::-1].astype(np.float64) * v, scores=z.astype(np.float64),
                             info={"method": "peak_local_max", "threshold_z": self.z_threshold})
