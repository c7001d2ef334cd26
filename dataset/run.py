"""The client: check everything, connect to (or start) a Dask cluster, make the missing items, write the manifest.

A dataset directory ``DIR`` holds ``dataset.json`` (the canonical spec and root seed: a directory belongs to
one spec), ``spec.toml`` (the file it was made from), ``items/`` (:mod:`tumblebench.dataset.items`),
``dataset.zarr/`` (:mod:`tumblebench.dataset.store`) and ``manifest.parquet``
(:mod:`tumblebench.dataset.manifest`). Rerunning the same command finishes only the items that are missing;
a larger ``n`` extends the set (item ``i`` does not depend on ``n``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumblebench.dataset.items import item_paths, make_item, read_record
from tumblebench.dataset.manifest import read_records, write_manifest
from tumblebench.dataset.spec import DatasetSpec
from tumblebench.dataset.store import create_root
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import write_json
from tumblebench.simulator.processes import available_cores

FORMAT = "tumblebench-dataset/1"
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT_S = 5


@dataclass
class RunSummary:
    """What a run did.

    Attributes
    ----------
    n
        Items requested.
    already
        Items complete (done or failed) before this run.
    done, failed
        Items this run finished, and those that failed (error recorded).
    wall_s
        Wall time of the run from the first submission, s.
    first_item_s
        Wall time from the start of the run (cluster start included) to the first finished item, s.
    manifest
        The manifest written.
    records
        The records of the items this run finished.
    """

    n: int
    already: int
    done: int
    failed: int
    wall_s: float
    first_item_s: float | None
    manifest: Path
    records: list[dict[str, Any]]


def check_output(out: str | Path, spec: DatasetSpec) -> bool:
    """Check that ``out`` may receive this spec's items; return True if it already holds this dataset.

    Raises
    ------
    TumblebenchError
        ``out`` is a file, a non-empty directory that is not a dataset, a dataset of another spec or root
        seed, or its parent does not exist.
    """
    out = Path(out)
    if not out.exists():
        if not out.parent.is_dir():
            raise TumblebenchError(f"{out.parent}: parent directory of --out does not exist")
        return False
    if not out.is_dir():
        raise TumblebenchError(f"{out}: --out exists and is not a directory")
    meta = out / "dataset.json"
    if not meta.is_file():
        if any(out.iterdir()):
            raise TumblebenchError(f"{out}: --out is a non-empty directory that holds no dataset (no dataset.json)")
        return False
    try:
        held = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TumblebenchError(f"{meta}: unreadable ({exc})") from None
    if held.get("spec") != spec.canonical():
        old, new = held.get("spec") or {}, spec.canonical()
        diff = sorted({*old.get("parameters", {}), *new["parameters"]}
                      - {k for k in new["parameters"] if old.get("parameters", {}).get(k) == new["parameters"][k]})
        what = f"seed {old.get('seed')} -> {new['seed']}" if old.get("seed") != new["seed"] else (
            f"parameters {', '.join(diff[:3])}" if diff else "steps or zarr")
        raise TumblebenchError(f"{out}: holds a dataset of a different spec ({what}); use another --out or the "
                               f"spec in {out / 'spec.toml'}")
    return True


def _probe(address: str) -> None:
    """Fail at once, with one line, if nothing listens at a ``tcp://HOST:PORT`` address (other protocols are left
    to the Dask client's own timeout)."""
    from urllib.parse import urlsplit

    if "://" not in address:
        address = "tcp://" + address
    parts = urlsplit(address)
    if parts.scheme != "tcp":
        return
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise TumblebenchError(f"--scheduler {address}: not an address of the form tcp://HOST:PORT") from None
    if not host or port is None:
        raise TumblebenchError(f"--scheduler {address}: not an address of the form tcp://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise TumblebenchError(f"--scheduler {address}: no Dask scheduler answered ({exc.strerror or exc})") from None


def connect(scheduler: str | None, workers: int | None) -> tuple[Any, Any]:
    """A Dask client: of the scheduler at ``scheduler``, or of a new local cluster of ``workers`` processes.

    Returns
    -------
    client, cluster
        ``cluster`` is None for an external scheduler.

    Raises
    ------
    TumblebenchError
        No scheduler answers at ``scheduler`` within :data:`CONNECT_TIMEOUT_S` s, or a bad address.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if workers is not None:
            raise TumblebenchError("--workers applies to the local cluster only (the scheduler's workers are "
                                   "started with `dask worker`)")
        _probe(scheduler)
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TumblebenchError(f"--scheduler {scheduler}: no Dask scheduler answered within "
                                   f"{CONNECT_TIMEOUT_S} s ({msg})") from None
        return client, None
    if workers is not None and workers < 1:
        raise TumblebenchError(f"--workers {workers}: expected >= 1")
    n = workers or available_cores()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _init_output(out: Path, spec: DatasetSpec, spec_text: str | None) -> None:
    out.mkdir(exist_ok=True)
    meta = out / "dataset.json"
    if not meta.exists():
        if spec_text is not None:
            (out / "spec.toml").write_text(spec_text)
        create_root(out / "dataset.zarr", {"format": FORMAT, "spec": spec.canonical()})
        write_json(out / ".dataset.json.tmp", {"format": FORMAT, "spec": spec.canonical()})
        os.replace(out / ".dataset.json.tmp", meta)
    (out / "items").mkdir(exist_ok=True)
    (out / ".partial").mkdir(exist_ok=True)


def _format_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Progress:
    """A tqdm bar on a terminal; a plain line at most every ``every_s`` seconds otherwise."""

    def __init__(self, total: int, enabled: bool, stream: Any = None, every_s: float = 10.0) -> None:
        from tqdm import tqdm

        self.stream = stream or sys.stderr
        self.total, self.done, self.failed = total, 0, 0
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.bar = tqdm(total=total, unit="item", desc="dataset", file=self.stream, dynamic_ncols=True,
                        disable=not self.tty)
        self.t0 = time.perf_counter()
        self.every_s = every_s
        self.last = -1e9

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)
        if self.tty:
            self.bar.set_postfix_str(f"failed {self.failed}", refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.every_s or self.done == self.total):
            self.last = now
            el = now - self.t0
            rate = self.done / el * 3600 if el > 0 else 0.0
            left = (self.total - self.done) * el / self.done
            self.stream.write(f"dataset: {self.done}/{self.total} items ({self.failed} failed), "
                              f"{rate:.1f} items/h, elapsed {_format_time(el)}, ~{_format_time(left)} left\n")
            self.stream.flush()

    def close(self) -> None:
        self.bar.close()


def generate(spec: DatasetSpec, n: int, out: str | Path, *, scheduler: str | None = None, workers: int | None = None,
             spec_text: str | None = None, progress: bool = True, retry_failed: bool = False,
             log: Callable[[str], None] | None = None, client: Any = None) -> RunSummary:
    """Make items ``0 .. n-1`` of ``spec`` in ``out`` (those not already there) on a Dask cluster.

    Everything is checked before anything is written: ``n``, the output directory (a directory of another
    spec is refused), the scheduler (one that does not answer within :data:`CONNECT_TIMEOUT_S` s).

    Parameters
    ----------
    spec
        The validated spec (its ``seed`` is the root seed).
    n
        Number of items (>= 1).
    out
        Dataset directory.
    scheduler
        Address of a running Dask scheduler (``tcp://HOST:8786``); None starts a local cluster.
    workers
        Worker processes of the local cluster (one thread each; default: the available cores).
    spec_text
        The spec file's text, copied to ``out/spec.toml`` when the dataset is created.
    progress
        A progress bar on a terminal, a line of progress otherwise (stderr).
    retry_failed
        Make the items whose earlier attempt failed again.
    log
        Where to report (default: stderr).
    client
        A connected ``distributed.Client`` to use (and leave open) instead of ``scheduler`` / ``workers``.

    Returns
    -------
    RunSummary
    """
    from distributed import as_completed

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TumblebenchError(f"--n {n}: expected a number of items >= 1")
    out = Path(out)
    exists = check_output(out, spec)
    t_start = time.perf_counter()
    own = client is None
    if own:
        client, cluster = connect(scheduler, workers)
    try:
        _init_output(out, spec, spec_text)
        if retry_failed:
            for i in range(n):
                p = item_paths(out, i)["failed"]
                if p.exists():
                    p.unlink()
        todo = [i for i in range(n) if read_record(out, i) is None]
        already = n - len(todo)
        info = client.scheduler_info()
        nthreads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        say(f"dataset: {n} items of {spec.source} into {out} ({already} already there, {len(todo)} to make"
            f"{'; resuming' if exists else ''})")
        say(f"dataset: Dask {'scheduler ' + str(client.scheduler.address)}: "
            f"{len(info.get('workers', {}))} workers, {nthreads} threads; dashboard {client.dashboard_link}")
        if nthreads == 0:
            say("dataset: the scheduler has no workers yet; waiting for `dask worker` processes to join")
        window = max(16, 4 * max(nthreads, 1))
        run_id = uuid.uuid4().hex[:8]
        bar = _Progress(len(todo), progress)
        records: list[dict[str, Any]] = []
        failed = 0
        first: float | None = None
        t_submit = time.perf_counter()
        pending = iter(todo)

        def submit(i: int) -> Any:
            return client.submit(make_item, spec, i, str(out), key=f"tumblebench-item-{i:06d}-{run_id}", pure=False)

        futures = {}
        try:
            ac = as_completed()
            for i in pending:
                f = submit(i)
                futures[f.key] = i
                ac.add(f)
                if len(futures) >= window:
                    break
            for fut in ac:
                i = futures.pop(fut.key)
                try:
                    rec = fut.result()
                except Exception as exc:  # e.g. the item's workers died too often (KilledWorker): not recorded
                    # on disk, so that the next run retries it
                    rec = {"index": i, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                records.append(rec)
                failed += rec.get("status") != "done"
                if first is None:
                    first = time.perf_counter() - t_start
                bar.update(rec.get("status") != "done")
                nxt = next(pending, None)
                if nxt is not None:
                    f = submit(nxt)
                    futures[f.key] = nxt
                    ac.add(f)
        finally:
            bar.close()
            wall = time.perf_counter() - t_submit
            on_disk = read_records(out)
            for rec in records:  # client-side failures are in the manifest of this run only
                on_disk.setdefault(int(rec["index"]), rec)
            manifest = write_manifest(out, list(on_disk.values()))
        return RunSummary(n=n, already=already, done=len(records) - failed, failed=failed, wall_s=wall,
                          first_item_s=first, manifest=manifest, records=records)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
