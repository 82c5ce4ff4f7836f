"""What every command gets: AWS clients built from the global options, the resource resolver, and the output mode.

Credentials are never read here: boto3 resolves them from --profile, the environment or SSO, as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import boto3
from botocore.config import Config

from fieldlabel_cli.errors import translate_aws_error
from fieldlabel_cli.resources import ResourceResolver

USER_AGENT_EXTRA = "fieldlabel-cli"
# Standard retry mode retries throttling and transient network errors with backoff.
RETRY_MAX_ATTEMPTS = 5


@dataclass
class AppContext:
    """Global options turned into objects. ``client()`` builds clients lazily so ``--dry-run`` needs no AWS at all."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    json_output: bool = False
    resolver: ResourceResolver = field(default_factory=ResourceResolver)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    _session: Any = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AppContext:
        """Build the context from parsed global options."""
        ctx = cls(
            region=getattr(args, "region", None),
            profile=getattr(args, "profile", None),
            endpoint_url=getattr(args, "endpoint_url", None),
            json_output=bool(getattr(args, "json", False)),
        )
        ctx.resolver = ResourceResolver(
            explicit={
                "IntakeBucketName": getattr(args, "bucket", None),
                "UserPoolId": getattr(args, "user_pool_id", None),
                "TaxonomistsGroup": getattr(args, "taxonomists_group", None),
                "ReviewersGroup": getattr(args, "reviewers_group", None),
                "ArtifactsBucketName": getattr(args, "artifacts_bucket", None),
                "PhotosTableName": getattr(args, "photos_table", None),
                "BatchesTableName": getattr(args, "batches_table", None),
                "DispatchFunctionName": getattr(args, "dispatch_function", None),
                "StateMachineArn": getattr(args, "state_machine", None),
                "LabelStudioUrl": getattr(args, "label_studio_url", None),
                "LabelStudioTokenSecretArn": getattr(args, "label_studio_token_secret", None),
                "LabelStudioAccountsFunctionName": getattr(args, "label_studio_accounts_function", None),
            },
            outputs_file=getattr(args, "outputs", None),
            stack_prefix=getattr(args, "stack_prefix", None),
            cloudformation=lambda: ctx.client("cloudformation"),
        )
        return ctx

    def session(self) -> Any:
        """The boto3 session (profile and region applied); ProfileNotFound becomes a one-line error."""
        if self._session is None:
            try:
                # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what the SDKs and the Lambda runtime use
                region = self.region or os.environ.get("AWS_REGION") or None
                self._session = boto3.session.Session(profile_name=self.profile, region_name=region)
            except Exception as exc:  # ProfileNotFound and friends
                raise translate_aws_error(exc) from exc
        return self._session

    def client(self, service: str, *, max_pool_connections: int = 10, read_timeout: int | None = None) -> Any:
        """A boto3 client for ``service`` honouring --region, --profile and --endpoint-url.

        ``read_timeout`` (seconds) raises botocore's 60 s default, for a synchronous Lambda invocation that runs long.
        """
        config = Config(
            user_agent_extra=USER_AGENT_EXTRA,
            max_pool_connections=max_pool_connections,
            retries={"mode": "standard", "max_attempts": RETRY_MAX_ATTEMPTS},
            **({"read_timeout": read_timeout} if read_timeout else {}),
        )
        try:
            return self.session().client(service, endpoint_url=self.endpoint_url, config=config)
        except Exception as exc:  # NoRegionError is raised at client creation
            raise translate_aws_error(exc) from exc

    # Output helpers: human text on stdout, or one JSON document with --json. Diagnostics always go to stderr.
    def emit(self, data: Any, human: Callable[[], str] | str) -> None:
        """Print ``data`` as JSON with --json, otherwise the human rendering."""
        if self.json_output:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        else:
            text = human() if callable(human) else human
            if text:
                self.stdout.write(text.rstrip("\n") + "\n")

    def info(self, message: str) -> None:
        """A progress or status line for humans (stderr, so stdout stays parseable)."""
        self.stderr.write(message + "\n")
