"""The training view of an item: one Zarr (v3) group per item, chunked by frame.

Layout of ``DIR/dataset.zarr/item_NNNNNN`` (every array readable with zarr-python alone; axes in the arrays'
``dimension_names``; conventions of :mod:`tumblebench.simulator.orientation`):

===========================  ===================  ================================================================
array                        shape, dtype         meaning
===========================  ===================  ================================================================
``frames``                   (F, Y, X) float32    the recorded frames (detector counts), as ``frames.mrcs``
``clean_frames``             (F, Y, X) float32    each frame's noise-free expected counts (denoising pairs)
``rotation``                 (F, 3, 3) float64    true mid-exposure pose R (lab = R · particle + shift)
``euler_deg``                (F, 3) float64       the same as RELION ZYZ (rot, tilt, psi), degrees
``shift_A``                  (F, 2) float64       true (x, y) shift of the particle centre from the field centre, Å
``defocus_A``                (F,) float64         true defocus of the particle (mean of U and V, height included), Å
``time_s``                   (F,) float64         mid-exposure time, s
``liquid_thickness_A``       (F,) float64         liquid thickness, Å
``atoms/xy_px``              (F, N, 2) float32    projected (x = column, y = row) position of every atom, pixels
``atoms/z_A``                (F, N) float32       its height along the beam (lab z, downstream +), Å
``atoms/present``            (F, N) bool          the atom is in the particle (not dissolved) in that frame
``atoms/cn``                 (N,) int8            coordination number
``atoms/surface``            (N,) bool            surface atom (CN < 12); core otherwise
``atoms/grain``              (N,) int16           twin domain (perfect-lattice grain)
``atoms/mobile``             (N,) bool            in the mobile surface (surface weight > 0.5 at its depth)
``atoms/stacking``           (N,) int8            local stacking: 0 fcc, 1 hcp, 2 other
``atoms/u_iso_A2``           (N,) float32         isotropic displacement, Å²
``truth_map``                (B, B, B) float32    the truth map [z, y, x] (as ``truth_map.mrc``)
``map``                      (B, B, B) float32    reconstructed map (items that reconstruct)
``atom_labels``              (B, B, B) int32      on the map's grid: 1 + index of the true atom within 1 Å of the
                                                  voxel centre, 0 elsewhere (truth frame; items that reconstruct)
===========================  ===================  ================================================================

Frames are chunked one per chunk (``chunks = (1, Y, X)``) and stored in shards of :data:`SHARD_FRAMES` frames,
so a reader fetches single frames while the file system holds one file per shard. Each group is written by
one worker into a directory of its own and renamed into the store when complete: no lock, no shared file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.spatial import cKDTree

#: Frames per shard (file) of the per-frame arrays.
SHARD_FRAMES = 32
_STACKING = {"fcc": 0, "hcp": 1}


def create_root(path: str | Path, attrs: dict[str, Any]) -> None:
    """Create the dataset's root group at ``path`` (once, by the client) with attributes ``attrs``."""
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    root.attrs.update(attrs)


def _array(group: zarr.Group, name: str, shape: tuple[int, ...], dtype: str, dims: tuple[str, ...],
           per_frame: bool) -> zarr.Array:
    if per_frame and shape[0] > 0:
        chunks = (1, *shape[1:])
        shards = (min(SHARD_FRAMES, shape[0]), *shape[1:])
        return group.create_array(name, shape=shape, chunks=chunks, shards=shards, dtype=dtype,
                                  dimension_names=dims, fill_value=0)
    return group.create_array(name, shape=shape, dtype=dtype, dimension_names=dims, fill_value=0)


class FrameWriter:
    """Streams frames and their noise-free counterparts into an item's group, one shard at a time.

    Parameters
    ----------
    group
        The item's (temporary) group.
    n_frames, ny, nx
        Shape of the series.
    """

    def __init__(self, group: zarr.Group, n_frames: int, ny: int, nx: int) -> None:
        self.frames = _array(group, "frames", (n_frames, ny, nx), "float32", ("frame", "y", "x"), True)
        self.clean = _array(group, "clean_frames", (n_frames, ny, nx), "float32", ("frame", "y", "x"), True)
        self.block = min(SHARD_FRAMES, n_frames)
        self._buf = np.zeros((2, self.block, ny, nx), np.float32)
        self._start = 0
        self._filled = 0
        self.n_frames = n_frames
        self.bytes_written = 0

    def __call__(self, frame: int, counts: np.ndarray, noise_free: np.ndarray) -> None:
        """Add frame ``frame`` (frames arrive in order); write a shard when it is full."""
        if frame != self._start + self._filled:
            raise ValueError(f"frame {frame} arrived out of order (expected {self._start + self._filled})")
        self._buf[0, self._filled] = counts
        self._buf[1, self._filled] = noise_free
        self._filled += 1
        if self._filled == self.block or self._start + self._filled == self.n_frames:
            stop = self._start + self._filled
            self.frames[self._start:stop] = self._buf[0, : self._filled]
            self.clean[self._start:stop] = self._buf[1, : self._filled]
            self.bytes_written += 2 * self._buf[0, : self._filled].nbytes
            self._start, self._filled = stop, 0

    @property
    def complete(self) -> bool:
        """True when every frame was written."""
        return self._start == self.n_frames


def write_truth_arrays(group: zarr.Group, *, rotation: np.ndarray, euler_deg: np.ndarray, shift_A: np.ndarray,
                       defocus_A: np.ndarray, time_s: np.ndarray, liquid_thickness_A: np.ndarray,
                       xy_px: np.ndarray, z_A: np.ndarray, present: np.ndarray, labels: dict[str, np.ndarray],
                       truth_map: np.ndarray | None) -> int:
    """Write the per-frame truth and the per-atom labels of an item; return the bytes written (uncompressed)."""
    n = int(rotation.shape[0])
    arrays: list[tuple[str, np.ndarray, tuple[str, ...], bool]] = [
        ("rotation", np.asarray(rotation, np.float64), ("frame", "row", "col"), True),
        ("euler_deg", np.asarray(euler_deg, np.float64), ("frame", "angle"), True),
        ("shift_A", np.asarray(shift_A, np.float64), ("frame", "xy"), True),
        ("defocus_A", np.asarray(defocus_A, np.float64), ("frame",), True),
        ("time_s", np.asarray(time_s, np.float64), ("frame",), True),
        ("liquid_thickness_A", np.asarray(liquid_thickness_A, np.float64), ("frame",), True),
        ("atoms/xy_px", np.asarray(xy_px, np.float32), ("frame", "atom", "xy"), True),
        ("atoms/z_A", np.asarray(z_A, np.float32), ("frame", "atom"), True),
        ("atoms/present", np.asarray(present, bool), ("frame", "atom"), True),
    ]
    arrays += [(f"atoms/{k}", v, ("atom",), False) for k, v in labels.items()]
    if truth_map is not None:
        arrays.append(("truth_map", np.asarray(truth_map, np.float32), ("z", "y", "x"), False))
    group.require_group("atoms")
    total = 0
    for name, data, dims, per_frame in arrays:
        assert not per_frame or data.shape[0] == n
        arr = _array(group, name, data.shape, str(data.dtype), dims, per_frame)
        arr[...] = data
        total += data.nbytes
    return total


def write_volume_arrays(group: zarr.Group, volumes: dict[str, np.ndarray]) -> int:
    """Write 3D arrays [z, y, x] (map, atom-label volume); return the bytes written (uncompressed)."""
    total = 0
    for name, vol in volumes.items():
        arr = _array(group, name, vol.shape, str(vol.dtype), ("z", "y", "x"), False)
        arr[...] = vol
        total += vol.nbytes
    return total


def atom_label_volume(positions: np.ndarray, box: int, sampling: float, radius_A: float = 1.0) -> np.ndarray:
    """Label every voxel of a ``box``³ grid [z, y, x] with 1 + the index of the atom within ``radius_A``.

    Parameters
    ----------
    positions
        (N, 3) atom positions (x, y, z), Å, relative to the grid's centre voxel ``box // 2``.
    box
        Edge of the grid, voxels.
    sampling
        Voxel size, Å.
    radius_A
        Largest distance from a voxel centre to its atom, Å (atoms of Pt are ≥ 2.7 Å apart, so a voxel
        has at most one atom within 1 Å).

    Returns
    -------
    np.ndarray
        (box, box, box) int32; 0 is background.
    """
    c = box // 2
    ax = (np.arange(box) - c) * float(sampling)
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    dist, idx = cKDTree(np.asarray(positions, float)).query(pts, distance_upper_bound=radius_A)
    labels = np.where(np.isfinite(dist), idx + 1, 0).astype(np.int32)
    return labels.reshape(box, box, box)


def stacking_codes(stacking: np.ndarray) -> np.ndarray:
    """Stacking labels as int8 codes: 0 fcc, 1 hcp, 2 other."""
    s = np.asarray(stacking).astype(str)
    codes = np.full(s.shape, 2, dtype=np.int8)
    for name, code in _STACKING.items():
        codes[s == name] = code
    return codes
