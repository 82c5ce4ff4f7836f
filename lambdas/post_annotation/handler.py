"""Post-annotation (consolidation) Lambda of the expert-review job: Ground Truth invokes it with the answers."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.review.postannotation import PostAnnotationSettings, consolidate_payload
from fieldlabel.review.settings import ReviewEnv


@functools.cache
def _settings() -> PostAnnotationSettings:
    env = ReviewEnv.from_environ(dict(os.environ))
    env.require("reviewers_table")
    return PostAnnotationSettings(
        reviewers_table=env.reviewers_table or "",
        unknown_label=env.unknown_label,
        artifacts_bucket=env.artifacts_bucket,
        consolidation=env.consolidation(),
        response_budget_bytes=env.response_budget_bytes,
    )


@functools.cache
def _clients() -> tuple[Any, Any, Any]:
    return boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sagemaker")


@logger.inject_lambda_context(log_event=False)
# The response can be megabytes: keep it out of the X-Ray segment (64 KB document limit).
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> list[dict[str, Any]]:
    """Consolidate the reviewers' answers of one Ground Truth call; returns the consolidated-annotation list."""
    s3, dynamodb, sagemaker = _clients()
    logger.append_keys(
        labeling_job_arn=event.get("labelingJobArn"), payload_uri=(event.get("payload") or {}).get("s3Uri")
    )
    outcome = consolidate_payload(event, s3=s3, dynamodb=dynamodb, sagemaker=sagemaker, settings=_settings())
    skipped = sum(outcome.skipped.values())
    metrics.add_metric(name="ReviewObjectsConsolidated", unit=MetricUnit.Count, value=outcome.objects)
    metrics.add_metric(name="ReviewAnswersSkipped", unit=MetricUnit.Count, value=skipped)
    metrics.add_metric(name="ReviewNeedsAdjudication", unit=MetricUnit.Count, value=outcome.needs_adjudication)
    log = logger.warning if skipped or outcome.tier != "full" else logger.info
    log(
        "review answers consolidated",
        extra={
            "objects": outcome.objects,
            "answers": outcome.answers,
            "skipped": outcome.skipped,
            "needs_adjudication": outcome.needs_adjudication,
            "response_tier": outcome.tier,
            "response_bytes": outcome.response_bytes,
            "answer_log_uri": outcome.answer_log_uri,
            "model": outcome.model,
            "identities": outcome.identities,
        },
    )
    return outcome.response
