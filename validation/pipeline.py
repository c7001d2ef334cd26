"""The end-to-end pipeline of a run: build → simulate → reconstruct → atoms → score.

Every stage writes its own sub-directory of the run (:class:`tumblebench.validation.scorecard.RunLayout`) in its
documented format, exactly as the stand-alone sub-commands do, so a user can re-run or replace any stage
and score the run again with ``tumblebench score RUN_DIR``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import atomic_file, atomic_output_dir, check_output_dir, write_json
from tumblebench.validation.scorecard import RunLayout, score_run

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
        Builder preset of the particle (:data:`tumblebench.simulator.builder.PRESETS`).
    seed
        Seed of the particle, the series and the reconstruction.
    n_frames
        Frames of the series (DESIGN.md's default scenario: 2,000).
    mode
        Imaging mode: ``multislice``, ``phase-object`` or ``projection``.
    poses
        Pose mode of the reconstruction: ``abinitio`` (default), ``truth`` or ``truth+noise:DEG``.
    stop_after
        Last stage to run (one of :data:`STAGES`); ``score`` runs everything.
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
    algorithms: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the field that is out of range."""
        if self.n_frames < 50:
            raise TumblebenchError(f"n_frames = {self.n_frames}: a reconstruction needs at least 50 frames")
        if self.stop_after not in STAGES:
            raise TumblebenchError(f"stop_after = {self.stop_after!r} is not one of {', '.join(STAGES)}")
        for stage, spec in self.algorithms.items():
            if stage not in ALGORITHM_STAGES:
                raise TumblebenchError(f"algorithms.{stage}: not a replaceable stage; expected one of "
                                       f"{', '.join(ALGORITHM_STAGES)}")
            if not isinstance(spec, str) or not spec.strip():
                raise TumblebenchError(f"algorithms.{stage} = {spec!r}: expected a name or an import path module:attr")


#: ``demo --quick``: every stage at small size (a few minutes on 2 cores).
QUICK = PipelineConfig(n_frames=400)


def run_pipeline(out: str | Path, config: PipelineConfig, overwrite: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the pipeline into run directory ``out`` and return the scorecard.

    Each stage's sub-directory is written atomically (complete or absent), so a failure in a late stage
    keeps the finished earlier stages, which ``tumblebench score`` can still score.

    Parameters
    ----------
    out
        Run directory; it receives ``particle/``, ``series/``, ``recon/``, ``atoms/``, ``timing.json`` and
        ``scorecard.json``.
    config
        What to run.
    overwrite
        Replace an existing ``out``.
    progress
        Progress bars on stderr.
    log
        Where to report each stage (default: stderr).

    Returns
    -------
    dict
        The scorecard of the run (:func:`tumblebench.validation.scorecard.score_run`).
    """
    from tumblebench.analysis.config import AtomsConfig
    from tumblebench.analysis.io import write_atom_model
    from tumblebench.analysis.model import atom_statistics, build_atom_model
    from tumblebench.analysis.reference import atom_reference
    from tumblebench.reconstruct.config import ReconstructConfig
    from tumblebench.reconstruct.pipeline import reconstruct_series
    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.nanocrystal import write_truth
    from tumblebench.simulator.series import SeriesConfig, simulate_series, with_overrides
    from tumblebench.stages import AtomsInput, StageOutputError, run_stage
    from tumblebench.validation.algorithms import Configs, check_pose_mode, resolve_all

    config.validate()
    rcfg = replace(ReconstructConfig(), poses=config.poses, seed=config.seed)
    acfg = AtomsConfig()
    # every algorithm is found and checked before any work starts
    check_pose_mode(config.poses, config.algorithms, where="algorithms:")
    algorithms = resolve_all(config.algorithms, Configs(reconstruct=rcfg, atoms=acfg), where="algorithms:")
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    order = STAGES[: STAGES.index(config.stop_after) + 1]
    timing: dict[str, float] = {}
    final = check_output_dir(out, overwrite)
    if final.exists():
        shutil.rmtree(final)
    final.mkdir()
    run = RunLayout(final)
    t = time.perf_counter()
    nc = build_preset(config.preset, seed=config.seed)
    with atomic_output_dir(run.particle) as tmp:
        write_truth(nc, tmp)
    timing["build"] = time.perf_counter() - t
    say(f"[build] {config.preset}: {nc.n_atoms} atoms, a = {nc.lattice_constant:.4f} Å "
        f"({timing['build']:.1f} s) -> {run.particle}")
    write_json(final / "timing.json", timing)
    if "simulate" in order:
        t = time.perf_counter()
        scfg = with_overrides(SeriesConfig(), mode=config.mode, n_frames=config.n_frames)
        simulate_series(nc, scfg, config.seed, run.series, progress=progress,
                        inputs={"structure": str(run.particle / "truth.extxyz")})
        timing["simulate"] = time.perf_counter() - t
        say(f"[simulate] {config.n_frames} {config.mode} frames ({timing['simulate']:.1f} s) -> "
            f"{run.series / 'frames.mrcs'}; montage: {run.series / 'montage.png'}")
        write_json(final / "timing.json", timing)
    if "reconstruct" in order:
        t = time.perf_counter()
        summary = reconstruct_series(run.series / "frames.mrcs", run.series / "frames.star", run.recon,
                                     rcfg, progress=progress, reference_model=atom_reference,
                                     algorithms={k: v for k, v in algorithms.items() if k != "atoms"})
        timing["reconstruct"] = time.perf_counter() - t
        say(f"[reconstruct] poses {config.poses}: half-map FSC 0.143, first crossing, at "
            f"{summary['fsc_half_0.143_A']:.2f} Å "
            f"({timing['reconstruct']:.1f} s) -> {run.recon / 'map.mrc'}")
        write_json(final / "timing.json", timing)
    if "atoms" in order:
        t = time.perf_counter()
        vol, vs = read_volume(run.recon / "map.mrc")
        try:
            if "atoms" in algorithms:
                detection = run_stage("atoms", algorithms["atoms"], AtomsInput(vol, vs, acfg.element,
                                                                                str(run.recon / "map.mrc")))
                model = atom_statistics(vol, vs, detection, acfg, where=str(run.recon / "map.mrc"))
            else:
                model = build_atom_model(vol, vs, acfg, where=str(run.recon / "map.mrc"))
        except StageOutputError:
            raise
        except TumblebenchError as exc:
            # a map that resolves no atoms is a result of the reconstruction being benchmarked, not bad
            # input: the run goes on to the scorecard, whose atom figures stay null
            model = None
            say(f"[atoms] no atom model: {exc}")
        if model is not None:
            write_atom_model(model, run.atoms, inputs={"map": str(run.recon / "map.mrc")})
            timing["atoms"] = time.perf_counter() - t
            say(f"[atoms] {model.n_atoms} atoms, a = {model.lattice.lattice_constant:.4f} Å "
                f"({timing['atoms']:.1f} s) -> {run.atoms}")
            write_json(final / "timing.json", timing)
    card: dict[str, Any] = {}
    if "score" in order:
        t = time.perf_counter()
        card = score_run(final)
        timing["score"] = time.perf_counter() - t
        card["timing_s"]["score"] = timing["score"]
        write_json(final / "timing.json", timing)
        with atomic_file(final / "scorecard.json") as tmp:
            write_json(tmp, card)
    return card


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
