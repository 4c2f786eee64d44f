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
