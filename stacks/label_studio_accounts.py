"""The function that makes taxonomists' Label Studio accounts (``labeling.backend: label_studio``; docs/label-studio.md,
"Taxonomists' accounts").

``fieldlabel taxonomists add`` invokes it (``lambda:InvokeFunction``): Label Studio's API and sign-up form answer only
inside the VPC, because the public load balancer puts the Cognito sign-in in front of every request. It runs in the
Label Studio deployment's VPC like the workflow's Label Studio functions and may read only the admin's API token.
"""

from __future__ import annotations

from aws_cdk import Duration
from constructs import Construct

from stacks.label_studio_refs import LabelStudioRefs
from stacks.lambda_code import LambdaKit


class LabelStudioAccounts(Construct):
    """``function`` (``lambdas/ls_accounts``); the stack names it in the output ``LabelStudioAccountsFunctionName``."""

    def __init__(self, scope: Construct, id_: str, *, kit: LambdaKit, refs: LabelStudioRefs) -> None:
        super().__init__(scope, id_)
        self.function = kit.function(
            self, "Function", handler_dir="ls_accounts",
            # A sign-up is five requests; the client's retries ride out a restarting server (~8 s of backoff).
            timeout=Duration.minutes(2), memory_size=256,
            description="Makes a taxonomist's Label Studio account with a one-time password (fieldlabel taxonomists "
                        "add)",
            environment={"LABEL_STUDIO_URL": refs.api_url,
                         "LABEL_STUDIO_TOKEN_SECRET_ARN": refs.token_secret.secret_arn},
            invoked_by="the fieldlabel CLI (taxonomists add)", network=refs)
        # The admin's API token only: the webhook secret is none of its business.
        refs.grant_secret_read(self.function, refs.token_secret)
