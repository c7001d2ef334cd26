"""MRC 2014 volumes and image stacks, with the voxel size in the header.

Volumes are numpy arrays indexed [z, y, x] (MRC order). Image stacks (``.mrcs``) are [frame, y, x].
Long series are streamed to disk through a memory map (:class:`MrcStackWriter`) so that 100,000 frames
never sit in memory.
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from tumblebench.simulator.errors import TumblebenchError

#: Header label written instead of mrcfile's time-stamped one, so that the same data give the same bytes.
_LABEL = b"Created by tumblebench (mrcfile)"


def write_volume(path: str | Path, volume: np.ndarray, sampling: float) -> None:
    """Write a 3D float32 volume [z, y, x] with voxel size ``sampling`` (Å)."""
    vol = np.ascontiguousarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise TumblebenchError(f"{path}: a volume must be 3D, got shape {vol.shape}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(vol)
        mrc.voxel_size = float(sampling)
        mrc.header.label[0] = _LABEL
    os.replace(tmp, path)


def read_volume(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a 3D MRC volume; return (float32 array [z, y, x], voxel size in Å).

    Raises
    ------
    TumblebenchError
        The file is missing, not MRC, not 3D, has a non-positive or anisotropic voxel size, or holds NaN.
    """
    path = Path(path)
    if not path.exists():
        raise TumblebenchError(f"{path}: no such map file")
    if path.is_dir():
        raise TumblebenchError(f"{path}: is a directory; expected an MRC map")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns about odd headers before it raises
            with mrcfile.open(path, permissive=False) as mrc:
                if mrc.data is None or np.iscomplexobj(mrc.data):
                    raise ValueError("no real-valued data block")
                data = np.asarray(mrc.data, dtype=np.float32).copy()
                vs = mrc.voxel_size
                sizes = (float(vs.x), float(vs.y), float(vs.z))
    except Exception as exc:  # mrcfile and numpy raise many kinds on a corrupt header
        msg = " ".join(str(exc).split())[:200]
        raise TumblebenchError(f"{path}: not a readable MRC file ({type(exc).__name__}: {msg})") from None
    if data.ndim != 3:
        raise TumblebenchError(f"{path}: expected a 3D map, got shape {data.shape}")
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        raise TumblebenchError(f"{path}: header voxel size {sizes} Å must be positive")
    if max(sizes) - min(sizes) > 1e-4 * max(sizes):
        raise TumblebenchError(f"{path}: header voxel size {sizes} Å must be isotropic")
    if not np.all(np.isfinite(data)):
        raise TumblebenchError(f"{path}: map holds NaN or infinite values")
    return data, sizes[0]


class MrcStackWriter:
    """Stream an image stack [frame, y, x] of float32 to an ``.mrcs`` file through a memory map.

    The file is created at its full size under a temporary name and renamed on :meth:`close`;
    :meth:`abort` (or an exception inside a ``with`` block) removes it.

    Parameters
    ----------
    path
        Final file name (``.mrcs``).
    n_frames, ny, nx
        Stack shape.
    sampling
        Pixel size in Å, written to the header.
    """

    def __init__(self, path: str | Path, n_frames: int, ny: int, nx: int, sampling: float) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self._mrc = mrcfile.new_mmap(
            self._tmp, shape=(n_frames, ny, nx), mrc_mode=2, overwrite=True
        )
        try:
            # new_mmap makes a sparse file: reserve its blocks now, so that a full disk is one OSError (ENOSPC)
            # here instead of a SIGBUS at the first page written through the map
            fh = self._mrc._iostream
            fh.flush()
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # a file system without it
                self.abort()
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        except BaseException:
            self.abort()
            raise
        self._mrc.set_image_stack()
        self._mrc.voxel_size = float(sampling)
        self._mrc.header.label[0] = _LABEL
        self.data = self._mrc.data

    def write(self, start: int, frames: np.ndarray) -> None:
        """Write ``frames`` [k, y, x] at frame index ``start``."""
        self.data[start : start + frames.shape[0]] = frames

    def close(self) -> None:
        """Update the header statistics, flush and move the file into place.

        The statistics are reduced chunk by chunk (mrcfile's ``update_header_stats`` would make a temporary
        copy of the whole stack for the standard deviation).
        """
        data = self.data
        n = data.shape[0]
        if n and data.size:
            step = max(1, (1 << 20) // max(1, data[0].size))  # ≤ 8 MB of float64 at a time
            lo, hi, total, total_sq = np.inf, -np.inf, 0.0, 0.0
            for start in range(0, n, step):
                chunk = np.array(data[start : start + step], dtype=np.float64)
                lo = min(lo, float(chunk.min()))
                hi = max(hi, float(chunk.max()))
                total += float(chunk.sum())
                total_sq += float(np.square(chunk, out=chunk).sum())
            mean = total / data.size
            header = self._mrc.header
            header.dmin = np.float32(lo)
            header.dmax = np.float32(hi)
            header.dmean = np.float32(mean)
            header.rms = np.float32(np.sqrt(max(total_sq / data.size - mean * mean, 0.0)))
        self._mrc.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Discard the partial file."""
        self._mrc.close()
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> MrcStackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_stack(path: str | Path) -> tuple[np.ndarray, float]:
    """Open an ``.mrcs`` stack read-only as a memory map; return ([frame, y, x] array, pixel size Å).

    Raises
    ------
    TumblebenchError
        Missing or unreadable file, or not a 3D stack.
    """
    path = Path(path)
    if not path.exists():
        raise TumblebenchError(f"{path}: no such image stack")
    if path.is_dir():
        raise TumblebenchError(f"{path}: is a directory; expected an MRC image stack")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns about odd headers before it raises
            mrc = mrcfile.mmap(path, mode="r", permissive=False)
            data = mrc.data
            if data is None or np.iscomplexobj(data):
                raise ValueError("no real-valued data block")
            ps = float(mrc.voxel_size.x)
    except Exception as exc:  # mrcfile and numpy raise many kinds on a corrupt header
        msg = " ".join(str(exc).split())[:200]
        raise TumblebenchError(f"{path}: not a readable MRC stack ({type(exc).__name__}: {msg})") from None
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise TumblebenchError(f"{path}: expected an image stack [frame, y, x], got shape {data.shape}")
    if not (math.isfinite(ps) and ps > 0):
        raise TumblebenchError(f"{path}: header pixel size {ps} Å must be positive")
    return data, ps
