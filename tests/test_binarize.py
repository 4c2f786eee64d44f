"""Membrane masks from labels (ops layer) and the chunked binarize pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from chunkseg.errors import DTypeError, ParameterError
from chunkseg.ops.boundaries import halo_for_width, membrane_mask


def _random_labels(shape, n, seed, dtype=np.uint32):
    """Voronoi-like cells: each voxel takes the label of the nearest of n seeds."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (n, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    d = ((grid[..., None, :] - pts) ** 2).sum(-1)
    return d.argmin(-1).astype(dtype)


def _reference(labels, ignore, mode):
    return find_boundaries(np.where(np.isin(labels, ignore), 0, labels), mode=mode,
                           connectivity=1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["thick", "inner"])
@pytest.mark.parametrize("ignore", [(0,), (0, 1), (0, 1, 5)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int32])
def test_width1_equals_skimage(mode, ignore, dtype):
    lab = _random_labels((9, 14, 17), 12, seed=3, dtype=dtype)
    got = membrane_mask(lab, ignore=ignore, mode=mode)
    assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got, _reference(lab, ignore, mode))


def test_large_label_values_uint64():
    lab = _random_labels((6, 8, 9), 5, seed=4, dtype=np.uint64)
    big = lab + np.uint64(2**63)
    big[lab == 0] = 0
    np.testing.assert_array_equal(membrane_mask(big), membrane_mask(lab))


def test_definition_small_cases():
    lab = np.array([[2, 2, 2, 3, 3, 3]])
    assert membrane_mask(lab).tolist() == [[0, 0, 1, 1, 0, 0]]
    assert membrane_mask(lab, width=2).tolist() == [[0, 1, 1, 1, 1, 0]]
    bg = np.array([[0, 0, 2, 2, 2, 2]])
    assert membrane_mask(bg).tolist() == [[0, 1, 1, 0, 0, 0]]
    assert membrane_mask(bg, mode="inner").tolist() == [[0, 0, 1, 0, 0, 0]]
    assert membrane_mask(bg, mode="inner", width=2).tolist() == [[0, 0, 1, 1, 0, 0]]
    # 0 and 1 ignored: their interface is not a membrane; a 1-voxel gap is filled (thick)
    gap = np.array([[1, 1, 0, 0, 4, 4, 0, 5, 5]])
    assert membrane_mask(gap, ignore=(0, 1)).tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 0]]
    assert membrane_mask(gap, ignore=()).tolist() == [[0, 1, 1, 1, 1, 1, 1, 1, 0]]
    # volume edges are not interfaces
    assert membrane_mask(np.full((3, 4, 5), 7)).sum() == 0


def test_width_uses_l1_ball():
    lab = np.zeros((9, 9, 9), np.uint16)
    lab[4, 4, 4] = 9
    m = membrane_mask(lab, width=2)
    z, y, x = np.nonzero(m)
    assert (np.abs(z - 4) + np.abs(y - 4) + np.abs(x - 4)).max() == 2
    assert m.sum() == 25  # voxels of the L1 ball of radius 2 in 3D
    assert halo_for_width(3) == 3


def test_bad_inputs():
    with pytest.raises(DTypeError, match="float32"):
        membrane_mask(np.zeros((3, 3, 3), np.float32))
    for w in (0, -1, 1.5, True):
        with pytest.raises(ParameterError, match="width"):
            membrane_mask(np.zeros((3, 3, 3), np.uint16), width=w)
    with pytest.raises(ParameterError, match="mode"):
        membrane_mask(np.zeros((3, 3, 3), np.uint16), mode="outer")
    assert membrane_mask(np.zeros((2, 2), bool)).sum() == 0
