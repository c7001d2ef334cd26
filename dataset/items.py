"""One item of a dataset: draw its parameters, run its steps, write it whole or not at all.

:func:`make_item` is the function the Dask workers run. An item ``i`` of dataset ``DIR`` is

* ``DIR/items/item_NNNNNN/`` — a run directory (:class:`tumblebench.validation.scorecard.RunLayout`):
  ``particle/`` (``truth.extxyz``, ``truth.pdb``, ``structure.json``, ``manifest.json``), ``series/`` (as
  ``tumblebench simulate`` writes it: ``frames.mrcs``, ``frames.star``, ``truth_map.mrc``, ...), and, as the
  spec's steps say, ``recon/``, ``atoms/``, ``scorecard.json``; plus ``params.json`` (the drawn parameters
  and seeds) and ``record.json`` (the manifest row: status, wall time, figures);
* ``DIR/dataset.zarr/item_NNNNNN`` — its Zarr group (:mod:`tumblebench.dataset.store`);
* or, if a step failed, ``DIR/items/item_NNNNNN.failed.json`` (the same record with the error) and nothing else.

Everything is written in ``DIR/.partial/item_NNNNNN-TOKEN/`` and renamed into place at the end (the Zarr
group first, the item directory last: the item directory is the mark of a finished item). A worker killed
mid-item leaves only a partial directory, which the item's next attempt removes. Every byte of an item except
``record.json`` (which holds the wall time) depends only on the spec, the root seed and ``i``.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tumblebench.dataset.spec import DatasetSpec, draw_parameters, make_config, stream_seed
from tumblebench.dataset.store import (
    FrameWriter,
    atom_label_volume,
    stacking_codes,
    write_truth_arrays,
    write_volume_arrays,
)
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.outputs import write_json

#: Scorecard figures copied into the manifest (``section.key``).
HEADLINE = (
    "poses.median_error_deg", "poses.p90_error_deg", "map.fsc_truth_0.5_A", "map.fsc_half_0.143_A",
    "atoms.recall", "atoms.precision", "atoms.rmsd_pm", "atoms.cn_exact_fraction",
)


def item_name(index: int) -> str:
    """``item_NNNNNN``: the name of item ``index``'s directory and Zarr group."""
    return f"item_{int(index):06d}"


def item_paths(out: str | Path, index: int) -> dict[str, Path]:
    """Where item ``index`` of dataset ``out`` lives: ``dir``, ``failed``, ``zarr`` (its group) and ``partial``."""
    out = Path(out)
    name = item_name(index)
    return {"dir": out / "items" / name, "failed": out / "items" / f"{name}.failed.json",
            "zarr": out / "dataset.zarr" / name, "partial": out / ".partial"}


def read_record(out: str | Path, index: int) -> dict[str, Any] | None:
    """The record of item ``index`` if it finished (done or failed), else None."""
    p = item_paths(out, index)
    for path in (p["dir"] / "record.json", p["failed"]):
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                return None
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _per_frame_truth(sim: Any, nc: Any, mobility: Any) -> dict[str, Any]:
    """The per-frame truth and per-atom labels of a simulated series (arrays for the Zarr group)."""
    from tumblebench.simulator.mobility import surface_weight
    from tumblebench.simulator.orientation import euler_angles

    tr = sim.trajectory
    acq = sim.config.acquisition
    n = sim.n_frames
    _, particles = sim.star_tables()
    poses = np.asarray(tr.poses, float).reshape(n, 3, 3)
    # the atoms' mean positions, frame by frame (hops move some; segments between hops share positions)
    cuts = [0, *sorted({int(f) for f in np.asarray(sim._hop_frame) if 0 < f < n}), n]
    lab = np.empty((n, len(sim.positions), 3))
    for a, b in itertools.pairwise(cuts):
        lab[a:b] = np.einsum("fij,nj->fni", poses[a:b], sim.positions_at(a))
    shifts = np.asarray(tr.shifts, float)[:, :2]
    c = acq.field_px // 2
    xy = c + (lab[..., :2] + shifts[:, None, :]) / acq.sampling
    present = (sim.removed_frame[None, :] < 0) | (sim.removed_frame[None, :] > np.arange(n)[:, None])
    with warnings.catch_warnings():  # gimbal lock at tilt 0/180 is handled by setting psi = 0
        warnings.simplefilter("ignore", UserWarning)
        euler = euler_angles(poses).reshape(n, 3)
    arr = nc.atoms.arrays
    labels = {
        "cn": np.asarray(arr["cn"]).astype(np.int8),
        "surface": np.asarray(arr["surface"]).astype(bool),
        "grain": np.asarray(arr["grain"]).astype(np.int16),
        "mobile": surface_weight(np.asarray(arr["depth"]), mobility) > 0.5,
        "stacking": stacking_codes(arr["stacking"]),
        "u_iso_A2": nc.u_iso.astype(np.float32),
    }
    defocus = 0.5 * (particles["rlnDefocusU"].to_numpy() + particles["rlnDefocusV"].to_numpy())
    return {"rotation": poses, "euler_deg": euler, "shift_A": shifts, "defocus_A": defocus,
            "time_s": np.asarray(tr.times, float), "liquid_thickness_A": np.asarray(tr.thickness, float),
            "xy_px": xy.astype(np.float32), "z_A": lab[..., 2].astype(np.float32), "present": present,
            "labels": labels}


def _run_steps(spec: DatasetSpec, index: int, params: dict[str, Any], tmp: Path, zdir: Path | None,
               log: dict[str, Any]) -> None:
    """Run the item's steps into ``tmp`` (and its Zarr group into ``zdir``); fill ``log`` with figures."""
    import zarr

    from tumblebench.simulator.builder import build
    from tumblebench.simulator.config import to_dict
    from tumblebench.simulator.mrc import read_volume
    from tumblebench.simulator.nanocrystal import structure_summary, write_truth
    from tumblebench.simulator.outputs import write_manifest
    from tumblebench.simulator.series import SeriesSimulation, simulate_series

    where = f"item {index}"
    section = {s: {k[len(s) + 1:]: v for k, v in params.items() if k.startswith(s + ".")}
               for s in ("particle", "series", "reconstruct")}
    pspec = make_config("particle", section["particle"], f"{where}: particle")
    seeds = {"build": stream_seed(spec.seed, index, 1), "series": stream_seed(spec.seed, index, 2),
             "reconstruct": stream_seed(spec.seed, index, 3)}
    nc = build(pspec, seed=seeds["build"])
    log["n_atoms"] = nc.n_atoms
    (tmp / "particle").mkdir()
    write_truth(nc, tmp / "particle")
    write_manifest(tmp / "particle", "build", to_dict(pspec), seeds["build"], {},
                   structure=structure_summary(nc))
    group = zarr.open_group(str(zdir), mode="w", zarr_format=3) if zdir is not None else None
    zarr_s = zarr_cpu_s = 0.0
    zarr_bytes = 0
    if "simulate" in spec.steps:
        scfg = make_config("series", section["series"], f"{where}: series")
        sim = SeriesSimulation(nc, scfg, seeds["series"])
        acq = scfg.acquisition
        writer = FrameWriter(group, sim.n_frames, acq.field_px, acq.field_px) if group is not None else None
        t_frames = [0.0, 0.0]  # wall, CPU (this process) seconds spent writing frames to Zarr

        def on_frame(frame: int, counts: np.ndarray, noise_free: np.ndarray) -> None:
            t, c = time.perf_counter(), time.process_time()
            writer(frame, counts, noise_free)  # type: ignore[misc]
            t_frames[0] += time.perf_counter() - t
            t_frames[1] += time.process_time() - c

        simulate_series(nc, scfg, seeds["series"], tmp / "series", progress=False, workers=1,
                        inputs={"structure": "particle/truth.extxyz"},
                        on_frame=on_frame if writer is not None else None, simulation=sim)
        log["n_frames"] = sim.n_frames
        if group is not None and writer is not None:
            t = time.perf_counter()
            truth = _per_frame_truth(sim, nc, pspec.mobility)
            tmap, _ = read_volume(tmp / "series" / "truth_map.mrc")
            t0, c0 = time.perf_counter(), time.process_time()
            zarr_bytes = writer.bytes_written + write_truth_arrays(
                group, truth_map=tmap, labels=truth.pop("labels"), **truth)
            zarr_s = t_frames[0] + time.perf_counter() - t0
            zarr_cpu_s = t_frames[1] + time.process_time() - c0
            log["truth_arrays_s"] = t0 - t
    if "reconstruct" in spec.steps:
        from tumblebench.analysis.reference import atom_reference
        from tumblebench.reconstruct.pipeline import reconstruct_series

        rparams = {"seed": seeds["reconstruct"], **section["reconstruct"]}
        rcfg = make_config("reconstruct", rparams, f"{where}: reconstruct")
        reconstruct_series(tmp / "series" / "frames.mrcs", tmp / "series" / "frames.star", tmp / "recon", rcfg,
                           progress=False, inputs={"frames": "series/frames.mrcs", "star": "series/frames.star"},
                           reference_model=atom_reference)
        if group is not None:
            vol, sampling = read_volume(tmp / "recon" / "map.mrc")
            from tumblebench.simulator.truth_map import particle_frame_positions

            labels = atom_label_volume(particle_frame_positions(nc), vol.shape[0], sampling)
            t, c = time.perf_counter(), time.process_time()
            zarr_bytes += write_volume_arrays(group, {"map": vol, "atom_labels": labels})
            zarr_s += time.perf_counter() - t
            zarr_cpu_s += time.process_time() - c
    if "atoms" in spec.steps:
        from tumblebench.analysis.io import write_atom_model
        from tumblebench.analysis.model import build_atom_model

        vol, sampling = read_volume(tmp / "recon" / "map.mrc")
        try:
            model = build_atom_model(vol, sampling, where=f"{where}: recon/map.mrc")
        except TumblebenchError as exc:  # a map without atoms is a result, not an item failure
            model = None
            log["atoms_error"] = str(exc)
        if model is not None:
            write_atom_model(model, tmp / "atoms", inputs={"map": "recon/map.mrc"})
    if "score" in spec.steps:
        from tumblebench.validation.scorecard import score_run

        card = score_run(tmp)
        card.pop("timing_s", None)  # wall times differ between runs; they are in record.json
        write_json(tmp / "scorecard.json", card)
        for key in HEADLINE:
            sec, name = key.split(".", 1)
            log[key] = (card.get(sec) or {}).get(name)
    if group is not None:
        group.attrs.update({"index": int(index), "seeds": seeds,
                            "parameters": {k: _jsonable(v) for k, v in params.items()},
                            "steps": list(spec.steps)})
    log["zarr_bytes"] = int(zarr_bytes)
    log["zarr_write_s"] = float(zarr_s)
    log["zarr_write_cpu_s"] = float(zarr_cpu_s)
    log["seeds"] = seeds


def _remove_partials(partial: Path, name: str) -> None:
    """Remove what earlier attempts at this item left behind (a worker killed mid-item)."""
    if partial.is_dir():
        for p in partial.glob(f"{name}-*"):
            shutil.rmtree(p, ignore_errors=True)


def make_item(spec: DatasetSpec, index: int, out: str) -> dict[str, Any]:
    """Make item ``index`` of the dataset in ``out`` (the function a Dask worker runs).

    Idempotent: an item that is already complete (done or failed) is not made again; its record is returned.

    Parameters
    ----------
    spec
        The validated spec (its ``seed`` is the root seed).
    index
        The item's index (0-based).
    out
        The dataset directory (its ``items/``, ``dataset.zarr/`` and ``.partial/`` exist).

    Returns
    -------
    dict
        The item's record: ``index``, ``status`` (``done`` or ``failed``), ``error``, ``seeds``, ``params``,
        ``path``, ``zarr_group``, ``wall_time_s`` (the item's own work, s), ``zarr_bytes``, ``zarr_write_s`` and
        the scorecard figures of :data:`HEADLINE` when it scored.
    """
    import numba
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    out_p = Path(out)
    paths = item_paths(out_p, index)
    name = item_name(index)
    done = read_record(out_p, index)
    if done is not None:
        return done
    params = draw_parameters(spec, index)
    record: dict[str, Any] = {"index": int(index), "status": "done", "error": None,
                              "params": {k: _jsonable(v) for k, v in params.items()},
                              "path": f"items/{name}", "zarr_group": f"dataset.zarr/{name}" if spec.zarr else None}
    log: dict[str, Any] = {}
    _remove_partials(paths["partial"], name)
    tmp = paths["partial"] / f"{name}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    zdir = tmp.with_name(tmp.name + ".zarr") if spec.zarr else None
    try:
        # one core per item: the cluster runs one item per worker thread
        numba.set_num_threads(1)
        with threadpool_limits(1):
            _run_steps(spec, index, params, tmp, zdir, log)
    except Exception as exc:  # any failure of this item is recorded; the set goes on
        shutil.rmtree(tmp, ignore_errors=True)
        if zdir is not None:
            shutil.rmtree(zdir, ignore_errors=True)
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", path=None, zarr_group=None,
                      seeds=log.get("seeds"), traceback=traceback.format_exc(limit=-3))
        record["wall_time_s"] = time.perf_counter() - t0
        _write_atomically(paths["failed"], record)
        return record
    record.update({k: v for k, v in log.items() if k != "seeds"}, seeds=log["seeds"])
    write_json(tmp / "params.json", {"index": int(index), "seeds": log["seeds"], "params": record["params"],
                                     "spec": spec.canonical()})
    record["wall_time_s"] = time.perf_counter() - t0
    write_json(tmp / "record.json", record)
    # the Zarr group first, the item directory last: the item directory marks a finished item
    if zdir is not None:
        if paths["zarr"].exists():  # a group whose item directory never arrived (a kill between the renames)
            shutil.rmtree(paths["zarr"])
        os.rename(zdir, paths["zarr"])
    try:
        os.rename(tmp, paths["dir"])
    except OSError:  # another attempt finished first (a worker presumed dead was not): keep its item
        shutil.rmtree(tmp, ignore_errors=True)
        return read_record(out_p, index) or record
    return record


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    write_json(tmp, data)
    os.replace(tmp, path)
