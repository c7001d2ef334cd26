"""``scorecard.json``: every score of a run against its known truth (the contract of ``docs/design.md``).

A run directory holds one sub-directory per stage (see :class:`RunLayout`). :func:`score_run` scores
whatever stages it finds and leaves the others ``null``, so the same file serves a full demo, a user who
entered at one stage, and the regression tests. :func:`score_details` returns the same card together with
the per-frame and per-shell arrays behind it (for ``report.html``).

Pose errors are reported twice: *raw* (after the best global rotation and hand only) and *symmetry-reduced*
(modulo the proper rotations that map the true atoms onto themselves, found from the atoms by
:func:`tumblebench.validation.symmetry.find_symmetry`, and — for an achiral particle, whose image at a pose and at
its projection twin is the same up to the order of the slices — modulo that twin,
:mod:`tumblebench.validation.poses`). Resolutions are reported at the first FSC crossing and within the band
the CTF transfers (:mod:`tumblebench.validation.transfer`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tumblebench.simulator.errors import TumblebenchError

#: Keys of every top-level object of scorecard.json, in order (docs/design.md).
SCHEMA: dict[str, tuple[str, ...]] = {
    "structure": ("n_atoms", "diameter_A", "lattice_constant_A", "median_cn", "core_ratio",
                  "symmetry_group", "symmetry_order", "centrosymmetric"),
    "series": ("n_frames", "pixel_size_A", "dose_per_frame_e_per_A2", "mode"),
    "poses": ("median_error_deg", "p90_error_deg", "within_5deg_fraction", "within_10deg_fraction",
              "reduced_median_error_deg", "reduced_p90_error_deg", "reduced_within_5deg_fraction",
              "reduced_within_10deg_fraction", "reduced_projection_twin"),
    "map": ("fsc_truth_0.5_A", "fsc_truth_0.143_A", "fsc_half_0.143_A", "fsc_half_0.143_band_A",
            "fsc_half_0.143_first_in_gap", "fsc_truth_0.5_band_A", "fsc_truth_0.143_band_A",
            "ctf_gap_low_res_A", "ctf_gap_high_res_A"),
    "atoms": ("n_true", "n_detected", "recall", "precision", "rmsd_pm", "cn_exact_fraction",
              "lattice_constant_error_A", "u_iso_spearman", "penetration_depth_true_A",
              "penetration_depth_est_A"),
}


@dataclass(frozen=True)
class RunLayout:
    """Where each stage of a run writes, below one run directory (or in directories of their own).

    Attributes
    ----------
    root
        The run directory (None: the stages' directories are given one by one).
    particle_dir, series_dir, recon_dir, atoms_dir
        A stage's own directory (the output of the stand-alone command) instead of the one in ``root``.
    """

    root: Path | None
    particle_dir: Path | None = None
    series_dir: Path | None = None
    recon_dir: Path | None = None
    atoms_dir: Path | None = None

    def _stage(self, given: Path | None, name: str) -> Path:
        if given is not None:
            return Path(given)
        # no run directory: a path below os.devnull, which is a file on every POSIX system, never exists
        return Path(self.root) / name if self.root is not None else Path(os.devnull) / name

    @property
    def particle(self) -> Path:
        """Output of ``build``: truth.extxyz, truth.pdb, structure.json."""
        return self._stage(self.particle_dir, "particle")

    @property
    def series(self) -> Path:
        """Output of ``simulate``: frames.mrcs, frames.star, truth_map.mrc, manifest.json."""
        return self._stage(self.series_dir, "series")

    @property
    def recon(self) -> Path:
        """Output of ``reconstruct``: map.mrc, half1.mrc, half2.mrc, poses.star, fsc.csv."""
        return self._stage(self.recon_dir, "recon")

    @property
    def atoms(self) -> Path:
        """Output of ``atoms``: atoms.pdb, atoms.extxyz, atoms_stats.csv, ..."""
        return self._stage(self.atoms_dir, "atoms")

    def looks_like_run(self) -> bool:
        """Whether ``root`` holds anything of a run: a stage's directory or ``timing.json``."""
        if self.root is None or not Path(self.root).is_dir():
            return False
        root = Path(self.root)
        return (root / "timing.json").is_file() or any((root / n).is_dir() for n in STAGE_FILES)

    def stages_present(self) -> list[str]:
        """The stages whose main output file exists (``particle``, ``series``, ``recon``, ``atoms``)."""
        return [name for name, d in self.stage_dirs().items() if (d / STAGE_FILES[name]).is_file()]

    def stage_dirs(self) -> dict[str, Path]:
        """Each stage's directory."""
        return {"particle": self.particle, "series": self.series, "recon": self.recon, "atoms": self.atoms}


#: The file that shows a stage's directory holds that stage's output.
STAGE_FILES = {"particle": "truth.extxyz", "series": "frames.star", "recon": "map.mrc", "atoms": "atoms_stats.csv"}


def empty_scorecard() -> dict[str, Any]:
    """A scorecard with every key present and every value null."""
    card: dict[str, Any] = {name: dict.fromkeys(keys) for name, keys in SCHEMA.items()}
    card["timing_s"] = {}
    card["versions"] = {}
    return card


def _as_float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def load_scorecard(path: str | Path) -> dict[str, Any]:
    """Read a scorecard and check it has every key of the contract.

    Raises
    ------
    TumblebenchError
        Missing file, invalid JSON, or a missing top-level object or key.
    """
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TumblebenchError(f"{path}: no such scorecard") from None
    except (ValueError, OSError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TumblebenchError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(card, dict):
        raise TumblebenchError(f"{path}: expected a JSON object")
    for name, keys in SCHEMA.items():
        if name not in card:
            raise TumblebenchError(f"{path}: missing object '{name}'")
        missing = [k for k in keys if k not in card[name]]
        if missing:
            raise TumblebenchError(f"{path}: object '{name}' lacks {', '.join(missing)}")
    for name in ("timing_s", "versions"):
        if name not in card:
            raise TumblebenchError(f"{path}: missing object '{name}'")
    return card


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path`` (None if the file does not exist).

    Raises
    ------
    TumblebenchError
        Unreadable, not UTF-8, not JSON, or not a JSON object.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        msg = " ".join(str(exc).split())[:160]
        raise TumblebenchError(f"{path}: not valid JSON ({type(exc).__name__}: {msg})") from None
    if not isinstance(data, dict):
        raise TumblebenchError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _number(data: dict[str, Any], key: str, path: Path, required: bool = True) -> float | None:
    """``data[key]`` as a float (None for a JSON null or, if not ``required``, a missing key).

    Raises
    ------
    TumblebenchError
        A missing required key, or a value that is not a number; the message names the file and the field.
    """
    if key not in data:
        if required:
            raise TumblebenchError(f"{path}: missing field '{key}' (expected a number)")
        return None
    v = data[key]
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TumblebenchError(f"{path}: field '{key}' = {v!r}; expected a number")
    return _as_float(v)


def score_structure(layout: RunLayout) -> dict[str, Any] | None:
    """Structure figures from ``particle/structure.json`` (None if the build stage did not run)."""
    path = layout.particle / "structure.json"
    s = _read_json(path)
    if s is None:
        return None
    n = _number(s, "n_atoms", path)
    if n is None or n < 1 or n != int(n):
        raise TumblebenchError(f"{path}: field 'n_atoms' = {s['n_atoms']!r}; expected a positive integer")
    return {"n_atoms": int(n), "diameter_A": _number(s, "diameter_A", path),
            "lattice_constant_A": _number(s, "lattice_constant_A", path), "median_cn": _number(s, "median_cn", path),
            "core_ratio": _number(s, "core_ratio", path)}


def truth_symmetry(layout: RunLayout) -> Any | None:
    """The proper symmetry group of the true atoms (``particle/truth.extxyz``), None if they are absent.

    Returns
    -------
    tumblebench.validation.symmetry.SymmetryGroup or None
        Rotations in the particle frame of the true poses (centroid at 0).
    """
    from tumblebench.simulator.nanocrystal import load_nanocrystal
    from tumblebench.simulator.truth_map import particle_frame_positions
    from tumblebench.validation.symmetry import find_symmetry

    path = layout.particle / "truth.extxyz"
    if not path.exists():
        return None
    return find_symmetry(particle_frame_positions(load_nanocrystal(path)))


def score_series(layout: RunLayout) -> dict[str, Any] | None:
    """Series figures from ``series/frames.star`` (None if the simulate stage did not run)."""
    from tumblebench.simulator.star import read_star

    star = layout.series / "frames.star"
    if not star.exists():
        return None
    optics, particles = read_star(star)
    return {"n_frames": len(particles), "pixel_size_A": _as_float(optics["rlnImagePixelSize"].iloc[0]),
            "dose_per_frame_e_per_A2": _as_float(particles["tbDose"].median()) if "tbDose" in particles else None,
            "mode": str(optics["tbMode"].iloc[0]) if "tbMode" in optics else None}


@dataclass
class PoseScore:
    """Pose errors of a reconstruction against the truth, with the global alignment found.

    Attributes
    ----------
    median_error_deg, p90_error_deg
        Raw figures: after the best global rotation and hand only (deg).
    rotation, mirrored
        The global rotation and hand of the raw alignment (used to register the map).
    frames
        (M,) 0-based indices into ``series/frames.star`` of the scored frames.
    angles_deg, reduced_angles_deg
        (M,) raw and symmetry-reduced per-frame errors (deg).
    reduced_median_error_deg, reduced_p90_error_deg
        Symmetry-reduced figures (deg).
    projection_twin
        The reduction included the projection twin (an achiral particle: :mod:`tumblebench.validation.poses`).
    """

    median_error_deg: float
    p90_error_deg: float
    rotation: np.ndarray
    mirrored: bool
    frames: np.ndarray
    angles_deg: np.ndarray
    reduced_angles_deg: np.ndarray
    reduced_median_error_deg: float
    reduced_p90_error_deg: float
    projection_twin: bool

    def card(self) -> dict[str, Any]:
        """The ``poses`` object of the scorecard."""
        a, r = self.angles_deg, self.reduced_angles_deg
        return {"median_error_deg": self.median_error_deg, "p90_error_deg": self.p90_error_deg,
                "within_5deg_fraction": float(np.mean(a <= 5.0)), "within_10deg_fraction": float(np.mean(a <= 10.0)),
                "reduced_median_error_deg": self.reduced_median_error_deg,
                "reduced_p90_error_deg": self.reduced_p90_error_deg,
                "reduced_within_5deg_fraction": float(np.mean(r <= 5.0)),
                "reduced_within_10deg_fraction": float(np.mean(r <= 10.0)),
                "reduced_projection_twin": self.projection_twin}


def score_poses(layout: RunLayout, symmetry: Any | None = None) -> PoseScore | None:
    """Compare ``recon/poses.star`` with the true poses of ``series/frames.star``.

    Parameters
    ----------
    layout
        The run.
    symmetry
        The truth's :class:`tumblebench.validation.symmetry.SymmetryGroup` (None: the identity only).

    Returns
    -------
    PoseScore or None
        None when either STAR file is absent.
    """
    from tumblebench.simulator.orientation import pose_matrix
    from tumblebench.simulator.star import image_indices, order_by_frame, read_star
    from tumblebench.validation.poses import pose_errors

    est_path, true_path = layout.recon / "poses.star", layout.series / "frames.star"
    if not (est_path.exists() and true_path.exists()):
        return None
    _, true = read_star(true_path)
    _, est = read_star(est_path)
    true = order_by_frame(true, str(true_path))  # row i is frame i of the series' stack
    true_stack = image_indices(true, str(true_path))[1][0]
    idx, stacks = image_indices(est, str(est_path))
    if set(stacks) != {true_stack}:
        raise TumblebenchError(f"{est_path}: rlnImageName names stack {sorted(set(stacks) - {true_stack})[0]!r}, "
                               f"not the series' {true_stack!r}")
    if idx.max() >= len(true):
        raise TumblebenchError(f"{est_path}: rlnImageName refers to frames outside {true_path}")
    a_est = pose_matrix(*(est[c].to_numpy(float) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")))
    t = true.iloc[idx]
    a_true = pose_matrix(*(t[c].to_numpy(float) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")))
    a_est, a_true = a_est.reshape(-1, 3, 3), a_true.reshape(-1, 3, 3)
    pe = pose_errors(a_est, a_true)
    twin = bool(symmetry is not None and symmetry.achiral)
    if symmetry is None or (symmetry.order == 1 and not twin):
        red = pe
    else:
        red = pose_errors(a_est, a_true, symmetry=symmetry.rotations,
                          projection_twin=symmetry.mirror_rotations if twin else None)
    return PoseScore(pe.median_deg, pe.p90_deg, pe.rotation, pe.mirrored, idx, pe.angles_deg, red.angles_deg,
                     red.median_deg, red.p90_deg, twin)


def atoms_to_truth_frame(positions: np.ndarray, rotation: np.ndarray, shift_zyx: np.ndarray, n: int,
                         sampling: float) -> np.ndarray:
    """Carry atom positions found in a map into the frame of the map registered onto the truth.

    :func:`tumblebench.validation.registration.register_map` makes ``V_reg(p) = V_est(R (p − c) + c)`` shifted by
    ``shift``; a feature at ``q`` in the estimate therefore lands at ``Rᵀ (q − c) + c + shift``.

    Parameters
    ----------
    positions
        (N, 3) positions (x, y, z) in Å in the estimated map.
    rotation
        ``Registration.rotation`` (3×3).
    shift_zyx
        ``Registration.shift_voxels`` (z, y, x) in voxels.
    n
        Box edge in voxels.
    sampling
        Voxel edge in Å.
    """
    c = (n // 2) * sampling
    return (np.asarray(positions, float) - c) @ np.asarray(rotation, float) + c + \
        np.asarray(shift_zyx, float)[::-1] * sampling


def kabsch_refine(est: np.ndarray, true: np.ndarray, max_dist: float = 1.76, n_iter: int = 5) -> np.ndarray:
    """Refine a near-correct rigid placement of ``est`` onto ``true`` (matched pairs, Kabsch); returns moved est.

    Removes the sub-voxel residual of map registration (interpolation, polishing step) so that atom RMSD
    measures the atom model, not the registration.
    """
    from tumblebench.validation.matching import match_atoms

    moved = np.asarray(est, float)
    for _ in range(n_iter):
        m = match_atoms(moved, true, max_dist)
        if len(m.pairs) < 4:
            break
        a, b = moved[m.pairs[:, 0]], true[m.pairs[:, 1]]
        ca, cb = a.mean(0), b.mean(0)
        u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
        d = np.sign(np.linalg.det(u @ vt))
        r = u @ np.diag([1.0, 1.0, d]) @ vt
        moved = (moved - ca) @ r + cb
    return moved


@dataclass
class MapScore:
    """The map against the truth: the scorecard's ``map`` object and the curves behind it.

    Attributes
    ----------
    card
        The ``map`` object.
    freq
        (K,) shell frequencies (1/Å).
    fsc_truth
        (K,) FSC of the registered map against the truth map.
    fsc_half
        (K,) half-map FSC from ``recon/fsc.csv`` on the same shells (None if absent).
    ctf_rms
        (K,) series-RMS CTF (None for projection mode).
    gap
        The CTF's transfer gap (:class:`tumblebench.validation.transfer.TransferGap`) or None.
    registered_map, truth_map
        The map in the truth frame and the truth map ([z, y, x]).
    sampling
        Voxel edge (Å).
    """

    card: dict[str, Any]
    freq: np.ndarray
    fsc_truth: np.ndarray
    fsc_half: np.ndarray | None
    ctf_rms: np.ndarray | None
    gap: Any | None
    registered_map: np.ndarray
    truth_map: np.ndarray
    sampling: float


def _half_fsc(layout: RunLayout, freq: np.ndarray) -> np.ndarray | None:
    import pandas as pd

    path = layout.recon / "fsc.csv"
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise TumblebenchError(f"{path}: not a readable CSV file ({type(exc).__name__})") from None
    if not {"frequency_per_A", "fsc_half"} <= set(df.columns):
        raise TumblebenchError(f"{path}: expected columns frequency_per_A, fsc_half")
    cols = [pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in ("frequency_per_A", "fsc_half")]
    if len(df) == 0 or not all(np.all(np.isfinite(c)) for c in cols):
        raise TumblebenchError(f"{path}: columns frequency_per_A, fsc_half must hold finite numbers")
    return np.interp(freq, cols[0], cols[1])


def score_map(layout: RunLayout, poses: PoseScore | None) -> tuple[MapScore | None, Any | None]:
    """FSC of the registered map against the truth map and of the half maps, at both crossings.

    Returns
    -------
    MapScore or None, Registration or None
        None, None when ``recon/map.mrc`` or ``series/truth_map.mrc`` is absent.
    """
    from tumblebench.reconstruct.fsc import resolution_at
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.validation.registration import fsc_to_truth, register_map
    from tumblebench.validation.transfer import crossings, run_transfer_gap

    truth_path = layout.series / "truth_map.mrc"
    recon_map = layout.recon / "map.mrc"
    if not (truth_path.exists() and recon_map.exists()):
        return None, None
    truth, sampling = read_volume(truth_path)
    est, _ = read_volume(recon_map)
    if est.shape != truth.shape:
        raise TumblebenchError(f"{recon_map}: shape {est.shape} differs from the truth map {truth.shape}")
    reg = register_map(est, truth, None if poses is None else poses.rotation,
                       False if poses is None else poses.mirrored)
    f = fsc_to_truth(reg.map, truth, sampling)
    freq, curve = f["freq"], f["fsc"]
    gap, ctf_rms = run_transfer_gap(layout.series, layout.recon, freq)
    half = _half_fsc(layout, freq)
    summary = _read_json(layout.recon / "summary.json") or {}
    half_first = _number(summary, "fsc_half_0.143_A", layout.recon / "summary.json", required=False)
    half_band, in_gap = half_first, None
    if half is not None:
        first, half_band, in_gap = crossings(freq, half, 0.143, gap)
        half_first = _as_float(first) if half_first is None else half_first
    t05 = crossings(freq, curve, 0.5, gap)
    t0143 = crossings(freq, curve, 0.143, gap)
    card = {"fsc_truth_0.5_A": _as_float(resolution_at(freq, curve, 0.5)),
            "fsc_truth_0.143_A": _as_float(resolution_at(freq, curve, 0.143)),
            "fsc_half_0.143_A": half_first, "fsc_half_0.143_band_A": _as_float(half_band),
            "fsc_half_0.143_first_in_gap": in_gap,
            "fsc_truth_0.5_band_A": _as_float(t05[1]), "fsc_truth_0.143_band_A": _as_float(t0143[1]),
            "ctf_gap_low_res_A": None if gap is None else _as_float(gap.low_res_A),
            "ctf_gap_high_res_A": None if gap is None else _as_float(gap.high_res_A)}
    return MapScore(card, freq, curve, half, ctf_rms, gap, reg.map, truth, float(sampling)), reg


def score_map_and_atoms(layout: RunLayout, poses: PoseScore | None
                        ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """FSC of the registered map against the truth map, and the atom model against the true atoms."""
    ms, reg = score_map(layout, poses)
    atoms = score_atoms(layout, reg)
    return (None if ms is None else ms.card), (None if atoms is None else atoms.card)


@dataclass
class AtomScore:
    """The atom model against the true atoms: the scorecard's ``atoms`` object and the arrays behind it.

    Attributes
    ----------
    card
        The ``atoms`` object.
    found_xyz
        (N, 3) atoms found, carried into the truth map's frame (Å, map coordinates).
    truth_xyz
        (T, 3) true atoms expected in the map (present for most of the series), same frame.
    true_index
        (T,) their indices into ``particle/truth.extxyz``.
    pairs
        (P, 2) matched (found, true) index pairs into ``found_xyz`` and ``truth_xyz``.
    stats
        The per-atom table ``atoms/atoms_stats.csv``.
    """

    card: dict[str, Any]
    found_xyz: np.ndarray
    truth_xyz: np.ndarray
    true_index: np.ndarray
    pairs: np.ndarray
    stats: Any


def read_atom_events(path: Path, n_atoms: int) -> Any:
    """``atom_events.csv`` of a series (frame, atom_index, event, x_A, y_A, z_A) as a DataFrame.

    Raises
    ------
    TumblebenchError
        Unreadable CSV, a missing column, or a frame or atom index that is not a non-negative integer (atom
        indices below ``n_atoms``).
    """
    import pandas as pd

    try:
        ev = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise TumblebenchError(f"{path}: empty file; expected the header frame,atom_index,event,x_A,y_A,z_A") from None
    except (ValueError, OSError) as exc:
        msg = " ".join(str(exc).split())[:160]
        raise TumblebenchError(f"{path}: not a readable CSV file ({type(exc).__name__}: {msg})") from None
    missing = [c for c in ("frame", "atom_index") if c not in ev.columns]
    if missing:
        raise TumblebenchError(f"{path}: missing column(s) {', '.join(missing)}")
    for col, hi in (("frame", None), ("atom_index", n_atoms)):
        v = pd.to_numeric(ev[col], errors="coerce").to_numpy(float)
        ok = np.isfinite(v) & (v >= 0) & (v == np.round(v)) & (True if hi is None else v < hi)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            limit = "" if hi is None else f" below {hi}"
            raise TumblebenchError(f"{path}: column {col}, row {row + 1}: {ev[col].iloc[row]!r}; expected a "
                                   f"non-negative integer{limit}")
        ev[col] = v.astype(np.int64)
    return ev


def score_atoms(layout: RunLayout, registration: Any | None) -> dict[str, Any] | None:
    """Atom model (``atoms/``) against the true atoms (``particle/truth.extxyz``): the ``atoms`` object."""
    res = score_atoms_details(layout, registration)
    return None if res is None else res.card


def score_atoms_details(layout: RunLayout, registration: Any | None) -> AtomScore | None:
    """Atom model (``atoms/``) against the true atoms (``particle/truth.extxyz``), with the matched arrays."""
    from scipy.stats import spearmanr

    from tumblebench.analysis.io import read_atoms, read_penetration
    from tumblebench.analysis.penetration import fit_penetration
    from tumblebench.simulator.coordination import radial_depth
    from tumblebench.simulator.nanocrystal import load_nanocrystal
    from tumblebench.simulator.star import read_star
    from tumblebench.validation.matching import match_atoms

    if not (layout.atoms / "atoms_stats.csv").exists() or not (layout.particle / "truth.extxyz").exists():
        return None
    nc = load_nanocrystal(layout.particle / "truth.extxyz")
    pos, stats = read_atoms(layout.atoms)
    from tumblebench.simulator.mrc import read_volume

    source = layout.recon / "map.mrc" if (layout.recon / "map.mrc").exists() else layout.series / "truth_map.mrc"
    if not source.exists():
        raise TumblebenchError(f"{layout.atoms}: the atom model needs the map it was built from (recon/map.mrc or "
                               "series/truth_map.mrc) to be scored")
    vol, sampling = read_volume(source)
    map_shape = vol.shape
    true_pos = nc.positions
    present = np.ones(len(true_pos), bool)
    events = layout.series / "atom_events.csv"
    if events.exists():
        ev = read_atom_events(events, len(true_pos))
        if len(ev):
            _, particles = read_star(layout.series / "frames.star")
            first_gone = ev.groupby("atom_index")["frame"].min()
            occ = np.ones(len(true_pos))
            occ[first_gone.index.to_numpy(int)] = first_gone.to_numpy(float) / len(particles)
            present = occ >= 0.5  # atoms gone for most of the series are not expected in the map
    n = int(map_shape[0])
    centre = (n // 2) * float(sampling)
    truth_xyz = true_pos[present] + centre
    if registration is not None:
        pos = atoms_to_truth_frame(pos, registration.rotation, registration.shift_voxels, n, float(sampling))
        pos = kabsch_refine(pos, truth_xyz)
    m = match_atoms(pos, truth_xyz)
    true_cn = np.asarray(nc.atoms.arrays["cn"])[present]
    true_uiso = np.trace(nc.U, axis1=1, axis2=2)[present] / 3
    cn_exact = None
    rho = None
    if len(m.pairs):
        if "CN_STD" in stats:
            cn_exact = float(np.mean(stats["CN_STD"].to_numpy()[m.pairs[:, 0]] == true_cn[m.pairs[:, 1]]))
        if "U_ISO" in stats and len(m.pairs) > 3:
            u = stats["U_ISO"].to_numpy(float)[m.pairs[:, 0]]
            ok = np.isfinite(u)
            rho = float(spearmanr(u[ok], true_uiso[m.pairs[ok, 1]]).statistic) if ok.sum() > 3 else None
    pen = read_penetration(layout.atoms) if (layout.atoms / "penetration.json").exists() else {}
    cn_fit = pen.get("cn") or {}
    summary_path = layout.atoms / "atoms_summary.json"
    summary = _read_json(summary_path) or {}
    lattice = summary.get("lattice") or {}
    if not isinstance(lattice, dict):
        raise TumblebenchError(f"{summary_path}: field 'lattice' must be an object")
    lat = _number(lattice, "lattice_constant_A", summary_path, required=False)
    card = {
        "n_true": int(present.sum()), "n_detected": len(pos), "recall": m.recall, "precision": m.precision,
        "rmsd_pm": _as_float(m.rmsd_pm), "cn_exact_fraction": cn_exact,
        "lattice_constant_error_A": None if lat is None else abs(float(lat) - float(nc.lattice_constant)),
        "u_iso_spearman": rho,
        "penetration_depth_true_A": _as_float(fit_penetration(radial_depth(true_pos[present]), true_cn).delta_A),
        "penetration_depth_est_A": _as_float(cn_fit.get("delta_A")),
    }
    return AtomScore(card, pos, truth_xyz, np.flatnonzero(present), np.asarray(m.pairs, int).reshape(-1, 2), stats)


@dataclass
class ScoreDetails:
    """Everything :func:`score_details` measured: the scorecard and the arrays behind its figures.

    Attributes
    ----------
    card
        The scorecard (what ``scorecard.json`` holds).
    symmetry
        The truth's :class:`tumblebench.validation.symmetry.SymmetryGroup` (None without ``particle/``).
    poses, map, atoms
        :class:`PoseScore`, :class:`MapScore`, :class:`AtomScore` (None for a stage that did not run).
    """

    card: dict[str, Any]
    symmetry: Any | None
    poses: PoseScore | None
    map: MapScore | None
    atoms: AtomScore | None


def score_details(run_dir: str | Path | RunLayout) -> ScoreDetails:
    """Score every stage found in ``run_dir`` against the truth and keep the arrays behind the figures.

    Parameters
    ----------
    run_dir
        A run directory laid out as :class:`RunLayout`, or a :class:`RunLayout` naming the stages' directories.

    Returns
    -------
    ScoreDetails

    Raises
    ------
    TumblebenchError
        ``run_dir`` is not a directory, or a stage's files are malformed.
    """
    from tumblebench.simulator.outputs import versions

    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(Path(run_dir))
    if layout.root is not None and not layout.root.is_dir():
        raise TumblebenchError(f"{layout.root}: no such run directory")
    card = empty_scorecard()
    for name, fn in (("structure", score_structure), ("series", score_series)):
        res = fn(layout)
        if res is not None:
            card[name].update(res)
    sym = truth_symmetry(layout)
    if sym is not None:
        card["structure"].update({"symmetry_group": sym.name, "symmetry_order": sym.order,
                                  "centrosymmetric": sym.centrosymmetric})
    poses = score_poses(layout, sym)
    if poses is not None:
        card["poses"].update(poses.card())
    map_score, reg = score_map(layout, poses)
    if map_score is not None:
        card["map"].update(map_score.card)
    atoms = score_atoms_details(layout, reg)
    if atoms is not None:
        card["atoms"].update(atoms.card)
    timing_path = layout.root / "timing.json" if layout.root is not None else None
    timing = (_read_json(timing_path) if timing_path is not None else None) or {}
    card["timing_s"] = {k: _number(timing, k, timing_path) for k in timing}
    card["versions"] = versions()
    return ScoreDetails(card, sym, poses, map_score, atoms)


def score_run(run_dir: str | Path | RunLayout) -> dict[str, Any]:
    """Score every stage found in ``run_dir`` against the truth; stages that did not run stay null.

    Parameters
    ----------
    run_dir
        A run directory laid out as :class:`RunLayout` (``particle/``, ``series/``, ``recon/``, ``atoms/``), or a
        :class:`RunLayout` naming the stages' directories.

    Returns
    -------
    dict
        The scorecard (schema :data:`SCHEMA` plus ``timing_s`` and ``versions``).
    """
    return score_details(run_dir).card
