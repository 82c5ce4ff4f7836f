"""``fieldlabel status``: the pending pool, running batches and their jobs, and the last failures."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import ClientError
from fieldlabel.common.clock import utc_now

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, UsageError
from fieldlabel_cli.status import describe_jobs, gather_status, registry_options, render_status, table_error

HELP = "show pending photos, running batches and their jobs, and recent failures"
DESCRIPTION = """\
Show what the pipeline is doing: photos waiting for a batch (and the oldest), photos in
batches, parked and quarantined; batches on their way with their labeling or review job;
the most recent failed batches with their reason; the dispatcher's lease and the
active-learning model the next automated job starts from. Reads the registry only."""

EPILOG = """\
examples:
  fieldlabel status
  fieldlabel status --jobs            # also ask SageMaker how far each running job is
  fieldlabel status --failures 20 --json"""


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``status`` subcommand."""
    p = subparsers.add_parser("status", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--failures", type=int, default=5, metavar="N", help="recent failed batches to list (default 5)")
    p.add_argument("--jobs", action="store_true",
                   help="also read each running job's progress from SageMaker (DescribeLabelingJob)")
    registry_options(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``status``."""
    if args.failures < 0:
        raise UsageError("--failures must be 0 or more")
    photos_table = ctx.resolver.get("PhotosTableName")
    batches_table = ctx.resolver.get("BatchesTableName")
    ddb = ctx.client("dynamodb")
    try:
        data = gather_status(ddb, photos_table=photos_table, batches_table=batches_table, now=utc_now(),
                             failures=args.failures)
    except ClientError as exc:
        # The photos table is read first; a missing batches table fails on the Scan.
        op = getattr(exc, "operation_name", "")
        table, option = ((photos_table, "--photos-table") if op == "Query"
                         else (batches_table, "--batches-table"))
        raise table_error(exc, table, option) from exc
    if args.jobs and data["running"]:
        describe_jobs(ctx.client("sagemaker"), data["running"])  # a job's error is shown on its row
    ctx.emit(data, lambda: render_status(data))
    return EXIT_OK
