"""``chunkseg evaluate``."""

from __future__ import annotations

import argparse
import json

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = sub.add_parser(
        "evaluate",
        help="score a membrane probability against truth: threshold sweep, ECDF, distance "
        "heat map, boundary-tolerant scores (report.json, PNG figures, report.html)",
        description="Evaluate a membrane probability volume against a membrane mask (or a "
        "mask derived from cell instance labels), out of core in one streaming pass: "
        "TP/FP/FN/TN at every threshold (membrane: p >= t), IoU, Dice/F1, accuracy, "
        "precision, recall and the best thresholds; the ECDF of the probability; a heat map "
        "of probability versus distance (µm) to the nearest true membrane voxel; precision "
        "and recall within a 1-voxel tolerance. Per time point and overall.",
    )
    p.add_argument("input", metavar="PROB", help="membrane probability (OME-Zarr, Zarr or "
                   "TIFF; float in [0, 1] or uint8 = v/255)")
    p.add_argument("--truth", metavar="MASK", help="true membrane mask (0/1), zarr or TIFF")
    p.add_argument("--labels", metavar="INSTANCES", help="true cell instance labels: the "
                   "truth mask is derived from them when --truth is not given, and they are "
                   "the truth of the instance metrics of --cells")
    p.add_argument("--cells", metavar="CELLS", help="predicted cell labels (chunkseg segment): "
                   "adds instance metrics against --labels")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--timepoints", metavar="A:B", help="score only time points A..B-1")
    p.add_argument("--thresholds", type=int, default=101,
                   help="number of thresholds evenly spaced over [0, 1] (default 101)")
    p.add_argument("--max-distance", type=float, metavar="D",
                   help="heat-map distance cap in µm (default 20 finest voxels); distances "
                   "up to D are exact")
    p.add_argument("--dist-bin", type=float, metavar="W",
                   help="heat-map distance bin width in µm (default the finest voxel size)")
    p.add_argument("--tolerance", type=int, default=1,
                   help="boundary tolerance in voxels (default 1)")
    p.add_argument("--connectivity", type=int, default=3, choices=(1, 2, 3),
                   help="tolerance neighbourhood: 1 = faces, 3 = 3x3x3 cube (default)")
    p.add_argument("--membrane-width", type=int, default=1,
                   help="membrane half-width when deriving the mask from --labels (default 1)")
    p.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size in µm (default: from the stores)")
    p.add_argument("--block", nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="processing block (default: the probability's storage chunks); the "
                   "result does not depend on it")
    p.add_argument("--history", metavar="HISTORY.json",
                   help="training history (chunkseg train) to add the training curves")
    p.add_argument("--no-figures", action="store_true", help="write report.json only")
    add_scheduler_option(p)
    add_output_options(p, chunks=False, resume=False, pyramid=False)
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.evaluate import run_evaluate

    with cluster(args) as client:
        rep = run_evaluate(
            args.input, out=args.out, truth=args.truth, labels=args.labels, cells=args.cells,
            timepoints=args.timepoints, thresholds=args.thresholds,
            max_distance=args.max_distance, dist_bin=args.dist_bin, tolerance=args.tolerance,
            connectivity=args.connectivity, membrane_width=args.membrane_width,
            voxel_size=args.voxel_size, block=args.block, history=args.history,
            figures=not args.no_figures,
            overwrite=args.overwrite, client=client,
        )
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    o = rep["overall"]
    b = o["boundary"]["best_f1"]
    print(f"{args.out}: {o['voxels']} voxels, {100 * (o['membrane_fraction'] or 0):.2f}% "
          f"membrane; best IoU {o['best']['iou']['value']} at t = "
          f"{o['best']['iou']['threshold']}, best F1 {o['best']['dice']['value']} at t = "
          f"{o['best']['dice']['threshold']}; F1 within {o['boundary']['tolerance_voxels']} "
          f"voxel {b['value']} at t = {b['threshold']}")
    if "html" in rep.get("figures", {}):
        print(f"report: {args.out}/report.html")
    return 0
