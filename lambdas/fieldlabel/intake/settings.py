"""Settings of the register and dispatch functions, parsed once from the environment (the CDK stack sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AL_MIN_OBJECTS = 1250
"""Ground Truth's minimum dataset size for automated labeling (groundtruth-facts.md section 3)."""
GT_MAX_OBJECTS = 100_000
"""Ground Truth's default maximum objects per labeling job (groundtruth-facts.md section 10)."""


class _EnvModel(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None):  # noqa: ANN206 - returns cls
        """Build from environment variables (upper-case aliases); raises pydantic.ValidationError if invalid."""
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k.isupper()})


class RegisterSettings(_EnvModel):
    """Environment of the register function."""

    intake_bucket: str = Field(alias="INTAKE_BUCKET")
    photos_table: str = Field(alias="PHOTOS_TABLE")
    batches_table: str = Field(alias="BATCHES_TABLE")
    dispatch_function_name: str | None = Field(default=None, alias="DISPATCH_FUNCTION_NAME")
    dedupe_mode: Literal["content", "object"] = Field(default="content", alias="DEDUPE_MODE")
    max_photo_bytes: int = Field(default=200 * 1024 * 1024, gt=0, alias="MAX_PHOTO_BYTES")
    max_pixels: int = Field(default=100_000_000, gt=0, alias="MAX_PIXELS")
    batch_size: int = Field(default=5000, gt=0, alias="BATCH_SIZE")
    # Compute each photo's image embedding (fieldlabel.embedding) at registration, for the model labeling engine.
    embed_at_intake: bool = Field(default=True, alias="EMBED_AT_INTAKE")


class DispatchSettings(_EnvModel):
    """Environment of the dispatch function (``release_batch`` callers use ``max_attempts`` too)."""

    photos_table: str = Field(alias="PHOTOS_TABLE")
    batches_table: str = Field(alias="BATCHES_TABLE")
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")
    batch_size: int = Field(default=5000, gt=0, alias="BATCH_SIZE")
    max_wait_seconds: int = Field(default=86_400, ge=0, alias="MAX_WAIT_SECONDS")
    max_batch_size: int = Field(default=GT_MAX_OBJECTS, gt=0, le=GT_MAX_OBJECTS, alias="MAX_BATCH_SIZE")
    small_batch_policy: Literal["human_only", "wait"] = Field(default="human_only", alias="SMALL_BATCH_POLICY")
    automated_labeling: bool = Field(default=True, alias="AUTOMATED_LABELING")
    max_attempts: int = Field(default=3, gt=0, alias="MAX_ATTEMPTS")
    lease_seconds: int = Field(default=300, gt=0, alias="LEASE_SECONDS")
    claim_grace_seconds: int = Field(default=600, gt=0, alias="CLAIM_GRACE_SECONDS")
    max_batches_per_run: int = Field(default=5, gt=0, alias="MAX_BATCHES_PER_RUN")
    # Released photos wait base * 2^(attempts-1) seconds, at most the cap, before they are PENDING again (0 = off).
    retry_backoff_seconds: int = Field(default=3600, ge=0, alias="RETRY_BACKOFF_SECONDS")
    retry_backoff_max_seconds: int = Field(default=86_400, ge=0, alias="RETRY_BACKOFF_MAX_SECONDS")
    # BATCHED photos the stray sweep examines per run (0 = no sweep).
    sweep_photos_per_run: int = Field(default=2000, ge=0, alias="SWEEP_PHOTOS_PER_RUN")
