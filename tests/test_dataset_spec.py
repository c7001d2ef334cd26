"""The dataset spec: distributions (every draw inside its declared range; same seed, same draws) and the
validation on load (unknown parameters, out-of-range distributions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.dataset.spec import (
    draw_parameters,
    item_seed_sequence,
    load_spec,
    make_config,
    parse_distribution,
    parse_spec,
    stream_seed,
)
from tumblebench.simulator.errors import TumblebenchError

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).parent / "data" / "dataset_tiny.toml"

finite = st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def bounds(draw, positive: bool = False):
    lo = draw(st.floats(1e-3, 1e4) if positive else finite)
    width = draw(st.floats(1e-6, 1e6))
    hi = lo + max(width, abs(lo) * 1e-9 + 1e-9)
    return lo, hi


@settings(deadline=None, max_examples=60)  # the machine is shared: no per-example deadline
@given(bounds(), st.integers(0, 2**32 - 1))
def test_uniform_draws_inside_and_reproducible(lohi, seed):
    lo, hi = lohi
    d = parse_distribution({"dist": "uniform", "low": lo, "high": hi}, "t")
    a = [d.draw(np.random.default_rng(seed)) for _ in range(3)]
    b = [d.draw(np.random.default_rng(seed)) for _ in range(3)]
    assert a == b
    assert all(lo <= x <= hi for x in a)


@settings(deadline=None, max_examples=60)  # the machine is shared: no per-example deadline
@given(bounds(positive=True), st.integers(0, 2**32 - 1))
def test_loguniform_draws_inside(lohi, seed):
    lo, hi = lohi
    d = parse_distribution({"dist": "loguniform", "low": lo, "high": hi}, "t")
    rng = np.random.default_rng(seed)
    xs = [d.draw(rng) for _ in range(20)]
    assert all(lo <= x <= hi for x in xs)


@settings(deadline=None, max_examples=60)  # the machine is shared: no per-example deadline
@given(finite, st.floats(1e-3, 1e4), bounds(), st.integers(0, 2**32 - 1))
def test_truncated_normal_draws_inside(mean, sd, lohi, seed):
    lo, hi = lohi
    d = parse_distribution({"dist": "normal", "mean": mean, "sd": sd, "low": lo, "high": hi}, "t")
    rng = np.random.default_rng(seed)
    xs = [d.draw(rng) for _ in range(20)]
    assert all(lo <= x <= hi for x in xs)
    assert all(math.isfinite(x) for x in xs)


@settings(deadline=None, max_examples=60)  # the machine is shared: no per-example deadline
@given(st.integers(-1000, 1000), st.integers(0, 50), st.integers(0, 2**32 - 1))
def test_integer_versions_draw_integers_inside(lo, width, seed):
    hi = lo + width + 1
    rng = np.random.default_rng(seed)
    for table in ({"dist": "uniform_int", "low": lo, "high": hi},
                  {"dist": "normal_int", "mean": lo + 0.3 * (hi - lo), "sd": 2.0, "low": lo, "high": hi}):
        d = parse_distribution(table, "t")
        xs = [d.draw(rng) for _ in range(20)]
        assert all(isinstance(x, int) and lo <= x <= hi for x in xs)
    if lo > 0:
        d = parse_distribution({"dist": "loguniform_int", "low": lo, "high": hi}, "t")
        assert all(isinstance(x, int) and lo <= x <= hi for x in (d.draw(rng) for _ in range(20)))


@settings(deadline=None, max_examples=60)  # the machine is shared: no per-example deadline
@given(st.lists(st.floats(0, 10), min_size=1, max_size=6).filter(lambda w: sum(w) > 0), st.integers(0, 2**32 - 1))
def test_choice_draws_only_values_of_positive_weight(weights, seed):
    values = [f"v{i}" for i in range(len(weights))]
    d = parse_distribution({"dist": "choice", "values": values, "weights": weights}, "t")
    rng = np.random.default_rng(seed)
    xs = [d.draw(rng) for _ in range(30)]
    assert all(weights[values.index(x)] > 0 for x in xs)


def test_choice_frequencies_follow_weights():
    d = parse_distribution({"dist": "choice", "values": ["a", "b"], "weights": [3, 1]}, "t")
    rng = np.random.default_rng(0)
    n = 4000
    frac = sum(d.draw(rng) == "a" for _ in range(n)) / n
    # binomial: sd = sqrt(0.75 * 0.25 / 4000) = 0.0068; 5 sd
    assert abs(frac - 0.75) < 0.035


def test_normal_without_bounds_is_truncated_to_the_physical_range():
    # dose must be > 0: a normal centred at 0 draws positive doses only, and its lower end is never drawn
    spec = parse_spec({"series": {"acquisition": {"dose_per_frame_e_per_A2": {"dist": "normal", "mean": 0.0,
                                                                               "sd": 50.0}}}})
    d = spec.parameters["series.acquisition.dose_per_frame_e_per_A2"]
    rng = np.random.default_rng(3)
    assert all(d.draw(rng) > 0 for _ in range(200))


def test_tiny_spec_draws_are_per_item_and_reproducible():
    spec = load_spec(TINY)
    a = [draw_parameters(spec, i) for i in range(6)]
    assert a == [draw_parameters(spec, i) for i in range(6)]
    assert len({round(x["particle.mobility.penetration_depth_A"], 12) for x in a}) == 6
    for x in a:
        assert 1.0 <= x["particle.mobility.penetration_depth_A"] <= 2.5
        assert x["series.acquisition.n_frames"] in (3, 4, 5)
        assert x["series.imaging.mode"] in ("projection", "phase-object")
    # another root seed, other draws
    assert draw_parameters(spec.with_seed(1), 0) != a[0]
    # item i is the i-th child of SeedSequence(root).spawn(n), whatever n
    ss = np.random.SeedSequence(spec.seed).spawn(10)[4]
    assert ss.spawn_key == item_seed_sequence(spec.seed, 4).spawn_key
    assert ss.entropy == item_seed_sequence(spec.seed, 4).entropy
    assert len({stream_seed(0, 4, k) for k in (1, 2, 3)}) == 3


def test_one_parameter_does_not_reshuffle_the_others(tmp_path):
    base = load_spec(TINY)
    text = TINY.read_text().replace("[series]", "[series]\nliquid.initial_thickness_A = "
                                                "{ dist = \"uniform\", low = 80.0, high = 150.0 }")
    (tmp_path / "s.toml").write_text(text)
    more = load_spec(tmp_path / "s.toml")
    for i in range(3):
        a, b = draw_parameters(base, i), draw_parameters(more, i)
        assert {k: b[k] for k in a} == a


def test_drawn_configs_are_valid():
    spec = load_spec(TINY)
    for i in range(5):
        p = draw_parameters(spec, i)
        s = make_config("series", {k[7:]: v for k, v in p.items() if k.startswith("series.")}, "t")
        assert s.acquisition.n_frames == p["series.acquisition.n_frames"]
        assert s.imaging.mode == p["series.imaging.mode"]


@pytest.mark.parametrize("name", ["dataset_training.toml", "dataset_sweep.toml"])
def test_example_specs_load(name):
    spec = load_spec(ROOT / "examples" / name)
    assert spec.steps[0] == "build"
    for i in range(20):  # every draw of the examples makes valid configurations
        p = draw_parameters(spec, i)
        for section in ("particle", "series", "reconstruct"):
            make_config(section, {k[len(section) + 1:]: v for k, v in p.items() if k.startswith(section + ".")}, "t")


@pytest.mark.parametrize(("table", "message"), [
    ({"particle": {"shape": {"kindd": "sphere"}}}, "spec: particle.shape.kindd: unknown parameter"),
    ({"series": {"acquisition": {"n_frame": 3}}}, "spec: series.acquisition.n_frame: unknown parameter"),
    ({"sereis": {}}, "unknown table(s) sereis"),
    ({"dataset": {"stepz": []}}, "dataset.stepz: unknown parameter"),
    ({"dataset": {"steps": ["simulate"]}}, "simulate needs build"),
    ({"dataset": {"steps": ["build", "atoms"]}}, "atoms needs reconstruct"),
    ({"particle": {"defects": {"vacancy_fraction": {"dist": "uniform", "low": 0.0, "high": 0.7}}}},
     "particle.defects.vacancy_fraction: uniform high 0.7 is outside the physical range"),
    ({"series": {"acquisition": {"dose_per_frame_e_per_A2": {"dist": "uniform", "low": 0.0, "high": 10.0}}}},
     "series.acquisition.dose_per_frame_e_per_A2: uniform low 0.0 is outside the physical range"),
    ({"series": {"imaging": {"mode": {"dist": "choice", "values": ["projection", "holography"]}}}},
     "series.imaging.mode: choice 'holography' is outside the physical range"),
    ({"series": {"acquisition": {"n_frames": {"dist": "uniform_int", "low": 0, "high": 10}}}},
     "series.acquisition.n_frames: uniform_int low 0 is outside the physical range"),
    ({"series": {"acquisition": {"n_frames": {"dist": "uniform", "low": 5, "high": 10}}}},
     "expected an integer"),
    ({"series": {"liquid": {"initial_thickness_A": {"dist": "normal", "mean": 50, "sd": 0}}}}, "sd = 0.0"),
    ({"series": {"liquid": {"initial_thickness_A": {"dist": "loguniform", "low": 0, "high": 5}}}}, "low > 0"),
    ({"series": {"liquid": {"initial_thickness_A": {"dist": "uniform", "low": 5, "high": 1}}}}, "low < high"),
    ({"series": {"liquid": {"initial_thickness_A": {"dist": "gamma", "k": 1}}}}, "dist = 'gamma' is not one of"),
    ({"series": {"liquid": {"initial_thickness_A": {"dist": "uniform", "low": 1, "hi": 5}}}}, "unknown key(s) hi"),
    ({"series": {"imaging": {"mode": {"dist": "choice", "values": ["projection"], "weights": [1, 2]}}}},
     "weights: expected 1 numbers"),
    ({"series": {"thermal": {"scale": {"dist": "normal", "mean": 1, "sd": 1, "low": -1}}}},
     "series.thermal.scale: normal low -1.0 is outside the physical range"),
    ({"series": {"dynamics": {"rotation": {"initial": {"dist": "normal", "mean": 1, "sd": 1}}}}},
     "needs low and high"),
])
def test_bad_specs_are_refused_naming_the_field(table, message):
    with pytest.raises(TumblebenchError) as err:
        parse_spec(table, "spec")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
