"""The shared-secret check of Label Studio's webhooks.

Label Studio sends the headers configured on the webhook with every call, so the pipeline registers the webhook
with ``X-Fieldlabel-Webhook-Secret: <secret from Secrets Manager>`` and the receiving function compares it in
constant time. Label Studio signs nothing itself; the Function URL is public (AuthType NONE), so this header is
what keeps strangers from resuming executions. The receiver re-reads the batch through the API and never trusts
the request body, so a valid secret can at most trigger an early completion check.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

WEBHOOK_SECRET_HEADER = "X-Fieldlabel-Webhook-Secret"
# A secret shorter than this is a configuration error (Secrets Manager generates 32+ characters).
MIN_SECRET_LENGTH = 16


def webhook_headers(secret: str) -> dict[str, str]:
    """The headers to register on the webhook (:meth:`LabelStudioClient.ensure_webhook`).

    Raises:
        ValueError: when the secret is too short to be worth checking.
    """
    _check_secret(secret)
    return {WEBHOOK_SECRET_HEADER: secret}


def verify_webhook(headers: Mapping[str, str] | None, secret: str) -> bool:
    """True when ``headers`` carry ``secret`` in ``X-Fieldlabel-Webhook-Secret`` (header name case-insensitive).

    Lambda Function URLs deliver header names in lower case; other front ends keep the sender's case. An empty or
    too short configured secret never verifies, so a missing secret cannot open the door.
    """
    if not secret or len(secret) < MIN_SECRET_LENGTH or not headers:
        return False
    wanted = WEBHOOK_SECRET_HEADER.lower()
    presented = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None)
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8"))


def _check_secret(secret: str) -> None:
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"the webhook secret must have at least {MIN_SECRET_LENGTH} characters")
