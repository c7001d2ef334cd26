"""Benchmark suites: named, versioned sets of known-truth cases, run through the pipeline and tabulated.

A suite is a TOML file (the built-in ones live in ``validation/suites/``)::

    name = "quick"
    version = 1
    description = "..."

    [defaults]              # every case starts from these PipelineConfig fields
    n_frames = 200

    [[case]]
    name = "cubo-projection"
    preset = "cuboctahedron"     # or structure = "data/FILE.pdb" (relative to the suite file)
    mode = "projection"
    dose_scale = 0.5             # × the default dose per frame
    halves = false               # also score the part1/part2 maps against the truth of each half
    [case.series.liquid]         # SeriesConfig overrides, as its TOML tables
    initial_thickness_A = 300.0

Every case is a :class:`~tumblebench.validation.pipeline.PipelineConfig`; its data (particle, series, truth)
comes from a data cache keyed by :func:`~tumblebench.validation.pipeline.data_key`, so that every algorithm is
scored on the same bytes. :data:`METRICS` declares, per headline figure, which direction is better and the
tolerance within which two runs count as the same; :func:`compare_results` and the regression baselines use it.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import math
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tumblebench.simulator.config import from_dict, read_toml
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.outputs import atomic_file, check_writable_parent, write_json
from tumblebench.simulator.series import DEFAULT_DOSE_PER_FRAME
from tumblebench.validation.algorithms import resolve_all
from tumblebench.validation.pipeline import PipelineConfig, reconstruct_config, run_pipeline, series_config
from tumblebench.validation.scorecard import RunLayout, atoms_to_truth_frame, kabsch_refine, score_run

#: Keys of a case table that are not PipelineConfig fields.
_CASE_KEYS = ("name", "description", "dose_scale", "halves")


# --------------------------------------------------------------------------------------------- suites


@dataclass(frozen=True)
class Case:
    """One case of a suite.

    Attributes
    ----------
    name
        Unique name within the suite (a folder name).
    config
        What the pipeline runs.
    description
        One line on what the case tests.
    halves
        Also build atom models of the ``part1`` / ``part2`` maps and score each against the atoms present
        during that half of the series (a particle that changes during the series).
    """

    name: str
    config: PipelineConfig
    description: str = ""
    halves: bool = False


@dataclass(frozen=True)
class Suite:
    """A named, versioned list of cases."""

    name: str
    version: int
    description: str
    cases: tuple[Case, ...]
    source: str


def _suite_dir() -> Any:
    return resources.files("tumblebench.validation") / "suites"


def suite_names() -> list[str]:
    """Names of the built-in suites."""
    return sorted(p.name[:-5] for p in _suite_dir().iterdir() if p.name.endswith(".toml"))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_suite(data: dict[str, Any], where: str, root: Path | None = None) -> Suite:
    """A :class:`Suite` from the parsed TOML ``data``; ``where`` names the file in errors.

    Parameters
    ----------
    data
        The suite's tables (``name``, ``version``, ``description``, ``[defaults]``, ``[[case]]``).
    where
        The file, for error messages.
    root
        Directory that relative ``structure`` paths refer to (the suite file's).
    """
    unknown = sorted(set(data) - {"name", "version", "description", "defaults", "case"})
    require(not unknown, f"{where}: unknown key(s) {', '.join(unknown)}; expected name, version, description, "
                         "defaults, case")
    require(isinstance(data.get("name"), str) and data["name"], f"{where}: name: expected a non-empty string")
    require(isinstance(data.get("version"), int) and not isinstance(data.get("version"), bool),
            f"{where}: version: expected an integer")
    defaults = data.get("defaults", {})
    require(isinstance(defaults, dict), f"{where}: [defaults]: expected a table")
    raw_cases = data.get("case", [])
    require(isinstance(raw_cases, list) and raw_cases, f"{where}: expected at least one [[case]]")
    cases: list[Case] = []
    for i, raw in enumerate(raw_cases):
        require(isinstance(raw, dict), f"{where}: case {i + 1}: expected a table")
        merged = _merge(defaults, raw)
        name = merged.get("name")
        require(isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum(),
                f"{where}: case {i + 1}: name: expected letters, digits, '-' or '_', got {name!r}")
        at = f"{where}: case {name}"
        require(all(c.name != name for c in cases), f"{at}: name used twice")
        fields = {k: v for k, v in merged.items() if k not in _CASE_KEYS}
        scale = merged.get("dose_scale")
        if scale is not None:
            require(isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0,
                    f"{at}: dose_scale: expected a number > 0, got {scale!r}")
            dose = {"acquisition": {"dose_per_frame_e_per_A2": DEFAULT_DOSE_PER_FRAME * float(scale)}}
            fields["series"] = _merge(fields.get("series", {}), dose)
        if isinstance(fields.get("structure"), str) and root is not None:
            fields["structure"] = str((root / fields["structure"]).resolve())
        config = from_dict(PipelineConfig, fields, where=at)
        try:
            config.validate()
            truth_box = series_config(config).acquisition.box_size_px
            box = reconstruct_config(config).box
        except TumblebenchError as exc:
            raise TumblebenchError(f"{at}: {exc}") from None
        # the scorecard compares the map with the truth map voxel for voxel: caught here, not after the run
        require(box == truth_box, f"{at}: reconstruct.box = {box} differs from series.acquisition.box_size_px = "
                                  f"{truth_box} (the truth map's box); set both to the same size")
        halves = merged.get("halves", False)
        require(isinstance(halves, bool), f"{at}: halves: expected true or false")
        cases.append(Case(name, config, str(merged.get("description", "")), halves))
    return Suite(data["name"], data["version"], str(data.get("description", "")), tuple(cases), where)


def load_suite(name: str) -> Suite:
    """A built-in suite by name (:func:`suite_names`) or a suite TOML file by path.

    Raises
    ------
    TumblebenchError
        Unknown suite, unreadable file, or a case that does not validate (message names file and field).
    """
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        require(path.exists(), f"{path}: no such suite file")
        return parse_suite(read_toml(path), str(path), path.resolve().parent)
    else:
        res = _suite_dir() / f"{name}.toml"
        require(res.is_file(), f"--suite {name!r}: no such suite; built-in suites: {', '.join(suite_names())}")
        text, where = res.read_text(), f"suite {name}"
        with resources.as_file(_suite_dir()) as d:
            root = Path(d)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TumblebenchError(f"{where}: not valid TOML ({exc})") from None
    return parse_suite(data, where, root)


# --------------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """A headline figure of a case, how to read it, which way is better and what counts as the same.

    Attributes
    ----------
    name
        Column name in ``results.*``.
    path
        (object, key) in the case's scorecard.
    better
        ``"lower"``, ``"higher"`` or ``"info"`` (reported, never judged).
    tol
        Absolute tolerance; for ``resolution`` metrics in spatial frequency (Å⁻¹).
    resolution
        The figure is a resolution in Å: compared as 1/d, so that the tolerance is a number of Fourier shells.
    fmt
        Format of the figure in tables.
    reason
        Why the tolerance is what it is.
    """

    name: str
    path: tuple[str, str]
    better: str
    tol: float = 0.0
    resolution: bool = False
    fmt: str = ".3f"
    reason: str = ""


_REPRO = "float reproducibility across BLAS builds, FFT plans and CPUs"
#: One Fourier shell of the default box (128 px at 0.358 Å: 1/45.8 Å⁻¹ ≈ 0.022 Å⁻¹), rounded up: an FSC crossing
#: interpolated between two shells moves by up to one shell when the curve changes in its last bits.
_SHELL = 0.025

METRICS: tuple[Metric, ...] = (
    Metric("n_true", ("atoms", "n_true"), "info", fmt="d"),
    Metric("n_detected", ("atoms", "n_detected"), "info", fmt="d"),
    Metric("pose_median_deg", ("poses", "median_error_deg"), "lower", 0.05, fmt=".2f",
           reason=f"{_REPRO}: local searches end within a few hundredths of a degree of each other"),
    Metric("pose_p90_deg", ("poses", "p90_error_deg"), "lower", 0.2, fmt=".2f",
           reason=f"{_REPRO}: the 90th percentile sits on the tail of frames near a basin edge"),
    Metric("pose_sym_median_deg", ("poses", "reduced_median_error_deg"), "lower", 0.05, fmt=".2f",
           reason=f"{_REPRO}; as pose_median_deg (modulo the particle's own symmetry)"),
    Metric("pose_sym_within_5deg", ("poses", "reduced_within_5deg_fraction"), "higher", 0.02, fmt=".2f",
           reason=f"{_REPRO}: a frame at the 5° edge can cross it (one frame of 60 is 0.017)"),
    Metric("fsc_truth_0.5_A", ("map", "fsc_truth_0.5_A"), "lower", _SHELL, True, ".2f",
           reason="one Fourier shell of the default box (crossing interpolated between shells)"),
    Metric("fsc_half_0.143_A", ("map", "fsc_half_0.143_A"), "lower", _SHELL, True, ".2f",
           reason="one Fourier shell of the default box (crossing interpolated between shells)"),
    Metric("recall", ("atoms", "recall"), "higher", 0.005,
           reason=f"{_REPRO}: an atom at the detection threshold can flip (1 of ≥ 200 atoms)"),
    Metric("precision", ("atoms", "precision"), "higher", 0.005,
           reason=f"{_REPRO}: an atom at the detection threshold can flip (1 of ≥ 200 atoms)"),
    Metric("rmsd_pm", ("atoms", "rmsd_pm"), "lower", 0.5, fmt=".1f",
           reason=f"{_REPRO}: sub-voxel peak fits move by far less than 0.5 pm; a flipped atom moves the RMSD"),
    Metric("cn_exact", ("atoms", "cn_exact_fraction"), "higher", 0.01,
           reason=f"{_REPRO}: one flipped atom changes the CN of up to 12 neighbours"),
    Metric("lattice_error_A", ("atoms", "lattice_constant_error_A"), "lower", 0.0005, fmt=".4f",
           reason=f"{_REPRO}: a least-squares lattice fit over hundreds of atoms"),
    Metric("u_iso_spearman", ("atoms", "u_iso_spearman"), "higher", 0.02, fmt=".2f",
           reason=f"{_REPRO}: rank correlation over the matched atoms"),
    Metric("part1_recall", ("halves", "part1_recall"), "higher", 0.005, reason=f"{_REPRO}; as recall"),
    Metric("part2_recall", ("halves", "part2_recall"), "higher", 0.005, reason=f"{_REPRO}; as recall"),
    Metric("part1_precision", ("halves", "part1_precision"), "higher", 0.005, reason=f"{_REPRO}; as precision"),
    Metric("part2_precision", ("halves", "part2_precision"), "higher", 0.005, reason=f"{_REPRO}; as precision"),
)
_BY_NAME = {m.name: m for m in METRICS}


def headline(card: dict[str, Any]) -> dict[str, Any]:
    """The headline figures (:data:`METRICS`) of a scorecard, plus the particle, series and total time."""
    row: dict[str, Any] = {}
    s, se = card.get("structure") or {}, card.get("series") or {}
    row["n_atoms"] = s.get("n_atoms")
    row["n_frames"] = se.get("n_frames")
    row["mode"] = se.get("mode")
    for m in METRICS:
        obj, key = m.path
        row[m.name] = (card.get(obj) or {}).get(key)
    timing = [v for v in (card.get("timing_s") or {}).values() if v is not None]
    row["time_s"] = float(sum(timing)) if timing else None
    return row


def judge(metric: Metric, a: Any, b: Any) -> str:
    """``better`` / ``worse`` / ``same`` for ``b`` against reference ``a`` (or ``n/a`` / ``info``).

    A figure that exists in one run and not in the other counts as better (gained) or worse (lost).
    """
    if metric.better == "info":
        return "info"
    if a is None and b is None:
        return "n/a"
    if b is None:
        return "worse"
    if a is None:
        return "better"
    fa, fb = float(a), float(b)
    if metric.resolution:  # compare spatial frequencies: higher frequency = finer resolution = better
        fa, fb = 1.0 / fa, 1.0 / fb
        gain = fb - fa
    else:
        gain = fb - fa if metric.better == "higher" else fa - fb
    if abs(gain) <= metric.tol * (1 + 1e-9):
        return "same"
    return "better" if gain > 0 else "worse"


def _fmt(x: Any, fmt: str) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "—"
    try:
        return format(int(x) if fmt.endswith("d") else float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


# ------------------------------------------------------------------------------------ time-resolved halves


def half_truth(gone_frame: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Which atoms belong to the truth of the first and of the second half of a series.

    Parameters
    ----------
    gone_frame
        (N,) first frame without each atom (``n_frames`` for an atom that never leaves).
    n_frames
        Frames of the series; the halves are frames ``[0, n/2)`` and ``[n/2, n)`` (as ``part1`` / ``part2``).

    Returns
    -------
    tuple of ndarray
        Two (N,) masks: atoms present in at least half of the frames of that half.
    """
    gone = np.asarray(gone_frame, float)
    h = n_frames // 2
    return tuple((np.clip(gone, a, b) - a) / (b - a) >= 0.5 for a, b in ((0, h), (h, n_frames)))  # type: ignore[return-value]


def score_halves(run_dir: str | Path) -> dict[str, Any]:
    """Atom models of the ``part1`` / ``part2`` maps against the atoms present during each half of the series.

    An atom belongs to a half's truth when it is present for at least half of that half's frames
    (``series/atom_events.csv``: the frame an atom leaves). The halves' maps share the full map's frame, so the
    full map's registration onto the truth carries their atoms (then a rigid Kabsch polish, as the scorecard).

    Returns
    -------
    dict
        ``partK_n_true``, ``partK_n_detected``, ``partK_recall``, ``partK_precision``, ``partK_rmsd_pm`` for
        K = 1, 2 (None where a part map or its atom model is missing).
    """
    import pandas as pd

    from tumblebench.analysis.model import build_atom_model
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.nanocrystal import load_nanocrystal
    from tumblebench.simulator.star import read_star
    from tumblebench.validation.matching import match_atoms
    from tumblebench.validation.registration import register_map
    from tumblebench.validation.scorecard import score_poses

    layout = RunLayout(Path(run_dir))
    out: dict[str, Any] = {}
    nc = load_nanocrystal(layout.particle / "truth.extxyz")
    _, particles = read_star(layout.series / "frames.star")
    n_frames = len(particles)
    gone = np.full(nc.n_atoms, n_frames, float)  # first frame without the atom (n_frames: never leaves)
    events = layout.series / "atom_events.csv"
    if events.exists():
        ev = pd.read_csv(events)
        ev = ev[ev["event"] == "dissolved"]
        if len(ev):
            first = ev.groupby("atom_index")["frame"].min()
            gone[first.index.to_numpy(int)] = first.to_numpy(float)
    truth, truth_sampling = read_volume(layout.series / "truth_map.mrc")
    est, _ = read_volume(layout.recon / "map.mrc")
    poses = score_poses(layout)
    reg = register_map(est, truth, None if poses is None else poses.rotation,
                       False if poses is None else poses.mirrored)
    n = int(truth.shape[0])
    centre = (n // 2) * float(truth_sampling)
    for k, present in enumerate(half_truth(gone, n_frames), start=1):
        keys = [f"part{k}_{x}" for x in ("n_true", "n_detected", "recall", "precision", "rmsd_pm")]
        out.update(dict.fromkeys(keys))
        out[f"part{k}_n_true"] = int(present.sum())
        part_map = layout.recon / f"part{k}" / "map.mrc"
        if not part_map.exists():
            continue
        vol, sampling = read_volume(part_map)
        try:
            model = build_atom_model(vol, sampling, where=str(part_map))
        except TumblebenchError:
            continue
        truth_xyz = nc.positions[present] + centre
        pos = atoms_to_truth_frame(model.positions, reg.rotation, reg.shift_voxels, n, float(sampling))
        pos = kabsch_refine(pos, truth_xyz)
        m = match_atoms(pos, truth_xyz)
        out.update({f"part{k}_n_detected": len(pos), f"part{k}_recall": m.recall,
                    f"part{k}_precision": m.precision, f"part{k}_rmsd_pm": m.rmsd_pm})
    return out


# --------------------------------------------------------------------------------------------- running


def with_algorithms(config: PipelineConfig, algorithms: dict[str, str]) -> PipelineConfig:
    """``config`` running the chosen per-stage algorithms where its pose mode runs that stage.

    A ``pose`` algorithm applies to cases with unknown poses (``abinitio``), a ``refine`` algorithm to every case
    but true poses; other cases keep their configuration (the stage does not run there).
    """
    chosen = dict(algorithms)
    if config.poses != "abinitio":
        chosen.pop("pose", None)
    if config.poses == "truth":
        chosen.pop("refine", None)
    if not chosen:
        return config
    return dataclasses.replace(config, algorithms={**config.algorithms, **chosen})


def case_report(run_dir: Path) -> Path | None:
    """The run's ``report.html`` (written by :func:`~tumblebench.validation.pipeline.run_pipeline`), if any."""
    path = Path(run_dir) / "report.html"
    return path if path.is_file() else None


def _progress_line(i: int, n: int, name: str, elapsed: float, row: dict[str, Any]) -> str:
    return (f"case {i}/{n} {name}: {elapsed:.0f} s; pose median {_fmt(row.get('pose_median_deg'), '.2f')}° "
            f"({_fmt(row.get('pose_sym_median_deg'), '.2f')}° modulo the particle's symmetry), "
            f"FSC(truth) 0.5 at {_fmt(row.get('fsc_truth_0.5_A'), '.2f')} Å, recall "
            f"{_fmt(row.get('recall'), '.3f')}, precision {_fmt(row.get('precision'), '.3f')}, RMSD "
            f"{_fmt(row.get('rmsd_pm'), '.1f')} pm")


def _stage_lines(case: str, show: bool) -> Callable[[str], None]:
    """Where a running case's stage lines go: stderr, prefixed by the case, if ``show``; else nowhere."""
    if not show:
        return lambda _m: None
    return lambda msg: print(f"  {case} {msg}", file=sys.stderr, flush=True)


def run_suite(suite: Suite, out: str | Path, data: str | Path | None = None,
              algorithms: dict[str, str] | None = None, only: Sequence[str] | None = None,
              overwrite: bool = False, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every case of ``suite`` and write ``out/cases/NAME/`` (a run each) and ``out/results.*``.

    Parameters
    ----------
    suite
        The cases.
    out
        Results folder (created; an existing one needs ``overwrite``).
    data
        Data cache shared between runs (default ``out/data``).
    algorithms
        Per-stage algorithm choices (``{stage: name or module:attr}``).
    only
        Run only these cases (names).
    overwrite
        Replace an existing results folder's cases.
    resume
        Continue an interrupted run in ``out``: cases with a finished run folder (``cases/NAME/scorecard.json``)
        and a row in ``results.json`` are kept, the others run. The folder must hold the same suite, version and
        algorithms.
    progress
        A bar over the cases when stderr is a terminal (a line per case is always printed); when it is not (a
        log file), each stage's line of the running case instead, so a long case shows where it is.
    log
        Where the per-stage lines of each run go (default: as ``progress`` says).

    Returns
    -------
    list of dict
        One row per case (:func:`headline` plus case, particle, poses and status).
    """
    from tqdm import tqdm

    out = Path(out)
    check_writable_parent(out.parent, "results folder")
    require(not (overwrite and resume), "--overwrite and --resume exclude each other")
    algorithms = algorithms or {}
    done: dict[str, dict[str, Any]] = {}
    wall_before = 0.0
    if out.exists():
        require(out.is_dir(), f"{out}: exists and is not a directory")
        require(overwrite or resume or not (out / "results.json").exists(),
                f"{out}: holds results already; pass --overwrite to replace them or --resume to continue them")
        if resume and (out / "results.json").exists():
            prev = load_results(out)
            same = (prev.get("suite"), prev.get("version"), prev.get("algorithms") or {})
            require(same == (suite.name, suite.version, algorithms),
                    f"{out / 'results.json'}: suite {same[0]} v{same[1]} with algorithms {same[2] or 'built-in'}; "
                    f"--resume continues only the same suite, version and algorithms ({suite.name} v{suite.version}, "
                    f"{algorithms or 'built-in'})")
            done = {r["case"]: r for r in prev.get("cases", [])
                    if (out / "cases" / r["case"] / "scorecard.json").is_file()}
            wall_before = float(prev.get("wall_s") or 0.0)
    cases = list(suite.cases)
    if only:
        unknown = sorted(set(only) - {c.name for c in cases})
        require(not unknown, f"--case {', '.join(unknown)}: not in suite {suite.name} "
                             f"({', '.join(c.name for c in cases)})")
        cases = [c for c in cases if c.name in set(only)]
    resolve_all(algorithms, where="--algorithm")  # every algorithm is found before any case runs
    (out / "cases").mkdir(parents=True, exist_ok=True)
    data = Path(data) if data is not None else out / "data"
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(cases), unit="case", desc=f"bench {suite.name}", file=sys.stderr, dynamic_ncols=True,
               disable=not (progress and sys.stderr.isatty()))

    def say(line: str) -> None:
        """One case done: its line (above the bar on a terminal), and the bar one step on."""
        if bar.disable:
            print(line, file=sys.stderr, flush=True)
        else:
            bar.write(line, file=sys.stderr)
        bar.update(1)

    t_suite = time.perf_counter()
    for i, case in enumerate(cases, start=1):
        if case.name in done:  # --resume: finished in an earlier run
            rows.append(done[case.name])
            say(f"case {i}/{len(cases)} {case.name}: finished in the earlier run, kept")
            continue
        t = time.perf_counter()
        run_dir = out / "cases" / case.name
        cfg = with_algorithms(case.config, algorithms)
        lines = log or _stage_lines(case.name, progress and bar.disable)
        card = run_pipeline(run_dir, cfg, overwrite=True, progress=False, log=lines, data=data)
        if case.halves:
            card["halves"] = score_halves(run_dir)
            write_json(run_dir / "scorecard.json", card)
        report = case_report(run_dir)
        row = {"case": case.name, "particle": cfg.particle_name, "poses": cfg.poses,
               "algorithms": ", ".join(f"{k}={v}" for k, v in cfg.algorithms.items()) or "built-in",
               **headline(card),
               "report": None if report is None else str(report.relative_to(out))}
        row["wall_s"] = time.perf_counter() - t
        rows.append(row)
        say(_progress_line(i, len(cases), case.name, row["wall_s"], row))
        # the results so far, rewritten after every case: an interrupted suite keeps its finished cases
        meta = {"suite": suite.name, "version": suite.version, "algorithms": algorithms,
                "wall_s": wall_before + time.perf_counter() - t_suite, "data": str(data), "complete": i == len(cases)}
        write_results(out, rows, meta)
    bar.close()
    return rows



def rescore_suite(out: str | Path) -> list[dict[str, Any]]:
    """Score every case of the results folder ``out`` again with today's scorers, from the runs it holds.

    Each case's ``scorecard.json`` (and its halves, where scored) is rewritten and the results are rebuilt from the
    new scorecards; nothing is reconstructed again, and the cases' run times stay those measured. The card's
    ``versions`` stay those of the run, with the scorers' git commit added as ``rescored_at``.

    Returns
    -------
    list of dict
        The new result rows, in the suite's order.

    Raises
    ------
    TumblebenchError
        ``out`` holds no results, or a case's run folder lacks its scorecard.
    """
    out = Path(out)
    res = load_results(out)
    for r in res["cases"]:
        require((out / "cases" / r["case"] / "scorecard.json").is_file(),
                f"{out / 'cases' / r['case']}: no scorecard.json; the case did not finish (run `tumblebench bench "
                f"--resume` first)")
    rows = []
    for r in res["cases"]:
        run_dir = out / "cases" / r["case"]
        old = json.loads((run_dir / "scorecard.json").read_text(encoding="utf-8"))
        card = score_run(run_dir)
        # the versions stay those of the run; the scorers' commit is added
        card["versions"] = {**(old.get("versions") or {}), "rescored_at": card["versions"].get("git_commit")}
        if "halves" in old:
            card["halves"] = score_halves(run_dir)
        with atomic_file(run_dir / "scorecard.json") as tmp:
            write_json(tmp, card)
        rows.append({**r, **headline(card)})
    write_results(out, rows, {k: res.get(k) for k in ("suite", "version", "algorithms", "wall_s", "data", "complete")})
    return rows

_RESULT_COLUMNS = ("case", "particle", "n_atoms", "n_frames", "mode", "poses",
                   *(m.name for m in METRICS if m.path[0] != "halves"), "time_s")


def result_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns of ``results.*``: case, particle, series, the headline metrics (halves where scored), time."""
    cols = list(_RESULT_COLUMNS)
    for m in METRICS:
        if m.path[0] == "halves" and any(r.get(m.name) is not None for r in rows):
            cols.insert(cols.index("time_s"), m.name)
    return cols


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str], headers: dict[str, str] | None = None) -> str:
    """A Markdown table of ``rows`` (figures formatted as :data:`METRICS` says); ``headers`` renames columns."""
    fmts = {m.name: m.fmt for m in METRICS} | {"n_atoms": "d", "n_frames": "d", "time_s": ".0f"}
    names = [(headers or {}).get(c, c) for c in columns]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), fmts[c]) if c in fmts else str(r.get(c, "—"))
                                       for c in columns) + " |")
    return "\n".join(lines)


def write_results(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """``results.json`` (meta + rows), ``results.csv``, ``results.md`` and ``index.html`` in ``out``."""
    cols = result_columns(rows)
    write_json(out / "results.json", {**meta, "columns": cols, "cases": rows})
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows([{c: ("" if r.get(c) is None else r.get(c)) for c in cols} for r in rows])
    algo = ", ".join(f"{k}={v}" for k, v in meta.get("algorithms", {}).items()) or "built-in"
    head = (f"Suite `{meta['suite']}` v{meta['version']}, algorithms: {algo}; "
            f"{len(rows)} cases in {meta['wall_s']:.0f} s{'' if meta.get('complete', True) else ' (incomplete)'}.\n\n")
    (out / "results.md").write_text(head + markdown_table(rows, cols) + "\n")
    links = "".join(
        f"<tr><td><a href=\"{html.escape(r.get('report') or 'cases/' + r['case'] + '/scorecard.json')}\">"
        f"{html.escape(r['case'])}</a></td>"
        + "".join(f"<td>{html.escape(_fmt(r.get(c), _BY_NAME[c].fmt if c in _BY_NAME else 's'))}</td>"
                  for c in cols[1:]) + "</tr>"
        for r in rows)
    (out / "index.html").write_text(
        "<!doctype html><meta charset=\"utf-8\"><title>tumblebench " + html.escape(meta["suite"]) + "</title>"
        f"<p>{html.escape(head.strip())}</p><table border=1 cellpadding=3><tr>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + f"</tr>{links}</table>\n")


def load_results(folder: str | Path) -> dict[str, Any]:
    """``results.json`` of a results folder.

    Raises
    ------
    TumblebenchError
        No such folder or file, or not a results file.
    """
    path = Path(folder) / "results.json"
    require(path.is_file(), f"{path}: no such results file (run `tumblebench bench` into {folder})")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TumblebenchError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    require(isinstance(res, dict) and isinstance(res.get("cases"), list),
            f"{path}: expected an object with a 'cases' list")
    for i, row in enumerate(res["cases"]):
        require(isinstance(row, dict) and isinstance(row.get("case"), str),
                f"{path}: cases[{i}] must be an object with a 'case' name")
    return res


# --------------------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Diff:
    """One case's metric in two runs and the verdict for the second."""

    case: str
    metric: str
    a: Any
    b: Any
    verdict: str


def compare_rows(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[Diff]:
    """Per case and metric, ``b`` against ``a`` (both ``{case: headline row}``); cases in either run."""
    diffs: list[Diff] = []
    for case in [*a, *(c for c in b if c not in a)]:
        ra, rb = a.get(case), b.get(case)
        if ra is None or rb is None:
            diffs.append(Diff(case, "(case)", "present" if ra else "missing", "present" if rb else "missing",
                              "missing" if rb is None else "new"))
            continue
        for m in METRICS:
            va, vb = ra.get(m.name), rb.get(m.name)
            if va is None and vb is None:
                continue
            diffs.append(Diff(case, m.name, va, vb, judge(m, va, vb)))
    return diffs


def compare_results(folder_a: str | Path, folder_b: str | Path) -> list[Diff]:
    """:func:`compare_rows` of two results folders written by :func:`run_suite`."""
    ra, rb = load_results(folder_a), load_results(folder_b)
    return compare_rows({r["case"]: r for r in ra["cases"]}, {r["case"]: r for r in rb["cases"]})


def diff_table(diffs: list[Diff], markdown: bool = False, label_a: str = "A", label_b: str = "B") -> str:
    """The diffs as a terminal table (or Markdown): case, metric, A, B, change, verdict, tolerance."""
    head = ["case", "metric", label_a, label_b, "change", "verdict", "tolerance"]
    body = []
    for d in diffs:
        m = _BY_NAME.get(d.metric)
        fmt = m.fmt if m else "s"
        if m is None or d.a is None or d.b is None or isinstance(d.a, str):
            change = "—"
        else:
            change = _fmt(float(d.b) - float(d.a), "+" + fmt.lstrip("+") if fmt != "d" else "+d")
        tol = "—" if m is None or m.better == "info" else (f"{m.tol:g} Å⁻¹" if m.resolution else f"{m.tol:g}")
        mark = {"worse": "WORSE", "better": "better"}.get(d.verdict, d.verdict)
        body.append([d.case, d.metric, _fmt(d.a, fmt) if not isinstance(d.a, str) else d.a,
                     _fmt(d.b, fmt) if not isinstance(d.b, str) else d.b, change, mark, tol])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    fmt_row = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt_row.format(*head), fmt_row.format(*("-" * w for w in widths)),
                      *(fmt_row.format(*r) for r in body)])


# ----------------------------------------------------------------------------------- regression baselines


def golden_suite(golden: str | Path) -> Suite:
    """The suite of the regression baselines: ``GOLDEN/suite.toml``."""
    return load_suite(str(Path(golden) / "suite.toml"))


def baseline_rows(golden: str | Path, suite: Suite) -> dict[str, dict[str, Any]]:
    """``{case: headline row}`` of the golden scorecards ``GOLDEN/CASE.json`` (missing ones are absent)."""
    from tumblebench.validation.scorecard import load_scorecard

    out = {}
    for case in suite.cases:
        path = Path(golden) / f"{case.name}.json"
        if path.exists():
            card = load_scorecard(path)
            out[case.name] = {"case": case.name, **headline(card)}
    return out


def regressions(diffs: list[Diff]) -> list[Diff]:
    """The diffs that fail a regression check: a worse score, or a baseline case that no longer ran."""
    return [d for d in diffs if d.verdict in ("worse", "missing")]


def update_baselines(golden: str | Path, cards: dict[str, dict[str, Any]]) -> list[str]:
    """Write ``GOLDEN/CASE.json`` for every scorecard; return one line per changed or new figure."""
    golden = Path(golden)
    changes: list[str] = []
    for name, card in cards.items():
        path = golden / f"{name}.json"
        old = headline(json.loads(path.read_text())) if path.exists() else None
        new = headline(card)
        for m in METRICS:
            va, vb = (None if old is None else old.get(m.name)), new.get(m.name)
            if (old is None and vb is not None) or (old is not None and va != vb):
                changes.append(f"{name} {m.name}: {_fmt(va, m.fmt)} -> {_fmt(vb, m.fmt)}"
                               + ("" if old is None else f" ({judge(m, va, vb)})"))
        card = {k: v for k, v in card.items() if k != "timing_s"} | {"timing_s": {}}
        card["versions"] = {k: v for k, v in (card.get("versions") or {}).items() if k != "git_commit"}
        write_json(path, card)
    return changes
