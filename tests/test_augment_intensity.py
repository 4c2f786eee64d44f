"""Intensity augmentation (chunkseg.ops.augment_intensity) and its use in the crop sampler."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from chunkseg.model.training_data import CropSampler
from chunkseg.errors import ParameterError
from chunkseg.ops.augment_intensity import (
    INTENSITY_RANGES,
    IntensityParams,
    apply_intensity,
    contrast,
    draw_intensity,
    gamma,
    quantize,
    sigmoid_curve,
    window,
)


def _crop(seed=0, shape=(6, 10, 12)):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_functions_match_numpy():
    x = _crop()
    np.testing.assert_allclose(window(x, 0.2, 0.7), np.clip((x - 0.2) / 0.5, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(gamma(x, 1.7), x ** 1.7, rtol=1e-5)
    np.testing.assert_allclose(contrast(x, 0.3), x.mean() + 0.3 * (x - x.mean()), atol=1e-6)
    np.testing.assert_allclose(contrast(x, 2.0, centre=0.5), 0.5 + 2 * (x - 0.5), atol=1e-6)
    q = quantize(x)
    assert np.all(np.abs(q - x) <= 0.5 / 255 + 1e-7)
    np.testing.assert_allclose(np.unique(q * 255), np.round(np.unique(q * 255)), atol=1e-4)


def test_sigmoid_curve_formula_ends_and_monotone():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    s = lambda v, c, w: 1 / (1 + np.exp(-(v - c) / w))  # noqa: E731
    for c, w in ((0.6, 0.1), (0.3, 0.05), (0.5, 0.5)):
        y = sigmoid_curve(x, c, w)
        assert y.dtype == np.float32
        ref = (s(x.astype(np.float64), c, w) - s(0, c, w)) / (s(1, c, w) - s(0, c, w))
        np.testing.assert_allclose(y, ref, atol=1e-5)
        assert y[0] == 0 and y[-1] == pytest.approx(1, abs=1e-6) and np.all(np.diff(y) >= 0)
    steep = sigmoid_curve(np.float32([0.4, 0.8]), 0.6, 0.05)
    assert steep[0] < 0.03 and steep[1] > 0.97  # a steep curve nearly thresholds at centre
    with pytest.raises(ParameterError):
        sigmoid_curve(x, 0.5, 0.0)


def test_curve_draws_seeded_and_leave_other_draws_alone():
    plain = [draw_intensity(np.random.default_rng([4, i])) for i in range(200)]
    off = [draw_intensity(np.random.default_rng([4, i]), {"curve_p": 0.0}) for i in range(200)]
    assert off == plain and all(p.curve_width == 0 for p in plain)
    on = [draw_intensity(np.random.default_rng([4, i]), {"curve_p": 1.0}) for i in range(200)]
    assert on == [draw_intensity(np.random.default_rng([4, i]), {"curve_p": 1.0})
                  for i in range(200)]
    for a, b in zip(plain, on):  # the other parameters are drawn as without the curve
        assert (a.gamma, a.contrast, a.offset) == (b.gamma, b.contrast, b.offset)
        if a != IntensityParams():
            assert INTENSITY_RANGES["curve_width"][0] <= b.curve_width \
                <= INTENSITY_RANGES["curve_width"][1]
            assert INTENSITY_RANGES["curve_centre"][0] <= b.curve_centre \
                <= INTENSITY_RANGES["curve_centre"][1]
    half = [draw_intensity(np.random.default_rng([5, i]), {"curve_p": 0.5}) for i in range(400)]
    assert 120 < sum(p.curve_width > 0 for p in half) < 240  # 0.9 * 0.5 of 400
    x = quantize(_crop())
    p = IntensityParams(curve_centre=0.6, curve_width=0.1, quantize=False)
    np.testing.assert_allclose(apply_intensity(x, p), sigmoid_curve(x, 0.6, 0.1), atol=1e-7)


def test_identity_and_shapes_dtypes():
    x = quantize(_crop())
    y = apply_intensity(x, IntensityParams())
    np.testing.assert_array_equal(y, x)
    for seed in range(20):
        p = draw_intensity(np.random.default_rng(seed))
        y = apply_intensity(x, p)
        assert y.shape == x.shape and y.dtype == np.float32
        assert y.min() >= 0 and y.max() <= 1


def test_low_contrast_collapses_levels_and_window_saturates():
    x = _crop()
    y = apply_intensity(x, IntensityParams(contrast=0.05))
    assert len(np.unique(y)) <= 15  # a squeezed range keeps only a few 8-bit levels
    z = apply_intensity(x, IntensityParams(window_high=0.5))
    assert np.mean(z == 1.0) == pytest.approx(np.mean(x >= 0.5), abs=0.01)


def test_draw_deterministic_and_within_ranges():
    a = [draw_intensity(np.random.default_rng([3, i])) for i in range(50)]
    b = [draw_intensity(np.random.default_rng([3, i])) for i in range(50)]
    assert a == b
    changed = [p for p in a if p != IntensityParams()]
    assert 30 <= len(changed) < 50  # p = 0.9
    for p in changed:
        for key in ("window_low", "window_high", "gamma", "contrast", "offset"):
            lo, hi = INTENSITY_RANGES[key]
            assert lo <= getattr(p, key) <= hi
    assert draw_intensity(np.random.default_rng(0), {"p": 0.0}) == IntensityParams()


@pytest.mark.parametrize("bad", [{"gamma": (0.0, 1.0)}, {"contrast": (2.0, 1.0)},
                                 {"curve_width": (0.0, 0.2)}, {"curve_p": 1.5}, {"p": -0.1},
                                 {"nope": (0, 1)}, {"window_low": (0.5, 0.9),
                                                    "window_high": (0.6, 1.0)}, "yes"])
def test_bad_ranges_raise(bad):
    with pytest.raises(ParameterError):
        draw_intensity(np.random.default_rng(0), bad)


def test_bad_values_raise():
    with pytest.raises(ParameterError):
        window(_crop(), 0.5, 0.5)
    with pytest.raises(ParameterError):
        gamma(_crop(), 0.0)
    with pytest.raises(ParameterError):
        quantize(_crop(), 1)


def test_sampler_intensity_changes_raw_only_and_is_seeded(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (12, 24, 24), dtype=np.uint8)
    mask = (rng.random((12, 24, 24)) < 0.3).astype(np.uint8)
    r = zarr.create_array(store=str(tmp_path / "r.zarr"), shape=raw.shape, dtype=raw.dtype,
                          chunks=(5, 7, 9))
    m = zarr.create_array(store=str(tmp_path / "m.zarr"), shape=mask.shape, dtype=mask.dtype,
                          chunks=(5, 7, 9))
    r[...], m[...] = raw, mask
    s = CropSampler([(r, m)], crop=(4, 8, 8), seed=5)
    changed = 0
    for i in range(12):
        plain = s.sample(i, augment=True)
        aug = s.sample(i, augment=True, intensity=True)
        again = s.sample(i, augment=True, intensity=True)
        assert aug.corner == plain.corner and aug.augment == plain.augment
        np.testing.assert_array_equal(aug.mask, plain.mask)  # geometry and mask untouched
        np.testing.assert_array_equal(aug.raw, again.raw)
        assert aug.raw.dtype == np.float32 and aug.raw.shape == (4, 8, 8)
        changed += not np.array_equal(aug.raw, plain.raw)
    assert changed >= 6
