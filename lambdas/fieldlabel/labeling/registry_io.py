"""The workflow's reads and writes of the registry (photos and batches tables, docs/contracts.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.labeling.backend import BatchPhoto
from fieldlabel.registry.model import BY_BATCH_INDEX, error_code, from_item, to_attr

MODEL_CONTROL_PREFIX = "#model#"
DATASET_COUNTER_KEY = "#dataset-version"


def iter_batch_items(
    dynamodb: Any, photos_table: str, batch_id: str, *, status: str | None = None, projection: str | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the batch's photo items from the ``by_batch`` index page by page (never the whole batch at once).

    Args:
        dynamodb: boto3 DynamoDB client.
        photos_table: photos table name.
        batch_id: the batch.
        status: only photos with this status (a filter on the index query).
        projection: attribute names to read (comma-separated), all when None.
    """
    kwargs: dict[str, Any] = {
        "TableName": photos_table,
        "IndexName": BY_BATCH_INDEX,
        "KeyConditionExpression": "#b = :b",
        "ExpressionAttributeNames": {"#b": "batch_id"},
        "ExpressionAttributeValues": {":b": {"S": batch_id}},
    }
    if status is not None:
        kwargs["FilterExpression"] = "#s = :s"
        kwargs["ExpressionAttributeNames"]["#s"] = "status"
        kwargs["ExpressionAttributeValues"][":s"] = {"S": status}
    if projection:
        names = [p.strip() for p in projection.split(",")]
        kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
        kwargs["ExpressionAttributeNames"].update({f"#p{i}": n for i, n in enumerate(names)})
    while True:
        resp = dynamodb.query(**kwargs)
        for raw in resp.get("Items", []):
            yield from_item(raw) or {}
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def batch_photo(item: dict[str, Any]) -> BatchPhoto | None:
    """The labeling view of a photo item; None when it has nothing Ground Truth could show."""
    ref = item.get("labeling_ref")
    if not isinstance(ref, str) or not ref:
        return None
    original = item.get("original") or {}
    original_ref = (
        f"s3://{original['bucket']}/{original['key']}" if original.get("bucket") and original.get("key") else None
    )
    return BatchPhoto(photo_id=item["photo_id"], labeling_ref=ref, original_ref=original_ref,
                      field=dict(item.get("field") or {}))


def get_batch(dynamodb: Any, batches_table: str, batch_id: str) -> dict[str, Any] | None:
    """The batch item (strongly consistent), or None."""
    resp = dynamodb.get_item(TableName=batches_table, Key={"batch_id": {"S": batch_id}}, ConsistentRead=True)
    return from_item(resp.get("Item"))


def update_batch(dynamodb: Any, batches_table: str, batch_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """SET the given attributes on a batch item (None values are removed); returns the item after the update."""
    sets = {k: v for k, v in values.items() if v is not None}
    removes = [k for k, v in values.items() if v is None]
    names = {f"#a{i}": k for i, k in enumerate(list(sets) + removes)}
    rev = {v: k for k, v in names.items()}
    expr = ""
    if sets:
        expr += "SET " + ", ".join(f"{rev[k]} = :v{i}" for i, k in enumerate(sets))
    if removes:
        expr += " REMOVE " + ", ".join(rev[k] for k in removes)
    kwargs: dict[str, Any] = {
        "TableName": batches_table,
        "Key": {"batch_id": {"S": batch_id}},
        "UpdateExpression": expr.strip(),
        "ExpressionAttributeNames": names,
        "ReturnValues": "ALL_NEW",
    }
    if sets:
        kwargs["ExpressionAttributeValues"] = {f":v{i}": to_attr(v) for i, v in enumerate(sets.values())}
    resp = dynamodb.update_item(**kwargs)
    return from_item(resp.get("Attributes")) or {}


def model_key(label_set_hash: str) -> str:
    """``#model#<taxonomy hash>`` (:func:`fieldlabel.labeling.modelstore.taxonomy_hash`): one model per label set."""
    return MODEL_CONTROL_PREFIX + label_set_hash


def read_model(dynamodb: Any, batches_table: str, label_set_hash: str) -> dict[str, Any] | None:
    """The active-learning model the last automated job on this label set ended with (``#model#<hash>``).

    A model trained on another label set is never returned: its class indexes mean other species.
    """
    item = get_batch(dynamodb, batches_table, model_key(label_set_hash))
    if item is None or item.get("taxonomy_hash") != label_set_hash:
        return None
    return item


def record_model(
    dynamodb: Any, batches_table: str, *, model_arn: str, job_name: str, batch_id: str, completed_at: str,
    taxonomy_hash: str,
) -> bool:
    """Keep ``model_arn`` under the label set's key unless a job that completed later already put its own there.

    Returns:
        True when stored, False when a newer model was kept.
    """
    try:
        dynamodb.put_item(
            TableName=batches_table,
            Item={
                "batch_id": {"S": model_key(taxonomy_hash)},
                "model_arn": {"S": model_arn},
                "job_name": {"S": job_name},
                "source_batch_id": {"S": batch_id},
                "completed_at": {"S": completed_at},
                "taxonomy_hash": {"S": taxonomy_hash},
            },
            ConditionExpression="attribute_not_exists(batch_id) OR completed_at <= :t",
            ExpressionAttributeValues={":t": {"S": completed_at}},
        )
        return True
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
