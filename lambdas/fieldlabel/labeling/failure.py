"""When a batch's workflow cannot go on: stop its jobs, then release its photos, or park it for an operator.

Which of the two depends on whether labels were paid for (docs/workflow.md, "Failure paths"):

* **before** the labeling job completed (prepare failed, the job failed, stopped or timed out, the execution was
  stopped while the job ran): nothing is labeled, so the batch is FAILED and its photos are released through
  intake's release rule (back to the pool after a back-off, or PARKED after ``max_attempts``);
* **after** the job completed: its labels are paid for and must not be thrown away. The batch is PARKED with the
  step that failed (``record``, ``review`` or ``publish``); photos keep their labels and ``fieldlabel resume``
  restarts the workflow at that step.

Labels are never taken off a photo here. Every write is conditional or idempotent, so running any of this again
(a retried Lambda, the EventBridge rule after the state machine's own path) converges on the same state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.labeling.backend import STOPPED_WITH_LABELS, LabelingBackend
from fieldlabel.labeling.registry_io import get_batch, iter_batch_items
from fieldlabel.registry.model import (
    BATCH_PARKED,
    BATCHED,
    FAILED,
    LABELED,
    PUBLISHED,
    error_code,
    from_item,
    to_attr,
)

_REASON_MAX = 1000
# Steps a parked batch resumes at, in workflow order (the state machine's "Where does the batch start?").
PARK_STEPS = ("record", "review", "publish")
FINISHED = (PUBLISHED, FAILED)


def failure_reason(error: dict[str, Any] | None) -> str:
    """A one-line reason from a Step Functions error object ``{"Error", "Cause"}``."""
    if not error:
        return "unknown error"
    name = str(error.get("Error") or "Error")
    cause = error.get("Cause")
    detail = ""
    if isinstance(cause, str) and cause:
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            detail = str(parsed.get("FailureReason") or parsed.get("errorMessage") or parsed.get("message")
                         or parsed.get("LabelingJobStatus") or cause)
        else:
            detail = cause
    reason = f"{name}: {detail}" if detail else name
    return " ".join(reason.split())[:_REASON_MAX]


def unlabel_engine_labels(dynamodb: Any, *, photos_table: str, batch_id: str, now_iso: str) -> int:
    """Take the own engine's machine labels off a batch that failed before its taxonomists' job completed.

    ``labeling.engine: model`` writes machine labels when the batch is prepared, before any job. A FAILED batch is
    never published, so those labels would never reach a dataset; back to BATCHED, the release returns the photos to
    the pool for a later batch. Only labels the engine wrote (``label_source = machine`` with ``machine_model``) are
    touched, under that condition, so no label a paid job produced is ever removed. Returns how many.
    """
    count = 0
    for item in iter_batch_items(dynamodb, photos_table, batch_id, status=LABELED, projection="photo_id"):
        try:
            dynamodb.update_item(
                TableName=photos_table, Key={"photo_id": {"S": item["photo_id"]}},
                UpdateExpression="SET #s = :batched, updated_at = :now "
                                 "REMOVE #l, label_confidence, human_annotated, job_name, label_source, machine_model",
                ConditionExpression="#s = :labeled AND batch_id = :b AND label_source = :machine "
                                    "AND attribute_exists(machine_model)",
                ExpressionAttributeNames={"#s": "status", "#l": "label"},
                ExpressionAttributeValues={":batched": {"S": BATCHED}, ":labeled": {"S": LABELED},
                                           ":b": {"S": batch_id}, ":now": {"S": now_iso},
                                           ":machine": {"S": "machine"}},
            )
            count += 1
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
    return count


def stop_batch_jobs(sagemaker: Any, backend: LabelingBackend, batch_id: str,
                    batch: dict[str, Any]) -> dict[str, str]:
    """Stop the batch's labeling and review jobs that may still run; ``{job name: outcome}``.

    The names come from the batch record (what prepare recorded) and, when it has none, from the backend's naming
    rule, so a job created just before a crash is not missed. The backend tolerates a job already finished,
    stopping or absent.
    """
    names = [str(batch.get("job_name") or backend.job_name(batch_id)),
             str(batch.get("review_job_name") or backend.review_job_name(batch_id))]
    return {name: backend.stop_job(sagemaker, name) for name in dict.fromkeys(names)}


def derive_park_step(batch: dict[str, Any], job_outcomes: dict[str, str], labeling_job: str) -> str | None:
    """The step to park at when the workflow ended without saying where, or None when nothing was paid for.

    Labels recorded (``labeling_stats`` on the batch): resume at review. The labeling job completed, or was stopped
    after labeling some photos, but its labels were not recorded yet: resume at record. Otherwise nothing was
    labeled: no park, the batch fails.
    """
    if batch.get("status") == BATCH_PARKED and batch.get("parked_step") in PARK_STEPS:
        return str(batch["parked_step"])
    if batch.get("labeling_stats"):
        return "review"
    if job_outcomes.get(labeling_job) in ("Completed", STOPPED_WITH_LABELS):
        return "record"
    return None


def park_batch(dynamodb: Any, batches_table: str, batch_id: str, *, step: str, reason: str, now_iso: str,
               review: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hold the batch for an operator at ``step``; returns the batch item after the update.

    A batch not yet published becomes ``PARKED``. A batch already ``PUBLISHED`` (publish crashed after marking it,
    before ``LATEST`` moved) keeps its status and only gets ``parked_step``/``park_reason``, so its published
    version is never hidden. A ``FAILED`` batch is left alone (its photos went back to the pool).

    Raises:
        ValueError: on an unknown step.
        botocore.exceptions.ClientError: ``ConditionalCheckFailedException`` when the batch is missing or FAILED.
    """
    if step not in PARK_STEPS:
        raise ValueError(f"unknown step {step!r}; one of {', '.join(PARK_STEPS)}")
    values: dict[str, Any] = {":step": step, ":r": reason[:_REASON_MAX], ":now": now_iso, ":failed": FAILED,
                              ":published": PUBLISHED, ":parked": BATCH_PARKED}
    sets = ["parked_step = :step", "park_reason = :r", "parked_at = :now", "updated_at = :now"]
    if review is not None:
        values[":review"] = review
        sets.append("resume_review = :review")
    if training is not None:
        values[":training"] = training
        sets.append("resume_training = :training")
    for attempt in range(2):
        current = get_batch(dynamodb, batches_table, batch_id) or {}
        published = current.get("status") == PUBLISHED
        expr = "SET " + ", ".join(sets + ([] if published else ["#s = :parked"]))
        cond = "attribute_exists(batch_id) AND " + ("#s = :published" if published else
                                                     "#s <> :failed AND #s <> :published")
        try:
            resp = dynamodb.update_item(
                TableName=batches_table, Key={"batch_id": {"S": batch_id}}, UpdateExpression=expr,
                ConditionExpression=cond, ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={k: to_attr(v) for k, v in values.items()
                                           if k in expr or k in cond},
                ReturnValues="ALL_NEW",
            )
            return from_item(resp.get("Attributes")) or {}
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException" or attempt == 1:
                raise
            # The status changed between the read and the write (e.g. publish marked it): decide again once.
    raise AssertionError("unreachable: the second attempt returns or raises")


@dataclass
class Outcome:
    """What :func:`settle_batch` did."""

    batch_id: str
    outcome: str  # "failed" | "parked" | "skipped"
    reason: str
    status: str | None = None
    step: str | None = None
    released: int = 0
    parked_photos: int = 0
    quarantined: int = 0
    jobs: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for logs and tests."""
        return {"batch_id": self.batch_id, "outcome": self.outcome, "reason": self.reason, "status": self.status,
                "step": self.step, "released": self.released, "parked": self.parked_photos,
                "quarantined": self.quarantined, "jobs": self.jobs}


def settle_batch(
    *,
    dynamodb: Any,
    sagemaker: Any,
    backend: LabelingBackend,
    batches_table: str,
    batch_id: str,
    error: dict[str, Any] | None,
    now_iso: str,
    release: Callable[[str], tuple[int, int, int]],
    park_step: str | None = None,
    review: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    skip_finished: bool = False,
) -> Outcome:
    """Stop the batch's jobs, then park the batch (labels were paid for) or release it (nothing was).

    Args:
        dynamodb: boto3 DynamoDB client.
        sagemaker: the backend's client (SageMaker for Ground Truth), for stopping jobs.
        backend: the labeling backend (job names, stop semantics).
        batches_table: batches table name.
        batch_id: the batch.
        error: the Step Functions error object that ended the run.
        now_iso: ISO-8601 UTC timestamp.
        release: intake's release for a failed batch, given the reason; returns ``(released, parked,
            quarantined)`` and marks the batch FAILED.
        park_step: the step that failed after the job completed (the state machine says so); None = derive it.
        review: the review result so far, kept for a resume at publish.
        training: the engine's training result so far, kept for a resume at publish.
        skip_finished: leave a batch that is already PUBLISHED or FAILED alone (the EventBridge rule's call).
    """
    reason = failure_reason(error)
    batch = get_batch(dynamodb, batches_table, batch_id) or {}
    status = batch.get("status")
    if skip_finished and (not batch or status in FINISHED) and park_step is None:
        return Outcome(batch_id, "skipped", reason, status=status)
    jobs = stop_batch_jobs(sagemaker, backend, batch_id, batch) if status not in FINISHED else {}
    labeling_job = str(batch.get("job_name") or backend.job_name(batch_id))
    step = park_step or derive_park_step(batch, jobs, labeling_job)
    if step is not None and status != FAILED:
        after = park_batch(dynamodb, batches_table, batch_id, step=step, reason=reason, now_iso=now_iso,
                           review=review, training=training)
        return Outcome(batch_id, "parked", reason, status=after.get("status"), step=step, jobs=jobs)
    released, parked, quarantined = release(reason)
    return Outcome(batch_id, "failed", reason, status=FAILED, released=released, parked_photos=parked,
                   quarantined=quarantined, jobs=jobs)
