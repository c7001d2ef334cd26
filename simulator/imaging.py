"""Per-frame image formation: particle (multislice / phase object / linear projection) + liquid cell + optics.

Pipeline of :meth:`Imager.intensity` for one exposure
-----------------------------------------------------
1. **Window.** The particle is imaged on a periodic window around it (not the whole field): a square of
   ``W`` detector pixels (W·p ≥ particle span + 2·``window_margin_A``), aligned to the detector grid, sampled
   internally on the fastest FFT length ≥ W·``oversampling`` over the same period (so at least
   ``oversampling`` times finer than the detector). Outside the window the particle's exit wave is the unit
   plane wave, so nothing is lost as long as the margin covers the potential tails and the lens'
   delocalisation (a few Å for an aberration-corrected lens).
2. **Potential.** Per sub-step and slice of thickness ``slice_thickness_A``: the exact projected potential
   band-limited at the internal grid's Nyquist frequency (:mod:`tumblebench.simulator.potential`; erf slice integrals of
   every Gaussian with ``slicing="exact"``).
3. **Exit wave.** ``multislice``: band-limited (|q| ≤ ``bandlimit_fraction`` × internal Nyquist) multislice
   through all slices (:mod:`tumblebench.simulator.multislice`), each slice's raw phase grating exp(iσv) applied to
   the wave (with ``antialias_transmission``: the grating band-limited again first); ``phase-object``:
   one transmission function of the whole projected potential; both referred back to the plane z = 0 by
   folding the exit-plane height into the defocus. ``projection``: no wave at all, I = 1 + σ·v_z (the
   linear model of reconstructions).
4. **Lens.** The wave transfer function of :mod:`tumblebench.simulator.optics` (RELION sign convention; defocus =
   ``optics.defocus_A`` + ``defocus_offset_A`` + exit-plane height; aperture; partial-coherence envelopes
   in the quasi-coherent approximation) and |ψ|², averaged over the sub-steps (motion blur as in a real
   exposure).
5. **Detector sampling.** The window intensity is Fourier-cropped to the detector pixel (the way
   super-resolution counting frames are binned) and band-limited to |q| ≤ 1/``band_limit_A``; its
   difference from 1 is added to the frame.
6. **Liquid cell** (:mod:`tumblebench.simulator.liquid_cell`), full field, detector sampling: the two graphene sheets
   (at heights ∓t/2, so with their own defocus) and the water layer (mid-plane) are weak phase objects;
   their image is ψ_bg = 1 + Σ_L F⁻¹[H_L·F[t_L − 1]] (first order in the layers' scattering, exact within
   a layer), I_bg = |ψ_bg|². **Approximation:** the particle and cell contributions add,
   I_el = I_bg + (I_particle − 1); the cross terms between the particle's scattering and the cell's weak
   scattering are neglected. Then the attenuation: I = T·(E·I_el + (1 − E)) with E = exp(−t/Λ_in) the
   elastic fraction and T = exp(−t/Λ_abs) the transmitted fraction. In ``projection`` mode the cell's
   projected potential is added linearly instead.

Fidelity and cost
-----------------
The internal sampling, not the slice thickness, limits accuracy: inside a heavy crystal the wave carries
frequencies far beyond the objective aperture (channelling along atom columns), and the potential's
frequencies up to ~4 Å⁻¹ decide how much is scattered outside the aperture (the particle's low-resolution
amplitude contrast). The default (``oversampling=3``, potential up to the internal grid's Nyquist frequency,
wave band-limited at ``bandlimit_fraction`` of it, raw phase grating, 2 Å slices) is chosen to agree with a
finer, antialiased reference at every orientation of a ~2.5 nm particle; thicker particles along a zone axis
converge more slowly (use ``oversampling=4`` there). ``benchmarks/forward_vs_abtem.py`` (against abTEM and
the finer references) and ``benchmarks/forward_series.py`` (cost) measure it; their figures are in
``benchmarks/results/`` and ``docs/measurements.md``.

Coordinates (:mod:`tumblebench.simulator.orientation`): positions (S, N, 3) in Å in the lab frame, x and y relative to
the field centre (pixel (ny//2, nx//2)), z along the beam (downstream positive) relative to the particle's
reference height; image [row = y, col = x].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.fft
from threadpoolctl import ThreadpoolController

from tumblebench.simulator import multislice as ms
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.grid import frequencies
from tumblebench.simulator.liquid_cell import LiquidCellConfig, attenuation, graphene_potential, water_potential
from tumblebench.simulator.optics import LensTransfer, OpticsConfig
from tumblebench.simulator.potential import FourierGrid, slice_potential_coefficients
from tumblebench.simulator.scattering import GAUSSIAN_TABLES, TABLES, available

MODES = ("multislice", "phase-object", "projection")

_CONTROLLER: ThreadpoolController | None = None


def _single_blas_thread():
    """Context that limits BLAS to one thread: the small per-slice matrix products are much slower when
    OpenBLAS threads compete with other work on a shared machine, and a product's last bits depend on its
    thread count, so a frame's would depend on the machine's cores. It is held around a frame's whole intensity
    (:meth:`Imager.intensity`: the particle window and the background). The controller (which scans the loaded
    libraries) is created once."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_MALLOC_TUNED = False


def _reuse_freed_memory() -> None:
    """Ask glibc's malloc to serve arrays up to 64 MB from its heap and keep up to 256 MB of freed memory
    instead of returning it to the system: a frame allocates and frees the same ~10–30 MB arrays (slice
    potentials, their Fourier rows, waves) hundreds of times, and with fresh pages for each one the page
    faults cost a noticeable share of the frame time. Once per
    process; a no-op where glibc is not the allocator."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class ImagingConfig:
    """How a frame is formed from atoms (defaults: realistic for 2–3 nm Pt at 300 kV, 0.358 Å pixels).

    Attributes
    ----------
    mode
        ``"multislice"`` (dynamical scattering; default), ``"phase-object"`` (single slice) or
        ``"projection"`` (1 + σ·v_z, linear, no lens).
    optics
        Lens parameters (:class:`tumblebench.simulator.optics.OpticsConfig`).
    table
        Scattering-factor parametrisation: ``peng`` (default), ``peng6``, ``kirkland``, ``lobato``.
    slicing
        ``"exact"`` erf slice integrals (Gaussian tables) or ``"centre"`` (whole atom in its slice).
    slice_thickness_A
        Multislice slice thickness, Å.
    oversampling
        Internal sampling ≤ pixel size / oversampling (the window's internal grid is the fastest FFT length
        ≥ its detector width × oversampling); a multiple of 0.25 in [1, 8]. 3 (default) is converged
        (module docstring).
    bandlimit_fraction
        Multislice band limit as a fraction of the internal Nyquist frequency (2/3 avoids aliasing).
    band_limit_A
        Requested finest resolution of the image (Å), in [0, 20] (coarser shows no atom); 0 = automatic (the
        detector's Nyquist, the aperture or the multislice band limit, whichever is coarser, times a 2 % guard).
    window_margin_A
        Margin around the particle's span in the imaging window, Å, in [0, 50].
    antialias_transmission
        Band-limit each slice's transmission function exp(iσv) again at the multislice band limit (two more
        FFTs per slice; Kirkland's and abTEM's scheme; the potential then carries the whole grid). Off by
        default: with the potential band-limited at the grid's Nyquist frequency the raw grating is at least
        as close to the converged reference (module docstring) at half the FFTs.
    envelopes
        Apply the partial-coherence envelopes.
    fft_workers
        scipy.fft threads per transform (−1 = all cores). 1 by default: the per-frame transforms are small
        (≈150² points), measured no faster with 2 threads, and a series renders frames in parallel processes.
    liquid_cell
        Graphene liquid cell (:class:`tumblebench.simulator.liquid_cell.LiquidCellConfig`).
    """

    mode: Literal["multislice", "phase-object", "projection"] = "multislice"
    optics: OpticsConfig = field(default_factory=OpticsConfig)
    table: str = "peng"
    slicing: Literal["exact", "centre"] = "exact"
    slice_thickness_A: float = 2.0
    oversampling: float = 3.0
    bandlimit_fraction: float = 2.0 / 3.0
    band_limit_A: float = 0.0
    window_margin_A: float = 3.0
    antialias_transmission: bool = False
    envelopes: bool = True
    fft_workers: int = 1
    liquid_cell: LiquidCellConfig = field(default_factory=LiquidCellConfig)

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the field when a value is out of range."""
        require(self.mode in MODES, f"imaging.mode = {self.mode!r}; expected one of {', '.join(MODES)}")
        require(self.table in TABLES, f"imaging.table = {self.table!r}; expected one of {', '.join(TABLES)}")
        require(self.slicing in ("exact", "centre"), f"imaging.slicing = {self.slicing!r}; expected exact|centre")
        require(not (self.slicing == "exact" and self.table not in GAUSSIAN_TABLES),
                f"imaging.slicing = 'exact' needs a Gaussian table ({', '.join(GAUSSIAN_TABLES)}), "
                f"got table = {self.table!r}; use slicing = 'centre'")
        require(0.2 <= self.slice_thickness_A <= 20,
                f"imaging.slice_thickness_A = {self.slice_thickness_A} Å is outside [0.2, 20]")
        require(1.0 <= self.oversampling <= 8 and abs(4 * self.oversampling - round(4 * self.oversampling)) < 1e-9,
                f"imaging.oversampling = {self.oversampling} must be a multiple of 0.25 in [1, 8]")
        require(0.1 <= self.bandlimit_fraction <= 1.0,
                f"imaging.bandlimit_fraction = {self.bandlimit_fraction} is outside [0.1, 1]")
        require(0 <= self.band_limit_A <= 20,
                f"imaging.band_limit_A = {self.band_limit_A} must be in [0, 20] Å (0 = automatic)")
        require(self.fft_workers == -1 or self.fft_workers >= 1,
                f"imaging.fft_workers = {self.fft_workers}; expected -1 (all cores) or ≥ 1")
        require(0 <= self.window_margin_A <= 50,
                f"imaging.window_margin_A = {self.window_margin_A} must be in [0, 50] Å")
        self.optics.validate()
        self.liquid_cell.validate()


class _Window:
    """Frame-independent arrays of one window size (internal grid, propagator, crop indices)."""

    def __init__(self, imager: Imager, w_det: int, dz: float):
        self.w_det = w_det
        # the internal grid: the fastest FFT length ≥ w_det·oversampling (so at least ``oversampling`` times
        # finer than the detector), spanning the same period w_det·p
        self.w_int = scipy.fft.next_fast_len(int(np.ceil(w_det * imager.oversampling - 1e-9)))
        self.internal_sampling = w_det * imager.sampling / self.w_int
        shape = (self.w_int, self.w_int)
        self.q_ms = imager.config.bandlimit_fraction / (2 * self.internal_sampling)
        # The potential carries every frequency up to the grid's Nyquist frequency (not only the wave's band):
        # its components between q_ms and Nyquist couple beams on opposite sides of the band and, through
        # the phase grating's nonlinearity, set how much is scattered to high angles (channelling along zone
        # axes, the particle's low-resolution amplitude contrast once the aperture removes it). With
        # ``antialias_transmission`` the grating is band-limited after exponentiation, as in Kirkland (2010)
        # and abTEM, and the potential carries the whole grid (|q| ≤ √2·Nyquist covers the square).
        nyq = 1.0 / (2 * self.internal_sampling)
        q_v = nyq if not imager.config.antialias_transmission else np.sqrt(2) * nyq
        self.grid = FourierGrid(shape, self.internal_sampling, q_v)
        self.mask = ms.band_mask(shape, self.internal_sampling, self.q_ms)
        self.prop = ms.propagator(shape, self.internal_sampling, imager.wavelength, dz, self.q_ms)
        qy, qx = frequencies(shape, self.internal_sampling)
        self.lens = LensTransfer(qy, qx, imager.optics, self.mask, imager.config.envelopes)
        # detector-window grid for the crop / projection mode
        self.det = FourierGrid((w_det, w_det), imager.sampling, imager.band_q)
        self.crop_iy = self.det.ky % self.w_int
        self.crop_ix = self.det.kx


class Imager:
    """Forms noise-free frames of atoms in a graphene liquid cell (see the module docstring).

    Parameters
    ----------
    config
        Imaging configuration.
    shape_yx
        Frame shape (ny, nx), detector pixels.
    sampling
        Detector pixel size at the specimen, Å.

    Attributes
    ----------
    band_limit_A
        The finest resolution (Å) the frames carry: every mode's image is band-limited at 1/band_limit_A.
    """

    def __init__(self, config: ImagingConfig, shape_yx: tuple[int, int], sampling: float):
        config.validate()
        _reuse_freed_memory()
        require(sampling > 0, f"pixel size must be > 0 Å, got {sampling}")
        require(len(shape_yx) == 2 and min(shape_yx) >= 8, f"frame shape {shape_yx} must be 2D with edges ≥ 8")
        self.config = config
        self.optics = config.optics
        self.shape = (int(shape_yx[0]), int(shape_yx[1]))
        self.sampling = float(sampling)
        self.oversampling = float(config.oversampling)
        self.wavelength = self.optics.wavelength_A
        self.sigma = self.optics.sigma
        self.workers = int(config.fft_workers)
        q_det = 1.0 / (2 * self.sampling)
        q_ms = config.bandlimit_fraction * self.oversampling / (2 * self.sampling)
        q_auto = 0.98 * min(q_det, q_ms, self.optics.aperture_frequency)
        if config.band_limit_A > 0:
            q_req = 1.0 / config.band_limit_A
            if q_req > q_det or (config.mode != "projection" and q_req > q_ms):
                raise TumblebenchError(
                    f"imaging.band_limit_A = {config.band_limit_A} Å is finer than the sampling allows: pixel "
                    f"{self.sampling} Å (Nyquist {1 / q_det:.3f} Å) with oversampling {self.oversampling} "
                    f"(multislice band limit {1 / q_ms:.3f} Å); use a smaller pixel or a coarser band limit"
                )
            self.band_q = q_req
        else:
            self.band_q = q_auto if config.mode != "projection" else 0.98 * min(q_det, q_ms)
        self.band_limit_A = 1.0 / self.band_q
        self._windows: dict[tuple[int, float], _Window] = {}
        self._bg_cache: dict[str, np.ndarray] = {}
        self._lens_cache: dict[float, np.ndarray] = {}
        qy, qx = frequencies(self.shape, self.sampling)
        self._field_grid = FourierGrid(self.shape, self.sampling, self.band_q)
        self._field_lens = LensTransfer(qy, qx, self.optics, ((qx**2 + qy**2) <= self.band_q**2).astype(float),
                                        config.envelopes)

    # ------------------------------------------------------------------ helpers
    def _window(self, span_A: float) -> _Window:
        if span_A > min(self.shape) * self.sampling:
            raise TumblebenchError(
                f"the particle (span {span_A:.1f} Å) does not fit the {self.shape[1]}×{self.shape[0]} px field of "
                f"{self.shape[1] * self.sampling:.1f} × {self.shape[0] * self.sampling:.1f} Å; enlarge the field"
            )
        need = span_A + 2 * self.config.window_margin_A
        w = max(16, int(np.ceil(need / self.sampling)))
        w += w % 2
        key = (w, self.config.slice_thickness_A)
        if key not in self._windows:
            self._windows[key] = _Window(self, w, self.config.slice_thickness_A)
        return self._windows[key]

    def _check_inputs(self, positions: np.ndarray, symbols: str | Sequence[str]) -> tuple[np.ndarray, list[str]]:
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 2:
            pos = pos[None]
        if pos.ndim != 3 or pos.shape[-1] != 3:
            raise TumblebenchError(f"positions must be (S, N, 3) or (N, 3) Å, got shape {np.shape(positions)}")
        if not np.all(np.isfinite(pos)):
            raise TumblebenchError("positions contain non-finite values")
        n = pos.shape[1]
        syms = [symbols] * n if isinstance(symbols, str) else [str(s) for s in symbols]
        if len(syms) != n:
            raise TumblebenchError(f"got {len(syms)} element symbols for {n} atoms")
        known = set(available(self.config.table))
        unknown = sorted(set(syms) - known)
        if unknown:
            raise TumblebenchError(
                f"element(s) {', '.join(unknown)} have no {self.config.table} scattering factors; "
                f"known: {', '.join(sorted(known))}"
            )
        return pos, syms

    # ------------------------------------------------------------------ particle
    def particle_window(self, positions: np.ndarray, symbols: str | Sequence[str], defocus_offset_A: float = 0.0
                        ) -> tuple[np.ndarray, tuple[int, int]]:
        """Sub-step-averaged particle image on its detector-grid window (vacuum = 1).

        Returns
        -------
        image, (row0, col0)
            (W, W) float64 intensity and the frame pixel of the window's corner (may lie outside the field).
        """
        pos, syms = self._check_inputs(positions, symbols)
        s_count, n = pos.shape[:2]
        ny, nx = self.shape
        sampling = self.sampling
        if n == 0:
            return np.ones((16, 16)), (ny // 2 - 8, nx // 2 - 8)
        cxy = pos[..., :2].reshape(-1, 2).mean(axis=0)
        span = 2 * np.sqrt(((pos[..., :2] - cxy) ** 2).sum(-1)).max()
        win = self._window(span)
        if self.config.mode == "projection":
            # linear: computed on the whole (periodic) field, so no window truncates the band-limited tails
            flat = pos.reshape(-1, 3) + np.array([(nx // 2) * sampling, (ny // 2) * sampling, 0.0])
            coeffs = slice_potential_coefficients(flat, np.tile(np.asarray(syms, dtype=object), s_count),
                                                  self._field_grid, None,
                                                  weights=np.full(flat.shape[0], 1.0 / s_count),
                                                  table=self.config.table, slicing="centre")
            return 1.0 + self.sigma * self._field_grid.to_real(coeffs, self.workers)[0].astype(np.float64), (0, 0)
        w = win.w_det
        col0 = int(np.round(cxy[0] / sampling + nx // 2)) - w // 2
        row0 = int(np.round(cxy[1] / sampling + ny // 2)) - w // 2
        local = pos.copy()
        local[..., 0] -= (col0 - nx // 2) * sampling
        local[..., 1] -= (row0 - ny // 2) * sampling
        mode = self.config.mode
        cfg = self.config
        if mode == "phase-object":
            coeffs = np.stack([slice_potential_coefficients(local[s], syms, win.grid, None, table=cfg.table,
                                                            slicing="centre" if cfg.table not in GAUSSIAN_TABLES
                                                            else cfg.slicing)[0]
                               for s in range(s_count)])
            t = ms.transmission(win.grid.to_real(coeffs, self.workers), self.sigma, win.mask, self.workers)
            psi_q = scipy.fft.fft2(t, workers=self.workers)
            z_exit = 0.0
        else:
            dz = cfg.slice_thickness_A
            z = local[..., 2]
            # Slices on a fixed z grid covering the atom centres; the first and last slice reach to ∓∞
            # so that they take the potential tails (the slices still sum exactly to v_z).
            z0 = np.floor(z.min() / dz) * dz
            n_sl = max(1, int(np.ceil((z.max() - z0) / dz + 1e-9)))
            edges = z0 + dz * np.arange(n_sl + 1)
            z_exit = float(edges[-1])
            edges[0], edges[-1] = -np.inf, np.inf
            # All sub-steps in one call: sub-step k is moved to z + k·Z (Z = 1e6 Å) and separated from
            # its neighbours by edges at (k − ½)·Z, so it occupies slices k·n_sl … (k+1)·n_sl − 1.
            big_z = 1e6
            offs = np.arange(s_count) * big_z
            inner = [edges[1:-1] + o for o in offs] + [offs[1:] - big_z / 2]
            big_edges = np.concatenate([[-np.inf], np.sort(np.concatenate(inner)), [np.inf]])
            zz = local.copy()
            zz[..., 2] += offs[:, None]
            coeffs = slice_potential_coefficients(zz.reshape(-1, 3), syms * s_count, win.grid, big_edges,
                                                  table=cfg.table, slicing=cfg.slicing)
            v = win.grid.to_real(coeffs, self.workers)
            if cfg.antialias_transmission:
                t = ms.transmission(v, self.sigma, win.mask, self.workers)
                t = t.reshape(s_count, n_sl, win.w_int, win.w_int)
                psi_q = ms.multislice(t, win.prop, workers=self.workers)
            else:
                psi_q = ms.multislice(v.reshape(s_count, n_sl, win.w_int, win.w_int), win.prop,
                                      sigma=self.sigma, workers=self.workers)
        h = win.lens(self.optics.defocus_A + defocus_offset_A + z_exit)
        psi = scipy.fft.ifft2(psi_q * h, workers=self.workers)
        inten = (psi.real**2 + psi.imag**2).mean(axis=0)
        ft = scipy.fft.rfft2(inten, workers=self.workers)
        crop = ft[win.crop_iy[:, None], win.crop_ix[None, :]] * win.det.mask
        crop *= (w * w) / float(win.w_int * win.w_int)
        img = scipy.fft.irfft2(win.det.scatter(crop), s=(w, w), workers=self.workers).astype(np.float64)
        return img, (row0, col0)

    # ------------------------------------------------------------------ liquid cell
    def _graphene(self, which: int, spectrum: bool) -> np.ndarray:
        """Sheet ``which``'s projected potential (V·Å), or the spectrum F[exp(iσv) − 1] (cached: static)."""
        key = f"graphene{which}"
        if key not in self._bg_cache:
            lc = self.config.liquid_cell
            v = graphene_potential(self.shape, self.sampling, lc.graphene_angles_deg[which], self.band_q,
                                   self.config.table).astype(np.float64)
            self._bg_cache[key] = v
            self._bg_cache[key + "ft"] = scipy.fft.fft2(np.exp(1j * self.sigma * v) - 1.0, workers=self.workers)
        return self._bg_cache[key + "ft" if spectrum else key]

    def _layer_lens(self, defocus_A: float) -> np.ndarray:
        """Field lens transfer at a cell layer's defocus, rounded to 0.25 Å (far below the depth of field of
        the transfer at the band limit, λ·Δf·q² ≪ 1 rad for 0.25 Å) and cached: layer heights change slowly."""
        key = round(defocus_A * 4) / 4
        h = self._lens_cache.get(key)
        if h is None:
            if len(self._lens_cache) > 64:
                self._lens_cache.clear()
            h = self._field_lens(key, np.complex64)
            self._lens_cache[key] = h
        return h

    def background(self, liquid_thickness_A: float, rng: np.random.Generator | None) -> np.ndarray:
        """The liquid cell's contribution over the full field: I_bg − 1 (lens modes) or σ·v (projection)."""
        lc = self.config.liquid_cell
        if not lc.enabled:
            return np.zeros(self.shape)
        t = max(float(liquid_thickness_A), 0.0)
        proj = self.config.mode == "projection"
        layers: list[tuple[np.ndarray, float]] = []  # (potential or spectrum F[t_L − 1], height z)
        if lc.graphene:
            layers.append((self._graphene(0, not proj), -t / 2))
            layers.append((self._graphene(1, not proj), +t / 2))
        if lc.water and t > 0 and lc.amorphous_scale > 0:
            gen = rng if rng is not None else np.random.default_rng(0)
            vw = lc.amorphous_scale * water_potential(self.shape, self.sampling, t, self.band_q, gen,
                                                      lc.water_density_per_A3, self.config.table).astype(np.float64)
            spec = vw if proj else scipy.fft.fft2(np.exp(1j * self.sigma * vw) - 1.0, workers=self.workers)
            layers.append((spec, 0.0))
        if not layers:
            return np.zeros(self.shape)
        if proj:
            return self.sigma * sum(v for v, _ in layers)
        total = np.zeros(self.shape, dtype=np.complex128)
        for spec, z in layers:
            total += self._layer_lens(self.optics.defocus_A + z) * spec
        psi = 1.0 + scipy.fft.ifft2(total, workers=self.workers)
        return psi.real**2 + psi.imag**2 - 1.0

    # ------------------------------------------------------------------ public
    def intensity(self, positions: np.ndarray, symbols: str | Sequence[str], defocus_offset_A: float = 0.0,
                  liquid_thickness_A: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise-free frame intensity (vacuum = 1) of atoms at S motion sub-steps of one exposure.

        Parameters
        ----------
        positions
            (S, N, 3) (or (N, 3)) lab-frame positions in Å: x, y relative to the field centre (pixel
            (ny//2, nx//2)), z along the beam relative to the particle's reference height.
        symbols
            One element symbol or N symbols.
        defocus_offset_A
            Added to ``optics.defocus_A`` for the particle (its height; underfocus positive), Å.
        liquid_thickness_A
            Liquid layer thickness of this frame, Å.
        rng
            Generator for the random water layer (default: a fixed seed).

        Returns
        -------
        numpy.ndarray
            (ny, nx) float64 intensity, averaged over the sub-steps; band-limited at 1/``band_limit_A``.
        """
        if not np.isfinite(liquid_thickness_A) or liquid_thickness_A < 0:
            raise TumblebenchError(f"liquid thickness must be ≥ 0 Å, got {liquid_thickness_A}")
        with _single_blas_thread():  # the same bits whatever BLAS's thread count (OPENBLAS_NUM_THREADS, cores)
            img, (r0, c0) = self.particle_window(positions, symbols, defocus_offset_A)
            frame = 1.0 + self.background(liquid_thickness_A, rng)
        ny, nx = self.shape
        w = img.shape[0]
        rs, re = max(r0, 0), min(r0 + w, ny)
        cs, ce = max(c0, 0), min(c0 + w, nx)
        if re > rs and ce > cs:
            frame[rs:re, cs:ce] += img[rs - r0:re - r0, cs - c0:ce - c0] - 1.0
        elastic, transmitted = attenuation(liquid_thickness_A, self.config.liquid_cell)
        if self.config.mode == "projection":
            return frame * transmitted
        return transmitted * (elastic * frame + (1.0 - elastic))
