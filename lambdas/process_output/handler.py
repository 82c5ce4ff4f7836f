"""Process-output Lambda: records a finished job's labels in the registry and returns the batch statistics.

Event ``{"batch_id", "kind", "job": <DescribeLabelingJob response>}`` -> labeling statistics (docs/workflow.md).
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.labeling.engine_report import add_machine_labels
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.process import LabelingStats, process_output
from fieldlabel.labeling.registry_io import get_batch, update_batch
from fieldlabel.labeling.release import release_unlabeled
from fieldlabel.labeling.settings import WorkflowEnv

# What the state machine puts in ``$.job`` when the engine labeled the whole batch (docs/workflow.md).
NO_JOB_STATUS = "NotNeeded"


@functools.cache
def _env() -> WorkflowEnv:
    env = WorkflowEnv.from_env()
    env.require("photos_table", "batches_table", "artifacts_bucket")
    return env


@functools.cache
def _backend() -> GroundTruthBackend:
    return _env().backend()


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
    now = utc_now()
    batch = get_batch(dynamodb, env.batches_table, batch_id) or {}
    expected = batch.get("labeling_photo_count")

    def release(reason: str) -> tuple[int, int, int]:
        report = release_unlabeled(dynamodb, photos_table=env.photos_table, batches_table=env.batches_table,
                                   batch_id=batch_id, reason=reason, max_attempts=env.max_attempts, now=now,
                                   batch_status="LABELING", now_iso=iso(now), backoff=env.backoff)
        return report.released, report.parked, report.quarantined

    kind = event.get("kind") or batch.get("kind") or "human_only"
    job = event.get("job") or {}
    if env.engine == "model" and job.get("LabelingJobStatus") == NO_JOB_STATUS:
        # The engine labeled every photo: there is no taxonomists' job to read.
        stats = LabelingStats(job_name="", kind=kind).as_dict()
    else:
        stats = process_output(
            dynamodb=dynamodb, s3=s3, backend=_backend(),
            tables=Tables(env.photos_table, env.batches_table, env.artifacts_bucket),
            batch_id=batch_id, kind=kind, job=job, now_iso=iso(now), release_unlabeled=release,
            expected_count=expected if isinstance(expected, int) else None,
            left_out=int(batch.get("labeling_skipped") or 0), taxonomy_hash=env.taxonomy_hash,
            concurrency=env.update_concurrency,
        )
    if env.engine == "model":
        # The engine's machine labels were written when the batch was prepared; count them with the human ones.
        stats = add_machine_labels(stats, batch)
        update_batch(dynamodb, env.batches_table, batch_id, {"labeling_stats": stats, "updated_at": iso(now)})
    metrics.add_metric(name="PhotosLabeledByHumans", unit=MetricUnit.Count, value=stats["human_labeled"])
    metrics.add_metric(name="PhotosLabeledByMachine", unit=MetricUnit.Count, value=stats["machine_labeled"])
    metrics.add_metric(name="PhotosNotLabeled", unit=MetricUnit.Count, value=stats["failed"])
    logger.info("labeling output processed", extra={k: v for k, v in stats.items() if k != "failure_samples"})
    return stats
