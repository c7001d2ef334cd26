"""The CTF's transfer gap of a series and the FSC crossings on either side of it."""

from __future__ import annotations

import numpy as np

from tumblebench.simulator.optics import OpticsConfig
from tumblebench.validation.transfer import RISE_SHELLS, TransferGap, crossings, series_ctf, transfer_gap


def test_default_optics_gap_contains_the_ctf_zero() -> None:
    # CTF = −(√(1−Q²) sin γ + Q cos γ) vanishes where γ = −asin Q; with γ ≈ πλΔf q² at low q (the C_s term is
    # 1 % of it there) the zero lies at q = sqrt(asin Q / (π λ |Δf|))
    o = OpticsConfig()
    q0 = 0.1
    zero = np.sqrt(np.arcsin(q0) / (np.pi * o.wavelength_A * abs(o.defocus_A)))
    q = np.arange(65) / (128 * 0.358)  # the shells of the default 128-voxel box
    rms = series_ctf(q, o, np.full(20, o.defocus_A), q0)
    gap = transfer_gap(q, rms)
    assert gap is not None and gap.high_res_A < 1 / zero < gap.low_res_A
    assert rms[np.argmin(np.abs(q - zero))] < 0.02  # one shell from the zero
    # per-frame defoci that straddle the zero's defocus do not close the gap, and a Q = 0 CTF has no zero above 0
    assert transfer_gap(q, series_ctf(q, o, o.defocus_A + np.linspace(-8, 8, 50), q0)) is not None
    assert np.all(series_ctf(q[1:20], o, np.full(3, o.defocus_A), 0.0) > 0)


def test_crossings_on_either_side_of_the_gap() -> None:
    q = np.linspace(0, 1.4, 141)
    gap = TransferGap(low_res_A=10.0, high_res_A=5.0, threshold=0.05)
    curve = np.where((q > 0.1) & (q < 0.2), 0.0, 1.0 - q / 1.0)  # dips in the gap, falls to 0.143 at q = 0.857
    first, band, in_gap = crossings(q, curve, 0.143, gap)
    assert 5.0 <= first <= 10.0 and in_gap is True
    assert abs(band - 1 / 0.857) < 0.01
    # low just beyond the gap (no Bragg shell there), above the threshold from 3 Å, below it again from 1.5 Å
    late = np.where(q < 0.12, 1.0, np.where(q < 1 / 3, 0.05, np.where(q < 1 / 1.5, 0.6, 0.0)))
    f3, b3, g3 = crossings(q, late, 0.143, gap)
    assert 5.0 <= f3 <= 10.0 and g3 is True and 1.48 <= b3 <= 1.52  # one shell (0.01 1/Å) either side
    assert crossings(q, np.where(q < 0.12, 1.0, 0.05), 0.143, gap)[1] == float("inf")  # never recovers
    # the gap's edge shell above the threshold alone is not a recovery: the band crossing is the later one
    edge = late.copy()
    edge[np.searchsorted(q, 1 / 5.0)] = 0.2
    assert 1.48 <= crossings(q, edge, 0.143, gap)[1] <= 1.52
    # fewer than RISE_SHELLS shells above it never count, RISE_SHELLS do
    for n_above, recovers in ((RISE_SHELLS - 1, False), (RISE_SHELLS, True)):
        blip = np.where(q < 0.12, 1.0, 0.05)
        j = np.searchsorted(q, 0.5)
        blip[j:j + n_above] = 0.5
        assert np.isfinite(crossings(q, blip, 0.143, gap)[1]) == recovers
    # no gap: both are the first crossing
    assert crossings(q, curve, 0.143, None) == (first, first, None)
    # a map that fails before the gap: the band figure is that first crossing too
    bad = np.clip(1.0 - q / 0.05, 0, 1)
    f2, b2, g2 = crossings(q, bad, 0.143, gap)
    assert f2 > 10.0 and b2 == f2 and g2 is False
