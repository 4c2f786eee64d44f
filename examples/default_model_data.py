"""Training and evaluation volumes of the default model, by source (seeded, cached on disk).

Sources
-------
``ovule``
    ``../shared/data/real/ovule_raw.tif`` (confocal, uint8) with its HAND-DRAWN cell
    labels (PlantSeg test data, Wolny et al. 2020), voxel size (0.235, 0.15, 0.15) µm.
``organoid``
    ``../shared/data/real/organoid/organoid_t1..t5`` (light sheet, uint16, zeros outside
    the organoid), labels made by the AUTHORS' NETWORK (LSTree, de Medeiros et al. 2022),
    not by hand; voxel size (2.0, 0.26, 0.26) µm.
``synthetic``
    The wide synthetic domain (:mod:`chunkseg.synth.wide`): Laguerre cells with low
    membrane/cytoplasm contrast (down to 1.2 : 1), thick and blurred walls, strong z blur,
    nuclei, vesicles, empty background, uneven illumination, depth fall-off, stripes,
    dim and bright cells; plus membrane images rendered from the real cell geometry of
    ``tissue_labels.tif``.  Exact truth.

Every raw is scaled to uint8 with :func:`chunkseg.ops.robust_range.robust_range` (the
default normalization of ``predict``); masks are ``chunkseg binarize``'s definition
(:func:`chunkseg.ops.boundaries.membrane_mask`, thick, width 1, label 0 not a cell), or
with ``mask="aniso"`` / ``"aniso-ignore"`` :func:`training_mask` (in-plane only where z
spacing > 2 × lateral; voxels marked only through z neighbours 0, or ignored).
Volumes are cached as zarr arrays under ``<work>/data``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "data" / "real"
VOXEL = {"ovule": (0.235, 0.15, 0.15), "organoid": (2.0, 0.26, 0.26)}
LABELS_FROM = {"ovule": "hand-drawn (Wolny et al. 2020)",
               "organoid": "the authors' segmentation network (LSTree), not hand-drawn",
               "synthetic": "exact (generator truth)"}
SYNTH_SHAPE = (32, 128, 128)


def synth_params(i: int) -> tuple[dict, dict]:
    """(SynthParams fields, WideParams fields) of wide synthetic volume ``i``."""
    rng = np.random.default_rng([2026, i])
    xy = float(rng.choice([0.1, 0.15, 0.2, 0.26]))
    z = float(np.round(xy * rng.uniform(1.0, 8.0), 3))
    psf = float(rng.uniform(0.7, 3.0))  # up to thick, blurred walls
    zblur = float(rng.uniform(1.0, 4.0))  # strong z blur
    base = {
        "seed": 500 + i, "voxel_size": (z, xy, xy),
        "cell_diameter": float(np.round(rng.uniform(3.0, 10.0), 2)),
        "size_variation": float(np.round(rng.uniform(0.1, 0.4), 2)),
        "psf_sigma": (round(0.45 * psf * zblur * max(1.0, z / 0.4), 3), round(0.12 * psf, 3),
                      round(0.12 * psf, 3)),
        "membrane_photons": float(np.round(np.exp(rng.uniform(np.log(40), np.log(1500))), 1)),
        "cell_contrast": float(np.round(rng.uniform(0.1, 1.0), 2)),  # dim and bright cells
        "cytoplasm": float(np.round(np.exp(rng.uniform(np.log(0.03), np.log(5.0))), 3)),
        "haze_photons": float(np.round(rng.uniform(5, 80), 1)),
        "attenuation_length": float(rng.uniform(8.0, 80.0)),
        "blobs": bool(rng.random() < 0.5),
        "background": bool(rng.random() < 0.4),
        "offset": float(rng.choice([0.0, 100.0, 1000.0])),
    }
    wide = {
        "nucleus_fraction": float(rng.choice([0.0, 0.5, 0.9])),
        "nucleus_photons": float(base["membrane_photons"] * rng.uniform(0.3, 2.0)),
        "vesicle_density": float(rng.choice([0.0, 0.2, 0.6])),
        "vesicle_photons": float(base["membrane_photons"] * rng.uniform(0.5, 3.0)),
        "illumination": float(rng.uniform(0.0, 0.6)),
        "stripes": float(rng.choice([0.0, 0.0, 0.3, 0.6])),
    }
    return base, wide


IGNORE = 2  # mask value of voxels left out of the loss (``--mask aniso-ignore``)
IGNORING = ("aniso-ignore", "network-ignore")  # mask kinds that use IGNORE
NETWORK_LABELS = ("organoid",)  # sources whose labels a segmentation network made


def training_mask(labels: np.ndarray, voxel_size, ignore: int | None = None) -> np.ndarray:
    """Membrane mask whose lateral width does not grow with z anisotropy.

    ``membrane_mask`` (width 1, 6-neighbours) marks a voxel whose z neighbour has another
    label; at a z spacing of 2 µm over 0.26 µm lateral (the organoid) an oblique wall is
    then marked over ~11 lateral voxels (2.9 µm) instead of 2.  Where
    :func:`chunkseg.ops.boundaries.in_plane_for` says no (z spacing at most twice the
    lateral one) this is ``membrane_mask``; otherwise each z slice gets its in-plane mask
    (``membrane_mask(..., in_plane=True)``), and the voxels marked only through a z
    neighbour (the lateral spread of oblique walls, but also the caps of cells, walls
    parallel to the slices) are 0, or ``ignore`` (excluded from the loss) when given.
    """
    from chunkseg.ops.boundaries import in_plane_for, membrane_mask

    if not in_plane_for(voxel_size):
        return membrane_mask(labels)
    thin = membrane_mask(labels, in_plane=True)
    if ignore is not None:
        thin[(membrane_mask(labels) > 0) & (thin == 0)] = ignore
    return thin


def _store(path: Path, raw8: np.ndarray, mask: np.ndarray) -> tuple[Any, Any]:
    import zarr

    out = []
    for name, arr in (("raw", raw8), ("mask", mask)):
        p = path / f"{name}.zarr"
        if not p.exists():
            z = zarr.create_array(store=str(p), shape=arr.shape, dtype=arr.dtype,
                                  chunks=tuple(min(s, 64) for s in arr.shape))
            z[...] = arr
        out.append(zarr.open_array(str(p), mode="r"))
    return out[0], out[1]


def _scaled(raw: np.ndarray) -> np.ndarray:
    from chunkseg.ops.normalize import scale_to_uint8
    from chunkseg.ops.robust_range import robust_range

    low, high = robust_range(raw)
    return scale_to_uint8(raw, low, high)


def real_volumes(name: str) -> list[dict]:
    """The real volumes of source ``name``: raw (native dtype), labels, mask, voxel size."""
    import tifffile

    from chunkseg.ops.boundaries import membrane_mask

    files = ([(REAL / "ovule_raw.tif", REAL / "ovule_labels.tif")] if name == "ovule" else
             [(REAL / "organoid" / f"organoid_t{t}_raw.tif",
               REAL / "organoid" / f"organoid_t{t}_labels.tif") for t in range(1, 6)])
    out = []
    for raw_f, lab_f in files:
        if not raw_f.exists():
            raise FileNotFoundError(f"{raw_f}: shared real data absent")
        labels = tifffile.imread(lab_f)
        out.append({"name": raw_f.name.replace("_raw.tif", ""), "raw": tifffile.imread(raw_f),
                    "labels": labels, "mask": membrane_mask(labels),
                    "voxel_size": VOXEL[name], "labels_from": LABELS_FROM[name]})
    return out


def synthetic_volumes(n: int, start: int = 0) -> list[dict]:
    """Wide synthetic volumes ``start .. start + n - 1`` (raw uint16, labels, mask)."""
    from chunkseg.synth import SynthParams
    from chunkseg.synth.wide import WideParams, wide_block

    out = []
    for i in range(start, start + n):
        base, wide = synth_params(i)
        v = wide_block(SynthParams(shape=SYNTH_SHAPE, **base), WideParams(**wide))
        out.append({"name": f"synth{i:02d}", "raw": v["raw"], "labels": v["labels"],
                    "mask": v["mask"], "voxel_size": base["voxel_size"],
                    "params": {**base, **wide}, "labels_from": LABELS_FROM["synthetic"]})
    return out


def tissue_renders() -> list[dict]:
    """Membrane images rendered from the real cell geometry of ``tissue_labels.tif``."""
    from chunkseg.ops.boundaries import membrane_mask
    from chunkseg.synth.wide import render_from_labels

    full = _tissue_labels()
    if full is None:
        return []
    out = []
    for k, (step, opts) in enumerate([
        ((2, 2, 2), {"cytoplasm": 0.15, "nucleus_photons": 0.0, "illumination": 0.3}),
        ((1, 3, 3), {"cytoplasm": 4.0, "nucleus_photons": 300.0, "psf_sigma": (3.0, 1.2, 1.2),
                     "stripes": 0.4, "membrane_photons": 60.0}),
        ((2, 2, 2), {"cytoplasm": 1.0, "nucleus_photons": 150.0, "cell_contrast": 0.9,
                     "illumination": 0.6, "offset": 0.0}),
    ]):
        labels = np.ascontiguousarray(full[::step[0], ::step[1], ::step[2]])
        raw = render_from_labels(labels, seed=k, voxel_size=step, **opts)
        out.append({"name": f"tissue_render{k}", "raw": raw, "labels": labels,
                    "mask": membrane_mask(labels), "voxel_size": step, "params": opts,
                    "labels_from": "real cell geometry (tissue_labels.tif), rendered image"})
    return out


BROAD_RENDERS = [  # (step, lateral crop, render options in voxels of the stepped grid)
    ((2, 1, 1), (slice(0, 256), slice(0, 256)),
     {"psf": (1.5, 2.0, 2.0), "cytoplasm": 0.15, "nucleus_photons": 0.0}),
    ((3, 1, 1), (slice(70, 326), slice(300, 556)),
     {"psf": (1.0, 3.5, 3.5), "cytoplasm": 0.3, "nucleus_photons": 100.0}),
    ((2, 1, 1), (slice(70, 326), slice(300, 556)),
     {"psf": (2.0, 4.5, 4.5), "cytoplasm": 1.0, "cell_contrast": 0.8, "stripes": 0.3}),
    ((3, 1, 1), (slice(0, 256), slice(0, 256)),
     {"psf": (1.5, 2.5, 2.5), "cytoplasm": 0.05, "illumination": 0.6,
      "membrane_photons": 80.0}),
]


@functools.lru_cache(maxsize=1)
def _tissue_labels() -> np.ndarray | None:
    """``tissue_labels.tif`` (real cell geometry), read once; None where the shared data is
    absent.  Read-only: every render takes a copy of its slices."""
    import tifffile

    f = REAL / "tissue_labels.tif"
    if not f.exists():
        return None
    full = tifffile.imread(f)
    full.flags.writeable = False
    return full


def _render(labels: np.ndarray, step, opts: dict, seed: int) -> np.ndarray:
    """:func:`render_from_labels` with ``opts["psf"]`` given in voxels of the stepped grid."""
    from chunkseg.synth.wide import render_from_labels

    psf = tuple(s * v for s, v in zip(opts["psf"], step))
    return render_from_labels(labels, seed=seed, voxel_size=step, psf_sigma=psf,
                              **{k: v for k, v in opts.items() if k != "psf"})


def broad_renders() -> list[dict]:
    """Renders of ``tissue_labels.tif`` with walls blurred over 2-4.5 lateral voxels
    (confocal plant walls: a broad bright band around a thin interface), anisotropy 2-3."""
    full = _tissue_labels()
    if full is None:
        return []
    out = []
    for k, (step, (ys, xs), opts) in enumerate(BROAD_RENDERS):
        labels = np.ascontiguousarray(full[::step[0], ys, xs][:, ::step[1], ::step[2]])
        out.append({"name": f"broad_render{k}", "raw": _render(labels, step, opts, 10 + k),
                    "labels": labels, "mask": training_mask(labels, step), "voxel_size": step,
                    "params": opts, "labels_from": "real cell geometry "
                    "(tissue_labels.tif), rendered image"})
    return out


LIGHTSHEET_RENDERS = [  # (z step, z offset, lateral crop, render options in stepped voxels)
    (5, 0, (slice(0, 256), slice(0, 256)),
     {"psf": (1.0, 1.5, 1.5), "cytoplasm": 0.1, "nucleus_photons": 0.0, "haze_photons": 2.0}),
    (6, 2, (slice(70, 326), slice(300, 556)),
     {"psf": (1.2, 2.0, 2.0), "cytoplasm": 0.3, "haze_photons": 5.0, "illumination": 0.5}),
    (5, 3, (slice(40, 296), slice(150, 406)),
     {"psf": (0.8, 1.2, 1.2), "cytoplasm": 0.05, "cell_contrast": 0.8, "haze_photons": 1.0}),
    (6, 0, (slice(0, 256), slice(300, 556)),
     {"psf": (1.5, 2.5, 2.5), "cytoplasm": 0.5, "nucleus_photons": 100.0, "haze_photons": 3.0,
      "stripes": 0.3}),
]


def object_labels(labels: np.ndarray, axes=(0.46, 0.42, 0.42)) -> np.ndarray:
    """``labels`` with every voxel outside the centred ellipsoid of semi-axes ``axes`` (as
    fractions of the shape) set to 0: a cell cluster in empty space, caps included."""
    grid = np.ogrid[tuple(slice(0, n) for n in labels.shape)]
    r2 = sum(((g + 0.5 - n / 2) / (a * n)) ** 2 for g, n, a in zip(grid, labels.shape, axes))
    return np.where(r2 <= 1.0, labels, 0).astype(labels.dtype, copy=False)


def lightsheet_renders(only: list[int] | None = None) -> list[dict]:
    """Light-sheet-like renders of ``tissue_labels.tif`` (those of :data:`LIGHTSHEET_RENDERS`,
    or its entries ``only``): every 5th or 6th slice (z spacing 5-6 × lateral), a cluster of
    cells in an ellipsoid with only haze and noise around it (no offset), and the truth
    :func:`membrane_mask` of the stepped labels, which marks the whole band a wall oblique to
    the slices covers (the mask every score uses)."""
    from chunkseg.ops.boundaries import membrane_mask

    full = _tissue_labels()
    if full is None:
        return []
    out = []
    for k, (dz, z0, (ys, xs), opts) in enumerate(LIGHTSHEET_RENDERS):
        if only is not None and k not in only:
            continue
        step = (dz, 1, 1)
        labels = object_labels(np.ascontiguousarray(full[z0::dz, ys, xs]))
        out.append({"name": f"lightsheet_render{k}",
                    "raw": _render(labels, step, {**opts, "offset": 0.0}, 20 + k),
                    "labels": labels, "mask": membrane_mask(labels), "voxel_size": step,
                    "params": opts, "labels_from": "real cell geometry "
                    "(tissue_labels.tif), rendered image"})
    return out


def _check_mask_kind(work: Path, mask: str) -> None:
    """Refuse a cache built with the other mask kind (recorded in ``<work>/data/MASK``;
    a cache without the record holds ``thick`` masks)."""
    rec = work / "data" / "MASK"
    found = rec.read_text().strip() if rec.exists() else (
        "thick" if (work / "data").exists() else None)
    if found is None:
        rec.parent.mkdir(parents=True, exist_ok=True)
        rec.write_text(mask + "\n")
    elif found != mask:
        raise SystemExit(f"{work / 'data'}: cached masks are '{found}', expected '{mask}': "
                         "give this run a --work of its own")


def open_cached(work: Path, name: str, names: list[str]) -> list[tuple[Any, Any]] | None:
    import zarr

    dirs = [work / "data" / name / n for n in names]
    if not all((d / "raw.zarr").exists() and (d / "mask.zarr").exists() for d in dirs):
        return None
    return [(zarr.open_array(str(d / "raw.zarr"), mode="r"),
             zarr.open_array(str(d / "mask.zarr"), mode="r")) for d in dirs]


def source_pairs(work: Path, name: str, volumes: list[dict],
                 mask: str = "thick") -> list[tuple[Any, Any]]:
    """uint8-scaled raw and mask of ``volumes`` as cached zarr arrays under ``work``
    (``mask="aniso"`` / ``"aniso-ignore"``: :func:`training_mask` instead of the volume's
    own mask; ``"network-ignore"``: ``"aniso-ignore"`` for the sources whose labels a
    network made, :data:`NETWORK_LABELS`, the volume's own mask for the others)."""
    own = mask == "thick" or (mask == "network-ignore" and name not in NETWORK_LABELS)
    pairs = []
    for v in volumes:
        m = (v["mask"] if own else training_mask(
            v["labels"], v["voxel_size"], IGNORE if mask in IGNORING else None))
        pairs.append(_store(work / "data" / name / v["name"], _scaled(v["raw"]),
                            m.astype(np.uint8)))
    return pairs


def validation_pairs(work: Path, n_synth: int = 16, mask: str = "thick"
                     ) -> list[tuple[Any, Any]]:
    """Two wide synthetic volumes after the training ones (validation loss only)."""
    names = [f"synth{n_synth + i:02d}" for i in (0, 1)]
    _check_mask_kind(work, mask)
    return open_cached(work, "validation", names) or source_pairs(
        work, "validation", synthetic_volumes(2, start=n_synth), mask)


def source_names(n_synth: int = 16, broad: bool = False, lightsheet: bool = False
                 ) -> dict[str, list[str]]:
    """Volume names of every source, in the order of :func:`build_sources`."""
    return {"ovule": ["ovule"], "organoid": [f"organoid_t{t}" for t in range(1, 6)],
            "synthetic": [f"synth{i:02d}" for i in range(n_synth)]
            + [f"tissue_render{k}" for k in range(3)]
            + ([f"broad_render{k}" for k in range(len(BROAD_RENDERS))] if broad else [])
            + ([f"lightsheet_render{k}" for k in range(len(LIGHTSHEET_RENDERS))]
               if lightsheet else [])}


def build_sources(work: Path, n_synth: int = 16, mask: str = "thick", broad: bool = False,
                  lightsheet: bool = False) -> dict[str, list[tuple[Any, Any]]]:
    """Training pairs of every source: ``{"ovule", "organoid", "synthetic"}`` (cached);
    ``broad`` adds :func:`broad_renders`, ``lightsheet`` :func:`lightsheet_renders` to the
    synthetic source."""
    names = source_names(n_synth, broad, lightsheet)
    _check_mask_kind(work, mask)
    make = {"ovule": lambda: real_volumes("ovule"), "organoid": lambda: real_volumes("organoid"),
            "synthetic": lambda: synthetic_volumes(n_synth) + tissue_renders()
            + (broad_renders() if broad else []) + (lightsheet_renders() if lightsheet else [])}
    return {src: open_cached(work, src, names[src]) or source_pairs(work, src, make[src](), mask)
            for src in names}
