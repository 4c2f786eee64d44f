"""``segment --labels-in``: cell labels inside the image they label (NGFF labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from chunkseg.cli import main
from chunkseg.io.labels import MAX_LABEL_ENTRIES, label_colors, write_image_label
from chunkseg.io.store import open_volume, read_attrs
from chunkseg.ops.pyramid import downsample_mode

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def raw_and_mask(tmp_path, capsys):
    """raw.ome.zarr (1, 3, 530, 21) and the membrane mask of stripe cells on its grid."""
    raw_tif, labels_tif = tmp_path / "raw.tif", tmp_path / "labels.tif"
    cells = np.repeat(np.arange(1, 54, dtype=np.uint16), 10)[:530]
    labels = np.broadcast_to(cells[None, :, None], (3, 530, 21)).copy()
    tifffile.imwrite(labels_tif, labels)
    tifffile.imwrite(raw_tif, (labels * 37 % 1000).astype(np.uint16), imagej=True,
                     resolution=(2.0, 2.0), metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    raw, mask = tmp_path / "raw.ome.zarr", tmp_path / "mask.ome.zarr"
    assert main(["convert", str(raw_tif), "--out", str(raw)]) == 0
    assert main(["binarize", str(labels_tif), "--out", str(mask), "--like", str(raw)]) == 0
    capsys.readouterr()
    return raw, mask


def test_labels_written_inside_the_image(raw_and_mask, capsys):
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    raw, mask = raw_and_mask
    assert main(["segment", str(mask), "--labels-in", str(raw), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    cells = raw / "labels" / "cells"
    assert summary["out"] == str(cells)
    assert zarr.open_group(str(raw / "labels")).attrs["ome"]["labels"] == ["cells"]
    image = Image.from_zarr(zarr.open_group(str(raw)))  # validates the image with its labels
    assert image.labels is not None
    meta = ImageLabel.from_zarr(zarr.open_group(str(cells))).attributes.ome.image_label
    assert meta.source.image == "../../"
    n = summary["n_cells"][0]
    assert n > 40
    assert [c.label_value for c in meta.colors] == list(range(n + 1))
    assert meta.colors[0].rgba == (0, 0, 0, 0)
    props = {p.label_value: p.model_dump() for p in meta.properties}
    labels = open_volume(cells).data.compute()
    first = int(labels[0, 1, 5, 3])
    assert props[first]["voxels"] == int((labels == first).sum())
    assert read_attrs(cells)["complete"] is True
    group = zarr.open_group(str(cells))
    np.testing.assert_array_equal(group["1"][:], downsample_mode(group["0"][:], (1, 1, 2, 2)))
    # the raw is untouched and still opens as before; info names its labels
    assert open_volume(raw).shape == (1, 3, 530, 21)
    assert main(["info", str(raw)]) == 0
    assert "labels       cells" in capsys.readouterr().out


def test_labels_in_refuses_another_shape_and_both_outputs(raw_and_mask, tmp_path, capsys):
    raw, mask = raw_and_mask
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((3, 20, 21), np.float32))
    assert main(["segment", str(other), "--labels-in", str(raw)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(raw) in err and "(1, 3, 530, 21)" in err, err
    assert not (raw / "labels").exists()
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(mask), "--labels-in", str(raw), "--out", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert main(["segment", str(mask), "--labels-in", str(mask / "0")]) == 2
    assert "expected an OME-Zarr image group" in capsys.readouterr().err


def test_label_colours_are_distinct_and_capped(tmp_path):
    colors = label_colors(range(200))
    assert colors[0]["rgba"] == [0, 0, 0, 0]
    assert len({tuple(c["rgba"]) for c in colors[1:]}) > 150
    g = zarr.create_group(str(tmp_path / "l.zarr"), zarr_format=3)
    g.attrs["ome"] = {"version": "0.5"}
    write_image_label(tmp_path / "l.zarr", source="../../",
                      properties=[{"label-value": i} for i in range(1, MAX_LABEL_ENTRIES + 1)])
    block = zarr.open_group(str(tmp_path / "l.zarr")).attrs["ome"]["image-label"]
    assert "colors" not in block and "properties" not in block  # viewers colour them
