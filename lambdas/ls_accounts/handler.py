"""Label Studio accounts Lambda: makes a taxonomist's Label Studio account with a one-time password.

Invoked by ``fieldlabel taxonomists add`` (``lambda:InvokeFunction``, RequestResponse), because the API is reachable
only inside the VPC (outside, the public load balancer answers with the Cognito sign-in). Event ``{"email", "name"?}``
or ``{"email", "first_name"?, "last_name"?}`` -> ``{"email", "created", "user_id", "url", "password", "warnings"}``;
``password`` is null for an existing account, which is left unchanged
(:func:`fieldlabel.labeling.label_studio.accounts.create_account`). Environment: ``LABEL_STUDIO_URL`` (the in-VPC
API address), ``LABEL_STUDIO_TOKEN_SECRET_ARN``.

Neither the event nor the answer is logged or traced: the answer carries the password, which exists only there.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.observability import logger, tracer
from fieldlabel.labeling.label_studio.accounts import account_request, create_account, token_from_secret_string
from fieldlabel.labeling.label_studio.client import LabelStudioClient


def _environment(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"environment variable {name} is not set (the stack sets it)")
    return value


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    email, first, last = account_request(event)
    url = _environment("LABEL_STUDIO_URL")
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=_environment("LABEL_STUDIO_TOKEN_SECRET_ARN"))
    client = LabelStudioClient(url, token_from_secret_string(secret.get("SecretString") or ""))
    result = create_account(client, email, first_name=first, last_name=last)
    logger.info("Label Studio account", extra={"user_id": result.user_id, "account_created": result.created})
    return result.as_dict()
