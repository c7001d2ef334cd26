"""tumblebench's per-frame forward model against abTEM's multislice: image correlation and speed.

Like with like (noise off, liquid cell off): the same 586-atom Pt truncated octahedron (tests/data) at the
same random pose; the same internal sampling (tumblebench's default ``oversampling=3``: abTEM 0.358 Å / 3
= 0.1193 Å over the 192 × 192-pixel field (68.7 Å); tumblebench the fastest FFT length ≥ 3× its window,
0.117–0.119 Å); the same slice thickness (2 Å) and slice boundaries; the same parametrisation (Lobato &
Van Dyck 2014, abTEM's default) with each atom's whole projected potential in the slice holding its centre
(abTEM's ``projection="infinite"``, tumblebench's ``slicing="centre"``); the same 2/3-Nyquist antialias
band limit of the wave (abTEM's taper set to 0); the same lens: defocus, C_s, hard objective aperture, focal
spread (abTEM's ``focal_spread`` = √2 × tumblebench's 1σ δ: abTEM's envelope is exp(−(πλ f q²/2)²)) and
illumination semi-angle. abTEM's defocus refers to its exit plane, tumblebench's to the plane z = 0, so
abTEM gets the same effective defocus (Δf + z_exit). abTEM's image ([x, y]) is transposed and reduced to
the detector pixel by the same Fourier crop and band limit that tumblebench applies. The algorithms differ
in one point: abTEM band-limits each slice's transmission function (tumblebench's
``antialias_transmission=True``, also reported), tumblebench's default applies the raw phase grating of a
potential band-limited at the grid's Nyquist frequency.

Zone axis: the default particle (``build_preset("default")``, 405 atoms) along [110], against abTEM at the
same sampling and at a converged one (``oversampling`` 5): abTEM's scheme is not converged at 3 there.

Timing: per-frame wall time, median of several runs after a warm-up (numba compilation, FFT planning
excluded), the two programs timed alternately. abTEM computes the whole field (it has no notion of a
particle window); tumblebench computes the particle on a window around it and the (here disabled) cell on
the field: the ratio is the per-frame cost a user of either package pays for this frame.

Also: convergence of the default sampling against finer references (oversampling 4 and 6 with antialiased
transmission) for the default particle at random and [100]/[110]/[111] orientations with the 5 Å low-pass
contrast, cheaper settings along [110], the limit for the thicker 586-atom particle along [110], slice
thickness, tumblebench's default (exact erf slices, Peng) against the Lobato/centre run, phase object vs
multislice, and the per-frame time of the default series frame (3 motion sub-steps, liquid cell on) for
147/309/561/923-atom cuboctahedra and two field sizes.

Run from the repository root: ``.venv/bin/python benchmarks/forward_vs_abtem.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import ase
import ase.io
import numpy as np
from ase.cluster import Octahedron

from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.grid import frequencies
from tumblebench.simulator.imaging import Imager, ImagingConfig
from tumblebench.simulator.liquid_cell import LiquidCellConfig
from tumblebench.simulator.orientation import random_rotations

ROOT = Path(__file__).resolve().parents[1]
SAMPLING = 0.358
FIELD = 192
DZ = 2.0


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: numba compile, FFT plans
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def interleaved_times(fn_a, fn_b, rounds: int, a_per_round: int = 3) -> dict[str, float]:
    """Median wall and CPU (process) time per call of two functions, timed alternately so that both see
    the same load on a shared machine. Warm-up calls first."""
    fn_a()
    fn_b()
    wall_a, wall_b, cpu_a, cpu_b = [], [], [], []
    for _ in range(rounds):
        for _ in range(a_per_round):
            t0, c0 = time.perf_counter(), time.process_time()
            fn_a()
            wall_a.append(time.perf_counter() - t0)
            cpu_a.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        fn_b()
        wall_b.append(time.perf_counter() - t0)
        cpu_b.append(time.process_time() - c0)
    return {"wall_a": float(np.median(wall_a)), "wall_b": float(np.median(wall_b)),
            "cpu_a": float(np.median(cpu_a)), "cpu_b": float(np.median(cpu_b))}


class EmulateAbtemInterpolation:
    """Context: tumblebench's exact atom spectra times the transfer of abTEM's 'infinite' potential, which
    places each atom as bilinearly interpolated deltas (mean transfer sinc²(πq_x p)·sinc²(πq_y p)) and
    divides by sin(|q|p)/(|q|p) (abtem.integrals); used only to show where the residual difference lies."""

    def __enter__(self):
        from tumblebench.simulator import potential

        self._orig = potential.FourierGrid.form_factor

        def patched(grid, element, table):
            f = self._orig(grid, element, table)
            p = grid.sampling
            qp = grid.q * p
            corr = np.where(qp > 0, np.sin(qp) / np.where(qp > 0, qp, 1.0), 1.0)
            t = (np.sinc(grid.qy * p) ** 2)[:, None] * (np.sinc(grid.qx * p) ** 2)[None, :] / corr
            return (f * t).astype(np.complex64)

        potential.FourierGrid.form_factor = patched
        return self

    def __exit__(self, *exc):
        from tumblebench.simulator import potential

        potential.FourierGrid.form_factor = self._orig


def fourier_crop(img_int: np.ndarray, w_det: int, sampling: float, band_q: float) -> np.ndarray:
    """Reduce an internal-sampling image to the detector grid exactly as simulator.imaging does."""
    w_int = img_int.shape[0]
    ft = np.fft.rfft2(img_int)
    ky = np.fft.fftfreq(w_det, d=1.0 / w_det).astype(int)
    kx = np.arange(w_det // 2 + 1)
    qy = ky / (w_det * sampling)
    qx = kx / (w_det * sampling)
    mask = (qy[:, None] ** 2 + qx[None, :] ** 2) <= band_q**2
    crop = ft[(ky % w_int)[:, None], kx[None, :]] * mask * (w_det * w_det) / (w_int * w_int)
    return np.fft.irfft2(crop, s=(w_det, w_det))


def abtem_frame(lab: np.ndarray, symbols: list[str], cfg: ImagingConfig, imager: Imager, band_q: float):
    import abtem

    abtem.config.set({"antialias.taper": 0.0, "diagnostics.progress_bar": False})
    internal_sampling = SAMPLING / cfg.oversampling
    n_int = round(FIELD * cfg.oversampling)
    z0 = np.floor(lab[:, 2].min() / DZ) * DZ
    n_sl = max(1, int(np.ceil((lab[:, 2].max() - z0) / DZ + 1e-9)))
    z_exit = z0 + n_sl * DZ
    pos = lab.copy()
    pos[:, 0] += (FIELD // 2) * SAMPLING
    pos[:, 1] += (FIELD // 2) * SAMPLING
    pos[:, 2] -= z0
    atoms = ase.Atoms(symbols, positions=pos, cell=[FIELD * SAMPLING, FIELD * SAMPLING, n_sl * DZ], pbc=True)
    o = cfg.optics

    def run() -> np.ndarray:
        potential = abtem.Potential(atoms, sampling=internal_sampling, slice_thickness=DZ, parametrization="lobato",
                                    projection="infinite")
        wave = abtem.PlaneWave(energy=o.voltage_kv * 1e3)
        ctf = abtem.CTF(semiangle_cutoff=o.aperture_mrad, soft=False, focal_spread=np.sqrt(2) * o.focal_spread_A,
                        angular_spread=o.convergence_mrad, defocus=o.defocus_A + z_exit, Cs=o.cs_mm * 1e7,
                        C50=o.c5_mm * 1e7, energy=o.voltage_kv * 1e3)
        exit_wave = wave.multislice(potential)
        img = exit_wave.apply_ctf(ctf).intensity().compute()
        return np.asarray(img.array)

    arr = run()
    assert arr.shape == (n_int, n_int), arr.shape
    img = fourier_crop(arr.T.astype(np.float64), FIELD, SAMPLING, band_q)
    return img, run


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def main() -> int:
    try:
        import abtem  # noqa: F401
    except ImportError:
        print("abTEM is not installed: .venv/bin/pip install abtem  (benchmark-only dependency)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(2024)
    at = ase.io.read(ROOT / "tests/data/COM_trunc-octa-3_2.7nm.pdb")
    particle = at.positions - at.positions.mean(axis=0)
    symbols = ["Pt"] * len(particle)
    pose = random_rotations(1, rng)[0]
    lab = particle @ pose.T

    no_cell = LiquidCellConfig(enabled=False)
    cfg = ImagingConfig(table="lobato", slicing="centre", slice_thickness_A=DZ, liquid_cell=no_cell)
    ours = Imager(cfg, (FIELD, FIELD), SAMPLING)
    mine = ours.intensity(lab[None], symbols)
    ref, run_abtem = abtem_frame(lab, symbols, cfg, ours, ours.band_q)
    c_full = corr(mine, ref)
    inner = np.s_[FIELD // 2 - 50:FIELD // 2 + 50, FIELD // 2 - 50:FIELD // 2 + 50]
    c_inner = corr(mine[inner], ref[inner])
    rel_rms = float(np.std(mine - ref) / np.std(ref - 1))

    with EmulateAbtemInterpolation():
        emulated = Imager(cfg, (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)
    c_emulated = corr(emulated, ref)
    rel_rms_emulated = float(np.std(emulated - ref) / np.std(ref - 1))

    # the same algorithm as abTEM's: full-band potential, transmission function band-limited afterwards
    cfg_aa = replace(cfg, antialias_transmission=True)
    ours_aa = Imager(cfg_aa, (FIELD, FIELD), SAMPLING)
    mine_aa = ours_aa.intensity(lab[None], symbols)
    with EmulateAbtemInterpolation():
        emulated_aa = Imager(cfg_aa, (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)
    times_aa = interleaved_times(lambda: ours_aa.intensity(lab[None], symbols), run_abtem, rounds=3)
    antialiased = {"correlation": corr(mine_aa, ref), "relative_rms": float(np.std(mine_aa - ref) / np.std(ref - 1)),
                   "correlation_abtem_interpolation_emulated": corr(emulated_aa, ref),
                   "relative_rms_abtem_interpolation_emulated": float(np.std(emulated_aa - ref) / np.std(ref - 1)),
                   "time_per_frame_tumblebench_s": times_aa["wall_a"], "time_per_frame_abtem_s": times_aa["wall_b"],
                   "speedup": times_aa["wall_b"] / times_aa["wall_a"]}

    times = interleaved_times(lambda: ours.intensity(lab[None], symbols), run_abtem, rounds=7)
    t_ours, t_abtem = times["wall_a"], times["wall_b"]
    speedup = t_abtem / t_ours
    speedup_cpu = times["cpu_b"] / times["cpu_a"]

    # zone axis against abTEM: the default particle along [110], abTEM at the same and at a converged sampling
    from scipy.spatial.transform import Rotation

    def along(v) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return Rotation.align_vectors([[0, 0, 1]], [v / np.linalg.norm(v)])[0].as_matrix()

    dflt_atoms = build_preset("default").atoms
    p405 = dflt_atoms.get_positions() - dflt_atoms.get_positions().mean(axis=0)  # cube axes along x, y, z
    s405 = list(dflt_atoms.get_chemical_symbols())
    za = p405 @ along([1, 1, 0]).T
    za_ours = Imager(cfg, (FIELD, FIELD), SAMPLING)
    za_img = za_ours.intensity(za[None], s405)
    za_aa = Imager(cfg_aa, (FIELD, FIELD), SAMPLING).intensity(za[None], s405)
    za_ref3, za_run3 = abtem_frame(za, s405, cfg, za_ours, za_ours.band_q)
    za_ref5, za_run5 = abtem_frame(za, s405, replace(cfg, oversampling=5.0), za_ours, za_ours.band_q)
    t3 = interleaved_times(lambda: za_ours.intensity(za[None], s405), za_run3, rounds=3)
    t5 = interleaved_times(lambda: za_ours.intensity(za[None], s405), za_run5, rounds=2)
    zone_axis_abtem = {
        "particle": "default preset, 405 atoms, [110] along the beam",
        "correlation_same_sampling": corr(za_img, za_ref3),
        "correlation_antialiased_same_sampling": corr(za_aa, za_ref3),
        "correlation_vs_abtem_oversampling5": corr(za_img, za_ref5),
        "abtem_oversampling3_vs_abtem_oversampling5": corr(za_ref3, za_ref5),
        "time_per_frame_tumblebench_s": t3["wall_a"], "time_per_frame_abtem_s": t3["wall_b"],
        "speedup": t3["wall_b"] / t3["wall_a"], "speedup_cpu_time": t3["cpu_b"] / t3["cpu_a"],
        "time_per_frame_abtem_oversampling5_s": t5["wall_b"],
        "speedup_vs_abtem_oversampling5": t5["wall_b"] / t5["wall_a"],
    }

    # convergence of the default sampling (Peng, exact slices, 40 mrad) for the default particle: random and
    # low-index zone-axis orientations against oversampling 4 and 6 with antialiased transmission
    base = ImagingConfig(liquid_cell=no_cell)
    qq = np.hypot(*frequencies((FIELD, FIELD), SAMPLING)[::-1])

    def low_pass_std(img: np.ndarray, res_A: float = 5.0) -> float:
        return float(np.fft.ifft2(np.fft.fft2(img - 1) * (qq < 1 / res_A)).real.std())

    def render(c: ImagingConfig, pts: np.ndarray, syms: list[str]) -> np.ndarray:
        return Imager(c, (FIELD, FIELD), SAMPLING).intensity(pts[None], syms)

    ref4_cfg = replace(base, oversampling=4.0, antialias_transmission=True)
    ref6_cfg = replace(base, oversampling=6.0, antialias_transmission=True)
    orientations = {"random": pose, "[100]": np.eye(3), "[110]": along([1, 1, 0]), "[111]": along([1, 1, 1])}
    convergence = []
    alternatives = []
    for name, rot in orientations.items():
        pts = p405 @ rot.T
        img, r4, r6 = render(base, pts, s405), render(ref4_cfg, pts, s405), render(ref6_cfg, pts, s405)
        im_d = Imager(base, (FIELD, FIELD), SAMPLING)
        c0 = time.process_time()
        im_d.intensity(pts[None], s405)
        im_d.intensity(pts[None], s405)
        cpu = (time.process_time() - c0) / 2
        old = render(replace(base, oversampling=1.5), pts, s405)
        convergence.append({"orientation": name, "correlation_vs_oversampling4_aa": corr(img, r4),
                            "correlation_vs_oversampling6_aa": corr(img, r6),
                            "reference4_vs_reference6": corr(r4, r6),
                            "low_pass_5A_std": low_pass_std(img), "low_pass_5A_std_reference4": low_pass_std(r4),
                            "low_pass_5A_std_reference6": low_pass_std(r6),
                            "oversampling1.5_correlation_vs_oversampling4_aa": corr(old, r4),
                            "oversampling1.5_low_pass_5A_std": low_pass_std(old),
                            "cpu_s_per_substep": cpu})
        if name == "[110]":
            for os_, aa in ((2.5, False), (2.75, False), (3.0, True), (3.5, False), (4.0, False)):
                alt = render(replace(base, oversampling=os_, antialias_transmission=aa), pts, s405)
                alternatives.append({"oversampling": os_, "antialias_transmission": aa,
                                     "correlation_vs_oversampling4_aa": corr(alt, r4),
                                     "correlation_vs_oversampling6_aa": corr(alt, r6),
                                     "low_pass_5A_std": low_pass_std(alt)})
    # the limit: the thicker 586-atom particle along [110]
    thick = particle @ along([1, 1, 0]).T
    t_r6 = render(ref6_cfg, thick, symbols)
    thick_limit = {"reference4_vs_reference6": corr(render(ref4_cfg, thick, symbols), t_r6)}
    for os_ in (3.0, 4.0):
        thick_limit[f"oversampling{os_}_vs_reference6"] = corr(render(replace(base, oversampling=os_), thick, symbols),
                                                               t_r6)

    # fidelity of tumblebench's own choices (against a fine-sliced reference)
    default = ImagingConfig(liquid_cell=no_cell)
    fine = Imager(replace(default, slice_thickness_A=0.5), (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)
    conv = {}
    for dz in (1.0, 2.0, 2.5, 3.0):
        img = Imager(replace(default, slice_thickness_A=dz), (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)
        conv[str(dz)] = {"correlation": corr(img, fine), "relative_rms": float(np.std(img - fine) / np.std(fine - 1))}
    dflt = Imager(default, (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)
    po = Imager(replace(default, mode="phase-object"), (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)
    proj = Imager(replace(default, mode="projection"), (FIELD, FIELD), SAMPLING).intensity(lab[None], symbols)

    # per-frame time of a default series frame: 3 sub-steps, liquid cell on (200 Å), for size and field
    scaling = []
    for length, cutoff in ((7, 3), (9, 4), (11, 5), (13, 6)):
        cl = Octahedron("Pt", length, cutoff=cutoff)
        pts = (cl.positions - cl.positions.mean(axis=0)) @ pose.T
        rots = random_rotations(3, np.random.default_rng(length))
        small = [np.eye(3) + 0.01 * (r - r.T) for r in rots]  # ~0.6° motion within the exposure
        steps = np.stack([pts @ s.T for s in small])
        for field in (192, 256):
            im = Imager(ImagingConfig(), (field, field), SAMPLING)
            t = interleaved_times(
                lambda im=im, steps=steps: im.intensity(steps, "Pt", liquid_thickness_A=200.0,
                                                        rng=np.random.default_rng(0)),
                lambda im=im, steps=steps: im.intensity(steps[:1], "Pt", liquid_thickness_A=200.0,
                                                        rng=np.random.default_rng(0)), rounds=7, a_per_round=1)
            win = max(k[0] for k in im._windows)
            scaling.append({"atoms": len(cl), "field_px": field, "window_px": int(win),
                            "frame_3_substeps_s": t["wall_a"], "frame_1_substep_s": t["wall_b"],
                            "frame_3_substeps_cpu_s": t["cpu_a"], "frame_1_substep_cpu_s": t["cpu_b"]})

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    import abtem as _abtem

    result = {
        "correlation": c_full,
        "speedup": speedup,
        "correlation_particle_region": c_inner,
        "relative_rms_difference": rel_rms,
        "correlation_abtem_interpolation_emulated": c_emulated,
        "relative_rms_abtem_interpolation_emulated": rel_rms_emulated,
        "time_per_frame_tumblebench_s": t_ours,
        "time_per_frame_abtem_s": t_abtem,
        "cpu_time_per_frame_tumblebench_s": times["cpu_a"],
        "cpu_time_per_frame_abtem_s": times["cpu_b"],
        "speedup_cpu_time": speedup_cpu,
        "with_antialiased_transmission": antialiased,
        "zone_axis_abtem": zone_axis_abtem,
        "default_particle_convergence": convergence,
        "default_particle_110_alternatives": alternatives,
        "thick_586_atom_110_limit": thick_limit,
        "setup": {"atoms": len(particle), "field_px": FIELD, "pixel_A": SAMPLING,
                  "internal_sampling_A": SAMPLING / cfg.oversampling, "oversampling": cfg.oversampling,
                  "slice_A": DZ, "parametrization": "lobato (both)", "projection": "infinite/centre (both)",
                  "band_limit_A": ours.band_limit_A, "optics": cfg.optics.__dict__, "abtem": _abtem.__version__},
        "slice_convergence_vs_0.5A": conv,
        "default_exact_peng_vs_lobato_centre_correlation": corr(dflt, mine),
        "phase_object_vs_multislice_correlation": corr(po, dflt),
        "projection_vs_multislice_correlation": corr(proj, dflt),
        "per_frame_scaling": scaling,
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "commit": commit,
    }
    out = ROOT / "benchmarks/results/forward_vs_abtem.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))

    print(f"586-atom Pt, {FIELD}² px field at {SAMPLING} Å (internal {SAMPLING / cfg.oversampling:.4f} Å), Lobato, "
          "2 Å slices, noise and cell off; random pose")
    print(f"  correlation with abTEM        {c_full:.5f}   (particle region {c_inner:.5f}, rel. rms {rel_rms:.4f})")
    print(f"  time per frame  tumblebench   {t_ours * 1e3:8.1f} ms")
    print(f"                  abTEM         {t_abtem * 1e3:8.1f} ms")
    print(f"  speedup                       {speedup:8.1f} x   (CPU time {speedup_cpu:.1f} x)")
    print(f"  with abTEM's bilinear atom placement emulated: correlation {c_emulated:.5f}, "
          f"rel. rms {rel_rms_emulated:.4f}")
    aa = antialiased
    print(f"  tumblebench with antialiased transmission (abTEM's algorithm): correlation {aa['correlation']:.5f}, "
          f"emulated interpolation {aa['correlation_abtem_interpolation_emulated']:.5f} "
          f"(rel. rms {aa['relative_rms_abtem_interpolation_emulated']:.4f}), speedup {aa['speedup']:.1f} x")
    z = zone_axis_abtem
    print(f"  zone axis (default particle, [110]): correlation {z['correlation_same_sampling']:.4f} at the same "
          f"sampling (abTEM's own os3 vs os5: {z['abtem_oversampling3_vs_abtem_oversampling5']:.4f}), "
          f"{z['correlation_vs_abtem_oversampling5']:.4f} vs abTEM at oversampling 5; speedup "
          f"{z['speedup']:.1f} x (same sampling), {z['speedup_vs_abtem_oversampling5']:.1f} x (vs os5)")
    print(f"  phase object vs multislice    {result['phase_object_vs_multislice_correlation']:.4f} (random pose)")
    print("  default sampling vs oversampling 4 / 6 (+aa), default particle, and 5 A low-pass std (default / ref4):")
    for r in convergence:
        print(f"    {r['orientation']:>6s}  {r['correlation_vs_oversampling4_aa']:.4f} / "
              f"{r['correlation_vs_oversampling6_aa']:.4f}  (ref4 vs ref6 {r['reference4_vs_reference6']:.4f})  "
              f"low-pass {r['low_pass_5A_std']:.4f} / {r['low_pass_5A_std_reference4']:.4f}  "
              f"[os 1.5 (potential to its own Nyquist): {r['oversampling1.5_correlation_vs_oversampling4_aa']:.3f}, "
              f"{r['oversampling1.5_low_pass_5A_std']:.4f}]  {r['cpu_s_per_substep'] * 1e3:.0f} ms CPU")
    print("  [110] alternatives vs oversampling 4 / 6: " + ", ".join(
        f"os {r['oversampling']}{'+aa' if r['antialias_transmission'] else ''} "
        f"{r['correlation_vs_oversampling4_aa']:.4f}/{r['correlation_vs_oversampling6_aa']:.4f}" for r in alternatives))
    print("  586-atom particle along [110] vs oversampling 6: "
          + ", ".join(f"{k} {v:.4f}" for k, v in thick_limit.items()))
    print(f"  projection vs multislice      {result['projection_vs_multislice_correlation']:.4f}")
    print("  slice convergence (vs 0.5 Å): " + ", ".join(f"{k} Å {v['correlation']:.5f}" for k, v in conv.items()))
    print("  default series frame (3 sub-steps, 200 Å liquid), per-frame time:")
    print("    atoms  field  window   3 sub-steps wall (CPU)   1 sub-step wall (CPU)")
    for row in scaling:
        print(f"    {row['atoms']:5d}  {row['field_px']:5d}  {row['window_px']:6d}   "
              f"{row['frame_3_substeps_s'] * 1e3:7.1f} ({row['frame_3_substeps_cpu_s'] * 1e3:5.1f}) ms   "
              f"{row['frame_1_substep_s'] * 1e3:7.1f} ({row['frame_1_substep_cpu_s'] * 1e3:5.1f}) ms")
    print(f"  cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (shared machine)")
    print(f"  wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
