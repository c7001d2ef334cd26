"""Band-limited projected potentials of atoms, per slice, computed exactly in Fourier space.

Method
------
The 2D Fourier transform of an atom's projected potential is V̂(q) = 2πa₀e · f(q) (Kirkland 2010, ch. 5;
:func:`tumblebench.simulator.scattering.form_factor`). A slice's projected potential on a periodic window of
ny × nx pixels of size p is therefore the Fourier series

    v_s(r) = (1/A) Σ_q Σ_j w_js V̂_j(q) exp(2πi q·(r − r_j)),   A = nx·ny·p²,

evaluated only for |q| ≤ q_max (a hard band limit, normally 2/3 of the grid's Nyquist frequency so that the
multislice does not alias). Because exp(−2πi q·r_j) = exp(−2πi qx x_j)·exp(−2πi qy y_j) the sum over atoms
is one complex matrix product per slice (``EYᵀ @ EX``), which is exact — no point-sampling of the narrow
Pt cores (σ ≈ 0.05 Å), no sub-pixel interpolation — and costs O(atoms × n_qx × n_qy).

Slice integrals
---------------
``slicing="exact"`` (Gaussian tables ``peng``/``peng6`` only): each of an atom's five 3D Gaussians
(variance bᵢ/(8π²) per axis) contributes to slice [z₀, z₁) the fraction
wᵢ = ½[erf((z₁ − z)/(√2σᵢ)) − erf((z₀ − z)/(√2σᵢ))], so the slices sum exactly to the projected potential
and an atom on a slice boundary is split correctly. Its 2D transform aᵢ exp(−bᵢq²/4) is separable in qx and
qy too, so the split costs only extra rows in the matrix product.
``slicing="centre"`` (any table): each atom's whole projected potential goes to the slice that contains its
centre (abTEM's and Kirkland's "infinite projection").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from scipy.special import erf

from tumblebench.simulator._potential_kernels import add_hermitian_pairs, phase_factors, weighted_rows
from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.grid import frequencies
from tumblebench.simulator.scattering import GAUSSIAN_TABLES, TWO_PI_A0_E, form_factor, gaussian_coefficients

#: A Gaussian's Fourier transform is dropped where its damping exp(−b q²/4) falls below this (its
#: contribution there is < 1e-6 of its amplitude; for Pt's broad Gaussians this keeps only |q| ≲ 1–3 Å⁻¹).
DAMPING_CUTOFF = 1e-6


def _symbols_array(symbols: str | Sequence[str], n: int) -> np.ndarray:
    if isinstance(symbols, str):
        return np.full(n, symbols, dtype=object)
    arr = np.asarray(list(symbols), dtype=object)
    if arr.shape != (n,):
        raise TumblebenchError(f"got {arr.size} element symbols for {n} atoms")
    return arr


class FourierGrid:
    """The band-limited rfft frequencies of a periodic window, and where they sit in the rfft array.

    Parameters
    ----------
    shape_yx
        Window shape (ny, nx) in pixels.
    sampling
        Pixel size (Å).
    q_max
        Band limit (Å⁻¹); frequencies with |q| > q_max are zero.
    """

    def __init__(self, shape_yx: tuple[int, int], sampling: float, q_max: float):
        self.shape = (int(shape_yx[0]), int(shape_yx[1]))
        self.sampling = float(sampling)
        self.q_max = float(q_max)
        qy, qx = (q.ravel() for q in frequencies(self.shape, sampling, rfft=True))
        self.iy = np.nonzero(np.abs(qy) <= q_max)[0]
        self.ix = np.nonzero(qx <= q_max)[0]
        self.qy = qy[self.iy]
        self.qx = qx[self.ix]
        # integer frequency indices and spacings for the recurrence kernel
        self.ky = np.rint(self.qy * self.shape[0] * sampling).astype(np.int64)
        self.kx = np.rint(self.qx * self.shape[1] * sampling).astype(np.int64)
        self.dqy = 1.0 / (self.shape[0] * sampling)
        self.dqx = 1.0 / (self.shape[1] * sampling)
        q2 = self.qy[:, None] ** 2 + self.qx[None, :] ** 2
        self.mask = (q2 <= q_max**2).astype(np.float32)
        self.full = self.iy.size == self.shape[0] and self.ix.size == self.shape[1] // 2 + 1
        self.q = np.sqrt(q2)
        self._form: dict[tuple[str, str], np.ndarray] = {}
        # irfft2 gives (1/N) Σ X e^{...}; v = (1/A) Σ V̂ e^{...}  ⇒  X = V̂ / p².
        self.norm = 1.0 / self.sampling**2

    def form_factor(self, element: str, table: str) -> np.ndarray:
        """2πa₀e·f(q)/p² of ``element`` on this grid's band-limited frequencies (complex64, cached)."""
        key = (element, table)
        if key not in self._form:
            self._form[key] = (TWO_PI_A0_E * self.norm * form_factor(element, self.q, table)).astype(np.complex64)
        return self._form[key]

    def scatter(self, coeffs: np.ndarray) -> np.ndarray:
        """Place band-limited coefficients (..., n_qy, n_qx) into a zero rfft array (..., ny, nx//2+1) (the
        coefficients themselves, as complex64, when the band covers the whole rfft array)."""
        if self.full:
            return np.asarray(coeffs, dtype=np.complex64)
        out = np.zeros((*coeffs.shape[:-2], self.shape[0], self.shape[1] // 2 + 1), dtype=np.complex64)
        out[..., self.iy[:, None], self.ix[None, :]] = coeffs
        return out

    def to_real(self, coeffs: np.ndarray, workers: int = -1) -> np.ndarray:
        """Real-space arrays (..., ny, nx) float32 from band-limited coefficients."""
        return scipy.fft.irfft2(self.scatter(coeffs), s=self.shape, workers=workers).astype(np.float32, copy=False)


def slice_weights(z: np.ndarray, sigma: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of each 1D Gaussian N(z, σ²) inside each slice [edges[s], edges[s+1]).

    Parameters
    ----------
    z
        (M,) centres (Å).
    sigma
        (M,) standard deviations (Å), > 0.
    edges
        (S+1,) increasing slice boundaries (Å).

    Returns
    -------
    numpy.ndarray
        (M, S) weights; rows sum to the fraction of the Gaussian inside [edges[0], edges[-1]].
    """
    c = erf((edges[None, :] - z[:, None]) / (np.sqrt(2.0) * sigma[:, None]))
    return 0.5 * (c[:, 1:] - c[:, :-1])


def slice_potential_coefficients(
    positions: np.ndarray,
    symbols: str | Sequence[str],
    grid: FourierGrid,
    edges: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    table: str = "peng",
    slicing: str = "exact",
    min_weight: float = 1e-5,
) -> np.ndarray:
    """Band-limited Fourier coefficients of the projected potential of each slice.

    Parameters
    ----------
    positions
        (N, 3) atom positions (x, y, z) in Å in the window frame: pixel (row i, col j) is centred at
        (x, y) = (j·p, i·p); z along the beam.
    symbols
        One element symbol for all atoms, or one per atom.
    grid
        The window's :class:`FourierGrid`.
    edges
        (S+1,) slice boundaries in Å; None projects everything into one slice.
    weights
        (N,) multiplicity of each atom (e.g. 1/S to average S sub-steps linearly); default 1.
    table
        Scattering table (:data:`tumblebench.simulator.scattering.TABLES`).
    slicing
        ``"exact"`` (erf slice integrals; Gaussian tables) or ``"centre"`` (module docstring).
    min_weight
        Slice fractions below this are dropped (exact slicing).

    Returns
    -------
    numpy.ndarray
        (S, n_qy, n_qx) complex64 coefficients; :meth:`FourierGrid.to_real` gives v_s in V·Å.
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    n = pos.shape[0]
    syms = _symbols_array(symbols, n)
    w_atom = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n)
    if slicing not in ("exact", "centre"):
        raise TumblebenchError(f"slicing = {slicing!r}; expected 'exact' or 'centre'")
    if slicing == "exact" and table not in GAUSSIAN_TABLES:
        raise TumblebenchError(
            f"slicing 'exact' needs a Gaussian scattering table ({', '.join(GAUSSIAN_TABLES)}), got {table!r}; "
            "use slicing = 'centre' for it"
        )
    if edges is None:
        edges = np.array([-np.inf, np.inf])
    edges = np.asarray(edges, dtype=np.float64)
    n_slices = edges.size - 1
    out = np.zeros((n_slices, grid.qy.size, grid.qx.size), dtype=np.complex64)
    if n == 0:
        return out
    scale = TWO_PI_A0_E * grid.norm
    elements = sorted(set(syms.tolist()))
    if slicing == "exact":
        rows_slice, rows_atom, rows_g, rows_coef = [], [], [], []
        damp_x, damp_y, boxes = [], [], []
        for el in elements:
            idx = np.nonzero(syms == el)[0]
            a, b = gaussian_coefficients(el, table)
            sig = np.sqrt(b / (8 * np.pi**2))
            z = pos[idx, 2]
            home = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, n_slices - 1)
            finite = np.diff(edges[np.isfinite(edges)])
            dz_min = finite.min() if finite.size else np.inf
            for g in range(a.size):
                g_id = len(damp_x)
                damp_x.append(np.exp(-0.25 * b[g] * grid.qx**2))
                damp_y.append(np.exp(-0.25 * b[g] * grid.qy**2))
                # the sub-box of frequencies where this Gaussian's damping exceeds DAMPING_CUTOFF
                q_cut = np.sqrt(-4.0 * np.log(DAMPING_CUTOFF) / b[g])
                boxes.append((int(np.count_nonzero((grid.qy >= 0) & (grid.qy <= q_cut))),
                              int(np.count_nonzero((grid.qy < 0) & (grid.qy >= -q_cut))),
                              int(np.count_nonzero(grid.qx <= q_cut))))
                if n_slices == 1:
                    w = np.ones((idx.size, 1))
                    sl = np.zeros((idx.size, 1), dtype=np.int64)
                else:
                    # only the slices within reach of this Gaussian (±4.5σ) around each atom's own slice
                    k = int(min(np.ceil(4.5 * sig[g] / dz_min), n_slices)) if np.isfinite(dz_min) else n_slices
                    e_idx = np.clip(home[:, None] + np.arange(-k, k + 2)[None, :], 0, n_slices)
                    c = erf((edges[e_idx] - z[:, None]) / (np.sqrt(2.0) * sig[g]))
                    w = 0.5 * (c[:, 1:] - c[:, :-1])
                    sl = e_idx[:, :-1]
                ja, jb = np.nonzero(w > min_weight)
                rows_slice.append(sl[ja, jb])
                rows_atom.append(idx[ja])
                rows_g.append(np.full(ja.size, g_id))
                rows_coef.append(scale * a[g] * w[ja, jb] * w_atom[idx[ja]])
        # rows grouped by slice, then by frequency box (Gaussians with the same box share one product)
        box_ids = {bx: i for i, bx in enumerate(sorted(set(boxes), reverse=True))}
        box_of_g = np.array([box_ids[bx] for bx in boxes], dtype=np.int64)
        box_list = sorted(box_ids, key=box_ids.get)
        n_box = len(box_list)
        key = np.concatenate(rows_slice) * n_box + box_of_g[np.concatenate(rows_g)]
        order = np.argsort(key, kind="stable")
        key = key[order]
        ra = np.ascontiguousarray(np.concatenate(rows_atom)[order])
        rg = np.ascontiguousarray(np.concatenate(rows_g)[order])
        rc = np.ascontiguousarray(np.concatenate(rows_coef)[order])
        # undamped phasors once per atom, Gaussian damping once per Gaussian, combined per row
        zeros, ones = np.zeros(n), np.ones(n)
        px = np.empty((n, grid.qx.size), dtype=np.complex64)
        py = np.empty((n, grid.qy.size), dtype=np.complex64)
        phase_factors(np.ascontiguousarray(pos[:, 0]), zeros, ones, grid.kx, grid.dqx, px)
        phase_factors(np.ascontiguousarray(pos[:, 1]), zeros, ones, grid.ky, grid.dqy, py)
        dx = np.array(damp_x, dtype=np.float32)
        dy = np.array(damp_y, dtype=np.float32)
        # Each (slice, box) block is one real matrix product of the rows' interleaved (re, im) factors for
        # qy ≥ 0 only: the y factor at −qy is the conjugate of that at +qy (add_hermitian_pairs).
        n_qy = grid.qy.size
        plans = []
        for ny_pos, ny_neg, nx_b in box_list:
            if ny_pos + ny_neg == n_qy:  # whole column: negatives without a +k partner (−Nyquist) go direct
                unpaired = int(np.count_nonzero(-grid.ky[ny_pos:] > ny_pos - 1))
                n_direct = ny_pos + unpaired
                neg_rows = np.arange(n_direct, n_qy)
            else:
                n_direct = ny_pos
                neg_rows = np.arange(n_qy - ny_neg, n_qy)
            neg_src = -grid.ky[neg_rows]
            if neg_src.size and neg_src.max() >= n_direct:
                raise TumblebenchError("internal: asymmetric frequency box")  # cannot happen for |qy| ≤ cut
            plans.append((n_direct, np.ascontiguousarray(neg_rows), np.ascontiguousarray(neg_src), nx_b))
        box_arr = np.array(boxes, dtype=np.int64)[rg]  # (rows, 3): ny_pos, ny_neg, nx of each row's Gaussian
        n_direct_row = np.array([pl[0] for pl in plans], dtype=np.int64)[box_of_g[rg]]
        ex = np.empty((ra.size, grid.qx.size), dtype=np.complex64)
        ey = np.empty((ra.size, n_qy), dtype=np.complex64)
        no_tail = np.zeros(ra.size, np.int64)
        weighted_rows(px, dx, ra, rg, rc, np.ascontiguousarray(box_arr[:, 2]), no_tail, ex)
        weighted_rows(py, dy, ra, rg, np.ones_like(rc), n_direct_row, no_tail, ey)
        exr = ex.view(np.float32)
        eyr = ey.view(np.float32)
        bounds = np.searchsorted(key, np.arange(n_slices * n_box + 1))
        for s in range(n_slices):
            for bi, (n_direct, neg_rows, neg_src, nx_b) in enumerate(plans):
                lo, hi = bounds[s * n_box + bi], bounds[s * n_box + bi + 1]
                if hi > lo:
                    g = eyr[lo:hi, :2 * n_direct].T @ exr[lo:hi, :2 * nx_b]
                    add_hermitian_pairs(g, out[s], n_direct, neg_rows, neg_src)
    else:
        if n_slices == 1:
            slice_of = np.zeros(n, dtype=np.int64)
        else:
            slice_of = np.searchsorted(edges, pos[:, 2], side="right") - 1
        keep = (slice_of >= 0) & (slice_of < n_slices)
        zeros = np.zeros(n)
        ex_all = np.empty((n, grid.qx.size), dtype=np.complex64)
        ey_all = np.empty((n, grid.qy.size), dtype=np.complex64)
        phase_factors(np.ascontiguousarray(pos[:, 0]), zeros, np.ascontiguousarray(w_atom), grid.kx, grid.dqx,
                      ex_all)
        phase_factors(np.ascontiguousarray(pos[:, 1]), zeros, np.ones(n), grid.ky, grid.dqy, ey_all)
        for el in elements:
            f = grid.form_factor(el, table)
            idx = np.nonzero(keep & (syms == el))[0]
            idx = idx[np.argsort(slice_of[idx], kind="stable")]
            bounds = np.searchsorted(slice_of[idx], np.arange(n_slices + 1))
            for s in range(n_slices):
                lo, hi = bounds[s], bounds[s + 1]
                if hi > lo:
                    rows = idx[lo:hi]
                    out[s] += f * (ey_all[rows].T @ ex_all[rows])
    out *= grid.mask
    return out


def projected_potential_window(
    positions: np.ndarray,
    symbols: str | Sequence[str],
    shape_yx: tuple[int, int],
    sampling: float,
    q_max: float,
    edges: np.ndarray | None = None,
    table: str = "peng",
    slicing: str = "exact",
) -> np.ndarray:
    """Band-limited projected potential per slice on a periodic window, V·Å.

    Parameters
    ----------
    positions
        (N, 3) positions in Å in the window frame (pixel (i, j) centred at x = j·p, y = i·p).
    symbols
        One symbol or one per atom.
    shape_yx
        Window shape (ny, nx).
    sampling
        Pixel size (Å).
    q_max
        Band limit (Å⁻¹).
    edges
        (S+1,) slice boundaries (Å) or None for one projection through everything.
    table, slicing
        See :func:`slice_potential_coefficients`.

    Returns
    -------
    numpy.ndarray
        (S, ny, nx) float32 (S = 1 when ``edges`` is None).
    """
    grid = FourierGrid(shape_yx, sampling, q_max)
    coeffs = slice_potential_coefficients(positions, symbols, grid, edges, table=table, slicing=slicing)
    return grid.to_real(coeffs)
