"""Sub-voxel peak refinement and the Gaussian displacement fits of Wietfeldt et al. 2024 (U_iso, anisotropic U, DOI).

Seed 004 fits each atom's intensity with a 3D Gaussian by weighted linear least squares on the logarithm,
S = Σ I_i (ln I_i − (β₀ + β₁ r_i²))² (isotropic) or with the six quadratic terms (anisotropic), over a sphere of
radius ¾·a/(2√2) around the atom. The fitted variance σ_g² is the atom's own width plus its displacement;
Wietfeldt et al. 2024 reports σ_g² itself (kept here as ``SIGMA2_ISO``). That log-linear fit is poorly conditioned at
0.3–0.4 Å voxels: for a band-limited atom its σ_g² changes with the atom's sub-voxel position by more than
the U of a mobile surface atom. ``U_ISO`` is therefore fitted against the exact band-limited profile of the
element's atom blurred by U (:func:`profile_table`, the map's own blur accounted for), which returns U in Å²
independently of sub-voxel position; the anisotropic U follows from a linearised fit around it.
All fits run for every atom at once (batched normal equations); no Python loop over atoms.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tumblebench.analysis._kernels import neighbour_sum
from tumblebench.analysis.denoise import atom_transfer

# quadratic model on the 3x3x3 neighbourhood for sub-voxel peak refinement
_OFF = np.stack(np.meshgrid(*([np.arange(-1, 2)] * 3), indexing="ij"), axis=-1).reshape(-1, 3)  # (27, 3) z,y,x
_X, _Y, _Z = _OFF[:, 2].astype(float), _OFF[:, 1].astype(float), _OFF[:, 0].astype(float)
_DESIGN = np.stack([np.ones(27), _X, _Y, _Z, _X**2, _Y**2, _Z**2, _X * _Y, _X * _Z, _Y * _Z], axis=1)
_PINV = np.linalg.pinv(_DESIGN)  # (10, 27)


def refine_peaks(C: np.ndarray, peak_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-voxel maxima of ``C`` near integer voxels, by a quadratic least-squares fit to log C.

    Parameters
    ----------
    C
        Map [z, y, x], positive near its peaks.
    peak_zyx
        (N, 3) integer voxel indices (z, y, x) of local maxima.

    Returns
    -------
    centres, ok
        (N, 3) refined centres (x, y, z) in voxel units; (N,) bool, False where the fit is not a maximum
        within one voxel (then the centre is the voxel itself).
    """
    p = np.asarray(peak_zyx, dtype=np.int64).reshape(-1, 3)
    n = len(p)
    idx = p[:, None, :] + _OFF[None]
    shape = np.array(C.shape)
    inside = np.all((idx >= 0) & (idx < shape), axis=(1, 2))
    idx = np.clip(idx, 0, shape - 1)
    v = C[idx[..., 0], idx[..., 1], idx[..., 2]].astype(np.float64)
    pos = np.all(v > 0, axis=1) & inside
    logv = np.log(np.where(v > 0, v, 1.0))
    beta = logv @ _PINV.T  # (N, 10)
    g = beta[:, 1:4]
    H = np.empty((n, 3, 3))
    H[:, 0, 0], H[:, 1, 1], H[:, 2, 2] = 2 * beta[:, 4], 2 * beta[:, 5], 2 * beta[:, 6]
    H[:, 0, 1] = H[:, 1, 0] = beta[:, 7]
    H[:, 0, 2] = H[:, 2, 0] = beta[:, 8]
    H[:, 1, 2] = H[:, 2, 1] = beta[:, 9]
    ev = np.linalg.eigvalsh(H)
    negdef = np.all(ev < 0, axis=1)
    Hs = np.where(negdef[:, None, None], H, -np.eye(3)[None])
    off = -np.linalg.solve(Hs, g[..., None])[..., 0]
    ok = pos & negdef & np.all(np.abs(off) <= 1.0, axis=1)
    centres = p[:, ::-1].astype(np.float64) + np.where(ok[:, None], off, 0.0)
    return centres, ok


def gather_windows(vol: np.ndarray, centres_A: np.ndarray, sampling: float, radius_A: float,
                   cube: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel values and offsets around each atom within a sphere (or cube of half-side) ``radius_A``.

    Returns
    -------
    values, offsets, inside
        (N, K) values; (N, K, 3) offsets (x, y, z) in Å from the atom centre; (N, K) bool of voxels within the
        sphere/cube and the map.
    """
    c = np.asarray(centres_A, dtype=np.float64).reshape(-1, 3) / sampling  # voxel units x,y,z
    r = int(np.ceil(radius_A / sampling)) + 1
    ax = np.arange(-r, r + 1)
    off = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1).reshape(-1, 3)  # x,y,z integer offsets
    if not cube:  # the centre lies within √3/2 voxel of its nearest voxel
        off = off[np.linalg.norm(off, axis=1) <= radius_A / sampling + 0.8661]
    base = np.rint(c).astype(np.int64)
    idx = base[:, None, :] + off[None]
    d = (idx - c[:, None, :]) * sampling
    if cube:
        inside = np.all(np.abs(d) <= radius_A, axis=2)
    else:
        inside = np.einsum("nki,nki->nk", d, d) <= radius_A**2
    shape_xyz = np.array(vol.shape[::-1])
    inb = np.all((idx >= 0) & (idx < shape_xyz), axis=2)
    inside &= inb
    idx = np.clip(idx, 0, shape_xyz - 1)
    values = vol[idx[..., 2], idx[..., 1], idx[..., 0]].astype(np.float64)
    return values, d, inside


def window_correlation(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Pearson correlation per row of ``a`` and ``b`` over the entries where ``inside`` (NaN if degenerate)."""
    w = inside.astype(np.float64)
    n = w.sum(axis=1)
    n[n == 0] = 1
    ma = (a * w).sum(1) / n
    mb = (b * w).sum(1) / n
    da, db = (a - ma[:, None]) * w, (b - mb[:, None]) * w
    num = (da * db).sum(1)
    den = np.sqrt((da**2).sum(1) * (db**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


@dataclass
class GaussianFits:
    """Per-atom Gaussian fits (Wietfeldt et al. 2024), raw map variances (Å²).

    Attributes
    ----------
    sigma2_iso
        (N,) isotropic variance σ_g² of the fitted Gaussian.
    cov
        (N, 3, 3) covariance Σ of the anisotropic fit (x, y, z).
    aniso_ok
        (N,) False where Σ is not positive definite or a variance exceeds 4·R² (Wietfeldt et al. (2024)'s rejection).
    iso_corr, aniso_corr
        (N,) correlation of the fitted Gaussians with the map over the fit sphere.
    """

    sigma2_iso: np.ndarray
    cov: np.ndarray
    aniso_ok: np.ndarray
    iso_corr: np.ndarray
    aniso_corr: np.ndarray


def _weighted_lstsq(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Batched weighted least squares: X (N, K, P), y (N, K), w (N, K) -> β (N, P)."""
    Xw = X * w[..., None]
    A = np.einsum("nkp,nkq->npq", Xw, X)
    b = np.einsum("nkp,nk->np", Xw, y)
    scale = np.sqrt(np.einsum("npp->np", A)) + 1e-30
    A = A / scale[:, :, None] / scale[:, None, :]
    A += 1e-12 * np.eye(A.shape[1])[None]
    beta = np.linalg.solve(A, (b / scale)[..., None])[..., 0] / scale
    return beta


def fit_gaussians(vol: np.ndarray, centres_A: np.ndarray, sampling: float, radius_A: float) -> GaussianFits:
    """Seed 004's intensity-weighted log-linear Gaussian fits around each atom.

    Parameters
    ----------
    vol
        Map [z, y, x] (raw or denoised).
    centres_A
        (N, 3) atom centres (x, y, z) in Å, map frame.
    sampling
        Voxel edge (Å).
    radius_A
        Fit sphere radius (Wietfeldt et al. 2024: ¾·a/(2√2)).
    """
    vals, d, inside = gather_windows(vol, centres_A, sampling, radius_A)
    pos = inside & (vals > 0)
    w = np.where(pos, vals, 0.0)
    y = np.log(np.where(pos, vals, 1.0))
    x, yy, z = d[..., 0], d[..., 1], d[..., 2]
    r2 = x**2 + yy**2 + z**2
    ones = np.ones_like(r2)
    Xi = np.stack([ones, r2], axis=-1)
    bi = _weighted_lstsq(Xi, y, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = np.where(bi[:, 1] < 0, -0.5 / bi[:, 1], np.nan)
    Xa = np.stack([ones, x**2, yy**2, z**2, x * yy, x * z, yy * z], axis=-1)
    ba = _weighted_lstsq(Xa, y, w)
    P = np.empty((len(ba), 3, 3))
    P[:, 0, 0], P[:, 1, 1], P[:, 2, 2] = -2 * ba[:, 1], -2 * ba[:, 2], -2 * ba[:, 3]
    P[:, 0, 1] = P[:, 1, 0] = -ba[:, 4]
    P[:, 0, 2] = P[:, 2, 0] = -ba[:, 5]
    P[:, 1, 2] = P[:, 2, 1] = -ba[:, 6]
    evp = np.linalg.eigvalsh(P)
    pd = np.all(evp > 0, axis=1)
    cov = np.linalg.inv(np.where(pd[:, None, None], P, np.eye(3)[None]))
    evc = np.linalg.eigvalsh(cov)
    aniso_ok = pd & np.all(evc < 4 * radius_A**2, axis=1)
    cov[~aniso_ok] = np.nan
    model_i = np.exp(bi[:, :1] + bi[:, 1:2] * r2)
    model_a = np.exp(np.einsum("nkp,np->nk", Xa, ba))
    iso_corr = window_correlation(vals, model_i, inside)
    aniso_corr = window_correlation(vals, model_a, inside)
    aniso_corr[~aniso_ok] = np.nan
    return GaussianFits(sigma2, cov, aniso_ok, iso_corr, aniso_corr)


@dataclass
class ProfileTable:
    """Exact radial profile of one band-limited atom for a grid of isotropic U (the map's own blur).

    p_U(r) = 4π ∫₀^{q_c} F(q)·exp(−2π²U q²)·T(q)·q²·sinc(2πqr) dq with F the element's five-Gaussian form
    factor (normalised to F(0) = 1), q_c the band limit and T the denoising template's transfer (1 for the
    raw map). Tabulated on a fine r grid with its first and second radial derivatives.

    Attributes
    ----------
    u_grid
        (nU,) U values (Å²).
    r
        (nr,) radii (Å), uniform step.
    p, dp, d2p
        (nU, nr) profile and its first and second derivatives in r.
    """

    u_grid: np.ndarray
    r: np.ndarray
    p: np.ndarray
    dp: np.ndarray
    d2p: np.ndarray

    def lookup(self, table: np.ndarray, iu: int, r: np.ndarray) -> np.ndarray:
        """Linear interpolation of ``table[iu]`` at radii ``r`` (Å)."""
        step = self.r[1] - self.r[0]
        x = np.clip(r / step, 0, len(self.r) - 1.000001)
        i0 = x.astype(np.int64)
        f = x - i0
        t = table[iu]
        return t[i0] * (1 - f) + t[i0 + 1] * f


@functools.lru_cache(maxsize=16)
def profile_table(element: str, resolution: float, template_u: float | None = None, r_max: float = 7.0,
                  u_max: float = 0.2, n_u: int = 81) -> ProfileTable:
    """Tabulate :class:`ProfileTable` for ``element`` band-limited at ``resolution`` (Å) (cached; read-only)."""
    qc = 1.0 / resolution
    q = np.linspace(0.0, qc, 1501)[1:]
    dq = q[1] - q[0]
    r = np.arange(0.0, r_max + 0.005, 0.005)
    u_grid = np.linspace(0.0, u_max, n_u)
    F = atom_transfer(element, (q**2).astype(np.float32), 0.0, None).astype(np.float64)
    if template_u is not None:
        F = F * atom_transfer(element, (q**2).astype(np.float64), template_u, None)
    DW = np.exp(-2 * np.pi**2 * u_grid[:, None] * q[None] ** 2)
    kern = np.sinc(2 * q[:, None] * r[None])  # numpy sinc(x) = sin(πx)/(πx)
    p = 4 * np.pi * dq * (DW * (F * q**2)[None]) @ kern
    dp = np.gradient(p, r, axis=1)
    d2p = np.gradient(dp, r, axis=1)
    dp[:, 0] = 0.0
    return ProfileTable(u_grid, r, p, dp, d2p)


@dataclass
class DisplacementFit:
    """Per-atom displacement estimates with the map's blur accounted for (Å²).

    Attributes
    ----------
    u_iso
        (N,) isotropic U: the U of the exact band-limited atom profile that best fits the map.
    U
        (N, 3, 3) anisotropic U = U_iso·I + D, D from a linearised fit around the isotropic model.
    aniso_ok
        (N,) eigenvalues of U positive and below 4R² (Wietfeldt et al. (2024)'s rule).
    iso_corr, aniso_corr
        (N,) correlation of the fitted isotropic / anisotropic models with the map.
    amplitude
        (N,) fitted amplitude of the profile (map units).
    """

    u_iso: np.ndarray
    U: np.ndarray
    aniso_ok: np.ndarray
    iso_corr: np.ndarray
    aniso_corr: np.ndarray
    amplitude: np.ndarray


def fit_displacements(vol: np.ndarray, centres_A: np.ndarray, sampling: float, radius_A: float,
                      table: ProfileTable, others: DisplacementFit | None = None,
                      windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> DisplacementFit:
    """Fit each atom with amplitude·p_U(r) + constant over a sphere, then the anisotropic correction.

    The isotropic U is found by scanning the tabulated U grid (each step a linear least-squares fit of
    amplitude and background for every atom at once) and refining the best by a parabola. The anisotropic
    part uses ∂p/∂U_ij = ½ ∂ᵢ∂ⱼp (a Gaussian blur obeys the heat equation): the residual of the isotropic
    fit is fitted linearly with the six Hessian features A/2·[p'' x̂ᵢx̂ⱼ + p'/r (δᵢⱼ − x̂ᵢx̂ⱼ)].
    Given ``others`` (a previous fit of the same atoms), the neighbours' modelled density is subtracted from
    each window first (deblending), so band-limit ripples and tails of neighbours do not bias the fit.
    ``windows`` is :func:`gather_windows` of the same arguments when the caller has it already.
    """
    vals, d, inside = gather_windows(vol, centres_A, sampling, radius_A) if windows is None else windows
    if others is not None:
        vals = vals - neighbour_background(centres_A, d, others.amplitude, others.u_iso, table)
    w = inside.astype(np.float64)
    nw = w.sum(1)
    r = np.sqrt(np.einsum("nki,nki->nk", d, d))
    ybar = (vals * w).sum(1) / np.maximum(nw, 1)
    yc = (vals - ybar[:, None]) * w
    n_u = len(table.u_grid)
    sse = np.empty((len(vals), n_u))
    amps = np.empty((len(vals), n_u))
    for iu in range(n_u):  # loop over the U grid (not atoms): each step fits every atom at once
        m = table.lookup(table.p, iu, r)
        mbar = (m * w).sum(1) / np.maximum(nw, 1)
        mc = (m - mbar[:, None]) * w
        mm = (mc * mc).sum(1)
        amp = np.where(mm > 0, (mc * yc).sum(1) / np.where(mm > 0, mm, 1), 0.0)
        res = yc - amp[:, None] * mc
        sse[:, iu] = (res * res).sum(1)
        amps[:, iu] = amp
    sse = np.where(amps > 0, sse, np.inf)
    ib = np.argmin(sse, axis=1)
    ib_c = np.clip(ib, 1, n_u - 2)
    rows = np.arange(len(vals))
    s0, s1, s2 = sse[rows, ib_c - 1], sse[rows, ib_c], sse[rows, ib_c + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        den = s0 - 2 * s1 + s2
        shift = np.where(np.isfinite(den) & (den > 0), 0.5 * (s0 - s2) / den, 0.0)
    shift = np.clip(np.nan_to_num(shift), -1, 1)
    du = table.u_grid[1] - table.u_grid[0]
    u_iso = table.u_grid[ib_c] + shift * du
    u_iso = np.where(ib == ib_c, u_iso, table.u_grid[ib])
    failed = ~np.isfinite(sse[rows, ib])
    u_iso[failed] = np.nan
    ib = np.where(failed, 0, ib)
    # isotropic model at the nearest grid U (for correlations and the anisotropic step)
    m = _gather_lookup(table.p, ib, r, table)
    dp = _gather_lookup(table.dp, ib, r, table)
    d2p = _gather_lookup(table.d2p, ib, r, table)
    amp = amps[rows, ib]
    mbar = (m * w).sum(1) / np.maximum(nw, 1)
    model_iso = amp[:, None] * (m - mbar[:, None]) + ybar[:, None]
    iso_corr = window_correlation(vals, model_iso, inside)
    with np.errstate(invalid="ignore", divide="ignore"):
        xh = np.where(r[..., None] > 1e-9, d / np.where(r[..., None] > 1e-9, r[..., None], 1.0), 0.0)
        pr = np.where(r > 1e-9, dp / np.where(r > 1e-9, r, 1.0), d2p)
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))
    feats = []
    for i, j in pairs:
        h = d2p * xh[..., i] * xh[..., j] + pr * ((1.0 if i == j else 0.0) - xh[..., i] * xh[..., j])
        feats.append(0.5 * amp[:, None] * h * (1.0 if i == j else 2.0))
    X = np.stack(feats, axis=-1)
    X = X - (X * w[..., None]).sum(1, keepdims=True) / np.maximum(nw, 1)[:, None, None]
    resid = (yc - amp[:, None] * (m - mbar[:, None]) * w)
    D6 = _lstsq_rows(X * w[..., None], resid)
    U = np.empty((len(vals), 3, 3))
    for k, (i, j) in enumerate(pairs):
        U[:, i, j] = U[:, j, i] = D6[:, k]
    U += u_iso[:, None, None] * np.eye(3)[None]
    model_an = model_iso + np.einsum("nkp,np->nk", X, D6)
    aniso_corr = window_correlation(vals, model_an, inside)
    finite = np.all(np.isfinite(U), axis=(1, 2))
    ev = np.linalg.eigvalsh(np.where(finite[:, None, None], U, np.eye(3)[None]))
    aniso_ok = finite & np.all(ev > 0, axis=1) & np.all(ev < 4 * radius_A**2, axis=1)
    return DisplacementFit(u_iso, U, aniso_ok, iso_corr, aniso_corr, np.where(failed, np.nan, amp))


def neighbour_background(centres_A: np.ndarray, d: np.ndarray, amplitude: np.ndarray, u_iso: np.ndarray,
                         table: ProfileTable, cutoff_A: float = 6.0) -> np.ndarray:
    """Density of every OTHER atom at each atom's window voxels, from the fitted isotropic models.

    Parameters
    ----------
    centres_A
        (N, 3) atom centres (Å).
    d
        (N, K, 3) window voxel offsets from their atom's centre (Å), as from :func:`gather_windows`.
    amplitude, u_iso
        (N,) fitted amplitude and U of each atom (non-finite: the atom contributes nothing).
    table
        Exact profiles.
    cutoff_A
        Atoms farther than this from an atom contribute nothing to its window (the band limit's ripples
        reach far: 6 Å keeps the U bias of a clean map below 0.001 Å², 4.3 Å doubles it).

    Returns
    -------
    numpy.ndarray
        (N, K) summed neighbour density (subtract it from the map's window values to deblend).
    """
    c = np.asarray(centres_A, float)
    n, k = d.shape[:2]
    out = np.zeros((n, k))
    if n < 2:
        return out
    from scipy.spatial import cKDTree

    pairs = cKDTree(c).query_pairs(cutoff_A, output_type="ndarray")
    if len(pairs) == 0:
        return out
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.argsort(i, kind="stable")
    indices = j[order].astype(np.int64)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(i, minlength=n), out=indptr[1:])
    amp = np.nan_to_num(np.asarray(amplitude, float), nan=0.0)
    du = table.u_grid[1] - table.u_grid[0]
    iu = np.clip(np.rint(np.nan_to_num(np.asarray(u_iso, float), nan=0.0) / du), 0, len(table.u_grid) - 1)
    neighbour_sum(np.ascontiguousarray(c), np.ascontiguousarray(d, dtype=np.float64), amp, iu.astype(np.int64),
                  indptr, indices, np.ascontiguousarray(table.p), float(table.r[1] - table.r[0]), out)
    return out


def _gather_lookup(tab: np.ndarray, iu: np.ndarray, r: np.ndarray, table: ProfileTable) -> np.ndarray:
    step = table.r[1] - table.r[0]
    x = np.clip(r / step, 0, len(table.r) - 1.000001)
    i0 = x.astype(np.int64)
    f = x - i0
    row = np.asarray(iu, np.int64).reshape(-1, *([1] * (i0.ndim - 1)))
    return tab[row, i0] * (1 - f) + tab[row, i0 + 1] * f


def _lstsq_rows(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row least squares: X (N, K, P), y (N, K) -> (N, P), ridge-stabilised."""
    A = np.einsum("nkp,nkq->npq", X, X)
    b = np.einsum("nkp,nk->np", X, y)
    scale = np.sqrt(np.einsum("npp->np", A)) + 1e-30
    A = A / scale[:, :, None] / scale[:, None, :] + 1e-9 * np.eye(A.shape[1])[None]
    return np.linalg.solve(A, (b / scale)[..., None])[..., 0] / scale


def refine_positions(vol: np.ndarray, centres_A: np.ndarray, sampling: float, radius_A: float,
                     table: ProfileTable, u_iso: np.ndarray | None = None, n_iter: int = 3,
                     others: DisplacementFit | None = None) -> np.ndarray:
    """Refine atom centres by Gauss–Newton least squares of amplitude·p_U(|x − c|) + background.

    Every voxel within ``radius_A`` of an atom contributes (a matched fit, far less noisy than the peak
    voxel's neighbourhood); steps are limited to half a voxel per iteration. Vectorised over atoms.

    Parameters
    ----------
    vol
        Map [z, y, x].
    centres_A
        (N, 3) starting centres (x, y, z) in Å.
    sampling
        Å.
    radius_A
        Fit sphere radius (Å).
    table
        Exact atom profiles (:func:`profile_table`).
    u_iso
        (N,) U per atom for the profile (Å²); default the table's U closest to 0.01 Å².
    n_iter
        Gauss–Newton iterations.
    others
        A previous fit of the same atoms: the neighbours' modelled density is subtracted (deblending).

    Returns
    -------
    numpy.ndarray
        (N, 3) refined centres (Å); atoms whose fit is degenerate keep their start.
    """
    c = np.asarray(centres_A, dtype=np.float64).reshape(-1, 3).copy()
    n = len(c)
    if n == 0:
        return c
    if u_iso is None:
        u_iso = np.full(n, 0.01)
    iu = np.clip(np.rint(np.nan_to_num(np.asarray(u_iso, float), nan=0.01) / (table.u_grid[1] - table.u_grid[0])),
                 0, len(table.u_grid) - 1).astype(np.int64)
    start = c.copy()
    bg = None
    if others is not None:  # neighbours' density, computed once (centres move by picometres)
        _, d0, _ = gather_windows(vol, c, sampling, radius_A)
        bg = neighbour_background(c, d0, others.amplitude, others.u_iso, table)
    for _ in range(n_iter):
        vals, d, inside = gather_windows(vol, c, sampling, radius_A)
        if bg is not None:
            vals = vals - bg
        w = inside.astype(np.float64)
        r = np.sqrt(np.einsum("nki,nki->nk", d, d))
        p = _gather_lookup(table.p, iu, r, table)
        dp = _gather_lookup(table.dp, iu, r, table)
        with np.errstate(invalid="ignore", divide="ignore"):
            xh = np.where(r[..., None] > 1e-9, d / np.where(r[..., None] > 1e-9, r[..., None], 1.0), 0.0)
        # linear amplitude/background first
        X0 = np.stack([p, np.ones_like(p)], axis=-1) * w[..., None]
        ab = _lstsq_rows(X0, vals * w)
        amp = ab[:, 0]
        res = (vals - amp[:, None] * p - ab[:, 1:2]) * w
        # d model / d centre = −A·p'(r)·x̂  (x = voxel − centre)
        J = (-amp[:, None, None] * dp[..., None] * xh) * w[..., None]
        X = np.concatenate([X0, J], axis=-1)
        step = _lstsq_rows(X, res)[:, 2:]
        ok = (amp > 0) & np.all(np.isfinite(step), axis=1)
        step = np.clip(step, -0.5 * sampling, 0.5 * sampling)
        c[ok] += step[ok]
    moved = np.linalg.norm(c - start, axis=1) > radius_A
    c[moved] = start[moved]
    return c


def isotropic_residual(vol: np.ndarray, centres_A: np.ndarray, sampling: float, radius_A: float,
                       table: ProfileTable, windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> float:
    """Summed squared residual of the best isotropic profile fits (amplitude, background, U) of all atoms
    (``windows``: :func:`gather_windows` of the same arguments, if the caller has it)."""
    windows = gather_windows(vol, centres_A, sampling, radius_A) if windows is None else windows
    fit = fit_displacements(vol, centres_A, sampling, radius_A, table, windows=windows)
    vals, d, inside = windows
    r = np.sqrt(np.einsum("nki,nki->nk", d, d))
    du = table.u_grid[1] - table.u_grid[0]
    iu = np.clip(np.rint(np.nan_to_num(fit.u_iso, nan=0.0) / du), 0, len(table.u_grid) - 1).astype(np.int64)
    p = _gather_lookup(table.p, iu, r, table)
    w = inside.astype(np.float64)
    ab = _lstsq_rows(np.stack([p, np.ones_like(p)], axis=-1) * w[..., None], vals * w)
    res = (vals - ab[:, :1] * p - ab[:, 1:2]) * w
    return float(np.sum(res**2))


def fit_band_limit(vol: np.ndarray, centres_A: np.ndarray, sampling: float, radius_A: float, element: str,
                   lo: float, hi: float, n: int = 7, max_atoms: int = 120) -> float:
    """Effective band limit (Å) of the atoms in a map whose spectrum shows no edge (noise fills the band).

    The exact atom profile depends on the band limit as much as on U; the band limit that lets the profile
    fit the atoms best (smallest summed residual over up to ``max_atoms`` atoms, a grid of ``n`` values in
    [lo, hi], a finer grid around the best, then a parabola) is the map's effective resolution for the U
    and position fits.
    """
    c = np.asarray(centres_A, float)
    if len(c) > max_atoms:
        c = c[np.linspace(0, len(c) - 1, max_atoms).astype(int)]
    windows = gather_windows(vol, c, sampling, radius_A)  # the same windows at every band limit

    def residuals(grid: np.ndarray) -> np.ndarray:
        return np.array([isotropic_residual(vol, c, sampling, radius_A, profile_table(element, round(float(b), 4)),
                                            windows) for b in grid])

    grid = np.linspace(lo, hi, n)
    sse = residuals(grid)
    i = int(np.argmin(sse))
    step = grid[1] - grid[0]
    grid = np.linspace(max(lo, grid[i] - step), min(hi, grid[i] + step), n)  # finer scan around the best
    sse = residuals(grid)
    i = int(np.argmin(sse))
    if 0 < i < n - 1:
        den = sse[i - 1] - 2 * sse[i] + sse[i + 1]
        shift = 0.5 * (sse[i - 1] - sse[i + 1]) / den if den > 0 else 0.0
        return float(grid[i] + np.clip(shift, -1, 1) * (grid[1] - grid[0]))
    return float(grid[i])
