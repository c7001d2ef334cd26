"""The end-to-end pipeline at small size: every stage runs, writes its files and is scored against the truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.validation.pipeline import PipelineConfig, format_scorecard, run_pipeline
from tumblebench.validation.scorecard import load_scorecard


def test_small_run_end_to_end_with_true_poses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = PipelineConfig(preset="cuboctahedron", n_frames=60, mode="projection", poses="truth")
    card = run_pipeline(out, cfg, progress=False, log=lambda _msg: None)
    for sub, files in {"particle": ["truth.extxyz", "structure.json"],
                       "series": ["frames.mrcs", "frames.star", "truth_map.mrc"],
                       "recon": ["map.mrc", "half1.mrc", "half2.mrc", "poses.star", "fsc.csv"],
                       "atoms": ["atoms.pdb", "atoms_stats.csv", "penetration.json"]}.items():
        for f in files:
            assert (out / sub / f).exists(), f"{sub}/{f} missing"
    assert set(load_scorecard(out / "scorecard.json")) >= {"structure", "series", "poses", "map", "atoms"}
    assert (out / "report.html").stat().st_size > 100_000  # the demo's report, figures embedded
    assert card["structure"]["n_atoms"] == 561  # 5-shell cuboctahedron magic number
    assert card["series"]["n_frames"] == 60 and card["series"]["mode"] == "projection"
    # oracle poses are scored as exact, and the map and atoms are scored in the truth frame
    assert card["poses"]["median_error_deg"] < 0.01
    assert card["map"]["fsc_truth_0.143_A"] < 6.0
    assert card["atoms"]["precision"] > 0.95 and card["atoms"]["recall"] > 0.5
    assert "atoms" in format_scorecard(card)
    with pytest.raises(TumblebenchError, match="--overwrite"):
        run_pipeline(out, cfg, progress=False, log=lambda _msg: None)


def test_pipeline_config_is_validated() -> None:
    with pytest.raises(TumblebenchError, match="n_frames"):
        PipelineConfig(n_frames=10).validate()
    with pytest.raises(TumblebenchError, match="stop_after"):
        PipelineConfig(stop_after="nothing").validate()
