"""Artifact slice specs: parsing, dropping from raw and labels, bad input."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.slices import drop_slices, keep_indices, parse_slices


def test_parse_spec_ranges_and_duplicates():
    assert parse_slices("3,17,40-45", 50) == [3, 17, 40, 41, 42, 43, 44, 45]
    assert parse_slices(" 5 , 2,2, 0-1 ", 6) == [0, 1, 2, 5]
    assert parse_slices([4, 1, 4], 5) == [1, 4]
    assert parse_slices("", 5) == [] and parse_slices(None, 5) == []


@pytest.mark.parametrize("spec, match", [
    ("3,50", "out of range"),
    ("-1", "out of range"),
    ("7-3", "backwards"),
    ("a,3", "cannot read"),
    ("1-x", "cannot read"),
    ("0-9", "all 10"),
    ([1.5], "integers"),
])
def test_parse_spec_errors(spec, match):
    with pytest.raises(ParameterError, match=match):
        parse_slices(spec, 10, name="raw.tif")


def test_error_names_file_and_range():
    with pytest.raises(ParameterError, match=r"raw.tif: .*0\.\.9.*\[12\]"):
        parse_slices("12", 10, name="raw.tif")


def test_drop_keeps_raw_and_labels_aligned():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 1000, (2, 12, 5, 6)).astype(np.uint16)
    labels = np.broadcast_to(np.arange(12, dtype=np.uint32)[None, :, None, None], raw.shape)
    kept = keep_indices([0, 3, 4, 11], 12)
    r, dropped = drop_slices(da.from_array(raw, chunks=(1, 5, 3, 4)), "0,3-4,11")
    lab, dropped2 = drop_slices(labels, "0,3-4,11")
    assert dropped == dropped2 == [0, 3, 4, 11]
    np.testing.assert_array_equal(r.compute(), raw[:, kept])
    np.testing.assert_array_equal(lab[0, :, 0, 0], kept)  # slice z of labels == its index
    same, none = drop_slices(raw, None)
    assert same is raw and none == []


def test_drop_needs_4d():
    with pytest.raises(ShapeError, match="4D"):
        drop_slices(np.zeros((3, 4, 5)), "1")
