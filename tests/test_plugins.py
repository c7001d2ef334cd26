"""The example plugins (examples/plugins/, installed by ``make test``) end to end through ``tumblebench demo``.

Both runs are the same small case (the default particle, projection mode, FRAMES frames, seed 0), each with one
plugin registered by name through the entry-point group ``tumblebench.algorithms``: the built-in poses with the
peak_local_max atom detector, and the random pose estimator with the built-in detector. Their scorecards must show
the expected order: a random pose estimator is the floor (median error after the best global rotation ≈ 126° for
uniform rotations), the built-in lattice method finds the poses, and the plugin detector finds the atoms of its
map.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tumblebench.validation.cli import main as cli_main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tumblebench_example_plugins") is None,
                                reason="the example plugins are not installed (pip install -e examples/plugins)")

FRAMES = 100
CASE = ["demo", "--quick", "--frames", str(FRAMES), "--mode", "projection", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("plugins")
    cards = {}
    for name, extra in (("atoms", ["--algorithm", "atoms=peak-local-max"]), ("pose", ["--algorithm", "pose=random"])):
        assert cli_main([*CASE, *extra, "--out", str(root / name)]) == 0
        cards[name] = json.loads((root / name / "scorecard.json").read_text())
        cards[name]["_dir"] = root / name
    return cards


def test_random_poses_are_the_floor_the_builtin_beats(runs) -> None:
    rand = runs["pose"]["poses"]["median_error_deg"]
    builtin = runs["atoms"]["poses"]["median_error_deg"]
    assert rand > 60.0 and builtin < 10.0


def test_the_plugin_detector_is_scored_on_the_builtin_map(runs) -> None:
    atoms = runs["atoms"]["atoms"]
    assert atoms["n_detected"] > 0 and atoms["recall"] > 0.5


def test_the_plugin_runs_are_recorded_and_scored_alike(runs) -> None:
    summary = json.loads((Path(runs["pose"]["_dir"]) / "recon" / "summary.json").read_text())
    assert summary["algorithms"] == {"pose": "tumblebench_example_plugins.poses.RandomPoses"}
    assert summary["abinitio"]["method"] == "random"
    assert set(runs["pose"]) == set(runs["atoms"])  # the same scorecard sections for every algorithm
