"""Forcing a batch now: invoke the dispatcher synchronously with ``{"trigger": "flush", "force": true}``.

The dispatcher (lambdas/dispatch/handler.py, ``fieldlabel.intake.dispatch.decide(force=True)``) then claims whatever
is pending as one batch (up to its ``MAX_BATCH_SIZE``), ``automated`` from 1,250 photos on and ``human_only`` below.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel_cli.errors import CliError, error_code, translate_aws_error

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
    try:
        resp = lambda_client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                    Payload=json.dumps(FLUSH_PAYLOAD).encode())
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise CliError(f"dispatch function {function_name!r} not found (check --dispatch-function, --outputs, "
                           "--stack-prefix and --region)") from exc
        raise translate_aws_error(exc, what=f"function {function_name!r}") from exc
    raw = resp["Payload"].read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if resp.get("FunctionError"):
        detail = ""
        if isinstance(body, dict):
            detail = f"{body.get('errorType', 'Error')}: {body.get('errorMessage', '')}".strip(": ")
        raise CliError(f"the dispatcher failed: {detail or raw[:300].decode(errors='replace')} "
                       f"(see its logs: /aws/lambda/{function_name})")
    if not isinstance(body, dict) or "batches" not in body:
        raise CliError(f"the dispatcher answered something unexpected: {raw[:300].decode(errors='replace')}")
    return body
