"""The deployment's Label Studio server, when it has one: its URL and API token, and taxonomist accounts in it.

A deployment with ``labeling.backend: label_studio`` has the outputs ``LabelStudioUrl`` and
``LabelStudioTokenSecretArn`` (the admin's API token in Secrets Manager); a Ground Truth deployment has neither, and
then nothing here calls anything. ``FIELDLABEL_LABEL_STUDIO_TOKEN`` overrides the secret (the local demo's server).
"""

from __future__ import annotations

import json
import os
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fieldlabel.labeling.label_studio.client import LabelStudioApiError, LabelStudioClient, LabelStudioError

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import CliError, translate_aws_error

TOKEN_ENV = "FIELDLABEL_LABEL_STUDIO_TOKEN"


def _token_from_secret(ctx: AppContext, secret_id: str) -> str:
    """The token in the secret: the plain secret string, or its ``token`` field when it is a JSON object."""
    try:
        value = ctx.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError) as exc:
        raise translate_aws_error(exc, what=f"secret {secret_id!r}") from exc
    try:
        doc = json.loads(value)
    except ValueError:
        return str(value).strip()
    if isinstance(doc, dict):
        token = doc.get("token")
        if not isinstance(token, str) or not token:
            raise CliError(f"secret {secret_id!r} is a JSON object without a 'token' string")
        return token
    return str(value).strip()


def label_studio_client(ctx: AppContext) -> LabelStudioClient | None:
    """The client of the deployment's Label Studio server, or None when the deployment has none."""
    url = ctx.resolver.find("LabelStudioUrl")
    if not url:
        return None
    token = os.environ.get(TOKEN_ENV) or _token_from_secret(ctx, ctx.resolver.get("LabelStudioTokenSecretArn"))
    try:
        return LabelStudioClient(url, token)
    except ValueError as exc:
        raise CliError(f"Label Studio: {exc}") from None


def ensure_account(client: LabelStudioClient, email: str, name: str | None) -> dict[str, Any]:
    """Create the Label Studio account of ``email`` unless it exists; returns ``{"url", "user_id", "created"}``.

    Raises:
        CliError: the server refused or could not be reached (the message names it).
    """
    first, _, last = (name or "").strip().partition(" ")
    try:
        existing = client.find_user(email)
        user = existing or client.ensure_user(email, first, last.strip())
    except LabelStudioError as exc:
        hint = ""
        if isinstance(exc, LabelStudioApiError) and 300 <= exc.status < 400:
            hint = ("; run the command where the API answers a token (inside the VPC, or through a tunnel to the "
                    "internal load balancer) and pass --label-studio-url")
        raise CliError(f"Label Studio account for {email} not created (the Cognito user is; running `add` again is "
                       f"safe): {exc}{hint}") from None
    return {"url": client.base_url, "user_id": user.get("id"), "created": existing is None}
