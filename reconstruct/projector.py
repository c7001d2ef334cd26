"""Fourier-slice projector and gridding back-projector, following :mod:`tumblebench.simulator.orientation` exactly.

A frame of a particle with pose ``A`` (``r_lab = A r_particle``, beam along lab +z) is the integral of the map
along lab z; by the Fourier-slice theorem its 2D transform at lab frequency ``(kx, ky)`` is the map's 3D
transform at particle-frame frequency ``Aᵀ (kx, ky, 0)``. Transforms are taken about the box centre (index
``n // 2``, :func:`simulator.orientation.box_centre`) so that poses rotate about it. The 3D transform lives on
a grid padded ``pad`` times; samples are interpolated (projection) or scattered (back-projection) trilinearly,
and the real-space apodisation of the trilinear kernel, ``sinc²``, is divided out (gridding correction).
Back-projection divides the accumulated samples by their accumulated weights (density compensation) with a
Wiener term.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

from tumblebench.reconstruct._gridding_kernels import extract_slices, hermitian_divide, insert_slices
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.mrc import FrameFile, scratch_like, store_frames


def _checkerboard(ny: int, nx: int) -> np.ndarray:
    """(−1)^(y + x) on an ny × nx grid (float32)."""
    return np.where((np.arange(ny)[:, None] + np.arange(nx)[None, :]) % 2 == 0, 1.0, -1.0).astype(np.float32)


def image_ft(images: np.ndarray) -> np.ndarray:
    """Centred 2D transforms of images [..., y, x] about pixel n//2 (complex64, frequency 0 at n//2).

    For even sizes, shifting by n/2 in one domain is a factor (−1)^k in the other, so
    ``fftshift(fft2(ifftshift(x))) = c·fft2(c·x)`` with the checkerboard c = (−1)^(y + x): two sign flips in place
    of four copies."""
    axes = (-2, -1)
    x = np.asarray(images, np.float32)
    ny, nx = x.shape[-2:]
    if ny % 2 or nx % 2:
        return scipy.fft.fftshift(scipy.fft.fft2(scipy.fft.ifftshift(x, axes=axes), axes=axes, workers=-1),
                                  axes=axes).astype(np.complex64)
    c = _checkerboard(ny, nx)
    ft = scipy.fft.fft2(x * c, axes=axes, workers=-1)
    ft *= c
    return ft


def image_from_ft(ft: np.ndarray) -> np.ndarray:
    """Inverse of :func:`image_ft` (real part, float32)."""
    axes = (-2, -1)
    return scipy.fft.fftshift(scipy.fft.ifft2(scipy.fft.ifftshift(ft, axes=axes), axes=axes, workers=-1),
                              axes=axes).real.astype(np.float32)


def frequency_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(kx, ky) of the centred n×n layout, in units of 1/(n·p), each (n, n) float64."""
    k = np.arange(n, dtype=np.float64) - n // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return kx, ky


@dataclass(frozen=True)
class Band:
    """The 2D frequencies within ``r_min ≤ |k| ≤ r_max`` (units 1/(n·p)) of an n×n centred transform."""

    n: int
    kx: np.ndarray
    ky: np.ndarray
    index: np.ndarray  # flat indices into the n×n centred layout
    radius: np.ndarray

    @staticmethod
    def make(n: int, r_max: float | None = None, r_min: float = 0.0) -> Band:
        """Band of an ``n``-pixel box up to radius ``r_max`` (default n/2 − 1) in Fourier pixels."""
        kx, ky = frequency_grid(n)
        r = np.hypot(kx, ky)
        r_max = n / 2 - 1 if r_max is None else min(float(r_max), n / 2 - 1)
        sel = np.flatnonzero(((r <= r_max) & (r >= r_min)).ravel())
        return Band(n, kx.ravel()[sel].copy(), ky.ravel()[sel].copy(), sel, r.ravel()[sel].copy())

    def half_plane(self) -> Band:
        """The half of the band with ky > 0 (and kx ≥ 0 on ky = 0, so the origin if the band has it). The transform
        of a real image is Hermitian, so this half carries it whole, and the real part of a correlation of two real
        images is twice its sum over this half (a band with ``r_min`` ≥ 1 and ``r_max`` < n/2 pairs every k with
        −k)."""
        h = (self.ky > 0) | ((self.ky == 0) & (self.kx >= 0))
        return Band(self.n, self.kx[h].copy(), self.ky[h].copy(), self.index[h].copy(), self.radius[h].copy())

    def take(self, ft: np.ndarray) -> np.ndarray:
        """Samples of centred transforms [..., n, n] on the band → [..., P]."""
        return ft.reshape(*ft.shape[:-2], self.n * self.n)[..., self.index]

    def put(self, values: np.ndarray) -> np.ndarray:
        """Band samples [..., P] → centred transforms [..., n, n] (zero elsewhere)."""
        out = np.zeros((*values.shape[:-1], self.n * self.n), dtype=values.dtype)
        out[..., self.index] = values
        return out.reshape(*values.shape[:-1], self.n, self.n)


def shift_phases(band: Band, shifts_px: np.ndarray) -> np.ndarray:
    """Phase factors that re-centre images whose particle centre sits at ``-shift`` (RELION origin, pixels).

    Multiplying an image transform by these moves the content by ``+shift`` (x, y), i.e. implements
    "shifting the image by +origin re-centres the particle". Computed separably (one complex exponential per
    frequency column and row, then a product per sample).

    Parameters
    ----------
    band
        Frequencies.
    shifts_px
        (M, 2) origins (x, y) in pixels.

    Returns
    -------
    numpy.ndarray
        complex64 (M, P).
    """
    s = np.asarray(shifts_px, np.float64).reshape(-1, 2)
    k = np.arange(band.n) - band.n // 2
    px = np.exp(-2j * np.pi * np.outer(s[:, 0], k) / band.n).astype(np.complex64)
    py = np.exp(-2j * np.pi * np.outer(s[:, 1], k) / band.n).astype(np.complex64)
    ix = band.kx.astype(np.int64) + band.n // 2
    iy = band.ky.astype(np.int64) + band.n // 2
    return px[:, ix] * py[:, iy]


def soft_sphere(n: int, radius_px: float, edge_px: float = 2.0) -> np.ndarray:
    """A soft-edged sphere [z, y, x] centred at n//2 (1 inside, raised-cosine edge of ``edge_px``)."""
    c = np.arange(n) - n // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    w = np.clip((r - radius_px) / max(edge_px, 1e-6), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * w)).astype(np.float32)


def _sinc2(n_real: int, n_pad: int) -> np.ndarray:
    """Trilinear-kernel apodisation along one axis of an n_real box centred at n_real//2."""
    x = np.arange(n_real, dtype=np.float64) - n_real // 2
    return np.sinc(x / n_pad) ** 2


@functools.lru_cache(maxsize=4)
def _gridding_correction(n: int, n_pad: int) -> np.ndarray:
    s = _sinc2(n, n_pad)
    out = (s[:, None, None] * s[None, :, None] * s[None, None, :]).astype(np.float32)
    out.flags.writeable = False
    return out


def _uncentred(n: int, nn: int) -> np.ndarray:
    """Indices, in the uncentred (``ifftshift``) layout of an ``nn`` axis, of the ``n`` samples centred at ``n // 2``
    that sit at ``nn // 2 − n // 2 …`` in the centred layout."""
    return (np.arange(n) - n // 2) % nn


@dataclass(frozen=True)
class Reference:
    """A map prepared for projection: its padded, centred 3D transform.

    Attributes
    ----------
    vft : complex64 (N, N, N) with N = pad·n.
    n : box size of the map and of its projections (pixels).
    pad : padding factor.
    """

    vft: np.ndarray
    n: int
    pad: float


def prepare_reference(volume: np.ndarray, pad: int = 2) -> Reference:
    """Pre-correct a map for trilinear interpolation, pad it and take its centred transform.

    Parameters
    ----------
    volume
        Cubic map [z, y, x] with the rotation centre at index n//2.
    pad
        Oversampling of the 3D transform (2 is accurate to a fraction of a per cent).
    """
    vol = np.asarray(volume, np.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise TumblebenchError(f"reference map must be a cubic 3D array, got shape {vol.shape}")
    n = vol.shape[0]
    nn = int(pad * n)
    # the padded map placed straight into the uncentred layout the FFT takes (no shifted copies)
    big = np.zeros((nn, nn, nn), np.float32)
    idx = _uncentred(n, nn)
    big[np.ix_(idx, idx, idx)] = vol / _gridding_correction(n, nn)
    vft = np.asarray(scipy.fft.fftshift(scipy.fft.fftn(big, workers=-1)), np.complex64)
    return Reference(vft, n, float(pad))


def project_band(ref: Reference, rotations: np.ndarray, band: Band) -> np.ndarray:
    """Central slices of ``ref`` on ``band`` for poses ``rotations`` (M, 3, 3) → complex64 (M, P)."""
    rots = np.ascontiguousarray(np.asarray(rotations, np.float64).reshape(-1, 3, 3))
    out = np.empty((rots.shape[0], band.kx.size), np.complex64)
    extract_slices(ref.vft, rots, band.kx, band.ky, ref.pad, out)
    return out


def project(ref: Reference, rotations: np.ndarray, shifts_px: np.ndarray | None = None) -> np.ndarray:
    """Real-space projections (line integrals in voxel units) of a prepared map.

    Parameters
    ----------
    ref
        :func:`prepare_reference` output.
    rotations
        (M, 3, 3) poses (particle → lab).
    shifts_px
        (M, 2) RELION origins in pixels (the particle centre lands at box centre − origin); default 0.

    Returns
    -------
    numpy.ndarray
        float32 (M, n, n) images [y, x].
    """
    band = Band.make(ref.n, r_max=ref.n)  # whole square up to the corner is cut at n/2 − 1
    vals = project_band(ref, rotations, band)
    if shifts_px is not None:
        vals *= np.conj(shift_phases(band, shifts_px))
    return image_from_ft(band.put(vals))


@functools.lru_cache(maxsize=4)
def _shell_counts(nn: int, pad: int) -> np.ndarray:
    """Voxels per shell of :func:`_shell_index` (read-only)."""
    out = np.bincount(_shell_index(nn, pad).ravel())
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=4)
def _shell_index(nn: int, pad: int) -> np.ndarray:
    k = ((np.arange(nn) - nn // 2) / pad).astype(np.float32)
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    out = np.rint(r).astype(np.int32)
    out.flags.writeable = False
    return out


#: Frames transformed and scattered at a time by :meth:`Reconstructor.insert`.
INSERT_CHUNK = 64


def _insert_band(n: int, pad: int, r_max: float | None) -> Band:
    """The half-plane band a :class:`Reconstructor` of ``n``-pixel frames padded ``pad`` times inserts, up to
    ``r_max`` Fourier pixels of the unpadded box (default n/2 − 1)."""
    return Band.make(pad * n, r_max=None if r_max is None else r_max * pad).half_plane()


def padded_spectra(images: np.ndarray, pad: int, band: Band) -> np.ndarray:
    """Centred transforms of images (k, n, n) zero-padded to ``pad``·n, on ``band`` → complex64 (k, P)."""
    k, n = images.shape[0], images.shape[-1]
    nn = pad * n
    o = nn // 2 - n // 2
    padded = np.zeros((k, nn, nn), np.float32)
    padded[:, o:o + n, o:o + n] = images
    return band.take(image_ft(padded))


class SliceSpectra:
    """Frames' padded transforms on a :class:`Reconstructor`'s band, computed once for frames that are inserted
    again and again at other poses and shifts (:meth:`Reconstructor.insert_spectra`).

    Kept beside the frames when they are a scratch :class:`~tumblebench.simulator.mrc.FrameFile` (out of the
    process's memory, as they are), else in memory.

    Parameters
    ----------
    images
        (M, n, n) float frames [y, x], an array or a scratch FrameFile.
    pad
        Oversampling of the reconstructor's grid.
    r_max
        Highest frequency, in Fourier pixels of the unpadded box (default n/2 − 1).
    """

    def __init__(self, images: np.ndarray | FrameFile, pad: int = 2, r_max: float | None = None) -> None:
        m, self.n = images.shape[0], images.shape[-1]
        self.pad = int(pad)
        self.band = _insert_band(self.n, self.pad, r_max)
        self._store = scratch_like(images, m, (self.band.kx.size,), np.complex64)
        for s in range(0, m, INSERT_CHUNK):
            store_frames(self._store, s,
                         padded_spectra(np.asarray(images[s:s + INSERT_CHUNK], np.float32), self.pad, self.band))

    def __len__(self) -> int:
        return self._store.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The spectra (k, P) complex64 of frames ``rows`` (a new array: an index array reads a copy from either
        store)."""
        return self._store[np.asarray(rows, np.int64)]


class Reconstructor:
    """Fourier-space reconstruction by gridding: accumulate CTF-weighted slices, then divide by the weights.

    Parameters
    ----------
    n
        Box size (pixels) of the images and of the map.
    pad
        Oversampling of the 3D grid.
    threads
        Parallel lanes of the scatter (default: numba's thread count); the result does not depend on it.

    Attributes
    ----------
    data
        Accumulated CTF-weighted samples (N, N, N) complex64, N = pad·n, centred: of each slice the half
        :meth:`Band.half_plane` (the images are real, so the other half is its Hermitian mirror, which
        :meth:`reconstruct` adds).
    weight
        Accumulated weights (N, N, N) float32, of the same half slices.
    count
        Images inserted.
    """

    def __init__(self, n: int, pad: int = 2, threads: int | None = None) -> None:
        self.n = int(n)
        self.pad = int(pad)
        nn = self.pad * self.n
        # the scatter runs in lanes of interleaved z planes (no write races, and each voxel sums its samples in
        # the serial order): the same bytes whatever the number of lanes or threads
        self.threads = max(1, int(threads if threads is not None else numba.get_num_threads()))
        self.data = np.zeros((nn, nn, nn), np.complex64)
        self.weight = np.zeros((nn, nn, nn), np.float32)
        self.count = 0

    def insert(self, images: np.ndarray, rotations: np.ndarray, shifts_px: np.ndarray | None = None,
               ctf: np.ndarray | None = None, r_max: float | None = None) -> None:
        """Add real-space images: zero-pad them ``pad`` times, transform, re-centre and scatter.

        Parameters
        ----------
        images
            (M, n, n) float images [y, x] (background-subtracted boxes).
        rotations
            (M, 3, 3) poses (particle → lab).
        shifts_px
            (M, 2) RELION origins (x, y) in pixels; the images are shifted by +origin.
        ctf
            (M, N, N) or (N, N) transfer on the *padded* centred grid (N = pad·n); the samples are multiplied
            by it and its square is accumulated as weight (Wiener CTF correction). None: no CTF.
        r_max
            Highest frequency inserted, in Fourier pixels of the unpadded box (default n/2 − 1).
        """
        imgs = np.asarray(images, np.float32)
        if imgs.ndim != 3 or imgs.shape[1:] != (self.n, self.n):
            raise TumblebenchError(f"expected images of shape (M, {self.n}, {self.n}), got {imgs.shape}")
        band = _insert_band(self.n, self.pad, r_max)
        for s in range(0, imgs.shape[0], INSERT_CHUNK):
            self._scatter(band, padded_spectra(imgs[s:s + INSERT_CHUNK], self.pad, band), rotations, shifts_px,
                          ctf, s)
        self.count += imgs.shape[0]

    def insert_spectra(self, spectra: SliceSpectra, rows: np.ndarray, rotations: np.ndarray,
                       shifts_px: np.ndarray | None = None, ctf: np.ndarray | None = None,
                       weights: np.ndarray | None = None) -> None:
        """:meth:`insert` of frames ``rows`` of ``spectra`` (their transforms computed once): the same sums.

        ``rotations``, ``shifts_px`` and ``ctf`` are those of the frames ``rows``, as in :meth:`insert` (a frame
        may be listed more than once, at other poses). ``weights`` (len(rows),): each insertion's samples and
        weights multiplied by it (a frame inserted at several poses in proportion to their probabilities); None:
        all 1.
        """
        if (spectra.n, spectra.pad) != (self.n, self.pad):
            raise TumblebenchError(f"spectra of {spectra.n}-pixel frames padded {spectra.pad} times cannot go "
                                   f"into a {self.n}-pixel reconstructor padded {self.pad} times")
        rows = np.asarray(rows, np.int64)
        for s in range(0, rows.size, INSERT_CHUNK):
            self._scatter(spectra.band, spectra[rows[s:s + INSERT_CHUNK]], rotations, shifts_px, ctf, s, weights)
        self.count += rows.size

    def _scatter(self, band: Band, vals: np.ndarray, rotations: np.ndarray, shifts_px: np.ndarray | None,
                 ctf: np.ndarray | None, s: int, weights: np.ndarray | None = None) -> None:
        """Scatter the band samples ``vals`` (k, P) of the frames ``s``..``s + k`` of ``rotations``,
        ``shifts_px``, ``ctf`` and ``weights`` (as in :meth:`insert_spectra`); ``vals`` is overwritten."""
        k = vals.shape[0]
        rots = np.ascontiguousarray(np.asarray(rotations, np.float64).reshape(-1, 3, 3)[s:s + k])
        if shifts_px is not None:
            vals *= shift_phases(band, np.asarray(shifts_px, np.float64)[s:s + k])
        if ctf is None:
            w2 = np.ones(vals.shape, np.float32)
        else:
            c = np.asarray(ctf, np.float32)
            c = band.take(c if c.ndim == 2 else c[s:s + k])
            vals = vals * c
            w2 = np.array(np.broadcast_to(c * c, vals.shape), np.float32)  # a copy: a view is read-only
        if weights is not None:
            w = np.asarray(weights, np.float32)[s:s + k, None]
            vals = vals * w
            w2 = w2 * w
        # the origin is its own mirror: inserted at half weight, the completion in reconstruct() counts it twice
        origin = np.flatnonzero((band.kx == 0) & (band.ky == 0))
        vals[:, origin] *= 0.5
        w2[:, origin] *= 0.5
        insert_slices(self.data, self.weight, rots, band.kx, band.ky, 1.0, np.ascontiguousarray(vals, np.complex64),
                      w2, self.threads)

    def add(self, other: Reconstructor) -> None:
        """Accumulate another reconstructor (e.g. two half sets → full set) into this one."""
        self.data[...] += other.data
        self.weight[...] += other.weight
        self.count += other.count

    def shell_index(self) -> np.ndarray:
        """Radius (in units of the unpadded Fourier pixel, rounded) of every voxel of the padded grid."""
        return _shell_index(self.data.shape[0], self.pad)

    def reconstruct(self, tau: float | np.ndarray = 1e-3, filt: np.ndarray | None = None) -> np.ndarray:
        """The map [z, y, x] (float32, n³) from the accumulated slices.

        Parameters
        ----------
        tau
            Wiener regulariser added to the weights: a scalar fraction of each shell's mean weight, or an
            array per shell (index = radius in Fourier pixels) of fractions of the shell's mean weight.
        filt
            Optional per-shell multiplier (e.g. FSC weighting) applied to the transform.
        """
        nn = self.data.shape[0]
        n = self.n
        shells = self.shell_index()
        nsh = int(shells.max()) + 1
        # a shell holds each voxel and its mirror: the whole slices' weights sum to twice the half slices'
        wsum = 2 * np.bincount(shells.ravel(), weights=self.weight.ravel(), minlength=nsh)
        cnt = _shell_counts(nn, self.pad)
        wmean = wsum / np.maximum(cnt, 1)
        taus = np.broadcast_to(np.asarray(tau, np.float64), (nsh,)) if np.ndim(tau) == 0 else np.asarray(tau)
        taus = np.concatenate([taus, np.full(max(0, nsh - taus.size), taus[-1] if taus.size else 1.0)])[:nsh]
        scale = np.ones(nsh) if filt is None else np.concatenate([np.asarray(filt, np.float64),
                                                                   np.zeros(max(0, nsh - len(filt)))])[:nsh]
        scale[n // 2 + 1:] = 0  # beyond Nyquist
        ft = np.empty_like(self.data)  # uncentred: the FFT's own layout
        hermitian_divide(self.data, self.weight, shells, (taus * wmean).astype(np.float32), scale.astype(np.float32),
                         ft)
        big = scipy.fft.ifftn(ft, workers=-1, overwrite_x=True).real
        idx = _uncentred(n, nn)
        # the central n³ of the padded map, read from the uncentred layout; image transforms are the padded 3D
        # transform on the slice (no rescaling): ifftn inverts exactly
        return (big[np.ix_(idx, idx, idx)] / _gridding_correction(n, nn)).astype(np.float32)
