"""RELION 3.1 STAR files of an image series: a ``data_optics`` and a ``data_particles`` table.

Written and read through the ``starfile`` package. Columns (see ``notes/INTERFACES.md``, B2):

``data_optics``
    rlnOpticsGroup, rlnVoltage (kV), rlnSphericalAberration (mm), rlnAmplitudeContrast, rlnImagePixelSize (Å),
    rlnImageSize (px, the full frame), tbMode (imaging mode), tbBoxSize (px, the reconstruction box the truth
    map uses).
``data_particles``
    rlnImageName (``000001@frames.mrcs``), rlnAngleRot / rlnAngleTilt / rlnAnglePsi (true pose at
    mid-exposure, degrees, RELION ZYZ; :func:`tumblebench.simulator.orientation.pose_matrix`), rlnCoordinateX /
    rlnCoordinateY (true particle centre in the full frame, pixels, 0-based, pixel (row i, col j) centred at
    (x = j, y = i)), rlnOriginXAngst / rlnOriginYAngst (0 in the full frame), rlnDefocusU / rlnDefocusV (Å,
    underfocus positive, including the height change), rlnDefocusAngle (degrees), rlnOpticsGroup, and the
    tumblebench truth columns tbTime (s, mid-exposure), tbDose (e⁻/Å² in this frame), tbCumulativeDose
    (e⁻/Å² up to the end of this frame), tbLiquidThickness (Å), tbHeight (Å, along the beam, downstream
    positive). ``simulate`` adds tbRotationalDiffusion (rad²/s, D_r at mid-exposure) and tbAtomsPresent
    (atoms not yet dissolved); readers keep extra columns.

The file starts with RELION's ``# version 30001`` line and carries no time stamp, so the same series gives
the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.orientation import pose_matrix

OPTICS_COLUMNS: tuple[str, ...] = (
    "rlnOpticsGroup", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize",
    "rlnImageSize", "tbMode", "tbBoxSize",
)
PARTICLE_COLUMNS: tuple[str, ...] = (
    "rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnCoordinateX", "rlnCoordinateY",
    "rlnOriginXAngst", "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup",
    "tbTime", "tbDose", "tbCumulativeDose", "tbLiquidThickness", "tbHeight",
)
_NUMERIC_PARTICLE = tuple(c for c in PARTICLE_COLUMNS if c != "rlnImageName")
_NUMERIC_OPTICS = tuple(c for c in OPTICS_COLUMNS if c != "tbMode")


def _check_table(df: pd.DataFrame, required: tuple[str, ...], numeric: tuple[str, ...], where: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TumblebenchError(f"{where}: missing column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise TumblebenchError(f"{where}: table has no rows")
    for c in numeric:
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise TumblebenchError(f"{where}: column {c} must hold finite numbers")


def write_star(path: str | Path, optics: pd.DataFrame, particles: pd.DataFrame) -> None:
    """Write a RELION 3.1 STAR file with ``data_optics`` and ``data_particles`` (atomically).

    Parameters
    ----------
    path
        Output file (``.star``).
    optics, particles
        Tables holding at least :data:`OPTICS_COLUMNS` / :data:`PARTICLE_COLUMNS` (more columns are kept).

    Raises
    ------
    TumblebenchError
        A required column is missing or holds non-finite numbers.
    """
    path = Path(path)
    _check_table(optics, OPTICS_COLUMNS, _NUMERIC_OPTICS, f"{path}: data_optics")
    _check_table(particles, PARTICLE_COLUMNS, _NUMERIC_PARTICLE, f"{path}: data_particles")
    groups = set(pd.to_numeric(particles["rlnOpticsGroup"]).astype(int))
    known = set(pd.to_numeric(optics["rlnOpticsGroup"]).astype(int))
    if not groups <= known:
        raise TumblebenchError(f"{path}: data_particles uses optics group(s) {sorted(groups - known)} "
                               "that data_optics does not define")
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        starfile.write({"optics": optics, "particles": particles}, tmp, float_format="%.6f")
        lines = tmp.read_text().splitlines(keepends=True)
        # replace starfile's time-stamped banner by RELION 3.1's version line (same series, same bytes)
        while lines and (lines[0].startswith("#") or not lines[0].strip()):
            lines.pop(0)
        tmp.write_text("\n# version 30001\n\n" + "".join(lines))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_star(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a series STAR file; return (optics, particles) tables with their columns validated.

    Raises
    ------
    TumblebenchError
        Missing or unreadable file, missing ``data_optics``/``data_particles`` block, missing column or
        non-numeric values.
    """
    path = Path(path)
    if not path.exists():
        raise TumblebenchError(f"{path}: no such STAR file")
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=["rlnImageName", "tbMode"])
    except Exception as exc:  # starfile raises many kinds on corrupt input
        raise TumblebenchError(f"{path}: not a readable STAR file ({type(exc).__name__}: {exc})") from None
    for name in ("optics", "particles"):
        if name not in blocks or not isinstance(blocks[name], pd.DataFrame):
            raise TumblebenchError(f"{path}: missing loop block data_{name}")
    optics, particles = blocks["optics"], blocks["particles"]
    _check_table(optics, OPTICS_COLUMNS, _NUMERIC_OPTICS, f"{path}: data_optics")
    _check_table(particles, PARTICLE_COLUMNS, _NUMERIC_PARTICLE, f"{path}: data_particles")
    return optics, particles


def image_indices(particles: pd.DataFrame, where: str) -> tuple[np.ndarray, list[str]]:
    """Frame indices (0-based) and stack file names (base names) of ``rlnImageName`` (``INDEX@STACK``, 1-based).

    Raises
    ------
    TumblebenchError
        A name that is not ``INDEX@STACK`` with a positive integer INDEX; the message names the row.
    """
    names = particles["rlnImageName"].astype(str).tolist()
    idx = np.empty(len(names), np.int64)
    stacks: list[str] = []
    for row, name in enumerate(names):
        head, sep, stack = name.partition("@")
        head = head.strip()
        if not sep or not head.isdigit() or not head.isascii() or int(head) < 1 or not stack.strip():
            raise TumblebenchError(f"{where}: row {row + 1}: rlnImageName {name!r} is not INDEX@STACK with a "
                                   "1-based frame index")
        idx[row] = int(head) - 1 if len(head) < 19 else np.iinfo(np.int64).max
        stacks.append(Path(stack.strip()).name)
    return idx, stacks


def order_by_frame(particles: pd.DataFrame, where: str, stack_name: str | None = None,
                   n_frames: int | None = None) -> pd.DataFrame:
    """The particles table with row ``i`` describing frame ``i`` of the stack, as ``rlnImageName`` says.

    RELION matches a row to an image by its ``rlnImageName`` (``INDEX@STACK``, 1-based), not by its position in
    the table: rows in another order are put in frame order here, so that they are read correctly.

    Parameters
    ----------
    particles
        A ``data_particles`` table.
    where
        The STAR file, for messages.
    stack_name
        The image stack the rows must name (its base name; a directory part of STACK is ignored); None: any
        one stack.
    n_frames
        Frames of the stack; None: the number of rows.

    Raises
    ------
    TumblebenchError
        A row names another stack (or rows name several), an index is outside the stack or repeated, or a
        frame of the stack has no row.
    """
    idx, stacks = image_indices(particles, where)
    names = sorted(set(stacks))
    if stack_name is not None and names != [Path(stack_name).name]:
        other = [n for n in names if n != Path(stack_name).name]
        raise TumblebenchError(f"{where}: rlnImageName names stack {other[0]!r}, not {Path(stack_name).name!r}; "
                               "the STAR file must describe the frames it is given with")
    if len(names) > 1:
        raise TumblebenchError(f"{where}: rlnImageName names several stacks ({', '.join(names[:3])}); expected one")
    n = len(particles) if n_frames is None else int(n_frames)
    bad = np.flatnonzero(idx >= n)
    if bad.size:
        raise TumblebenchError(f"{where}: row {bad[0] + 1}: rlnImageName {particles['rlnImageName'].iloc[bad[0]]!r} "
                               f"is beyond the stack's {n} frames")
    counts = np.bincount(idx, minlength=n)
    if np.any(counts > 1):
        f = int(np.flatnonzero(counts > 1)[0])
        raise TumblebenchError(f"{where}: rlnImageName names frame {f + 1} more than once")
    if np.any(counts == 0):
        f = int(np.flatnonzero(counts == 0)[0])
        raise TumblebenchError(f"{where}: {len(particles)} rows for {n} frames; frame {f + 1} has no row")
    if np.all(idx == np.arange(n)):
        return particles
    return particles.iloc[np.argsort(idx, kind="stable")].reset_index(drop=True)


def star_poses(particles: pd.DataFrame) -> np.ndarray:
    """Pose matrices (particle → lab, :mod:`tumblebench.simulator.orientation`) from a particles table, (F, 3, 3)."""
    return pose_matrix(particles["rlnAngleRot"].to_numpy(float), particles["rlnAngleTilt"].to_numpy(float),
                       particles["rlnAnglePsi"].to_numpy(float))


def image_names(n_frames: int, stack_name: str = "frames.mrcs") -> list[str]:
    """RELION image names ``000001@frames.mrcs`` … for ``n_frames`` frames (1-based)."""
    width = max(6, len(str(n_frames)))
    return [f"{i:0{width}d}@{stack_name}" for i in range(1, n_frames + 1)]
