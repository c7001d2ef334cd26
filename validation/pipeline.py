"""The end-to-end pipeline of a run: build → simulate → reconstruct → atoms → score.

Every stage writes its own sub-directory of the run (:class:`tumblebench.validation.scorecard.RunLayout`) in its
documented format, exactly as the stand-alone sub-commands do, so a user can re-run or replace any stage
and score the run again with ``tumblebench score RUN_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tumblebench.simulator import __version__
from tumblebench.simulator.config import check_seed
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import (
    atomic_file,
    atomic_output_dir,
    check_output_dir,
    new_partial_dir,
    promote_partial_dir,
    remove_stale_partials,
    write_json,
)
from tumblebench.validation.scorecard import RunLayout, score_details

#: The imaging modes of the series.
MODES = ("multislice", "phase-object", "projection")

#: The stages of a run, in order.
STAGES = ("build", "simulate", "reconstruct", "atoms", "score")

#: The replaceable algorithm stages (keys of :attr:`PipelineConfig.algorithms`).
ALGORITHM_STAGES = ("tracking", "pose", "refine", "atoms")


@dataclass(frozen=True)
class PipelineConfig:
    """What ``tumblebench demo`` runs.

    Attributes
    ----------
    preset
        Builder preset of the particle (:data:`tumblebench.simulator.builder.PRESETS`); ignored when
        ``structure`` is given.
    structure
        A structure file (``.pdb``, ``.xyz``, ``.extxyz``) to use as the particle instead of a preset, loaded as
        ``tumblebench build --from`` does (truth arrays and mobility model computed for its atoms).
    element
        With ``structure``: the element of every atom, replacing the file's element column.
    seed
        Seed of the particle, the reconstruction and (unless ``series_seed`` is set) the series.
    series_seed
        Seed of the series (default: ``seed``): the same particle imaged along another trajectory.
    n_frames
        Frames of the series (docs/design.md's default scenario: 2,000).
    mode
        Imaging mode: ``multislice``, ``phase-object`` or ``projection``.
    poses
        Pose mode of the reconstruction: ``abinitio`` (default), ``truth`` or ``truth+noise:DEG``.
    stop_after
        Last stage to run (one of :data:`STAGES`); ``score`` runs everything.
    series
        Overrides of :class:`tumblebench.simulator.series.SeriesConfig`, as its TOML tables (e.g.
        ``{"liquid": {"initial_thickness_A": 300.0}}``); ``n_frames`` and ``mode`` above take precedence.
    reconstruct
        Overrides of :class:`tumblebench.reconstruct.config.ReconstructConfig`, as its TOML tables; ``poses``
        and ``seed`` above take precedence.
    algorithms
        Algorithm of each replaceable stage (``tracking``, ``pose``, ``refine``, ``atoms``): a registered name
        (a built-in or an entry point of the group ``tumblebench.algorithms``) or an import path
        ``module:attr``. A stage not listed uses its built-in default.
    """

    preset: str = "default"
    seed: int = 0
    n_frames: int = 2000
    mode: str = "multislice"
    poses: str = "abinitio"
    stop_after: str = "score"
    structure: str | None = None
    element: str | None = None
    series_seed: int | None = None
    series: dict[str, Any] = field(default_factory=dict)
    reconstruct: dict[str, Any] = field(default_factory=dict)
    algorithms: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the field that is out of range."""
        from tumblebench.simulator.builder import PRESETS

        if self.structure is None and self.preset not in PRESETS:
            raise TumblebenchError(f"preset = {self.preset!r}: expected one of {', '.join(PRESETS)}")
        if isinstance(self.n_frames, bool) or not isinstance(self.n_frames, int):
            raise TumblebenchError(f"n_frames = {self.n_frames!r}: expected an integer")
        if self.mode not in MODES:
            raise TumblebenchError(f"mode = {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.n_frames < 50:
            raise TumblebenchError(f"n_frames = {self.n_frames}: a reconstruction needs at least 50 frames")
        if self.stop_after not in STAGES:
            raise TumblebenchError(f"stop_after = {self.stop_after!r} is not one of {', '.join(STAGES)}")
        check_seed(self.seed, "seed")
        if self.series_seed is not None:
            check_seed(self.series_seed, "series_seed")
        if self.element is not None and self.structure is None:
            raise TumblebenchError("element applies to a structure file only (a preset names its element)")
        for stage, spec in self.algorithms.items():
            if stage not in ALGORITHM_STAGES:
                raise TumblebenchError(f"algorithms.{stage}: not a replaceable stage; expected one of "
                                       f"{', '.join(ALGORITHM_STAGES)}")
            if not isinstance(spec, str) or not spec.strip():
                raise TumblebenchError(f"algorithms.{stage} = {spec!r}: expected a name or an import path module:attr")

    @property
    def particle_name(self) -> str:
        """The preset name, or the structure file's stem."""
        return self.preset if self.structure is None else Path(self.structure).stem


def build_particle(config: PipelineConfig) -> Any:
    """The particle of ``config``: its preset built with ``seed``, or its structure file loaded.

    Returns
    -------
    Nanocrystal
        The known-truth particle (:class:`tumblebench.simulator.nanocrystal.Nanocrystal`).
    """
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.nanocrystal import load_nanocrystal

    if config.structure is None:
        return build_preset(config.preset, seed=config.seed)
    return load_nanocrystal(config.structure, seed=config.seed, element=config.element)


def series_config(config: PipelineConfig) -> Any:
    """The :class:`~tumblebench.simulator.series.SeriesConfig` of ``config`` (overrides applied, validated)."""
    from tumblebench.simulator.config import from_dict
    from tumblebench.simulator.series import SeriesConfig, with_overrides

    base = from_dict(SeriesConfig, dict(config.series), where="series")
    return with_overrides(base, mode=config.mode, n_frames=config.n_frames)


def effective_series_seed(config: PipelineConfig) -> int:
    """Seed of the series of ``config``: ``series_seed`` when set, else ``seed``."""
    return config.seed if config.series_seed is None else config.series_seed


def reconstruct_config(config: PipelineConfig) -> Any:
    """The :class:`~tumblebench.reconstruct.config.ReconstructConfig` of ``config`` (overrides applied)."""
    from tumblebench.reconstruct.config import ReconstructConfig
    from tumblebench.simulator.config import from_dict

    base = from_dict(ReconstructConfig, dict(config.reconstruct), where="reconstruct")
    out = replace(base, poses=config.poses, seed=config.seed)
    out.validate()
    return out


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_spec(config: PipelineConfig) -> dict[str, Any]:
    """Everything the particle, the series and their truth depend on (the data-cache key's content).

    The particle (preset spec or the structure file's SHA-256, element and seed), the fully resolved series
    configuration and its seed, and the tumblebench version (the simulator's version).
    """
    from tumblebench.simulator.builder import preset_spec
    from tumblebench.simulator.config import to_dict

    if config.structure is None:
        particle: dict[str, Any] = {"preset": config.preset, "spec": to_dict(preset_spec(config.preset))}
    else:
        path = Path(config.structure)
        if not path.is_file():
            raise TumblebenchError(f"structure = {config.structure!r}: no such structure file")
        particle = {"structure": path.name, "sha256": file_digest(path), "element": config.element}
    particle["seed"] = config.seed
    return {"particle": particle, "series": to_dict(series_config(config)),
            "series_seed": effective_series_seed(config), "tumblebench": __version__}


def data_key(config: PipelineConfig) -> str:
    """The data-cache key of ``config``: a SHA-256 prefix of :func:`data_spec` (canonical JSON)."""
    text = json.dumps(data_spec(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _build(config: PipelineConfig, particle_dir: Path, shown: Path, say: Callable[[str], None]) -> tuple[Any, float]:
    """Build the particle of ``config`` into ``particle_dir`` (reported as ``shown``); return it and the seconds."""
    from tumblebench.simulator.nanocrystal import write_truth

    t = time.perf_counter()
    nc = build_particle(config)
    with atomic_output_dir(particle_dir) as tmp:
        write_truth(nc, tmp)
    seconds = time.perf_counter() - t
    say(f"[build] {config.particle_name}: {nc.n_atoms} atoms, a = {nc.lattice_constant:.4f} Å "
        f"({seconds:.1f} s) -> {shown}")
    return nc, seconds


def _generate_data(config: PipelineConfig, dest: Path, progress: bool, say: Callable[[str], None]
                   ) -> dict[str, float]:
    """Build and simulate into ``dest`` (``particle/``, ``series/``); return the stage timings (s)."""
    from tumblebench.simulator.series import simulate_series

    timing: dict[str, float] = {}
    run = RunLayout(dest)
    nc, timing["build"] = _build(config, run.particle, run.particle, say)
    t = time.perf_counter()
    simulate_series(nc, series_config(config), effective_series_seed(config), run.series, progress=progress,
                    inputs={"structure": "particle/truth.extxyz"})
    timing["simulate"] = time.perf_counter() - t
    say(f"[simulate] {config.n_frames} {config.mode} frames ({timing['simulate']:.1f} s) -> "
        f"{run.series / 'frames.mrcs'}; montage: {run.series / 'montage.png'}")
    return timing


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into a new ``dst`` (copy where the file system cannot link)."""
    dst.mkdir()
    for item in sorted(src.iterdir()):
        if item.is_dir():
            _link_tree(item, dst / item.name)
            continue
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)


def cached_data(config: PipelineConfig, cache: str | Path, progress: bool = True,
                log: Callable[[str], None] | None = None) -> tuple[Path, bool, dict[str, float]]:
    """The particle and series of ``config`` from the data cache, generated there on a miss.

    An entry ``cache/KEY`` (:func:`data_key`) holds ``particle/``, ``series/`` and ``data.json`` (the
    :func:`data_spec`); it appears atomically when complete, so concurrent runs and interrupted runs never
    see half an entry, and every later run with the same data spec reuses its bytes.

    Parameters
    ----------
    config
        The run whose data is wanted.
    cache
        Cache directory (created if missing).
    progress, log
        As in :func:`run_pipeline`.

    Returns
    -------
    tuple
        The entry directory, whether it was already there (a hit), and the build/simulate timings (s) measured
        when the entry was generated (recorded in its ``data.json``; empty for an entry that predates them).
    """
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    key = data_key(config)
    entry = cache / key
    if (entry / "data.json").is_file():
        say(f"[data] cached {config.particle_name}, {config.n_frames} {config.mode} frames: {entry}")
        return entry, True, dict(json.loads((entry / "data.json").read_text()).get("timing_s", {}))
    remove_stale_partials(cache, key)  # entries that killed runs left half-made
    tmp = cache / f".{key}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        timing = _generate_data(config, tmp, progress, say)
        write_json(tmp / "data.json", {"key": key, **data_spec(config), "timing_s": timing})
        try:
            tmp.rename(entry)
        except OSError:  # another run filled the entry meanwhile: keep theirs
            if not (entry / "data.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return entry, False, timing


#: ``demo --quick``: every stage at small size (a few minutes on 2 cores).
QUICK = PipelineConfig(n_frames=400)


def run_pipeline(out: str | Path, config: PipelineConfig, overwrite: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None, data: str | Path | None = None) -> dict[str, Any]:
    """Run the pipeline into run directory ``out`` and return the scorecard.

    Every option is checked before any work. The run is written into a hidden directory beside ``out``
    that becomes ``out`` when the last stage has finished; an existing ``out`` (``overwrite``) is replaced
    only then, so a failure, Ctrl-C or SIGTERM never loses a finished run. When a late stage fails (a
    :class:`TumblebenchError`, or an error raised by a user's algorithm) and there was no earlier run at
    ``out``, the finished stages (each complete) are moved to ``out``, where ``tumblebench score`` can still
    score them; on an interrupt nothing is kept.

    Parameters
    ----------
    out
        Run directory; it receives ``particle/``, ``series/``, ``recon/``, ``atoms/``, ``timing.json``,
        ``scorecard.json`` and ``report.html``.
    config
        What to run.
    overwrite
        Replace an existing ``out``.
    progress
        Progress bars on stderr.
    log
        Where to report each stage (default: stderr).
    data
        A data cache (:func:`cached_data`): the particle and series are taken from it (hard links) or generated
        into it once, so that every algorithm run on the same case reads the same bytes.

    Returns
    -------
    dict
        The scorecard of the run (:func:`tumblebench.validation.scorecard.score_run`).
    """
    from tumblebench.analysis.config import AtomsConfig
    from tumblebench.validation.algorithms import Configs, check_pose_mode, resolve_all

    # every option, config and algorithm is checked before any work starts (and before an old run is touched)
    final = check_output_dir(out, overwrite)
    config.validate()
    rcfg = reconstruct_config(config)
    scfg = series_config(config)
    acfg = AtomsConfig()
    for what, cfg in (("series", scfg), ("atoms", acfg)):
        try:
            cfg.validate()
        except TumblebenchError as exc:
            raise TumblebenchError(f"{what} options: {exc}") from None
    if config.structure is not None and not Path(config.structure).is_file():
        raise TumblebenchError(f"structure = {config.structure!r}: no such structure file")
    check_pose_mode(config.poses, config.algorithms, where="algorithms:")
    algorithms = resolve_all(config.algorithms, Configs(reconstruct=rcfg, atoms=acfg), where="algorithms:")
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    work = new_partial_dir(final)
    try:
        card, details = _run_stages(work, final, config, rcfg, scfg, acfg, algorithms, progress, say, data)
    except Exception:  # Ctrl-C and SIGTERM are BaseExceptions: they keep nothing (below)
        if final.exists() or final.is_symlink():
            shutil.rmtree(work, ignore_errors=True)  # the earlier run stays as it was
        else:
            promote_partial_dir(work, final)  # the finished stages, each complete, for 'tumblebench score'
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    promote_partial_dir(work, final)
    if details is not None:  # the report names the run: written where the run now is
        from tumblebench.validation.report import write_report

        t = time.perf_counter()
        report = write_report(final, details)
        say(f"[report] {time.perf_counter() - t:.1f} s -> {report}")
    return card


def _run_stages(work: Path, final: Path, config: PipelineConfig, rcfg: Any, scfg: Any, acfg: Any,
                algorithms: dict[str, Any], progress: bool, say: Callable[[str], None],
                data: str | Path | None) -> tuple[dict[str, Any], Any]:
    """The stages of :func:`run_pipeline`, written into ``work``; paths shown and recorded are those under
    ``final`` (where the run will be). Returns the scorecard and the score details (None if not scored)."""
    from tumblebench.analysis.io import write_atom_model
    from tumblebench.analysis.model import atom_statistics, build_atom_model
    from tumblebench.analysis.reference import atom_reference
    from tumblebench.reconstruct.pipeline import reconstruct_series
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.series import simulate_series
    from tumblebench.stages import AtomsInput, StageOutputError, run_stage

    order = STAGES[: STAGES.index(config.stop_after) + 1]
    timing: dict[str, float] = {}
    run = RunLayout(work)
    shown = RunLayout(final)
    if data is not None and "simulate" in order:
        entry, hit, timing = cached_data(config, data, progress=progress, log=say)
        _link_tree(entry / "particle", run.particle)
        _link_tree(entry / "series", run.series)
        # on a hit the build/simulate timings are those of the entry's generation: a case's time is what it takes
        # from scratch, whether or not its data was cached
        write_json(work / "data.json", {"cache": str(entry), "hit": hit, "timing_s": timing})
    else:
        nc, timing["build"] = _build(config, run.particle, shown.particle, say)
        write_json(work / "timing.json", timing)
        if "simulate" in order:
            t = time.perf_counter()
            simulate_series(nc, scfg, effective_series_seed(config), run.series, progress=progress,
                            inputs={"structure": str(shown.particle / "truth.extxyz")})
            timing["simulate"] = time.perf_counter() - t
            say(f"[simulate] {config.n_frames} {config.mode} frames ({timing['simulate']:.1f} s) -> "
                f"{shown.series / 'frames.mrcs'}; montage: {shown.series / 'montage.png'}")
    write_json(work / "timing.json", timing)
    if "reconstruct" in order:
        t = time.perf_counter()
        summary = reconstruct_series(run.series / "frames.mrcs", run.series / "frames.star", run.recon,
                                     rcfg, progress=progress, reference_model=atom_reference,
                                     inputs={"frames": str(shown.series / "frames.mrcs"),
                                             "star": str(shown.series / "frames.star")},
                                     algorithms={k: v for k, v in algorithms.items() if k != "atoms"})
        timing["reconstruct"] = time.perf_counter() - t
        say(f"[reconstruct] poses {config.poses}: half-map FSC 0.143, first crossing, at "
            f"{summary['fsc_half_0.143_A']:.2f} Å "
            f"({timing['reconstruct']:.1f} s) -> {shown.recon / 'map.mrc'}")
        write_json(work / "timing.json", timing)
    if "atoms" in order:
        t = time.perf_counter()
        vol, sampling = read_volume(run.recon / "map.mrc")
        where = str(shown.recon / "map.mrc")
        try:
            if "atoms" in algorithms:
                detection = run_stage("atoms", algorithms["atoms"], AtomsInput(vol, sampling, acfg.element, where))
                model = atom_statistics(vol, sampling, detection, acfg, where=where)
            else:
                model = build_atom_model(vol, sampling, acfg, where=where)
        except StageOutputError:
            raise
        except TumblebenchError as exc:
            # a map that resolves no atoms is a result of the reconstruction being benchmarked, not bad
            # input: the run goes on to the scorecard, whose atom figures stay null
            model = None
            say(f"[atoms] no atom model: {exc}")
        if model is not None:
            write_atom_model(model, run.atoms, inputs={"map": where})
            timing["atoms"] = time.perf_counter() - t
            say(f"[atoms] {model.n_atoms} atoms, a = {model.lattice.lattice_constant:.4f} Å "
                f"({timing['atoms']:.1f} s) -> {shown.atoms}")
            write_json(work / "timing.json", timing)
    card: dict[str, Any] = {}
    details = None
    if "score" in order:
        t = time.perf_counter()
        details = score_details(work)
        card = details.card
        timing["score"] = time.perf_counter() - t
        card["timing_s"]["score"] = timing["score"]
        write_json(work / "timing.json", timing)
        with atomic_file(work / "scorecard.json") as tmp:
            write_json(tmp, card)
    return card, details


def format_scorecard(card: dict[str, Any]) -> str:
    """A short human-readable table of a scorecard."""

    def f(x: Any, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    def pct(x: Any) -> str:
        return "—" if x is None else f"{100 * x:.0f} %"

    s, se, p, m, a = (card.get(k) or {} for k in ("structure", "series", "poses", "map", "atoms"))
    sym = "—" if s.get("symmetry_group") is None else f"{s['symmetry_group']}, order {s['symmetry_order']}"
    twin = " + projection twin" if p.get("reduced_projection_twin") else ""
    if m.get("ctf_gap_low_res_A") is None:
        gap_note, band = "no CTF transfer gap", ""
    else:
        where = "inside" if m.get("fsc_half_0.143_first_in_gap") else "outside"
        gap_note = (f"{where} the CTF transfer gap {f(m.get('ctf_gap_low_res_A'), '.1f')}–"
                    f"{f(m.get('ctf_gap_high_res_A'), '.1f')} Å")
        band = f"; within the transferred band {f(m.get('fsc_half_0.143_band_A'), '.2f')} Å"
    lines = [
        f"particle     {f(s.get('n_atoms'), 'd')} atoms, diameter {f(s.get('diameter_A'), '.1f')} Å, "
        f"a = {f(s.get('lattice_constant_A'), '.4f')} Å, median CN {f(s.get('median_cn'), '.1f')}, "
        f"proper symmetry {sym}",
        f"series       {f(se.get('n_frames'), 'd')} frames, {se.get('mode') or '—'}, "
        f"{f(se.get('dose_per_frame_e_per_A2'), '.1f')} e/Å² per frame, {f(se.get('pixel_size_A'), '.3f')} Å/px",
        f"poses        raw (best global rotation and hand): median {f(p.get('median_error_deg'), '.2f')}°, "
        f"p90 {f(p.get('p90_error_deg'), '.2f')}°, within 5° {pct(p.get('within_5deg_fraction'))}, "
        f"within 10° {pct(p.get('within_10deg_fraction'))}",
        f"             modulo the particle's symmetry ({sym}{twin}): median "
        f"{f(p.get('reduced_median_error_deg'), '.2f')}°, p90 {f(p.get('reduced_p90_error_deg'), '.2f')}°, "
        f"within 5° {pct(p.get('reduced_within_5deg_fraction'))}, "
        f"within 10° {pct(p.get('reduced_within_10deg_fraction'))}",
        f"map          FSC(truth) 0.5 at {f(m.get('fsc_truth_0.5_A'), '.2f')} Å, 0.143 at "
        f"{f(m.get('fsc_truth_0.143_A'), '.2f')} Å (first crossings)",
        f"             half maps 0.143: first crossing {f(m.get('fsc_half_0.143_A'), '.2f')} Å ({gap_note}){band}",
        f"atoms        {f(a.get('n_detected'), 'd')} found / {f(a.get('n_true'), 'd')} true: recall "
        f"{f(a.get('recall'), '.3f')}, precision {f(a.get('precision'), '.3f')}, RMSD {f(a.get('rmsd_pm'), '.1f')} pm, "
        f"CN exact {f(a.get('cn_exact_fraction'), '.2f')}",
        f"             lattice error {f(a.get('lattice_constant_error_A'), '.4f')} Å, U_iso Spearman "
        f"{f(a.get('u_iso_spearman'), '.2f')}, penetration depth {f(a.get('penetration_depth_est_A'), '.2f')} Å "
        f"(truth {f(a.get('penetration_depth_true_A'), '.2f')} Å)",
        "time         " + ", ".join(f"{k} {v:.1f} s" for k, v in (card.get("timing_s") or {}).items()
                                    if v is not None),
    ]
    return "\n".join(lines)
