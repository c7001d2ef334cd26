"""The reference models of two half maps at once: one in a helper process, one here.

The reconstruction asks the reference-model builder (e.g. :func:`tumblebench.analysis.reference.atom_reference`)
for two half maps at a time: every labelling pass of the lattice method and every model iteration of the
refinement. The builder spends most of its time in single-threaded numpy, so on two cores the pair built side by
side takes about the time of one. The helper runs the same function on the same bytes: the models are the same
as one after the other.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.processes import available_cores, end_with_parent, stop_workers
from tumblebench.stages import ReferenceModel

log = logging.getLogger("tumblebench.reconstruct")


def _attempt(model: ReferenceModel, vol: np.ndarray, sampling: float) -> np.ndarray | TumblebenchError:
    """``model(vol, sampling)``, or the :class:`TumblebenchError` it raised."""
    try:
        return model(vol, sampling)
    except TumblebenchError as exc:
        return exc


def _picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # a lambda, a closure, a bound method of an unpicklable object ...
        return False
    return True


class ReferenceModelPair:
    """A :data:`tumblebench.stages.ReferenceModel` that also builds two models side by side (:meth:`pair`).

    A context manager: its helper process starts with the first pair and ends on exit. Without a second core,
    inside a daemonic process (a Dask or multiprocessing worker) or for a builder that cannot be pickled (a lambda,
    a closure), the pair is built here, one model after the other.

    Parameters
    ----------
    model
        The reference-model builder, ``model(map, sampling_A) -> map``.
    """

    def __init__(self, model: ReferenceModel) -> None:
        self.model = model
        self._pool: ProcessPoolExecutor | None = None
        self._side_by_side = (available_cores() >= 2 and not multiprocessing.current_process().daemon
                              and _picklable(model))

    def __call__(self, vol: np.ndarray, sampling: float) -> np.ndarray:
        return self.model(vol, sampling)

    def pair(self, vols: Sequence[np.ndarray], sampling: float) -> list[np.ndarray | TumblebenchError]:
        """The models of ``vols`` (sampling in Å; the first in the helper, the others here), each the map or the
        :class:`TumblebenchError` its builder raised."""
        if not self._side_by_side or len(vols) < 2:
            return [_attempt(self.model, v, sampling) for v in vols]
        if self._pool is None:
            # spawn, not fork: the parent runs numba's and BLAS's thread pools, which a forked child inherits broken
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=end_with_parent, initargs=(os.getpid(),))
        there = self._pool.submit(_attempt, self.model, vols[0], sampling)
        here = [_attempt(self.model, v, sampling) for v in vols[1:]]
        try:
            first = there.result()
        except BrokenProcessPool as exc:
            # e.g. a script without an ``if __name__ == "__main__":`` guard, which a spawned process re-runs
            log.warning("reference-model helper process failed (%s); building the half maps' models one after the "
                        "other from now on (a script that calls reconstruct_series should guard its top level with "
                        "`if __name__ == \"__main__\":`)", exc)
            self.close()
            self._side_by_side = False
            first = _attempt(self.model, vols[0], sampling)
        return [first, *here]

    def close(self) -> None:
        """End the helper process (if it started)."""
        if self._pool is not None:
            stop_workers(self._pool)
            self._pool = None

    def __enter__(self) -> ReferenceModelPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def model_pair(model: ReferenceModel, vols: Sequence[np.ndarray], sampling: float
               ) -> list[np.ndarray | TumblebenchError]:
    """The models of maps ``vols`` (sampling in Å) by ``model``: two side by side when it is a
    :class:`ReferenceModelPair`, one after the other otherwise; each the map or the :class:`TumblebenchError` its
    builder raised."""
    if isinstance(model, ReferenceModelPair):
        return model.pair(vols, sampling)
    return [_attempt(model, v, sampling) for v in vols]
