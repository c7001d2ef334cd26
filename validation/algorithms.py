"""Picking the algorithm of each replaceable stage: built-in names, installed entry points, import paths.

A stage's algorithm (``--algorithm STAGE=SPEC`` on ``reconstruct``, ``atoms`` and ``demo``; the ``[algorithms]``
table of a TOML config; :attr:`tumblebench.validation.pipeline.PipelineConfig.algorithms`) is given as

* a built-in name (:data:`BUILTINS`), configured by the run's configuration;
* the name of an installed plugin: an entry point ``STAGE.NAME`` of the group ``tumblebench.algorithms``;
* an import path ``package.module:attr``.

The object found is a class (created without arguments) or an instance; it must have the method of its stage's
interface (:mod:`tumblebench.stages`) taking one argument. Anything else is one error naming the stage and what
is missing, raised before any work starts.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tumblebench.analysis.config import AtomsConfig
from tumblebench.analysis.model import ThresholdScanDetector
from tumblebench.reconstruct.abinitio import SpherePoses
from tumblebench.reconstruct.config import ReconstructConfig
from tumblebench.reconstruct.lattice import LatticePoses
from tumblebench.reconstruct.refine import ProjectionMatching
from tumblebench.reconstruct.tracking import CorrelationTracker
from tumblebench.simulator.config import config_table, from_dict, read_toml
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.stages import INTERFACES, STAGE_METHODS

#: Entry-point group in which installed packages register algorithms, named ``STAGE.NAME``.
ENTRY_POINT_GROUP = "tumblebench.algorithms"


@dataclass(frozen=True)
class Configs:
    """The configurations the built-ins are made from."""

    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    atoms: AtomsConfig = field(default_factory=AtomsConfig)


def _lattice(c: Configs) -> LatticePoses:
    return LatticePoses(c.reconstruct.abinitio.lattice, c.reconstruct.abinitio.step_deg,
                        c.reconstruct.abinitio.continuity_weight)


#: Built-in algorithms: stage → name → factory of the configured algorithm (names as
#: :data:`tumblebench.validation.commands.algorithm_option.BUILTIN_NAMES`, which the command line lists).
BUILTINS: dict[str, dict[str, Callable[[Configs], Any]]] = {
    "tracking": {"correlation": lambda c: CorrelationTracker(c.reconstruct.tracking)},
    "pose": {"lattice": _lattice, "sphere": lambda c: SpherePoses(c.reconstruct.abinitio)},
    "refine": {"projection-matching": lambda c: ProjectionMatching(c.reconstruct.refine)},
    "atoms": {"threshold-scan": lambda c: ThresholdScanDetector(c.atoms)},
}


def installed(stage: str) -> dict[str, str]:
    """Names of the installed plugins of ``stage`` → their import paths (entry points ``STAGE.NAME``)."""
    out = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        st, _, name = ep.name.partition(".")
        if st == stage and name:
            out[name] = ep.value
    return out


def _load_path(stage: str, spec: str, where: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TumblebenchError(f"{where}: {spec!r} is not an import path module:attr")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TumblebenchError(f"{where}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:
        raise TumblebenchError(f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TumblebenchError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def check_algorithm(stage: str, obj: Any, where: str) -> Any:
    """``obj`` (an instance, or a class created without arguments) if it has the method of ``stage``'s
    interface taking one argument; else :class:`TumblebenchError` naming the stage and what is missing."""
    method = STAGE_METHODS[stage]
    interface = INTERFACES[stage]
    need = f"{interface.__module__}.{interface.__name__} needs a method {method}(data)"
    if inspect.isclass(obj):
        if not callable(getattr(obj, method, None)):
            raise TumblebenchError(f"{where}: class {obj.__qualname__} has no method {method!r} ({need})")
        try:
            obj = obj()
        except TumblebenchError:
            raise
        except Exception as exc:
            raise TumblebenchError(f"{where}: class {obj.__qualname__} cannot be created without arguments "
                                   f"({type(exc).__name__}: {exc}); register an instance instead") from None
    fn = getattr(obj, method, None)
    if not callable(fn):
        raise TumblebenchError(f"{where}: {type(obj).__qualname__} object has no method {method!r} ({need})")
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise TumblebenchError(f"{where}: {type(obj).__qualname__}.{method} does not take one argument "
                               f"({need})") from None
    except ValueError:  # no signature (a builtin): accept
        pass
    return obj


def resolve(stage: str, spec: str, configs: Configs | None = None, where: str | None = None) -> Any:
    """The algorithm of ``stage`` named by ``spec`` (built-in name, installed plugin name or import path).

    Raises
    ------
    TumblebenchError
        Unknown stage or name, a bad import path, a missing attribute, or an object without the interface.
    """
    where = where or f"algorithm {stage}={spec}"
    if stage not in STAGE_METHODS:
        raise TumblebenchError(f"{where}: {stage!r} is not a replaceable stage; expected one of "
                               f"{', '.join(STAGE_METHODS)}")
    spec = spec.strip()
    if ":" in spec:
        return check_algorithm(stage, _load_path(stage, spec, where), where)
    if spec in BUILTINS[stage]:
        return BUILTINS[stage][spec](configs or Configs())
    plugins = installed(stage)
    if spec in plugins:
        return check_algorithm(stage, _load_path(stage, plugins[spec], f"{where} (entry point {stage}.{spec})"),
                               where)
    known = sorted(BUILTINS[stage]) + sorted(plugins)
    raise TumblebenchError(f"{where}: no {stage} algorithm named {spec!r} (known: {', '.join(known)}; or give an "
                           f"import path module:attr)")


def resolve_all(specs: Mapping[str, str], configs: Configs | None = None, stages: tuple[str, ...] | None = None,
                where: str = "algorithm") -> dict[str, Any]:
    """Every stage's algorithm of ``specs`` (stage → spec); ``stages`` limits which stages may be given."""
    allowed = stages or tuple(STAGE_METHODS)
    out = {}
    for stage, spec in specs.items():
        if stage not in allowed:
            raise TumblebenchError(f"{where} {stage}={spec}: this command runs no {stage!r} stage "
                                   f"(its stages: {', '.join(allowed)})")
        out[stage] = resolve(stage, spec, configs, f"{where} {stage}={spec}")
    return out


def load_with_algorithms(cls: type, path: str | Path, table: str | None = None) -> tuple[Any, dict[str, str]]:
    """A TOML config of dataclass ``cls`` (from its sub-table ``table``, if given) and its ``[algorithms]``
    table (stage → spec; {} if none). A file with ``[algorithms]`` alone gives ``cls``'s defaults.

    Raises
    ------
    TumblebenchError
        Missing file, invalid TOML, a bad field (:func:`tumblebench.simulator.config.from_dict`), or an
        ``[algorithms]`` entry that is not a stage or not a string.
    """
    p = Path(path)
    data = read_toml(p)
    algorithms = data.pop("algorithms", {})
    if not isinstance(algorithms, dict) or not all(isinstance(v, str) for v in algorithms.values()):
        raise TumblebenchError(f"{p}: [algorithms] must map stages to names or import paths (strings)")
    for stage in algorithms:
        if stage not in STAGE_METHODS:
            raise TumblebenchError(f"{p}: [algorithms] {stage}: not a replaceable stage; expected one of "
                                   f"{', '.join(STAGE_METHODS)}")
    if table is None:
        return from_dict(cls, data, str(p)), dict(algorithms)
    if table not in data and algorithms:
        return cls(), dict(algorithms)
    return from_dict(cls, config_table(data, table, p), f"{p}: [{table}]"), dict(algorithms)


def check_pose_mode(poses: str, specs: Mapping[str, str], where: str = "algorithm") -> None:
    """Raise unless the stages of ``specs`` run in pose mode ``poses``: ``pose`` only with ``abinitio``,
    ``refine`` not with ``truth`` (true poses are not refined)."""
    if "pose" in specs and poses != "abinitio":
        raise TumblebenchError(f"{where} pose={specs['pose']}: poses = {poses!r} estimates no poses "
                               "(the pose stage runs with poses = 'abinitio')")
    if "refine" in specs and poses == "truth":
        raise TumblebenchError(f"{where} refine={specs['refine']}: poses = 'truth' runs no refinement")
