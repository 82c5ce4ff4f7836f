"""Reviewer reliability kept in the reviewers table (``REVIEWERS_TABLE``, partition key ``worker_id``).

One item per reviewer holds a compact one-coin summary, not a confusion matrix (see docs/review.md, "Reliability"):

| attribute | type | meaning |
|---|---|---|
| ``worker_id`` | S | Ground Truth ``workerId`` |
| ``answers`` | N | answers consolidated so far |
| ``correct`` | N | expected number of those that were right (sum of posteriors) |
| ``accuracy`` | N | ``correct / answers`` after the last update (for people reading the table) |
| ``jobs_applied`` | SS | the last ``MAX_JOBS_REMEMBERED`` review jobs counted (makes a retried update a no-op) |
| ``job_order`` | L | the same jobs, oldest first (tells which one to forget) |
| ``last_job``, ``updated_at`` | S | |

``worker_id`` is the reviewer key: ``sub:<Cognito sub>`` when the worker-response files carry the identity, else the
Ground Truth ``workerId`` (fieldlabel.review.identity).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from fieldlabel.review.consolidation import WorkerPrior

_BATCH_GET_MAX = 100
# Jobs remembered per reviewer for idempotency. A retried apply-review step comes minutes after the first attempt,
# never 50 review jobs later; the bound keeps the item small (~60 bytes a job) however long a reviewer works.
MAX_JOBS_REMEMBERED = 50
_MAX_UNPROCESSED_ROUNDS = 8


def load_priors(dynamodb: Any, table: str, worker_ids: Iterable[str]) -> dict[str, WorkerPrior]:
    """Read the stored reliability of the given reviewers; reviewers not in the table are simply absent.

    Args:
        dynamodb: a boto3 DynamoDB *client*.
        table: the reviewers table name.
        worker_ids: reviewers to look up (duplicates allowed).

    Returns:
        worker_id -> WorkerPrior.

    Raises:
        RuntimeError: if DynamoDB keeps returning unprocessed keys.
    """
    ids = sorted(set(worker_ids))
    out: dict[str, WorkerPrior] = {}
    for start in range(0, len(ids), _BATCH_GET_MAX):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"worker_id": {"S": w}} for w in ids[start : start + _BATCH_GET_MAX]],
                "ProjectionExpression": "worker_id, answers, correct",
            }
        }
        for attempt in range(_MAX_UNPROCESSED_ROUNDS):
            resp = dynamodb.batch_get_item(RequestItems=request)
            for item in resp.get("Responses", {}).get(table, []):
                out[item["worker_id"]["S"]] = WorkerPrior(
                    answers=float(item.get("answers", {}).get("N", "0")),
                    correct=float(item.get("correct", {}).get("N", "0")),
                )
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            raise RuntimeError("reviewers table kept returning unprocessed keys")
    return out


def record_job(
    dynamodb: Any,
    table: str,
    job_name: str,
    stats: Mapping[str, tuple[float, float]],
    *,
    now_iso: str,
) -> dict[str, int]:
    """Add one review job's per-reviewer counts to the reviewers table, once per job.

    The update is conditional on the job not being in ``jobs_applied`` yet, so a retried apply-review step does not
    count the same answers twice.

    Args:
        dynamodb: a boto3 DynamoDB client.
        table: the reviewers table name.
        job_name: the review labeling job's name.
        stats: worker_id -> (answers in this job, expected correct answers in this job).
        now_iso: ISO-8601 UTC timestamp for ``updated_at``.

    Returns:
        ``{"updated": n, "already_applied": m}``.
    """
    updated = already = 0
    for worker_id, (answers, correct) in sorted(stats.items()):
        if answers <= 0:
            continue
        try:
            resp = dynamodb.update_item(
                TableName=table,
                Key={"worker_id": {"S": worker_id}},
                UpdateExpression=(
                    "ADD answers :n, correct :c, jobs_applied :job SET last_job = :name, updated_at = :now, "
                    "job_order = list_append(if_not_exists(job_order, :empty), :names)"
                ),
                ConditionExpression="attribute_not_exists(jobs_applied) OR NOT contains(jobs_applied, :name)",
                ExpressionAttributeValues={
                    ":n": {"N": _num(answers)},
                    ":c": {"N": _num(correct)},
                    ":job": {"SS": [job_name]},
                    ":name": {"S": job_name},
                    ":names": {"L": [{"S": job_name}]},
                    ":empty": {"L": []},
                    ":now": {"S": now_iso},
                },
                ReturnValues="ALL_NEW",
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            already += 1
            continue
        updated += 1
        order = [v.get("S", "") for v in resp.get("Attributes", {}).get("job_order", {}).get("L", [])]
        _forget_old_jobs(dynamodb, table, worker_id, order)
    _refresh_accuracy(dynamodb, table, [w for w, (n, _) in stats.items() if n > 0])
    return {"updated": updated, "already_applied": already}


def _forget_old_jobs(dynamodb: Any, table: str, worker_id: str, order: list[str]) -> None:
    """Drop the oldest jobs beyond MAX_JOBS_REMEMBERED from ``job_order`` and ``jobs_applied``.

    Conditional on the list's head still being the job we remove, so two concurrent trims cannot remove a newer job.
    """
    while len(order) > MAX_JOBS_REMEMBERED:
        oldest = order[0]
        try:
            dynamodb.update_item(
                TableName=table,
                Key={"worker_id": {"S": worker_id}},
                UpdateExpression="REMOVE job_order[0] DELETE jobs_applied :old",
                ConditionExpression="job_order[0] = :name",
                ExpressionAttributeValues={":old": {"SS": [oldest]}, ":name": {"S": oldest}},
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return  # somebody else trimmed it; their view of the list is newer
        order = order[1:]


def _refresh_accuracy(dynamodb: Any, table: str, worker_ids: list[str]) -> None:
    """Store accuracy = correct / answers so the table is readable without arithmetic."""
    for worker_id, prior in load_priors(dynamodb, table, worker_ids).items():
        if prior.answers > 0:
            dynamodb.update_item(
                TableName=table,
                Key={"worker_id": {"S": worker_id}},
                UpdateExpression="SET accuracy = :a",
                ExpressionAttributeValues={":a": {"N": _num(prior.correct / prior.answers)}},
            )


def _num(x: float) -> str:
    return str(Decimal(repr(round(float(x), 6))))
