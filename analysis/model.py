"""Unsupervised atomic model building and per-atom statistics of a reconstructed map (Wietfeldt et al. 2024).

Pipeline of :func:`build_atom_model`:

1. Validate the map (3D, finite, sensible voxel size); subtract its median (the solvent level).
2. Denoise by correlation with one simulated atom of the element (:mod:`tumblebench.analysis.denoise`).
3. Find the particle envelope automatically (strong low-pass + Otsu + largest blob, dilated); a map whose
   envelope does not stand out of the low-passed background is rejected (no atoms above noise).
4. Otsu threshold T0 of the denoised map, coarse scan T0 → max scored by the correlation between the
   denoised map and a map simulated from the atoms found, finer scans around every near-best peak
   (:mod:`tumblebench.analysis.threshold`); connected components, splitting of merged atoms, centres
   (:mod:`tumblebench.analysis.segmentation`).
5. Reject outliers: validation correlation below mean − 2σ (and below a floor), then CN < 3.
6. Statistics: CN, GCN, NN bond, strain against a fitted fcc lattice (any orientation, per grain),
   local stacking, intensities, validation correlation, U_iso, anisotropic U and DOI with the map's own blur
   calibrated out (:mod:`tumblebench.analysis.displacement`), per-particle summaries and penetration depths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.fft
from scipy.spatial import cKDTree

from tumblebench.analysis import statistics as st
from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.denoise import (
    atom_transfer,
    check_map,
    denoise,
    envelope_mask,
    estimate_band_limit,
    frequency_squared,
    sphere_mask,
)
from tumblebench.analysis.displacement import (
    ProfileTable,
    fit_band_limit,
    fit_displacements,
    fit_gaussians,
    gather_windows,
    profile_table,
    refine_positions,
    window_correlation,
)
from tumblebench.analysis.penetration import fit_penetration
from tumblebench.analysis.segmentation import local_maxima
from tumblebench.analysis.threshold import scan_thresholds
from tumblebench.simulator.coordination import max_interatomic_distance, nn_bond_lengths
from tumblebench.simulator.density import render_density
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.stages import AtomDetection, AtomsInput


@dataclass
class AtomModel:
    """The atomic model of a map and all its statistics.

    Attributes
    ----------
    positions
        (N, 3) atom centres (x, y, z) in Å, map frame (voxel (iz, iy, ix) centred at (ix, iy, iz)·voxel).
    element
        Chemical symbol.
    sampling
        Voxel edge of the map (Å).
    map_shape
        Shape of the map [z, y, x].
    U
        (N, 3, 3) anisotropic displacement tensors (Å², map blur calibrated out; NaN where the fit failed).
    stats
        Per-atom table: SINGLE's ``atoms_stats.csv`` columns then tumblebench's additions.
    nanoparticle
        SINGLE's ``nanoparticle_stats.csv`` (one row).
    cn_stats
        SINGLE's ``cn_dependent_stats.csv`` plus S/√N errors.
    table1
        Seed 004's Table 1 quantities.
    penetration
        Eq. 1 fits (``cn``, ``gcn``, ``u_iso``, ``max_int``, ``doi``, ``valid_corr``), each a dict or None.
    lattice
        The fcc lattice fit (lattice constant, rotation, origin, ideal positions, grains).
    info
        Threshold scan, envelope contrast, counts of atoms rejected at each step, calibration.
    config
        The configuration used.
    scores
        (N,) the detector's per-atom scores (higher: more confident), or None.
    """

    positions: np.ndarray
    element: str
    sampling: float
    map_shape: tuple[int, int, int]
    U: np.ndarray
    stats: pd.DataFrame
    nanoparticle: pd.DataFrame
    cn_stats: pd.DataFrame
    table1: dict[str, float]
    penetration: dict[str, Any]
    lattice: Any
    info: dict[str, Any] = field(default_factory=dict)
    config: AtomsConfig = field(default_factory=AtomsConfig)
    scores: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.positions)


def simulate_map(positions: np.ndarray, shape: tuple[int, int, int], sampling: float, element: str,
                 u_iso: np.ndarray | float, resolution: float) -> np.ndarray:
    """Map simulated from atoms (potential in V, band-limited at ``resolution``), rendered in a crop.

    Parameters
    ----------
    positions
        (N, 3) Å, map frame.
    shape
        Full map shape [z, y, x].
    sampling
        Å.
    element
        Chemical symbol.
    u_iso
        Isotropic U per atom or one value (Å²).
    resolution
        Band limit (Å).
    """
    pos = np.asarray(positions, float)
    out = np.zeros(shape, np.float32)
    if len(pos) == 0:
        return out
    margin = 5.0
    lo = np.maximum(np.floor((pos.min(0) - margin) / sampling).astype(int), 0)  # x, y, z
    hi = np.minimum(np.ceil((pos.max(0) + margin) / sampling).astype(int) + 1, np.array(shape[::-1]))
    sub_shape = tuple(int(h - lo_) for h, lo_ in zip(hi[::-1], lo[::-1], strict=True))
    u = np.broadcast_to(np.asarray(u_iso, float), (len(pos),)).clip(0.0, None) + 0.004
    sub = render_density(pos - lo * sampling, sub_shape, sampling, elements=element, U=u, cutoff_sigmas=3.0)
    q2 = frequency_squared(sub_shape, sampling)
    ft = scipy.fft.rfftn(sub, workers=-1)
    # undo the 0.004 Å² rendering blur (keeps the point-sampled narrow Gaussians from aliasing)
    filt = np.exp(2 * np.pi**2 * 0.004 * q2) * (q2 <= 1.0 / resolution**2)
    sub = scipy.fft.irfftn(ft * filt, s=sub_shape, workers=-1).astype(np.float32)
    out[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = sub
    return out


def _intensity_stats(raw: np.ndarray, labels: np.ndarray, keep_ids: np.ndarray, centres_A: np.ndarray,
                     sampling: float) -> dict[str, np.ndarray]:
    """NVOX, AVG_INT, MAX_INT (z-score over all atom voxels), MAX_INT_RAW, DIAM for the kept atom labels."""
    n = len(keep_ids)
    remap = np.full(max(int(labels.max()), int(keep_ids.max(initial=-1)) + 1) + 1, -1)
    remap[keep_ids + 1] = np.arange(n)
    vox = np.nonzero(labels)
    lv = remap[labels[vox]]
    good = lv >= 0
    lv = lv[good]
    vox = tuple(v[good] for v in vox)
    vals = raw[vox].astype(np.float64)
    nvox = np.bincount(lv, minlength=n)
    s = np.bincount(lv, vals, n)
    avg = s / np.maximum(nvox, 1)
    mx = np.full(n, -np.inf)
    np.maximum.at(mx, lv, vals)
    mu, sd = float(vals.mean()), float(vals.std())
    z = (mx - mu) / sd if sd > 0 else np.zeros(n)
    xyz = np.stack(vox[::-1], axis=1) * sampling
    d = np.linalg.norm(xyz - centres_A[lv], axis=1)
    dmax = np.zeros(n)
    np.maximum.at(dmax, lv, d)
    return {"NVOX": nvox, "AVG_INT": avg, "MAX_INT": z, "MAX_INT_RAW": mx, "DIAM": 2 * dmax}


def _fit_displacements(vol: np.ndarray, centres: np.ndarray, sampling: float, radius: float,
                       table: ProfileTable, deblend: bool = True) -> dict[str, np.ndarray]:
    fit = fit_displacements(vol, centres, sampling, radius, table)
    if deblend:
        fit = fit_displacements(vol, centres, sampling, radius, table, others=fit)  # neighbours subtracted
    seed = fit_gaussians(vol, centres, sampling, radius)
    ok = fit.aniso_ok
    ev, evec = np.linalg.eigh(np.where(ok[:, None, None], fit.U, np.eye(3)[None]))  # ascending
    ev[~ok] = np.nan
    maj, mn = evec[:, :, 2].copy(), evec[:, :, 0].copy()
    maj[~ok] = np.nan
    mn[~ok] = np.nan
    az, pol = st.major_axis_angles(np.where(ok[:, None], maj, 0.0))
    az[~ok] = np.nan
    pol[~ok] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        doi = ev[:, 0] / ev[:, 2]
        doi_min = ev[:, 0] / ev[:, 1]
    U = fit.U.copy()
    aniso_corr = fit.aniso_corr.copy()
    aniso_corr[~ok] = np.nan
    return {"U_ISO": fit.u_iso, "SIGMA2_ISO": seed.sigma2_iso, "U": U, "U_MAJ": ev[:, 2], "U_MED": ev[:, 1],
            "U_MIN": ev[:, 0], "AZIMUTH": az, "POLAR": pol, "DOI": doi, "DOI_MIN": doi_min,
            "ISO_CORR": fit.iso_corr, "ANISO_CORR": aniso_corr, "ANISO_OK": ok, "MAJ": maj, "MIN": mn}


def _penetration_fits(stats: pd.DataFrame) -> dict[str, Any]:
    depth = stats["DEPTH"].to_numpy(float)
    specs = {"cn": ("CN_STD", (10.0, 12.0)), "gcn": ("CN_GEN", (10.0, 12.0)), "u_iso": ("U_ISO", None),
             "max_int": ("MAX_INT", None), "doi": ("DOI", None), "valid_corr": ("VALID_CORR", None)}
    out: dict[str, Any] = {}
    for key, (col, bounds) in specs.items():
        try:
            out[key] = fit_penetration(depth, stats[col].to_numpy(float), bounds).as_dict()
            out[key]["statistic"] = col
            out[key]["c_bounds"] = list(bounds) if bounds else None
        except TumblebenchError as exc:
            out[key] = {"statistic": col, "error": str(exc)}
    return out


def build_atom_model(volume: np.ndarray, sampling: float, config: AtomsConfig | None = None,
                     where: str = "map") -> AtomModel:
    """Build the atomic model of a map without supervision and compute every per-atom statistic.

    Parameters
    ----------
    volume
        3D map [z, y, x] (potential-like: atoms positive).
    sampling
        Voxel edge in Å.
    config
        Stage configuration (defaults need no tuning).
    where
        Name of the map in error messages (e.g. its file name).

    Returns
    -------
    AtomModel

    Raises
    ------
    TumblebenchError
        Bad map (NaN, not 3D, implausible voxel size), no particle above noise, an element without
        parameters, or a result inconsistent with the element (e.g. bond lengths that reveal a wrong voxel
        size). Never returns an empty model.
    """
    cfg = config or AtomsConfig()
    detection = ThresholdScanDetector(cfg).detect(AtomsInput(np.asarray(volume), float(sampling), cfg.element,
                                                             where))
    return atom_statistics(volume, sampling, detection, cfg, where)


def _detect(volume: np.ndarray, sampling: float, cfg: AtomsConfig, where: str) -> AtomDetection:
    """Steps 1–5 of the module docstring: the built-in detector's atoms (see :class:`ThresholdScanDetector`)."""
    cfg.validate()
    sampling = float(sampling)
    raw = check_map(volume, sampling, where)
    radius = cfg.radius
    a_guess = cfg.lattice_constant
    ft = scipy.fft.rfftn(raw, workers=-1)
    band = cfg.resolution_A if cfg.resolution_A is not None else estimate_band_limit(ft, raw.shape, sampling)
    band = max(band, 2.0 * sampling)
    band_source = ("config" if cfg.resolution_A is not None
                   else ("spectrum" if band > 2.0 * sampling + 1e-9 else "nyquist"))
    C = denoise(raw, sampling, cfg.element, cfg.template_u_iso_A2, band, ft)
    env, z = envelope_mask(raw, sampling, cfg.mask_lowpass_A, cfg.mask_dilate_A, ft)
    if not z >= cfg.min_envelope_zscore:
        raise TumblebenchError(
            f"{where}: no particle above noise (envelope contrast {z:.1f} σ of the background, need "
            f"{cfg.min_envelope_zscore:g}); check the map, its sign and its voxel size"
        )
    mask = env if cfg.mask == "auto" else sphere_mask(raw.shape, sampling, float(cfg.mask_diameter_A))
    # width of a denoised atom (curvature of its exact profile at the centre) for the scan's simulated maps
    den_tab = profile_table(cfg.element, band, cfg.template_u_iso_A2, n_u=2, u_max=1e-9)
    sigma_s = float(np.sqrt(-den_tab.p[0, 0] / den_tab.d2p[0, 1]))
    # work inside the bounding box of the mask (plus a margin) for speed
    nzw = [np.nonzero(mask.any(axis=ax))[0] for ax in ((1, 2), (0, 2), (0, 1))]
    if any(len(a) == 0 for a in nzw):
        raise TumblebenchError(f"{where}: the mask is empty")
    box = tuple(slice(max(int(a[0]) - 2, 0), min(int(a[-1]) + 3, s)) for a, s in zip(nzw, raw.shape, strict=True))
    origin_vox = np.array([box[2].start, box[1].start, box[0].start], float)  # x, y, z
    Cc, mc = np.ascontiguousarray(C[box]), np.ascontiguousarray(mask[box])
    peaks = local_maxima(Cc, mc, 0.0, 2.0 * radius / sampling)
    scan = scan_thresholds(Cc, mc, peaks, radius / sampling, sigma_s / sampling, cfg.n_thresholds,
                           cfg.n_fine_thresholds, split=cfg.split)
    seg = scan.segmentation
    labels = np.zeros(raw.shape, np.int32)
    labels[box] = seg.labels
    centres = (seg.centres_vox + origin_vox) * sampling
    # significance: denoised density at the atoms against the denoised background outside the envelope
    outside = C[~env]
    if outside.size >= 100:
        med = float(np.median(outside))
        sd = 1.4826 * float(np.median(np.abs(outside - med)))
        idx = np.clip(np.rint(centres[:, ::-1] / sampling).astype(np.int64), 0, np.array(raw.shape) - 1)
        atom_z = (float(np.median(C[tuple(idx.T)])) - med) / sd if sd > 0 else float("inf")
    else:
        atom_z = float("inf")
    if not atom_z >= cfg.min_atom_zscore:
        raise TumblebenchError(
            f"{where}: no atoms above noise (median atom peak {atom_z:.1f} σ of the background, need "
            f"{cfg.min_atom_zscore:g})"
        )
    nn_found = nn_bond_lengths(centres) if len(centres) > 1 else np.array([np.inf])
    nn_med = float(np.median(nn_found))
    expected_nn = a_guess / np.sqrt(2)
    if not 0.75 <= nn_med / expected_nn <= 1.3:
        raise TumblebenchError(
            f"{where}: median nearest-neighbour distance {nn_med:.2f} Å is far from {cfg.element}'s "
            f"{expected_nn:.2f} Å; check the voxel size ({sampling} Å) and the element, or the map's quality and "
            "resolution (merged or spurious atoms in a noisy or poorly resolved map)"
        )
    ids = np.arange(len(centres))
    fit_radius = 0.75 * a_guess / (2 * np.sqrt(2))
    if band_source == "nyquist":  # no edge in the spectrum (noise fills it): fit the atoms' effective band limit
        band = fit_band_limit(raw, centres, sampling, fit_radius, cfg.element, 2.0 * sampling,
                              max(1.5, 2.0 * sampling + 0.2))
        band_source = "atom fit"
    table = profile_table(cfg.element, band)
    f0 = fit_displacements(raw, centres, sampling, fit_radius, table)
    centres = refine_positions(raw, centres, sampling, fit_radius, table, f0.u_iso)
    f1 = fit_displacements(raw, centres, sampling, fit_radius, table, others=f0)  # deblended from neighbours
    centres = refine_positions(raw, centres, sampling, fit_radius, table, f1.u_iso, others=f1)
    info: dict[str, Any] = {
        "envelope_zscore": z, "atom_zscore": atom_z, "envelope_voxels": int(mask.sum()), "threshold_t0": scan.t0,
        "threshold": scan.best, "scan": {"thresholds": scan.thresholds, "correlations": scan.correlations,
                                         "n_atoms": scan.n_atoms},
        "n_components": seg.n_components, "n_split": seg.n_split, "n_found": len(centres),
        "band_limit_A": band, "band_limit_source": band_source, "sigma_denoised_atom_A": sigma_s,
    }
    # --- outlier rejection (Wietfeldt et al. 2024): validation correlation, then CN
    n_corr = 0
    if cfg.reject_low_correlation and len(centres) > 3:
        disp = _fit_displacements(raw, centres, sampling, fit_radius, table, deblend=False)
        u_common = float(np.nanmedian(disp["U_ISO"])) if np.any(np.isfinite(disp["U_ISO"])) else 0.01
        S = simulate_map(centres, raw.shape, sampling, cfg.element, u_common, band)
        a_w, _, ins = gather_windows(raw, centres, sampling, 1.5 * radius)
        b_w, _, _ = gather_windows(S, centres, sampling, 1.5 * radius)
        corr = window_correlation(a_w, b_w, ins)
        cut = np.nanmean(corr) - cfg.correlation_sigmas * np.nanstd(corr)
        bad = ((corr < cut) & (corr < cfg.correlation_floor)) | ~np.isfinite(corr)
        n_corr = int(bad.sum())
        centres, ids = centres[~bad], ids[~bad]
    n_cn = 0
    if cfg.min_cn > 0 and len(centres) > 3:
        cn, _ = st.coordination_metrics(centres, a_guess)
        bad = cn < cfg.min_cn
        n_cn = int(bad.sum())
        centres, ids = centres[~bad], ids[~bad]
    info.update({"n_rejected_correlation": n_corr, "n_rejected_cn": n_cn, "n_atoms": len(centres)})
    if len(centres) < 4:
        raise TumblebenchError(f"{where}: only {len(centres)} atoms found; the map holds no resolvable particle")
    # per-atom score: denoised density at the atom against the background outside the envelope (robust z)
    idx = np.clip(np.rint(centres[:, ::-1] / sampling).astype(np.int64), 0, np.array(raw.shape) - 1)
    at = C[tuple(idx.T)].astype(np.float64)
    scores = (at - med) / sd if outside.size >= 100 and sd > 0 else at
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids + 1] = np.arange(1, len(ids) + 1)
    return AtomDetection(positions=centres, scores=scores, labels=lut[labels], resolution_A=float(band), info=info)


class ThresholdScanDetector:
    """The built-in atom detector (registered as ``threshold-scan``): steps 1–5 of the module docstring.

    Parameters
    ----------
    config
        :class:`tumblebench.analysis.config.AtomsConfig` (its detection fields; ``element`` is taken from the
        input).
    """

    name = "threshold-scan"

    def __init__(self, config: AtomsConfig | None = None):
        self.config = config or AtomsConfig()

    def detect(self, data: AtomsInput) -> AtomDetection:
        """Atom centres, scores (robust z of the denoised density) and the segmentation labels
        (:class:`tumblebench.stages.AtomDetector`)."""
        cfg = self.config
        if data.element != cfg.element:
            cfg = dataclasses.replace(cfg, element=data.element)
        cfg.validate()
        return _detect(data.volume, data.sampling, cfg, data.name)


def nearest_atom_labels(shape: tuple[int, int, int], sampling: float, positions: np.ndarray,
                        radius_A: float) -> np.ndarray:
    """int32 labels [z, y, x]: k + 1 for the voxels within ``radius_A`` of atom k and nearer to it than to any
    other atom, 0 elsewhere (the atoms' voxels for a detector that gives no segmentation)."""
    labels = np.zeros(shape, np.int32)
    pos = np.asarray(positions, float)
    if len(pos) == 0:
        return labels
    lo = np.maximum(np.floor((pos.min(0) - radius_A) / sampling).astype(int), 0)  # x, y, z
    hi = np.minimum(np.ceil((pos.max(0) + radius_A) / sampling).astype(int) + 1, np.array(shape[::-1]))
    zz, yy, xx = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in (2, 1, 0)), indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1) * sampling
    d, k = cKDTree(pos).query(pts, distance_upper_bound=radius_A)
    sub = np.where(np.isfinite(d), k + 1, 0).astype(np.int32).reshape(zz.shape)
    labels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = sub
    return labels


def _lattice_checked(centres: np.ndarray, cfg: AtomsConfig, sampling: float, where: str):
    """The structure metrics of atoms ``centres`` (N, 3; Å), after checking that they are a particle of the
    element: at least 4 atoms, and a fitted lattice constant within 8 % of the element's."""
    if len(centres) < 4:
        raise TumblebenchError(f"{where}: only {len(centres)} atoms found; the map holds no resolvable particle")
    a_guess = cfg.lattice_constant
    sm = st.structure_metrics(centres, a_guess)
    a_ratio = float(sm.fit.lattice_constant) / a_guess
    if not 0.92 <= a_ratio <= 1.08:
        raise TumblebenchError(
            f"{where}: fitted lattice constant {float(sm.fit.lattice_constant):.3f} Å is {100 * (a_ratio - 1):+.0f} % "
            f"off {cfg.element}'s {a_guess:.3f} Å; check the voxel size ({sampling} Å) and the element, or the map: a "
            "noisy or poorly resolved map (wrong poses, resolution coarser than the atom spacing) places atoms "
            "off their lattice sites"
        )
    return sm


def atom_positions(volume: np.ndarray, sampling: float, config: AtomsConfig | None = None,
                   where: str = "map") -> np.ndarray:
    """The atom centres (N, 3; x, y, z in Å, map frame) of :func:`build_atom_model`, without its statistics.

    Raises
    ------
    TumblebenchError
        As :func:`build_atom_model`: a bad map, no particle, fewer than 4 atoms, or a fitted lattice constant
        inconsistent with the element.
    """
    cfg = config or AtomsConfig()
    detection = ThresholdScanDetector(cfg).detect(AtomsInput(np.asarray(volume), float(sampling), cfg.element,
                                                             where))
    centres = np.asarray(detection.positions, np.float64).reshape(-1, 3)
    _lattice_checked(centres, cfg, float(sampling), where)
    return centres


def atom_statistics(volume: np.ndarray, sampling: float, detection: AtomDetection,
                    config: AtomsConfig | None = None, where: str = "map") -> AtomModel:
    """Step 6 of the module docstring: every per-atom statistic of detected atoms (any detector's).

    Parameters
    ----------
    volume
        3D map [z, y, x] (atoms positive).
    sampling
        Voxel edge in Å.
    detection
        The atoms (:class:`tumblebench.stages.AtomDetection`): positions (x, y, z) Å, map frame; optional labels
        (else :func:`nearest_atom_labels` within the atomic radius) and band limit (else estimated from the map's
        spectrum, or fitted to the atoms when the spectrum shows no edge).
    config
        :class:`tumblebench.analysis.config.AtomsConfig`.
    where
        Name of the map in error messages.

    Raises
    ------
    TumblebenchError
        Fewer than 4 atoms, or a fitted lattice constant inconsistent with the element.
    """
    cfg = config or AtomsConfig()
    cfg.validate()
    sampling = float(sampling)
    raw = check_map(volume, sampling, where)
    radius = cfg.radius
    a_guess = cfg.lattice_constant
    centres = np.asarray(detection.positions, np.float64).reshape(-1, 3)
    sm = _lattice_checked(centres, cfg, sampling, where)
    fit_radius = 0.75 * a_guess / (2 * np.sqrt(2))
    band = detection.resolution_A
    if band is None:
        band0 = cfg.resolution_A
        if band0 is None:
            band0 = estimate_band_limit(scipy.fft.rfftn(raw, workers=-1), raw.shape, sampling)
        band = max(float(band0), 2.0 * sampling)
        if cfg.resolution_A is None and band <= 2.0 * sampling + 1e-9:  # no edge in the spectrum: fit it to the atoms
            band = fit_band_limit(raw, centres, sampling, fit_radius, cfg.element, 2.0 * sampling,
                                  max(1.5, 2.0 * sampling + 0.2))
    table = profile_table(cfg.element, band)
    labels = detection.labels
    if labels is None:
        labels = nearest_atom_labels(raw.shape, sampling, centres, radius)
    ids = np.arange(len(centres))
    info: dict[str, Any] = dict(detection.info)
    # --- statistics
    disp = _fit_displacements(raw, centres, sampling, fit_radius, table)
    u_common = float(np.nanmedian(disp["U_ISO"])) if np.any(np.isfinite(disp["U_ISO"])) else 0.01
    S = simulate_map(centres, raw.shape, sampling, cfg.element, u_common, band)
    a_w, _, ins = gather_windows(raw, centres, sampling, 1.5 * radius, cube=True)
    b_w, _, _ = gather_windows(S, centres, sampling, 1.5 * radius, cube=True)
    valid = window_correlation(a_w, b_w, ins)
    inten = _intensity_stats(raw, labels, ids, centres, sampling)
    n = len(centres)
    strain_pct = 100.0 * sm.strain
    cols: dict[str, Any] = {
        "INDEX": np.arange(1, n + 1), "NVOX": inten["NVOX"], "CN_STD": sm.cn, "NN_BONDL": sm.nn_bond,
        "CN_GEN": sm.gcn, "DIAM": inten["DIAM"], "ADJ_CN13": sm.adj_cn13, "AVG_INT": inten["AVG_INT"],
        "MAX_INT": inten["MAX_INT"], "CENDIST": sm.cendist, "VALID_CORR": valid, "U_ISO": disp["U_ISO"],
        "U_MAJ": disp["U_MAJ"], "U_MED": disp["U_MED"], "U_MIN": disp["U_MIN"], "AZIMUTH": disp["AZIMUTH"],
        "POLAR": disp["POLAR"], "DOI": disp["DOI"], "DOI_MIN": disp["DOI_MIN"], "ISO_CORR": disp["ISO_CORR"],
        "ANISO_CORR": disp["ANISO_CORR"], "X": centres[:, 0], "Y": centres[:, 1], "Z": centres[:, 2],
        "EXX_STRAIN": strain_pct[:, 0], "EYY_STRAIN": strain_pct[:, 1], "EZZ_STRAIN": strain_pct[:, 2],
        "EXY_STRAIN": strain_pct[:, 3], "EYZ_STRAIN": strain_pct[:, 4], "EXZ_STRAIN": strain_pct[:, 5],
        "RADIAL_STRAIN": 100.0 * sm.radial_strain,
        "DEPTH": sm.depth, "STACKING": sm.stacking, "GRAIN": np.asarray(sm.fit.grain),
        "SIGMA2_ISO": disp["SIGMA2_ISO"],
        "U_XX": disp["U"][:, 0, 0], "U_YY": disp["U"][:, 1, 1], "U_ZZ": disp["U"][:, 2, 2],
        "U_XY": disp["U"][:, 0, 1], "U_YZ": disp["U"][:, 1, 2], "U_XZ": disp["U"][:, 0, 2],
        "MAJ_X": disp["MAJ"][:, 0], "MAJ_Y": disp["MAJ"][:, 1], "MAJ_Z": disp["MAJ"][:, 2],
        "MIN_X": disp["MIN"][:, 0], "MIN_Y": disp["MIN"][:, 1], "MIN_Z": disp["MIN"][:, 2],
        "ANISO_OK": disp["ANISO_OK"], "MAX_INT_RAW": inten["MAX_INT_RAW"],
        "IDEAL_X": sm.ideal_positions[:, 0], "IDEAL_Y": sm.ideal_positions[:, 1],
        "IDEAL_Z": sm.ideal_positions[:, 2],
    }
    stats = pd.DataFrame(cols, columns=list(st.SINGLE_COLUMNS) + list(st.EXTRA_COLUMNS))
    diameter = max_interatomic_distance(centres)
    a_fit = float(sm.fit.lattice_constant)
    info["lattice_rms_residual_A"] = float(getattr(sm.fit, "rms_residual", np.nan))
    info["n_grains"] = len(np.unique(np.asarray(sm.fit.grain)))
    return AtomModel(
        positions=centres, element=cfg.element, sampling=sampling, map_shape=tuple(int(s) for s in raw.shape),
        U=disp["U"], stats=stats, nanoparticle=st.nanoparticle_stats(stats, diameter),
        cn_stats=st.cn_dependent_stats(stats), table1=st.table1(stats, diameter, a_fit),
        penetration=_penetration_fits(stats), lattice=sm.fit, info=info, config=cfg,
        scores=np.asarray(detection.scores, np.float64),
    )


def config_dict(cfg: AtomsConfig) -> dict[str, Any]:
    """The resolved configuration as plain data (tabulated defaults filled in)."""
    d = dataclasses.asdict(cfg)
    d["lattice_constant_guess_A"] = cfg.lattice_constant
    d["atom_radius_A"] = cfg.radius
    return d


__all__ = ["AtomModel", "ThresholdScanDetector", "atom_statistics", "atom_transfer", "build_atom_model",
           "config_dict", "simulate_map"]
