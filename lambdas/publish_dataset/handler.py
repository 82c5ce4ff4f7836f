"""Publish-dataset Lambda: writes the batch's immutable dataset version and the notification summary.

Event ``{"batch_id", "labeling": <process-output result>, "review": <apply-review result or a skip note>,
"training"?: <train-model result or a note>}`` ->
``{"dataset": {...}, "subject", "message", "figures"}``.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.engine_report import engine_statistics
from fieldlabel.labeling.groundtruth.backend import LABEL_ATTRIBUTE
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.publish import PublishInputs, publish_dataset
from fieldlabel.labeling.settings import WorkflowEnv
from fieldlabel.labeling.summary import published_summary


@functools.cache
def _env() -> WorkflowEnv:
    env = WorkflowEnv.from_env()
    env.require("photos_table", "batches_table", "artifacts_bucket", "label_categories_uri", "ui_template_uri")
    return env


@functools.cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("dynamodb"), boto3.client("s3")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _env()
    dynamodb, s3 = _clients()
    batch_id = event["batch_id"]
    logger.append_keys(batch_id=batch_id)
    labeling = event.get("labeling") or {}
    review = event.get("review") or None
    engine = engine_statistics(labeling, review, event.get("training"))
    dataset = publish_dataset(
        dynamodb=dynamodb, s3=s3, tables=Tables(env.photos_table, env.batches_table, env.artifacts_bucket),
        batch_id=batch_id,
        inputs=PublishInputs(
            labels=env.labels, label_attribute=LABEL_ATTRIBUTE, label_categories_uri=env.label_categories_uri,
            ui_template_uri=env.ui_template_uri, review_template_uri=env.review_template_uri or None,
            configuration={"runtime": env.runtime_config, "jobs": env.job_settings},
        ),
        labeling=labeling, review=review, now_iso=iso(utc_now()), engine=engine,
    )
    metrics.add_metric(name="DatasetPhotosPublished", unit=MetricUnit.Count, value=dataset["photos"])
    if engine is not None and engine["audit_contradicts_bound"] is not None:
        # 1 when the audit's lower bound on the machine-label error exceeds alpha (the alarm's metric).
        metrics.add_metric(name="MachineLabelAuditContradictsBound", unit=MetricUnit.Count,
                           value=1 if engine["audit_contradicts_bound"] else 0)
    summary = published_summary(project=env.project, batch_id=batch_id, labeling=labeling, review=review,
                                dataset=dataset, engine=engine)
    logger.info("dataset published", extra=dataset)
    return {"dataset": dataset, **summary}
