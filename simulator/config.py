"""Typed, validated configuration objects loaded from TOML.

Each stage defines its configuration as a (frozen) dataclass whose fields carry defaults realistic for
2–3 nm Pt at 300 kV, and whose ``validate()`` method (optional) raises :class:`TumblebenchError` naming the
field. :func:`load_config` reads a TOML file (or a table of one) into such a dataclass, rejecting unknown
keys and wrong types, so that a typo in a config file is an error and never silently ignored.
Nested dataclass fields map to TOML sub-tables.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from tumblebench.simulator.errors import TumblebenchError

T = TypeVar("T")

#: TOML keys that were renamed (old -> new); an old key is still an unknown field, with the new name in the message.
RENAMED_FIELDS: dict[str, str] = {"pixel_size_A": "sampling"}

#: Largest accepted seed. numpy's ``SeedSequence`` takes any non-negative integer, but seeds are also stored
#: in int64 columns and in ``atoms.info`` (extxyz), so they are kept in [0, 2**63 − 1].
MAX_SEED = 2**63 - 1


def check_seed(seed: Any, where: str = "seed") -> int:
    """Return ``seed`` as an int after checking it lies in [0, :data:`MAX_SEED`].

    Raises
    ------
    TumblebenchError
        Not an integer, negative or too large; the message names ``where`` (e.g. ``"--seed"``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TumblebenchError(f"{where} = {seed!r}: expected an integer in [0, 2**63 - 1]")
    if not 0 <= seed <= MAX_SEED:
        raise TumblebenchError(f"{where} = {seed}: expected an integer in [0, 2**63 - 1]")
    return int(seed)


def check_range(value: float, lo: float, hi: float, name: str, unit: str = "", lo_open: bool = False) -> None:
    """Raise :class:`TumblebenchError` unless ``lo <= value <= hi`` (``lo < value`` if ``lo_open``).

    The message names the field, its value, the closed or half-open interval and the unit, e.g.
    ``"sampling = 100.0 Å is outside (0, 2] Å"``. NaN is always outside.
    """
    v = float(value)
    ok = (lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        u = f" {unit}" if unit else ""
        left = "(" if lo_open else "["
        raise TumblebenchError(f"{name} = {value!r}{u} is outside {left}{lo:g}, {hi:g}]{u}")


#: Resident memory of a tumblebench process before its run allocates anything (the interpreter, numpy, scipy,
#: numba, ase and the compiled kernels), bytes; every memory estimate adds it once per process.
PROCESS_BYTES = 0.6e9


def available_memory() -> int:
    """Memory (bytes) a new run can use: ``MemAvailable`` of /proc/meminfo, else free physical pages.

    Returns a very large number where neither is known (the check then never refuses).
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 1 << 62


def check_memory(need_bytes: float, what: str, reduce: str) -> None:
    """Refuse a run whose estimated memory exceeds what the machine has available now.

    Parameters
    ----------
    need_bytes
        Estimated peak resident memory of the run, bytes.
    what
        What the estimate covers (``"simulate"``, ``"reconstruct"``), for the message.
    reduce
        What the user can reduce, e.g. ``"acquisition.field_px or the worker count"``.

    Raises
    ------
    TumblebenchError
        One line with both figures in GB and what to reduce.
    """
    have = available_memory()
    if not math.isfinite(need_bytes) or need_bytes > have:
        raise TumblebenchError(
            f"{what} would need about {need_bytes / 1e9:.1f} GB of memory but {have / 1e9:.1f} GB are "
            f"available; reduce {reduce}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert (int→float, list→tuple, table→dataclass)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except TumblebenchError as exc:
                errors.append(str(exc))
        raise TumblebenchError(f"{where}: {value!r} is not one of {', '.join(_type_name(a) for a in args)}")
    if origin is typing.Literal:
        if value not in args:
            raise TumblebenchError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TumblebenchError(f"{where}: expected a table for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise TumblebenchError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TumblebenchError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise TumblebenchError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TumblebenchError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):  # TOML allows nan and inf; no field means either
            raise TumblebenchError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TumblebenchError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TumblebenchError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TumblebenchError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types, then call ``validate()``.

    Parameters
    ----------
    cls
        A dataclass type.
    data
        Field values; missing fields take their defaults.
    where
        Prefix for error messages (file name and table path).

    Raises
    ------
    TumblebenchError
        Unknown key, wrong type, or a value the dataclass's ``validate`` rejects.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        renamed = "".join(f" ({k} is now {RENAMED_FIELDS[k]})" for k in unknown if RENAMED_FIELDS.get(k) in fields)
        raise TumblebenchError(
            f"{where}: unknown field(s) {', '.join(unknown)}{renamed}; expected some of {', '.join(sorted(fields))}"
        )
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except TumblebenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise TumblebenchError(f"{where}: {exc}") from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except TumblebenchError as exc:
            raise TumblebenchError(f"{where}: {exc}") from None
    return obj


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file ``path`` as a dict (the one reader of every config file).

    Raises
    ------
    TumblebenchError
        The file is missing, a directory, unreadable, not UTF-8 or not TOML; one line naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise TumblebenchError(f"{path}: is a directory; expected a TOML config file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TumblebenchError(f"{path}: no such config file") from None
    except OSError as exc:
        raise TumblebenchError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TumblebenchError(f"{path}: not UTF-8 text (byte {exc.start}); expected a TOML config file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TumblebenchError(f"{path}: not valid TOML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise TumblebenchError(f"{path}: not valid TOML (nested too deeply)") from None


def config_table(data: dict[str, Any], table: str, path: str | Path) -> dict[str, Any]:
    """Sub-table ``table`` of a TOML document read from ``path``.

    Raises
    ------
    TumblebenchError
        The table is missing or is not a table.
    """
    if table not in data:
        raise TumblebenchError(f"{path}: missing table [{table}]")
    sub = data[table]
    if not isinstance(sub, dict):
        raise TumblebenchError(f"{path}: [{table}] must be a table, got {sub!r}")
    return sub


def load_config(cls: type[T], path: str | Path, table: str | None = None) -> T:
    """Load dataclass ``cls`` from TOML file ``path`` (optionally from sub-table ``table``).

    Raises
    ------
    TumblebenchError
        The file is missing, a directory, not UTF-8 or not TOML, or a field is unknown, mistyped or out of
        range. The message names the file and the field.
    """
    data = read_toml(path)
    if table is None:
        return from_dict(cls, data, str(path))
    return from_dict(cls, config_table(data, table, path), f"{path}: [{table}]")


def to_dict(obj: Any) -> dict[str, Any]:
    """The resolved configuration as plain data (for ``manifest.json``)."""
    return dataclasses.asdict(obj)
