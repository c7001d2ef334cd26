"""Configuration of the atom model building and statistics stage (``tumblebench atoms``).

Every field has a default that suits a 2–3 nm Pt particle in a map with 0.3–0.4 Å voxels; the defaults need
no hand-tuning (no mask diameter, no threshold). Load from TOML with
``simulator.config.load_config(AtomsConfig, path, table="atoms")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.scattering import gaussian_coefficients

#: fcc lattice constants at room temperature (Å), crystallographic tables. Used as the starting guess of the
#: lattice fit and to scale the theoretical atomic radius.
LATTICE_CONSTANTS_A: dict[str, float] = {
    "Pt": 3.924, "Au": 4.078, "Pd": 3.891, "Ag": 4.086, "Ni": 3.524, "Cu": 3.615, "Ir": 3.839, "Rh": 3.803,
    "Al": 4.050, "Pb": 4.950,
}

#: SINGLE's theoretical atomic radius of Pt (Å); other elements scale with their nearest-neighbour distance.
_PT_RADIUS_A = 1.10


def element_parameters(element: str) -> tuple[float, float]:
    """Lattice constant guess and theoretical atomic radius of ``element``.

    Parameters
    ----------
    element
        Chemical symbol of an fcc metal, e.g. ``"Pt"``.

    Returns
    -------
    lattice_constant, radius
        Both in Å. The radius is SINGLE's 1.10 Å for Pt, scaled by the lattice constant for other elements.

    Raises
    ------
    TumblebenchError
        The element has no scattering parameters or no tabulated fcc lattice constant.
    """
    gaussian_coefficients(element)  # raises with the list of known elements
    if element not in LATTICE_CONSTANTS_A:
        raise TumblebenchError(
            f"element {element!r} has no fcc lattice constant in analysis.config.LATTICE_CONSTANTS_A; "
            f"known: {', '.join(sorted(LATTICE_CONSTANTS_A))}"
        )
    a = LATTICE_CONSTANTS_A[element]
    return a, _PT_RADIUS_A * a / LATTICE_CONSTANTS_A["Pt"]


@dataclass(frozen=True)
class AtomsConfig:
    """Parameters of :func:`tumblebench.analysis.model.build_atom_model`.

    Atom centres are the peak of each component, refined by a quadratic fit to the log of the denoised map,
    then by a least-squares fit of the exact band-limited atom profile (amplitude, background, U, centre) to
    the map within the fit sphere; the displacements U are fitted to the raw map, as Wietfeldt et al. 2024.

    Attributes
    ----------
    element
        Chemical symbol of the (monatomic) particle.
    lattice_constant_guess_A
        Starting lattice constant of the fcc fit (Å); None: the element's tabulated value.
    atom_radius_A
        Theoretical atomic radius r_th (Å) of Wietfeldt et al. 2024 (splitting, correlation windows); None: tabulated.
    resolution_A
        Band limit of the map (Å), used for the exact atom profile of the U and position fits and to
        band-limit simulated maps; None: estimated from the map's power spectrum (the shell where its
        power vanishes), else the Nyquist limit (2 voxels).
    template_u_iso_A2
        Isotropic U (Å²) of the single simulated atom used as the denoising template.
    mask
        ``"auto"``: envelope from a strongly low-passed map and Otsu (no hand-given size); ``"sphere"``: a
        sphere of ``mask_diameter_A`` at the box centre (``--mask-diameter``).
    mask_lowpass_A
        Gaussian σ (Å) of the low-pass that defines the automatic envelope.
    mask_dilate_A
        Dilation (Å) of the automatic envelope so that surface atoms lie well inside it.
    mask_diameter_A
        Diameter (Å) of the spherical mask when ``mask = "sphere"``, in (0, 500].
    min_envelope_zscore
        The particle envelope must stand this many standard deviations of the low-passed background above
        it; otherwise the map holds no particle above noise and the stage stops with an error.
    min_atom_zscore
        The median atom of the denoised map must stand this many standard deviations of the denoised
        background (outside the envelope) above it (pure noise gives about 3); otherwise: no atoms above noise.
    n_thresholds
        Number of uniform thresholds between Otsu's T0 and the maximum of the denoised map (Wietfeldt et al. 2024: 15).
    n_fine_thresholds
        Number of thresholds of the finer scan around the best coarse ones.
    split
        Split connected components that hold two or more atoms (Wietfeldt et al. (2024)'s algorithm).
    reject_low_correlation
        Discard atoms whose validation correlation is more than ``correlation_sigmas`` standard deviations
        below the mean (Wietfeldt et al. 2024) and below ``correlation_floor``.
    correlation_sigmas
        Width of Wietfeldt et al. (2024)'s outlier rule.
    correlation_floor
        Atoms above this validation correlation are never discarded (keeps the rule from removing genuine,
        merely mobile, surface atoms of a clean map).
    min_cn
        Discard atoms with CN below this (Wietfeldt et al. 2024: 3); 0 switches the rule off.
    b_factor
        Quantity written into the PDB B-factor field: ``"b_iso"`` (8π²·U_iso), ``"u_iso"``, ``"valid_corr"``,
        ``"cn"``, ``"doi"``.
    """

    element: str = "Pt"
    lattice_constant_guess_A: float | None = None
    atom_radius_A: float | None = None
    resolution_A: float | None = None
    template_u_iso_A2: float = 0.01
    mask: Literal["auto", "sphere"] = "auto"
    mask_lowpass_A: float = 2.0
    mask_dilate_A: float = 3.0
    mask_diameter_A: float | None = None
    min_envelope_zscore: float = 4.0
    min_atom_zscore: float = 4.5
    n_thresholds: int = 15
    n_fine_thresholds: int = 8
    split: bool = True
    reject_low_correlation: bool = True
    correlation_sigmas: float = 2.0
    correlation_floor: float = 0.5
    min_cn: int = 3
    b_factor: Literal["b_iso", "u_iso", "valid_corr", "cn", "doi"] = "b_iso"

    def validate(self) -> None:
        """Raise :class:`TumblebenchError` naming the first bad field."""
        element_parameters(self.element)
        checks = [
            ("lattice_constant_guess_A", self.lattice_constant_guess_A is None
             or 2.0 <= self.lattice_constant_guess_A <= 6.0, "in [2, 6] Å"),
            ("atom_radius_A", self.atom_radius_A is None or 0.5 <= self.atom_radius_A <= 2.5, "in [0.5, 2.5] Å"),
            ("resolution_A", self.resolution_A is None or 0.2 <= self.resolution_A <= 5.0, "in [0.2, 5] Å"),
            ("template_u_iso_A2", 0.0 <= self.template_u_iso_A2 <= 0.2, "in [0, 0.2] Å²"),
            ("mask_lowpass_A", 0.5 <= self.mask_lowpass_A <= 10.0, "in [0.5, 10] Å"),
            ("mask_dilate_A", 0.0 <= self.mask_dilate_A <= 10.0, "in [0, 10] Å"),
            ("mask_diameter_A", self.mask != "sphere" or (self.mask_diameter_A is not None
                                                           and 0 < self.mask_diameter_A <= 500),
             "a diameter in (0, 500] Å when mask = 'sphere'"),
            ("min_envelope_zscore", self.min_envelope_zscore >= 0, ">= 0"),
            ("min_atom_zscore", self.min_atom_zscore >= 0, ">= 0"),
            ("n_thresholds", 3 <= self.n_thresholds <= 200, "in [3, 200]"),
            ("n_fine_thresholds", 0 <= self.n_fine_thresholds <= 200, "in [0, 200]"),
            ("correlation_sigmas", self.correlation_sigmas > 0, "> 0"),
            ("correlation_floor", -1.0 <= self.correlation_floor <= 1.0, "in [-1, 1]"),
            ("min_cn", 0 <= self.min_cn <= 12, "in [0, 12]"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise TumblebenchError(f"field '{name}' = {getattr(self, name)!r} must be {expected}")

    @property
    def lattice_constant(self) -> float:
        """The lattice constant guess in Å (tabulated unless given)."""
        return self.lattice_constant_guess_A or element_parameters(self.element)[0]

    @property
    def radius(self) -> float:
        """The theoretical atomic radius r_th in Å (tabulated unless given)."""
        return self.atom_radius_A or element_parameters(self.element)[1]
