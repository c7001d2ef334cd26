"""Read a dataset back: the manifest as a DataFrame, each item's arrays from Zarr (numpy or Dask).

Example::

    from tumblebench.dataset import open_dataset

    ds = open_dataset("DIR")
    ds.manifest                       # pandas DataFrame, one row per item (tumblebench.dataset.manifest)
    item = ds[0]                      # dict of numpy arrays of the first finished item
    noisy = ds.frames()               # Dask array (all frames of all finished items, same field size)
    clean = ds.frames("clean_frames")
    item_of, frame_of = ds.frame_index.T

Nothing here needs tumblebench beyond this module: the store is plain Zarr v3 and the manifest plain Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from tumblebench.dataset.manifest import MANIFEST, manifest_frame, read_records
from tumblebench.simulator.errors import TumblebenchError


@dataclass
class Dataset:
    """An opened dataset (see :func:`open_dataset`).

    Attributes
    ----------
    root
        The dataset directory.
    manifest
        One row per finished item (done or failed), sorted by index.
    store
        The root group of ``dataset.zarr``.
    """

    root: Path
    manifest: pd.DataFrame
    store: zarr.Group
    _groups: dict[int, str] = field(default_factory=dict)

    @cached_property
    def indices(self) -> np.ndarray:
        """Indices of the items whose Zarr group is complete, ascending."""
        done = self.manifest[(self.manifest["status"] == "done") & self.manifest["zarr_group"].notna()]
        keep = [int(i) for i, g in zip(done["index"], done["zarr_group"], strict=True)
                if (self.root / str(g) / "zarr.json").is_file()]
        return np.asarray(sorted(keep), dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def group(self, index: int) -> zarr.Group:
        """The Zarr group of item ``index`` (lazy: nothing is read until an array is sliced)."""
        if index not in set(self.indices.tolist()):
            raise TumblebenchError(f"{self.root}: item {index} is not a finished item with a Zarr group")
        return zarr.open_group(str(self.root / "dataset.zarr" / f"item_{int(index):06d}"), mode="r")

    def item(self, index: int) -> dict[str, np.ndarray]:
        """Every array of item ``index`` as numpy (names as in :mod:`tumblebench.dataset.store`)."""
        g = self.group(index)
        out: dict[str, np.ndarray] = {}
        for name, arr in g.arrays():
            out[name] = arr[...]
        for name, arr in g["atoms"].arrays():  # type: ignore[union-attr]
            out[f"atoms/{name}"] = arr[...]
        return out

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        """The ``k``-th finished item (``self.indices[k]``) as numpy arrays."""
        return self.item(int(self.indices[k]))

    @cached_property
    def frame_index(self) -> np.ndarray:
        """(M, 2) int64: (item index, frame) of every frame of every finished item, in order."""
        rows = [np.stack([np.full(n, i), np.arange(n)], axis=1)
                for i in self.indices for n in [int(self.group(int(i))["frames"].shape[0])]]
        return np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)

    def frames(self, name: str = "frames") -> Any:
        """A Dask array (M, Y, X) of per-frame array ``name`` of every finished item, concatenated.

        ``name`` is ``frames``, ``clean_frames`` or any per-frame array (``rotation``, ``atoms/xy_px``...).
        Items must share the field size. Chunks are the stores' (one frame).
        """
        import dask.array as da

        parts = [da.from_zarr(self.group(int(i))[name]) for i in self.indices]
        if not parts:
            raise TumblebenchError(f"{self.root}: no finished items")
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise TumblebenchError(f"{self.root}: items differ in the shape of {name} ({sorted(shapes)}); read them "
                                   "one by one with .item(index)")
        return da.concatenate(parts, axis=0)

    def read_frame(self, k: int, name: str = "frames") -> np.ndarray:
        """Frame ``k`` of :attr:`frame_index` of array ``name``, as numpy (reads one chunk)."""
        i, f = self.frame_index[k]
        return self.group(int(i))[name][int(f)]


def open_dataset(path: str | Path) -> Dataset:
    """Open the dataset in directory ``path``.

    Parameters
    ----------
    path
        A directory written by ``tumblebench dataset``.

    Returns
    -------
    Dataset
        Its manifest (``manifest.parquet``, or merged from the item records if the run that wrote it was
        killed), its Zarr store and per-item readers.

    Raises
    ------
    TumblebenchError
        ``path`` is not a dataset directory.
    """
    root = Path(path)
    if not (root / "dataset.json").is_file():
        raise TumblebenchError(f"{root}: not a tumblebench dataset (no dataset.json)")
    records = read_records(root)
    man = root / MANIFEST
    if man.is_file() and len(pd.read_parquet(man, columns=["index"])) == len(records):
        manifest = pd.read_parquet(man)
    else:  # the manifest lags behind the items (a run killed before writing it): merge the records
        manifest = manifest_frame(list(records.values()))
    store = zarr.open_group(str(root / "dataset.zarr"), mode="r")
    return Dataset(root=root, manifest=manifest, store=store)
