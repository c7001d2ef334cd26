"""Time-resolved maps: the first and second half of a series (part1 / part2, as Wietfeldt et al. 2024 does), each
reconstructed from its own even/odd half sets with its FSC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumblebench.reconstruct.fsc import resolution_at
from tumblebench.reconstruct.refine import CtfFn, filtered_map, reconstruct_halves
from tumblebench.simulator.mrc import FrameFile


@dataclass(frozen=True)
class TimeResolvedConfig:
    """Configuration of the time-resolved maps.

    Attributes
    ----------
    parts
        Reconstruct the first and second half of the series (``part1``, ``part2``).
    """

    parts: bool = True

    def validate(self) -> None:
        """Nothing to check (a flag)."""


def windows(n_frames: int, config: TimeResolvedConfig) -> list[tuple[str, int, int]]:
    """(name, start, stop) frame ranges of the time-resolved maps of a series of ``n_frames``."""
    out = []
    if config.parts:
        h = n_frames // 2
        out += [("part1", 0, h), ("part2", h, n_frames)]
    return out


def time_resolved_maps(boxes: np.ndarray | FrameFile, frame_index: np.ndarray, poses: np.ndarray,
                       shifts_px: np.ndarray, sampling: float, n_frames: int, mask: np.ndarray,
                       config: TimeResolvedConfig,
                       ctf_fn: CtfFn | None = None, pad: int = 2, min_frames: int = 20, progress=None) -> dict:
    """Maps of the time windows of the series (:func:`windows`).

    Parameters
    ----------
    boxes
        (M, n, n) boxes of the usable frames (an array or a :class:`~tumblebench.simulator.mrc.FrameFile`).
    frame_index
        (M,) index of each box's frame in the series (time order).
    poses, shifts_px
        Refined poses (M, 3, 3) and origins (M, 2).
    sampling
        Å per pixel.
    n_frames
        Frames in the whole series (windows are defined on it).
    mask
        Soft mask for the half-map FSC.
    config
        :class:`TimeResolvedConfig`.
    ctf_fn
        CTF callable of the *usable-frame* indices, or None.
    min_frames
        Windows with fewer usable frames are skipped.

    Returns
    -------
    dict
        name → {"map", "half1", "half2", "freq", "fsc", "fsc_0.143_A", "frames": (start, stop), "n_used"}.
    """
    out = {}
    for name, start, stop in windows(n_frames, config):
        sel = np.flatnonzero((frame_index >= start) & (frame_index < stop))
        if sel.size < min_frames:
            continue
        halves = (np.arange(sel.size) % 2).astype(np.int64)
        sub_ctf = None if ctf_fn is None else (lambda idx, shape, sampling, _s=sel: ctf_fn(_s[idx], shape, sampling))
        sub = boxes.rows(sel) if isinstance(boxes, FrameFile) else boxes[sel]  # a view: read chunk by chunk
        r1, r2 = reconstruct_halves(sub, poses[sel], shifts_px[sel], halves, sub_ctf, sampling, pad)
        h1, h2, freq, curve, full = filtered_map(r1, r2, mask, sampling)
        out[name] = {"map": full, "half1": h1, "half2": h2, "freq": freq, "fsc": curve,
                     "fsc_0.143_A": resolution_at(freq, curve, 0.143), "frames": (start, stop), "n_used": sel.size}
        if progress is not None:
            progress(1)
    return out
