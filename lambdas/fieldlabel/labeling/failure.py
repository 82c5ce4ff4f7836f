"""The failure path of a batch: undo this run's labels, release the photos, mark the batch failed.

A failed batch publishes nothing, so labels its run already recorded would never reach a dataset; they are
discarded (the photo goes back to BATCHED) and intake's release rule then returns every photo of the batch to the
pending pool, or parks it after too many attempts. Nothing stays in limbo.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.labeling.registry_io import iter_batch_items
from fieldlabel.registry.model import BATCHED, LABELED, error_code

_REASON_MAX = 1000


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


def unlabel_batch(dynamodb: Any, *, photos_table: str, batch_id: str, now_iso: str) -> int:
    """Put this batch's LABELED photos back to BATCHED, removing the run's label; returns how many."""
    count = 0
    for item in iter_batch_items(dynamodb, photos_table, batch_id, status=LABELED, projection="photo_id"):
        try:
            dynamodb.update_item(
                TableName=photos_table,
                Key={"photo_id": {"S": item["photo_id"]}},
                UpdateExpression="SET #s = :batched, updated_at = :now "
                                 "REMOVE #l, label_confidence, human_annotated, job_name, label_source",
                ConditionExpression="#s = :labeled AND batch_id = :b",
                ExpressionAttributeNames={"#s": "status", "#l": "label"},
                ExpressionAttributeValues={":batched": {"S": BATCHED}, ":labeled": {"S": LABELED},
                                           ":b": {"S": batch_id}, ":now": {"S": now_iso}},
            )
            count += 1
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
    return count


def fail_batch(
    *,
    dynamodb: Any,
    photos_table: str,
    batch_id: str,
    error: dict[str, Any] | None,
    now_iso: str,
    release: Callable[[str], tuple[int, int]],
) -> dict[str, Any]:
    """Discard this run's labels, release the batch's photos and mark the batch FAILED (via ``release``).

    Args:
        dynamodb: boto3 DynamoDB client.
        photos_table: photos table name.
        batch_id: the failed batch.
        error: the Step Functions error object that sent the execution here.
        now_iso: ISO-8601 UTC timestamp.
        release: intake's release for a failed batch, given the reason; returns ``(released, parked)``.

    Returns:
        ``{"reason", "released", "parked", "discarded_labels"}``.
    """
    reason = failure_reason(error)
    discarded = unlabel_batch(dynamodb, photos_table=photos_table, batch_id=batch_id, now_iso=now_iso)
    released, parked = release(reason)
    return {"reason": reason, "released": released, "parked": parked, "discarded_labels": discarded}
