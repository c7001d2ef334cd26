"""The command line: help on every sub-command, one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tumblebench.validation.commands import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tumblebench.validation.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_top_level_help_lists_commands() -> None:
    res = _run("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name.replace("_", "-") in res.stdout


def test_unknown_command_is_one_line_exit_2() -> None:
    res = _run("no-such-command")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert "error" in res.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help_and_rejects_bad_flags(name: str) -> None:
    cmd = name.replace("_", "-")
    res = _run(cmd, "--help")
    assert res.returncode == 0 and "usage" in res.stdout
    res = _run(cmd, "--no-such-flag")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1


def test_reconstruct_rejects_a_bad_stage_value_from_a_flag(tmp_path) -> None:
    """A flag that changes a stage's config (here refine.model_iterations) is checked like the TOML table."""
    frames = tmp_path / "frames.mrcs"
    frames.write_bytes(b"")
    res = _run("reconstruct", "--frames", str(frames), "--model-iterations", "-1", "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "refine.model_iterations" in res.stderr
    assert not (tmp_path / "r").exists()
