"""Penetration depth of the disordered surface: Wietfeldt 2024's Eq. 1 fitted to a statistic versus radial depth.

    y = m·(D − δ) + c   if D ≤ δ,      y = c   if D > δ,        D = R_NP − R (radial depth, Å)

Seed 004 sorts the atoms by depth, averages every five consecutive atoms, and fits Eq. 1 with c restricted to
[10, 12] for CN (and GCN); for U_iso, maximum intensity, DOI and validation correlation c is free. For a given
δ the model is linear in (m, c), so the fit is exact and global: every δ on a fine grid (and then a golden-
section refinement around the best) gets its constrained linear least-squares solution, and the δ with the
smallest residual wins. No starting guess, no local minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from tumblebench.simulator.errors import TumblebenchError


@dataclass
class PenetrationFit:
    """Best fit of Eq. 1.

    Attributes
    ----------
    delta_A, m, c
        Penetration depth (Å), slope and plateau.
    rms
        Root-mean-square residual of the fit to the running averages.
    depth, value
        The running averages (every ``window`` consecutive atoms by depth) that were fitted.
    """

    delta_A: float
    m: float
    c: float
    rms: float
    depth: np.ndarray
    value: np.ndarray

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dictionary (running averages as lists)."""
        return {"delta_A": self.delta_A, "m": self.m, "c": self.c, "rms": self.rms,
                "depth_A": self.depth.tolist(), "value": self.value.tolist()}


def running_average(depth: np.ndarray, value: np.ndarray, window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Sort by depth and average every ``window`` consecutive atoms (the last partial group is dropped)."""
    d = np.asarray(depth, float)
    v = np.asarray(value, float)
    ok = np.isfinite(d) & np.isfinite(v)
    d, v = d[ok], v[ok]
    order = np.argsort(d, kind="stable")
    k = len(d) // window
    if k == 0:
        return np.zeros(0), np.zeros(0)
    d = d[order][: k * window].reshape(k, window).mean(1)
    v = v[order][: k * window].reshape(k, window).mean(1)
    return d, v


def eq1(depth: np.ndarray, delta: float, m: float, c: float) -> np.ndarray:
    """Seed 004's Eq. 1: piecewise linear (D ≤ δ) then constant c."""
    d = np.asarray(depth, float)
    return np.where(d <= delta, m * (d - delta) + c, c)


def _solve(d: np.ndarray, y: np.ndarray, delta: float, c_bounds: tuple[float, float] | None
           ) -> tuple[float, float, float]:
    x = np.minimum(d - delta, 0.0)
    A = np.stack([x, np.ones_like(x)], axis=1)
    sol, *_ = np.linalg.lstsq(A, y, rcond=None)
    m, c = float(sol[0]), float(sol[1])
    if c_bounds is not None and not (c_bounds[0] <= c <= c_bounds[1]):
        c = float(np.clip(c, *c_bounds))
        xx = float(np.dot(x, x))
        m = float(np.dot(x, y - c) / xx) if xx > 0 else 0.0
    r = y - (m * x + c)
    return m, c, float(np.dot(r, r))


def fit_penetration(depth: np.ndarray, value: np.ndarray, c_bounds: tuple[float, float] | None = (10.0, 12.0),
                    window: int = 5) -> PenetrationFit:
    """Fit Eq. 1 to ``value`` versus radial ``depth`` (Å) as Wietfeldt et al. 2024.

    Parameters
    ----------
    depth
        (N,) radial depth R_NP − R per atom (Å).
    value
        (N,) per-atom statistic (CN, GCN, U_iso, ...).
    c_bounds
        Interval of the plateau c ((10, 12) for CN and GCN as Wietfeldt et al. 2024; None for free c).
    window
        Atoms per running average (Wietfeldt et al. 2024: 5).

    Raises
    ------
    TumblebenchError
        Fewer than four running averages to fit.
    """
    d, y = running_average(depth, value, window)
    if len(d) < 4:
        raise TumblebenchError(f"penetration fit needs at least {4 * window} atoms with finite values, got "
                               f"{len(d) * window}")
    grid = np.linspace(d.min(), d.max(), 400)
    sse = np.array([_solve(d, y, float(g), c_bounds)[2] for g in grid])
    i = int(np.argmin(sse))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if hi > lo:
        res = minimize_scalar(lambda t: _solve(d, y, float(t), c_bounds)[2], bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-4})
        best = float(res.x) if res.fun <= sse[i] else float(grid[i])
    else:
        best = float(grid[i])
    m, c, s = _solve(d, y, best, c_bounds)
    return PenetrationFit(best, m, c, float(np.sqrt(s / len(d))), d, y)
