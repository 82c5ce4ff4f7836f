"""Prepare-job Lambda: the batch's input manifest and complete CreateLabelingJob request (or the review job's).

Event ``{"batch_id", "photo_count", "kind", "attempt"}`` (the execution input) -> ``{"exists", "job_name", "kind",
"photo_count", "manifest_uri", "initial_model_arn", "request", "poll_seconds", "review_enabled"}``.
Event ``{"stage": "review", "batch_id", "manifest_uri"}`` -> ``{"job_name", "manifest_uri", "request"}``.
Event with ``"resume_from"`` (a resumed parked batch, docs/workflow.md) -> the rebuilt workflow state.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.engine_prepare import EngineContext, prepare_engine_job
from fieldlabel.labeling.engine_wiring import engine_settings, model_loader, pointer_reader
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend
from fieldlabel.labeling.lifecycle import prepare_resume
from fieldlabel.labeling.modelstore import taxonomy_hash
from fieldlabel.labeling.prepare import Tables, prepare_labeling_job, prepare_review_job
from fieldlabel.labeling.settings import WorkflowEnv


@functools.cache
def _env() -> WorkflowEnv:
    env = WorkflowEnv.from_env()
    env.require("photos_table", "batches_table", "artifacts_bucket")
    return env


@functools.cache
def _backend() -> GroundTruthBackend:
    return _env().backend()


@functools.cache
def _clients() -> tuple[Any, Any, Any]:
    return boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sagemaker")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _env()
    dynamodb, s3, sagemaker = _clients()
    tables = Tables(env.photos_table, env.batches_table, env.artifacts_bucket)
    batch_id = event["batch_id"]
    logger.append_keys(batch_id=batch_id)
    if "resume_from" in event:
        # `fieldlabel resume`: the whole execution input; the result replaces the state (docs/workflow.md).
        state = prepare_resume(dynamodb=dynamodb, backend=_backend(), batches_table=env.batches_table, state=event,
                               poll_seconds=env.poll_seconds, review_enabled=env.review_enabled,
                               now_iso=iso(utc_now()))
        logger.warning("parked batch resumed", extra={"step": state["resume_from"], "resume": state["resume"]})
        return state
    if event.get("stage") == "review":
        prepared = prepare_review_job(dynamodb=dynamodb, backend=_backend(), tables=tables, batch_id=batch_id,
                                      manifest_uri=event["manifest_uri"], now_iso=iso(utc_now()))
        logger.info("review job prepared", extra={"job_name": prepared["job_name"]})
        return prepared
    if env.engine == "model":
        prepared = _prepare_with_engine(env, dynamodb, s3, sagemaker, tables, batch_id,
                                        lambda: context.get_remaining_time_in_millis() / 1000.0)
    else:
        prepared = prepare_labeling_job(
            dynamodb=dynamodb, s3=s3, sagemaker=sagemaker, backend=_backend(), tables=tables, batch_id=batch_id,
            automated_enabled=env.automated_enabled, now_iso=iso(utc_now()), taxonomy_hash=env.taxonomy_hash,
        )
    prepared["poll_seconds"] = env.poll_seconds
    prepared["review_enabled"] = env.review_enabled
    if prepared["exists"]:
        logger.warning("labeling job already exists; adopting it", extra={"job_name": prepared["job_name"]})
    else:
        metrics.add_metric(name="PhotosSentToLabeling", unit=MetricUnit.Count, value=prepared["photo_count"])
        logger.info("labeling job prepared", extra={k: prepared.get(k) for k in (
            "job_name", "kind", "photo_count", "human_count", "machine_count", "engine")})
    return prepared


def _prepare_with_engine(env: WorkflowEnv, dynamodb: Any, s3: Any, sagemaker: Any, tables: Tables,
                         batch_id: str, time_left: Any) -> dict[str, Any]:
    """``labeling.engine: model``: machine labels for what the engine certifies, a custom job for the rest."""
    from fieldlabel import embedding, engine

    prepared = prepare_engine_job(
        dynamodb=dynamodb, s3=s3, sagemaker=sagemaker, backend=_backend(), tables=tables, batch_id=batch_id,
        context=EngineContext(taxonomy_hash=taxonomy_hash(env.labels, env.unknown_label), labels=tuple(env.labels),
                              settings=engine_settings(env)),
        embedding=embedding, engine=engine, load_model=model_loader(s3), read_pointer=pointer_reader(dynamodb, env),
        now_iso=iso(utc_now()), time_left=time_left,
    )
    if not prepared["exists"]:
        metrics.add_metric(name="PhotosLabeledByModel", unit=MetricUnit.Count, value=prepared["machine_count"])
    return prepared
