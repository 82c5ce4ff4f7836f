"""Apply-review Lambda: applies a finished review job to the registry and the reviewers table."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.review.apply import ApplySettings, apply_review
from fieldlabel.review.settings import ReviewEnv


@functools.cache
def _settings() -> ApplySettings:
    env = ReviewEnv.from_environ(dict(os.environ))
    env.require("photos_table", "reviewers_table", "artifacts_bucket")
    return ApplySettings(
        photos_table=env.photos_table or "",
        reviewers_table=env.reviewers_table or "",
        artifacts_bucket=env.artifacts_bucket or "",
        unknown_label=env.unknown_label,
        label_categories_uri=env.label_categories_uri,
        correction_threshold=env.adjudication_threshold,
        consolidation=env.consolidation(),
        concurrency=env.update_concurrency,
    )


@functools.cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("s3"), boto3.client("dynamodb")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Event ``{"batch_id", "output_manifest_uri", "job_name"?}`` -> accuracy, corrections and adjudication counts."""
    s3, dynamodb = _clients()
    outcome = apply_review(
        s3=s3,
        dynamodb=dynamodb,
        batch_id=event["batch_id"],
        output_manifest_uri=event["output_manifest_uri"],
        job_name=event.get("job_name"),
        settings=_settings(),
        now_iso=utc_now().isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    result = outcome.as_dict()
    metrics.add_metric(name="ReviewCorrections", unit=MetricUnit.Count, value=result["corrections"])
    metrics.add_metric(name="ReviewNeedsAdjudication", unit=MetricUnit.Count, value=result["needs_adjudication"])
    overall = result["machine_accuracy"]["overall"]
    if overall["accuracy"] is not None:
        metrics.add_metric(name="MachineLabelAccuracy", unit=MetricUnit.Percent, value=100 * overall["accuracy"])
    logger.info("review applied", extra=result)
    return result
