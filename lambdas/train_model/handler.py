"""Train-model Lambda (``labeling.engine: model``): the chain's next model from every expert label so far.

Event ``{"batch_id"}`` -> ``{"trained", "model", "version", "model_uri", "lineage_uri", "labels_used",
"source_batches", "batch_labels", "left_out", "metrics", "pointer_moved"}`` (docs/workflow.md, "Train the model").
A failure here is caught by the state machine: the batch is still published and the next batch uses the current
model.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.engine_training import train_after_batch
from fieldlabel.labeling.engine_wiring import chain_of, engine_settings
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.settings import WorkflowEnv


@functools.cache
def _env() -> WorkflowEnv:
    env = WorkflowEnv.from_env()
    env.require("photos_table", "batches_table", "artifacts_bucket")
    return env


@functools.cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("dynamodb"), boto3.client("s3")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    from fieldlabel import embedding, engine

    env = _env()
    dynamodb, s3 = _clients()
    batch_id = event["batch_id"]
    logger.append_keys(batch_id=batch_id)
    result = train_after_batch(
        dynamodb=dynamodb, s3=s3, tables=Tables(env.photos_table, env.batches_table, env.artifacts_bucket),
        batch_id=batch_id, chain=chain_of(env, embedding.EMBEDDING_MODEL_ID), labels=env.labels, engine=engine,
        settings=engine_settings(env), decode=embedding.decode_embedding, now_iso=iso(utc_now()),
    )
    metrics.add_metric(name="ExpertLabelsForTraining", unit=MetricUnit.Count, value=result["labels_used"])
    metrics.add_metric(name="ModelsTrained", unit=MetricUnit.Count, value=1 if result["trained"] else 0)
    logger.info("model trained" if result["trained"] else "no model trained", extra=result)
    return result
