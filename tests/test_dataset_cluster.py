"""``tumblebench dataset`` on real Dask clusters (loopback only): a set made by a scheduler and two
``dask worker`` processes is byte-identical to the set made by a one-worker LocalCluster; a worker killed
mid-item costs only that item's retry; a client killed mid-run resumes and finishes only the missing items."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tumblebench.dataset.run import generate
from tumblebench.dataset.spec import load_spec

TINY = Path(__file__).parent / "data" / "dataset_tiny.toml"
BIN = Path(sys.executable).parent
N = 3
#: files that hold wall times (everything else of an item is a function of the spec, the root seed and i)
TIMED = {"record.json", "manifest.parquet"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes), without the timed ones and the scratch folder."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in TIMED and ".partial" not in p.parts}


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "tumblebench"), "dataset", "--spec", str(TINY), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The set made by a LocalCluster with one worker."""
    out = tmp_path_factory.mktemp("ref") / "set"
    summary = generate(load_spec(TINY), N, out, workers=1, spec_text=TINY.read_text(), progress=False,
                       log=lambda m: None)
    assert summary.done == N and summary.failed == 0
    return tree(out)


@pytest.fixture(scope="module")
def cluster():
    """A `dask scheduler` and two `dask worker` processes (one thread each, no nanny) on 127.0.0.1."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]

    def add_worker() -> subprocess.Popen:
        p = subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny",
                              "--no-dashboard", "--host", "127.0.0.1", "--death-timeout", "120"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        workers = [add_worker(), add_worker()]
        with Client(address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=180)
        yield {"address": address, "workers": workers, "add_worker": add_worker}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_scheduler_and_two_workers_make_the_same_bytes_as_one_local_worker(cluster, reference, tmp_path):
    out = tmp_path / "set"
    summary = generate(load_spec(TINY), N, out, scheduler=cluster["address"], spec_text=TINY.read_text(),
                       progress=False, log=lambda m: None)
    assert summary.done == N and summary.failed == 0
    got = tree(out)
    assert sorted(got) == sorted(reference)
    assert [k for k in got if got[k] != reference[k]] == []
    assert not any((out / ".partial").iterdir())


@pytest.mark.slow  # two more cluster runs (about 1 min of CPU in all with the next test)
def test_a_worker_killed_mid_item_costs_only_a_retry(cluster, reference, tmp_path):
    from distributed import Client

    out = tmp_path / "set"
    client = run_cli("--n", str(N), "--out", str(out), "--scheduler", cluster["address"], "--quiet")
    pids = {p.pid: p for p in cluster["workers"] if p.poll() is None}
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and client.poll() is None:
        for d in (out / ".partial").glob("item_*") if (out / ".partial").is_dir() else []:
            pid = int(d.name.split("-")[1])  # item_NNNNNN-PID-TOKEN: the worker process making it
            if pid in pids:
                victim = pids[pid]
                break
        time.sleep(0.05)
    assert victim is not None, "no item was started"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stdout, stderr = client.communicate(timeout=600)
    assert client.returncode == 0, stderr
    assert f"{N} items made, 0 failed" in stdout
    got = tree(out)
    assert sorted(got) == sorted(reference)
    assert [k for k in got if got[k] != reference[k]] == []
    assert not any((out / ".partial").iterdir())  # the killed attempt's partial item was removed by its retry
    cluster["workers"].append(cluster["add_worker"]())  # two workers again for any later test
    with Client(cluster["address"], timeout="60s") as c:
        c.wait_for_workers(2, timeout=180)


@pytest.mark.slow
def test_a_killed_client_resumes_and_makes_only_the_missing_items(reference, tmp_path):
    out = tmp_path / "set"
    first = run_cli("--n", str(N), "--out", str(out), "--workers", "1", "--quiet")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if any((out / "items").glob("item_*/record.json")) if (out / "items").is_dir() else False:
            break
        time.sleep(0.05)
    assert first.poll() is None, "the run ended before it could be killed"
    os.kill(first.pid, signal.SIGKILL)  # kill -9: no clean-up, no manifest
    first.communicate()
    made = sorted(p.parent.name for p in (out / "items").glob("item_*/record.json"))
    assert 1 <= len(made) < N
    # nothing half-written: every item directory is complete, everything else is in .partial
    for d in (out / "items").iterdir():
        assert (d / "record.json").is_file()
    second = run_cli("--n", str(N), "--out", str(out), "--workers", "1", "--quiet")
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert f"{N - len(made)} items made, 0 failed, {len(made)} already there" in stdout
    got = tree(out)
    assert sorted(got) == sorted(reference)
    assert [k for k in got if got[k] != reference[k]] == []
