"""SeriesConfig: TOML loading, the documented example, overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumblebench.simulator.config import load_config, to_dict
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.series import DEFAULT_DOSE_PER_FRAME, SeriesConfig, with_overrides

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "simulate.toml"


def test_example_config_documents_the_defaults():
    cfg = load_config(SeriesConfig, EXAMPLE)
    ref = to_dict(SeriesConfig())
    got = to_dict(cfg)
    for table in ("acquisition", "dynamics", "liquid", "thermal", "dissolution", "output"):
        if table == "acquisition":
            assert got[table]["dose_per_frame_e_per_A2"] == pytest.approx(ref[table]["dose_per_frame_e_per_A2"],
                                                                          rel=1e-3)
            got[table]["dose_per_frame_e_per_A2"] = ref[table]["dose_per_frame_e_per_A2"]
        assert got[table] == ref[table], table


def test_default_dose_is_17000_electrons_per_pixel_over_the_series():
    acq = SeriesConfig().acquisition
    assert acq.n_frames == 2000 and acq.frame_rate_hz == 400.0 and acq.sampling == 0.358
    assert DEFAULT_DOSE_PER_FRAME * 0.358**2 * 2000 == pytest.approx(17000.0)


def test_bad_config_names_file_and_field(tmp_path):
    cases = {
        "[acquisition]\nn_frame = 3\n": "n_frame",
        "[acquisition]\ndose_per_frame_e_per_A2 = -1.0\n": "dose_per_frame",
        "[acquisition]\nsubsteps = 0\n": "substeps",
        "[dynamics.rotation]\ndiffusion_rad2_per_s = -0.1\n": "diffusion_rad2_per_s",
        "[liquid]\nschedule = \"sudden\"\n": "schedule",
        "[imaging]\nmode = \"holography\"\n": "mode",
        "[acquisition]\nbox_size_px = 256\nfield_px = 192\n": "box_size_px",
    }
    for i, (text, field) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.toml"
        path.write_text(text)
        with pytest.raises(TumblebenchError) as err:
            load_config(SeriesConfig, path)
        assert field in str(err.value) and str(path) in str(err.value)


def test_old_pixel_size_key_is_an_error_naming_its_new_name(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[acquisition]\npixel_size_A = 0.358\n")
    with pytest.raises(TumblebenchError) as err:
        load_config(SeriesConfig, path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "pixel_size_A is now sampling" in msg


def test_overrides():
    cfg = with_overrides(SeriesConfig(), mode="projection", n_frames=12, dose_per_frame=20.0)
    assert cfg.imaging.mode == "projection" and cfg.acquisition.n_frames == 12
    assert cfg.acquisition.dose_per_frame == 20.0
    with pytest.raises(TumblebenchError):
        with_overrides(SeriesConfig(), mode="holography")
    with pytest.raises(TumblebenchError):
        with_overrides(SeriesConfig(), n_frames=0)
