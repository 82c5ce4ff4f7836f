"""Forcing a batch now: invoke the dispatcher synchronously with ``{"trigger": "flush", "force": true}``.

The dispatcher (lambdas/dispatch/handler.py, ``fieldlabel.intake.dispatch.decide(force=True)``) then claims whatever
is pending as one batch (up to its ``MAX_BATCH_SIZE``), ``automated`` from 1,250 photos on and ``human_only`` below.
"""

from __future__ import annotations

from typing import Any

from fieldlabel_cli.errors import CliError
from fieldlabel_cli.invoke import invoke_sync

FLUSH_PAYLOAD = {"trigger": "flush", "force": True}
# The dispatcher's own timeout (docs/intake.md wiring notes): claiming 100,000 photos may take minutes.
INVOKE_READ_TIMEOUT = 900


def invoke_dispatcher(lambda_client: Any, function_name: str) -> dict[str, Any]:
    """Run the dispatcher once, forced, and return its summary.

    Returns:
        The handler's summary: ``{"lease", "trigger", "forced", "decision", "batches", "recovered",
        "photos_claimed", "pending_after"}``.

    Raises:
        CliError: the function does not exist, could not be invoked, or failed (its error message is shown).
    """
    answer = invoke_sync(lambda_client, function_name, FLUSH_PAYLOAD,
                         not_found=f"dispatch function {function_name!r} not found (check --dispatch-function, "
                                   "--outputs, --stack-prefix and --region)")
    if answer.failure is not None:
        raise CliError(f"the dispatcher failed: {answer.failure}")
    body = answer.body
    if not isinstance(body, dict) or "batches" not in body:
        raise CliError(f"the dispatcher answered something unexpected: {answer.excerpt(300)}")
    return body
