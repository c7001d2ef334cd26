"""``report.html``: one self-contained page that shows a run against its truth at a glance.

Every figure is a matplotlib PNG embedded as base64 (no external file, script or font), so the page reads
offline and survives being mailed or archived. Each has axis labels with units and a one-line caption that
says what a good result looks like. The figures follow the seed paper (Wietfeldt et al., Commun. Chem. 2024):
the particle coloured by CN, raw against noise-free frames, the pose error over the series (modulo the
particle's symmetry), FSC curves with the CTF's transfer gap, central map slices with the true and found
atoms, CN against radial depth with the penetration-depth fit (its Fig. 4), per-atom statistics against CN
(its Fig. 5), and the truth-against-recovered table (its Table 1's columns plus recall, precision, RMSD).

A stage that did not run leaves a note in place of its figures. The numbers come from
:func:`tumblebench.validation.scorecard.score_details` and the stages' own files; the report adds only the
noise-free frames, re-rendered from the series' manifest (same seed, same frames), and the recovered
model's radial strain against the bulk lattice constant (the truth's reference; the atoms stage measures it
against the model's own fitted lattice).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import atomic_file
from tumblebench.validation.scorecard import RunLayout, ScoreDetails, score_details

#: Identifiers of the report's figures, in page order.
FIGURES: tuple[str, ...] = ("particle", "frames", "poses", "fsc", "slices", "penetration", "cn_stats")

_DPI = 100


@dataclass
class ReportFigure:
    """One figure of the report: a PNG and its caption, or the reason it is missing."""

    key: str
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TumblebenchError(f"{path}: not valid JSON ({exc})") from None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding at least one stage's output of a run (:class:`RunLayout`)."""
    lay = RunLayout(Path(path))
    return lay.root.is_dir() and any(d.is_dir() for d in (lay.particle, lay.series, lay.recon, lay.atoms))


# --------------------------------------------------------------------------------------------- figures
def fig_particle(nc: Any) -> ReportFigure:
    """The true atoms coloured by CN: an oblique 3D view and the projection along z."""
    pos = np.asarray(nc.positions, float)
    cn = np.asarray(nc.atoms.arrays["cn"], float)
    fig = Figure(figsize=(10, 4.6))
    lim = float(np.abs(pos).max()) + 1.5
    kw = {"c": None, "cmap": "viridis", "vmin": 3, "vmax": 12, "edgecolors": "k", "linewidths": 0.3}
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    view = np.array([np.cos(np.radians(35)), np.sin(np.radians(35)), 0.3])
    order = np.argsort(pos @ view)  # far atoms first, so the near ones are drawn on top
    kw["c"] = cn[order]
    ax.scatter(pos[order, 0], pos[order, 1], pos[order, 2], s=30, depthshade=False, **kw)
    ax.view_init(elev=20, azim=35)
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-lim, lim)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_zlabel("z (Å)", labelpad=6)
    ax.locator_params(nbins=4)
    ax.tick_params(labelsize=8, pad=1)
    ax.set_title("oblique view", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    order = np.argsort(pos[:, 2])  # the top layer (largest z) drawn last
    kw["c"] = cn[order]
    sc = ax2.scatter(pos[order, 0], pos[order, 1], s=42, **kw)
    ax2.set_aspect("equal")
    ax2.set_xlim(-lim, lim)
    ax2.set_ylim(-lim, lim)
    ax2.set_xlabel("x (Å)")
    ax2.set_ylabel("y (Å)")
    ax2.set_title("seen from +z (top atoms in front)", fontsize=10)
    fig.colorbar(sc, ax=ax2, label="coordination number CN")
    fig.subplots_adjust(left=0.02, right=0.95, wspace=0.25)
    return ReportFigure("particle", "The particle (truth)",
                        "The true atoms in the particle frame (origin at the centroid, the rotation centre), coloured "
                        "by CN (12 = bulk; 3–7 = corners and edges). Good: the recovered model below reproduces "
                        "this CN pattern atom for atom.", _png(fig))


def _noise_free_frames(layout: RunLayout, nc: Any, indices: np.ndarray
                       ) -> tuple[list[np.ndarray], list[np.ndarray], float, str]:
    """Stored raw frames and the same frames re-rendered without shot noise (from the series' manifest)."""
    from tumblebench.simulator.config import from_dict
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.series import SeriesConfig, SeriesSimulation, expected_counts

    man = _read_json(layout.series / "manifest.json")
    if "config" not in man or man.get("seed") is None:
        raise TumblebenchError(f"{layout.series / 'manifest.json'}: no simulation config and seed to re-render from")
    cfg = from_dict(SeriesConfig, man["config"], where=str(layout.series / "manifest.json"))
    sim = SeriesSimulation(nc, cfg, int(man["seed"]))
    stack, sampling = read_volume(layout.series / "frames.mrcs")
    raw, clean = [], []
    same = True
    for f in indices:
        intensity, counts = sim.render(int(f))
        raw.append(np.asarray(stack[int(f)], np.float32))
        clean.append(expected_counts(intensity, sim.dose, float(sampling), cfg.detector))
        same &= bool(np.array_equal(counts, raw[-1]))
    note = ("re-rendering reproduces the stored raw frames bit for bit" if same else
            "the re-rendered raw frames differ from the stored ones (simulator changed since the run?)")
    return raw, clean, float(sampling), note


def fig_frames(layout: RunLayout, nc: Any, n_show: int = 4) -> ReportFigure:
    """Raw frames above their noise-free counterparts, cropped around the particle."""
    from tumblebench.simulator.star import read_star

    title = "Raw and noise-free frames"
    if not (layout.series / "frames.mrcs").exists():
        return ReportFigure("frames", title, "", note="series/ not found: no frames to show.")
    _, particles = read_star(layout.series / "frames.star")
    n = len(particles)
    idx = np.unique(np.linspace(0, n - 1, min(n_show, n)).round().astype(int))
    try:
        raw, clean, sampling, note = _noise_free_frames(layout, nc, idx)
    except TumblebenchError as exc:
        return ReportFigure("frames", title, "", note=f"noise-free frames not available ({exc}); "
                            "series/montage.png shows the simulator's own montage if it was written.")
    half = min(48, raw[0].shape[0] // 2)
    ext = (-half * sampling, half * sampling, -half * sampling, half * sampling)
    crops: list[list[np.ndarray]] = [[], []]
    for j, f in enumerate(idx):
        cx = int(np.clip(round(float(particles["rlnCoordinateX"].iloc[f])), half, raw[j].shape[1] - half))
        cy = int(np.clip(round(float(particles["rlnCoordinateY"].iloc[f])), half, raw[j].shape[0] - half))
        for row, img in enumerate((raw[j], clean[j])):
            crops[row].append(img[cy - half:cy + half, cx - half:cx + half])
    k = len(idx)
    fig = Figure(figsize=(2.5 * k + 1.2, 5.6))
    axes = fig.subplots(2, k, squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.89, bottom=0.08, top=0.95, wspace=0.3, hspace=0.32)
    for row, name in enumerate(("raw", "noise-free")):
        lo, hi = np.percentile(np.stack(crops[row]), [0.5, 99.5])  # one grey scale per row: same dose, same scale
        im = None
        for j, f in enumerate(idx):
            ax = axes[row, j]
            im = ax.imshow(crops[row][j], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower",
                           extent=ext, interpolation="nearest")
            t = particles["tbTime"].iloc[f] if "tbTime" in particles else None
            ax.set_title(f"frame {f + 1}{'' if t is None else f', t = {t:.2f} s'}, {name}", fontsize=8)
            ax.set_xlabel("x (Å)", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("y (Å)", fontsize=8)
        box = axes[row, -1].get_position()
        cax = fig.add_axes((0.91, box.y0, 0.012, box.height))
        fig.colorbar(im, cax=cax).set_label("counts / pixel", fontsize=8)
        cax.tick_params(labelsize=7)
    return ReportFigure("frames", title,
                        f"Frames spread over the series (top: recorded counts; bottom: the same frames without shot "
                        f"noise; {note}). Good: the lattice fringes of the bottom row are what the reconstruction "
                        "must recover from the top row's noise.", _png(fig))


def fig_poses(layout: RunLayout, det: ScoreDetails) -> ReportFigure:
    """Per-frame pose error over the series, raw and modulo the particle's symmetry."""
    from tumblebench.simulator.star import read_star

    title = "Pose error over the series"
    p = det.poses
    if p is None:
        return ReportFigure("poses", title, "", note="recon/poses.star or series/frames.star not found.")
    _, particles = read_star(layout.series / "frames.star")
    if "tbTime" in particles:
        x, xlabel = particles["tbTime"].to_numpy(float)[p.frames], "time in the series (s)"
    else:
        x, xlabel = p.frames + 1.0, "frame"
    sym = det.symmetry
    group = "C1" if sym is None else f"{sym.name}, order {sym.order}"
    twin = " + projection twin" if p.projection_twin else ""
    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    floor = 0.01
    ax.plot(x, np.maximum(p.angles_deg, floor), ".", ms=2.5, color="0.7", label="raw (best global rotation, hand)")
    ax.plot(x, np.maximum(p.reduced_angles_deg, floor), ".", ms=3, color="C0",
            label=f"modulo the particle's symmetry ({group}{twin})")
    for lim, ls in ((5, "--"), (10, ":")):
        ax.axhline(lim, color="C3", ls=ls, lw=1, label=f"{lim}°")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 200)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pose error (deg)")
    r = p.reduced_angles_deg
    ax.set_title(f"reduced: median {np.median(r):.2f}°, p90 {np.percentile(r, 90):.1f}°, "
                 f"{100 * np.mean(r <= 5):.0f} % within 5°, {100 * np.mean(r <= 10):.0f} % within 10°", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.25, top=0.91)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=4, markerscale=3,
              frameon=False)  # below the axes: no data hidden behind it
    return ReportFigure("poses", title,
                        "Angle between each frame's estimated and true pose after the best global rotation and hand "
                        "(grey), and modulo the rotations that map the true particle onto itself (blue); errors "
                        f"below {floor}° are drawn at {floor}°. Good: "
                        "nearly every blue point below the dashed 5° line, and no long runs above it.", _png(fig))


def fig_fsc(det: ScoreDetails) -> ReportFigure:
    """Half-map FSC and FSC against the truth, with the CTF's transfer gap shaded."""
    title = "Fourier shell correlation"
    m = det.map
    if m is None:
        return ReportFigure("fsc", title, "", note="recon/map.mrc or series/truth_map.mrc not found.")
    c = m.card
    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    q = m.freq
    sl = slice(1, None)
    ax.plot(q[sl], m.fsc_truth[sl], "-", color="C0", lw=1.6, label="map.mrc against the truth map")
    if m.fsc_half is not None:
        ax.plot(q[sl], m.fsc_half[sl], "-", color="C1", lw=1.4, label="half map 1 against half map 2")
    if m.ctf_rms is not None:
        ax.plot(q[sl], m.ctf_rms[sl], "--", color="0.5", lw=1, label="|CTF|, series RMS")
    if m.gap is not None:
        ax.axvspan(1 / m.gap.low_res_A, 1 / m.gap.high_res_A, color="C3", alpha=0.12,
                   label=f"CTF transfer gap {m.gap.low_res_A:.1f}–{m.gap.high_res_A:.1f} Å")
    ax.axhline(0.5, color="C0", ls=":", lw=1)
    ax.axhline(0.143, color="C1", ls=":", lw=1)
    ax.axhline(0.0, color="k", lw=0.5)

    def fmt(v: Any) -> str:
        return "—" if v is None else f"{v:.2f} Å"

    ax.set_title(f"FSC(truth) 0.5: {fmt(c['fsc_truth_0.5_A'])} (first crossing), "
                 f"{fmt(c['fsc_truth_0.5_band_A'])} (transferred band); half maps 0.143: "
                 f"{fmt(c['fsc_half_0.143_A'])} (first), {fmt(c['fsc_half_0.143_band_A'])} (band)", fontsize=9)
    ax.set_xlim(0, q[-1])
    ax.set_ylim(-0.4, 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    top = ax.secondary_xaxis("top", functions=(lambda f: 1 / np.maximum(f, 1e-3), lambda d: 1 / np.maximum(d, 1e-3)))
    top.set_xticks([10, 5, 3, 2, 1.5, 1.2, 1.0, 0.8])
    top.set_xlabel("resolution (Å)")
    ax.legend(fontsize=8, loc="lower left")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.8)
    return ReportFigure("fsc", title,
                        "FSC per Fourier shell; dotted lines mark 0.5 (truth) and 0.143 (half maps). Good: the blue "
                        "curve stays above 0.5 to about 1 Å; the half-map curve may dip inside the shaded band, "
                        "which the CTF does not transfer, and the figure to quote is its crossing beyond it.",
                        _png(fig))


def fig_slices(det: ScoreDetails) -> ReportFigure:
    """Central slices of the registered map and of the truth map, with true and found atoms."""
    title = "Central slices with the atoms"
    m = det.map
    if m is None:
        return ReportFigure("slices", title, "", note="recon/map.mrc or series/truth_map.mrc not found.")
    n = m.registered_map.shape[0]
    sampling = m.sampling
    c = n // 2
    centre = c * sampling
    a = det.atoms
    true_xyz = None if a is None else a.truth_xyz - centre
    found_xyz = None if a is None else a.found_xyz - centre
    if true_xyz is not None and len(true_xyz):
        half = float(np.abs(true_xyz).max()) + 3.0
    else:
        half = 0.35 * n * sampling
    half = min(half, c * sampling)
    k = round(half / sampling)
    ext = (-k * sampling, k * sampling, -k * sampling, k * sampling)
    planes = (("z = 0 (x–y plane)", lambda v: v[c], 2, (0, 1), ("x (Å)", "y (Å)")),
              ("y = 0 (x–z plane)", lambda v: v[:, c], 1, (0, 2), ("x (Å)", "z (Å)")),
              ("x = 0 (y–z plane)", lambda v: v[:, :, c], 0, (1, 2), ("y (Å)", "z (Å)")))
    fig = Figure(figsize=(11, 7.4))
    axes = fig.subplots(2, 3)
    slab = 0.9  # Å either side of the plane: atoms whose centre lies in the slab (half the (111) spacing ≈ 1.1 Å)
    for row, (vol, name) in enumerate(((m.registered_map, "map.mrc, registered"), (m.truth_map, "truth map"))):
        for j, (pname, cut, normal, (u, v), (xl, yl)) in enumerate(planes):
            ax = axes[row, j]
            img = cut(vol)[c - k:c + k + 1, c - k:c + k + 1]
            ax.imshow(img, cmap="gray", origin="lower", extent=(ext[0] - sampling / 2, ext[1] + sampling / 2,
                                                              ext[2] - sampling / 2, ext[3] + sampling / 2))
            if true_xyz is not None:
                t = true_xyz[np.abs(true_xyz[:, normal]) < slab]
                ax.plot(t[:, u], t[:, v], "o", mfc="none", mec="C2", ms=9, mew=1.2, label="true atom")
                f = found_xyz[np.abs(found_xyz[:, normal]) < slab]
                ax.plot(f[:, u], f[:, v], "x", color="C3", ms=6, mew=1.4, label="found atom")
            ax.set_xlim(ext[0], ext[1])
            ax.set_ylim(ext[2], ext[3])
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_title(f"{name}: {pname}", fontsize=9)
    if true_xyz is not None:
        axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.07, top=0.96, wspace=0.28, hspace=0.25)
    return ReportFigure("slices", title,
                        f"Slices through the box centre of the reconstruction registered onto the truth (top) and of "
                        f"the truth map (bottom); atoms within {slab} Å of each plane are marked. Good: every circle "
                        "sits on a density peak with a cross inside it, and the two rows look alike.", _png(fig))


def fig_penetration(layout: RunLayout, nc: Any, det: ScoreDetails) -> ReportFigure:
    """CN against radial depth with Wietfeldt 2024's Eq. 1 fits (the seed paper's Fig. 4), truth and recovered."""
    from tumblebench.analysis.penetration import eq1, fit_penetration

    title = "CN against radial depth: the penetration depth"
    true_depth = np.asarray(nc.atoms.arrays["depth"], float)
    true_cn = np.asarray(nc.atoms.arrays["cn"], float)
    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    series = [("truth", true_depth, true_cn, "C0")]
    if det.atoms is not None and {"DEPTH", "CN_STD"} <= set(det.atoms.stats.columns):
        st = det.atoms.stats
        series.append(("recovered", st["DEPTH"].to_numpy(float), st["CN_STD"].to_numpy(float), "C3"))
    rng = np.random.default_rng(0)  # jitter of the plotted points only (CN is an integer)
    for name, d, cnv, col in series:
        fit = fit_penetration(d, cnv)
        ax.plot(d, cnv + rng.uniform(-0.15, 0.15, len(cnv)), ".", ms=2.5, color=col, alpha=0.35)
        ax.plot(fit.depth, fit.value, "o", ms=4, color=col, mfc="none", label=f"{name}: running mean of 5 atoms")
        dd = np.linspace(0, max(float(d.max()), fit.delta_A) + 0.5, 200)
        ax.plot(dd, eq1(dd, fit.delta_A, fit.m, fit.c), "-", color=col, lw=2,
                label=f"{name}: Eq. 1 fit, δ = {fit.delta_A:.2f} Å, plateau {fit.c:.2f}")
        ax.axvline(fit.delta_A, color=col, ls=":", lw=1)
    ax.set_xlabel("radial depth R_NP − R (Å)")
    ax.set_ylabel("coordination number CN")
    ax.legend(fontsize=8, loc="lower right")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.97)
    return ReportFigure("penetration", title,
                        "CN of every atom against its depth below the surface, with the piecewise-linear fit of "
                        "Wietfeldt et al. (2024, Eq. 1; their Fig. 4) whose knee is the penetration depth δ. Good: "
                        "the red (recovered) fit lies on the blue (truth) one and the two δ agree within ~0.5 Å.",
                        _png(fig))


def _by_cn(cn: np.ndarray, value: np.ndarray, min_atoms: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and S/√N of ``value`` per integer CN with at least ``min_atoms`` finite values."""
    out = []
    for k in np.unique(cn[np.isfinite(cn)]).astype(int):
        v = value[(cn == k) & np.isfinite(value)]
        if len(v) >= min_atoms:
            out.append((k, v.mean(), v.std(ddof=1) / np.sqrt(len(v))))
    if not out:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    a = np.array(out)
    return a[:, 0], a[:, 1], a[:, 2]


def fig_cn_stats(nc: Any, det: ScoreDetails) -> ReportFigure:
    """Per-atom statistics against CN (the seed paper's Fig. 5): recovered, with the truth where it exists."""
    from tumblebench.simulator.mobility import degree_of_isotropy, u_iso

    title = "Per-atom statistics against CN"
    if det.atoms is None:
        return ReportFigure("cn_stats", title, "", note="atoms/ not found: no per-atom statistics.")
    st = det.atoms.stats
    cn = st["CN_STD"].to_numpy(float)
    ok = st["ANISO_OK"].to_numpy(bool) if "ANISO_OK" in st else np.ones(len(st), bool)
    true_cn = np.asarray(nc.atoms.arrays["cn"], float)
    true_u = np.asarray(nc.U, float).reshape(-1, 3, 3)
    panels = [("U_ISO", "U_iso (Å²)", u_iso(true_u)),
              ("DOI", "degree of isotropy U_min/U_maj", degree_of_isotropy(true_u)),
              ("MAX_INT", "maximum intensity (map units)", None), ("VALID_CORR", "validation correlation", None)]
    fig = Figure(figsize=(10, 6.4))
    axes = fig.subplots(2, 2)
    for ax, (col, label, truth) in zip(axes.ravel(), panels, strict=True):
        if col in st:
            v = st[col].to_numpy(float).copy()
            if col == "DOI":
                v[~ok] = np.nan  # anisotropic statistics only where the anisotropic fit is valid (as SINGLE)
            k, mean, sem = _by_cn(cn, v)
            if len(k):
                ax.errorbar(k, mean, yerr=sem, fmt="s-", color="C3", ms=5, capsize=3, label="recovered (mean ± S/√N)")
            else:
                ax.text(0.5, 0.5, "recovered: no CN bin with ≥ 5 valid values", transform=ax.transAxes,
                        ha="center", color="C3", fontsize=8)
        if truth is not None:
            k, mean, sem = _by_cn(true_cn, truth)
            ax.errorbar(k + 0.08, mean, yerr=sem, fmt="o--", color="C0", ms=4, capsize=3, label="truth")
        ax.set_xlabel("coordination number CN")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.97, wspace=0.25, hspace=0.3)
    return ReportFigure("cn_stats", title,
                        "Mean of each per-atom statistic per CN (bins of ≥ 5 atoms; error bars S/√N, as Wietfeldt et "
                        "al. 2024, Fig. 5). Good: the recovered U_iso and DOI follow the truth's trend — U_iso falls "
                        "and DOI rises towards CN 12 — and the validation correlation rises with CN.", _png(fig))


# ----------------------------------------------------------------------------------------------- tables
def _fmt(v: Any, fmt: str = ".3g") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool | str):
        return html.escape(str(v))
    if isinstance(v, int | np.integer):
        return f"{int(v):d}"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "—" if not np.isfinite(x) else format(x, fmt)


def _bulk_radial_strain(det: ScoreDetails, reference_A: float | None) -> float | None:
    """Median radial strain (%) of the found atoms against the bulk lattice constant (as the truth's), or None."""
    from tumblebench.validation.study import bulk_radial_strain

    if det.atoms is None:
        return None
    return bulk_radial_strain(det.atoms.found_xyz, reference_A,
                              (det.card.get("structure") or {}).get("lattice_constant_A"))


def table1_rows(layout: RunLayout, det: ScoreDetails) -> list[tuple[str, str, str]]:
    """Rows (quantity, truth, recovered) of the truth-against-recovered table (Wietfeldt 2024's Table 1 and more)."""
    t = _read_json(layout.particle / "structure.json")
    r = (_read_json(layout.atoms / "atoms_summary.json").get("table1") or {})
    a = det.card.get("atoms") or {}
    rows = [
        ("atoms", t.get("n_atoms"), r.get("n_atoms"), "d"),
        ("diameter, largest interatomic distance (Å)", t.get("diameter_A"), r.get("diameter_A"), ".2f"),
        ("median CN", t.get("median_cn"), r.get("median_cn"), ".1f"),
        ("median NN bond (Å)", t.get("median_nn_bond_A"), r.get("median_nn_bond_A"), ".3f"),
        ("median radial strain against the bulk lattice (%)", t.get("median_radial_strain_percent"),
         _bulk_radial_strain(det, t.get("reference_lattice_constant_A")), ".2f"),
        ("median radial strain against its own fitted lattice (%)", None, r.get("median_radial_strain_pct"), ".2f"),
        ("core ratio (CN = 12)", t.get("core_ratio"), r.get("core_ratio"), ".2f"),
        ("lattice constant (Å)", t.get("lattice_constant_A"), r.get("lattice_constant_A"), ".4f"),
        ("penetration depth δ from CN (Å)", a.get("penetration_depth_true_A"), a.get("penetration_depth_est_A"), ".2f"),
        ("recall (true atoms found within 1.76 Å)", None, a.get("recall"), ".3f"),
        ("precision (found atoms that are true)", None, a.get("precision"), ".3f"),
        ("RMSD of matched atoms (pm)", None, a.get("rmsd_pm"), ".1f"),
        ("CN exactly right (matched atoms)", None, a.get("cn_exact_fraction"), ".3f"),
    ]
    return [(name, _fmt(tv, f), _fmt(rv, f)) for name, tv, rv, f in rows]


def _scorecard_tables(card: dict[str, Any]) -> str:
    parts = []
    for name in ("structure", "series", "poses", "map", "atoms", "timing_s"):
        obj = card.get(name) or {}
        if not obj:
            continue
        cells = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{_fmt(v, '.4g')}</td></tr>"
                        for k, v in obj.items())
        parts.append(f'<div class="card"><h3>{html.escape(name)}</h3><table>{cells}</table></div>')
    return '<div class="cards">' + "".join(parts) + "</div>"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1em 2em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.sub { color: #555; margin-top: 0; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; color: #333; margin-top: 0.3em; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; } .card h3 { margin: 0.3em 0; font-size: 1em; }
.headline { font-size: 1.05em; background: #f5f8ff; border: 1px solid #cdd9f5; padding: 0.6em 1em; }
.headline li { margin: 0.15em 0; }
"""


def _headline(card: dict[str, Any]) -> str:
    s, p, m, a = (card.get(k) or {} for k in ("structure", "poses", "map", "atoms"))
    items = []
    if s.get("symmetry_group") is not None:
        items.append(f"particle: {_fmt(s.get('n_atoms'))} atoms, proper symmetry {s['symmetry_group']} "
                     f"(order {s['symmetry_order']}){', centrosymmetric' if s.get('centrosymmetric') else ''}")
    if p.get("median_error_deg") is not None:
        items.append(f"pose error modulo symmetry: median {_fmt(p.get('reduced_median_error_deg'), '.2f')}°, "
                     f"p90 {_fmt(p.get('reduced_p90_error_deg'), '.1f')}°, "
                     f"{_fmt(100 * p['reduced_within_5deg_fraction'], '.0f')} % of frames within 5° "
                     f"(raw: median {_fmt(p.get('median_error_deg'), '.2f')}°, "
                     f"p90 {_fmt(p.get('p90_error_deg'), '.1f')}°)")
    if m.get("fsc_truth_0.5_A") is not None:
        gap = ("" if m.get("ctf_gap_low_res_A") is None else
               f"; CTF transfer gap {_fmt(m['ctf_gap_low_res_A'], '.1f')}–{_fmt(m['ctf_gap_high_res_A'], '.1f')} Å")
        items.append(f"map: FSC(truth) 0.5 at {_fmt(m.get('fsc_truth_0.5_A'), '.2f')} Å; half maps 0.143 at "
                     f"{_fmt(m.get('fsc_half_0.143_A'), '.2f')} Å (first crossing"
                     f"{', inside the gap' if m.get('fsc_half_0.143_first_in_gap') else ''}), "
                     f"{_fmt(m.get('fsc_half_0.143_band_A'), '.2f')} Å within the transferred band{gap}")
    if a.get("recall") is not None:
        items.append(f"atoms: recall {_fmt(a.get('recall'), '.3f')}, precision {_fmt(a.get('precision'), '.3f')}, "
                     f"RMSD {_fmt(a.get('rmsd_pm'), '.1f')} pm, δ {_fmt(a.get('penetration_depth_est_A'), '.2f')} Å "
                     f"(truth {_fmt(a.get('penetration_depth_true_A'), '.2f')} Å)")
    return '<ul class="headline">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _figure_html(f: ReportFigure) -> str:
    head = f'<h2 id="h-{f.key}">{html.escape(f.title)}</h2>'
    if f.png is None:
        return head + f'<p class="note" id="fig-{f.key}">Not shown: {html.escape(f.note or "not available")}</p>'
    b64 = base64.b64encode(f.png).decode("ascii")
    return (head + f'<figure id="fig-{f.key}"><img alt="{html.escape(f.title)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")


def build_figures(run_dir: str | Path, details: ScoreDetails | None = None) -> tuple[ScoreDetails, list[ReportFigure]]:
    """Score the run (unless ``details`` are given) and draw every figure of the report."""
    from tumblebench.simulator.nanocrystal import load_nanocrystal

    layout = RunLayout(Path(run_dir))
    det = details if details is not None else score_details(layout.root)
    truth = layout.particle / "truth.extxyz"
    nc = load_nanocrystal(truth) if truth.exists() else None
    figs: list[ReportFigure] = []
    if nc is None:
        note = "particle/truth.extxyz not found."
        figs.append(ReportFigure("particle", "The particle (truth)", "", note=note))
        figs.append(ReportFigure("frames", "Raw and noise-free frames", "", note=note))
    else:
        figs.append(fig_particle(nc))
        figs.append(fig_frames(layout, nc))
    figs.append(fig_poses(layout, det) if det.poses is not None or (layout.series / "frames.star").exists()
                else ReportFigure("poses", "Pose error over the series", "", note="no poses to score."))
    figs.append(fig_fsc(det))
    figs.append(fig_slices(det))
    if nc is None:
        figs.append(ReportFigure("penetration", "CN against radial depth", "", note="particle/truth.extxyz not found."))
    else:
        figs.append(fig_penetration(layout, nc, det))
    figs.append(fig_cn_stats(nc, det) if nc is not None else
                ReportFigure("cn_stats", "Per-atom statistics against CN", "", note="particle/truth.extxyz not found."))
    return det, figs


def render_report(run_dir: str | Path, details: ScoreDetails | None = None) -> str:
    """The HTML text of the report of ``run_dir`` (see :func:`write_report`)."""
    layout = RunLayout(Path(run_dir))
    det, figs = build_figures(layout.root, details)
    card = det.card
    se = card.get("series") or {}
    s = card.get("structure") or {}
    name = _read_json(layout.particle / "structure.json").get("name") or "—"
    intro = (f'<p class="sub">Run <code>{html.escape(layout.root.name)}</code>: particle '
             f"<b>{html.escape(str(name))}</b> ({_fmt(s.get('n_atoms'))} atoms), {_fmt(se.get('n_frames'))} "
             f"{html.escape(str(se.get('mode') or '—'))} frames at {_fmt(se.get('dose_per_frame_e_per_A2'), '.1f')} "
             f"e/Å² per frame. Every figure compares the run with the known truth.</p>")
    rows = "".join(f"<tr><td>{html.escape(q)}</td><td>{t}</td><td>{r}</td></tr>"
                   for q, t, r in table1_rows(layout, det))
    table = ('<h2 id="h-table1">Truth against recovered</h2><table id="table1"><tr><th>quantity</th><th>truth</th>'
             f"<th>recovered</th></tr>{rows}</table>"
             "<p class=\"sub\">The columns of Wietfeldt et al. (2024, Table 1) for the true atoms and for the atom "
             "model built from the reconstruction, plus the matching figures (pairs within 1.76 Å, one to one). "
             "Good: every recovered value within a few per cent of the truth, recall and precision near 1, RMSD "
             "of tens of pm or less.</p>")
    versions = card.get("versions") or {}
    foot = html.escape(", ".join(f"{k} {v}" for k, v in versions.items()))
    body = "".join(_figure_html(f) for f in figs)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tumblebench report: '
            f"{html.escape(layout.root.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>tumblebench report</h1>{intro}{_headline(card)}{body}{table}"
            f'<h2 id="h-scorecard">Scorecard</h2><p class="sub">Every figure of <code>scorecard.json</code> '
            f"(units in the key names; deg = degrees).</p>{_scorecard_tables(card)}"
            f'<p class="sub">{foot}</p></body></html>\n')


def write_report(run_dir: Path, details: ScoreDetails | None = None) -> Path:
    """Write ``RUN_DIR/report.html``: one self-contained page with every figure of the run against its truth.

    Parameters
    ----------
    run_dir
        A run directory (:class:`tumblebench.validation.scorecard.RunLayout`).
    details
        Scores already computed by :func:`tumblebench.validation.scorecard.score_details` (default: score now).

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    TumblebenchError
        ``run_dir`` holds none of ``particle/``, ``series/``, ``recon/``, ``atoms/``.
    """
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise TumblebenchError(f"{run_dir}: not a run directory (expected particle/, series/, recon/ or atoms/ in it)")
    text = render_report(run_dir, details)
    out = run_dir / "report.html"
    with atomic_file(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return out


__all__ = ["FIGURES", "ReportFigure", "build_figures", "is_run_dir", "render_report", "table1_rows", "write_report"]
