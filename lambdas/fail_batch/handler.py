"""Fail-batch Lambda: stops the batch's jobs, then releases its photos (batch FAILED) or parks it for an operator.

Three callers (docs/workflow.md, "Failure paths"):

* the state machine's failure path, with the whole state (``{"batch_id", "error": {"Error", "Cause"}, ...}``);
* the state machine's park path, with the whole state plus ``"park_step"`` (``record``/``review``/``publish``);
* an EventBridge rule for executions that were stopped by hand or timed out, which never reach either path:
  ``{"execution_name": "batch-<batch_id>[-resume-<n>]", "error": {...}}``. Then it also publishes the summary
  itself (``SUMMARY_TOPIC_ARN``) and leaves alone a batch that already finished.

On the Label Studio backend (``labeling.backend: label_studio``) the batch's "jobs" are its Label Studio stages:
stopping one deletes its unanswered tasks and marks it stopped, so nobody labels a photo that goes back to the pool
(:class:`fieldlabel.labeling.ls_workflow.LabelStudioJobs`); a stage whose answers are complete counts as a
completed job (the batch is parked, not released).

Returns ``{"subject", "message", "figures"}`` (``figures.outcome`` is ``failed``, ``parked`` or absent when skipped).
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
from fieldlabel.labeling.failure import settle_batch, unlabel_engine_labels
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend
from fieldlabel.labeling.lifecycle import batch_id_of_execution
from fieldlabel.labeling.ls_wiring import environment_uses_label_studio
from fieldlabel.labeling.release import release_failed_batch
from fieldlabel.labeling.settings import WorkflowEnv
from fieldlabel.labeling.summary import failed_summary, parked_summary


@functools.cache
def _env() -> WorkflowEnv:
    env = WorkflowEnv.from_env()
    env.require("photos_table", "batches_table")
    return env


@functools.cache
def _backend() -> GroundTruthBackend:
    return _env().backend()


@functools.cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("dynamodb"), boto3.client("sagemaker")


@functools.cache
def _label_studio_ops() -> Any:
    """On the Label Studio backend: the stage operations (stopping a batch's stages deletes unanswered tasks)."""
    from fieldlabel.labeling.ls_wiring import ls_env, stage_ops

    return stage_ops(ls_env(), dynamodb=boto3.client("dynamodb"), s3=boto3.client("s3"))


def _error(event: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("error", "lookup_error", "stop_error"):
        if isinstance(event.get(key), dict):
            return dict(event[key])
    return None


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """See the module docstring."""
    env = _env()
    dynamodb, sagemaker = _clients()
    from_rule = "execution_name" in event
    batch_id = batch_id_of_execution(str(event["execution_name"])) if from_rule else str(event["batch_id"])
    logger.append_keys(batch_id=batch_id)
    now = utc_now()

    def release(reason: str) -> tuple[int, int, int]:
        # The own engine's machine labels (written at prepare, before any job) go back with the photos.
        unlabel_engine_labels(dynamodb, photos_table=env.photos_table, batch_id=batch_id, now_iso=iso(now))
        report = release_failed_batch(dynamodb, photos_table=env.photos_table, batches_table=env.batches_table,
                                      batch_id=batch_id, reason=reason, max_attempts=env.max_attempts, now=now,
                                      backoff=env.backoff)
        return report.released, report.parked, report.quarantined

    review = event.get("review") if isinstance(event.get("review"), dict) else None
    training = event.get("training") if isinstance(event.get("training"), dict) else None
    backend: Any = _backend()
    if environment_uses_label_studio():
        from fieldlabel.labeling.ls_workflow import LabelStudioJobs

        backend = LabelStudioJobs(dynamodb=dynamodb, batches_table=env.batches_table, project=env.project,
                                  ops=_label_studio_ops(), batch_id=batch_id, now_iso=iso(now))
    outcome = settle_batch(
        dynamodb=dynamodb, sagemaker=sagemaker, backend=backend, batches_table=env.batches_table,
        batch_id=batch_id, error=_error(event), now_iso=iso(now), release=release,
        park_step=event.get("park_step") if not from_rule else None, review=review, training=training,
        skip_finished=from_rule,
    )
    if outcome.outcome == "skipped":
        logger.info("execution ended after the batch finished; nothing to do", extra={"status": outcome.status})
        return {"skipped": True, "batch_id": batch_id, "status": outcome.status}
    if outcome.outcome == "parked":
        metrics.add_metric(name="BatchesParked", unit=MetricUnit.Count, value=1)
        logger.error("batch parked for an operator", extra=outcome.as_dict())
        summary = parked_summary(project=env.project, batch_id=batch_id, step=outcome.step or "",
                                 reason=outcome.reason, status=outcome.status, jobs=outcome.jobs)
    else:
        metrics.add_metric(name="BatchesFailed", unit=MetricUnit.Count, value=1)
        logger.error("batch failed", extra=outcome.as_dict())
        summary = failed_summary(project=env.project, batch_id=batch_id, reason=outcome.reason,
                                 released=outcome.released, parked=outcome.parked_photos,
                                 quarantined=outcome.quarantined, jobs=outcome.jobs,
                                 job_name=event.get("job_name"))
    topic = os.environ.get("SUMMARY_TOPIC_ARN")
    if from_rule and topic:
        boto3.client("sns").publish(TopicArn=topic, Subject=summary["subject"], Message=summary["message"])
    return summary
