"""Select-review Lambda: picks a labeled batch's photos for expert review and writes the review manifest."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.review.sampling import SamplingSettings, build_review_manifest
from fieldlabel.review.settings import ReviewEnv


@functools.cache
def _env() -> ReviewEnv:
    env = ReviewEnv.from_environ(dict(os.environ))
    env.require("photos_table", "artifacts_bucket")
    return env


@functools.cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("dynamodb"), boto3.client("s3")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Event ``{"batch_id": ...}`` -> ``{"review_count", "manifest_uri", "audit_count", "low_confidence_count"}``."""
    batch_id = event["batch_id"]
    env = _env()
    dynamodb, s3 = _clients()
    outcome = build_review_manifest(
        dynamodb=dynamodb,
        s3=s3,
        photos_table=env.photos_table or "",
        artifacts_bucket=env.artifacts_bucket or "",
        batch_id=batch_id,
        settings=SamplingSettings(
            audit_sample_rate=env.audit_sample_rate,
            low_confidence_threshold=env.low_confidence_threshold,
            max_review_photos=env.max_review_photos,
        ),
    )
    metrics.add_metric(name="ReviewPhotosSelected", unit=MetricUnit.Count, value=outcome.review_count)
    if outcome.missing:
        logger.warning("selected photos missing from the registry", extra={"photo_ids": outcome.missing[:50]})
    logger.info("review selection", extra=outcome.as_dict())
    return outcome.as_dict()
