"""Typed, validated configuration objects loaded from TOML.

Each stage defines its configuration as a (frozen) dataclass whose fields carry defaults realistic for
2–3 nm Pt at 300 kV, and whose ``validate()`` method (optional) raises :class:`TumblebenchError` naming the
field. :func:`load_config` reads a TOML file (or a table of one) into such a dataclass, rejecting unknown
keys and wrong types, so that a typo in a config file is an error and never silently ignored.
Nested dataclass fields map to TOML sub-tables.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from tumblebench.simulator.errors import TumblebenchError

T = TypeVar("T")

#: TOML keys that were renamed (old -> new); an old key is still an unknown field, with the new name in the message.
RENAMED_FIELDS: dict[str, str] = {"pixel_size_A": "sampling"}


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


def load_config(cls: type[T], path: str | Path, table: str | None = None) -> T:
    """Load dataclass ``cls`` from TOML file ``path`` (optionally from sub-table ``table``).

    Raises
    ------
    TumblebenchError
        The file is missing or not TOML, or a field is unknown, mistyped or out of range. The message
        names the file and the field.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise TumblebenchError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TumblebenchError(f"{path}: not valid TOML ({exc})") from None
    where = str(path)
    if table is not None:
        if table not in data:
            raise TumblebenchError(f"{path}: missing table [{table}]")
        data = data[table]
        where = f"{path}: [{table}]"
    return from_dict(cls, data, where)


def to_dict(obj: Any) -> dict[str, Any]:
    """The resolved configuration as plain data (for ``manifest.json``)."""
    return dataclasses.asdict(obj)
