"""Helpers of the default model's training recipe (``examples/train_default_model.py``):
crop-position shares of the source groups and the ``--weight`` option."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import train_default_model as recipe  # noqa: E402

CROP = (4, 8, 8)


def _groups():
    big = [(np.zeros((12, 40, 40), np.uint8), None) for _ in range(2)]  # 2 x 9801 positions
    small = [(np.zeros((8, 16, 16), np.uint8), None) for _ in range(3)]  # 3 x 405 positions
    return {"organoid": big, "synthetic": small}


def test_balanced_equal_weights_give_equal_shares():
    pairs, weights, shares = recipe._balanced(_groups(), CROP, repeat=True)
    assert len(pairs) == 2 + 3 * round(19602 / 1215) and weights is None
    assert shares == pytest.approx({"organoid": 0.5, "synthetic": 0.5}, abs=0.01)
    pairs, weights, shares = recipe._balanced(_groups(), CROP)
    assert len(pairs) == 5 and weights == pytest.approx([1, 1] + [19602 / 1215] * 3)
    assert shares == pytest.approx({"organoid": 0.5, "synthetic": 0.5}, abs=1e-3)


def _organoid_share(groups, pairs, weights) -> float:
    w = weights or [1.0] * len(pairs)
    positions = [recipe._positions(p, CROP) * wi for p, wi in zip(pairs, w)]
    organoid = [x for p, x in zip(pairs, positions) if any(p is q for q in groups["organoid"])]
    return sum(organoid) / sum(positions)


@pytest.mark.parametrize("repeat", [True, False])
def test_balanced_weights_set_the_shares(repeat):
    groups = _groups()
    pairs, weights, shares = recipe._balanced(groups, CROP, {"organoid": 0.5}, repeat)
    assert shares == pytest.approx({"organoid": 1 / 3, "synthetic": 2 / 3}, abs=0.01)
    assert _organoid_share(groups, pairs, weights) == pytest.approx(shares["organoid"],
                                                                    abs=1e-3)
    _, _, shares = recipe._balanced(groups, CROP, {"synthetic": 3.0}, repeat)
    assert shares == pytest.approx({"organoid": 0.25, "synthetic": 0.75}, abs=0.01)


def test_weight_option():
    args = recipe._parse(["--weight", "organoid", "0.5", "--weight", "tissue_render", "2"])
    assert args.weight == {"organoid": 0.5, "tissue_render": 2.0}
    assert recipe._parse([]).weight == {}
    assert recipe._parse([]).balance == "weights"
    for bad in (["organoid", "0"], ["organoid", "x"], ["cells", "1"]):
        with pytest.raises(SystemExit) as exc:
            recipe._parse(["--weight", *bad])
        assert exc.value.code == 2


def _anisotropic_volume(name: str) -> dict:
    """Two cells split by an oblique wall at z / lateral 8: z neighbours spread the wall."""
    from chunkseg.ops.boundaries import membrane_mask

    z, y, x = np.mgrid[:6, :12, :12]
    labels = np.where(x + 2 * z < 10, 1, 2).astype(np.uint16)
    raw = (labels * 100).astype(np.uint16)
    return {"name": name, "raw": raw, "labels": labels, "mask": membrane_mask(labels),
            "voxel_size": (2.0, 0.25, 0.25)}


def test_network_ignore_masks(tmp_path):
    import default_model_data as data

    from chunkseg.ops.boundaries import membrane_mask

    vol = _anisotropic_volume("v")
    thick = membrane_mask(vol["labels"])
    thin = membrane_mask(vol["labels"], in_plane=True)
    assert (thick > thin).any()  # the z spread exists
    for source, expect_ignore in (("synthetic", False), ("organoid", True)):
        _, mask = data.source_pairs(tmp_path / source, source, [vol], "network-ignore")[0]
        m = mask[...]
        if expect_ignore:
            assert np.array_equal(m == 1, thin > 0)
            assert np.array_equal(m == data.IGNORE, (thick > 0) & (thin == 0))
        else:
            assert np.array_equal(m, thick.astype(np.uint8))


def test_object_labels_keep_an_ellipsoid_and_zero_the_rest():
    import default_model_data as data

    labels = np.arange(1, 1 + 10 * 40 * 40, dtype=np.uint32).reshape(10, 40, 40)
    out = data.object_labels(labels, axes=(0.5, 0.25, 0.25))
    assert out.dtype == labels.dtype
    inside = out > 0
    assert np.array_equal(out[inside], labels[inside])  # kept voxels keep their labels
    assert inside[5, 20, 20] and not inside[5, 20, 31] and not inside[0, 0, 0]
    assert not inside[:, :, :10].any() and not inside[:, :, 30:].any()  # semi-axis 10 voxels
    assert inside.sum() == pytest.approx(4 / 3 * np.pi * 5 * 10 * 10, rel=0.1)


def test_lightsheet_renders_are_clusters_with_the_scoring_mask():
    import default_model_data as data

    from chunkseg.ops.boundaries import membrane_mask

    if not (data.REAL / "tissue_labels.tif").exists():
        pytest.skip("shared real data absent")
    v, = data.lightsheet_renders(only=[0])
    assert v["voxel_size"][0] >= 5 * v["voxel_size"][1]
    assert np.array_equal(v["mask"], membrane_mask(v["labels"]))
    assert (v["mask"] > membrane_mask(v["labels"], in_plane=True)).mean() > 0.02  # z spread
    raw = data._scaled(v["raw"])
    assert (v["labels"] == 0).mean() > 0.5  # empty space around the cluster, dark
    assert np.median(raw[v["labels"] == 0]) < 0.2 * np.median(raw[v["mask"] > 0])
    assert recipe._group("synthetic", v["name"]) == "lightsheet"
    assert recipe._group("synthetic", "broad_render0") == "tissue_render"
    assert recipe._group("ovule", "ovule") == "ovule"
    assert recipe._parse(["--lightsheet", "--weight", "lightsheet", "2"]).weight == {
        "lightsheet": 2.0}
