"""Benchmark of the atoms stage (issue 5 targets): accuracy on clean, noisy and SNR-0.25 maps, and speed.

Run from the repository root: ``.venv/bin/python benchmarks/atoms.py``. Prints a table and writes
``benchmarks/results/atoms.json``.

Maps (all 128³ voxels of 0.358 Å, the particle centroid at voxel 64):

* clean: the simulator's truth map of the demo particle (``build_preset("default")``), band-limited at
  0.8 Å (``simulator.truth_map.render_truth_map``).
* noisy ("FSC-equivalent resolution 1.0 Å"): clean + white Gaussian noise whose level makes the FSC between
  two independent noisy copies cross 0.143 at 1.0 Å: for signal shell power S(k) and white noise power N,
  FSC(k) = S(k)/(S(k)+N), so N = S(1/1.0 Å)·(1/0.143 − 1). No further filtering.
* snr025: clean + white Gaussian noise with variance = (variance of the clean map over voxels within 2 Å of
  an atom) / 0.25, then the sum low-passed at 1.0 Å (hard spherical band limit). Default settings, no mask.
* real314: the real 314-atom particle (tests/data/stage1_docked_ATMS.pdb, U from the default mobility model)
  at per-voxel SNR 0.5 and 0.25 (built like snr025), the maps on which SINGLE was measured.
* timing: the 710-atom ``table1-np8`` particle's truth map; median of 3 runs of ``build_atom_model`` after one
  warm-up run (numba compilation excluded).

Truth for the penetration depth: Wietfeldt et al. (2024)'s Eq. 1 fitted (same code) to the true CN of the true atoms.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import scipy.fft
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.model import build_atom_model
from tumblebench.analysis.penetration import fit_penetration
from tumblebench.simulator.builder import build_preset
from tumblebench.simulator.coordination import radial_depth
from tumblebench.simulator.density import lowpass
from tumblebench.simulator.grid import radial_frequency
from tumblebench.simulator.nanocrystal import load_nanocrystal
from tumblebench.simulator.orientation import box_centre
from tumblebench.simulator.outputs import git_commit
from tumblebench.simulator.truth_map import particle_frame_positions, render_truth_map
from tumblebench.validation.matching import match_atoms

BOX = 128
SAMPLING = 0.358
TRUTH_RESOLUTION = 0.8


def shell_power(vol: np.ndarray, sampling: float, resolution: float) -> float:
    """Mean |F|² (unnormalised DFT) of ``vol`` in the one-voxel-wide shell at 1/``resolution``."""
    ft = scipy.fft.rfftn(vol.astype(np.float64), workers=-1)
    n = vol.shape[0]
    k = radial_frequency(vol.shape, sampling, rfft=True)
    sel = np.abs(k - 1.0 / resolution) < 0.5 / (n * sampling)
    return float(np.mean(np.abs(ft[sel]) ** 2))


def noisy_fsc_map(clean: np.ndarray, rng: np.random.Generator, resolution: float = 1.0,
                  fsc: float = 0.143) -> tuple[np.ndarray, float]:
    """Clean map plus white noise at FSC-equivalent ``resolution`` (criterion ``fsc``); returns (map, σ)."""
    s = shell_power(clean, SAMPLING, resolution)
    n_power = s * (1.0 / fsc - 1.0)
    sigma = float(np.sqrt(n_power / clean.size))
    return clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32), sigma


def snr_map(clean: np.ndarray, true_pos: np.ndarray, rng: np.random.Generator, snr: float = 0.25,
            resolution: float = 1.0) -> tuple[np.ndarray, float]:
    """Clean map + white noise at per-voxel SNR ``snr`` inside the envelope, low-passed at ``resolution``."""
    grid = np.indices(clean.shape).reshape(3, -1).T[:, ::-1] * SAMPLING
    d, _ = cKDTree(true_pos).query(grid, distance_upper_bound=2.0)
    near = np.isfinite(d).reshape(clean.shape)
    sigma = float(np.sqrt(clean[near].var() / snr))
    noisy = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return lowpass(noisy, SAMPLING, resolution), sigma


def evaluate(vol: np.ndarray, nc, true_pos: np.ndarray, cfg: AtomsConfig | None = None) -> dict[str, float]:
    """Run the stage on ``vol`` and score it against the particle ``nc``."""
    t = time.perf_counter()
    model = build_atom_model(vol, SAMPLING, cfg)
    secs = time.perf_counter() - t
    m = match_atoms(model.positions, true_pos)
    true_cn = np.asarray(nc.atoms.arrays["cn"])
    est_cn = model.stats["CN_STD"].to_numpy()
    cn_exact = float(np.sum(est_cn[m.pairs[:, 0]] == true_cn[m.pairs[:, 1]]) / len(true_pos))
    u_true = np.trace(np.asarray(nc.U), axis1=1, axis2=2) / 3.0
    u_est = model.stats["U_ISO"].to_numpy(float)[m.pairs[:, 0]]
    ok = np.isfinite(u_est)
    rho = float(spearmanr(u_est[ok], u_true[m.pairs[ok, 1]])[0])
    u_mae = float(np.median(np.abs(u_est[ok] - u_true[m.pairs[ok, 1]])))
    pen_true = fit_penetration(radial_depth(true_pos), true_cn).delta_A
    # local stacking of interior atoms (true CN 12): twins and stacking faults must show up as hcp
    core = true_cn[m.pairs[:, 1]] == 12
    st_true = np.asarray(nc.atoms.arrays["stacking"])[m.pairs[core, 1]]
    st_est = model.stats["STACKING"].to_numpy(str)[m.pairs[core, 0]]
    stacking_agree = float(np.mean(st_true == st_est)) if core.any() else float("nan")
    n_hcp_true = int(np.sum(st_true == "hcp"))
    n_hcp_est = int(np.sum(st_est == "hcp"))
    pen_est = model.penetration["cn"].get("delta_A", float("nan"))
    return {"recall": m.recall, "precision": m.precision, "rmsd_pm": m.rmsd_pm, "n_true": m.n_true,
            "n_est": m.n_est, "cn_exact_fraction": cn_exact,
            "lattice_error_A": abs(float(model.table1["lattice_constant_A"]) - float(nc.lattice_constant)),
            "lattice_constant_A": float(model.table1["lattice_constant_A"]),
            "u_iso_spearman": rho, "u_iso_median_abs_error_A2": u_mae, "penetration_true_A": pen_true,
            "penetration_est_A": pen_est,
            "penetration_error_A": abs(pen_est - pen_true), "seconds": secs,
            "threshold": model.info["threshold"], "rejected_corr": model.info["n_rejected_correlation"],
            "rejected_cn": model.info["n_rejected_cn"], "band_limit_A": model.info["band_limit_A"],
            "core_stacking_agreement": stacking_agree, "core_hcp_true": n_hcp_true, "core_hcp_est": n_hcp_est,
            "n_grains": model.info.get("n_grains")}


def main() -> dict[str, object]:
    """Run every case, print the table and write ``benchmarks/results/atoms.json``."""
    rng = np.random.default_rng(20240103)
    nc = build_preset("default", seed=0)
    true_pos = particle_frame_positions(nc) + box_centre(BOX, SAMPLING)
    clean = render_truth_map(nc, BOX, SAMPLING, TRUTH_RESOLUTION)
    build_atom_model(clean, SAMPLING)  # warm-up: numba compilation
    res_clean = evaluate(clean, nc, true_pos)
    noisy, sig_noisy = noisy_fsc_map(clean, rng)
    res_noisy = evaluate(noisy, nc, true_pos)
    snr, sig_snr = snr_map(clean, true_pos, rng)
    res_snr = evaluate(snr, nc, true_pos)
    # SINGLE's published stress test: the real 314-atom particle at per-voxel SNR 0.5 and 0.25, default settings
    real = load_nanocrystal(Path(__file__).resolve().parent.parent / "tests" / "data" / "stage1_docked_ATMS.pdb")
    real_pos = particle_frame_positions(real) + box_centre(BOX, SAMPLING)
    real_clean = render_truth_map(real, BOX, SAMPLING, TRUTH_RESOLUTION)
    real_res = {}
    for snr_level in (0.5, 0.25):
        vol, _ = snr_map(real_clean, real_pos, rng, snr=snr_level)
        r = evaluate(vol, real, real_pos)
        real_res[f"snr{snr_level}"] = {k: r[k] for k in ("recall", "precision", "rmsd_pm", "n_est", "n_true")}
    big = build_preset("table1-np8", seed=0)
    big_map = render_truth_map(big, BOX, SAMPLING, TRUTH_RESOLUTION)
    build_atom_model(big_map, SAMPLING)
    times, cpu = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        model_big = build_atom_model(big_map, SAMPLING)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out: dict[str, object] = {
        "clean_recall": res_clean["recall"], "clean_precision": res_clean["precision"],
        "clean_rmsd_pm": res_clean["rmsd_pm"], "clean_cn_exact_fraction": res_clean["cn_exact_fraction"],
        "clean_lattice_error_A": res_clean["lattice_error_A"],
        "noisy_recall": res_noisy["recall"], "noisy_precision": res_noisy["precision"],
        "noisy_rmsd_pm": res_noisy["rmsd_pm"], "noisy_u_iso_spearman": res_noisy["u_iso_spearman"],
        "noisy_penetration_error_A": res_noisy["penetration_error_A"],
        "snr025_recall": res_snr["recall"], "snr025_precision": res_snr["precision"],
        "snr025_rmsd_pm": res_snr["rmsd_pm"],
        "seconds_700_atoms": float(np.median(times)),
        "details": {"clean": res_clean, "noisy": res_noisy, "snr025": res_snr,
                    "noisy_sigma": sig_noisy, "snr025_sigma": sig_snr, "real_314_atoms": real_res,
                    "timing_particle": {"preset": "table1-np8", "n_atoms": big.n_atoms,
                                        "n_found": model_big.n_atoms, "runs_s": times,
                                        "cpu_s_all_threads": cpu},
                    "demo_particle": {"preset": "default", "n_atoms": nc.n_atoms,
                                      "lattice_constant_A": float(nc.lattice_constant),
                                      "mobility_penetration_depth_A": float(nc.atoms.info.get("penetration_depth",
                                                                                              np.nan))},
                    "box": BOX, "voxel_A": SAMPLING, "truth_resolution_A": TRUTH_RESOLUTION},
        "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(), "commit": git_commit(),
    }
    print(f"{'case':8s} {'recall':>7s} {'prec':>7s} {'rmsd pm':>8s} {'CN ok':>6s} {'da A':>7s} {'U rho':>6s} "
          f"{'pen err':>7s} {'s':>5s}")
    for name, r in (("clean", res_clean), ("noisy", res_noisy), ("snr0.25", res_snr)):
        print(f"{name:8s} {r['recall']:7.3f} {r['precision']:7.3f} {r['rmsd_pm']:8.2f} "
              f"{r['cn_exact_fraction']:6.3f} {r['lattice_error_A']:7.4f} {r['u_iso_spearman']:6.3f} "
              f"{r['penetration_error_A']:7.2f} {r['seconds']:5.2f}")
    for key, r in real_res.items():
        print(f"real 314-atom particle at {key}: {r['n_est']} atoms found, recall {r['recall']:.3f}, "
              f"precision {r['precision']:.3f}, RMSD {r['rmsd_pm']:.2f} pm (SINGLE: 899 atoms at SNR 0.25 with "
              "its automatic mask)")
    print(f"700-atom particle ({big.n_atoms} atoms, 128³): median {np.median(times):.2f} s on {os.cpu_count()} "
          f"cores ({np.median(cpu):.2f} CPU-s over all threads), load average {os.getloadavg()[0]:.2f}")
    path = Path("benchmarks/results/atoms.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
