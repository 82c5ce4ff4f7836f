"""Fail-batch Lambda: the failure path. Releases the batch's photos, marks it FAILED, returns the summary.

Event ``{"batch_id", "error": {"Error", "Cause"}, "job_name"?}`` -> ``{"subject", "message", "figures"}``.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.failure import fail_batch
from fieldlabel.labeling.release import release_failed_batch
from fieldlabel.labeling.settings import WorkflowEnv
from fieldlabel.labeling.summary import failed_summary


@functools.cache
def _env() -> WorkflowEnv:
    env = WorkflowEnv.from_env()
    env.require("photos_table", "batches_table")
    return env


@functools.cache
def _dynamodb() -> Any:
    return boto3.client("dynamodb")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _env()
    dynamodb = _dynamodb()
    batch_id = event["batch_id"]
    logger.append_keys(batch_id=batch_id)
    now = utc_now()

    def release(reason: str) -> tuple[int, int]:
        report = release_failed_batch(dynamodb, photos_table=env.photos_table, batches_table=env.batches_table,
                                      batch_id=batch_id, reason=reason, max_attempts=env.max_attempts, now=now)
        return report.released, report.parked

    outcome = fail_batch(dynamodb=dynamodb, photos_table=env.photos_table, batch_id=batch_id,
                         error=event.get("error"), now_iso=iso(now), release=release)
    metrics.add_metric(name="BatchesFailed", unit=MetricUnit.Count, value=1)
    logger.error("batch failed", extra=outcome)
    return failed_summary(project=env.project, batch_id=batch_id, reason=outcome["reason"],
                          released=outcome["released"], parked=outcome["parked"],
                          discarded_labels=outcome["discarded_labels"], job_name=event.get("job_name"))
