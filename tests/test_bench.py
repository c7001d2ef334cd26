"""Benchmark suites, the data cache, ``bench compare``, the regression baselines and ``study table1``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.bench import (
    METRICS,
    _stage_lines,
    baseline_rows,
    compare_results,
    compare_rows,
    diff_table,
    golden_suite,
    headline,
    judge,
    load_results,
    load_suite,
    parse_suite,
    regressions,
    run_suite,
    suite_names,
    update_baselines,
    with_algorithms,
)
from tumblebench.validation.cli import main
from tumblebench.validation.pipeline import PipelineConfig, data_key, run_pipeline
from tumblebench.validation.study import table1_row

GOLDEN = Path(__file__).parent / "golden"
_BY_NAME = {m.name: m for m in METRICS}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- suites


def test_builtin_suites_load_and_span_the_issue() -> None:
    assert {"quick", "standard", "table1"} <= set(suite_names())
    quick, standard, table1 = (load_suite(n) for n in ("quick", "standard", "table1"))
    assert len(quick.cases) == 4 and quick.version >= 1
    assert len(standard.cases) >= 12
    cfg = {c.name: c.config for c in standard.cases}
    assert {c.preset for c in cfg.values()} >= {"default", "cuboctahedron", "decahedron", "icosahedron", "wulff",
                                                 "twinned"}
    assert any(c.structure and c.structure.endswith("stage1_docked_ATMS.pdb") for c in cfg.values())
    assert any(c.mode == "projection" for c in cfg.values())
    assert any(c.n_frames == 500 for c in cfg.values())
    assert len({c.series_seed for c in cfg.values() if c.preset == "default"}) >= 3
    assert any(case.halves and case.config.series["dissolution"]["enabled"] for case in standard.cases)
    # every case of a suite is different data (the cache must not merge two cases)
    for suite in (quick, standard, table1):
        keys = [data_key(c.config) for c in suite.cases]
        assert len(set(keys)) == len(keys), suite.name
    assert [c.config.preset for c in table1.cases] == [f"table1-np{k}" for k in range(1, 9)]



def test_robustness_suite_is_eight_seeds_of_five_particles_at_the_default_scenario() -> None:
    from tumblebench.validation.pipeline import PipelineConfig

    suite = load_suite("robustness")
    base = PipelineConfig()
    particles = {}
    for case in suite.cases:
        c = case.config
        assert (c.n_frames, c.mode, c.poses, c.series_seed) == (base.n_frames, base.mode, "abinitio", None)
        assert not c.series and not c.reconstruct, case.name  # default settings: no per-case tuning
        particles.setdefault(c.structure or c.preset, set()).add(c.seed)
    assert all(seeds == set(range(8)) for seeds in particles.values())
    assert len(particles) == 5 and {"default", "cuboctahedron", "decahedron", "icosahedron"} <= set(particles)
    assert len({data_key(c.config) for c in suite.cases}) == 40

def test_dose_scale_sets_the_dose_of_the_series() -> None:
    from tumblebench.simulator.series import DEFAULT_DOSE_PER_FRAME
    from tumblebench.validation.pipeline import series_config

    cfg = {c.name: c.config for c in load_suite("standard").cases}
    assert series_config(cfg["half-dose"]).acquisition.dose_per_frame == pytest.approx(DEFAULT_DOSE_PER_FRAME / 2)
    assert series_config(cfg["4x-dose"]).acquisition.dose_per_frame == pytest.approx(DEFAULT_DOSE_PER_FRAME * 4)
    assert series_config(cfg["thick-liquid"]).liquid.initial_thickness_A == 300.0


@pytest.mark.parametrize(("case", "match"), [
    ({"name": "a", "n_frame": 100}, "case a: unknown field"),
    ({"name": "a", "mode": 3}, "case a.mode"),
    ({"name": "a", "dose_scale": -1}, "case a: dose_scale"),
    ({"name": "a b"}, "name"),
    ({"name": "a", "series": {"liquid": {"thickness": 1.0}}}, "liquid: unknown field"),
    ({"name": "a", "reconstruct": {"box": 96}}, "case a: reconstruct.box = 96 differs from series.acquisition"),
])
def test_bad_case_names_the_field(case: dict, match: str) -> None:
    with pytest.raises(TumblebenchError, match=match):
        parse_suite({"name": "s", "version": 1, "case": [case]}, "s.toml")


def test_unknown_suite_lists_the_builtin_ones() -> None:
    with pytest.raises(TumblebenchError, match=r"built-in suites: .*quick"):
        load_suite("nonesuch")


def test_algorithms_apply_where_their_stage_runs(tmp_path: Path) -> None:
    chosen = {"pose": "sphere", "refine": "projection-matching", "atoms": "threshold-scan"}
    cfg = {c.name: with_algorithms(c.config, chosen) for c in load_suite("quick").cases}
    assert cfg["cubo-abinitio"].algorithms == chosen
    assert cfg["cubo-truth"].algorithms == {"atoms": "threshold-scan"}  # true poses: no pose or refine stage
    assert cfg["real-stage1"].algorithms == {"refine": "projection-matching", "atoms": "threshold-scan"}
    # an unknown algorithm stops the suite before any case runs
    with pytest.raises(TumblebenchError, match="--algorithm pose=nonesuch"):
        run_suite(load_suite("quick"), tmp_path / "out", algorithms={"pose": "nonesuch"})
    assert not (tmp_path / "out").exists()


def test_stage_lines_name_the_case_only_when_shown(capsys: pytest.CaptureFixture[str]) -> None:
    _stage_lines("cubo", True)("[atoms] 561 atoms")
    _stage_lines("cubo", False)("[atoms] 561 atoms")
    captured = capsys.readouterr()
    assert captured.err == "  cubo [atoms] 561 atoms\n" and captured.out == ""


@pytest.mark.slow
def test_resume_keeps_finished_cases_and_runs_the_rest(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    suite = parse_suite({"name": "tiny", "version": 1,
                         "defaults": {"n_frames": 50, "mode": "projection", "poses": "truth"},
                         "case": [{"name": "a", "preset": "cuboctahedron"},
                                  {"name": "b", "preset": "cuboctahedron", "series_seed": 1}]}, "tiny")
    out = tmp_path / "res"
    run_suite(suite, out, only=["a"], progress=False)  # as if stopped after the first case
    card_a = _sha(out / "cases" / "a" / "scorecard.json")
    with pytest.raises(TumblebenchError, match="--resume"):
        run_suite(suite, out, progress=False)  # results there: neither --overwrite nor --resume
    with pytest.raises(TumblebenchError, match="same suite, version and algorithms"):
        run_suite(dataclasses.replace(suite, version=2), out, resume=True, progress=False)
    capfd.readouterr()
    rows = run_suite(suite, out, resume=True)  # not a terminal: a line per stage of the case that runs
    err = capfd.readouterr().err
    assert "  b [reconstruct]" in err and "  a [" not in err
    assert [r["case"] for r in rows] == ["a", "b"]
    assert _sha(out / "cases" / "a" / "scorecard.json") == card_a  # not run again
    res = load_results(out)
    assert res["complete"] and [r["case"] for r in res["cases"]] == ["a", "b"]
    assert (out / "cases" / "b" / "scorecard.json").is_file()


# --------------------------------------------------------------------------------------------- data cache


def test_data_key_depends_on_the_data_not_on_the_reconstruction() -> None:
    base = PipelineConfig(preset="cuboctahedron", n_frames=60, mode="projection")
    assert data_key(base) == data_key(dataclasses.replace(base, poses="truth", reconstruct={"box": 96}))
    for change in ({"series_seed": 1}, {"n_frames": 61}, {"mode": "multislice"}, {"preset": "icosahedron"},
                   {"series": {"liquid": {"initial_thickness_A": 200.0}}}):
        assert data_key(dataclasses.replace(base, **change)) != data_key(base), change


def test_cached_case_reuses_the_bytes(tmp_path: Path) -> None:
    cfg = PipelineConfig(preset="cuboctahedron", n_frames=50, mode="projection", stop_after="simulate")
    cache = tmp_path / "cache"
    logs: list[list[str]] = [[], []]
    for i in (0, 1):
        run_pipeline(tmp_path / f"run{i}", cfg, progress=False, log=logs[i].append, data=cache)
    frames = [tmp_path / f"run{i}" / "series" / "frames.mrcs" for i in (0, 1)]
    assert _sha(frames[0]) == _sha(frames[1])
    assert _sha(frames[0].with_name("truth_map.mrc")) == _sha(frames[1].with_name("truth_map.mrc"))
    assert any(m.startswith("[simulate]") for m in logs[0])
    assert not any(m.startswith("[simulate]") for m in logs[1])  # the second run skips the simulation
    runs = [json.loads((tmp_path / f"run{i}" / "data.json").read_text()) for i in (0, 1)]
    assert [r["hit"] for r in runs] == [False, True]
    # a hit carries the build/simulate timings of the entry's generation: a case's time is that of a fresh run
    assert set(runs[0]["timing_s"]) == {"build", "simulate"} and runs[0]["timing_s"]["simulate"] > 0
    assert runs[1]["timing_s"] == runs[0]["timing_s"]
    timings = [json.loads((tmp_path / f"run{i}" / "timing.json").read_text()) for i in (0, 1)]
    assert timings[1] == timings[0] == runs[0]["timing_s"]
    assert [p.name for p in cache.iterdir()] == [data_key(cfg)]  # one complete entry, no partial left


def test_half_truth_follows_the_atoms_that_leave() -> None:
    from tumblebench.validation.bench import half_truth

    n = 100  # halves: frames 0-49 and 50-99
    gone = np.array([n, 10, 30, 60, 80, 0])
    first, second = half_truth(gone, n)
    assert first.tolist() == [True, False, True, True, True, False]  # 30: present 30 of 50 frames
    assert second.tolist() == [True, False, False, False, True, False]  # 80: present 30 of 50 frames
    assert not np.any(second & ~first)  # an atom that left does not come back


# --------------------------------------------------------------------------------------------- compare


def test_judge_knows_which_way_is_better() -> None:
    m = _BY_NAME
    assert judge(m["recall"], 0.90, 0.95) == "better"
    assert judge(m["recall"], 0.90, 0.85) == "worse"
    assert judge(m["recall"], 0.90, 0.903) == "same"  # within 0.005
    assert judge(m["rmsd_pm"], 10.0, 12.0) == "worse"
    assert judge(m["pose_median_deg"], 2.0, 1.0) == "better"
    # resolution: compared as spatial frequency; one shell (0.025 Å⁻¹) at 1 Å is ~2.5 %
    assert judge(m["fsc_truth_0.5_A"], 1.00, 1.02) == "same"
    assert judge(m["fsc_truth_0.5_A"], 1.00, 1.05) == "worse"
    assert judge(m["fsc_truth_0.5_A"], 7.0, 1.1) == "better"
    assert judge(m["recall"], 0.9, None) == "worse" and judge(m["recall"], None, 0.9) == "better"
    assert judge(m["n_true"], 100, 50) == "info"


def test_compare_rows_and_tables() -> None:
    a = {"x": {"recall": 0.9, "rmsd_pm": 10.0}, "gone": {"recall": 0.5}}
    b = {"x": {"recall": 0.8, "rmsd_pm": 10.2}, "new": {"recall": 0.5}}
    diffs = compare_rows(a, b)
    verdict = {(d.case, d.metric): d.verdict for d in diffs}
    assert verdict[("x", "recall")] == "worse" and verdict[("x", "rmsd_pm")] == "same"
    assert verdict[("gone", "(case)")] == "missing" and verdict[("new", "(case)")] == "new"
    assert {(d.case, d.metric) for d in regressions(diffs)} == {("x", "recall"), ("gone", "(case)")}
    text, md = diff_table(diffs), diff_table(diffs, markdown=True)
    assert "WORSE" in text and md.startswith("| case | metric |") and md.count("\n") == len(diffs) + 1


# ----------------------------------------------------------------------------------- regression baselines


def _golden_cards() -> dict[str, dict]:
    suite = golden_suite(GOLDEN)
    return {c.name: json.loads((GOLDEN / f"{c.name}.json").read_text()) for c in suite.cases}


def test_golden_baselines_exist_and_are_complete() -> None:
    suite = golden_suite(GOLDEN)
    assert len(suite.cases) >= 3
    rows = baseline_rows(GOLDEN, suite)
    assert set(rows) == {c.name for c in suite.cases}
    for name, row in rows.items():
        for metric in ("recall", "precision", "rmsd_pm", "fsc_truth_0.5_A", "pose_median_deg"):
            assert row[metric] is not None, (name, metric)
    for m in METRICS:
        assert m.better in ("lower", "higher", "info")
        assert m.better == "info" or m.reason, m.name  # every tolerance says why


@pytest.mark.parametrize(("metric", "key", "worse", "better"), [
    ("recall", ("atoms", "recall"), lambda x: x - 0.02, lambda x: x + 0.02),
    ("precision", ("atoms", "precision"), lambda x: x - 0.02, lambda x: x + 0.005),
    ("rmsd_pm", ("atoms", "rmsd_pm"), lambda x: x + 2.0, lambda x: x - 2.0),
    ("pose_median_deg", ("poses", "median_error_deg"), lambda x: x + 0.5, lambda x: x),
    # resolution is judged in spatial frequency: 0.03 Å⁻¹ is more than the one-shell tolerance (0.025 Å⁻¹)
    ("fsc_truth_0.5_A", ("map", "fsc_truth_0.5_A"), lambda x: 1 / (1 / x - 0.03), lambda x: 1 / (1 / x + 0.03)),
])
def test_regression_check_catches_a_worsened_score(metric: str, key: tuple[str, str], worse, better) -> None:
    cards = _golden_cards()
    base = {n: {"case": n, **headline(c)} for n, c in cards.items()}
    for name, card in cards.items():
        card = json.loads(json.dumps(card))
        value = card[key[0]][key[1]]
        card[key[0]][key[1]] = worse(value)
        now = base | {name: {"case": name, **headline(card)}}
        assert [(d.case, d.metric) for d in regressions(compare_rows(base, now))] == [(name, metric)]
        card[key[0]][key[1]] = better(value)  # an improvement is not a regression
        now[name] = {"case": name, **headline(card)}
        assert regressions(compare_rows(base, now)) == []
    assert not regressions(compare_rows(base, base))


def test_update_baselines_says_what_changed(tmp_path: Path) -> None:
    cards = _golden_cards()
    name = next(iter(cards))
    shutil.copy(GOLDEN / f"{name}.json", tmp_path / f"{name}.json")
    card = json.loads(json.dumps(cards[name]))
    card["atoms"]["recall"] -= 0.1
    changes = update_baselines(tmp_path, {name: card})
    assert len(changes) == 1 and changes[0].startswith(f"{name} recall:") and changes[0].endswith("(worse)")
    assert json.loads((tmp_path / f"{name}.json").read_text())["atoms"]["recall"] == card["atoms"]["recall"]


@pytest.mark.slow
def test_regress_passes_on_the_code_and_catches_a_degraded_algorithm(tmp_path: Path, capsys) -> None:
    """The golden configurations reproduce their baselines; noisier poses (a worse algorithm) fail regress."""
    assert main(["regress", "--golden", str(GOLDEN), "--work", str(tmp_path / "w"), "--quiet"]) == 0
    golden = tmp_path / "golden"
    shutil.copytree(GOLDEN, golden)
    text = (golden / "suite.toml").read_text().replace('poses = "truth"\n', 'poses = "truth+noise:6"\n', 1)
    (golden / "suite.toml").write_text(text.replace("../data/", str(GOLDEN.parent / "data") + "/"))
    capsys.readouterr()
    assert main(["regress", "--golden", str(golden), "--work", str(tmp_path / "w2"), "--data",
                 str(tmp_path / "w" / "data"), "--quiet"]) == 1
    assert "REGRESSION" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- bench CLI


@pytest.fixture(scope="module")
def results_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two results folders written by ``write_results`` from the golden scorecards; B has a worse recall."""
    from tumblebench.validation.bench import write_results

    root = tmp_path_factory.mktemp("results")
    rows = [{"case": n, "particle": n, "poses": "truth", **headline(c)} for n, c in _golden_cards().items()]
    meta = {"suite": "golden", "version": 1, "algorithms": {}, "wall_s": 1.0}
    for name in ("a", "b"):
        (root / name).mkdir()
        write_results(root / name, rows, meta)
        rows = json.loads(json.dumps(rows))
        rows[0]["recall"] -= 0.1
    return root / "a", root / "b"


def test_bench_compare(results_pair: tuple[Path, Path], capsys) -> None:
    a, b = results_pair
    assert all(d.verdict in ("same", "info") for d in compare_results(a, a))
    first = load_results(a)["cases"][0]["case"]
    capsys.readouterr()
    assert main(["bench", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "WORSE" in out and "0 better, 1 worse" in out
    assert f"| {first} | recall |" in (b / "compare.md").read_text()
    for name in ("results.csv", "results.md", "index.html"):
        assert (a / name).read_text().count(first) >= 1


def test_bench_errors_exit_2(results_pair: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    a, _ = results_pair
    assert main(["bench", "--suite", "nonesuch", "--out", str(tmp_path / "x")]) == 2
    assert main(["bench", "--suite", "quick", "--out", str(a)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["bench", "compare", str(tmp_path)]) == 2
    assert main(["bench", "compare", str(tmp_path), str(a)]) == 2


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-case suite run through ``tumblebench bench`` (true poses, 60 projection frames)."""
    root = tmp_path_factory.mktemp("bench")
    (root / "tiny.toml").write_text(
        'name = "tiny"\nversion = 1\n[defaults]\nn_frames = 60\nmode = "projection"\nposes = "truth"\n'
        '[[case]]\nname = "cubo"\npreset = "cuboctahedron"\n'
        '[[case]]\nname = "cubo-noisy"\npreset = "cuboctahedron"\nposes = "truth+noise:4"\n')
    assert main(["bench", "--suite", str(root / "tiny.toml"), "--out", str(root / "a"), "--quiet"]) == 0
    return root


@pytest.mark.slow
def test_bench_writes_a_scorecard_per_case_and_the_results(bench_run: Path) -> None:
    out = bench_run / "a"
    for name in ("cubo", "cubo-noisy"):
        assert (out / "cases" / name / "scorecard.json").exists()
    res = load_results(out)
    assert res["suite"] == "tiny" and [r["case"] for r in res["cases"]] == ["cubo", "cubo-noisy"]
    assert (out / "results.csv").read_text().count("\n") == 3
    # one table row per case (first cell: the case name; "| cubo" alone also matches cubo-noisy and cuboctahedron)
    md_rows = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[1].strip() for line in md_rows] == ["cubo", "cubo-noisy"]
    assert 'href="cases/cubo/report.html"' in (out / "index.html").read_text()  # each case links to its report
    rows = {r["case"]: r for r in res["cases"]}
    assert rows["cubo"]["pose_median_deg"] < 0.01  # oracle poses
    assert rows["cubo-noisy"]["pose_median_deg"] > rows["cubo"]["pose_median_deg"]
    # both cases read the same data: one cache entry, identical frames
    assert len([p for p in (out / "data").iterdir() if not p.name.startswith(".")]) == 1
    assert _sha(out / "cases" / "cubo" / "series" / "frames.mrcs") == \
        _sha(out / "cases" / "cubo-noisy" / "series" / "frames.mrcs")


@pytest.mark.slow
def test_rescore_rebuilds_scorecards_and_results_from_the_runs(bench_run: Path, tmp_path: Path) -> None:
    """A scorecard and row as an older scorer wrote them are replaced by today's score of the same run."""
    out = tmp_path / "a"
    shutil.copytree(bench_run / "a", out, symlinks=True)
    before = load_results(out)
    card_path = out / "cases" / "cubo-noisy" / "scorecard.json"
    card = json.loads(card_path.read_text())
    right = card["poses"]["median_error_deg"]
    card["poses"]["median_error_deg"] = 99.0
    card["versions"]["git_commit"] = "0" * 40  # the commit the run was made at
    card_path.write_text(json.dumps(card))
    res = json.loads((out / "results.json").read_text())
    res["cases"][1]["pose_median_deg"] = 99.0
    (out / "results.json").write_text(json.dumps(res))
    assert main(["bench", "rescore", str(out)]) == 0
    assert load_results(out)["cases"] == before["cases"]
    new = json.loads(card_path.read_text())
    assert new["poses"]["median_error_deg"] == right
    assert new["versions"]["git_commit"] == "0" * 40 and "rescored_at" in new["versions"]
    assert "99.0" not in (out / "results.md").read_text()


@pytest.mark.slow
def test_table1_row_of_a_run(bench_run: Path) -> None:
    run = bench_run / "a" / "cases" / "cubo"
    row = table1_row(run)
    truth = json.loads((run / "particle" / "structure.json").read_text())
    found = json.loads((run / "atoms" / "atoms_summary.json").read_text())["table1"]
    assert row["atoms_true"] == 561 and row["median_cn_true"] == truth["median_cn"]
    assert row["median_cn_found"] == found["median_cn"] and row["diameter_A_found"] == found["diameter_A"]
    assert row["atoms_found"] is not None and row["recall"] is not None
    assert row["atom_count_error"] == pytest.approx((row["atoms_found"] - 561) / 561)
    assert row["meets_target"] == (abs(row["atom_count_error"]) <= 0.03 and abs(row["median_cn_error"]) <= 0.3)
    assert row["median_radial_strain_pct_found"] is not None  # against the bulk lattice, as the truth's


def test_table1_radial_strain_of_the_true_atoms_is_the_truths(tmp_path: Path) -> None:
    """The study's recovered radial strain is against the bulk lattice, as the truth's: applied to the true atoms of
    a uniformly strained Table 1 particle (4.4 %) it gives the truth's median, where strain against the atoms' own
    fitted lattice would give about zero."""
    from ase.io import write

    from tumblebench.simulator.builder import build_preset
    from tumblebench.simulator.nanocrystal import structure_summary
    from tumblebench.validation.study import _model_radial_strain

    crystal = build_preset("table1-np2")
    write(tmp_path / "atoms.extxyz", crystal.atoms)
    truth = structure_summary(crystal)
    found = _model_radial_strain(tmp_path / "atoms.extxyz", truth["reference_lattice_constant_A"],
                                truth["lattice_constant_A"])
    assert truth["median_radial_strain_percent"] == pytest.approx(4.4)
    assert found == pytest.approx(truth["median_radial_strain_percent"], abs=0.05)


@pytest.mark.slow
def test_dissolving_case_scores_each_half_against_its_own_atoms(tmp_path: Path) -> None:
    """A particle that loses surface atoms: part2's truth has fewer atoms, and each half is scored on its own."""
    suite = parse_suite({"name": "d", "version": 1, "case": [{
        "name": "dissolving", "preset": "cuboctahedron", "n_frames": 120, "mode": "projection", "poses": "truth",
        "halves": True, "series": {"dissolution": {"enabled": True, "rate_per_e_per_A2": 2e-4}}}]}, "d.toml")
    [row] = run_suite(suite, tmp_path / "out", progress=False)
    card = json.loads((tmp_path / "out" / "cases" / "dissolving" / "scorecard.json").read_text())
    halves = card["halves"]
    assert halves["part2_n_true"] < halves["part1_n_true"] <= 561
    for k in (1, 2):
        assert 0.0 < halves[f"part{k}_recall"] <= 1.0 and 0.0 < halves[f"part{k}_precision"] <= 1.0
    assert row["part1_recall"] == halves["part1_recall"]
