"""Tracking: find the particle in every full frame, smooth the trajectory, cut centred boxes.

Each frame is low-passed (Gaussian, ``lowpass_A``) and cross-correlated (FFT) with a disc template of the
particle's size carrying the particle's contrast sign (found on the mean frame); the correlation peak is the
particle's position, refined to sub-pixel by a parabola. A peak whose height is below ``min_peak_z`` robust
standard deviations of its correlation map counts as lost. Lost frames are excluded (and counted); the
positions of the others are smoothed over time (Gaussian, ``smooth_frames``) — the residual jitter is
refined later as per-frame shifts. The particle moves little between frames (≈ 1 pixel), so where a frame's own
peak is not confident (z below twice ``min_peak_z``) the peak of the running mean of ``window_frames`` successive
correlation maps is taken instead: at half the default dose this finds the particle in every frame where single
frames lose one in five, and a clear single-frame peak keeps its own, unblurred position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import scipy.fft
from scipy import ndimage

from tumblebench.simulator.errors import require
from tumblebench.simulator.grid import frequencies
from tumblebench.stages import Track, TrackingInput

log = logging.getLogger("tumblebench.reconstruct")


@dataclass(frozen=True)
class TrackingConfig:
    """Configuration of the tracking stage.

    Attributes
    ----------
    lowpass_A
        Gaussian low-pass applied before correlation (Å, 1/e² cut-off of the transfer).
    smooth_frames
        Gaussian σ (frames) of the trajectory smoothing (0: none).
    min_peak_z
        Correlation peak height, in robust standard deviations of the map, below which a frame is lost.
    max_lost_fraction
        More lost frames than this fraction is an error.
    chunk
        Frames processed per batch.
    method
        ``"auto"``: ``contrast`` for linear (``projection``-mode, no CTF) series, ``energy`` otherwise;
        ``"energy"``: the local power of the frame band-passed to ``band_A`` (atomic columns and lattice
        fringes; works whatever the sign of the contrast, e.g. for aberration-corrected phase contrast that
        transfers no low frequencies); ``"contrast"``: the low-passed frame with the particle's sign.
    band_A
        (finest, coarsest) spacing in Å of the band-pass of the ``energy`` method.
    window_frames
        Odd number of successive frames whose correlation maps are averaged (running mean centred on the frame,
        bad frames left out) for frames whose own peak is below twice ``min_peak_z``; 1: every frame alone.
    """

    lowpass_A: float = 4.0
    smooth_frames: float = 2.0
    min_peak_z: float = 4.0
    max_lost_fraction: float = 0.5
    chunk: int = 256
    method: str = "auto"
    band_A: tuple[float, float] = (1.3, 4.0)
    window_frames: int = 5

    def validate(self) -> None:
        require(self.lowpass_A > 0, f"tracking.lowpass_A = {self.lowpass_A} must be > 0 Å")
        require(self.smooth_frames >= 0, f"tracking.smooth_frames = {self.smooth_frames} must be >= 0")
        require(self.min_peak_z > 0, f"tracking.min_peak_z = {self.min_peak_z} must be > 0")
        require(0 < self.max_lost_fraction <= 1, "tracking.max_lost_fraction must be in (0, 1]")
        require(self.chunk >= 1, f"tracking.chunk = {self.chunk} must be >= 1")
        require(self.method in ("auto", "energy", "contrast"),
                f"tracking.method = {self.method!r}: 'auto', 'energy' or 'contrast'")
        require(0 < self.band_A[0] < self.band_A[1], f"tracking.band_A = {self.band_A}: need 0 < fine < coarse Å")
        require(self.window_frames >= 1 and self.window_frames % 2 == 1,
                f"tracking.window_frames = {self.window_frames} must be an odd number >= 1")


@dataclass
class Trajectory:
    """Tracker output (pixels, 0-based, pixel (row i, col j) centre = (x=j, y=i)).

    Attributes
    ----------
    raw : (M, 2) per-frame correlation peaks (x, y); NaN where lost or bad.
    smooth : (M, 2) smoothed positions (x, y) used to cut the boxes.
    peak_z : (M,) peak heights (robust z-scores).
    lost : (M,) frames where the particle was not found.
    sign : contrast sign of the particle (+1 bright, −1 dark).
    """

    raw: np.ndarray
    smooth: np.ndarray
    peak_z: np.ndarray
    lost: np.ndarray
    sign: float


def gaussian_lowpass_ft(shape: tuple[int, int], sampling: float, resolution: float) -> np.ndarray:
    """Gaussian transfer exp(−2 (q·resolution)²) on the fftfreq grid."""
    return np.exp(-2.0 * (np.hypot(*frequencies(shape, sampling)) * resolution) ** 2).astype(np.float32)


def disc_template(shape: tuple[int, int], radius_px: float) -> np.ndarray:
    """Unit-sum soft disc centred at (0, 0) in fftfreq (wrap-around) layout."""
    y = scipy.fft.fftfreq(shape[0]) * shape[0]
    x = scipy.fft.fftfreq(shape[1]) * shape[1]
    r = np.hypot(y[:, None], x[None, :])
    t = np.clip(radius_px + 0.5 - r, 0, 1).astype(np.float32)
    t -= t.mean()
    return t


def contrast_sign(mean_frame: np.ndarray, sampling: float, lowpass_A: float) -> tuple[float, tuple[float, float]]:
    """Contrast sign and position (x, y) of the particle on the series' mean frame."""
    lp = scipy.fft.ifft2(scipy.fft.fft2(mean_frame) * gaussian_lowpass_ft(mean_frame.shape, sampling,
                                                                        2 * lowpass_A)).real
    dev = lp - np.median(lp)
    iy, ix = np.unravel_index(np.argmax(np.abs(dev)), dev.shape)
    return float(np.sign(dev[iy, ix]) or 1.0), (float(ix), float(iy))


def locate(frames: np.ndarray, sampling: float, radius_px: float, sign: float, config: TrackingConfig,
           valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Correlation-peak positions (x, y) with sub-pixel refinement and peak z-scores of frames [k, y, x].

    Parameters
    ----------
    frames
        (k, y, x) successive frames (for ``config.window_frames`` > 1, a run in time order; pass a few frames
        beyond each end of the run wanted and drop their results).
    sampling
        Å per pixel.
    radius_px
        Particle radius (pixels) of the disc template.
    sign
        Contrast sign of the particle (+1 bright, −1 dark).
    config
        :class:`TrackingConfig`.
    valid
        (k,) frames that may enter the running mean of the correlation maps (default: all).

    Returns
    -------
    (positions, z)
        (k, 2) peak positions (x, y) in pixels and (k,) peak heights in robust standard deviations.
    """
    k, ny, nx = frames.shape
    filt = gaussian_lowpass_ft((ny, nx), sampling, config.lowpass_A)
    tmpl = np.conj(scipy.fft.fft2(disc_template((ny, nx), radius_px)))
    ft = scipy.fft.fft2(np.asarray(frames, np.float32), workers=-1)
    if config.method == "energy":
        q = np.hypot(*frequencies((ny, nx), sampling))
        bp = ((q >= 1 / config.band_A[1]) & (q <= 1 / config.band_A[0])).astype(np.float32)
        energy = np.abs(scipy.fft.ifft2(ft * bp, workers=-1)) ** 2
        ft = scipy.fft.fft2(energy.astype(np.float32), workers=-1)
        sign = 1.0
    cc = sign * scipy.fft.ifft2(ft * (filt * tmpl), workers=-1).real.astype(np.float32)
    xy, z = _peaks(cc)
    own = z >= 2 * config.min_peak_z
    if config.window_frames > 1 and k > 1 and not own.all():
        # a confident single-frame peak keeps its own position (the running mean blurs by the particle's motion);
        # the others take the peak of the running mean, whose z-score also decides whether the frame is lost
        xyw, zw = _peaks(running_mean(cc, np.ones(k, bool) if valid is None else valid, config.window_frames))
        xy = np.where(own[:, None], xy, xyw)
        z = np.maximum(z, zw)
    return xy, z


def _peaks(cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak positions (x, y) and robust peak z-scores of correlation maps [k, y, x]."""
    k, ny, nx = cc.shape
    flat = cc.reshape(k, -1)
    idx = np.argmax(flat, axis=1)
    med = np.median(flat, axis=1)
    mad = np.median(np.abs(flat - med[:, None]), axis=1) * 1.4826 + 1e-30
    z = (flat[np.arange(k), idx] - med) / mad
    iy, ix = np.unravel_index(idx, (ny, nx))
    rows = np.arange(k)

    def sub(a, b, c):
        den = a - 2 * b + c
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
        return np.clip(np.nan_to_num(d), -0.5, 0.5)

    dx = sub(cc[rows, iy, (ix - 1) % nx], cc[rows, iy, ix], cc[rows, iy, (ix + 1) % nx])
    dy = sub(cc[rows, (iy - 1) % ny, ix], cc[rows, iy, ix], cc[rows, (iy + 1) % ny, ix])
    return np.stack([ix + dx, iy + dy], axis=1), z


def running_mean(maps: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` successive maps [k, …] of the ``valid`` ones (others get the mean of
    their valid neighbours; fewer maps at the ends)."""
    w = np.asarray(valid, np.float32).reshape((-1,) + (1,) * (maps.ndim - 1))
    num = ndimage.uniform_filter1d(maps * w, window, axis=0, mode="constant")
    den = ndimage.uniform_filter1d(w, window, axis=0, mode="constant")
    return num / np.maximum(den, 1e-6)


def smooth_trajectory(raw: np.ndarray, valid: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Fill invalid frames by linear interpolation in time and Gaussian-smooth each coordinate."""
    m = raw.shape[0]
    t = np.arange(m)
    out = np.empty_like(raw, dtype=np.float64)
    for d in range(2):
        out[:, d] = np.interp(t, t[valid], raw[valid, d])
    if sigma_frames > 0:
        out = ndimage.gaussian_filter1d(out, sigma_frames, axis=0, mode="nearest")
    return out


def cut_boxes(frames: np.ndarray, centres_xy: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box``-pixel boxes centred at the rounded positions; pad with the frame median off the edge.

    Returns
    -------
    (boxes, origins_px)
        float32 (k, box, box) and the RELION origins (k, 2) in pixels of the true sub-pixel centres
        (the particle centre is at box centre − origin).
    """
    k, ny, nx = frames.shape
    c = np.rint(centres_xy).astype(int)
    out = np.empty((k, box, box), np.float32)
    h = box // 2
    for i in range(k):  # a slice copy per frame (no per-pixel loop)
        x0, y0 = c[i, 0] - h, c[i, 1] - h
        fr = np.asarray(frames[i], np.float32)
        if x0 >= 0 and y0 >= 0 and x0 + box <= nx and y0 + box <= ny:
            out[i] = fr[y0:y0 + box, x0:x0 + box]
        else:
            out[i] = np.median(fr)
            ys, xs = max(y0, 0), max(x0, 0)
            ye, xe = min(y0 + box, ny), min(x0 + box, nx)
            if ye > ys and xe > xs:
                out[i, ys - y0:ye - y0, xs - x0:xe - x0] = fr[ys:ye, xs:xe]
    origins = -(centres_xy - c)
    return out, origins


def estimate_diameter(boxes: np.ndarray, sampling: float, sign: float, fraction: float = 0.1,
                      energy: bool = False, band_A: tuple[float, float] = (1.3, 4.0)) -> float:
    """Particle diameter (Å) from the radial profile of the mean centred box (where it falls to ``fraction``).

    With ``energy`` the profile is that of the mean local power of the boxes band-passed to ``band_A``
    (independent of the contrast's sign and of a CTF without low-frequency transfer).
    """
    if energy:  # read a chunk at a time (``boxes`` may be a FrameFile)
        n = boxes.shape[-1]
        q = np.hypot(*frequencies((n, n), sampling))
        bp = ((q >= 1 / band_A[1]) & (q <= 1 / band_A[0])).astype(np.float32)
        mean = np.zeros((n, n))
        for s in range(0, len(boxes), 256):
            b = np.asarray(boxes[s:s + 256], np.float32)
            mean += (np.abs(scipy.fft.ifft2(scipy.fft.fft2(b, workers=-1) * bp, workers=-1)) ** 2).sum(0)
        mean = ndimage.gaussian_filter(mean / len(boxes), 1.0 / sampling)
    else:
        mean = sign * np.asarray(boxes, np.float32).mean(axis=0, dtype=np.float64)
    n = mean.shape[0]
    yy, xx = np.mgrid[:n, :n] - n // 2
    r = np.rint(np.hypot(xx, yy)).astype(int)
    prof = np.bincount(r.ravel(), mean.ravel()) / np.bincount(r.ravel())
    prof = prof - np.median(prof[n // 2 - 4:n // 2]) if n // 2 - 4 > 0 else prof
    peak = prof[:3].max()
    below = np.flatnonzero(prof[1:] < fraction * peak)
    radius = float(below[0] + 1) if below.size else n / 2
    return 2 * radius * sampling


def choose_method(frames, valid: np.ndarray, sampling: float, radius_px: float, sign: float,
                  config: TrackingConfig, linear_contrast: bool) -> str:
    """The ``auto`` tracking method: whichever of ``contrast`` and ``energy`` finds the particle (peak z-score ≥
    ``min_peak_z``) in more of up to 64 frames spread over the series (ties: ``contrast`` for linear frames,
    ``energy`` otherwise; z-scores of the two are not comparable). Which one works depends on the imaging: a linear
    projection or an aperture-limited strong scatterer shows its low-resolution contrast, a pure phase-contrast
    image of a weak one only its local power. ``frames``: the series (:class:`tumblebench.stages.Frames`)."""
    good = np.flatnonzero(valid)
    sample = good[np.unique(np.linspace(0, len(good) - 1, min(64, len(good))).round().astype(int))]
    fr = frames[sample]
    best, best_key = "", (-1.0, -np.inf, -1)
    for method in ("contrast", "energy"):
        _, z = locate(fr, sampling, radius_px, sign, replace(config, method=method, window_frames=1))
        found = float(np.mean(z >= config.min_peak_z))
        key = (found, int((method == "contrast") == linear_contrast), float(np.median(z)))
        log.info("tracking: %s method finds the particle in %.0f %% of %d sample frames (median peak z %.1f)",
                 method, 100 * key[0], len(sample), key[2])
        if key > best_key:
            best, best_key = method, key
    return best


class CorrelationTracker:
    """The built-in tracker (registered as ``correlation``): :func:`locate` on every frame in chunks (with the
    running-mean halo of ``window_frames``), frames below ``min_peak_z`` lost, the trajectory smoothed.

    Parameters
    ----------
    config
        :class:`TrackingConfig`.
    """

    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()

    def track(self, data: TrackingInput) -> Track:
        """Centres (smoothed) and kept mask of every frame (:class:`tumblebench.stages.Tracker`)."""
        cfg = self.config
        frames = data.frames
        m = len(frames)
        valid = np.asarray(data.valid, bool)
        if cfg.method == "auto":
            cfg = replace(cfg, method=choose_method(frames, valid, data.sampling, data.radius_px,
                                                    data.contrast_sign, cfg, data.linear_contrast))
        raw = np.full((m, 2), np.nan)
        z = np.zeros(m)
        ch = cfg.chunk
        halo = cfg.window_frames // 2  # frames beyond each end of a chunk that enter its running mean
        for s in range(0, m, ch):
            lo, hi = max(0, s - halo), min(m, s + ch + halo)
            xy, zz = locate(frames[lo:hi], data.sampling, data.radius_px, data.contrast_sign, cfg,
                            valid=valid[lo:hi])
            e = min(s + ch, m)
            raw[s:e] = xy[s - lo:e - lo]
            z[s:e] = zz[s - lo:e - lo]
            if data.progress is not None:
                data.progress(e - s)
        kept = valid & (z >= cfg.min_peak_z)
        smooth = smooth_trajectory(raw, kept, cfg.smooth_frames) if kept.any() else raw
        return Track(centres_px=smooth, kept=kept, scores=z, raw_px=np.where(kept[:, None], raw, np.nan),
                     info={"tracking_method": cfg.method})
