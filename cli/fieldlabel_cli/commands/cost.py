"""``fieldlabel cost``: estimate what labeling a batch costs, against sending every photo to the taxonomists.

Pure arithmetic over :mod:`fieldlabel.costs` (no AWS call). Prices and assumptions can be overridden from a JSON
file: ``{"prices": {"taxonomist_hour": {"usd": 42}}, "assumptions": {"seconds_per_task": 15}}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fieldlabel.costs import BatchUsage, CostEstimate, estimate_batch_cost, load_assumptions, load_price_book
from pydantic import ValidationError

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, UsageError

HELP = "estimate a batch's labeling cost and the saving from automated labeling"
DESCRIPTION = """\
Estimate what labeling a batch costs: Ground Truth per-object fees (monthly tiers), automated-labeling
training and batch transform, the taxonomists' time, Lambda, Step Functions and S3; and what it would
cost if every photo went to humans. Prices marked * could not be confirmed on an AWS page (docs/costs.md)."""

EPILOG = """\
examples:
  fieldlabel cost --photos 5000 --machine-share 0.6
  fieldlabel cost --photos 2000 --machine-labeled 1300 --earlier-this-month 49000 --json
  fieldlabel cost --photos 800 --human-only --config my-prices.json"""


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``cost`` subcommand."""
    p = subparsers.add_parser("cost", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, required=True, help="photos in the batch")
    share = p.add_mutually_exclusive_group()
    share.add_argument("--machine-share", type=float, help="expected share labeled by the machine (0-1)")
    share.add_argument("--machine-labeled", type=int, help="actual machine-labeled count (LabelCounters)")
    share.add_argument("--human-only", action="store_true", help="a batch too small for automated labeling")
    p.add_argument("--iterations", type=int, help="active-learning rounds, if known")
    p.add_argument("--earlier-this-month", type=int, default=0, metavar="N",
                   help="objects already labeled this month (for the per-object tiers)")
    p.add_argument("--reviewed", type=int, default=0, metavar="N", help="objects sent to expert review")
    p.add_argument("--engine", choices=("groundtruth", "model"), default="groundtruth",
                   help="labeling.engine: groundtruth (automated labeling inside the job) or model (the own engine: "
                        "machine labels pay no per-object fee and no active-learning compute)")
    p.add_argument("--backend", choices=("groundtruth", "label_studio"), default="groundtruth",
                   help="labeling.backend: label_studio pays no Ground Truth per-object fee")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help='JSON overrides: {"prices": {...}, "assumptions": {...}}')
    p.set_defaults(handler=handle)


def load_cost_config(path: Path | None) -> dict[str, Any]:
    """A ``--config`` file of cost overrides: an object with ``prices`` and/or ``assumptions`` (docs/costs.md).

    Raises:
        UsageError: the file is missing, not JSON, or not of that shape.
    """
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not set(data) <= {"prices", "assumptions"}:
        raise UsageError(f"config file {path}: expected an object with keys 'prices' and/or 'assumptions'")
    return data


def _load_overrides(path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    data = load_cost_config(path)
    return data.get("prices", {}), data.get("assumptions", {})


def render(est: CostEstimate) -> str:
    """Human rendering of an estimate."""
    lines = [f"Batch of {est.photos} photos: {est.human_labeled} by taxonomists, {est.machine_labeled} by the "
             f"machine, {est.iterations} active-learning round(s)", ""]
    width = max(len(i.description) for i in est.line_items)
    for i in est.line_items:
        mark = "" if i.confirmed else "*"
        lines.append(f"  {i.description.ljust(width)}  {i.quantity:>12,.2f} {i.unit:<24} ${i.usd:>10,.2f}{mark}")
    lines += [
        "",
        f"  {'total'.ljust(width)}  {'':>12} {'':<24} ${est.total_usd:>10,.2f}",
        f"  {'all photos to humans'.ljust(width)}  {'':>12} {'':<24} ${est.all_human_total_usd:>10,.2f}",
        f"  {'saving'.ljust(width)}  {'':>12} {'':<24} ${est.savings_usd:>10,.2f} ({est.savings_share:.1%})",
    ]
    if est.unconfirmed_prices:
        lines.append("\n* price not confirmed on an AWS page, or an assumption: see docs/costs.md")
    return "\n".join(lines)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``cost``."""
    price_overrides, assumption_overrides = _load_overrides(args.config)
    try:
        prices = load_price_book(price_overrides)
        assumptions = load_assumptions(assumption_overrides)
        usage = BatchUsage(
            photos=args.photos, automated=not args.human_only, machine_share=args.machine_share,
            machine_labeled=args.machine_labeled, iterations=args.iterations,
            objects_labeled_earlier_this_month=args.earlier_this_month, reviewed_objects=args.reviewed,
            engine=args.engine, backend=args.backend,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems) from None
    estimate = estimate_batch_cost(usage, prices, assumptions)
    ctx.emit(estimate.model_dump(), lambda: render(estimate))
    return EXIT_OK
