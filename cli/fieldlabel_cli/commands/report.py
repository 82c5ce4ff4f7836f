"""``fieldlabel report``: per batch and over time, photos, human vs machine, audit accuracy, cost and savings."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from fieldlabel.costs import cost_settings
from pydantic import ValidationError

from fieldlabel_cli.commands.cost import load_cost_config
from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, CliError, UsageError
from fieldlabel_cli.report import (
    add_costs,
    by_month,
    failed_in,
    load_rows,
    render_batch,
    render_table,
    summarize,
    write_chart,
)
from fieldlabel_cli.status import get_batch, iter_batches, table_error, validate_batch_id

HELP = "report photos, automation, audit accuracy, estimated cost and savings per batch and over time"
DESCRIPTION = """\
Report every published batch: photos, how many the taxonomists and the machine labeled,
the machine-label accuracy measured by expert review (audit), and the estimated cost
against sending every photo to the taxonomists. Costs are the estimate recorded with
each dataset version at publish time; --config recomputes them all with your prices.
Estimates only: see docs/costs.md for the prices and which are unconfirmed."""

EPILOG = """\
examples:
  fieldlabel report
  fieldlabel report --by month --since 2026-01-01
  fieldlabel report --batch b20261126t063000z-1a2b3c4d
  fieldlabel report --chart automation.png
  fieldlabel report --config my-prices.json --json"""


def _date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser("report", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", metavar="BATCH_ID", help="one batch in detail, with the cost's line items")
    p.add_argument("--by", choices=("batch", "month"), default="batch", help="one row per batch (default) or month")
    p.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="batches published on or after this day")
    p.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="batches published on or before this day")
    p.add_argument("--chart", type=Path, metavar="FILE.png",
                   help="also draw automation share, audit accuracy and cost per photo per batch (needs matplotlib)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help='recompute costs with these prices: {"prices": {...}, "assumptions": {...}} (as `cost`)')
    g = p.add_argument_group("registry (default: from the Storage stack outputs)")
    g.add_argument("--batches-table", metavar="NAME", help="batches table (output BatchesTableName)")
    p.set_defaults(handler=handle)


def _load_config(path: Path | None) -> dict[str, Any] | None:
    return load_cost_config(path) if path is not None else None


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``report``."""
    batch_id = validate_batch_id(args.batch) if args.batch else None
    if args.since and args.until and args.since > args.until:
        raise UsageError(f"--since {args.since} is after --until {args.until}")
    if args.chart is not None and args.chart.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"--chart: use a .png, .svg or .pdf file name, not {args.chart.name!r}")
    config = _load_config(args.config)
    try:
        prices, assumptions = cost_settings(config)
    except (ValidationError, ValueError) as exc:
        raise UsageError(f"config file {args.config}: {exc}".splitlines()[0]) from None
    batches_table = ctx.resolver.get("BatchesTableName")
    ddb = ctx.client("dynamodb")
    try:
        if batch_id is not None and get_batch(ddb, batches_table, batch_id) is None:
            raise CliError(f"unknown batch {batch_id!r}: not in table {batches_table!r} (see `fieldlabel report`)")
        batches = list(iter_batches(ddb, batches_table))
    except ClientError as exc:
        raise table_error(exc, batches_table, "--batches-table") from exc
    # Costs need every published batch of a month in order (the per-object tiers), so filters come after.
    rows = load_rows(ddb, ctx.client("s3"), batches)
    add_costs(rows, prices, assumptions, recompute=config is not None,
              prices_from=f"--config {args.config}" if config is not None else "fieldlabel.costs defaults")

    if batch_id is not None:
        row = next((r for r in rows if r["batch_id"] == batch_id), None)
        if row is None:
            status = next(b.get("status") for b in batches if b["batch_id"] == batch_id)
            raise CliError(f"batch {batch_id} is not published (status {status}); `fieldlabel status` shows it")
        ctx.emit(row, lambda: render_batch(row))
        return EXIT_OK

    def within(day: str) -> bool:
        return (not args.since or day >= args.since) and (not args.until or day <= args.until)

    rows = [r for r in rows if within(str(r["published_at"] or "")[:10])]
    failed = [f for f in failed_in(batches) if within(str(f["failed_at"] or "")[:10])]
    total = summarize(rows)
    months = by_month(rows) if args.by == "month" else None
    if args.chart is not None:
        if not rows:
            raise CliError("nothing to chart: no batch published in the period")
        write_chart(rows, args.chart)
        ctx.info(f"Chart written to {args.chart}")
    data = {"batches": rows, "months": months if months is not None else by_month(rows), "total": total,
            "failed_batches": failed, "since": args.since, "until": args.until}

    def human() -> str:
        if not rows:
            return "No batch published" + (" in the period." if args.since or args.until else " yet.")
        text = render_table(rows, total, months=months)
        if failed:
            text += f"\n\nFailed batches in the period: {len(failed)} (latest: {failed[0]['batch_id']}: " \
                    f"{failed[0]['failure_reason']})"
        if any(r["statistics"] == "missing" for r in rows):
            text += "\n\nSome versions' statistics.json could not be read: their review figures are missing."
        return text + "\n\nCosts are estimates (docs/costs.md); `--batch ID` shows the line items."

    ctx.emit(data, human)
    return EXIT_OK

