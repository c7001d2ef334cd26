"""Peak resident memory of ``tumblebench simulate`` and ``tumblebench reconstruct`` against the length of the series.

Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/memory.py --work DIR                      # the default cases below
    nice -n 10 .venv/bin/python benchmarks/memory.py --work DIR --simulate 2000 --truth 2000,8000 --abinitio 0

Every case runs the command line in a child process (under ``nice -n 10``) and samples ``/proc/PID/status`` of
the child and its descendants every 50 ms: ``VmHWM`` of the main process (the kernel's own peak of its resident
set) and the sampled peaks of its anonymous (``RssAnon``), file-backed (``RssFile``) and shared-memory
(``RssShmem``) resident memory, and of the whole process tree's ``VmRSS`` (``simulate`` renders frames in
worker processes). The growth per 1,000 frames is the least-squares slope of the main process's peak against
the number of frames, per command.

Cases (each row of the JSON says which it is):

* ``simulate``: ``--mode projection`` (``--simulate-mode``) at each of ``--simulate`` frame counts. The frames are
  written the same way in every imaging mode (rendered in workers, streamed to ``frames.mrcs`` in order), so the
  cheap projection mode measures the same memory path as multislice; ``--simulate-check-multislice N`` adds a
  multislice row at N frames to show it.
* ``stack_writer``: ``simulate``'s frame writer alone (``--writer``): N frames of the default 192² field
  streamed to a stack as ``simulate`` does, without rendering (the file-backed memory of the written stack).
* ``reconstruct_truth``: ``--poses truth`` (tracking, boxes, the two half maps, density modification,
  part1/part2 maps; no pose search) at each of ``--truth`` frame counts.
* ``reconstruct_abinitio``: unknown poses (default lattice ab initio + refinement) at ``--abinitio`` frames,
  with ``--abinitio-n-iter`` refinement iterations and ``--abinitio-model-iterations`` model iterations
  (fewer than the defaults: CPU time; the per-frame arrays are the same in every iteration).

The series reconstructed are the simulated ``--simulate-mode`` series of the *smallest* simulated length,
repeated end to end (frames and STAR rows, ``rlnImageName`` renumbered) up to each length: a 20,000-frame
reconstruction then needs no 20,000-frame simulation, and the memory path (every frame read, tracked, cut
and inserted) is the same. ``--python`` measures another checkout's interpreter (e.g. the commit before a
change) with the same inputs; ``--label`` names its rows.

Writes (updates) ``benchmarks/results/memory.json`` with the commit, core count and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def _status(pid: int) -> dict[str, int]:
    """Memory fields (kB) of /proc/PID/status; {} if the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in KEYS:
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return out


def _descendants(pid: int) -> list[int]:
    """The process and all its descendants (through /proc/PID/task/*/children)."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return seen


CLI = "import sys; from tumblebench.validation.cli import main; sys.exit(main())"

#: The frame writer of ``simulate`` alone: N frames of the default field (192² px) streamed to a stack.
WRITER = """
import sys
from pathlib import Path
import numpy as np
from tumblebench.simulator.mrc import MrcStackWriter
n, out = int(sys.argv[1]), Path(sys.argv[2])
frame = np.random.default_rng(0).poisson(8.5, (192, 192)).astype(np.float32)
with MrcStackWriter(out, n, 192, 192, 0.358) as w:
    for f in range(n):
        w.write(f, frame[None])
out.unlink()
"""


def measure(args: list[str], python: str, log: Path, code: str = CLI) -> dict:
    """Run ``python -c code ARGS`` (default: ``tumblebench ARGS``) under nice 10 and sample its memory; MB."""
    cmd = ["nice", "-n", "10", python, "-c", code, *args]
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    peak = dict.fromkeys(KEYS, 0)
    tree_peak = 0
    while proc.poll() is None:
        # the child is `nice`, which exec()s python: same pid
        st = _status(proc.pid)
        for k, v in st.items():
            peak[k] = max(peak[k], v)
        tree_peak = max(tree_peak, sum(_status(p).get("VmRSS", 0) for p in _descendants(proc.pid)))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}); see {log}")
    mb = 1 / 1024
    return {"peak_rss_MB": peak["VmHWM"] * mb, "peak_anon_MB": peak["RssAnon"] * mb,
            "peak_file_MB": peak["RssFile"] * mb, "peak_shmem_MB": peak["RssShmem"] * mb,
            "peak_tree_rss_MB": tree_peak * mb, "wall_s": wall,
            "command": ("tumblebench " if code == CLI else "frame writer ") + " ".join(args)}


def tiled_series(src: Path, n: int, dst: Path) -> Path:
    """``src`` (a simulated series) repeated end to end up to ``n`` frames: frames.mrcs + frames.star (+ the
    manifest, for the optics). Written a chunk at a time."""
    from tumblebench.simulator.mrc import MrcStackWriter, open_stack
    from tumblebench.simulator.star import read_star, write_star

    if (dst / "frames.star").exists():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    stack, ps = open_stack(src / "frames.mrcs")
    m = stack.shape[0]
    with MrcStackWriter(dst / "frames.mrcs", n, stack.shape[1], stack.shape[2], ps) as w:
        for s in range(0, n, 500):
            idx = np.arange(s, min(s + 500, n)) % m
            w.write(s, stack[idx])
    optics, particles = read_star(src / "frames.star")
    rows = particles.iloc[np.arange(n) % m].reset_index(drop=True)
    rows["rlnImageName"] = [f"{i + 1:06d}@frames.mrcs" for i in range(n)]
    write_star(dst / "frames.star", optics, rows)
    (dst / "manifest.json").write_bytes((src / "manifest.json").read_bytes())
    return dst


def slope_per_1000(rows: list[dict]) -> float | None:
    """Least-squares slope (MB per 1,000 frames) of peak RSS against frames; None below two lengths."""
    if len({r["frames"] for r in rows}) < 2:
        return None
    f = np.array([r["frames"] for r in rows], float)
    p = np.array([r["peak_rss_MB"] for r in rows], float)
    return float(np.polyfit(f, p, 1)[0] * 1000)


def save(rows: list[dict], args: argparse.Namespace, load0: tuple, commit: str | None) -> dict:
    """Merge this run's rows into benchmarks/results/memory.json (called after every row: a run stopped half-way
    keeps what it measured); returns the growth per 1,000 frames of every label and case."""
    from tumblebench.simulator.outputs import git_commit, write_json

    res_path = ROOT / "benchmarks" / "results" / "memory.json"
    old = json.loads(res_path.read_text()) if res_path.exists() else {}
    sets = old.get("sets", {})
    # rows of earlier runs of this label are kept unless this run measured the same case again
    done = {(r["case"], r.get("mode"), r["frames"]) for r in rows}
    kept = [r for r in sets.get(args.label, {}).get("rows", []) if (r["case"], r.get("mode"), r["frames"]) not in done]
    rows = sorted(kept + rows, key=lambda r: (r["case"], r.get("mode") or "", r["frames"]))
    sets[args.label] = {"rows": rows, "git_commit": commit,
                        "python": "this checkout" if args.python == sys.executable else "another checkout",
                        "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    growth = {}
    for label, st in sets.items():
        for case in sorted({r["case"] for r in st["rows"]}):
            sel = [r for r in st["rows"] if r["case"] == case and r.get("mode") == args.simulate_mode]
            g = slope_per_1000(sel)
            if g is not None:
                growth[f"{label}:{case}"] = g
    out = {**old, "sets": sets, "growth_MB_per_1000_frames": growth, "cpu_count": os.cpu_count(),
           "git_commit": git_commit(), "targets": {"reconstruct 10,000 frames": "<= 4096 MB peak RSS",
                                                   "reconstruct growth": "<= 50 MB per 1,000 frames"},
           "note": "peak_rss_MB is the main process's VmHWM; peak_tree_rss_MB the sampled sum over the process "
                   "tree; reconstruct rows use the simulated series repeated end to end (see the script)"}
    res_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(res_path, out)
    return growth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="directory for the series and runs (kept)")
    ap.add_argument("--python", default=sys.executable, help="interpreter whose tumblebench is measured")
    ap.add_argument("--commit", default=None, help="commit of the --python checkout (recorded with its rows)")
    ap.add_argument("--label", default="current", help="name of this set of rows (e.g. before, after)")
    ap.add_argument("--simulate", default="2000,8000,20000", help="frame counts of the simulate rows")
    ap.add_argument("--simulate-mode", default="projection")
    ap.add_argument("--writer", default="", help="frame counts of the stack-writer rows (simulate's writer alone)")
    ap.add_argument("--simulate-config", type=Path, default=None,
                    help="series TOML of the simulate rows (e.g. no stage drift, so that 20,000 frames stay in the "
                         "field)")
    ap.add_argument("--simulate-check-multislice", type=int, default=0, help="frames of a multislice row (0: none)")
    ap.add_argument("--truth", default="2000,8000", help="frame counts of the reconstruct --poses truth rows")
    ap.add_argument("--abinitio", default="2000", help="frame counts of the ab initio rows ('' or 0: none)")
    ap.add_argument("--abinitio-n-iter", type=int, default=1)
    ap.add_argument("--abinitio-model-iterations", type=int, default=0)
    ap.add_argument("--base-frames", type=int, default=2000, help="frames of the simulated series that is tiled")
    args = ap.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    from tumblebench.simulator.outputs import git_commit

    commit = git_commit() if args.python == sys.executable else args.commit  # of the code measured
    ints = lambda s: [int(x) for x in s.split(",") if x and int(x) > 0]  # noqa: E731
    particle = work / "particle"
    if not (particle / "truth.extxyz").exists():
        subprocess.run([sys.executable, "-c", "import sys; from tumblebench.validation.cli import main; "
                        "sys.exit(main())", "build", "--preset", "default", "--out", str(particle)], check=True)
    rows: list[dict] = []

    def record(row: dict) -> None:
        row["git_commit"] = commit
        rows.append(row)
        save(rows, args, load0, commit)
        print(f"{row['case']:22s} {row['frames']:6d} frames: peak RSS {row['peak_rss_MB']:7.0f} MB (anon "
              f"{row['peak_anon_MB']:.0f}, file {row['peak_file_MB']:.0f}, tree {row['peak_tree_rss_MB']:.0f}) "
              f"{row['wall_s']:.0f} s", flush=True)

    base = work / f"series_{args.simulate_mode}_{args.base_frames}"
    sim_config = [] if args.simulate_config is None else ["--config", str(args.simulate_config.resolve())]
    sim_note = {} if args.simulate_config is None else {"series_config": args.simulate_config.read_text()}
    sims = sorted(set(ints(args.simulate)))
    for n in sims:
        out = work / f"{args.label}_simulate_{args.simulate_mode}_{n}"
        r = measure(["simulate", "--structure", str(particle / "truth.extxyz"), "--mode", args.simulate_mode,
                     "--frames", str(n), *sim_config, "--out", str(out), "--overwrite", "--quiet"], args.python,
                    work / f"{args.label}_simulate_{n}.log")
        record({"case": "simulate", "mode": args.simulate_mode, "frames": n, **r, **sim_note})
        if n == args.base_frames and not base.exists():
            out.rename(base)
    for n in ints(args.writer):
        r = measure([str(n), str(work / f"{args.label}_writer_{n}.mrcs")], args.python,
                    work / f"{args.label}_writer_{n}.log", WRITER)
        record({"case": "stack_writer", "mode": args.simulate_mode, "frames": n, **r})
    if args.simulate_check_multislice:
        n = args.simulate_check_multislice
        out = work / f"{args.label}_simulate_multislice_{n}"
        r = measure(["simulate", "--structure", str(particle / "truth.extxyz"), "--mode", "multislice",
                     "--frames", str(n), *sim_config, "--out", str(out), "--overwrite", "--quiet"], args.python,
                    work / f"{args.label}_simulate_multislice_{n}.log")
        record({"case": "simulate", "mode": "multislice", "frames": n, **r, **sim_note})
    recon = [("reconstruct_truth", n) for n in ints(args.truth)] + \
            [("reconstruct_abinitio", n) for n in ints(args.abinitio)]
    if recon and not base.exists():
        subprocess.run(["nice", "-n", "10", sys.executable, "-c", "import sys; from tumblebench.validation.cli "
                        "import main; sys.exit(main())", "simulate", "--structure", str(particle / "truth.extxyz"),
                        "--mode", args.simulate_mode, "--frames", str(args.base_frames), "--out", str(base),
                        "--quiet"], check=True)
    cfg = work / "abinitio_memory.toml"
    cfg.write_text(f"[refine]\nn_iter = {args.abinitio_n_iter}\nmodel_iterations = "
                   f"{args.abinitio_model_iterations}\n")
    for case, n in recon:
        series = base if n == args.base_frames else tiled_series(base, n, work / f"series_{args.simulate_mode}_{n}")
        out = work / f"{args.label}_{case}_{n}"
        extra = ["--poses", "truth"] if case == "reconstruct_truth" else ["--config", str(cfg)]
        r = measure(["reconstruct", "--frames", str(series / "frames.mrcs"), "--star", str(series / "frames.star"),
                     *extra, "--out", str(out), "--overwrite", "--quiet"], args.python,
                    work / f"{args.label}_{case}_{n}.log")
        row = {"case": case, "mode": args.simulate_mode, "frames": n, **r}
        if case == "reconstruct_abinitio":
            row.update(refine_n_iter=args.abinitio_n_iter, model_iterations=args.abinitio_model_iterations)
        record(row)
    growth = save(rows, args, load0, commit)
    for k, v in growth.items():
        print(f"growth {k}: {v:.1f} MB per 1,000 frames")
    print("wrote benchmarks/results/memory.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
