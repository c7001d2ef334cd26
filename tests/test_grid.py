"""simulator.grid: frequencies against numpy's fftfreq, Fourier shells, low-pass filters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st

from tumblebench.simulator.errors import TumblebenchError
from tumblebench.simulator.grid import (
    frequencies,
    frequency_squared,
    gaussian_filter,
    lowpass_filter,
    radial_frequency,
    shells,
)

shapes = st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple)
samplings = st.floats(0.05, 5.0)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, sampling=samplings, rfft=st.booleans())
def test_frequencies_are_numpys_fftfreq_scaled_by_one_over_n_sampling(shape, sampling, rfft) -> None:
    qs = frequencies(shape, sampling, rfft=rfft)
    assert len(qs) == len(shape)
    for axis, (q, n) in enumerate(zip(qs, shape, strict=True)):
        half = rfft and axis == len(shape) - 1
        k = np.arange(n // 2 + 1) if half else np.fft.fftfreq(n, 1.0 / n)  # integer frequency indices
        ref = (np.fft.rfftfreq(n) if half else np.fft.fftfreq(n)) / sampling
        # numpy computes k · (1 / (n·sampling)): equal to k / (n·sampling) to the last few bits
        np.testing.assert_allclose(q.ravel(), k / (n * sampling), rtol=4 * np.finfo(float).eps, atol=0)
        np.testing.assert_allclose(q.ravel(), ref, rtol=4 * np.finfo(float).eps, atol=0)
        assert q.shape == tuple(q.size if a == axis else 1 for a in range(len(shape)))
    full = np.broadcast_shapes(*(q.shape for q in qs))
    assert full == (*shape[:-1], shape[-1] // 2 + 1 if rfft else shape[-1])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, sampling=samplings)
def test_centred_frequencies_are_the_shifted_ones_with_zero_at_n_over_2(shape, sampling) -> None:
    for q, qc, n in zip(frequencies(shape, sampling), frequencies(shape, sampling, centred=True), shape,
                        strict=True):
        assert np.array_equal(scipy.fft.fftshift(q.ravel()), qc.ravel())
        assert qc.ravel()[n // 2] == 0.0


@settings(max_examples=40, deadline=None)
@given(shape=shapes, sampling=samplings, rfft=st.booleans())
def test_radial_frequency_is_the_norm_of_the_axis_frequencies(shape, sampling, rfft) -> None:
    qs = frequencies(shape, sampling, rfft=rfft)
    grids = np.meshgrid(*(q.ravel() for q in qs), indexing="ij")
    ref = np.sqrt(sum(g**2 for g in grids))
    assert np.array_equal(radial_frequency(shape, sampling, rfft), ref)  # same sum in the same order: bit-equal
    assert np.array_equal(frequency_squared(shape, sampling, rfft), sum(g**2 for g in grids))
    assert radial_frequency(shape, sampling, rfft).flat[0] == 0.0


@settings(max_examples=60, deadline=None)
@given(shape=shapes, rfft=st.booleans())
def test_shells_are_integers_from_zero_to_n_over_2_along_the_axes(shape, rfft) -> None:
    s = shells(shape, rfft=rfft)
    assert s.dtype == np.int64 and s.flat[0] == 0 and s.min() == 0
    for axis, n in enumerate(shape):
        line = s[tuple(slice(None) if a == axis else 0 for a in range(len(shape)))]
        assert sorted(set(line.tolist())) == list(range(n // 2 + 1))  # every shell 0 … n//2 once or twice
    # the shell is |q| in units of the Fourier sample of a cubic grid, rounded
    n = shape[0]
    cube = (n,) * len(shape)
    q = radial_frequency(cube, 0.7, rfft)
    assert np.array_equal(shells(cube, rfft), np.rint(q * n * 0.7).astype(np.int64))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, sampling=samplings, resolution=st.floats(0.1, 20.0),
       edge=st.one_of(st.just(0.0), st.floats(0.01, 1.9)))
def test_lowpass_is_one_at_zero_frequency_and_symmetric(shape, sampling, resolution, edge) -> None:
    soft = edge / resolution  # an edge narrower than twice the cut-off, so that it ends before q = 0
    f = lowpass_filter(shape, sampling, resolution, soft_width=soft)
    g = gaussian_filter(shape, sampling, resolution / np.pi)
    for h in (f, g):
        assert h.flat[0] == 1.0 and h.min() >= 0 and h.max() <= 1
        # symmetric: h(−q) = h(q); index −k of an fftfreq axis is (n − k) mod n
        flipped = np.roll(np.flip(h), 1, axis=tuple(range(h.ndim)))
        np.testing.assert_allclose(h, flipped, rtol=0, atol=1e-15)
    q = radial_frequency(shape, sampling)
    if soft == 0:
        assert np.array_equal(f, (q <= 1 / resolution).astype(float))
    else:
        assert np.all(f[q < 1 / resolution - 0.51 * soft] == 1) and np.all(f[q > 1 / resolution + 0.51 * soft] == 0)
    # the Gaussian is the transform of a unit-integral blur of σ Å: its value at q is exp(−2π²σ²q²)
    np.testing.assert_allclose(g, np.exp(-2 * (q * resolution) ** 2), rtol=1e-12)


def test_half_spectrum_filter_is_the_full_one_cut() -> None:
    full = lowpass_filter((12, 9), 0.4, 1.3, soft_width=0.2)
    half = lowpass_filter((12, 9), 0.4, 1.3, soft_width=0.2, rfft=True)
    assert np.array_equal(full[:, : 9 // 2 + 1], half)


def test_bad_grids_are_errors() -> None:
    for args in (((0, 4), 1.0), ((4,), 0.0), ((), 1.0)):
        with pytest.raises(TumblebenchError):
            frequencies(*args)
    with pytest.raises(TumblebenchError):
        frequencies((4, 4), 1.0, rfft=True, centred=True)
    with pytest.raises(TumblebenchError):
        lowpass_filter((4, 4), 1.0, 0.0)
