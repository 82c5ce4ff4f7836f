"""Environment, clients and secrets of the workflow's Label Studio functions (ls_submit, ls_webhook, ls_poll, and
fail_batch on that backend). Builders, and :class:`HandlerSetup`, which each handler instantiates in its own module
(one per Lambda container), so nothing built for one function's environment is reused by another.

The variables (stacks/label_studio_workflow.py sets them; docs/label-studio.md, "Workflow"): ``LABEL_STUDIO_URL``,
``LABEL_STUDIO_TOKEN_SECRET_ARN``, ``LABEL_STUDIO_WEBHOOK_SECRET_ARN`` (Secrets Manager; the secret strings are the
token and the shared secret), ``WEBHOOK_URL`` (ls_submit: the webhook function's URL), and the workflow's
``BATCHES_TABLE``, ``PHOTOS_TABLE``, ``REVIEWERS_TABLE``, ``ARTIFACTS_BUCKET``, ``PROJECT_PREFIX``, ``CONFIG_JSON``,
``JOB_SETTINGS_JSON``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import boto3
from pydantic import Field

from fieldlabel.labeling.settings import WorkflowEnv


class LabelStudioEnv(WorkflowEnv):
    """:class:`WorkflowEnv` plus the Label Studio server and its secrets."""

    label_studio_url: str = Field(default="", alias="LABEL_STUDIO_URL")
    token_secret_arn: str = Field(default="", alias="LABEL_STUDIO_TOKEN_SECRET_ARN")
    webhook_secret_arn: str = Field(default="", alias="LABEL_STUDIO_WEBHOOK_SECRET_ARN")
    webhook_url: str = Field(default="", alias="WEBHOOK_URL")
    images_bucket: str = Field(default="", alias="LABEL_STUDIO_IMAGES_BUCKET")
    images_prefix: str = Field(default="labeling-copies/", alias="LABEL_STUDIO_IMAGES_PREFIX")
    presign_ttl_minutes: int = Field(default=15, ge=1, le=720, alias="LABEL_STUDIO_PRESIGN_TTL_MINUTES")
    reviewers_table: str = Field(default="", alias="REVIEWERS_TABLE")
    taxonomy_uri: str = Field(default="", alias="TAXONOMY_S3_URI")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LabelStudioEnv:
        """Build from environment variables (empty strings count as unset)."""
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k.isupper() and v != ""})

    @property
    def uses_label_studio(self) -> bool:
        """``labeling.backend`` is ``label_studio``."""
        return str(self.runtime_config.get("backend") or "groundtruth") == "label_studio"


class HandlerSetup:
    """What one Label Studio handler builds once per container, each piece on first use (a refused webhook builds no
    Label Studio client). Each handler module holds its own instance, so nothing built for one function's
    environment is reused by another."""

    @cached_property
    def env(self) -> LabelStudioEnv:
        return ls_env()

    @cached_property
    def clients(self) -> tuple[Any, Any, Any]:
        """DynamoDB, S3 and Step Functions clients."""
        return aws_clients()

    @cached_property
    def ops(self) -> Any:
        dynamodb, s3, _ = self.clients
        return stage_ops(self.env, dynamodb=dynamodb, s3=s3)

    @cached_property
    def secret(self) -> str:
        """The webhook's shared secret."""
        return webhook_secret(self.env)


def ls_env() -> LabelStudioEnv:
    """The environment of this process (checked for what every Label Studio function needs)."""
    env = LabelStudioEnv.from_env()
    env.require("batches_table", "artifacts_bucket", "project", "label_studio_url", "token_secret_arn")
    return env


def aws_clients() -> tuple[Any, Any, Any]:
    """DynamoDB, S3 and Step Functions clients."""
    return boto3.client("dynamodb"), boto3.client("s3"), boto3.client("stepfunctions")


def read_secret(secretsmanager: Any, arn: str, *, field: str = "token") -> str:
    """A secret's string: the plain generated value the deployment stores, or ``field`` of a JSON object."""
    value = secretsmanager.get_secret_value(SecretId=arn).get("SecretString")
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value).get(field)
        except ValueError:
            pass
    if not isinstance(value, str) or not value:
        raise ValueError(f"secret {arn} has no string value (plain, or a JSON object with {field!r})")
    return value


def webhook_secret(env: LabelStudioEnv) -> str:
    """The webhooks' shared secret."""
    env.require("webhook_secret_arn")
    return read_secret(boto3.client("secretsmanager"), env.webhook_secret_arn)


def webhook_verified(headers: Mapping[str, str], secret: str) -> bool:
    """True when the request carries the shared secret (the backend's constant-time check)."""
    from fieldlabel.labeling.label_studio.webhook import verify_webhook

    return verify_webhook(headers, secret)


def label_studio_client(env: LabelStudioEnv) -> Any:
    """The API client with the admin token from Secrets Manager."""
    from fieldlabel.labeling.label_studio.client import LabelStudioClient

    return LabelStudioClient(env.label_studio_url, read_secret(boto3.client("secretsmanager"), env.token_secret_arn))


def stage_ops(env: LabelStudioEnv, *, dynamodb: Any, s3: Any) -> Any:
    """The Label Studio backend's stage operations for ``env`` (:class:`ls_ops.BackendStageOps`); the webhook's
    URL and secret only where the function registers webhooks (``WEBHOOK_URL`` set: ls_submit)."""
    from fieldlabel.labeling.ls_ops import BackendStageOps

    secret = webhook_secret(env) if env.webhook_url else ""
    return BackendStageOps(env=env, client=label_studio_client(env), s3=s3, dynamodb=dynamodb,
                           webhook_url=env.webhook_url, webhook_secret=secret, taxonomy_uri=env.taxonomy_uri,
                           reviewers_table=env.reviewers_table, images=_image_storage(env))


def _image_storage(env: LabelStudioEnv) -> Any:
    """The projects' S3 storage of the labeling copies (None without ``LABEL_STUDIO_IMAGES_BUCKET``)."""
    if not env.images_bucket:
        return None
    from fieldlabel.labeling.label_studio.backend import ImageStorage

    return ImageStorage(bucket=env.images_bucket, prefix=env.images_prefix, region=env.region,
                        presign_ttl_minutes=env.presign_ttl_minutes)


def environment_uses_label_studio(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this function's config says ``labeling.backend: label_studio`` (fail_batch asks)."""
    return LabelStudioEnv.from_env(os.environ if environ is None else environ).uses_label_studio
