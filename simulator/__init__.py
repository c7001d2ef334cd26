"""tumblebench.simulator: known-truth Pt nanocrystals and their liquid-cell TEM images.

The bottom layer of tumblebench. It owns the nanocrystal builder, scattering factors, the 3D atom density
model, the forward model (potentials, multislice, optics, detector, liquid cell, Brownian dynamics) and the
file formats every other package uses. It imports nothing from the other tumblebench packages.
"""

from tumblebench.simulator.errors import TumblebenchError

__version__ = "0.1.0"
__all__ = ["TumblebenchError", "__version__"]
