"""A fixed workload timed: how fast this machine runs the reconstruction's kind of work right now.

This machine's speed moves by 10–40 % from one hour to the next (``docs/measurements.md``), so a case's time says
as much about the hour as about the code. :func:`probe_s` times one fixed piece of the reconstruction's work, the
same bytes every time: 1,000 noise frames of 128 px inserted into a reconstructor (the gridding kernel, 2D FFTs)
and four 3D FFTs of 256³. ``suite_cases.run_case`` records it beside each case it runs (``machine_speed.json``), so
two runs made at different hours can be compared by their ratio to it. Run from the repository root::

    .venv/bin/python benchmarks/machine_speed.py          # prints the probe's seconds (best of 3)
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft

from tumblebench.reconstruct.projector import Reconstructor
from tumblebench.simulator.orientation import random_rotations


def probe_s(repeats: int = 3) -> float:
    """Wall seconds of the fixed workload (the best of ``repeats``, after one warm-up insert)."""
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((1000, 128, 128)).astype(np.float32)
    rots = random_rotations(1000, rng)
    shifts = rng.uniform(-2, 2, (1000, 2))
    vol = rng.standard_normal((256, 256, 256)).astype(np.complex64)
    Reconstructor(128).insert(frames[:64], rots[:64])  # compiled or loaded from numba's cache
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        Reconstructor(128).insert(frames, rots, shifts)
        v = vol
        for _ in range(4):
            v = scipy.fft.fftn(v, workers=-1)
        best = min(best, time.perf_counter() - t)
    return float(best)


if __name__ == "__main__":
    print(f"machine speed probe: {probe_s():.2f} s")
