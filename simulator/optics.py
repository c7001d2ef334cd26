"""Electron optics at high voltage: wavelength, interaction parameter, aberrations, CTF and envelopes.

Sign convention (one, used everywhere in tumblebench)
----------------------------------------------------
Defocus follows RELION: ``defocus_A`` > 0 is **underfocus**. The phase of the objective lens is

    γ(q, φ) = π λ Δf(φ) q² − (π/2) C_s λ³ q⁴ − (π/3) C_5 λ⁵ q⁶,
    Δf(φ)   = Δf + (A/2) cos 2(φ − φ_A),

with q = |q| the spatial frequency (Å⁻¹), φ its azimuth measured from image +x towards +y, ``A`` the
two-fold astigmatism (so RELION's DefocusU = Δf + A/2, DefocusV = Δf − A/2, DefocusAngle = φ_A). The
wave in the image plane is ψ_img = F⁻¹[ F[ψ_exit] · H ] with the **wave transfer function**

    H(q) = exp(+iγ(q)) · Θ(α_max − λq) · E_t(q) · E_s(q),

which equals Kirkland's exp(−iχ) with χ = −γ, and abTEM's convention with C10 = −Δf, C30 = C_s,
C50 = C_5. For a weak phase object ψ = 1 + iσv the recorded (raw) frame is I = 1 + 2σ F⁻¹[V̂ · CTF] with

    CTF(q) = −sin γ(q)   (−(√(1−Q²) sin γ + Q cos γ) with amplitude contrast Q)   [:func:`ctf_2d`],

negative at low frequency for underfocus: atoms appear dark in raw frames at underfocus, as particles do
in raw cryo-EM micrographs. RELION's own CTF (ctf.h: −sin(K1·Δf_int·u² + K2·u⁴ − K3) with its internal
Δf_int = −DefocusU… < 0) is the same function with the opposite overall sign, +(√(1−Q²) sin γ + Q cos γ),
because RELION models contrast-inverted particle images (it expects white particles; its extraction
inverts raw frames). The defocus parameters are RELION's exactly (DefocusU/V, DefocusAngle, underfocus
positive), so a frame's rlnDefocusU/V/Angle reproduce the CTF here; negate the frames (or the CTF) to use
RELION's sign.

Partial coherence (quasi-coherent approximation, applied to the wave as abTEM and Kirkland do):
temporal E_t(q) = exp(−½ (π λ δ)² q⁴) with δ the 1σ focal spread (Å); spatial
E_s(q) = exp(−(α/(2λ))² |∇_q γ|²) with α the illumination semi-angle (rad) (Kirkland 2010, §3.3–3.4).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from tumblebench.simulator.errors import TumblebenchError, require
from tumblebench.simulator.grid import frequencies

#: Electron rest energy m₀c² in eV.
_M0C2_EV = 510998.95
#: hc in eV·Å.
_HC_EV_A = 12398.419843320026


def wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å at accelerating voltage ``voltage_kv`` (kV).

    λ = hc / √(eV (2 m₀c² + eV)); 0.019687 Å at 300 kV.
    """
    require(voltage_kv > 0, f"voltage must be positive, got {voltage_kv} kV")
    e = voltage_kv * 1e3
    return _HC_EV_A / np.sqrt(e * (2 * _M0C2_EV + e))


def interaction_parameter(voltage_kv: float) -> float:
    """Interaction parameter σ in rad/(V·Å) (Kirkland 2010, Eq. 5.6): σ = 2π m e λ / h² (relativistic m).

    σ = (2π / (λ V)) · (m₀c² + eV) / (2 m₀c² + eV); 6.526e-4 rad/(V·Å) at 300 kV.
    """
    lam = wavelength(voltage_kv)
    e = voltage_kv * 1e3
    return 2 * np.pi / (lam * e) * (_M0C2_EV + e) / (2 * _M0C2_EV + e)


@dataclass(frozen=True)
class OpticsConfig:
    """Objective-lens optics of an aberration-corrected 300 kV TEM (RELION sign convention).

    Attributes
    ----------
    voltage_kv
        Accelerating voltage (kV).
    defocus_A
        Defocus Δf in Å, underfocus positive (RELION). Default: the negative-Cs imaging (NCSI) optimum
        −√(4/3·|C_s|λ) ≈ −63 Å (a small overfocus) for the default C_s, so atoms appear bright.
    cs_mm
        Spherical aberration C_s in mm (aberration-corrected: tens of µm; −15 µm is the NCSI setting).
    c5_mm
        Fifth-order spherical aberration C_5 in mm.
    astigmatism_A
        Two-fold astigmatism A in Å (DefocusU − DefocusV).
    astigmatism_angle_deg
        Azimuth φ_A of DefocusU from image +x towards +y, degrees (RELION DefocusAngle).
    aperture_mrad
        Objective aperture semi-angle in mrad (0 = none).
    focal_spread_A
        1σ focal spread δ in Å (temporal partial coherence; 0 = off).
    convergence_mrad
        Illumination semi-angle α in mrad (spatial partial coherence; 0 = off).
    """

    voltage_kv: float = 300.0
    defocus_A: float = -63.0
    cs_mm: float = -0.015
    c5_mm: float = 0.0
    astigmatism_A: float = 0.0
    astigmatism_angle_deg: float = 0.0
    aperture_mrad: float = 40.0
    focal_spread_A: float = 15.0
    convergence_mrad: float = 0.1

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the field when a value is out of range."""
        require(10 <= self.voltage_kv <= 3000, f"optics.voltage_kv = {self.voltage_kv} kV is outside [10, 3000]")
        require(abs(self.defocus_A) < 1e6, f"optics.defocus_A = {self.defocus_A} Å is not a sane defocus")
        require(self.aperture_mrad >= 0, f"optics.aperture_mrad = {self.aperture_mrad} must be ≥ 0 (0 = none)")
        require(self.focal_spread_A >= 0, f"optics.focal_spread_A = {self.focal_spread_A} must be ≥ 0")
        require(self.convergence_mrad >= 0, f"optics.convergence_mrad = {self.convergence_mrad} must be ≥ 0")
        require(self.astigmatism_A >= 0, f"optics.astigmatism_A = {self.astigmatism_A} must be ≥ 0")

    @property
    def wavelength_A(self) -> float:
        """Relativistic wavelength (Å)."""
        return wavelength(self.voltage_kv)

    @property
    def sigma(self) -> float:
        """Interaction parameter σ, rad/(V·Å)."""
        return interaction_parameter(self.voltage_kv)

    @property
    def aperture_frequency(self) -> float:
        """Spatial frequency (Å⁻¹) of the aperture edge, ``inf`` without aperture."""
        return np.inf if self.aperture_mrad <= 0 else self.aperture_mrad * 1e-3 / self.wavelength_A

    def scherzer_defocus(self) -> float:
        """Scherzer defocus √(4/3 · C_s λ) in Å (underfocus positive) for C_s > 0."""
        require(self.cs_mm > 0, "Scherzer defocus needs a positive cs_mm")
        return float(np.sqrt(4.0 / 3.0 * self.cs_mm * 1e7 * self.wavelength_A))

    def scherzer_point_resolution(self) -> float:
        """Point resolution (Å) at Scherzer defocus: 1/q₀ of the first CTF zero, analytically
        (3/16)^{1/4}·... = 0.658 C_s^{1/4} λ^{3/4} (C5 and astigmatism ignored); found with :func:`first_zero`."""
        df = self.scherzer_defocus()
        return 1.0 / first_zero(replace(self, defocus_A=df, c5_mm=0.0, astigmatism_A=0.0))


def aberration_phase(qy: np.ndarray, qx: np.ndarray, optics: OpticsConfig, defocus_A: float | None = None
                     ) -> np.ndarray:
    """The lens phase γ(q) in radians (module docstring), RELION sign convention."""
    lam = optics.wavelength_A
    df = optics.defocus_A if defocus_A is None else defocus_A
    q2 = qx**2 + qy**2
    phi = np.arctan2(qy, qx)
    dfp = df + 0.5 * optics.astigmatism_A * np.cos(2 * (phi - np.radians(optics.astigmatism_angle_deg)))
    cs = optics.cs_mm * 1e7
    c5 = optics.c5_mm * 1e7
    return np.pi * lam * dfp * q2 - 0.5 * np.pi * cs * lam**3 * q2**2 - np.pi / 3.0 * c5 * lam**5 * q2**3


def envelopes(qy: np.ndarray, qx: np.ndarray, optics: OpticsConfig, defocus_A: float | None = None) -> np.ndarray:
    """Product of the temporal and spatial partial-coherence envelopes E_t·E_s (module docstring)."""
    lam = optics.wavelength_A
    df = optics.defocus_A if defocus_A is None else defocus_A
    q2 = qx**2 + qy**2
    out = np.ones(np.broadcast_shapes(np.shape(qy), np.shape(qx)))
    if optics.focal_spread_A > 0:
        out = out * np.exp(-0.5 * (np.pi * lam * optics.focal_spread_A) ** 2 * q2**2)
    if optics.convergence_mrad > 0:
        q = np.sqrt(q2)
        phi = np.arctan2(qy, qx)
        ang = 2 * (phi - np.radians(optics.astigmatism_angle_deg))
        dfp = df + 0.5 * optics.astigmatism_A * np.cos(ang)
        cs = optics.cs_mm * 1e7
        c5 = optics.c5_mm * 1e7
        # ∂γ/∂q and (1/q)∂γ/∂φ
        g_rad = 2 * np.pi * lam * dfp * q - 2 * np.pi * cs * lam**3 * q**3 - 2 * np.pi * c5 * lam**5 * q**5
        g_ang = -np.pi * lam * optics.astigmatism_A * np.sin(ang) * q
        alpha = optics.convergence_mrad * 1e-3
        out = out * np.exp(-((alpha / (2 * lam)) ** 2) * (g_rad**2 + g_ang**2))
    return out


def aperture(qy: np.ndarray, qx: np.ndarray, optics: OpticsConfig) -> np.ndarray:
    """Hard objective aperture Θ(α_max − λq) as 0/1 floats."""
    q2 = qx**2 + qy**2
    if optics.aperture_mrad <= 0:
        return np.ones(np.broadcast_shapes(np.shape(qy), np.shape(qx)))
    return (q2 <= optics.aperture_frequency**2).astype(np.float64)


def wave_transfer(shape_yx: tuple[int, int], sampling: float, optics: OpticsConfig,
                  defocus_A: float | None = None, envelopes_on: bool = True) -> np.ndarray:
    """Complex wave transfer function H(q) (module docstring) on the full FFT grid, complex128.

    Parameters
    ----------
    shape_yx
        Grid shape (ny, nx).
    sampling
        Sampling in Å.
    optics
        Lens parameters.
    defocus_A
        Overrides ``optics.defocus_A`` (e.g. with a particle's height change), Å, underfocus positive.
    envelopes_on
        Multiply the partial-coherence envelopes.
    """
    qy, qx = frequencies(shape_yx, sampling)
    h = np.exp(1j * aberration_phase(qy, qx, optics, defocus_A)) * aperture(qy, qx, optics)
    if envelopes_on:
        h = h * envelopes(qy, qx, optics, defocus_A)
    return h


def ctf_2d(shape_yx: tuple[int, int], sampling: float, optics: OpticsConfig, defocus_A: float | None = None,
           amplitude_contrast: float = 0.0, envelopes: bool = True) -> np.ndarray:
    """The weak-phase-object CTF of raw frames on the full FFT grid (scipy.fft.fftfreq order).

    CTF(q) = −(√(1−Q²) sin γ(q) + Q cos γ(q)) · aperture · E_t · E_s; for a weak phase object the raw frame
    is I = 1 + 2σ F⁻¹[V̂ · CTF]. RELION's defocus parameters and sign of γ; the overall sign is that of raw
    (not contrast-inverted) frames, i.e. minus RELION's CTF (see the module docstring).

    Parameters
    ----------
    shape_yx
        Grid shape (ny, nx).
    sampling
        Pixel size in Å.
    optics
        Lens parameters.
    defocus_A
        Overrides ``optics.defocus_A`` (Å, underfocus positive).
    amplitude_contrast
        Q in [0, 1).
    envelopes
        Multiply the partial-coherence envelopes.

    Returns
    -------
    numpy.ndarray
        (ny, nx) float64.
    """
    if not 0.0 <= amplitude_contrast < 1.0:
        raise TumblebenchError(f"amplitude_contrast = {amplitude_contrast} is outside [0, 1)")
    qy, qx = frequencies(shape_yx, sampling)
    g = aberration_phase(qy, qx, optics, defocus_A)
    q0 = amplitude_contrast
    out = -(np.sqrt(1 - q0**2) * np.sin(g) + q0 * np.cos(g)) * aperture(qy, qx, optics)
    if envelopes:
        out = out * globals()["envelopes"](qy, qx, optics, defocus_A)
    return out


def first_zero(optics: OpticsConfig, defocus_A: float | None = None) -> float:
    """Smallest q > 0 (Å⁻¹) where γ(q) returns to 0 or reaches ±π (first zero of sin γ), no astigmatism.

    Solved numerically on a fine radial grid with bisection refinement.
    """
    q = np.linspace(1e-4, 5.0, 200001)
    g = aberration_phase(np.zeros_like(q), q, replace(optics, astigmatism_A=0.0), defocus_A)
    s = np.sin(g)
    idx = np.nonzero(np.sign(s[1:]) != np.sign(s[:-1]))[0]
    require(idx.size > 0, "the CTF has no zero below 5 Å⁻¹")
    i = idx[0]
    lo, hi = q[i], q[i + 1]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        gm = aberration_phase(np.zeros(1), np.array([mid]), replace(optics, astigmatism_A=0.0), defocus_A)[0]
        if np.sign(np.sin(gm)) == np.sign(s[i]):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def series_optics(optics_table, manifest_optics: object, amplitude_contrast: float = -1.0
                  ) -> tuple[OpticsConfig, float]:
    """The lens of a simulated series and its amplitude contrast, as a reconstruction models them.

    Parameters
    ----------
    optics_table
        The STAR optics table (pandas DataFrame: rlnVoltage kV, rlnSphericalAberration mm, rlnAmplitudeContrast).
    manifest_optics
        ``config.imaging.optics`` of the series' ``manifest.json`` (a dict), or None: then the STAR's voltage and
        C_s on the default lens.
    amplitude_contrast
        ≥ 0 replaces the STAR's rlnAmplitudeContrast; −1 keeps it (0 where the STAR has none).

    Returns
    -------
    optics, amplitude_contrast
    """
    base = OpticsConfig()
    if isinstance(manifest_optics, dict):
        names = {f.name for f in fields(OpticsConfig)}
        base = replace(base, **{k: v for k, v in manifest_optics.items() if k in names})
    else:
        base = replace(base, voltage_kv=float(optics_table["rlnVoltage"].iloc[0]),
                       cs_mm=float(optics_table["rlnSphericalAberration"].iloc[0]))
    q0 = float(optics_table["rlnAmplitudeContrast"].iloc[0]) if "rlnAmplitudeContrast" in optics_table else 0.0
    if amplitude_contrast >= 0:
        q0 = float(amplitude_contrast)
    return base, q0


class LensTransfer:
    """The wave transfer function H(q) of :func:`wave_transfer` on a fixed grid, fast for changing defocus.

    Everything that does not depend on defocus (q, azimuth terms, C_s/C_5 phase, aperture, temporal
    envelope, an extra band-limit mask) is computed once; :meth:`__call__` then costs a few array operations.

    Parameters
    ----------
    qy, qx
        Frequency grids (Å⁻¹), broadcastable (e.g. from :func:`tumblebench.simulator.grid.frequencies`).
    optics
        Lens parameters.
    mask
        Extra multiplicative mask (e.g. a band limit) or None.
    envelopes_on
        Include the partial-coherence envelopes.
    """

    def __init__(self, qy: np.ndarray, qx: np.ndarray, optics: OpticsConfig, mask: np.ndarray | None = None,
                 envelopes_on: bool = True):
        lam = optics.wavelength_A
        self.lam = lam
        q2 = qx**2 + qy**2
        q = np.sqrt(q2)
        phi = np.arctan2(qy, qx)
        ang = 2 * (phi - np.radians(optics.astigmatism_angle_deg))
        cs = optics.cs_mm * 1e7
        c5 = optics.c5_mm * 1e7
        self.q2 = q2
        self.q = q
        self.static_phase = (np.pi * lam * 0.5 * optics.astigmatism_A * np.cos(ang) * q2
                             - 0.5 * np.pi * cs * lam**3 * q2**2 - np.pi / 3.0 * c5 * lam**5 * q2**3)
        # only the |q| within the aperture/mask matter: evaluate there (flat index), zero elsewhere
        self.shape = np.broadcast_shapes(np.shape(qy), np.shape(qx))
        amp = aperture(qy, qx, optics)
        if mask is not None:
            amp = amp * mask
        self.spatial = envelopes_on and optics.convergence_mrad > 0
        if envelopes_on and optics.focal_spread_A > 0:
            amp = amp * np.exp(-0.5 * (np.pi * lam * optics.focal_spread_A) ** 2 * q2**2)
        amp = np.broadcast_to(amp, self.shape)
        self.nz = np.flatnonzero(amp)
        self.amp = amp.ravel()[self.nz]
        self.q2 = np.broadcast_to(q2, self.shape).ravel()[self.nz]
        self.q = np.sqrt(self.q2)
        self.static_phase = np.broadcast_to(self.static_phase, self.shape).ravel()[self.nz]
        ang = np.broadcast_to(ang, self.shape).ravel()[self.nz]
        q = self.q
        if self.spatial:
            self.g_rad_static = (2 * np.pi * lam * 0.5 * optics.astigmatism_A * np.cos(ang) * q
                                 - 2 * np.pi * cs * lam**3 * q**3 - 2 * np.pi * c5 * lam**5 * q**5)
            self.g_ang = -np.pi * lam * optics.astigmatism_A * np.sin(ang) * q
            self.k_spatial = (optics.convergence_mrad * 1e-3 / (2 * lam)) ** 2

    def __call__(self, defocus_A: float, dtype: type = np.complex64) -> np.ndarray:
        """H(q) at defocus ``defocus_A`` (Å, underfocus positive)."""
        phase = np.pi * self.lam * defocus_A * self.q2 + self.static_phase
        amp = self.amp
        if self.spatial:
            g = 2 * np.pi * self.lam * defocus_A * self.q + self.g_rad_static
            amp = amp * np.exp(-self.k_spatial * (g**2 + self.g_ang**2))
        out = np.zeros(self.shape, dtype=dtype)
        flat = out.reshape(-1)
        flat[self.nz] = amp * (np.cos(phase) + 1j * np.sin(phase))
        return out
