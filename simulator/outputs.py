"""Output directories that are all-or-nothing, and run manifests.

A stage writes its files into a hidden temporary directory beside the requested one and renames it into
place only when everything succeeded; an error or an interrupt leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tumblebench.simulator.errors import TumblebenchError


def check_writable_parent(parent: str | Path, what: str) -> None:
    """Raise :class:`TumblebenchError` unless a directory can be created in ``parent`` (probed: permissions,
    read-only or virtual file systems such as /proc, and a file where a directory should be all show up here,
    before any work); ``what`` names the output in the message."""
    parent = Path(parent)
    if not parent.exists():
        raise TumblebenchError(f"{parent}: parent directory of the {what} does not exist")
    if not parent.is_dir():
        raise TumblebenchError(f"{parent}: parent of the {what} is not a directory")
    probe = parent / f".tumblebench-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise TumblebenchError(
            f"{parent}: cannot write the {what} here ({exc.strerror or type(exc).__name__})") from None
    try:
        probe.rmdir()
    except OSError:
        pass


def check_output_dir(out: str | Path, overwrite: bool) -> Path:
    """Check that ``out`` may be written; return it as a Path.

    Raises
    ------
    TumblebenchError
        ``out`` exists and ``overwrite`` is false, ``out`` is an existing file, or its parent is missing, not a
        directory or not writable.
    """
    out = Path(out)
    if not out.name or out.name in (".", ".."):
        raise TumblebenchError(f"{out}: expected a new directory name for the output")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise TumblebenchError(f"{out}: output path exists and is not a directory")
        if not overwrite:
            raise TumblebenchError(f"{out}: output directory exists; pass --overwrite to replace it")
    check_writable_parent(out.parent, "output directory")
    return out


def check_output_file(path: str | Path) -> Path:
    """Check that file ``path`` can be written (it may exist and is then replaced); return it as a Path.

    Raises
    ------
    TumblebenchError
        ``path`` is a directory, or its parent is missing, not a directory or not writable.
    """
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise TumblebenchError(f"{path}: expected a file name for the output")
    if path.is_dir():
        raise TumblebenchError(f"{path}: output file is an existing directory")
    check_writable_parent(path.parent, "output file")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)(?:-[0-9a-f]+)?$")


def remove_stale_partials(directory: str | Path, name: str | None = None) -> list[Path]:
    """Remove the hidden partial outputs (``.NAME.partial-PID[-hex]``, ``.NAME.old-PID``) that processes which
    are no longer alive left in ``directory`` (killed with SIGKILL, or on a power cut).

    Parameters
    ----------
    directory
        Where to look (not recursively).
    name
        Only debris of this output name (default: any).

    Returns
    -------
    list of Path
        What was removed. Debris of live processes (e.g. another run writing beside this one) is kept.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _DEBRIS.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def new_partial_dir(out: str | Path) -> Path:
    """Create and return a hidden directory beside ``out`` to write it into (``.NAME.partial-PID-hex``; mode
    0777 less the umask), after removing stale partial outputs of ``out`` left by dead processes."""
    out = Path(out)
    remove_stale_partials(out.parent, out.name)
    # created with mode 0777 less the umask, like any directory the user makes (tempfile.mkdtemp's 0700 would
    # survive the rename and hide the results from the user's group)
    while True:
        tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue


def promote_partial_dir(tmp: str | Path, out: str | Path) -> Path:
    """Move the complete directory ``tmp`` to ``out``, replacing an existing ``out`` only now (the old one
    is renamed aside first and removed after the new one is in place)."""
    tmp, out = Path(tmp), Path(out)
    if out.exists() or out.is_symlink():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        if trash.exists():
            shutil.rmtree(trash, ignore_errors=True)
        out.rename(trash)
        tmp.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(out)
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` only if the block completes.

    An existing ``out`` (with ``overwrite``) is replaced only then: an error, an interrupt or a signal
    inside the block leaves the old output as it was and removes the temporary one. Stale temporary
    directories of ``out`` left by dead processes are removed first.

    Parameters
    ----------
    out
        Final output directory.
    overwrite
        Replace an existing ``out``; otherwise an existing ``out`` is an error.

    Yields
    ------
    Path
        The temporary directory to write into (same file system as ``out``).
    """
    out = check_output_dir(out, overwrite)
    tmp = new_partial_dir(out)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    promote_partial_dir(tmp, out)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block completes (a full disk or an interrupt
    leaves the old file, or none, never a truncated one)."""
    path = Path(path)
    remove_stale_partials(path.parent, path.name)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def git_commit() -> str | None:
    """The current git commit of the tumblebench checkout, with ``-dirty`` appended when a tracked Python file
    differs from it (a run of uncommitted code), or None outside a checkout."""
    return _commit_of(Path(__file__).resolve().parent.parent)


def _commit_of(root: Path) -> str | None:
    """:func:`git_commit` of the checkout at ``root``."""
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        commit = res.stdout.strip() if res.returncode == 0 else ""
        if not commit:
            return None
        diff = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "*.py"],
                              capture_output=True, timeout=5)
        return commit + "-dirty" if diff.returncode == 1 else commit
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, Any]:
    """Versions of tumblebench, Python and the numerical libraries, and the git commit."""
    import ase
    import numba
    import scipy

    from tumblebench.simulator import __version__

    return {
        "tumblebench": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "ase": ase.__version__,
        "numba": numba.__version__,
        "git_commit": git_commit(),
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (numpy scalars and arrays converted), all or nothing: the text goes to a
    hidden file beside ``path`` that replaces it only when complete (no 0-byte file on a full disk)."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_manifest(directory: str | Path, stage: str, config: dict[str, Any], seed: int | None,
                   inputs: dict[str, str] | None = None, **extra: Any) -> None:
    """Write ``manifest.json``: stage, resolved config, seed, inputs and versions."""
    data = {"stage": stage, "seed": seed, "config": config, "inputs": inputs or {}, "versions": versions()}
    data.update(extra)
    write_json(Path(directory) / "manifest.json", data)
