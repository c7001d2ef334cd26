"""Atomic-model references for refinement: trace the atoms of a (half) map, simulate the map they make.

A half map reconstructed from poses with errors of a few degrees is blurred by those errors, and refining the
poses against it keeps them where they are. The map simulated from the atoms traced in it has the atoms where
the map has them but none of the blur, so it can pull the poses further (``refine.model_iterations`` of
:mod:`tumblebench.reconstruct.refine`, which takes this builder as its ``reference_model``).
"""

from __future__ import annotations

import numpy as np

from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.model import atom_positions, simulate_map


def atom_reference(volume: np.ndarray, sampling: float, resolution_A: float = 0.9, u_iso_A2: float = 0.01,
                   config: AtomsConfig | None = None) -> np.ndarray:
    """The map simulated from the atomic model of ``volume``.

    Parameters
    ----------
    volume
        3D map [z, y, x], atoms positive (e.g. a Wiener-filtered half map).
    sampling
        Voxel edge (Å).
    resolution_A
        Band limit of the simulated map (Å).
    u_iso_A2
        Isotropic displacement (Å²) of every atom of the simulated map: sharp, but not sharper than a real
        particle at room temperature.
    config
        Atom model building parameters (:class:`tumblebench.analysis.config.AtomsConfig`; default: its defaults).

    Returns
    -------
    numpy.ndarray
        float32 map of ``volume``'s shape, potential in V.

    Raises
    ------
    TumblebenchError
        ``volume`` holds no particle or no atoms above noise (from :func:`tumblebench.analysis.model.atom_positions`).
    """
    cfg = config or AtomsConfig()
    positions = atom_positions(np.asarray(volume, np.float32), sampling, cfg, where="half map")
    return simulate_map(positions, tuple(volume.shape), sampling, cfg.element, u_iso_A2, resolution_A)
