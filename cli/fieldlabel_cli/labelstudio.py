"""The deployment's Label Studio accounts: made by its ``ls_accounts`` function, or directly on a reachable server.

A deployment with ``labeling.backend: label_studio`` has the outputs ``LabelStudioUrl``,
``LabelStudioTokenSecretArn`` (the admin's API token in Secrets Manager) and ``LabelStudioAccountsFunctionName``; a
Ground Truth deployment has none, and then nothing here calls anything.

Label Studio's API answers only inside the VPC (outside, the public load balancer asks for the Cognito sign-in), so
by default ``taxonomists add`` invokes the ``ls_accounts`` function there (``lambda:InvokeFunction``). With
``--label-studio-url`` the CLI talks to that server itself (the local demo's server, or a tunnel), with the token
from ``FIELDLABEL_LABEL_STUDIO_TOKEN`` or the secret. Either way the account is made through Label Studio's sign-up
form with a one-time password (``fieldlabel.labeling.label_studio.accounts``), which the CLI prints once.
"""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fieldlabel.labeling.label_studio.accounts import create_account, split_name, token_from_secret_string
from fieldlabel.labeling.label_studio.client import LabelStudioApiError, LabelStudioClient, LabelStudioError

from fieldlabel_cli.context import AppContext
from fieldlabel_cli.errors import CliError, translate_aws_error
from fieldlabel_cli.invoke import invoke_sync

TOKEN_ENV = "FIELDLABEL_LABEL_STUDIO_TOKEN"
FUNCTION_OUTPUT = "LabelStudioAccountsFunctionName"
# The function's own timeout is 2 minutes (a sign-up is a handful of requests; the client retries a restarting
# server for ~8 s); the CLI waits a little longer than that.
INVOKE_READ_TIMEOUT = 150
_NOT_CREATED = "Label Studio account for {email} not created (the Cognito user is; running `add` again is safe)"


def _token_from_secret(ctx: AppContext, secret_id: str) -> str:
    """The token in the secret: the plain secret string, or its ``token`` field when it is a JSON object."""
    try:
        value = ctx.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError) as exc:
        raise translate_aws_error(exc, what=f"secret {secret_id!r}") from exc
    try:
        return token_from_secret_string(str(value))
    except ValueError as exc:
        raise CliError(f"secret {secret_id!r}: {exc}") from None


def label_studio_client(ctx: AppContext, url: str) -> LabelStudioClient:
    """A client of the server at ``url`` with the admin token (environment, else the secret)."""
    token = os.environ.get(TOKEN_ENV) or _token_from_secret(ctx, ctx.resolver.get("LabelStudioTokenSecretArn"))
    try:
        return LabelStudioClient(url, token)
    except ValueError as exc:
        raise CliError(f"Label Studio: {exc}") from None


def create_account_directly(client: LabelStudioClient, email: str, name: str | None) -> dict[str, Any]:
    """Make the account on a server this machine reaches (``--label-studio-url``).

    Returns:
        ``{"email", "created", "user_id", "url", "password"}`` (``password`` None for an existing account).

    Raises:
        CliError: the server refused or could not be reached (the message names it).
    """
    first, last = split_name(name)
    try:
        return create_account(client, email, first_name=first, last_name=last).as_dict()
    except LabelStudioError as exc:
        hint = ""
        if isinstance(exc, LabelStudioApiError) and 300 <= exc.status < 400:
            hint = ("; this URL answers with the load balancer's Cognito sign-in: leave out --label-studio-url so "
                    "the deployment's accounts function makes the account inside the VPC")
        raise CliError(f"{_NOT_CREATED.format(email=email)}: {exc}{hint}") from None


def invoke_accounts_function(lambda_client: Any, function_name: str, email: str, name: str | None) -> dict[str, Any]:
    """Make the account through the deployment's ``ls_accounts`` function (synchronous invocation).

    Returns:
        The function's answer ``{"email", "created", "user_id", "url", "password"}``.

    Raises:
        CliError: the function is missing, could not be invoked, failed (its error is shown) or answered oddly.
    """
    first, last = split_name(name)
    payload = {"email": email, "first_name": first, "last_name": last}
    try:
        answer = invoke_sync(lambda_client, function_name, payload,
                             not_found=f"Label Studio accounts function {function_name!r} not found (check "
                                       "--label-studio-accounts-function, --outputs, --stack-prefix and --region)")
    except BotoCoreError as exc:
        raise translate_aws_error(exc) from exc
    if answer.failure is not None:
        raise CliError(f"{_NOT_CREATED.format(email=email)}: {answer.failure}")
    body = answer.body
    if not isinstance(body, dict) or not isinstance(body.get("created"), bool):
        raise CliError(f"the Label Studio accounts function answered something unexpected: {answer.excerpt(200)}")
    return body


def ensure_account(ctx: AppContext, email: str, name: str | None, *, direct_url: str | None) -> dict[str, Any] | None:
    """The Label Studio account of ``email`` on this deployment, or None when it has no Label Studio.

    ``direct_url`` (``--label-studio-url``) talks to that server; otherwise the deployment's accounts function
    does it inside the VPC.
    """
    if direct_url:
        return create_account_directly(label_studio_client(ctx, direct_url), email, name)
    function = ctx.resolver.find(FUNCTION_OUTPUT)
    if function:
        answer = invoke_accounts_function(ctx.client("lambda", read_timeout=INVOKE_READ_TIMEOUT), function, email,
                                          name)
        # The address people open is the public one (the function knows the in-VPC one; they are the same name).
        answer["url"] = ctx.resolver.find("LabelStudioUrl") or answer.get("url")
        return answer
    if ctx.resolver.find("LabelStudioUrl"):
        raise CliError(f"{_NOT_CREATED.format(email=email)}: the deployment has a Label Studio server but no "
                       f"{FUNCTION_OUTPUT} output (deploy the current version), or pass --label-studio-url for a "
                       "server this machine reaches")
    return None


def account_text(account: dict[str, Any]) -> str:
    """What ``taxonomists add`` prints about the account; the one-time password appears here and nowhere else."""
    url = account.get("url") or "the Label Studio server"
    if not account.get("created") or not account.get("password"):
        return f"Label Studio account exists ({url}); its password is unchanged"
    lines = [
        f"Label Studio account created: {url}",
        f"  sign-in e-mail:      {account['email']}",
        f"  one-time password:   {account['password']}",
        "Hand this password to the person privately (not in the invitation e-mail's thread); it is shown only now. "
        "They sign in with the Cognito invitation first, then to Label Studio with this e-mail and password, and "
        "change the password under Account & Settings.",
    ]
    # The account and its password are fine; a finishing step (the display name) was not done.
    lines += [f"Note: {w}" for w in account.get("warnings") or []]
    return "\n".join(lines)
