"""``fieldlabel flush``: start a batch of whatever is pending now, instead of waiting for the size or age trigger."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import ClientError
from fieldlabel.common.clock import utc_now
from fieldlabel.intake.dispatch import pending_stats
from fieldlabel.intake.settings import AL_MIN_OBJECTS

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, CliError, UsageError
from fieldlabel_cli.flush import INVOKE_READ_TIMEOUT, invoke_dispatcher
from fieldlabel_cli.status import human_age, table_error

HELP = "start a labeling batch now with the photos pending"
DESCRIPTION = f"""\
Start a labeling batch now with every pending photo, without waiting for the batch size
or the maximum wait. Runs the dispatcher once (synchronously) with a forced decision.

Below {AL_MIN_OBJECTS:,} photos, Ground Truth's minimum for automated labeling, the batch is
labeled entirely by the taxonomists (human_only); flush asks before starting such a batch."""

EPILOG = """\
examples:
  fieldlabel flush                 # asks when the batch would be human-only
  fieldlabel flush --yes --json    # scripts: no question"""


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``flush`` subcommand."""
    p = subparsers.add_parser("flush", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    g = p.add_argument_group("resources (default: from the Storage and Pipeline stack outputs)")
    g.add_argument("--dispatch-function", metavar="NAME", help="dispatcher function (output DispatchFunctionName)")
    g.add_argument("--photos-table", metavar="NAME", help="photos table (output PhotosTableName)")
    p.set_defaults(handler=handle)


def _confirm(ctx: AppContext, question: str) -> bool:
    if not getattr(ctx.stdin, "isatty", lambda: False)():
        raise UsageError("refusing to start a human-only batch without confirmation: not an interactive terminal; "
                         "pass --yes")
    ctx.stderr.write(f"{question} [y/N] ")
    ctx.stderr.flush()
    return ctx.stdin.readline().strip().lower() in ("y", "yes")


def _render(result: dict[str, Any]) -> str:
    lines = []
    for b in result["batches"]:
        lines.append(f"Started batch {b['batch_id']}: {b['photo_count']:,} photo(s), {b['kind']}")
    for r in result.get("recovered") or []:
        lines.append(f"Also restarted stalled batch {r}")
    if result.get("pending_after"):
        lines.append(f"Still pending: {result['pending_after']:,} (over the dispatcher's maximum batch size; "
                     "flush again or let the schedule take them)")
    return "\n".join(lines)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``flush``."""
    photos_table = ctx.resolver.get("PhotosTableName")
    function_name = ctx.resolver.get("DispatchFunctionName")
    try:
        stats = pending_stats(ctx.client("dynamodb"), photos_table, utc_now())
    except ClientError as exc:
        raise table_error(exc, photos_table, "--photos-table") from exc
    if stats.count == 0:
        ctx.emit({"started": False, "pending": 0, "batches": []}, "Nothing is pending: no batch started.")
        return EXIT_OK
    ctx.info(f"{stats.count:,} photo(s) pending, oldest {human_age(stats.oldest_age_seconds)} old.")
    if stats.count < AL_MIN_OBJECTS and not args.yes:
        question = (f"{stats.count:,} photo(s) is below the {AL_MIN_OBJECTS:,} needed for automated labeling: "
                    "the taxonomists will label every photo of this batch. Start it now?")
        if not _confirm(ctx, question):
            ctx.info("Nothing started.")
            ctx.emit({"started": False, "pending": stats.count, "batches": []}, "")
            return EXIT_OK
    result = invoke_dispatcher(ctx.client("lambda", read_timeout=INVOKE_READ_TIMEOUT), function_name)
    if not result.get("lease"):
        raise CliError("the dispatcher is already running (it holds its lease); wait a minute and run "
                       "`fieldlabel status`, then flush again if photos are still pending")
    if not result["batches"]:
        raise CliError(f"the dispatcher started no batch ({result.get('decision') or 'no decision'}); "
                       "see `fieldlabel status`")
    ctx.emit({"started": True, "pending": stats.count, **result}, lambda: _render(result))
    return EXIT_OK
