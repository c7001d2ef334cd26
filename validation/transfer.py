"""Which FSC crossing a resolution is: the CTF's transfer gap of a series, and the crossings on either side of it.

An aberration-corrected phase-contrast CTF with a little amplitude contrast,
``CTF(q) = −(√(1−Q²) sin γ(q) + Q cos γ(q))·E(q)`` (:func:`tumblebench.simulator.optics.ctf_2d`), passes through
zero at low frequency where ``sin γ`` cancels the amplitude term (near 6 Å for the default optics, whose defocus
barely changes over a series). The frames carry almost no signal in a band around that zero, so the half-map
FSC of a map that is fine at 1 Å can fall below 0.143 there first. Two numbers answer two questions:

* the **first crossing** (scanning from the lowest frequency): the conventional figure, which may sit inside
  the gap and then says only that the data do not transfer that band;
* the **crossing within the transferred band**: beyond the gap, the first fall below the threshold after the
  curve has risen above it (a crystal has little power between the gap and its first Bragg shells, so the
  curve may stay low there a while), the resolution of the detail the data do carry.

The gap is the first band (from low frequency) where the series-RMS of the radial CTF,
``sqrt(mean_i CTF_i(q)²)`` over the frames' defoci, is below ``threshold`` (default 0.05: less than 5 % of the
transfer of an ideal phase plate). Projection-mode series have no CTF and no gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tumblebench.reconstruct.fsc import resolution_at
from tumblebench.simulator.optics import OpticsConfig, aberration_phase, aperture, envelopes, series_optics

#: Series-RMS CTF below which a band counts as not transferred.
GAP_THRESHOLD = 0.05


@dataclass(frozen=True)
class TransferGap:
    """The band the series' CTF does not transfer.

    Attributes
    ----------
    low_res_A, high_res_A
        Its edges in Å (``low_res_A`` > ``high_res_A``): frequencies 1/low_res_A … 1/high_res_A.
    threshold
        Series-RMS CTF below which the band was counted.
    """

    low_res_A: float
    high_res_A: float
    threshold: float


def series_ctf(freq: np.ndarray, optics: OpticsConfig, defoci_A: np.ndarray, amplitude_contrast: float
               ) -> np.ndarray:
    """Series-RMS of the radial CTF (aperture and envelopes included) at ``freq`` (1/Å).

    Parameters
    ----------
    freq
        (K,) spatial frequencies in 1/Å.
    optics
        Lens parameters (its ``defocus_A`` is replaced by each frame's; astigmatism is averaged out).
    defoci_A
        (M,) per-frame mean defocus in Å (underfocus positive; RELION's (DefocusU + DefocusV)/2).
    amplitude_contrast
        Q in [0, 1).

    Returns
    -------
    numpy.ndarray
        (K,) ``sqrt(mean_i CTF_i(q)²)``.
    """
    q = np.asarray(freq, float)
    o = replace(optics, astigmatism_A=0.0)
    zeros = np.zeros_like(q)
    d, counts = np.unique(np.round(np.asarray(defoci_A, float), 1), return_counts=True)
    acc = np.zeros_like(q)
    for df, c in zip(d, counts, strict=True):
        g = aberration_phase(zeros, q, o, float(df))
        ctf = -(np.sqrt(1 - amplitude_contrast**2) * np.sin(g) + amplitude_contrast * np.cos(g))
        acc += c * (ctf * envelopes(zeros, q, o, float(df)) * aperture(zeros, q, o)) ** 2
    return np.sqrt(acc / counts.sum())


def transfer_gap(freq: np.ndarray, ctf_rms: np.ndarray, threshold: float = GAP_THRESHOLD) -> TransferGap | None:
    """The first band (q > 0) where ``ctf_rms`` < ``threshold``, or None if there is none below the last shell."""
    q = np.asarray(freq, float)
    low = (np.asarray(ctf_rms, float) < threshold) & (q > 0)
    idx = np.flatnonzero(low)
    if not len(idx):
        return None
    i0 = int(idx[0])
    i1 = i0
    while i1 + 1 < len(q) and low[i1 + 1]:
        i1 += 1
    if i1 == len(q) - 1:  # the CTF never recovers in this range: an information limit, not a gap
        return None
    lo = q[i0 - 1] if i0 > 0 else q[i0]  # the band edges: last transferred shell on either side
    hi = q[i1 + 1]
    return TransferGap(float(1.0 / lo) if lo > 0 else float("inf"), float(1.0 / hi), float(threshold))


#: Successive shells above the threshold beyond the gap before a fall below it counts as the band crossing.
RISE_SHELLS = 3


def crossings(freq: np.ndarray, curve: np.ndarray, threshold: float, gap: TransferGap | None
              ) -> tuple[float, float, bool | None]:
    """First crossing, crossing within the transferred band, and whether the first lies in the gap.

    Returns
    -------
    first_A, band_A, first_in_gap
        Resolutions in Å (:func:`tumblebench.reconstruct.fsc.resolution_at`); when the first crossing lies in
        the gap, ``band_A`` is the first fall below the threshold, beyond the gap's high-frequency edge, after
        the curve has stayed above it for ``RISE_SHELLS`` successive shells (``inf`` if it never does);
        otherwise (no gap, or a first crossing below or above the gap) it equals ``first_A``. ``first_in_gap``
        is None without a gap.
    """
    first = resolution_at(freq, curve, threshold)
    if gap is None:
        return first, first, None
    in_gap = bool(gap.high_res_A <= first <= gap.low_res_A)
    if not in_gap:
        return first, first, in_gap
    # beyond the gap the FSC may stay low a while (a crystal has little power between the gap and its first
    # Bragg shells): the band crossing is the first fall below the threshold after the curve has risen above it
    # for RISE_SHELLS successive shells; one shell is not enough, as the gap's edge shell may poke above it and
    # the curve fall back before the Bragg shells
    q = np.asarray(freq, float)
    c = np.asarray(curve, float)
    i0 = int(np.searchsorted(q, 1.0 / gap.high_res_A))
    above = (c[i0:] >= threshold).astype(int)
    run = np.convolve(above, np.ones(RISE_SHELLS, int), mode="valid")  # run[j]: shells above in j … j+RISE_SHELLS-1
    start = np.flatnonzero(run == RISE_SHELLS)
    if not len(start):
        return first, float("inf"), in_gap
    band = resolution_at(q, c, threshold, min_freq=float(q[i0 + start[0]]))
    return first, band, in_gap


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def run_transfer_gap(series_dir: Path, recon_dir: Path | None, freq: np.ndarray,
                     threshold: float = GAP_THRESHOLD) -> tuple[TransferGap | None, np.ndarray | None]:
    """The transfer gap of a simulated series as its reconstruction modelled it, and the series-RMS CTF.

    The optics come from the series' ``manifest.json`` (``config.imaging.optics``; else the STAR's voltage and
    C_s), the defoci from ``frames.star``, the amplitude contrast from the reconstruction's ``manifest.json``
    (``config.amplitude_contrast``; −1 or absent: the STAR's rlnAmplitudeContrast).

    Returns
    -------
    gap, ctf_rms
        None, None for a projection-mode series or when ``frames.star`` is absent.
    """
    from tumblebench.simulator.star import read_star

    star = series_dir / "frames.star"
    if not star.exists():
        return None, None
    optics_df, particles = read_star(star)
    if "tbMode" in optics_df and str(optics_df["tbMode"].iloc[0]) == "projection":
        return None, None
    opt = ((_json(series_dir / "manifest.json").get("config") or {}).get("imaging") or {}).get("optics")
    rq = None if recon_dir is None else (_json(recon_dir / "manifest.json").get("config") or {}).get(
        "amplitude_contrast")
    base, q0 = series_optics(optics_df, opt, -1.0 if rq is None else float(rq))
    defoci = (particles["rlnDefocusU"].to_numpy(float) + particles["rlnDefocusV"].to_numpy(float)) / 2
    rms = series_ctf(freq, base, defoci, q0)
    return transfer_gap(freq, rms, threshold), rms
