"""MRC 2014 volumes and image stacks, with the voxel size in the header.

Volumes are numpy arrays indexed [z, y, x] (MRC order). Image stacks (``.mrcs``) are [frame, y, x].
Long series are streamed to disk through the file descriptor (:class:`MrcStackWriter`) and read back frame
by frame (:class:`FrameFile`), never memory-mapped, so that 100,000 frames never sit in memory.
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


class FrameFile:
    """Frames [frame, y, x] stored in a file and read with positioned I/O (``pread``), never memory-mapped.

    Indexing works like a numpy array's first axis (an integer, a slice, an integer or boolean array) and
    returns a new in-memory array; nothing of the file stays mapped into the process, so the resident memory
    of a long series is that of the chunk being read (the kernel's page cache holds the file, not the process).
    ``np.asarray`` reads every frame.

    Use :func:`open_stack` for an MRC stack and :meth:`temporary` for a scratch store (e.g. the reconstruction's
    particle boxes). :meth:`rows` and :meth:`negated` give views (a subset of frames, the frames × −1) that
    share the file.
    """

    def __init__(self, fd: int, offset: int, n_frames: int, frame_shape: tuple[int, ...], dtype: np.dtype,
                 writable: bool = False, owner: object | None = None) -> None:
        self._fd = fd
        self._offset = int(offset)
        self._n = int(n_frames)
        self._frame_shape = tuple(int(k) for k in frame_shape)
        self._dtype = np.dtype(dtype)
        self._frame_bytes = int(np.prod(self._frame_shape)) * self._dtype.itemsize
        self._rows: np.ndarray | None = None
        self._sign = 1
        self._writable = writable
        self._owner = owner  # keeps the file (and its descriptor) open while any view lives
        self.directory: Path | None = None  # where a scratch store lives (set by :meth:`temporary`)

    @classmethod
    def temporary(cls, n_frames: int, frame_shape: tuple[int, ...], directory: str | Path,
                  dtype: np.dtype = np.float32) -> FrameFile:
        """A writable scratch store of ``n_frames`` zero frames in an unnamed file in ``directory`` (removed by
        the system when closed or when the process ends, however it ends)."""
        import tempfile

        fh = tempfile.TemporaryFile(dir=directory)
        size = int(n_frames) * int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
        fh.truncate(size)
        out = cls(fh.fileno(), 0, n_frames, frame_shape, dtype, writable=True, owner=fh)
        out.directory = Path(directory)
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._frame_shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype.newbyteorder("=")

    @property
    def ndim(self) -> int:
        return 1 + len(self._frame_shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self._n if self._rows is None else len(self._rows)

    def _view(self) -> FrameFile:
        v = FrameFile(self._fd, self._offset, self._n, self._frame_shape, self._dtype, False, self._owner)
        v._rows, v._sign, v.directory = self._rows, self._sign, self.directory
        return v

    def rows(self, index) -> FrameFile:
        """A view of the frames ``index`` (integer or boolean array, or slice) of this one."""
        v = self._view()
        v._rows = self._physical(index)
        return v

    def negated(self) -> FrameFile:
        """A view whose frames are these frames × −1 (exact)."""
        v = self._view()
        v._sign = -self._sign
        return v

    def _physical(self, index) -> np.ndarray:
        logical = np.arange(len(self))[index]
        return np.atleast_1d(logical if self._rows is None else self._rows[logical]).astype(np.int64)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        single = isinstance(key, int | np.integer)
        out = self._read(self._physical(key))
        if single:
            out = out[0]
        return out[(slice(None), *rest) if not single else rest] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _read(self, phys: np.ndarray) -> np.ndarray:
        out = np.empty((len(phys), *self._frame_shape), self._dtype)
        if len(phys):
            buf = memoryview(out.reshape(-1).view(np.uint8))
            cut = np.flatnonzero(np.diff(phys) != 1) + 1
            for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(phys)], strict=True):
                self._pread(buf[lo * self._frame_bytes:hi * self._frame_bytes],
                            self._offset + int(phys[lo]) * self._frame_bytes)
        out = out.astype(self.dtype, copy=False)
        if self._sign < 0:
            np.negative(out, out=out)
        return out

    def _pread(self, buf: memoryview, offset: int) -> None:
        done = 0
        while done < len(buf):
            k = os.preadv(self._fd, [buf[done:]], offset + done)
            if k <= 0:
                raise TumblebenchError(f"frame file ends early (wanted {len(buf)} bytes at offset {offset})")
            done += k

    def write(self, start: int, frames: np.ndarray) -> None:
        """Write ``frames`` [k, *frame_shape] at frame index ``start`` (writable stores only, not views)."""
        if not self._writable:
            raise TumblebenchError("this frame file is read-only")
        arr = np.ascontiguousarray(frames, self._dtype)
        if arr.shape[1:] != self._frame_shape or start < 0 or start + len(arr) > self._n:
            raise TumblebenchError(f"cannot write frames of shape {arr.shape} at {start} into {self.shape}")
        data = memoryview(arr.reshape(-1).view(np.uint8))
        done, offset = 0, self._offset + int(start) * self._frame_bytes
        while done < len(data):
            done += os.pwrite(self._fd, data[done:], offset + done)


def scratch_like(like: np.ndarray | FrameFile, n_frames: int, frame_shape: tuple[int, ...],
                 dtype: np.dtype = np.float32) -> np.ndarray | FrameFile:
    """A writable store of ``n_frames`` frames of ``frame_shape``: a scratch :class:`FrameFile` in the directory of
    ``like`` when ``like`` is (a view of) one made by :meth:`FrameFile.temporary`, else an array in memory.

    Per-frame data derived from frames kept in a scratch file (e.g. the reconstruction's boxes) thus stays out of
    the process's memory too. Fill it with :func:`store_frames`.
    """
    if isinstance(like, FrameFile) and like.directory is not None:
        return FrameFile.temporary(n_frames, frame_shape, like.directory, dtype)
    return np.empty((n_frames, *frame_shape), dtype)


def store_frames(store: np.ndarray | FrameFile, start: int, frames: np.ndarray) -> None:
    """Write ``frames`` at frame index ``start`` of ``store`` (an array or a writable :class:`FrameFile`)."""
    if isinstance(store, FrameFile):
        store.write(start, frames)
    else:
        store[start:start + len(frames)] = frames


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _Fd:
    """Owner of a file descriptor: closed when the last :class:`FrameFile` that uses it is collected."""

    def __init__(self, fd: int) -> None:
        import weakref

        self._finalizer = weakref.finalize(self, _close_fd, fd)


class MrcStackWriter:
    """Stream an image stack [frame, y, x] of float32 to an ``.mrcs`` file, written through the file
    descriptor (``pwrite``): the written frames are never mapped into the process.

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
        with mrcfile.new_mmap(self._tmp, shape=(n_frames, ny, nx), mrc_mode=2, overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = float(sampling)
            mrc.header.label[0] = _LABEL
            offset, dtype = int(mrc.data.offset), mrc.data.dtype
        self._fd = os.open(self._tmp, os.O_RDWR)
        try:
            # new_mmap makes a sparse file: reserve its blocks now, so that a full disk is one OSError (ENOSPC)
            # here instead of at some later frame
            os.posix_fallocate(self._fd, 0, os.fstat(self._fd).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # a file system without it
                self.abort()
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        except BaseException:
            self.abort()
            raise
        self._frames = FrameFile(self._fd, offset, n_frames, (ny, nx), dtype, writable=True)

    def write(self, start: int, frames: np.ndarray) -> None:
        """Write ``frames`` [k, y, x] at frame index ``start``."""
        self._frames.write(start, frames)

    def close(self) -> None:
        """Update the header statistics, close and move the file into place.

        The statistics are reduced chunk by chunk from the written file (mrcfile's ``update_header_stats``
        would make a temporary copy of the whole stack for the standard deviation).
        """
        data = self._frames
        n = data.shape[0]
        stats = None
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
            stats = (lo, hi, mean, np.sqrt(max(total_sq / data.size - mean * mean, 0.0)))
        os.close(self._fd)
        if stats is not None:
            with mrcfile.mmap(self._tmp, mode="r+") as mrc:  # the header only; no data page is touched
                header = mrc.header
                header.dmin = np.float32(stats[0])
                header.dmax = np.float32(stats[1])
                header.dmean = np.float32(stats[2])
                header.rms = np.float32(stats[3])
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Discard the partial file."""
        try:
            os.close(self._fd)
        except OSError:
            pass
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> MrcStackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_stack(path: str | Path) -> tuple[FrameFile, float]:
    """Open an ``.mrcs`` stack read-only; return ([frame, y, x] :class:`FrameFile`, pixel size Å).

    The frames are read on demand (``stack[i]``, ``stack[a:b]``, ``stack[index_array]``), never mapped, so
    that a long series does not grow the resident memory.

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
            with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
                data = mrc.data
                if data is None or np.iscomplexobj(data):
                    raise ValueError("no real-valued data block")
                shape, dtype, offset = data.shape, data.dtype, int(data.offset)
                ps = float(mrc.voxel_size.x)
    except Exception as exc:  # mrcfile and numpy raise many kinds on a corrupt header
        msg = " ".join(str(exc).split())[:200]
        raise TumblebenchError(f"{path}: not a readable MRC stack ({type(exc).__name__}: {msg})") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise TumblebenchError(f"{path}: expected an image stack [frame, y, x], got shape {shape}")
    if not (math.isfinite(ps) and ps > 0):
        raise TumblebenchError(f"{path}: header pixel size {ps} Å must be positive")
    fd = os.open(path, os.O_RDONLY)
    return FrameFile(fd, offset, shape[0], shape[1:], dtype, owner=_Fd(fd)), ps
