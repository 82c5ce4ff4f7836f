"""``fieldlabel evaluate FOLDER``: how much would automation save on our photos, at what accuracy?

Replays an already-labeled folder (one sub-folder per species) through the real engine: embedding (the
deployment's ONNX models), training after each batch, the certified threshold, the random calibration slice and
the audit. Prints per batch the automation share, the certified bound, the accuracy of machine labels against the
folder's labels, and the estimated cost against sending every photo to taxonomists. No AWS call.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from fieldlabel.engine import EngineSettings
from fieldlabel.engine.classifier import near_duplicate_groups
from pydantic import ValidationError

from fieldlabel_cli.commands.cost import load_cost_config
from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, UsageError
from fieldlabel_cli.evaluate import (
    batch_rows,
    embed_photos,
    embedding_model_id,
    render_rows,
    run_orders,
    scan_labeled_folder,
    write_chart,
)

HELP = "replay a labeled folder through the engine: automation, accuracy and cost per batch"
DESCRIPTION = """\
Replay already-labeled photos (FOLDER/<species>/*.jpg) as batches through the real engine: the
photos are embedded, batch 1 goes to the taxonomists, then after each batch the model is retrained and
auto-labels what it can certify (error <= alpha with probability >= 1 - delta); the taxonomists'
answers are the folder's labels. Batches are random, and near-duplicate photos stay in one batch.
Prints per batch: machine-labeled share, certified bound, accuracy of machine labels against the
folder, and the estimated cost against human-only (docs/costs.md). Averages over --orders orders."""

EPILOG = """\
examples:
  fieldlabel evaluate ../shared/data/tree-species
  fieldlabel evaluate ./labeled --batches 8 --orders 5 --chart evaluate.png
  fieldlabel evaluate ./labeled --alpha 0.02 --exclude other --json"""


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser("evaluate", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder of photos per species")
    p.add_argument("--batches", type=int, default=6, metavar="N", help="batches to split the photos into (6)")
    p.add_argument("--orders", type=int, default=3, metavar="N", help="random orders to average over (3)")
    p.add_argument("--alpha", type=float, default=0.05, help="target error among machine labels (0.05)")
    p.add_argument("--delta", type=float, default=0.05, help="1 - confidence of the bound (0.05)")
    p.add_argument("--min-examples", type=int, default=10, metavar="N",
                   help="human-confirmed examples before a species may be auto-labeled (10)")
    p.add_argument("--calibration-fraction", type=float, default=0.03, metavar="F",
                   help="random share of each batch sent to taxonomists whatever its score (0.03)")
    p.add_argument("--audit", type=float, default=0.05, metavar="F", help="share of machine labels audited (0.05)")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME", help="skip this sub-folder")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                   help="processes embedding photos (default: cores, at most 4)")
    p.add_argument("--cache", type=Path, metavar="DIR", help="keep embeddings here for the next run")
    p.add_argument("--chart", type=Path, metavar="PATH", help="also write a PNG chart (needs matplotlib)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help='cost overrides, as for fieldlabel cost: {"prices": {...}, "assumptions": {...}}')
    p.add_argument("--backend", choices=("groundtruth", "label_studio"), default="groundtruth",
                   help="labeling.backend the costs are for (groundtruth: taxonomists' photos pay Ground Truth's "
                        "per-object fee; label_studio: no per-object fee, its standing cost is not per batch)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``evaluate``."""
    from fieldlabel.costs import load_assumptions, load_price_book

    if args.batches < 2:
        raise UsageError("--batches must be at least 2 (batch 1 always goes to the taxonomists)")
    if args.orders < 1 or args.jobs < 1:
        raise UsageError("--orders and --jobs must be at least 1")
    try:
        settings = EngineSettings(alpha=args.alpha, delta=args.delta, min_examples_per_species=args.min_examples,
                                  calibration_fraction=args.calibration_fraction)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 0 <= args.audit <= 1:
        raise UsageError("--audit must be between 0 and 1")
    cost_config = load_cost_config(args.config)
    try:
        prices = load_price_book(cost_config.get("prices", {}))
        assumptions = load_assumptions(cost_config.get("assumptions", {}))
    except ValidationError as exc:
        raise UsageError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from None
    photos, folded = scan_labeled_folder(args.folder, exclude=args.exclude)
    if len(photos) < 2 * args.batches:
        raise UsageError(f"{len(photos)} photos are too few for {args.batches} batches")
    labels = [p.label for p in photos]
    quiet = ctx.json_output
    if not quiet:
        ctx.stderr.write(f"{len(photos)} photos of {len(set(labels))} species"
                         f"{f' ({folded} byte-identical copies folded)' if folded else ''}; embedding with "
                         f"{embedding_model_id()}...\n")
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not quiet and (done == total or done % 160 == 0):
            ctx.stderr.write(f"  embedded {done}/{total}\n")

    X = embed_photos(photos, jobs=args.jobs, cache_dir=args.cache, on_progress=progress)
    embed_s = time.perf_counter() - started
    groups = near_duplicate_groups(X, settings.duplicate_cosine)
    runs = run_orders(X, labels, batches=args.batches, orders=args.orders, settings=settings,
                      audit_fraction=args.audit, groups=groups)
    rows = batch_rows(runs, prices, assumptions, backend=args.backend)
    if args.chart is not None:
        write_chart(rows, args.chart, alpha=args.alpha,
                    title=f"{args.folder.name}: engine replay ({args.orders} order(s))")
    result = {
        "folder": str(args.folder), "photos": len(photos), "species": len(set(labels)), "copies_folded": folded,
        "near_duplicate_groups": int(groups.max()) + 1, "embedding_model": embedding_model_id(),
        "settings": {"alpha": args.alpha, "delta": args.delta, "min_examples_per_species": args.min_examples,
                     "calibration_fraction": args.calibration_fraction, "audit": args.audit},
        "cost_backend": args.backend,
        "orders": args.orders,
        "batches": [{"batch": r.batch, "photos": r.photos, "auto_share": r.auto_share,
                     "certified_bound": r.certified_bound, "machine_labels": r.machine_labels,
                     "machine_accuracy": r.machine_accuracy, "held": r.held, "batches_with_auto": r.with_auto,
                     "cost_usd": r.cost_usd, "human_only_usd": r.human_only_usd} for r in rows],
        "embedding_seconds": round(embed_s, 1), "chart": str(args.chart) if args.chart else None,
    }

    def text() -> str:
        head = (f"{len(photos)} photos, {len(set(labels))} species, {result['near_duplicate_groups']} near-duplicate "
                f"groups; {args.batches} batches x {args.orders} order(s); alpha {args.alpha}, delta {args.delta}\n"
                f"machine = share labeled by the engine; bound = certified upper bound on its error (mean); "
                f"accuracy = machine labels vs the folder; held = batches whose machine labels reached "
                f"{1 - args.alpha:.0%}; cost per order on the {args.backend} backend (docs/costs.md)\n")
        return head + render_rows(rows, orders=args.orders) + (f"\nchart: {args.chart}" if args.chart else "")

    ctx.emit(result, text)
    return EXIT_OK
