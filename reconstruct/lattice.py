"""Ab initio orientations from the crystal lattice: an fcc prior, a temporal path, and a branch labelling.

On aberration-corrected frames of a 2–3 nm Pt particle the contrast transfer leaves almost nothing of the
particle's outline (the band 3.3–8 Å is empty) and what remains at low resolution is nearly spherical, so a
search that starts from a featureless model finds no orientations. The information is in the lattice fringes
(1.1–3.3 Å). Their *amplitudes* do not depend on where the particle sits in the box, so they can be matched
against a generic crystal of the element without knowing the particle's shape or its centre:

1. **Prior search.** A ball of fcc sites of the frames' estimated diameter (``"fcc"``), or a ball twinned on a
   central (111) plane (``"fcc-twin"``, a common planar defect of Pt nanocrystals), at the lattice constant of
   the frames' own fringes (:func:`fringe_lattice_constant`: strained particles are not at bulk), is projected
   over the fundamental zone of its own rotation group; every frame keeps its best distinct peaks by the
   correlation of shell-whitened amplitudes |F|·|CTF| against the prior's |F|·⟨CTF²⟩ on a Fourier-cropped box.
2. **Temporal path.** Amplitudes cannot tell a pose ``R`` from ``R·S`` for the prior's rotations ``S`` (a twinned
   prior: also the swap of its two domains, a 180° rotation about the twin normal), nor from ``TWIN·R`` (the
   image turned 180° about the beam: |F| is centrosymmetric). A Viterbi pass picks, among each frame's peaks
   expanded by all these operations, the smoothest path (rotational diffusion makes successive poses close).
   The path is consistent within time segments, but may change branch where two branches meet (the beam along
   a 2-fold axis of the ambiguity).
3. **Branch labelling.** Every frame then chooses among its ``2·|S|`` branch mates of the path by the
   phase-sensitive correlation (shift-searched) with a reference map, under a continuity penalty. The passes
   start from an annealed labelling (:meth:`BranchLabeller.anneal`): soft passes at falling temperatures, in which
   every frame enters the references at each of its mates in proportion to its posterior over all labellings of
   the series, so that no frame commits to a mate before the references can tell them apart (hard passes from the
   path's own references commit every frame at once and can settle on a self-consistent mixture). The first
   passes' penalty is heavier than the path's (the stiff weight of ``label_continuity_weights``), so that a branch
   change is only possible where two branches meet: a light one lets the frames of a run scored against a mixed
   first map keep their own mates one by one, and the labelling wanders between mixtures. Once these passes
   converge (or after ``label_stiff_iterations``) the later ones relax it, so that frames of a particle the prior
   fits only in part can leave their run where the branches meet; a converged stiff labelling whose relaxed
   passes do not converge again is kept. The reference is the map of the current
   labelling passed through a caller-supplied *reference model* builder (e.g. the atomic model traced from it
   and simulated back, :func:`tumblebench.analysis.reference.atom_reference`): the map of a mixture of branches is
   self-consistent, the atomic model built from it is not — it keeps the majority's atoms — so the labelling
   converges to one branch. Without a builder the map itself is the reference, and the labelling can settle on a
   mixture. Each half of the frames (even, odd) is scored against the reference of the *other* half, and every
   frame's shift is searched afresh around the tracker's origin: a frame scored against a map that holds it, at
   a shift fitted to its last label, keeps that label whether it is right or not. The first pass's references
   are built at shifts fitted to the path (each frame against the other half's map at its path pose; a map at
   the tracker's origins blurs the mates together), later ones at the shifts where each frame's chosen mate
   peaked. The two half maps are brought onto each other by a translation before each pass
   (:func:`register_halves`): each half's shifts are fitted to the other half's map, so two maps that sit apart
   would trade places from pass to pass and stay apart. The passes stop when few frames change branch; that
   count can stay high while the map does not change, as runs of an achiral particle's frames can swap between
   their two projection-twin mates, equally right, from pass to pass. The chosen prior's labelling, when it has
   not converged, goes on for a few passes while the band FSC of its half maps still rises
   (:meth:`BranchLabeller.extend`): one still gathering its frames onto one branch gets there, one that fluctuates
   stops.

Each prior is tried; the one whose final labelling gives the highest half-map FSC (even/odd frames) in the
lattice band wins, so a single crystal and a twinned particle are both handled without knowing which it is. A
prior later in ``priors`` (the twinned one after the single crystal) must beat the earlier ones by
``prior_fsc_margin`` (:func:`choose_prior`): on a single crystal the two labellings' half maps agree about
equally well, either way by up to 0.02, and the twinned prior's poses are then the worse ones. No truth is
read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
from ase.build import bulk
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tumblebench.reconstruct.fsc import fsc
from tumblebench.reconstruct.model_pair import model_pair
from tumblebench.reconstruct.poses import AbInitioPoses
from tumblebench.reconstruct.projector import (
    Band,
    Reconstructor,
    SliceSpectra,
    image_ft,
    prepare_reference,
    project_band,
    shift_phases,
    soft_sphere,
)
from tumblebench.reconstruct.search import (
    distinct_peaks,
    fourier_crop,
    fourier_crop_volume,
    path_posteriors,
    robust_z,
    so3_grid,
    viterbi,
)
from tumblebench.simulator.density import lowpass, render_density
from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.mrc import scratch_like
from tumblebench.simulator.orientation import TWIN, cubic_group
from tumblebench.simulator.shapes import bulk_lattice_constant
from tumblebench.stages import PoseInput, ReferenceModel

log = logging.getLogger("tumblebench.reconstruct")

PRIORS = ("fcc", "fcc-twin")
TWIN_NORMAL = np.ones(3) / np.sqrt(3.0)  # the twinned prior's (111) plane normal, particle frame
#: Grid poses of the amplitude search correlated with all frames at a time (:func:`amplitude_search`).
SEARCH_CHUNK = 4000
LATTICE_SCALES = np.round(np.arange(0.97, 1.0751, 0.015), 3)  # prior lattice constants tried, × bulk
LATTICE_FIT_FRAMES = 256  # frames of the lattice-constant fit
LATTICE_FIT_GRID = 120000  # SO(3) poses of its search (~2.5° spacing)
EXTEND_GAIN = 0.02  # band-FSC rise that keeps an unconverged labelling going (BranchLabeller.extend)
SOFT_MIN_POSTERIOR = 0.02  # branch mates of a frame below this posterior stay out of the annealing's maps


@dataclass(frozen=True)
class LatticeConfig:
    """Configuration of the lattice-prior ab initio (``abinitio.method = "lattice"``).

    Attributes
    ----------
    element
        Element of the fcc prior (its lattice constant is fitted around the bulk one of
        :func:`simulator.shapes.bulk_lattice_constant`).
    priors
        Priors tried, simplest first: ``"fcc"`` (single crystal), ``"fcc-twin"`` (twinned on a central (111)).
    prior_fsc_margin
        A prior is chosen over the earlier ones only when the half-map FSC of its labelling exceeds theirs by more
        than this (:func:`choose_prior`).
    box
        Fourier-cropped box (pixels) of the searches and the labelling maps.
    band_A
        (low, high) resolution (Å) of the amplitude search: where the lattice fringes are.
    grid_size
        Whole-SO(3) grid reduced to the prior's fundamental zone (480,000 ≈ 1.6° spacing).
    top_k
        Distinct amplitude peaks per frame (at least ``distinct_deg`` apart) for the temporal path.
    distinct_deg
        Smallest angle between two kept peaks of a frame (deg).
    label_band_A
        (low, high) resolution (Å) of the phase-sensitive branch labelling.
    map_resolution_A
        Resolution limit (Å) of the labelling maps.
    label_iterations
        Labelling iterations per prior (fewer when it converges).
    label_extra_iterations
        Further iterations of the chosen prior's labelling while it has not converged and the band FSC of its half
        maps still rises (:meth:`BranchLabeller.extend`).
    label_converged
        The labelling stops when at most this fraction of the frames changed branch in an iteration.
    label_continuity_weights
        (stiff, relaxed) weights of the continuity penalty in the labelling's Viterbi pass over the branch mates
        (its scores are in units of their median deviation; the temporal path's weight is
        ``abinitio.continuity_weight``): the stiff one for the first ``label_stiff_iterations`` passes or until
        they converge, the relaxed one after; a converged stiff labelling is kept when the relaxed passes do not
        converge (:meth:`BranchLabeller.run`).
    label_stiff_iterations
        Labelling passes at the stiff weight at most (all of ``label_iterations`` when it is larger).
    label_temperatures
        Temperatures of the soft passes before the labelling's first (:meth:`BranchLabeller.anneal`), falling;
        empty: none.
    shift_range_A, shift_step_A
        Shift search of every labelling iteration: ± range around the tracker's origin, in steps (Å).
    """

    element: str = "Pt"
    priors: tuple[str, ...] = PRIORS
    prior_fsc_margin: float = 0.03
    box: int = 96
    band_A: tuple[float, float] = (4.0, 1.1)
    grid_size: int = 480000
    top_k: int = 20
    distinct_deg: float = 6.0
    label_band_A: tuple[float, float] = (8.0, 1.6)
    map_resolution_A: float = 1.2
    label_iterations: int = 10
    label_extra_iterations: int = 5
    label_converged: float = 0.01
    label_continuity_weights: tuple[float, float] = (1.0, 0.3)
    label_stiff_iterations: int = 5
    label_temperatures: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
    shift_range_A: float = 1.2
    shift_step_A: float = 0.2

    def validate(self) -> None:
        bulk_lattice_constant(self.element)
        require(len(self.priors) >= 1 and all(p in PRIORS for p in self.priors),
                f"abinitio.lattice.priors = {list(self.priors)} must be a non-empty list of {list(PRIORS)}")
        require(0 <= self.prior_fsc_margin < 1,
                f"abinitio.lattice.prior_fsc_margin = {self.prior_fsc_margin} must be in [0, 1)")
        require(32 <= self.box <= 256 and self.box % 2 == 0, f"abinitio.lattice.box = {self.box} must be even, 32–256")
        for name in ("band_A", "label_band_A"):
            lo, hi = getattr(self, name)
            require(lo > hi > 0, f"abinitio.lattice.{name} = {[lo, hi]} must be (low, high) Å with low > high > 0")
        require(self.grid_size >= 1000, f"abinitio.lattice.grid_size = {self.grid_size} must be >= 1000")
        require(self.top_k >= 1 and self.distinct_deg >= 0 and self.label_iterations >= 0
                and self.label_extra_iterations >= 0,
                "abinitio.lattice.top_k must be >= 1, distinct_deg, label_iterations and label_extra_iterations >= 0")
        require(0 <= self.label_converged < 1,
                f"abinitio.lattice.label_converged = {self.label_converged} must be a fraction in [0, 1)")
        require(len(self.label_continuity_weights) == 2 and min(self.label_continuity_weights) >= 0,
                f"abinitio.lattice.label_continuity_weights = {list(self.label_continuity_weights)} must be "
                "(stiff, relaxed), both >= 0")
        require(self.label_stiff_iterations >= 0,
                f"abinitio.lattice.label_stiff_iterations = {self.label_stiff_iterations} must be >= 0")
        require(all(t > 0 for t in self.label_temperatures),
                f"abinitio.lattice.label_temperatures = {list(self.label_temperatures)} must all be > 0")
        require(self.map_resolution_A > 0 and self.shift_step_A > 0 and self.shift_range_A >= 0,
                "abinitio.lattice: map_resolution_A and shift_step_A must be > 0, shift_range_A >= 0")


def choose_prior(half_fsc: dict[str, float], margin: float) -> str:
    """The prior whose labelling is kept: the first of ``half_fsc`` (in the order tried, simplest first) unless a
    later one's half-map FSC exceeds the best of those before it by more than ``margin``."""
    best = None
    for kind, score in half_fsc.items():
        if best is None or score > half_fsc[best] + margin:
            best = kind
    return best


def domain_swap() -> np.ndarray:
    """The swap of the twinned prior's domains: 180° about the twin normal (3, 3)."""
    return Rotation.from_rotvec(np.pi * TWIN_NORMAL).as_matrix()


def prior_sites(kind: str, lattice_constant_A: float, radius_A: float) -> np.ndarray:
    """fcc sites within ``radius_A`` of a site at the origin, cube axes along x, y, z (Å, (N, 3)).

    ``"fcc-twin"``: the half-space below the (111) plane through the origin is replaced by the mirror image of
    the half above it (a twin boundary through the centre).
    """
    require(kind in PRIORS, f"lattice prior {kind!r} is not one of {list(PRIORS)}")
    cell = bulk("Pt", "fcc", a=lattice_constant_A, cubic=True)
    k = int(np.ceil(radius_A / lattice_constant_A)) + 2
    pos = cell.repeat((2 * k, 2 * k, 2 * k)).get_positions() - k * lattice_constant_A
    if kind == "fcc-twin":
        h = pos @ TWIN_NORMAL
        up = pos[h >= -1e-6]
        mirrored = up - 2 * (up @ TWIN_NORMAL)[:, None] * TWIN_NORMAL
        pos = np.concatenate([up, mirrored[(mirrored @ TWIN_NORMAL) < -1e-6]])
    return pos[np.linalg.norm(pos, axis=1) <= radius_A]


def prior_group(sites: np.ndarray) -> np.ndarray:
    """Rotations among O ∪ O·C2[111] that map ``sites`` onto themselves (identity first), (G, 3, 3)."""
    o = cubic_group()
    tree = cKDTree(sites)
    cands = np.concatenate([o, o @ domain_swap()])
    return np.array([g for g in cands if np.all(tree.query(sites @ g.T)[0] < 0.05)])


def amplitude_ambiguity(kind: str, group: np.ndarray) -> np.ndarray:
    """Right-side operations S (pose·S) the amplitude score cannot tell apart, identity first.

    The prior's own rotations; a twinned prior adds the swap of its domains (180° about the twin normal), which
    changes which half of the particle holds which lattice but not the fringes' amplitudes.
    """
    if kind == "fcc-twin":
        return np.concatenate([group, group @ domain_swap()])
    return group


def prior_map(sites: np.ndarray, n: int, sampling: float, element: str, resolution_A: float) -> np.ndarray:
    """The prior's potential map [z, y, x] (n³, site at the centre voxel), band-limited at ``resolution_A``."""
    pos = sites + (n // 2) * sampling
    vol = render_density(pos, (n, n, n), sampling, elements=element, U=np.full(len(pos), 0.01))
    return lowpass(vol, sampling, resolution_A).astype(np.float32)


def fundamental_zone(grid: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The poses of ``grid`` that are the nearest to the identity among their mates ``g·S``, S in ``group``."""
    return grid[np.argmax(np.einsum("nij,sji->ns", grid, group), axis=1) == 0]


def _shells(band: Band) -> tuple[np.ndarray, np.ndarray]:
    shell = np.rint(band.radius).astype(int)
    order = np.argsort(shell, kind="stable")
    return order, np.flatnonzero(np.r_[True, np.diff(shell[order]) != 0])


@numba.njit(cache=True, parallel=True)
def _whiten_rows(x, order, starts, out):
    m, p = x.shape
    ns = starts.size
    for i in numba.prange(m):
        sq = 0.0
        for s in range(ns):
            a = starts[s]
            b = starts[s + 1] if s + 1 < ns else p
            acc = 0.0
            for j in range(a, b):
                acc += x[i, order[j]]
            mean = acc / (b - a)
            for j in range(a, b):
                v = x[i, order[j]] - mean
                out[i, j] = v
                sq += v * v
        nrm = max(np.sqrt(sq), 1e-30)
        for j in range(p):
            out[i, j] = out[i, j] / nrm


def _whiten(x: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per row: subtract each Fourier shell's mean, then normalise (rows of ``x`` real, (M, P)); the columns come
    out in shell ``order`` (shells from ``starts``), float32."""
    out = np.empty(x.shape, np.float32)
    _whiten_rows(np.ascontiguousarray(x, np.float32), np.asarray(order, np.int64), np.asarray(starts, np.int64), out)
    return out


def amplitude_search(vol: np.ndarray, x: np.ndarray, band: Band, grid: np.ndarray, c2: np.ndarray, top_k: int,
                     chunk: int = SEARCH_CHUNK, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Best ``top_k`` grid poses per frame by the correlation of shell-whitened amplitudes.

    Parameters
    ----------
    vol
        Prior map [z, y, x] (the frames' cropped pixel size).
    x
        (M, P) shell-whitened amplitudes |F|·|CTF| of the frames on ``band`` (:func:`search_amplitudes`).
    band
        Frequencies (half-plane suffices: |F| is centrosymmetric).
    grid
        (G, 3, 3) poses searched.
    c2
        (P,) mean CTF² the prior's amplitudes are weighted by.
    top_k
        Poses kept per frame.
    chunk
        Grid poses correlated with all frames at a time (float32 correlations: 4·``chunk`` B per frame).
    block
        Frames whose correlations are reduced at a time (the result does not depend on it; the float64 squares
        and candidate lists of a step take about 40 B per frame of ``block`` and grid pose of ``chunk``).

    Returns
    -------
    (idx, z)
        (M, top_k) grid indices, best first, and their z-scores against all of the grid's correlations.
    """
    order, starts = _shells(band)
    m, g = len(x), len(grid)
    ref = prepare_reference(vol)
    s1, s2 = np.zeros(m), np.zeros(m)
    best_v = np.full((m, top_k), -np.inf, np.float32)
    best_i = np.zeros((m, top_k), np.int64)
    for s in range(0, g, chunk):
        r = _whiten((np.abs(project_band(ref, grid[s:s + chunk], band)) * c2).astype(np.float32), order, starts)
        # one product of all frames (a float32 matrix product's rounding depends on its shape), reduced by blocks
        cc_all = x @ r.T
        for f in range(0, m, block):
            fs = slice(f, min(f + block, m))
            cc = cc_all[fs]
            s1[fs] += cc.sum(1)
            s2[fs] += (cc.astype(np.float64) ** 2).sum(1)
            v = np.concatenate([best_v[fs], cc], axis=1)
            i = np.concatenate([best_i[fs], np.broadcast_to(np.arange(s, s + len(r)), cc.shape)], axis=1)
            part = np.argpartition(-v, top_k - 1, axis=1)[:, :top_k]
            best_v[fs], best_i[fs] = np.take_along_axis(v, part, 1), np.take_along_axis(i, part, 1)
    o = np.argsort(-best_v, axis=1)
    best_v, best_i = np.take_along_axis(best_v, o, 1), np.take_along_axis(best_i, o, 1)
    mean = s1 / g
    sd = np.sqrt(np.maximum(s2 / g - mean**2, 1e-30))
    return best_i, (best_v - mean[:, None]) / sd[:, None]


def _turned(poses: np.ndarray) -> np.ndarray:
    """``TWIN·P`` for every pose of ``poses`` (N, S, 3, 3): the pose turned by 180° about the beam."""
    return np.einsum("ij,nsjk->nsik", TWIN, poses)


def branch_mates(poses: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """(M, 2·S, 3, 3): ``pose·s`` for s in ``ops``, then ``TWIN·pose·s`` (column 0 is the pose itself)."""
    right = np.einsum("nij,sjk->nsik", poses, ops)
    return np.concatenate([right, _turned(right)], axis=1)


def search_amplitudes(small: np.ndarray, ns: int, sampling: float, band_A: tuple[float, float], ctf_fn=None,
                      chunk: int = 500) -> tuple[Band, np.ndarray, np.ndarray]:
    """The amplitude search's band (half plane of ``band_A``), the frames' shell-whitened |F|·|CTF| on it (float32,
    what :func:`amplitude_search` correlates) and the mean CTF².

    Parameters
    ----------
    small
        (M, ns, ns) cropped frames (an array or a :class:`~tumblebench.simulator.mrc.FrameFile`, read ``chunk``
        frames at a time).
    ns, sampling
        Cropped box (pixels) and its pixel size (Å).
    band_A
        (low, high) resolution of the band (Å).
    ctf_fn
        Optional CTF callable ``(indices, shape, sampling)``; None: amplitudes as they are, CTF² = 1.
    """
    lo, hi = band_A
    band = Band.make(ns, r_max=ns * sampling / hi, r_min=ns * sampling / lo).half_plane()
    full = Band.make(ns, r_max=ns)
    order, starts = _shells(band)
    m = len(small)
    amp = np.empty((m, band.kx.size), np.float32)
    c2 = np.ones(band.kx.size) if ctf_fn is None else np.zeros(band.kx.size)
    for s in range(0, m, chunk):
        sel = np.arange(s, min(s + chunk, m))
        # the samples the frames' transforms have on the full band (the corners beyond it are zero)
        amp[sel] = np.abs(band.take(full.put(full.take(image_ft(np.asarray(small[s:s + chunk], np.float32))))))
        if ctf_fn is not None:
            c = band.take(ctf_fn(sel, (ns, ns), sampling))
            amp[sel] *= np.abs(c)
            c2 += (c**2).sum(axis=0)
        amp[sel] = _whiten(amp[sel], order, starts)
    if ctf_fn is not None:
        c2 /= m
    return band, amp, c2


@dataclass
class PriorPath:
    """Stages 1–2 of the lattice method for one prior (see :func:`prior_path`)."""

    kind: str
    sites: np.ndarray  # (N, 3) Å
    group: np.ndarray  # (G, 3, 3) the prior's rotations
    ops: np.ndarray  # (S, 3, 3) right-side branch mates (the amplitudes cannot tell pose·s apart)
    grid: np.ndarray  # (F, 3, 3) fundamental-zone poses searched
    peaks: np.ndarray  # (M, top_k, 3, 3) distinct amplitude peaks per frame, best first
    peak_z: np.ndarray  # (M, top_k) their z-scores (−inf: empty)
    path: np.ndarray  # (M, 3, 3) the Viterbi path through the peaks' branch mates


def fringe_lattice_constant(amp: np.ndarray, band: Band, c2: np.ndarray, n: int, sampling: float, ns: int,
                            diameter_A: float, element: str) -> float:
    """Lattice constant (Å) of the frames' fringes: that of the fcc prior whose amplitudes match them best.

    A strained particle's fringes are not at the bulk spacings (the seed paper's particles are expanded by up to
    ~5 %), and a prior at the bulk spacing then matches their amplitudes poorly. The prior is scaled by
    :data:`LATTICE_SCALES` around the bulk constant; for each scale, :data:`LATTICE_FIT_FRAMES` frames spread over
    the series are searched over a coarse grid (:data:`LATTICE_FIT_GRID` poses of SO(3)), and the scale with the
    highest median best-peak z-score wins, refined by a parabola through it and two scales a third of a step
    either side.

    Parameters
    ----------
    amp, band, c2
        From :func:`search_amplitudes`.
    n, sampling, ns
        Box (pixels) and pixel size (Å) of the frames, and the cropped box of the search.
    diameter_A
        The prior ball's diameter (Å).
    element
        Element of the prior.
    """
    a0 = bulk_lattice_constant(element)
    sub = np.ascontiguousarray(amp[np.unique(np.linspace(0, len(amp) - 1, LATTICE_FIT_FRAMES).astype(np.int64))])
    grid = np.ascontiguousarray(fundamental_zone(so3_grid(LATTICE_FIT_GRID), prior_group(prior_sites("fcc", a0, 6.0))))

    def score(f: float) -> float:  # median best-peak z of the prior at f × bulk
        vol = fourier_crop_volume(prior_map(prior_sites("fcc", a0 * f, diameter_A / 2), n, sampling, element, 0.9), ns)
        return float(np.median(amplitude_search(vol, sub, band, grid, c2, 1)[1][:, 0]))

    coarse = [score(f) for f in LATTICE_SCALES]
    best = float(LATTICE_SCALES[int(np.argmax(coarse))])
    h = (LATTICE_SCALES[1] - LATTICE_SCALES[0]) / 3  # a parabola through the best and ± a third of a step
    y0, y1, y2 = score(best - h), max(coarse), score(best + h)
    curv = y0 - 2 * y1 + y2
    off = float(np.clip(0.5 * (y0 - y2) / curv, -1.0, 1.0)) if curv < 0 else 0.0
    return a0 * (best + off * h)


def prior_path(kind: str, amp: np.ndarray, band: Band, c2: np.ndarray, n: int, sampling: float, ns: int,
               diameter_A: float, config: LatticeConfig, step_deg: float, continuity_weight: float,
               so3: np.ndarray, lattice_constant_A: float) -> PriorPath:
    """Amplitude search of one prior over its fundamental zone, then the temporal path (stages 1–2).

    Parameters
    ----------
    kind
        ``"fcc"`` or ``"fcc-twin"``.
    amp, band, c2
        From :func:`search_amplitudes`.
    n, sampling, ns
        Box (pixels) and pixel size (Å) of the frames, and the cropped box of the search.
    diameter_A
        The prior ball's diameter (Å).
    config
        :class:`LatticeConfig` (element, top_k, distinct_deg).
    step_deg, continuity_weight
        Continuity penalty of the Viterbi pass.
    so3
        (G, 3, 3) whole-SO(3) grid reduced to the prior's fundamental zone.
    lattice_constant_A
        The prior's lattice constant (Å), e.g. :func:`fringe_lattice_constant`.
    """

    m = len(amp)
    sites = prior_sites(kind, lattice_constant_A, diameter_A / 2)
    group = prior_group(sites)
    ops = amplitude_ambiguity(kind, group)
    vol = fourier_crop_volume(prior_map(sites, n, sampling, config.element, 0.9), ns)
    grid = np.ascontiguousarray(fundamental_zone(so3, group))
    idx, z = amplitude_search(vol, amp, band, grid, c2, min(8 * config.top_k, len(grid)))
    ci = np.empty((m, config.top_k), np.int64)
    cz = np.empty((m, config.top_k), np.float32)
    distinct_peaks(grid, idx, z.astype(np.float32), float(np.cos(np.radians(config.distinct_deg))), ci, cz)

    def cands(lo: int, hi: int) -> np.ndarray:  # branch mates of frames lo:hi (all frames': 70 kB each)
        return branch_mates(grid[ci[lo:hi]].reshape(-1, 3, 3), ops).reshape(hi - lo, -1, 3, 3)

    choice = viterbi(cands, np.repeat(cz, 2 * len(ops), axis=1), step_deg, continuity_weight)
    path = np.empty((m, 3, 3))
    for lo in range(0, m, 1024):
        hi = min(lo + 1024, m)
        path[lo:hi] = cands(lo, hi)[np.arange(hi - lo), choice[lo:hi]]
    return PriorPath(kind, sites, group, ops, grid, grid[ci], cz, path)


def register_halves(a: np.ndarray, b: np.ndarray, max_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Two maps moved onto each other by a translation, each by half of it: the peak of their cross-correlation
    (sub-voxel by a parabola through it and its neighbours on each axis), at most ``max_px`` voxels per axis.

    Returns (a moved by −t/2, b moved by +t/2) where ``a`` ≈ ``b`` moved by ``t``.
    """
    fa, fb = scipy.fft.fftn(a, workers=-1), scipy.fft.fftn(b, workers=-1)
    xc = scipy.fft.ifftn(fa * np.conj(fb), workers=-1).real
    peak = np.array(np.unravel_index(np.argmax(xc), xc.shape))
    t = np.empty(3)
    for ax in range(3):
        lo, hi = peak.copy(), peak.copy()
        lo[ax] -= 1
        hi[ax] = (hi[ax] + 1) % xc.shape[ax]
        c_lo, c_0, c_hi = xc[tuple(lo)], xc[tuple(peak)], xc[tuple(hi)]
        den = c_lo - 2 * c_0 + c_hi
        frac = 0.5 * (c_lo - c_hi) / den if den < 0 else 0.0
        n = xc.shape[ax]
        t[ax] = np.clip((peak[ax] + n // 2) % n - n // 2 + frac, -max_px, max_px)
    k = np.meshgrid(*(scipy.fft.fftfreq(n) for n in a.shape), indexing="ij")
    phase = np.exp(-1j * np.pi * sum(ki * ti for ki, ti in zip(k, t, strict=True)))  # a translation by t/2
    return (scipy.fft.ifftn(fa / phase, workers=-1).real.astype(a.dtype),
            scipy.fft.ifftn(fb * phase, workers=-1).real.astype(b.dtype))


@dataclass
class LabellingFrames:
    """The frames as the branch labelling sees them: cropped boxes, transforms, CTFs, tracker origins, mask."""

    small: np.ndarray  # (M, ns, ns) cropped boxes (an array or a scratch FrameFile)
    full: Band
    crop_sampling: float  # Å per cropped pixel
    origins: np.ndarray  # (M, 2) tracker origins, cropped pixels
    ctf_fn: Callable | None
    mask: np.ndarray

    @classmethod
    def make(cls, small: np.ndarray, crop_sampling: float, origins: np.ndarray, ctf_fn: Callable | None,
             diameter_A: float) -> LabellingFrames:
        """Frames from cropped boxes ``small`` (M, ns, ns) of ``crop_sampling`` Å per pixel, their origins (M, 2;
        cropped pixels), CTF callable (or None) and the particle diameter (Å; the maps' soft mask reaches 2 Å
        beyond it)."""
        ns = small.shape[-1]
        return cls(small, Band.make(ns, r_max=ns), crop_sampling, np.asarray(origins, np.float64), ctf_fn,
                   soft_sphere(ns, (diameter_A / 2 + 2.0) / crop_sampling, 3.0))

    @classmethod
    def from_boxes(cls, boxes: np.ndarray, sampling: float, shifts_px: np.ndarray, ctf_fn: Callable | None,
                   diameter_A: float, box: int) -> LabellingFrames:
        """Frames from full boxes (M, n, n) of ``sampling`` Å per pixel: Fourier-cropped to ``box`` pixels (at most
        n, even; beside the boxes when they are a scratch file), their origins ``shifts_px`` (pixels of ``boxes``)
        rescaled to the crop."""
        m, n, _ = boxes.shape
        ns = min(box, n - n % 2)
        small = fourier_crop(boxes, ns, out=scratch_like(boxes, m, (ns, ns)), zero_mean=True)
        return cls.make(small, sampling * n / ns, np.asarray(shifts_px, np.float64) * ns / n, ctf_fn, diameter_A)


class BranchLabeller:
    """Phase-sensitive branch labelling of a temporal path against a reference (see the module docstring)."""

    def __init__(self, fr: LabellingFrames, config: LatticeConfig, ops: np.ndarray, step_deg: float, weight: float,
                 reference_model: ReferenceModel | None):
        self.fr, self.cfg, self.ops = fr, config, ops
        self.step, self.weight, self.reference_model = step_deg, weight, reference_model
        ns = fr.small.shape[-1]
        lo, hi = config.label_band_A
        self.band = Band.make(ns, r_max=ns * fr.crop_sampling / hi, r_min=ns * fr.crop_sampling / lo).half_plane()
        self.cband = None
        if fr.ctf_fn is not None:
            self.cband = np.empty((len(fr.small), self.band.kx.size), np.float32)
            for s in range(0, len(fr.small), 500):
                sel = np.arange(s, min(s + 500, len(fr.small)))
                self.cband[sel] = self.band.take(fr.ctf_fn(sel, (ns, ns), fr.crop_sampling))
        self.shift_steps, self.shift_phi = self._shift_grid()
        self._spectra: SliceSpectra | None = None  # of the frames on the maps' band (:meth:`build`)
        # band FSC (:meth:`band_fsc`) of the registered half maps :meth:`half_references` built last
        self.references_fsc_ = float("nan")

    def _shift_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Shift steps (S, 2) in cropped pixels within ± ``shift_range_A`` and their phases on the band (P, S)."""
        d = np.arange(-self.cfg.shift_range_A, self.cfg.shift_range_A + 1e-9, self.cfg.shift_step_A)
        d = (d - d.mean()) / self.fr.crop_sampling
        dx, dy = np.meshgrid(d, d)
        delta = np.stack([dx.ravel(), dy.ravel()], 1)
        return delta, shift_phases(self.band, delta).T.copy()

    def images(self, idx: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """Transforms on the labelling band of frames ``idx``, re-centred by ``shifts`` (cropped pixels)."""
        full = self.fr.full
        ft = full.take(image_ft(np.asarray(self.fr.small[idx], np.float32)))
        return self.band.take(full.put(ft * shift_phases(full, shifts)))

    def build(self, idx: np.ndarray, poses: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """The masked map of frames ``idx`` at their ``poses`` and ``shifts`` (rows: all frames)."""
        return self.build_weighted(idx, poses[idx], shifts[idx])

    def build_weighted(self, idx: np.ndarray, poses: np.ndarray, shifts: np.ndarray,
                       weights: np.ndarray | None = None, chunk: int = 256) -> np.ndarray:
        """The masked map of the insertions of frames ``idx`` (a frame may come more than once) at ``poses`` and
        ``shifts`` (cropped pixels; rows as ``idx``), each weighted by ``weights`` (None: 1), ``chunk`` at a time
        (a multiple of the reconstructor's own chunk of 64: the same map whatever it is)."""
        fr = self.fr
        ns = fr.small.shape[-1]
        if self._spectra is None:  # every map inserts the same frames: transformed once
            self._spectra = SliceSpectra(fr.small, 2, ns * fr.crop_sampling / self.cfg.map_resolution_A)
        rec = Reconstructor(ns, pad=2)
        for s in range(0, len(idx), chunk):
            sel = idx[s:s + chunk]
            ctf = None if fr.ctf_fn is None else fr.ctf_fn(sel, (2 * ns, 2 * ns), fr.crop_sampling)
            rec.insert_spectra(self._spectra, sel, poses[s:s + chunk], shifts[s:s + chunk], ctf=ctf,
                               weights=None if weights is None else weights[s:s + chunk])
        return rec.reconstruct(tau=0.05) * fr.mask

    def half_fsc(self, poses: np.ndarray, shifts: np.ndarray) -> float:
        """Mean half-map FSC (even/odd frames) between 3 Å and the maps' resolution limit."""
        m = len(poses)
        return self.band_fsc(self.build(np.arange(0, m, 2), poses, shifts),
                             self.build(np.arange(1, m, 2), poses, shifts))

    def band_fsc(self, a: np.ndarray, b: np.ndarray) -> float:
        """Mean FSC of two maps of the cropped box between 3 Å and the maps' resolution limit."""
        freq, curve = fsc(a, b, self.fr.crop_sampling)
        sel = (freq >= 1 / 3.0) & (freq <= 1 / (self.cfg.map_resolution_A + 0.1))
        return float(curve[sel].mean())

    def scores(self, ref, idx: np.ndarray, cands: np.ndarray, shifts: np.ndarray, phi: np.ndarray,
               chunk: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """Best-over-shift normalised correlations (len(idx), K) of frames ``idx`` with their candidates
        ``cands`` at origins ``shifts`` (rows as ``idx``), and the index of the best shift step of ``phi``.

        Candidates laid out as :func:`branch_mates` lays them out (the second half ``TWIN·`` the first) are
        projected once: the slice at ``TWIN·P`` is the slice at ``P`` at the opposite frequencies, the complex
        conjugate of the slice at ``P`` for a real map."""
        m, k = cands.shape[:2]
        h = k // 2
        paired = k % 2 == 0 and np.array_equal(cands[:, h:], _turned(cands[:, :h]))
        p = h if paired else k  # candidates projected
        out = np.empty((m, k))
        arg = np.empty((m, k), np.int64)
        # Re(z·phi) as one real product: z's (re, im) pairs against the rows (Re phi, −Im phi)
        phi_ri = np.stack([phi.real, -phi.imag], axis=1).reshape(-1, phi.shape[1]).astype(np.float32)
        for s in range(0, m, chunk):
            sl = slice(s, min(s + chunk, m))
            x = self.images(idx[sl], shifts[sl])
            c = cands[sl]
            mm = len(c)
            z = project_band(ref, c[:, :p].reshape(-1, 3, 3), self.band).reshape(mm, p, -1)
            if self.cband is not None:
                z *= self.cband[idx[sl]][:, None]
            zn = np.linalg.norm(z, axis=2)
            if paired:  # the transfer is real: conj(z·ctf) = conj(z)·ctf, and |conj(z)| = |z|
                z = np.concatenate([z, np.conj(z)], axis=1)
                zn = np.tile(zn, 2)
            nrm = np.linalg.norm(x, axis=1)[:, None] * zn
            np.conj(z, out=z)
            z *= x[:, None]
            cc = (z.reshape(mm * k, -1).view(np.float32) @ phi_ri).reshape(mm, k, -1)
            out[sl] = cc.max(2) / np.maximum(nrm, 1e-30)
            arg[sl] = cc.argmax(2)
        return out, arg

    def half_references(self, poses: np.ndarray, shifts: np.ndarray, what: str) -> tuple:
        """Prepared references of the odd and of the even frames (those the even and the odd frames are scored
        against), their maps first brought onto each other by :func:`register_halves`.

        Each half's shifts are fitted to the other half's map, so two maps that sit apart by a translation trade
        places from one pass to the next and stay apart: fringes half a spacing out of step read as disagreeing
        half maps (a right labelling of 2,000 frames at a half-map FSC of −0.08) and blur the map of both."""
        rows = np.arange(len(poses))
        return self._references(self.build(rows[1::2], poses, shifts), self.build(rows[0::2], poses, shifts), what)

    def soft_references(self, post: np.ndarray, shifts: np.ndarray, what: str) -> tuple:
        """As :meth:`half_references`, of maps where every frame is inserted at each of its branch mates
        (``cands_``) in proportion to its posterior ``post`` (M, K) (those below :data:`SOFT_MIN_POSTERIOR` left
        out), at the mate's shift ``shifts`` (M, K, 2; cropped pixels)."""
        vols = []
        for part in (1, 0):
            frame, col = np.nonzero(post[part::2] >= SOFT_MIN_POSTERIOR)
            frame = frame * 2 + part
            vols.append(self.build_weighted(frame, self.cands_[frame, col], shifts[frame, col], post[frame, col]))
        return self._references(*vols, what)

    def _references(self, odd: np.ndarray, even: np.ndarray, what: str) -> tuple:
        """Prepared references of the maps of the odd and the even frames, registered (:meth:`half_references`)."""
        vols = register_halves(odd, even, self.cfg.shift_range_A * 2 / self.fr.crop_sampling)
        self.references_fsc_ = self.band_fsc(*vols)
        if self.reference_model is None:
            return tuple(prepare_reference(v) for v in vols)
        models = model_pair(self.reference_model, vols, self.fr.crop_sampling)
        return tuple(self._model_or_map(m, v, f"{what}, half {2 - part}")
                     for part, (m, v) in enumerate(zip(models, vols, strict=True)))

    def reference(self, idx: np.ndarray, poses: np.ndarray, shifts: np.ndarray, what: str):
        """Prepared reference of the frames ``idx``: their map through the reference-model builder."""
        return self.model_reference(self.build(idx, poses, shifts), what)

    def model_reference(self, vol: np.ndarray, what: str):
        """Prepared reference of a map through the reference-model builder (the map itself when that fails)."""
        if self.reference_model is None:
            return prepare_reference(vol)
        return self._model_or_map(model_pair(self.reference_model, [vol], self.fr.crop_sampling)[0], vol, what)

    @staticmethod
    def _model_or_map(model: np.ndarray | TumblebenchError, vol: np.ndarray, what: str):
        """Prepared reference of a map's model, or of the map itself when the builder failed."""
        if isinstance(model, TumblebenchError):  # e.g. no atoms above noise in a poor first map
            log.warning("lattice labelling (%s): reference model failed (%s); using the map", what, model)
            return prepare_reference(vol)
        return prepare_reference(model)

    def fit_shifts(self, poses: np.ndarray, shifts: np.ndarray, what: str) -> np.ndarray:
        """Origins (M, 2; cropped pixels) of the frames at ``poses``: each frame's best shift around the tracker's
        origin against the reference of the other half of the frames (built at ``shifts``, registered,
        :meth:`half_references`)."""
        rows = np.arange(len(poses))
        out = np.array(shifts, np.float64, copy=True)
        refs = self.half_references(poses, shifts, f"{what}, shifts")
        for part in (0, 1):
            _, arg = self.scores(refs[part], rows[part::2], poses[part::2, None], self.fr.origins[part::2],
                                 self.shift_phi)
            out[part::2] = self.fr.origins[part::2] + self.shift_steps[arg[:, 0]]
        return out

    def cross_scores(self, cands: np.ndarray, poses: np.ndarray, shifts: np.ndarray, what: str
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Correlations (M, K) of every frame's candidates ``cands`` (M, K, 3, 3) with the reference of the other
        half of the frames (even against odd and back; the references from ``poses`` at ``shifts``, registered,
        :meth:`half_references`), best over the shifts around the tracker's origins, and the shifts (M, K, 2) in
        cropped pixels where they peak."""
        return self._half_scores(self.half_references(poses, shifts, what), cands)

    def map_scores(self, vols: tuple[np.ndarray, np.ndarray], cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`cross_scores`, against given maps of the cropped box: the even frames with ``vols[1]`` and the
        odd ones with ``vols[0]`` (each half against the other's map)."""
        return self._half_scores(tuple(prepare_reference(np.asarray(vols[1 - part], np.float32) * self.fr.mask)
                                       for part in (0, 1)), cands)

    def _half_scores(self, refs: tuple, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correlations (M, K) of the even frames' candidates with ``refs[0]`` and the odd frames' with ``refs[1]``,
        best over the shifts around the origins, and the shifts (M, K, 2) in cropped pixels where they peak."""
        rows = np.arange(len(cands))
        cc = np.empty(cands.shape[:2])
        arg = np.empty(cands.shape[:2], np.int64)
        for part in (0, 1):
            cc[part::2], arg[part::2] = self.scores(refs[part], rows[part::2], cands[part::2],
                                                    self.fr.origins[part::2], self.shift_phi)
        return cc, self.fr.origins[:, None] + self.shift_steps[arg]

    def choose(self, cands: np.ndarray, cc: np.ndarray) -> np.ndarray:
        """Column of ``cands`` (M, K, 3, 3) per frame: the Viterbi path over the correlations ``cc`` (M, K), each
        frame's deviations from its mean in units of their median size, under the continuity penalty."""
        return viterbi(cands, robust_z(cc), self.step, self.weight)

    def label(self, cands: np.ndarray, poses: np.ndarray, shifts: np.ndarray, what: str, refs: tuple | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One labelling pass of all frames: (column chosen per frame, poses, shifts in cropped pixels); ``refs``:
        the pass's references when the caller built them (:meth:`half_references`)."""
        rows = np.arange(len(poses))
        if refs is None:
            cc, moved = self.cross_scores(cands, poses, shifts, what)
        else:
            cc, moved = self._half_scores(refs, cands)
        lab = self.choose(cands, cc)
        self.scores_ = cc[rows, lab]  # each frame's correlation with the other half's reference at its chosen mate
        return lab, cands[rows, lab], moved[rows, lab]

    def run(self, path: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Label the branches of ``path`` (M, 3, 3); returns (poses, shifts in cropped pixels, info) of the kept
        pass (the last, or the converged stiff one), whose per-frame correlations are ``scores_`` (NaN without a
        pass). The first pass's references are
        built at the shifts where the annealed start's mates peak against the last soft pass's references
        (:meth:`anneal`; without annealing, those :meth:`fit_shifts` finds for the path), later ones at those of
        each frame's chosen mate.
        Each pass's entry of ``info["history"]`` holds the frames that changed branch, the mean of ``scores_`` and
        ``references_fsc``, the band FSC of the half maps the pass scored against (those of the labelling before).

        The passes set the continuity weight (``weight``) from ``label_continuity_weights``: the stiff one until
        they converge or for ``label_stiff_iterations`` passes, then the relaxed one until they converge again.
        A stiff penalty moves whole runs of frames between branches, which takes the frames of a run off a mixed
        first reference together; a relaxed one lets a frame leave its run where the branches meet, which the
        frames of a particle that the prior fits only in part need (a decahedron labelled on the twin prior). When
        the stiff passes converged and the relaxed ones after them do not, the relaxed ones are wandering (frames
        leaving runs that had settled) and the stiff labelling is kept (``info["kept_iteration"]``, its pass; None
        when the last pass is kept)."""
        self.scores_ = np.full(len(path), np.nan)
        self.cands_ = branch_mates(path, self.ops)
        self.lab_ = np.zeros(len(path), np.int64)
        self.history_ = []
        self.annealing_ = []
        self.kept_ = -1
        stiff, relaxed = self.cfg.label_continuity_weights
        poses = path.copy()
        if self.cfg.label_iterations and self.cfg.label_temperatures:
            self.weight = stiff
            poses, shifts = self.anneal(path, progress)
            self.cands_ = branch_mates(poses, self.ops)  # the same mates, the annealed labelling first
        else:
            shifts = (self.fit_shifts(poses, self.fr.origins, "start") if self.cfg.label_iterations
                      else self.fr.origins.copy())
        stiff_left = self.cfg.label_stiff_iterations
        settled = None  # the converged stiff labelling: kept if the relaxed passes after it do not converge
        for _ in range(self.cfg.label_iterations):
            self.weight = stiff if stiff_left else relaxed
            poses, shifts = self._pass(poses, shifts, progress)
            if stiff_left:
                if self.converged_:
                    settled = (len(self.history_) - 1, poses, shifts, self.lab_.copy(), self.scores_.copy())
                stiff_left = 0 if self.converged_ else stiff_left - 1
            elif self.converged_:
                break
        if settled is not None and not self.converged_:
            self.kept_, poses, shifts, self.lab_, self.scores_ = settled
            log.info("lattice labelling: the relaxed passes did not converge; the labelling of the converged stiff "
                     "iteration %d is kept", self.kept_)
        if progress is not None and len(self.history_) < self.cfg.label_iterations:
            progress(self.cfg.label_iterations - len(self.history_))  # the iterations a converged labelling skips
        return poses, shifts, {"history": self.history_, "kept_iteration": None if self.kept_ < 0 else self.kept_,
                               "annealing": self.annealing_}

    def anneal(self, path: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """The labelling's start: soft passes at the falling ``label_temperatures`` from ``path`` (M, 3, 3).

        The first pass scores every frame's branch mates (``cands_``) against the half references of the path;
        each pass then turns the scores into posteriors over all labellings of the series
        (:func:`~tumblebench.reconstruct.search.path_posteriors`: each frame's deviations from its mean in units of
        their median size, as :meth:`choose` weighs them, under the continuity penalty at ``weight``), builds the
        half maps with every frame inserted at its mates in proportion to their posteriors
        (:meth:`soft_references`) and scores the mates against them. A hard labelling from the path's references
        commits every frame to one mate at once and settles on a self-consistent mixture of branches; a frame
        whose mates score alike here stays spread over them while the frames that tell them apart build the
        references, and it commits as the temperature falls. Returns the Viterbi labelling (:meth:`choose`) of the
        last pass's scores and its shifts (M, 2; cropped pixels: where each frame's chosen mate peaks against the
        last pass's references); ``annealing_`` holds each pass's temperature, its frames' effective number of mates
        (the exponential of the posteriors' entropy, mean) and its references' band FSC."""
        rows = np.arange(len(path))
        shifts = self.fit_shifts(path, self.fr.origins, "path")
        cc, moved = self.cross_scores(self.cands_, path, shifts, "path")
        for temp in self.cfg.label_temperatures:
            post = path_posteriors(self.cands_, robust_z(cc), self.step, self.weight, temp)
            refs = self.soft_references(post, moved, f"annealing at {temp:g}")
            cc, moved = self._half_scores(refs, self.cands_)
            mates = float(np.mean(np.exp(-np.sum(post * np.log(np.maximum(post, 1e-300)), axis=1))))
            self.annealing_.append({"temperature": temp, "effective_mates": mates,
                                    "references_fsc": self.references_fsc_})
            log.info("lattice labelling annealing at %g: %.2f effective branch mates a frame; half-map FSC 3–%.1f Å "
                     "of its references %.3f", temp, mates, self.cfg.map_resolution_A, self.references_fsc_)
            if progress is not None:
                progress(1)
        lab = self.choose(self.cands_, cc)
        return self.cands_[rows, lab], moved[rows, lab]

    @property
    def converged_(self) -> bool:
        """The pass whose labelling is kept (``kept_``: the last unless :meth:`run` went back to a converged stiff
        one) changed the branch of at most ``label_converged`` of the frames."""
        h = self.history_
        return bool(h) and h[self.kept_]["frames_changed"] <= self.cfg.label_converged * len(self.lab_)

    def extend(self, poses: np.ndarray, shifts: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray, int]:
        """Up to ``label_extra_iterations`` further passes of the labelling :meth:`run` left unconverged, while it
        still improves: pass ``i`` scores the frames only if the band FSC of its references (the labelling of pass
        ``i − 1``) or of the pass before's exceeds that of every earlier pass's references by
        :data:`EXTEND_GAIN` (a labelling that still gathers frames onto one branch; a converged or fluctuating one
        stops, at the cost of one pair of references). Returns (poses, shifts, passes added)."""
        added = 0
        while added < self.cfg.label_extra_iterations and self.history_ and not self.converged_:
            it = len(self.history_)
            refs = self.half_references(poses, shifts, f"iteration {it}")
            q = [h["references_fsc"] for h in self.history_] + [self.references_fsc_]
            if len(q) < 3 or max(q[-2:]) < max(q[:-2]) + EXTEND_GAIN:
                break
            poses, shifts = self._pass(poses, shifts, progress, refs)
            added += 1
        if progress is not None and added < self.cfg.label_extra_iterations:
            progress(self.cfg.label_extra_iterations - added)
        return poses, shifts, added

    def _pass(self, poses: np.ndarray, shifts: np.ndarray, progress, refs: tuple | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """One labelling pass from ``poses``/``shifts``, recorded in ``history_`` and logged."""
        it = len(self.history_)
        new, poses, shifts = self.label(self.cands_, poses, shifts, f"iteration {it}", refs)
        changed = int(np.sum(new != self.lab_))
        self.lab_ = new
        score = float(np.mean(self.scores_))
        self.history_.append({"iteration": it, "frames_changed": changed, "mean_correlation": score,
                              "references_fsc": self.references_fsc_})
        log.info("lattice labelling iteration %d: %d frames changed branch, mean correlation %.4f; half-map FSC "
                 "3–%.1f Å of the pass's references %.3f", it, changed, score, self.cfg.map_resolution_A,
                 self.references_fsc_)
        if progress is not None:
            progress(1)
        return poses, shifts


def global_candidates(boxes: np.ndarray, sampling: float, diameter_A: float, vol: np.ndarray, idx: np.ndarray,
                      poses: np.ndarray, shifts_px: np.ndarray, config: LatticeConfig, top_k: int, grid_size: int,
                      ctf_fn=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate poses of frames ``idx`` against a good map, scored: the lattice method's two searches with the map
    in place of the prior.

    Every frame gets its current pose, its ``top_k`` distinct poses over all of SO(3) by the amplitude correlation
    of :func:`amplitude_search` with the map (shift-invariant: a frame whose pose and shift are both off is found
    again) and their turns by 180° about the beam (the same amplitudes), each scored by its phase-sensitive
    correlation with the map (the labelling's band and shift search around the frame's current origin). A local
    refinement finds a frame whose pose is a few degrees off; these candidates hold one that is tens of degrees
    off, as frames of a run that left the trajectory are.

    Parameters
    ----------
    boxes, sampling
        (M, n, n) particle boxes and their pixel size (Å).
    diameter_A
        Particle diameter (Å): the mask of the map.
    vol
        (n, n, n) map the frames are matched with (e.g. their half map).
    idx
        Frames to search.
    poses, shifts_px
        (len(idx), 3, 3) current poses and (len(idx), 2) origins (pixels of ``boxes``).
    config
        :class:`LatticeConfig`: cropped box, amplitude band, labelling band, distinct_deg and shift grid.
    top_k
        Amplitude peaks kept per frame.
    grid_size
        Poses of the SO(3) grid (:func:`so3_grid`).
    ctf_fn
        Optional callable ``(indices, shape, sampling)`` of the frames' CTFs (indices into ``boxes``).

    Returns
    -------
    (cands, scores, shifts_px)
        (len(idx), 2·top_k + 1, 3, 3) candidates (the current pose first), (len(idx), 2·top_k + 1) their
        correlations and (len(idx), 2·top_k + 1, 2) their origins (the current pose keeps its origin). When the
        cropped box cannot hold the amplitude band, the current poses alone.
    """
    idx = np.asarray(idx, np.int64)
    m, n = len(idx), boxes.shape[-1]
    ns = min(config.box, n - n % 2)
    cs = sampling * n / ns
    if ns * cs / config.band_A[1] > ns / 2 - 1:
        log.info("global search skipped: the amplitude band's %.2f Å is finer than the cropped box's Nyquist "
                 "(%.2f Å)", config.band_A[1], 2 * cs)
        return (np.asarray(poses, np.float64)[:, None], np.zeros((m, 1)),
                np.asarray(shifts_px, np.float64)[:, None])
    sub_ctf = None if ctf_fn is None else (lambda sel, shape, smp: ctf_fn(idx[np.asarray(sel)], shape, smp))
    small = fourier_crop(np.asarray(boxes[idx], np.float32), ns, zero_mean=True)
    band, amp, c2 = search_amplitudes(small, ns, cs, config.band_A, sub_ctf)
    crop = fourier_crop_volume(np.asarray(vol, np.float32), ns)
    grid = np.ascontiguousarray(so3_grid(grid_size))
    top, z = amplitude_search(crop, amp, band, grid, c2, min(8 * top_k, len(grid)))
    ci = np.empty((m, top_k), np.int64)
    cz = np.empty((m, top_k), np.float32)
    distinct_peaks(grid, top, z.astype(np.float32), float(np.cos(np.radians(config.distinct_deg))), ci, cz)
    peaks = grid[ci]
    cands = np.concatenate([np.asarray(poses, np.float64)[:, None], peaks, _turned(peaks)], axis=1)
    origins = np.asarray(shifts_px, np.float64) * ns / n
    fr = LabellingFrames.make(small, cs, origins, sub_ctf, diameter_A)
    lab = BranchLabeller(fr, config, np.eye(3)[None], 0.0, 0.0, None)
    cc, arg = lab.scores(prepare_reference(crop * fr.mask), np.arange(m), cands, origins, lab.shift_phi)
    shifts = (origins[:, None] + lab.shift_steps[arg]) * n / ns
    shifts[:, 0] = np.asarray(shifts_px, np.float64)
    return cands, cc, shifts


def lattice_abinitio(boxes: np.ndarray, sampling: float, diameter_A: float, config: LatticeConfig,
                     step_deg: float, continuity_weight: float, ctf_fn=None, shifts_px: np.ndarray | None = None,
                     reference_model: ReferenceModel | None = None, progress=None
                     ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Poses of every frame from the fcc lattice prior (:class:`LatticePoses` as a function; the same parameters
    and results without the per-frame scores)."""
    poses, shifts, _, info = _lattice_abinitio(boxes, sampling, diameter_A, config, step_deg, continuity_weight,
                                               ctf_fn, shifts_px, reference_model, progress)
    return poses, shifts, info


def _lattice_abinitio(boxes: np.ndarray, sampling: float, diameter_A: float, config: LatticeConfig,
                      step_deg: float, continuity_weight: float, ctf_fn=None, shifts_px: np.ndarray | None = None,
                      reference_model: ReferenceModel | None = None, progress=None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Poses of every frame from the fcc lattice prior, the temporal path and the branch labelling.

    Parameters
    ----------
    boxes
        (M, n, n) background-subtracted particle boxes in time order (atoms positive after the CTF).
    sampling
        Å per pixel of ``boxes``.
    diameter_A
        Particle diameter estimated from the frames (Å): the prior ball's and the mask's size.
    config
        :class:`LatticeConfig`.
    step_deg, continuity_weight
        Expected rotation between successive frames (deg) and the weight of the temporal path's continuity penalty
        (the labelling's are ``config.label_continuity_weights``).
    ctf_fn
        Optional callable ``(indices, shape, sampling) -> (len(indices), *shape)`` centred CTFs.
    shifts_px
        (M, 2) RELION origins (pixels of ``boxes``) from tracking; default zeros.
    reference_model
        Builder ``(map, sampling) -> map`` of the labelling's reference (e.g.
        :func:`tumblebench.analysis.reference.atom_reference`); None: the map itself.
    progress
        Optional callable ``(n_done)`` advanced once per labelling iteration and search.

    Returns
    -------
    (poses, shifts_px, scores, info)
        (M, 3, 3) poses (arbitrary global frame and hand), (M, 2) origins (pixels of ``boxes``), (M,) each frame's
        correlation with the last labelling reference at its pose, diagnostics.
    """

    m, n, _ = boxes.shape
    ns = min(config.box, n - n % 2)
    crop_sampling = sampling * n / ns
    require(ns * crop_sampling / config.band_A[1] <= ns / 2 - 1,
            f"abinitio.lattice.band_A high limit {config.band_A[1]} Å is finer than the cropped box's Nyquist "
            f"({2 * crop_sampling:.2f} Å): raise abinitio.lattice.box or coarsen band_A")
    # the cropped boxes go next to the boxes (a scratch file when they are in one): nothing per frame but the
    # amplitudes on the search band, the candidates' indices and the poses stays in memory
    fr = LabellingFrames.from_boxes(boxes, sampling, np.zeros((m, 2)) if shifts_px is None else shifts_px, ctf_fn,
                                    diameter_A, config.box)
    band, amp, c2 = search_amplitudes(fr.small, ns, crop_sampling, config.band_A, ctf_fn)
    if reference_model is None:
        log.warning("lattice ab initio without a reference-model builder: the labelling's reference is the map "
                    "itself, which can hold a mixture of branches; pass analysis.reference.atom_reference)")
    a_fit = fringe_lattice_constant(amp, band, c2, n, sampling, ns, diameter_A, config.element)
    log.info("lattice prior: lattice constant %.3f Å from the frames' fringes (bulk %s %.3f Å)", a_fit,
             config.element, bulk_lattice_constant(config.element))
    so3 = so3_grid(config.grid_size)
    results, labellers = {}, {}
    for kind in config.priors:
        pp = prior_path(kind, amp, band, c2, n, sampling, ns, diameter_A, config, step_deg, continuity_weight, so3,
                        a_fit)
        if progress is not None:
            progress(1)
        labeller = BranchLabeller(fr, config, pp.ops, step_deg, config.label_continuity_weights[0], reference_model)
        poses, sh, info = labeller.run(pp.path, progress)
        score = labeller.half_fsc(poses, sh)
        log.info("lattice prior %s: %d sites, %d-fold amplitude ambiguity, %d fundamental-zone poses; half-map FSC "
                 "3–%.1f Å after labelling %.3f", kind, len(pp.sites), 2 * len(pp.ops), len(pp.grid),
                 config.map_resolution_A, score)
        results[kind] = (score, poses, sh, {"sites": len(pp.sites), "ambiguity": 2 * len(pp.ops),
                                            "fz_poses": len(pp.grid), "half_fsc": score, **info})
        labellers[kind] = labeller
    best = choose_prior({k: v[0] for k, v in results.items()}, config.prior_fsc_margin)
    _, poses, sh, chosen = results[best]
    log.info("lattice ab initio: prior %s chosen (half-map FSC %s; a later prior needs %.3f more)", best,
             ", ".join(f"{k} {v[0]:.3f}" for k, v in results.items()), config.prior_fsc_margin)
    poses, sh, added = labellers[best].extend(poses, sh, progress)
    chosen["extra_iterations"] = added
    if added:
        chosen["half_fsc"] = labellers[best].half_fsc(poses, sh)
        log.info("lattice prior %s: %d more labelling iterations while its half maps improved; half-map FSC "
                 "3–%.1f Å %.3f", best, added, config.map_resolution_A, chosen["half_fsc"])
    info = {"method": "lattice", "prior": best, "lattice_constant_A": a_fit,
            "priors": {k: v[3] for k, v in results.items()},
            "search_pixel_size_A": crop_sampling}
    return poses, sh * n / ns, labellers[best].scores_, info


class LatticePoses(AbInitioPoses):
    """The ``lattice`` pose estimator: fcc lattice prior, temporal path and branch labelling (module docstring).

    Parameters
    ----------
    config
        :class:`LatticeConfig`.
    step_deg, continuity_weight
        The continuity penalty (:class:`tumblebench.reconstruct.poses.AbInitioPoses`).
    """

    name = "lattice"

    def __init__(self, config: LatticeConfig | None = None, step_deg: float = 5.0, continuity_weight: float = 0.3):
        super().__init__(step_deg, continuity_weight)
        self.config = config or LatticeConfig()

    def steps(self) -> int:
        """One step per prior's search, annealing pass and labelling iteration, and the chosen prior's further
        iterations."""
        per_prior = 1 + self.config.label_iterations + (len(self.config.label_temperatures)
                                                        if self.config.label_iterations else 0)
        return len(self.config.priors) * per_prior + self.config.label_extra_iterations

    def _estimate(self, data: PoseInput) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        return _lattice_abinitio(data.boxes, data.sampling, data.diameter_A, self.config, self.step_deg,
                                 self.continuity_weight, ctf_fn=data.ctf, shifts_px=data.shifts_px,
                                 reference_model=data.reference_model, progress=data.progress)
