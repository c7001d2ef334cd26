"""Run a built-in suite one case at a time and keep each finished case's row in a committed results file.

A suite of 2,000-frame cases takes hours on 2 cores, more than one sitting, and its run folders do not survive a
change of machine. So each case runs as its own ``tumblebench bench --suite SUITE --case NAME`` into
``WORK/runs/NAME`` (the particles and series cached in ``WORK/data``); a case whose results exist is not run
again, and the results file under ``benchmarks/results/`` keeps the rows of cases run earlier, each with the
commit it ran at (and the commit of the scorers when ``tumblebench bench rescore`` scored it again), when
``WORK`` no longer holds them. Used by ``abinitio_robustness.py`` and ``bench_standard.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from machine_speed import probe_s


def run_case(suite: str, name: str, work: Path, algorithms: Sequence[str] = ()) -> float | None:
    """Run case ``name`` of ``suite`` unless its results exist; return its wall time (s), None when it was there.

    ``algorithms`` are ``STAGE=NAME`` choices passed on as ``--algorithm``.
    """
    out = work / "runs" / name
    if (out / "results.json").exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    speed = {"probe_s": probe_s(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t = time.perf_counter()
    cmd = [str(Path(sys.executable).with_name("tumblebench")), "bench", "--suite", suite, "--case", name,
           "--out", str(out), "--data", str(work / "data"), "--overwrite", "--quiet"]
    for a in algorithms:
        cmd += ["--algorithm", a]
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    # the machine's speed at the hour the case started (machine_speed.py), kept beside its results
    (out / "machine_speed.json").write_text(json.dumps(speed) + "\n")
    return wall


def run_cases(suite: str, names: Sequence[str], work: Path, algorithms: Sequence[str] = ()) -> None:
    """:func:`run_case` for each of ``names`` in turn, a line of progress each on stderr."""
    for i, name in enumerate(names, start=1):
        wall = run_case(suite, name, work, algorithms)
        state = "already run" if wall is None else f"{wall:.0f} s"
        print(f"[{i}/{len(names)}] {name}: {state} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def commits(card: dict) -> dict[str, str | None]:
    """``commit`` (the run's, 7 characters) and ``scored_commit`` (the scorers', the same unless rescored)."""
    versions = card.get("versions") or {}
    commit = versions.get("git_commit")
    scored = versions.get("rescored_at") or commit
    return {"commit": _short(commit), "scored_commit": _short(scored)}


def _short(commit: str | None) -> str | None:
    """``abc1234`` of a full commit, ``abc1234-dirty`` of a run of uncommitted code."""
    return commit[:7] + ("-dirty" if commit.endswith("-dirty") else "") if commit else None


def commit_label(row: dict) -> str:
    """``abc1234``, or ``abc1234, scored at def5678`` for a row scored again."""
    label = row.get("commit") or "—"
    if row.get("scored_commit") not in (None, row.get("commit")):
        label += f", scored at {row['scored_commit']}"
    return label


def merged_rows(names: Sequence[str], fresh: Callable[[str], dict | None], results: Path) -> list[dict]:
    """Rows of ``names`` in order: ``fresh(name)`` where the work folder holds the case, else the row kept in
    ``results`` (``{"rows": [...]}``, each with its ``case``); cases in neither are left out."""
    kept = json.loads(results.read_text()).get("rows", []) if results.exists() else []
    by_case = {r["case"]: r for r in kept}
    return [r for r in (fresh(n) or by_case.get(n) for n in names) if r is not None]
