"""No run is ever lost: overwrite only when complete, SIGTERM like Ctrl-C, workers that die with their parent,
stale partial outputs of dead processes removed, a full disk as one error; demo checks every option first;
score on stage directories; config-backed options show their dataclass default."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tumblebench.simulator.outputs import atomic_output_dir, remove_stale_partials, write_json
from tumblebench.validation.cli import build_parser
from tumblebench.validation.cli import main as cli_main
from tumblebench.validation.commands.config_option import CONFIG_FIELD_ATTR, config_default, format_default
from tumblebench.validation.pipeline import PipelineConfig, run_pipeline

TUMBLEBENCH = [sys.executable, "-m", "tumblebench.validation.cli"]


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _alive(pid: int) -> bool:
    """A process exists and is not a zombie (a zombie has ended; only its exit status waits for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> set[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out.update(int(c) for c in (task / "children").read_text().split())
    return out


def _old_run(path: Path) -> Path:
    (path / "particle").mkdir(parents=True)
    (path / "particle" / "truth.extxyz").write_text("an earlier, finished run\n")
    return path / "particle" / "truth.extxyz"


def _debris(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------- overwrite

def test_demo_overwrite_with_a_bad_preset_keeps_the_old_run(tmp_path: Path, capsys) -> None:
    marker = _old_run(tmp_path / "run")
    assert cli_main(["demo", "--preset", "bogus", "--out", str(tmp_path / "run"), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "preset" in err[0]
    assert marker.read_text() == "an earlier, finished run\n"
    assert _debris(tmp_path) == []


@pytest.mark.parametrize("option", [["--frames", "0"], ["--frames", "-5"], ["--poses", "bogus"],
                                    ["--poses", "truth+noise:x"], ["--preset", "nope"], ["--seed", "-1"],
                                    ["--frames", "10"], ["--algorithm", "pose=no-such-method"],
                                    ["--poses", "truth", "--algorithm", "pose=lattice"]])
def test_demo_bad_option_exits_2_and_writes_nothing(tmp_path: Path, capsys, option: list[str]) -> None:
    assert cli_main(["demo", "--quick", "--quiet", "--out", str(tmp_path / "run"), *option]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_run_and_a_finished_one_replaces_it(tmp_path: Path) -> None:
    marker = _old_run(tmp_path / "run")

    def interrupt(msg: str) -> None:  # Ctrl-C right after the build stage has finished
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path / "run", PipelineConfig(stop_after="build"), overwrite=True, progress=False,
                     log=interrupt)
    assert marker.read_text() == "an earlier, finished run\n" and _debris(tmp_path) == []
    run_pipeline(tmp_path / "run", PipelineConfig(stop_after="build"), overwrite=True, progress=False,
                 log=lambda msg: None)
    text = (tmp_path / "run" / "particle" / "truth.extxyz").read_text()
    assert text.splitlines()[0].strip().isdigit() and int(text.splitlines()[0]) > 100  # a real extxyz
    assert (tmp_path / "run" / "timing.json").is_file() and _debris(tmp_path) == []


# ---------------------------------------------------------------------------------------------- debris

def test_stale_partial_outputs_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getppid()
    stale = [tmp_path / f".out.partial-{dead}-0a1b2c3d", tmp_path / f".out.old-{dead}"]
    keep = [tmp_path / f".out.partial-{live}-0a1b2c3d", tmp_path / f".other.partial-{dead}-00000000",
            tmp_path / ".out.partial-notapid"]
    for d in stale + keep:
        d.mkdir()
        (d / "frames.mrcs").write_bytes(b"\0" * 16)
    (tmp_path / f".card.json.partial-{dead}").write_text("{")
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("done")
    assert (tmp_path / "out" / "x").read_text() == "done"
    assert not any(d.exists() for d in stale) and all(d.exists() for d in keep)
    assert remove_stale_partials(tmp_path, "card.json") == [tmp_path / f".card.json.partial-{dead}"]


# ---------------------------------------------------------------------------------------------- signals

@pytest.fixture(scope="module")
def particle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("particle") / "p"
    assert cli_main(["build", "--preset", "default", "--out", str(out), "--quiet"]) == 0
    return out


def _start_simulation(particle: Path, out: Path) -> tuple[subprocess.Popen, set[int]]:
    """Start a multi-worker ``tumblebench simulate`` and wait until its workers render frames."""
    proc = subprocess.Popen([*TUMBLEBENCH, "simulate", "--structure", str(particle / "truth.extxyz"),
                             "--frames", "2000", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # imports and a cold numba cache under load; normally a few seconds
    kids: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        kids = _children(proc.pid)
        partial = list(out.parent.glob(f".{out.name}.partial-{proc.pid}-*"))
        if len(kids) >= 2 and partial and list(partial[0].glob(".frames.mrcs.partial-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)  # the workers have started rendering
    return proc, _children(proc.pid) | kids


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_during_simulate_exits_143_and_leaves_nothing(particle: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    before = set(Path("/tmp").glob("tumblebench*"))
    proc, workers = _start_simulation(particle, out)
    assert workers, "the simulation started no worker processes"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].endswith("terminated (SIGTERM); nothing was written")
    assert _wait_gone(workers, 30) == set()
    assert list(tmp_path.iterdir()) == []  # neither the output nor a hidden partial directory
    assert set(Path("/tmp").glob("tumblebench*")) <= before  # no temporary state left in /tmp


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent_and_the_next_run_removes_its_debris(particle: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "s"
    proc, workers = _start_simulation(particle, out)
    proc.kill()  # SIGKILL: no handler runs in the parent
    proc.communicate(timeout=60)
    assert _wait_gone(workers, 30) == set()  # PR_SET_PDEATHSIG ends the workers with their parent
    debris = _debris(tmp_path)
    assert debris and all(d.startswith(f".s.partial-{proc.pid}-") for d in debris)
    with atomic_output_dir(tmp_path / "s") as tmp:  # the next run writing there
        (tmp / "frames.star").write_text("")
    assert _debris(tmp_path) == []


# ---------------------------------------------------------------------------------------------- full disk

@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 2 MiB tmpfs (needs root; skipped where mounting is not permitted)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_is_one_error_and_leaves_nothing(particle: Path, tiny_fs: Path, capsys) -> None:
    # 40 frames of the default 192-px field are 5.9 MB of float32: the stack cannot fit in 2 MiB
    rc = cli_main(["simulate", "--structure", str(particle / "truth.extxyz"), "--frames", "40",
                   "--out", str(tiny_fs / "s"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "No space left on device" in err[0], err
    assert list(tiny_fs.iterdir()) == []
    # a JSON file that does not fit: no 0-byte or truncated file, no hidden partial
    (tiny_fs / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 8192))
    with pytest.raises(OSError):
        write_json(tiny_fs / "card.json", {"x": list(range(100_000))})
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["filler"]


# ---------------------------------------------------------------------------------------------- score

def test_score_refuses_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    assert cli_main(["score", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert cli_main(["score", str(tmp_path / "missing")]) == 2
    assert cli_main(["score"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_score_takes_the_stand_alone_outputs(particle: Path, tmp_path: Path, capsys) -> None:
    card_path = tmp_path / "card.json"
    assert cli_main(["score", "--particle", str(particle)]) == 2  # nowhere to write
    assert cli_main(["score", "--particle", str(tmp_path), "--out", str(card_path)]) == 2  # not a build output
    assert not card_path.exists()
    capsys.readouterr()
    assert cli_main(["score", "--particle", str(particle), "--out", str(card_path)]) == 0
    card = json.loads(card_path.read_text())
    assert card["structure"]["n_atoms"] == 405 and card["poses"]["median_error_deg"] is None
    assert _debris(tmp_path) == []


# ---------------------------------------------------------------------------------------------- help texts

#: Options that mirror a config field and must take default and help from it.
MIRRORED = {"build": {"--penetration-depth"}, "simulate": {"--mode", "--frames", "--dose-per-frame"},
            "atoms": {"--element", "--resolution", "--mask-diameter", "--min-cn", "--b-factor"},
            "reconstruct": {"--poses", "--box", "--seed", "--model-iterations"},
            "demo": {"--frames", "--mode", "--poses", "--preset", "--seed", "--stop-after"}}


def test_every_config_option_shows_its_dataclass_default() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen: dict[str, set[str]] = {}
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split())
        for action in p._actions:
            ref = getattr(action, CONFIG_FIELD_ATTR, None)
            if ref is None:
                continue
            flag = max(action.option_strings, key=len)
            seen.setdefault(name, set()).add(flag)
            # None: the TOML value (or else the dataclass default) applies unless the option is given
            assert action.default is None, (name, flag)
            assert "default" not in (action.help or ""), f"{name} {flag}: a hand-written default can drift"
            shown = f"{ref[1]}; default {format_default(config_default(*ref))})"
            assert shown in text, (name, flag, shown)
    for name, flags in MIRRORED.items():
        assert flags <= seen.get(name, set()), (name, flags - seen.get(name, set()))
    assert config_default("tumblebench.reconstruct.config:ReconstructConfig", "refine.model_iterations") == 1
