"""Synchronous Lambda invocations from the CLI: the call, its errors, and the function's JSON answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel_cli.errors import CliError, error_code, translate_aws_error


@dataclass(frozen=True)
class Invocation:
    """A function's answer: ``body`` is its JSON (None when not JSON), ``failure`` says why it raised (None when it
    did not): its ``errorType: errorMessage`` (or the start of the payload) and where its logs are."""

    body: Any
    raw: bytes
    failure: str | None

    def excerpt(self, n: int) -> str:
        """The first ``n`` bytes of the payload, for a message about an unexpected answer."""
        return self.raw[:n].decode(errors="replace")


def invoke_sync(lambda_client: Any, function_name: str, payload: Any, *, not_found: str) -> Invocation:
    """Invoke ``function_name`` with ``payload`` (RequestResponse) and read its answer.

    Raises:
        CliError: ``not_found`` when the function does not exist; the translated error when it cannot be invoked.
    """
    try:
        resp = lambda_client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                    Payload=json.dumps(payload).encode())
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise CliError(not_found) from exc
        raise translate_aws_error(exc, what=f"function {function_name!r}") from exc
    raw = resp["Payload"].read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    failure = None
    if resp.get("FunctionError"):
        detail = ""
        if isinstance(body, dict):
            detail = f"{body.get('errorType', 'Error')}: {body.get('errorMessage', '')}".strip(": ")
        failure = f"{detail or raw[:300].decode(errors='replace')} (see its logs: /aws/lambda/{function_name})"
    return Invocation(body, raw, failure)
