"""Electron scattering factors as sums of Gaussians, and the atomic potentials they imply.

Parametrisations
----------------
``peng`` (default)
    Peng, Ren, Dudarev & Whelan (1996), Acta Cryst. A52, 257–276, elastic fit for 0 < s < 2 Å⁻¹
    (also International Tables for Crystallography Vol. C, Table 4.3.2.2):
    f(s) = Σᵢ aᵢ exp(−bᵢ s²), s = sinθ/λ = q/2, f in Å.
``peng6``
    The same paper's fit for 0 < s < 6 Å⁻¹ (Peng 1996, Table 3; abTEM's default Peng table).
``kirkland``
    Kirkland (2010), *Advanced Computing in Electron Microscopy*, 2nd ed., Appendix C: three Lorentzians
    plus three Gaussians, f(q) = Σᵢ aᵢ/(q² + bᵢ) + Σᵢ cᵢ exp(−dᵢ q²), q = 2s = 1/d in Å⁻¹.
``lobato``
    Lobato & Van Dyck (2014), Acta Cryst. A70, 636–649: f(q) = Σᵢ aᵢ (2 + bᵢq²)/(1 + bᵢq²)², q in Å⁻¹.

Elements: H, C, O (graphene and water of the liquid cell), Fe, Ni, Pd, Ag, Pt, Au. The Peng values are those
of the papers' tables; the Kirkland and Lobato values are the published fits as also tabulated in the
parameter files distributed with abTEM (``kirkland.json``, ``lobato.json``), which agree with the Pt values
in the papers. Only the Gaussian tables (``peng``, ``peng6``) give closed-form 3D potentials and exact
slice integrals; every table gives the 2D Fourier transform of the projected potential,
V̂(q) = 2πa₀e · f(q) (V·Å³ → V·Å per Å⁻²), used by the Fourier-space potential of :mod:`simulator.potential`.

From f to potential (Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed., 2010, ch. 5): with
q = 2s and 2π a₀ e = 47.878 V·Å²,

* 3D potential   V(r)  = 2πa₀e Σᵢ aᵢ (4π/bᵢ)^{3/2} exp(−4π² r²/bᵢ)   [V]
* projected      v_z(r) = 2πa₀e Σᵢ aᵢ (4π/bᵢ) exp(−4π² r²/bᵢ)        [V·Å]

Each term is a normalised Gaussian of variance bᵢ/(8π²) per axis times 2πa₀e·aᵢ. An atom vibrating with
anisotropic displacement tensor U (Å²) time-averages to the same sum with covariance bᵢ/(8π²)·I + U.
"""

from __future__ import annotations

import numpy as np

from tumblebench.simulator.errors import TumblebenchError

#: 2π a₀ e in V·Å² (a₀ = 0.5292 Å Bohr radius, e = 14.40 V·Å), Kirkland (2010) Eq. 5.9.
TWO_PI_A0_E = 2.0 * np.pi * 0.529177 * 14.39964

# Peng et al. (1996), Acta Cryst. A52, 257, Table 1 (0 < s < 2 Å⁻¹): (a1..a5), (b1..b5).
_PENG_2: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "H": ((0.0349, 0.1201, 0.197, 0.0573, 0.1195), (0.5347, 3.5867, 12.3471, 18.9525, 38.6269)),
    "C": ((0.0893, 0.2563, 0.757, 1.0487, 0.3575), (0.2465, 1.71, 6.4094, 18.6113, 50.2523)),
    "O": ((0.0974, 0.2921, 0.691, 0.699, 0.2039), (0.2067, 1.3815, 4.6943, 12.7105, 32.4726)),
    "Fe": ((0.3946, 1.2725, 1.7031, 2.314, 1.4795), (0.2717, 2.0443, 7.6007, 29.9714, 86.2265)),
    "Ni": ((0.386, 1.1765, 1.5451, 2.073, 1.3814), (0.2478, 1.766, 6.3107, 25.2204, 74.3146)),
    "Pd": ((0.5904, 1.1775, 2.6519, 2.2875, 0.8689), (0.2324, 1.5019, 5.1591, 15.5428, 46.8213)),
    "Ag": ((0.6377, 1.379, 2.8294, 2.3631, 1.4553), (0.2466, 1.6974, 5.7656, 20.0943, 76.7372)),
    "Pt": ((0.9148, 1.8096, 3.2134, 3.2953, 1.5754), (0.2263, 1.3813, 5.3243, 17.5987, 60.0171)),
    "Au": ((0.9674, 1.8916, 3.3993, 3.0524, 1.2607), (0.2358, 1.4712, 5.6758, 18.7119, 61.5286)),
}

# Peng et al. (1996), Acta Cryst. A52, 257, Table 3 (0 < s < 6 Å⁻¹).
_PENG_6: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "H": ((0.0088, 0.0449, 0.1481, 0.2356, 0.0914), (0.1152, 1.0867, 4.9755, 16.5591, 43.2743)),
    "C": ((0.0489, 0.2091, 0.7537, 1.142, 0.3555), (0.114, 1.0825, 5.4281, 17.8811, 51.1341)),
    "O": ((0.0365, 0.1729, 0.5805, 0.8814, 0.3121), (0.0652, 0.6184, 2.9449, 9.6298, 28.2194)),
    "Fe": ((0.1929, 0.8239, 1.8689, 2.3694, 1.906), (0.1087, 1.0806, 4.7637, 22.85, 76.7309)),
    "Ni": ((0.2313, 1.0657, 1.8229, 2.2609, 1.1883), (0.121, 1.2691, 5.687, 27.0917, 83.0285)),
    "Pd": ((0.2003, 0.8779, 2.6135, 2.8594, 1.0258), (0.0659, 0.6111, 3.5563, 12.7638, 44.4283)),
    "Ag": ((0.2739, 1.0503, 3.1564, 2.7543, 1.4328), (0.0881, 0.8028, 4.4451, 18.7011, 79.2633)),
    "Pt": ((0.3083, 1.4158, 2.9662, 3.9349, 2.1709), (0.0609, 0.5993, 3.1921, 12.5285, 49.7675)),
    "Au": ((0.3055, 1.3945, 2.9617, 3.899, 2.0026), (0.0596, 0.5827, 3.1035, 11.9693, 47.9106)),
}

# Kirkland (2010), Appendix C: (a1..a3), (b1..b3), (c1..c3), (d1..d3); q = 1/d in Å⁻¹.
_KIRKLAND: dict[str, tuple[tuple[float, ...], ...]] = {
    "H": (
        (0.0042029832, 0.0627762505, 0.0300907347),
        (0.225350888, 0.22536695, 0.225331756),
        (0.0677756695, 0.0035660924, 0.0276135815),
        (4.38854001, 0.403884823, 1.44490166),
    ),
    "C": (
        (0.212080767, 0.199811865, 0.168254385),
        (0.208605417, 0.208610186, 5.57870773),
        (0.14204836, 0.363830672, 0.000835012),
        (1.33311887, 3.80800263, 0.040398262),
    ),
    "O": (
        (0.339969204, 0.307570172, 0.130369072),
        (0.38157028, 0.381571436, 19.1919745),
        (0.0883326058, 0.1965867, 0.00099622),
        (0.760635525, 2.07401094, 0.0303266869),
    ),
    "Fe": (
        (0.313454847, 0.689290016, 1.47141531),
        (0.0899325756, 13.0366038, 0.633345291),
        (1.03298688, 0.258280285, 0.010346069),
        (11.6783425, 0.609116446, 0.0481610627),
    ),
    "Ni": (
        (1.7225463, 0.329543044, 0.6230072),
        (0.776606908, 0.10226236, 19.4156207),
        (0.0094349651, 0.854063515, 0.221073515),
        (0.0398684596, 10.4078166, 0.51086933),
    ),
    "Pd": (
        (2.10475155, 2.03884487, 0.182067264),
        (8.6860647, 0.378924449, 0.142921634),
        (0.0952040948, 0.591445248, 0.0011332868),
        (0.1171259, 1.07843808, 0.0078025209),
    ),
    "Ag": (
        (2.0798139, 0.443170726, 1.96515215),
        (9.92540297, 0.104920104, 0.640103839),
        (0.596130591, 0.478016333, 0.094645847),
        (0.88959479, 1.98509407, 0.112744464),
    ),
    "Pt": (
        (0.98469794, 2.73987079, 3.61696715),
        (0.160910839, 0.718971667, 12.9281016),
        (0.302885602, 0.278370726, 0.0152124129),
        (0.170134854, 1.49862703, 0.0283510822),
    ),
    "Au": (
        (0.961263398, 3.6958103, 2.77567491),
        (0.170932277, 12.9335319, 0.68999707),
        (0.295414176, 0.311475743, 0.0143237267),
        (0.16352551, 1.39200901, 0.0271265337),
    ),
}

# Lobato & Van Dyck (2014), Acta Cryst. A70, 636, supplementary table: (a1..a5), (b1..b5); q in Å⁻¹.
_LOBATO: dict[str, tuple[tuple[float, ...], ...]] = {
    "H": (
        (0.00647384848835291, -0.490192576780229, 0.573284160390876, -0.37940330148399, 0.554426474774079),
        (2.78519885379148, 2.77620428330644, 2.77538591050625, 2.76759302867258, 2.76511897642927),
    ),
    "C": (
        (124.466088621343, -220.352857078963, 195.235352280479, -98.1079361269799, 0.0142023041213623),
        (2.42120849256005, 2.30537943752425, 2.04851932106564, 1.93352552917547, 0.0768976818478339),
    ),
    "O": (
        (29.9474045242362, -77.6101266255278, 99.8817764623144, -51.2127005505673, 0.00819618954446032),
        (1.3028398788001, 1.15794105258309, 1.00988549338025, 0.943327971433266, 0.0433197611321825),
    ),
    "Fe": (
        (3.79810090836859, -91.6893549381687, 91.4454252155429, 0.0272754344027604, 0.00030337985438377),
        (5.31712645899433, 1.49713094884748, 1.4680924180441, 0.0427247850128954, 0.00332791855231874),
    ),
    "Ni": (
        (2.96908078725286, -75.747706912904, 76.0398287625307, 0.0210162113692967, 0.00023115175113515),
        (5.0418094910938, 1.18275507921629, 1.16216545846629, 0.0337479087883035, 0.0027868086207074),
    ),
    "Pd": (
        (0.642159796182687, 2.97914814426328, 0.16815442600427, 0.00133744213878407, 1.9141096825e-07),
        (5.97479750263406, 1.43359432541277, 0.0909868401172677, 0.00362410137116162, 0.00018068891441605),
    ),
    "Ag": (
        (1.55317216680389, 2.63930364699988, 0.142015486956788, 0.0010085046009976, 1.9463842997e-07),
        (8.15620235758956, 1.21600887481801, 0.0790098864915873, 0.00296547901363949, 0.00017459309591915),
    ),
    "Pt": (
        (2.04021563975728, 2.89922634624825, 0.636344083815797, 0.0132071919595408, 5.673821925001e-05),
        (6.65819429609627, 1.41337923778932, 0.174000104502179, 0.010068780453021, 0.00040307710569222),
    ),
    "Au": (
        (1.6759346706487, 3.00486602969729, 0.595340013161635, 0.0117163186623094, 4.296782976398e-05),
        (5.52231093211402, 1.38007223007196, 0.162229237655945, 0.00901814890416575, 0.00037927766747767),
    ),
}

_TABLES = {"peng": _PENG_2, "peng6": _PENG_6}
_ALL_TABLES = {"peng": _PENG_2, "peng6": _PENG_6, "kirkland": _KIRKLAND, "lobato": _LOBATO}
#: Names of all parametrisations; the first two are pure Gaussian sums.
TABLES: tuple[str, ...] = tuple(_ALL_TABLES)
GAUSSIAN_TABLES: tuple[str, ...] = tuple(_TABLES)


def _check(element: str, table: str) -> None:
    if table not in _ALL_TABLES:
        raise TumblebenchError(f"scattering table {table!r} unknown; expected one of {', '.join(_ALL_TABLES)}")
    if element not in _ALL_TABLES[table]:
        raise TumblebenchError(
            f"element {element!r} has no {table} scattering parameters; known: "
            f"{', '.join(sorted(_ALL_TABLES[table]))}"
        )


def available(table: str = "peng") -> tuple[str, ...]:
    """Element symbols with parameters in table ``table`` (any of :data:`TABLES`)."""
    _check("Pt", table)
    return tuple(sorted(_ALL_TABLES[table]))


def gaussian_coefficients(element: str, table: str = "peng") -> tuple[np.ndarray, np.ndarray]:
    """Five-Gaussian electron scattering factor coefficients of ``element``.

    Parameters
    ----------
    element
        Chemical symbol, e.g. ``"Pt"``.
    table
        ``"peng"`` (s < 2 Å⁻¹, default) or ``"peng6"`` (s < 6 Å⁻¹).

    Returns
    -------
    a, b
        Arrays of 5 coefficients: aᵢ in Å, bᵢ in Å², for f(s) = Σ aᵢ exp(−bᵢ s²).

    Raises
    ------
    TumblebenchError
        Unknown table, a table that is not a Gaussian sum, or an element without parameters.
    """
    _check(element, table)
    if table not in _TABLES:
        raise TumblebenchError(
            f"scattering table {table!r} is not a sum of Gaussians; expected one of {', '.join(_TABLES)}"
        )
    a, b = _TABLES[table][element]
    return np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)


def form_factor(element: str, q: np.ndarray, table: str = "peng") -> np.ndarray:
    """Electron scattering factor f in Å at spatial frequency ``q`` = 1/d = 2 sinθ/λ (Å⁻¹), any table.

    The 2D Fourier transform of the atom's projected potential is ``TWO_PI_A0_E * form_factor(q)`` (V·Å³),
    with the transform convention F(q) = ∫ v(r) exp(−2πi q·r) d²r.
    """
    _check(element, table)
    q2 = np.asarray(q, float) ** 2
    if table in _TABLES:
        a, b = gaussian_coefficients(element, table)
        return np.sum(a * np.exp(-b * q2[..., None] / 4.0), axis=-1)
    p = np.array(_ALL_TABLES[table][element], dtype=np.float64)
    q2e = q2[..., None]
    if table == "kirkland":
        a, b, c, d = p
        return np.sum(a / (q2e + b) + c * np.exp(-d * q2e), axis=-1)
    a, b = p  # lobato
    return np.sum(a * (2.0 + b * q2e) / (1.0 + b * q2e) ** 2, axis=-1)


def scattering_factor(element: str, s: np.ndarray, table: str = "peng") -> np.ndarray:
    """Electron scattering factor f(s) in Å at s = sinθ/λ (Å⁻¹), any table."""
    return form_factor(element, 2.0 * np.asarray(s, float), table)


def potential_3d(element: str, r: np.ndarray, table: str = "peng") -> np.ndarray:
    """Spherical atomic potential V(r) in V at distance ``r`` (Å) of a static atom (Gaussian tables)."""
    a, b = gaussian_coefficients(element, table)
    r2 = np.asarray(r, float)[..., None] ** 2
    return TWO_PI_A0_E * np.sum(a * (4 * np.pi / b) ** 1.5 * np.exp(-4 * np.pi**2 * r2 / b), axis=-1)


def projected_potential(element: str, r: np.ndarray, table: str = "peng") -> np.ndarray:
    """Projected potential v_z(r) in V·Å at in-plane distance ``r`` (Å) of a static atom (Gaussian tables)."""
    a, b = gaussian_coefficients(element, table)
    r2 = np.asarray(r, float)[..., None] ** 2
    return TWO_PI_A0_E * np.sum(a * (4 * np.pi / b) * np.exp(-4 * np.pi**2 * r2 / b), axis=-1)
