"""The wide synthetic domain (chunkseg.synth.wide): exact blocks, what each option adds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from chunkseg.errors import ParameterError
from chunkseg.ops.boundaries import membrane_mask
from chunkseg.synth import SynthParams, synth_block
from chunkseg.synth.wide import WideParams, illumination_field, render_from_labels, wide_block

P = SynthParams(shape=(14, 30, 33), seed=4, voxel_size=(0.5, 0.15, 0.15), cell_diameter=3.0,
                cytoplasm=1.0, cell_contrast=0.8, background=True)
W = WideParams(nucleus_fraction=0.8, nucleus_photons=400.0, vesicle_density=0.6,
               vesicle_photons=600.0, vesicle_spacing=1.0, illumination=0.5, stripes=0.5)


def test_blocks_equal_the_whole_volume_on_odd_chunks():
    whole = wide_block(P, W, t=1)
    for z, y, x in itertools.product(*[range(0, s, c) for s, c in zip(P.shape, (5, 7, 9))]):
        reg = [(z, min(z + 5, 14)), (y, min(y + 7, 30)), (x, min(x + 9, 33))]
        block = wide_block(P, W, reg, t=1)
        for k, v in block.items():
            np.testing.assert_array_equal(v, whole[k][tuple(slice(a, b) for a, b in reg)], k)


def test_off_is_the_base_generator_and_truth_is_unchanged():
    base = synth_block(P, None)
    plain = wide_block(P, WideParams())
    for k in base:
        np.testing.assert_array_equal(plain[k], base[k])
    wide = wide_block(P, W)
    np.testing.assert_array_equal(wide["labels"], base["labels"])
    np.testing.assert_array_equal(wide["mask"], base["mask"])
    assert wide["raw"].dtype == np.uint16 and not np.array_equal(wide["raw"], base["raw"])


def test_nuclei_and_vesicles_add_light_inside_cells_only():
    q = SynthParams(**{**P.to_dict(), "noise": False, "shape": P.shape})
    base = wide_block(q, WideParams())["raw"].astype(float)
    out = wide_block(q, WideParams(nucleus_fraction=1.0, nucleus_photons=500.0,
                                   vesicle_density=1.0, vesicle_photons=500.0))
    added = out["raw"].astype(float) - base
    assert added[out["labels"] > 0].max() > 100
    assert np.all(added[out["labels"] == 0] == 0)


def test_illumination_field():
    coords = [np.arange(n) * 0.2 for n in (4, 20, 25)]
    flat = illumination_field(coords, (0.8, 4, 5), seed=0, illumination=0.0, stripes=0.0,
                              stripe_period=1.0)
    np.testing.assert_array_equal(flat, np.ones((4, 20, 25)))
    f = illumination_field(coords, (0.8, 4, 5), seed=0, illumination=0.5, stripes=0.6,
                           stripe_period=1.0)
    assert f.shape == (4, 20, 25) and f.min() >= 0.05 and f.max() <= 1.5
    assert np.ptp(f[:, :, 0]) > 0.3  # stripes vary across y
    with pytest.raises(ParameterError):
        WideParams(stripes=1.5)
    with pytest.raises(ParameterError):
        WideParams(vesicle_sigma=0.0)


def test_render_from_labels_low_contrast():
    lab = np.zeros((12, 40, 40), np.uint16)
    lab[:, :, :20], lab[:, :, 20:] = 1, 2
    lab[:, :4] = 0
    m = membrane_mask(lab).astype(bool)
    for cytoplasm, lo, hi in ((0.2, 1.5, 20.0), (5.0, 1.05, 1.4)):
        raw = render_from_labels(lab, seed=1, cytoplasm=cytoplasm, membrane_photons=400.0,
                                 haze_photons=0.0, illumination=0.0, offset=0.0,
                                 cell_contrast=0.0, psf_sigma=(0.5, 0.5, 0.5))
        ratio = np.median(raw[m & (lab > 0)]) / np.median(raw[~m & (lab > 0)])
        assert lo < ratio < hi, (cytoplasm, ratio)
    with pytest.raises(ParameterError):
        render_from_labels(lab[0])
