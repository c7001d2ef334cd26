"""The dataset spec: a distribution (or a fixed value) for any builder, simulator and reconstruction parameter.

A spec is a TOML file with up to four tables::

    [dataset]                        # what runs per item
    steps = ["build", "simulate"]    # build, simulate, reconstruct, atoms, score
    seed = 0                         # root seed (``--seed`` overrides it)
    zarr = true                      # also write the item into DIR/dataset.zarr

    [particle]                       # fields of simulator.builder.NanocrystalSpec (dotted keys = sub-tables)
    shape.kind = { dist = "choice", values = ["cuboctahedron", "icosahedron"], weights = [2, 1] }
    shape.n_atoms = { dist = "uniform_int", low = 147, high = 309 }

    [series]                         # fields of simulator.series.SeriesConfig
    acquisition.dose_per_frame_e_per_A2 = { dist = "loguniform", low = 20.0, high = 200.0 }

    [reconstruct]                    # fields of reconstruct.config.ReconstructConfig
    poses = "truth"

A value that is a table with a ``dist`` key is a distribution; anything else is a fixed value.

=================  ==========================================  ===================================================
``dist``           keys                                        draw
=================  ==========================================  ===================================================
``uniform``        ``low``, ``high``                           U(low, high)
``loguniform``     ``low``, ``high`` (> 0)                     exp(U(ln low, ln high))
``normal``         ``mean``, ``sd``, optional ``low``/``high``  N(mean, sd²) truncated to [low, high]; missing
                                                               bounds are the parameter's physical range
                                                               (:data:`PHYSICAL_RANGES`)
``choice``         ``values``, optional ``weights``            one of the values (any TOML value, lists too)
``uniform_int``    ``low``, ``high``                           an integer in [low, high], equally likely
``loguniform_int`` ``low``, ``high`` (> 0)                     round(loguniform) in [low, high]
``normal_int``     as ``normal``                               round(truncated normal) in [low, high]
=================  ==========================================  ===================================================

Validation on load (:func:`load_spec`): an unknown table, parameter or distribution key is refused, and so is
a distribution any of whose extreme values (each bound, each choice) the parameter's own ``validate`` refuses
when the other parameters sit at their central values (fixed value, midpoint, geometric mean, clipped mean,
first choice). A combination of draws that is unphysical only jointly (a particle larger than the box, say)
fails that item alone, with its error recorded in the manifest.

Determinism: item ``i`` of a dataset with root seed ``r`` uses ``SeedSequence(r).spawn(n)[i]``, i.e.
``SeedSequence(r, spawn_key=(i,))``; its children are the streams of the parameters (one per parameter,
``spawn_key=(i, 0, crc32(name))``, so changing one distribution does not reshuffle the others) and the seeds of
the build, the series and the reconstruction (``spawn_key=(i, 1)``, ``(i, 2)``, ``(i, 3)``). An item's draws
and bytes depend on nothing else: not on ``n``, the number of workers or the order of completion.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.special

from tumblebench.reconstruct.config import ReconstructConfig
from tumblebench.simulator.builder import NanocrystalSpec
from tumblebench.simulator.config import check_seed, from_dict, read_toml
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.series import SeriesConfig

#: The steps an item can run, in order, and the step each needs before it.
STEPS: tuple[str, ...] = ("build", "simulate", "reconstruct", "atoms", "score")
_NEEDS = {"simulate": "build", "reconstruct": "simulate", "atoms": "reconstruct", "score": "simulate"}

#: The parameter tables and the configuration each one fills.
SECTIONS: dict[str, type] = {"particle": NanocrystalSpec, "series": SeriesConfig, "reconstruct": ReconstructConfig}

DISTRIBUTIONS: tuple[str, ...] = (
    "uniform", "loguniform", "normal", "choice", "uniform_int", "loguniform_int", "normal_int")
_KEYS = {
    "uniform": ({"low", "high"}, set()), "loguniform": ({"low", "high"}, set()),
    "normal": ({"mean", "sd"}, {"low", "high"}), "choice": ({"values"}, {"weights"}),
}
_INF = math.inf
#: Physical range (low, high) of parameters often drawn from a normal distribution; a normal without
#: bounds is truncated to it. Open or closed ends are decided by the parameter's own validation.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "particle.lattice_constant_A": (1.5, 8.0),
    "particle.shape.diameter_A": (0.0, 200.0),
    "particle.shape.n_atoms": (13, 200_000),
    "particle.defects.vacancy_fraction": (0.0, 0.5),
    "particle.defects.n_adatoms": (0, _INF),
    "particle.strain.uniform": (-0.1, 0.1),
    "particle.strain.shell": (-0.1, 0.1),
    "particle.strain.shell_decay_A": (0.0, _INF),
    "particle.mobility.u_core_A2": (0.0, _INF),
    "particle.mobility.u_surface_A2": (0.0, _INF),
    "particle.mobility.doi_core": (0.0, 1.0),
    "particle.mobility.doi_surface": (0.0, 1.0),
    "particle.mobility.penetration_depth_A": (0.0, _INF),
    "particle.mobility.scatter": (0.0, _INF),
    "series.acquisition.n_frames": (1, _INF),
    "series.acquisition.frame_rate_hz": (0.0, _INF),
    "series.acquisition.exposure_fraction": (0.0, 1.0),
    "series.acquisition.dose_per_frame_e_per_A2": (0.0, _INF),
    "series.acquisition.dose_rate_e_per_A2_per_s": (0.0, _INF),
    "series.dynamics.rotation.diffusion_rad2_per_s": (0.0, _INF),
    "series.dynamics.translation.diffusion_A2_per_s": (0.0, _INF),
    "series.dynamics.translation.confinement_A": (0.0, _INF),
    "series.dynamics.height.diffusion_A2_per_s": (0.0, _INF),
    "series.dynamics.height.confinement_A": (0.0, _INF),
    "series.liquid.initial_thickness_A": (0.0, _INF),
    "series.liquid.final_thickness_A": (0.0, _INF),
    "series.liquid.time_constant_s": (0.0, _INF),
    "series.thermal.scale": (0.0, _INF),
    "series.imaging.optics.defocus_A": (-_INF, _INF),
}


# ------------------------------------------------------------------------------------------ distributions


@dataclass(frozen=True)
class Distribution:
    """One parameter's distribution.

    Attributes
    ----------
    kind
        One of :data:`DISTRIBUTIONS` (``fixed`` for a fixed value).
    low, high
        Bounds of the support (uniform, loguniform, truncated normal and their integer versions).
    mean, sd
        Mean and standard deviation of the (untruncated) normal.
    values
        The choices (``choice``) or the fixed value (``fixed``, one element).
    weights
        Normalised probabilities of the choices.
    physical
        Whether ``low`` / ``high`` is the parameter's physical limit (a normal's default truncation), which
        may itself be excluded (a dose > 0): such an end is not checked and never drawn.
    """

    kind: str
    low: float = math.nan
    high: float = math.nan
    mean: float = math.nan
    sd: float = math.nan
    values: tuple[Any, ...] = ()
    weights: tuple[float, ...] = ()
    physical: tuple[bool, bool] = (False, False)

    @property
    def integer(self) -> bool:
        """True for the integer versions."""
        return self.kind.endswith("_int")

    def draw(self, rng: np.random.Generator) -> Any:
        """One draw from ``rng`` (a value inside the support, ints for the integer versions)."""
        base = self.kind.removesuffix("_int")
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return self.values[int(rng.choice(len(self.values), p=np.asarray(self.weights)))]
        if self.kind == "uniform_int":
            return int(rng.integers(int(self.low), int(self.high), endpoint=True))
        u = rng.random()
        if base == "uniform":
            x = self.low + (self.high - self.low) * u
        elif base == "loguniform":
            x = math.exp(math.log(self.low) + (math.log(self.high) - math.log(self.low)) * u)
        else:  # normal, truncated by inverting the CDF between the bounds' quantiles
            x = self.mean + self.sd * _truncated_normal_quantile(
                u, (self.low - self.mean) / self.sd, (self.high - self.mean) / self.sd)
        x = min(max(x, self.low), self.high)  # the last ulp of float rounding
        if self.physical[0] and x <= self.low:
            x = math.nextafter(self.low, self.high)
        if self.physical[1] and x >= self.high:
            x = math.nextafter(self.high, self.low)
        return self._as_int(x) if self.integer else float(x)

    def _as_int(self, x: float) -> int:
        """``x`` rounded to the nearest integer inside the support."""
        k = round(x)
        if math.isfinite(self.low):
            k = max(k, math.ceil(self.low))
        if math.isfinite(self.high):
            k = min(k, math.floor(self.high))
        return int(k)

    def extremes(self) -> list[Any]:
        """The values that bound the support: both bounds, or every choice."""
        if self.kind in ("fixed", "choice"):
            return list(self.values)
        # an infinite end or the physical limit itself has nothing to check
        ends = [x for x, phys in zip((self.low, self.high), self.physical, strict=True)
                if math.isfinite(x) and not phys]
        return [self._as_int(x) for x in ends] if self.integer else [float(x) for x in ends]

    def central(self) -> Any:
        """A central value (fixed value, midpoint, geometric mean, median, first choice)."""
        if self.kind in ("fixed", "choice"):
            return self.values[0]
        base = self.kind.removesuffix("_int")
        if base == "uniform":
            x = 0.5 * (self.low + self.high)
        elif base == "loguniform":
            x = math.sqrt(self.low * self.high)
        else:  # the median of the truncated normal: inside the support even where the mean is not
            x = self.mean + self.sd * _truncated_normal_quantile(
                0.5, (self.low - self.mean) / self.sd, (self.high - self.mean) / self.sd)
        return self._as_int(x) if self.integer else float(x)

    def describe(self) -> dict[str, Any]:
        """Plain data for the dataset record (JSON)."""
        out: dict[str, Any] = {"dist": self.kind}
        if self.kind in ("fixed", "choice"):
            out["values"] = list(self.values)
            if self.kind == "choice":
                out["weights"] = list(self.weights)
        else:
            out.update(low=self.low, high=self.high)
            if self.kind.startswith("normal"):
                out.update(mean=self.mean, sd=self.sd)
        return out


def _truncated_normal_quantile(u: float, a: float, b: float) -> float:
    """The ``u``-quantile of the standard normal truncated to [a, b], computed in log space (accurate far in
    either tail; a right-tail interval is mirrored into the left tail, where the CDF has full precision)."""
    if a > 0:
        return -_truncated_normal_quantile(1.0 - u, -b, -a)
    la, lb = float(scipy.special.log_ndtr(a)), float(scipy.special.log_ndtr(b))
    lo_part = la + math.log1p(-u) if u < 1.0 else -math.inf
    hi_part = lb + math.log(u) if u > 0.0 else -math.inf
    z = float(scipy.special.ndtri_exp(np.logaddexp(lo_part, hi_part)))
    return min(max(z, a), b)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TumblebenchError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def parse_distribution(table: dict[str, Any], where: str, name: str = "") -> Distribution:
    """Read one distribution table (``{dist = ..., ...}``).

    Parameters
    ----------
    table
        The TOML inline table.
    where
        Prefix of error messages (file and parameter).
    name
        The parameter's full dotted name (its physical range bounds a normal without bounds).

    Raises
    ------
    TumblebenchError
        Unknown ``dist`` or key, missing key, empty or reversed range, non-positive ``sd``, bad weights.
    """
    kind = table.get("dist")
    if kind not in DISTRIBUTIONS:
        raise TumblebenchError(f"{where}: dist = {kind!r} is not one of {', '.join(DISTRIBUTIONS)}")
    need, optional = _KEYS[kind.removesuffix("_int")]
    keys = set(table) - {"dist"}
    if keys - need - optional:
        raise TumblebenchError(f"{where}: unknown key(s) {', '.join(sorted(keys - need - optional))} for "
                               f"dist = {kind!r}; expected {', '.join(sorted(need | optional))}")
    if need - keys:
        raise TumblebenchError(f"{where}: dist = {kind!r} needs {', '.join(sorted(need - keys))}")
    if kind == "choice":
        values = table["values"]
        if not isinstance(values, list) or not values:
            raise TumblebenchError(f"{where}: values: expected a non-empty list, got {values!r}")
        w = table.get("weights", [1.0] * len(values))
        if not isinstance(w, list) or len(w) != len(values):
            raise TumblebenchError(f"{where}: weights: expected {len(values)} numbers, got {w!r}")
        wf = [_number(x, f"{where}: weights") for x in w]
        if any(x < 0 for x in wf) or sum(wf) <= 0:
            raise TumblebenchError(f"{where}: weights: expected non-negative numbers with a positive sum, got {w!r}")
        total = math.fsum(wf)
        return Distribution("choice", values=tuple(_freeze(v) for v in values), weights=tuple(x / total for x in wf))
    if kind.startswith("normal"):
        mean = _number(table["mean"], f"{where}: mean")
        sd = _number(table["sd"], f"{where}: sd")
        if not sd > 0:
            raise TumblebenchError(f"{where}: sd = {sd}: expected > 0")
        phys = PHYSICAL_RANGES.get(name)
        if ("low" not in table or "high" not in table) and phys is None:
            raise TumblebenchError(f"{where}: dist = {kind!r} needs low and high (no physical range is known for "
                                   "this parameter)")
        low = _number(table["low"], f"{where}: low") if "low" in table else phys[0]  # type: ignore[index]
        high = _number(table["high"], f"{where}: high") if "high" in table else phys[1]  # type: ignore[index]
        if not low < high:
            raise TumblebenchError(f"{where}: low = {low}, high = {high}: expected low < high")
        if kind == "normal_int" and math.floor(high) < math.ceil(low):
            raise TumblebenchError(f"{where}: [{low}, {high}] holds no integer")
        return Distribution(kind, low=low, high=high, mean=mean, sd=sd,
                            physical=("low" not in table, "high" not in table))
    low = _number(table["low"], f"{where}: low")
    high = _number(table["high"], f"{where}: high")
    if not low < high:
        raise TumblebenchError(f"{where}: low = {low}, high = {high}: expected low < high")
    if kind.startswith("loguniform") and not low > 0:
        raise TumblebenchError(f"{where}: low = {low}: a loguniform distribution needs low > 0")
    if kind.endswith("_int") and math.floor(high) < math.ceil(low):
        raise TumblebenchError(f"{where}: [{low}, {high}] holds no integer")
    if kind == "uniform_int" and not (float(low).is_integer() and float(high).is_integer()):
        raise TumblebenchError(f"{where}: uniform_int needs integer bounds, got low = {low}, high = {high}")
    return Distribution(kind, low=low, high=high)


def _freeze(value: Any) -> Any:
    """Lists become tuples (hashable, as the configs store them)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed and validated dataset spec.

    Attributes
    ----------
    steps
        The steps each item runs (a subset of :data:`STEPS`, in order).
    seed
        Root seed of the dataset.
    zarr
        Write each item into the dataset's Zarr store as well.
    parameters
        Dotted parameter name (``particle.shape.kind``, ``series.acquisition.n_frames``, ...) -> its
        distribution, sorted by name.
    source
        The file it was read from (for messages).
    """

    steps: tuple[str, ...] = ("build", "simulate")
    seed: int = 0
    zarr: bool = True
    parameters: dict[str, Distribution] = field(default_factory=dict)
    source: str = "spec"

    def canonical(self) -> dict[str, Any]:
        """The spec as plain data, independent of the file's formatting (what makes two specs the same)."""
        return {"steps": list(self.steps), "seed": int(self.seed), "zarr": bool(self.zarr),
                "parameters": {k: _thaw(d.describe()) for k, d in self.parameters.items()}}

    def canonical_json(self) -> str:
        """:meth:`canonical` as compact, key-sorted JSON."""
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    def with_seed(self, seed: int) -> DatasetSpec:
        """The same spec with another root seed."""
        return dataclasses.replace(self, seed=check_seed(seed, "--seed"))

    def section(self, name: str) -> dict[str, Distribution]:
        """The parameters of table ``name`` (``particle``, ``series`` or ``reconstruct``), keys without it."""
        p = name + "."
        return {k[len(p):]: d for k, d in self.parameters.items() if k.startswith(p)}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass an annotation holds (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def _walk(cls: type, table: dict[str, Any], prefix: str, file: str, out: dict[str, Distribution]) -> None:
    fields = _field_types(cls)
    for key, value in table.items():
        name = f"{prefix}.{key}"
        where = f"{file}: {name}"
        if key not in fields:
            raise TumblebenchError(f"{where}: unknown parameter; {cls.__name__} has {', '.join(sorted(fields))}")
        sub = _dataclass_of(fields[key])
        if isinstance(value, dict) and "dist" in value:
            out[name] = parse_distribution(value, where, name)
        elif isinstance(value, dict) and sub is not None:
            _walk(sub, value, name, file, out)
        else:
            out[name] = Distribution("fixed", values=(_freeze(value),))


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` -> ``{"a": {"b": 1, "c": 2}}`` (values of list type are passed as lists)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _thaw(value)
    return out


def make_config(section: str, values: dict[str, Any], where: str) -> Any:
    """The configuration of table ``section`` with ``values`` (dotted names without the table), validated.

    Raises
    ------
    TumblebenchError
        A value of the wrong type or one its ``validate`` refuses; the message starts with ``where``.
    """
    return from_dict(SECTIONS[section], nest(values), where)


def _check_ranges(spec: DatasetSpec, file: str) -> None:
    for section in SECTIONS:
        params = spec.section(section)
        central = {k: d.central() for k, d in params.items()}
        try:
            make_config(section, central, f"{file}: {section}")
        except TumblebenchError as exc:
            raise TumblebenchError(f"{exc} (every parameter at its central value)") from None
        for key, dist in params.items():
            if dist.kind == "fixed":
                continue
            for value in dist.extremes():
                try:
                    make_config(section, {**central, key: value}, section)
                except TumblebenchError as exc:
                    what = "choice" if dist.kind == "choice" else (
                        f"{dist.kind} {'low' if value == dist.low else 'high'}")
                    raise TumblebenchError(
                        f"{file}: {section}.{key}: {what} {_thaw(value)!r} is outside the physical "
                        f"range ({exc})") from None


def parse_spec(data: dict[str, Any], file: str = "spec") -> DatasetSpec:
    """Build and validate a :class:`DatasetSpec` from parsed TOML ``data`` (see the module docstring).

    Raises
    ------
    TumblebenchError
        Unknown table, parameter or key, a malformed distribution, a distribution outside the parameter's
        physical range, or bad steps; the message names ``file`` and the field.
    """
    unknown = sorted(set(data) - {"dataset", *SECTIONS})
    if unknown:
        raise TumblebenchError(f"{file}: unknown table(s) {', '.join(unknown)}; expected dataset, "
                               f"{', '.join(SECTIONS)}")
    ds = data.get("dataset", {})
    if not isinstance(ds, dict):
        raise TumblebenchError(f"{file}: dataset: expected a table")
    bad = sorted(set(ds) - {"steps", "seed", "zarr"})
    if bad:
        raise TumblebenchError(f"{file}: dataset.{bad[0]}: unknown parameter; expected steps, seed, zarr")
    steps = ds.get("steps", ["build", "simulate"])
    if not isinstance(steps, list) or not steps or any(s not in STEPS for s in steps):
        raise TumblebenchError(f"{file}: dataset.steps: expected a list of {', '.join(STEPS)}, got {steps!r}")
    if len(set(steps)) != len(steps):
        raise TumblebenchError(f"{file}: dataset.steps: {steps!r} lists a step twice")
    for s in steps:
        if s in _NEEDS and _NEEDS[s] not in steps:
            raise TumblebenchError(f"{file}: dataset.steps: {s} needs {_NEEDS[s]}")
    if "build" not in steps:
        raise TumblebenchError(f"{file}: dataset.steps: every item starts with build")
    seed = ds.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TumblebenchError(f"{file}: dataset.seed: expected a non-negative integer, got {seed!r}")
    zarr = ds.get("zarr", True)
    if not isinstance(zarr, bool):
        raise TumblebenchError(f"{file}: dataset.zarr: expected true or false, got {zarr!r}")
    params: dict[str, Distribution] = {}
    for section, cls in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise TumblebenchError(f"{file}: {section}: expected a table")
        _walk(cls, table, section, file, params)
    spec = DatasetSpec(steps=tuple(s for s in STEPS if s in steps), seed=seed, zarr=zarr,
                       parameters=dict(sorted(params.items())), source=file)
    _check_ranges(spec, file)
    return spec


def load_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a dataset spec from TOML file ``path`` (see :func:`parse_spec`)."""
    path = Path(path)
    return parse_spec(read_toml(path), str(path))


# ------------------------------------------------------------------------------------------------- draws


def item_seed_sequence(root: int, index: int) -> np.random.SeedSequence:
    """Item ``index``'s seed sequence: ``SeedSequence(root).spawn(n)[index]`` for any ``n > index``."""
    return np.random.SeedSequence(int(root), spawn_key=(int(index),))


def stream_seed(root: int, index: int, stream: int) -> int:
    """A non-negative 63-bit integer seed of item ``index``'s stream ``stream`` (1 build, 2 series, 3 reconstruct)."""
    state = np.random.SeedSequence(int(root), spawn_key=(int(index), int(stream))).generate_state(2, np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) & (2**63 - 1))


def draw_parameters(spec: DatasetSpec, index: int) -> dict[str, Any]:
    """Item ``index``'s value of every parameter (fixed ones included), keyed by dotted name.

    Each parameter draws from its own generator, ``SeedSequence(seed, spawn_key=(index, 0, crc32(name)))``.
    """
    out: dict[str, Any] = {}
    for name, dist in spec.parameters.items():
        ss = np.random.SeedSequence(int(spec.seed), spawn_key=(int(index), 0, zlib.crc32(name.encode())))
        out[name] = dist.draw(np.random.default_rng(ss))
    return out
