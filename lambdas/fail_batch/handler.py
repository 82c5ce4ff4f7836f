"""Fail-batch Lambda: the failure path. Releases the batch's photos, marks it FAILED, returns the summary.

Event ``{"batch_id", "error": {"Error", "Cause"}, "job_name"?}`` -> ``{"subject", "message", "figures"}``.

It is also the target of an EventBridge rule for executions that were stopped by hand or timed out, which never
reach the state machine's own failure path: event ``{"execution_name": "batch-<batch_id>", "error": {...}}``. Then
it also publishes the summary itself (``SUMMARY_TOPIC_ARN``), and leaves alone a batch that already finished.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.failure import fail_batch
from fieldlabel.labeling.registry_io import get_batch
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


# A batch in one of these states is not in limbo: the execution ended after it was published or released.
_FINISHED = ("PUBLISHED", "FAILED")
EXECUTION_PREFIX = "batch-"


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _env()
    dynamodb = _dynamodb()
    from_rule = "execution_name" in event
    batch_id = event["batch_id"] if not from_rule else str(event["execution_name"]).removeprefix(EXECUTION_PREFIX)
    logger.append_keys(batch_id=batch_id)
    now = utc_now()
    if from_rule:
        batch = get_batch(dynamodb, env.batches_table, batch_id)
        if batch is None or batch.get("status") in _FINISHED:
            logger.info("execution ended after the batch finished; nothing to release",
                        extra={"status": (batch or {}).get("status")})
            return {"skipped": True, "batch_id": batch_id, "status": (batch or {}).get("status")}

    def release(reason: str) -> tuple[int, int]:
        report = release_failed_batch(dynamodb, photos_table=env.photos_table, batches_table=env.batches_table,
                                      batch_id=batch_id, reason=reason, max_attempts=env.max_attempts, now=now)
        return report.released, report.parked

    outcome = fail_batch(dynamodb=dynamodb, photos_table=env.photos_table, batch_id=batch_id,
                         error=event.get("error"), now_iso=iso(now), release=release)
    metrics.add_metric(name="BatchesFailed", unit=MetricUnit.Count, value=1)
    logger.error("batch failed", extra=outcome)
    summary = failed_summary(project=env.project, batch_id=batch_id, reason=outcome["reason"],
                             released=outcome["released"], parked=outcome["parked"],
                             discarded_labels=outcome["discarded_labels"], job_name=event.get("job_name"))
    topic = os.environ.get("SUMMARY_TOPIC_ARN")
    if from_rule and topic:
        boto3.client("sns").publish(TopicArn=topic, Subject=summary["subject"], Message=summary["message"])
    return summary
