"""Command-line options that mirror a config dataclass field take their default from that field.

The option's own default is None (so that a TOML file's value, or else the dataclass default, applies), and the
help text names the field and its default, read from the dataclass when ``--help`` is printed; help and code
cannot drift apart. The dataclass is imported only then, so building the parser stays light.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any

#: Attribute set on an argparse action that mirrors a config field: ("module:Class", "dotted.field").
CONFIG_FIELD_ATTR = "config_field"


def add_config_argument(parser: argparse.ArgumentParser, *flags: str, config: str, field: str, help: str,
                        **kwargs: Any) -> argparse.Action:
    """Register an option that overrides config field ``field`` of dataclass ``config`` ("module:Class").

    Parameters
    ----------
    parser
        The sub-command's parser.
    flags
        Option strings, e.g. ``"--model-iterations"``.
    config
        Import path ``module:Class`` of the config dataclass.
    field
        Dotted field path inside it, e.g. ``"refine.model_iterations"``.
    help
        What the option does; the field's name and default are appended when help is printed.
    kwargs
        Passed to :meth:`argparse.ArgumentParser.add_argument` (``default`` is always None).

    Returns
    -------
    argparse.Action
    """
    action = parser.add_argument(*flags, default=None, help=help, **kwargs)
    setattr(action, CONFIG_FIELD_ATTR, (config, field))
    return action


def config_default(config: str, field: str) -> Any:
    """The default of dotted ``field`` in dataclass ``config`` (``"module:Class"``)."""
    module, _, name = config.partition(":")
    obj: Any = getattr(importlib.import_module(module), name)()
    for part in field.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise AttributeError(f"{config}: no config field {field!r}")
        obj = getattr(obj, part)
    return obj


def format_default(value: Any) -> str:
    """How a default is shown in help texts."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    return format(value, "g") if isinstance(value, float) else str(value)


def default_text(action: argparse.Action) -> str | None:
    """``"FIELD; default VALUE"`` for an action made by :func:`add_config_argument`, else None."""
    ref = getattr(action, CONFIG_FIELD_ATTR, None)
    if ref is None:
        return None
    return f"{ref[1]}; default {format_default(config_default(*ref))}"


class ConfigHelpFormatter(argparse.HelpFormatter):
    """Help formatter that appends each config-backed option's field and dataclass default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        extra = default_text(action)
        if extra is not None:
            text = f"{text} ({extra.replace('%', '%%')})"
        return text
