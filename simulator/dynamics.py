"""Brownian dynamics of a nanocrystal in a graphene liquid cell: rotation, translation, height, thinning.

Everything here is a pure function of its configuration and a seeded ``numpy.random.Generator``.

Time grid
---------
Frame ``f`` starts at ``f / frame_rate`` and is exposed for ``exposure_fraction / frame_rate`` seconds. The
path is sampled at ``2·S`` equally spaced instants inside every exposure (S = sub-steps per frame):
``t(f, j) = f/frame_rate + j·T_exp/(2S)``, ``j = 0 … 2S−1``. The odd instants ``j = 2k+1`` are the
midpoints of the S equal parts of the exposure — the sub-steps that are imaged and averaged (motion blur);
the instant ``j = S`` is the exact mid-exposure, whose pose/shift/height go into ``frames.star``.

Rotation
--------
Isotropic rotational diffusion on SO(3) with coefficient ``D_r`` (rad²/s): over a short interval ``dt`` the
pose is left-multiplied (a rotation about a lab-frame axis) by the rotation whose rotation vector is
Gaussian with variance ``2·D_r·dt`` per component; body axes then decorrelate as
⟨u(0)·u(t)⟩ = exp(−2·D_r·t). ``D_r`` is a free parameter (rotation in a graphene pocket is strongly hindered
compared with Stokes–Einstein) and may fall as the cell thins: ``D_r(t) = D_r0·(h(t)/h0)**κ``.

Poses follow :mod:`tumblebench.simulator.orientation`: ``A`` takes particle-frame vectors to the lab frame.

Translation and height
----------------------
The particle's centre wanders in an Ornstein–Uhlenbeck well (the liquid pocket) of stationary standard
deviation σ per axis and diffusion coefficient D (correlation time σ²/D; σ = 0 gives free diffusion) whose
centre drifts at constant velocity (stage drift), starting at ``−v·T/2`` so that the series is centred.
The update is the exact OU transition, not an Euler step. Height (along the beam, lab +z) is an OU process of
its own; it changes the defocus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tumblebench.simulator._dynamics_kernels import compose_rotation_increments, linear_recurrence
from tumblebench.simulator.config import check_range
from tumblebench.simulator.errors import TumblebenchError, require

#: Thickest liquid layer, Å (500 nm).
MAX_LIQUID_A = 5000.0

# --------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class LiquidConfig:
    """Liquid thickness over the series (a graphene liquid cell thins under the beam).

    Attributes
    ----------
    initial_thickness_A
        Liquid thickness at the start of the series, Å, in [0, 5,000]: graphene liquid cells hold 1–100 nm of
        liquid, and 500 nm is 1.5 inelastic mean free paths of water at 300 kV (little elastic signal left).
    final_thickness_A
        Liquid thickness at the end of the series, Å, in [0, 5,000].
    schedule
        ``"constant"`` (initial thickness throughout), ``"linear"`` or ``"exponential"`` (fast thinning
        first, time constant ``time_constant_s``; passes exactly through both end points).
    time_constant_s
        Time constant of the exponential schedule, s, in (0, 10⁶].
    """

    initial_thickness_A: float = 120.0
    final_thickness_A: float = 50.0
    schedule: Literal["constant", "linear", "exponential"] = "exponential"
    time_constant_s: float = 2.5

    def validate(self) -> None:
        check_range(self.initial_thickness_A, 0, MAX_LIQUID_A, "initial_thickness_A", "Å")
        check_range(self.final_thickness_A, 0, MAX_LIQUID_A, "final_thickness_A", "Å")
        check_range(self.time_constant_s, 0, 1e6, "time_constant_s", "s", lo_open=True)

    def thickness(self, t: np.ndarray, duration: float) -> np.ndarray:
        """Liquid thickness (Å) at times ``t`` (s) of a series lasting ``duration`` s."""
        t = np.asarray(t, dtype=float)
        h0, h1 = self.initial_thickness_A, self.final_thickness_A
        if self.schedule == "constant" or duration <= 0:
            return np.full_like(t, h0)
        frac = np.clip(t / duration, 0.0, 1.0)
        if self.schedule == "linear":
            return h0 + (h1 - h0) * frac
        tau = self.time_constant_s
        e_end = np.exp(-duration / tau)
        shape = (np.exp(-frac * duration / tau) - e_end) / (1.0 - e_end)
        return h1 + (h0 - h1) * shape


@dataclass(frozen=True)
class RotationConfig:
    """Hindered rotational diffusion.

    Attributes
    ----------
    diffusion_rad2_per_s
        Rotational diffusion coefficient D_r at the start of the series, rad²/s. The default 0.6 rad²/s
        (falling to ~0.4 rad²/s as the default cell thins) turns the particle by ~4–5° (rms) between
        frames at 400 frames/s and decorrelates a body axis (⟨u(0)·u(t)⟩ = exp(−2 D_r t)) in ~1 s. In
        [0, 10⁸]: free Stokes–Einstein rotation of a 2.5 nm sphere in water, kT/(8πηr³), is ~10⁸ rad²/s.
    thinning_exponent
        κ in D_r(t) = D_r0·(h(t)/h0)^κ: rotation slows as the liquid thins (0: constant); in [0, 10].
    initial
        ``"random"`` (uniform on SO(3), drawn from the seed) or ``"identity"``.
    """

    diffusion_rad2_per_s: float = 0.6
    thinning_exponent: float = 0.5
    initial: Literal["random", "identity"] = "random"

    def validate(self) -> None:
        check_range(self.diffusion_rad2_per_s, 0, 1e8, "diffusion_rad2_per_s", "rad²/s")
        check_range(self.thinning_exponent, 0, 10, "thinning_exponent")


@dataclass(frozen=True)
class TranslationConfig:
    """In-plane wander of the particle centre (lab x, y).

    Attributes
    ----------
    diffusion_A2_per_s
        Translational diffusion coefficient, Å²/s, in [0, 10¹¹] (free Stokes–Einstein diffusion of a 2.5 nm
        sphere in water, kT/(6πηr), is 2·10¹⁰ Å²/s).
    confinement_A
        Stationary standard deviation per axis of the pocket (OU well), Å; 0 = free diffusion; in [0, 3,000]
        (the largest field).
    drift_A_per_s
        Constant drift velocity (x, y) of the pocket, Å/s (stage drift), each in [−10⁴, 10⁴].
    """

    diffusion_A2_per_s: float = 40.0
    confinement_A: float = 3.0
    drift_A_per_s: tuple[float, float] = (1.0, -0.6)

    def validate(self) -> None:
        check_range(self.diffusion_A2_per_s, 0, 1e11, "diffusion_A2_per_s", "Å²/s")
        check_range(self.confinement_A, 0, 3000, "confinement_A", "Å")
        for i, v in enumerate(self.drift_A_per_s):
            check_range(v, -1e4, 1e4, f"drift_A_per_s[{i}]", "Å/s")


@dataclass(frozen=True)
class HeightConfig:
    """Height of the particle centre along the beam (lab +z, downstream positive); it adds to the defocus.

    Attributes
    ----------
    diffusion_A2_per_s
        Diffusion coefficient along z, Å²/s, in [0, 10¹¹].
    confinement_A
        Stationary standard deviation of the height, Å (0 = free diffusion), in [0, 5,000] (the thickest
        liquid).
    initial_A
        Mean height, Å, in [−5,000, 5,000].
    """

    diffusion_A2_per_s: float = 40.0
    confinement_A: float = 8.0
    initial_A: float = 0.0

    def validate(self) -> None:
        check_range(self.diffusion_A2_per_s, 0, 1e11, "diffusion_A2_per_s", "Å²/s")
        check_range(self.confinement_A, 0, MAX_LIQUID_A, "confinement_A", "Å")
        check_range(self.initial_A, -MAX_LIQUID_A, MAX_LIQUID_A, "initial_A", "Å")


@dataclass(frozen=True)
class DynamicsConfig:
    """Rigid-body motion of the particle: rotation, translation and height."""

    rotation: RotationConfig = field(default_factory=RotationConfig)
    translation: TranslationConfig = field(default_factory=TranslationConfig)
    height: HeightConfig = field(default_factory=HeightConfig)

    def validate(self) -> None:
        for name in ("rotation", "translation", "height"):
            try:
                getattr(self, name).validate()
            except TumblebenchError as exc:
                raise TumblebenchError(f"{name}.{exc}") from None


@dataclass(frozen=True)
class DissolutionConfig:
    """Dose-driven loss of under-coordinated surface atoms (etching/dissolution under the beam).

    An atom whose current coordination number (neighbours still present within ``cutoff_A``) is at most
    ``max_cn`` leaves with hazard ``rate_per_e_per_A2 · (max_cn + 1 − CN)`` per e⁻/Å² of dose, so vertex
    atoms go first; with the same form and ``hop_rate_per_e_per_A2`` it hops instead to a vacant lattice
    site next to it that at least three other atoms hold (an adsorption hollow on the surface). The atoms
    present in every frame and every hop are recorded in the truth.

    Attributes
    ----------
    enabled
        Switch (dissolution and hopping).
    rate_per_e_per_A2
        Dissolution hazard per unit coordination deficit per e⁻/Å².
    max_cn
        Atoms with more neighbours than this neither leave nor hop.
    cutoff_A
        Neighbour cutoff, Å (Pt: a/2·(1 + 1/√2) ≈ 3.35 Å), in (0, 10] (beyond the third neighbour shell).
    hop_rate_per_e_per_A2
        Hopping hazard per unit coordination deficit per e⁻/Å² (0: no hopping).
    """

    enabled: bool = False
    rate_per_e_per_A2: float = 2e-6
    max_cn: int = 7
    cutoff_A: float = 3.35
    hop_rate_per_e_per_A2: float = 0.0

    def validate(self) -> None:
        require(self.rate_per_e_per_A2 >= 0, f"rate_per_e_per_A2 = {self.rate_per_e_per_A2} must be >= 0")
        require(self.hop_rate_per_e_per_A2 >= 0,
                f"hop_rate_per_e_per_A2 = {self.hop_rate_per_e_per_A2} must be >= 0")
        require(0 <= self.max_cn <= 12, f"max_cn = {self.max_cn} must be in [0, 12]")
        check_range(self.cutoff_A, 0, 10, "cutoff_A", "Å", lo_open=True)


# ------------------------------------------------------------------------------------------- trajectory


@dataclass
class Trajectory:
    """Rigid-body path of a series: mid-exposure values (for the STAR file) and the imaged sub-steps.

    Attributes
    ----------
    times
        (F,) mid-exposure times, s.
    poses
        (F, 3, 3) pose matrices at mid-exposure (particle → lab).
    shifts
        (F, 2) particle-centre lab (x, y) relative to the field centre at mid-exposure, Å.
    heights
        (F,) particle-centre height (lab z, downstream positive) at mid-exposure, Å.
    sub_poses
        (F, S, 3, 3) poses at the S imaged sub-steps.
    sub_shifts
        (F, S, 2) centre (x, y) at the sub-steps, Å.
    sub_heights
        (F, S) heights at the sub-steps, Å.
    thickness
        (F,) liquid thickness at mid-exposure, Å.
    rotational_diffusion
        (F,) D_r at mid-exposure, rad²/s.
    """

    times: np.ndarray
    poses: np.ndarray
    shifts: np.ndarray
    heights: np.ndarray
    sub_poses: np.ndarray
    sub_shifts: np.ndarray
    sub_heights: np.ndarray
    thickness: np.ndarray
    rotational_diffusion: np.ndarray


def time_grid(n_frames: int, frame_rate_hz: float, substeps: int, exposure_fraction: float = 1.0) -> np.ndarray:
    """Sample instants of the path, (F, 2·S) in s (see the module docstring).

    Parameters
    ----------
    n_frames
        Number of frames F.
    frame_rate_hz
        Frames per second.
    substeps
        Imaged sub-steps per frame S.
    exposure_fraction
        Fraction of the frame period the detector integrates (1 = continuous readout).
    """
    require(n_frames >= 1, f"n_frames = {n_frames} must be >= 1")
    require(frame_rate_hz > 0, f"frame_rate_hz = {frame_rate_hz} must be > 0")
    require(substeps >= 1, f"substeps = {substeps} must be >= 1")
    require(0 < exposure_fraction <= 1, f"exposure_fraction = {exposure_fraction} must be in (0, 1]")
    period = 1.0 / frame_rate_hz
    t_exp = exposure_fraction * period
    starts = np.arange(n_frames) * period
    return starts[:, None] + np.arange(2 * substeps)[None, :] * (t_exp / (2 * substeps))


def rotational_diffusion_path(times: np.ndarray, coefficient: np.ndarray, initial: np.ndarray,
                              rng: np.random.Generator) -> np.ndarray:
    """Isotropic rotational Brownian motion sampled at ``times``.

    Parameters
    ----------
    times
        (K,) increasing instants, s.
    coefficient
        (K,) rotational diffusion coefficient D_r at each instant, rad²/s (the interval k→k+1 uses the mean
        of its end points).
    initial
        (3, 3) pose at ``times[0]`` (particle → lab).
    rng
        Random generator (3·(K−1) normal draws).

    Returns
    -------
    numpy.ndarray
        (K, 3, 3) pose matrices.
    """
    times = np.asarray(times, float)
    dt = np.diff(times)
    require(bool(np.all(dt >= 0)), "rotational_diffusion_path: times must be non-decreasing")
    d_mid = 0.5 * (coefficient[1:] + coefficient[:-1])
    omega = rng.standard_normal((dt.size, 3)) * np.sqrt(2.0 * d_mid * dt)[:, None]
    q0 = Rotation.from_matrix(np.asarray(initial, float)).as_quat()
    quats = compose_rotation_increments(q0, np.ascontiguousarray(omega))
    return Rotation.from_quat(quats).as_matrix()


def ou_path(times: np.ndarray, diffusion: float, sigma: float, dim: int, rng: np.random.Generator,
            start_stationary: bool = True) -> np.ndarray:
    """Ornstein–Uhlenbeck (or free-diffusion, ``sigma = 0``) path with exact transitions, mean 0.

    Parameters
    ----------
    times
        (K,) increasing instants, s.
    diffusion
        Diffusion coefficient D (Å²/s); correlation time σ²/D.
    sigma
        Stationary standard deviation per axis (Å); 0 = free diffusion from 0.
    dim
        Number of independent axes.
    rng
        Random generator.
    start_stationary
        Draw the first point from the stationary distribution (else start at 0).

    Returns
    -------
    numpy.ndarray
        (K, dim) displacements in Å.
    """
    times = np.asarray(times, float)
    dt = np.diff(times)
    z0 = rng.standard_normal(dim)
    kicks = rng.standard_normal((dt.size, dim))
    if sigma > 0 and diffusion > 0:
        tau = sigma**2 / diffusion
        decay = np.exp(-dt / tau)
        scale = sigma * np.sqrt(1.0 - decay**2)
        x0 = sigma * z0 if start_stationary else np.zeros(dim)
    elif sigma > 0:  # no diffusion: frozen at a stationary draw
        decay = np.ones_like(dt)
        scale = np.zeros_like(dt)
        x0 = sigma * z0 if start_stationary else np.zeros(dim)
    else:
        decay = np.ones_like(dt)
        scale = np.sqrt(2.0 * diffusion * dt)
        x0 = np.zeros(dim)
    return linear_recurrence(x0, decay, np.ascontiguousarray(kicks * scale[:, None]))


def simulate_trajectory(config: DynamicsConfig, liquid: LiquidConfig, n_frames: int, frame_rate_hz: float,
                        substeps: int, rng: np.random.Generator, exposure_fraction: float = 1.0) -> Trajectory:
    """Draw the rigid-body path of a whole series.

    Parameters
    ----------
    config
        Rotation, translation and height parameters.
    liquid
        Liquid thickness schedule (also slows the rotation, see :class:`RotationConfig`).
    n_frames, frame_rate_hz, substeps, exposure_fraction
        Acquisition timing (see :func:`time_grid`).
    rng
        Random generator; the same generator state gives the same path.

    Returns
    -------
    Trajectory
        Mid-exposure and sub-step values for every frame.
    """
    grid = time_grid(n_frames, frame_rate_hz, substeps, exposure_fraction)
    times = grid.ravel()
    duration = n_frames / frame_rate_hz
    thick = liquid.thickness(times, duration)
    rot = config.rotation
    h0 = liquid.initial_thickness_A
    if rot.thinning_exponent > 0 and h0 > 0:
        ratio = np.clip(thick / h0, 0.0, None)
        d_rot = rot.diffusion_rad2_per_s * ratio**rot.thinning_exponent
    else:
        d_rot = np.full_like(times, rot.diffusion_rad2_per_s)
    rng_rot, rng_xy, rng_z = rng.spawn(3)
    if rot.initial == "random":
        q = rng_rot.standard_normal(4)
        start = Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()
    else:
        start = np.eye(3)
    poses = rotational_diffusion_path(times, d_rot, start, rng_rot)
    tr = config.translation
    xy = ou_path(times, tr.diffusion_A2_per_s, tr.confinement_A, 2, rng_xy)
    drift = np.asarray(tr.drift_A_per_s, float)
    xy = xy + (times[:, None] - 0.5 * duration) * drift[None, :]
    hz = config.height
    z = ou_path(times, hz.diffusion_A2_per_s, hz.confinement_A, 1, rng_z)[:, 0] + hz.initial_A

    s2 = 2 * substeps
    poses = poses.reshape(n_frames, s2, 3, 3)
    xy = xy.reshape(n_frames, s2, 2)
    z = z.reshape(n_frames, s2)
    sub = np.arange(1, s2, 2)
    return Trajectory(
        times=grid[:, substeps],
        poses=poses[:, substeps].copy(),
        shifts=xy[:, substeps].copy(),
        heights=z[:, substeps].copy(),
        sub_poses=poses[:, sub].copy(),
        sub_shifts=xy[:, sub].copy(),
        sub_heights=z[:, sub].copy(),
        thickness=thick.reshape(n_frames, s2)[:, substeps].copy(),
        rotational_diffusion=d_rot.reshape(n_frames, s2)[:, substeps].copy(),
    )


# -------------------------------------------------------------------------------- thermal displacements


def displacement_factors(U: np.ndarray) -> np.ndarray:
    """Square roots ``L`` with ``L·Lᵀ = U`` of per-atom ADP tensors (symmetric PSD).

    ``u = L @ ξ`` with ξ ~ N(0, I) is then an exact draw from N(0, U). Eigen-decomposition (not Cholesky)
    so that singular tensors (U = 0, a frozen atom) are allowed.

    Parameters
    ----------
    U
        (N, 3, 3) displacement tensors in Å².

    Returns
    -------
    numpy.ndarray
        (N, 3, 3) factors in Å.

    Raises
    ------
    TumblebenchError
        A tensor is not symmetric positive semi-definite.
    """
    U = np.asarray(U, float)
    require(U.ndim == 3 and U.shape[1:] == (3, 3), f"U must be (N, 3, 3), got {U.shape}")
    sym = 0.5 * (U + np.swapaxes(U, 1, 2))
    if not np.allclose(sym, U, atol=1e-8):
        raise TumblebenchError("U: displacement tensors must be symmetric")
    w, v = np.linalg.eigh(sym)
    if np.any(w < -1e-8):
        bad = int(np.argmin(w.min(axis=1)))
        raise TumblebenchError(f"U: atom {bad} has a negative eigenvalue {w.min():.3g} Å² (must be PSD)")
    return v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]


def thermal_positions(positions: np.ndarray, factors: np.ndarray, n: int, rng: np.random.Generator,
                      scale: float = 1.0) -> np.ndarray:
    """``n`` independent thermal snapshots of the atoms in the particle frame.

    Parameters
    ----------
    positions
        (N, 3) mean positions, Å (particle frame).
    factors
        (N, 3, 3) from :func:`displacement_factors`.
    n
        Number of snapshots.
    rng
        Random generator (n·N·3 normal draws).
    scale
        Multiplies the displacements (1 = draw from U exactly; 0 = static atoms, no draws).

    Returns
    -------
    numpy.ndarray
        (n, N, 3) positions in Å.
    """
    pos = np.asarray(positions, float)
    if scale == 0:
        return np.broadcast_to(pos, (n, *pos.shape)).copy()
    xi = rng.standard_normal((n, pos.shape[0], 3))
    return pos[None] + scale * np.einsum("aij,saj->sai", factors, xi)


# ---------------------------------------------------------------------------------------- dissolution


class Dissolution:
    """State of dose-driven surface-atom loss (see :class:`DissolutionConfig`).

    Parameters
    ----------
    positions
        (N, 3) atom positions, Å.
    config
        Dissolution parameters.
    """

    def __init__(self, positions: np.ndarray, config: DissolutionConfig) -> None:
        self.config = config
        #: current positions (hops move atoms), Å
        self.positions = np.array(positions, dtype=float)
        n = self.positions.shape[0]
        self._rebuild()
        self.present = np.ones(n, dtype=bool)
        #: frame at which each atom left (−1: never)
        self.removed_frame = np.full(n, -1, dtype=np.int64)

    def _rebuild(self) -> None:
        n = self.positions.shape[0]
        pairs = cKDTree(self.positions).query_pairs(self.config.cutoff_A, output_type="ndarray")
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
        self.adjacency = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))

    def coordination(self) -> np.ndarray:
        """Current coordination numbers counting only atoms still present."""
        return np.asarray(self.adjacency @ self.present.astype(float)).astype(int)

    def step(self, dose_e_per_A2: float, frame: int, rng: np.random.Generator) -> np.ndarray:
        """Apply one frame's dose; return indices of atoms that left during frame ``frame``.

        The atoms that leave are absent from this frame onward (the decision uses the coordination at the
        frame's start). One uniform draw per atom per frame, so the stream is the same whether or not any
        atom is eligible.
        """
        draws = rng.random(self.present.size)
        if not self.config.enabled or dose_e_per_A2 <= 0:
            return np.empty(0, dtype=np.int64)
        cn = self.coordination()
        deficit = np.clip(self.config.max_cn + 1 - cn, 0, None) * self.present
        p_leave = 1.0 - np.exp(-self.config.rate_per_e_per_A2 * deficit * dose_e_per_A2)
        leave = np.flatnonzero(draws < p_leave)
        self.present[leave] = False
        self.removed_frame[leave] = frame
        return leave

    def adsorption_sites(self, atom: int) -> np.ndarray:
        """Vacant lattice sites next to ``atom`` that at least three other present atoms hold, (k, 3) Å.

        Candidates are ``p_atom + (p_j − p_k)`` for pairs of present neighbours j, k of the atom that are
        neighbours of each other (a nearest-neighbour lattice vector of the atom's own grain); a candidate is
        vacant when no other present atom lies within 0.75 nearest-neighbour distances of it.
        """
        pos = self.positions
        row = self.adjacency.indices[self.adjacency.indptr[atom] : self.adjacency.indptr[atom + 1]]
        nb = np.sort(row[self.present[row]])
        if nb.size < 2:
            return np.empty((0, 3))
        d = pos[nb][:, None, :] - pos[nb][None, :, :]
        dist = np.linalg.norm(d, axis=-1)
        d_nn = float(np.median(np.linalg.norm(pos[nb] - pos[atom], axis=1)))
        vecs = d[(dist > 0.5 * d_nn) & (dist <= self.config.cutoff_A)]
        if vecs.size == 0:
            return np.empty((0, 3))
        cands = np.unique(np.round(pos[atom] + vecs, 6), axis=0)
        others = np.flatnonzero(self.present)
        others = others[others != atom]
        tree = cKDTree(pos[others])
        nearest, _ = tree.query(cands)
        counts = np.array([len(x) for x in tree.query_ball_point(cands, self.config.cutoff_A)])
        return cands[(nearest > 0.75 * d_nn) & (counts >= 3)]

    def hop(self, dose_e_per_A2: float, frame: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
        """Apply one frame's dose to hopping; return [(atom, new position)] of the hops in frame ``frame``.

        The hopped atoms sit at their new sites from this frame onward. One uniform draw per atom per frame
        plus one per hop.
        """
        draws = rng.random(self.present.size)
        cfg = self.config
        if not cfg.enabled or cfg.hop_rate_per_e_per_A2 <= 0 or dose_e_per_A2 <= 0:
            return []
        cn = self.coordination()
        deficit = np.clip(cfg.max_cn + 1 - cn, 0, None) * self.present
        p_hop = 1.0 - np.exp(-cfg.hop_rate_per_e_per_A2 * deficit * dose_e_per_A2)
        hops: list[tuple[int, np.ndarray]] = []
        for atom in np.flatnonzero(draws < p_hop):
            sites = self.adsorption_sites(int(atom))
            if sites.shape[0] == 0:
                continue
            site = sites[int(rng.integers(sites.shape[0]))]
            self.positions[atom] = site
            self._rebuild()
            hops.append((int(atom), site.copy()))
        return hops
