"""``fieldlabel resume BATCH_ID``: restart a parked batch's workflow at the step that failed."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import ClientError
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.labeling.failure import PARK_STEPS
from fieldlabel.labeling.lifecycle import NotResumableError, request_resume

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import EXIT_OK, CliError, translate_aws_error
from fieldlabel_cli.status import table_error, validate_batch_id

HELP = "restart a parked batch at the step that failed"
DESCRIPTION = """\
Restart a parked batch. A batch is parked when a step after its labeling job failed
(recording the labels, the expert review, or publishing) and the retries did not help:
the job's labels are paid for, so they are kept and nothing goes back to the pool.
`fieldlabel status` lists parked batches with the step and the reason.

Fix the cause first (the reason names it), then resume: a new execution of the labeling
workflow, batch-<BATCH_ID>-resume-<n>, starts at the parked step (or --from STEP) and
finishes the batch. Nothing is labeled again; an existing review job is adopted."""

EPILOG = """\
examples:
  fieldlabel resume b20261126t063000z-1a2b3c4d
  fieldlabel resume b20261126t063000z-1a2b3c4d --from review --json"""


def register(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``resume`` subcommand."""
    p = subparsers.add_parser("resume", help=HELP, description=DESCRIPTION, epilog=EPILOG, parents=parents,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("batch_id", metavar="BATCH_ID", help="the parked batch (see `fieldlabel status`)")
    p.add_argument("--from", dest="step", choices=PARK_STEPS,
                   help="resume at this step instead of the one it parked at (record runs again idempotently)")
    g = p.add_argument_group("resources (default: from the Storage and Pipeline stack outputs)")
    g.add_argument("--batches-table", metavar="NAME", help="batches table (output BatchesTableName)")
    g.add_argument("--state-machine", metavar="ARN", help="labeling workflow (output StateMachineArn)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, ctx: AppContext) -> int:
    """Run ``resume``."""
    batch_id = validate_batch_id(args.batch_id)
    batches_table = ctx.resolver.get("BatchesTableName")
    state_machine = ctx.resolver.get("StateMachineArn")
    ddb = ctx.client("dynamodb")
    try:
        started = request_resume(ddb, ctx.client("stepfunctions"), batches_table=batches_table,
                                 state_machine_arn=state_machine, batch_id=batch_id, step=args.step,
                                 now_iso=iso(utc_now()))
    except NotResumableError as exc:
        raise CliError(str(exc)) from exc
    except ClientError as exc:
        if getattr(exc, "operation_name", "") == "StartExecution":
            raise translate_aws_error(exc, what=f"state machine {state_machine!r}") from exc
        raise table_error(exc, batches_table, "--batches-table") from exc
    ctx.emit(started, lambda: (f"Resumed batch {batch_id} at {started['step']}: execution "
                               f"{started['execution_name']}\n(parked because: "
                               f"{started.get('parked_because') or 'no reason recorded'}); "
                               "follow it with `fieldlabel status`"))
    return EXIT_OK
