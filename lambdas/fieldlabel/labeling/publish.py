"""Publish a batch as an immutable dataset version: ``datasets/v<NNNNNN>-<batch_id>/`` plus ``datasets/LATEST``.

Format: docs/dataset-format.md. The order of the writes is what keeps the registry, the batch and ``LATEST``
consistent after a crash at any point (docs/workflow.md, "Publishing after a crash"):

1. the version number is taken once and kept on the batch (``dataset_version_number``);
2. the version's files are written with ``IfNoneMatch="*"``: once written, never overwritten; a re-run finds its
   own files and goes on;
3. the batch becomes ``PUBLISHED`` with ``dataset_version`` (conditional: never another version, never a FAILED
   batch);
4. only then ``LATEST`` moves, forward only (compare-and-swap on its ETag, and only to a higher version number).

So ``LATEST`` never names a version whose batch is not ``PUBLISHED``, and a re-run of a batch already ``PUBLISHED``
skips straight to step 4.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.common.s3uri import parse_s3_uri, s3_uri
from fieldlabel.labeling.costing import batch_estimated_cost
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.registry_io import DATASET_COUNTER_KEY, get_batch, iter_batch_items
from fieldlabel.registry.model import FAILED, LABELED, PUBLISHED, error_code, from_item, to_attr

DATASETS_PREFIX = "datasets/"
LATEST_KEY = "datasets/LATEST"
MANIFEST_NAME = "dataset.manifest"
STATS_NAME = "statistics.json"
LINEAGE_NAME = "lineage.json"
FORMAT_VERSION = "1"
_SPOOL_BYTES = 8 * 1024 * 1024
_LATEST_RETRIES = 5
_ALLOCATE_RETRIES = 10


class VersionConflictError(RuntimeError):
    """A dataset file exists with content of another batch (never overwritten; needs an operator)."""


class PublishRefusedError(RuntimeError):
    """The batch cannot be marked published: it failed, or it is already published as another version."""


@dataclass(frozen=True)
class PublishInputs:
    """What the lineage record of a version is made of, besides the registry."""

    labels: list[str]
    label_attribute: str
    label_categories_uri: str
    ui_template_uri: str
    review_template_uri: str | None
    configuration: dict[str, Any]


def version_name(number: int, batch_id: str) -> str:
    """``v<NNNNNN>-<batch_id>``."""
    return f"v{number:06d}-{batch_id}"


def allocate_version(dynamodb: Any, batches_table: str, batch_id: str) -> int:
    """The batch's dataset version number: taken once from the ``#dataset-version`` counter, then kept.

    Taking the number and storing it on the batch is one transaction (the counter moves only if the batch has no
    number yet), so a crash leaves either both or neither: no gap, and never two numbers for one batch. A retry
    returns the number stored on the batch.
    """
    for _ in range(_ALLOCATE_RETRIES):
        batch = get_batch(dynamodb, batches_table, batch_id) or {}
        if isinstance(batch.get("dataset_version_number"), int):
            return int(batch["dataset_version_number"])
        counter = get_batch(dynamodb, batches_table, DATASET_COUNTER_KEY) or {}
        last = counter.get("last_version")
        number = int(last or 0) + 1
        try:
            dynamodb.transact_write_items(TransactItems=[
                {"Update": {
                    "TableName": batches_table, "Key": {"batch_id": {"S": DATASET_COUNTER_KEY}},
                    "UpdateExpression": "SET last_version = :n",
                    "ConditionExpression": "last_version = :last" if last is not None
                    else "attribute_not_exists(last_version)",
                    "ExpressionAttributeValues": {":n": {"N": str(number)},
                                                  **({":last": {"N": str(last)}} if last is not None else {})},
                }},
                {"Update": {
                    "TableName": batches_table, "Key": {"batch_id": {"S": batch_id}},
                    "UpdateExpression": "SET dataset_version_number = :n",
                    "ConditionExpression": "attribute_exists(batch_id) AND "
                                           "attribute_not_exists(dataset_version_number)",
                    "ExpressionAttributeValues": {":n": {"N": str(number)}},
                }},
            ])
            return number
        except ClientError as exc:
            if error_code(exc) not in ("TransactionCanceledException", "TransactionConflictException"):
                raise
            # Another batch took the number, or this batch got one meanwhile: read again.
    raise RuntimeError(f"could not take a dataset version number for {batch_id}; retry the step")


def dataset_line(item: dict[str, Any], *, labels: list[str], label_attribute: str) -> dict[str, Any] | None:
    """One augmented-manifest line of the dataset; None when the photo's label is not a known category."""
    label = item.get("label")
    if not isinstance(label, str) or label not in labels:
        return None
    original = item.get("original") or {}
    meta: dict[str, Any] = {
        "class-name": label,
        "human-annotated": "yes" if item.get("human_annotated") else "no",
        "label-source": item.get("label_source") or ("human" if item.get("human_annotated") else "machine"),
        "job-name": item.get("job_name"),
        "type": "groundtruth/image-classification",
        "labeled-at": item.get("updated_at"),
    }
    if item.get("label_confidence") is not None:
        meta["confidence"] = item["label_confidence"]
    review = item.get("review")
    if isinstance(review, dict):
        meta["review"] = {k: review.get(k) for k in ("decision", "reviewed_label", "label_under_review", "confidence",
                                                     "agreement", "needs_adjudication", "job_name")}
    line: dict[str, Any] = {
        "source-ref": item["labeling_ref"],
        label_attribute: labels.index(label),
        f"{label_attribute}-metadata": meta,
        "photo-id": item["photo_id"],
    }
    if original.get("bucket") and original.get("key"):
        line["original-ref"] = f"s3://{original['bucket']}/{original['key']}"
    if item.get("field"):
        line["field"] = item["field"]
    return line


def _sha256_of(s3: Any, uri: str | None) -> str | None:
    if not uri:
        return None
    bucket, key = parse_s3_uri(uri)
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _put_once(s3: Any, bucket: str, key: str, body: Any, *, content_type: str, owner_check: bytes | None) -> bool:
    """PUT unless the key exists. Returns True when written, False when our own earlier write is already there.

    Raises:
        VersionConflictError: when the existing object does not contain ``owner_check`` (another batch's file).
    """
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
        return True
    except ClientError as exc:
        if error_code(exc) not in ("PreconditionFailed", "412"):
            raise
    if owner_check is not None:
        head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()
        if owner_check not in head:
            raise VersionConflictError(f"s3://{bucket}/{key} exists and belongs to another batch")
    return False


def _advance_latest(s3: Any, bucket: str, pointer: dict[str, Any]) -> bool:
    """Point ``datasets/LATEST`` at ``pointer`` unless it already points at this or a newer version."""
    body = json.dumps(pointer, indent=1).encode()
    for _ in range(_LATEST_RETRIES):
        try:
            current = s3.get_object(Bucket=bucket, Key=LATEST_KEY)
            etag = current["ETag"]
            existing = json.loads(current["Body"].read())
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchKey", "404"):
                raise
            etag, existing = None, None
        if existing and int(existing.get("version_number", 0)) >= pointer["version_number"]:
            return False
        kwargs: dict[str, Any] = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(Bucket=bucket, Key=LATEST_KEY, Body=body, ContentType="application/json", **kwargs)
            return True
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise
    raise RuntimeError("datasets/LATEST kept changing while publishing; retry the step")


def publish_dataset(
    *,
    dynamodb: Any,
    s3: Any,
    tables: Tables,
    batch_id: str,
    inputs: PublishInputs,
    labeling: dict[str, Any],
    review: dict[str, Any] | None,
    now_iso: str,
    engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the batch's dataset version and move ``LATEST``; mark the batch PUBLISHED.

    Args:
        dynamodb: boto3 DynamoDB client.
        s3: boto3 S3 client.
        tables: registry tables and artifacts bucket.
        batch_id: the batch.
        inputs: labels, label attribute, asset URIs and configuration for the lineage record.
        labeling: the labeling statistics (process-output result).
        review: the apply-review result, or a note why there is none.
        now_iso: ISO-8601 UTC timestamp.
        engine: the own engine's block (decision, audit, training; ``engine_report.engine_statistics``), if any.

    Returns:
        ``{"version", "version_number", "prefix", "manifest_uri", "statistics_uri", "lineage_uri", "photos",
        "latest_moved"}``.

    Raises:
        VersionConflictError: when the version's files exist with another batch's content.
    """
    bucket = tables.artifacts_bucket
    batch = get_batch(dynamodb, tables.batches_table, batch_id) or {}
    if batch.get("status") == PUBLISHED and batch.get("dataset_version"):
        # A re-run after the batch was marked: its files are complete (they are written before the mark); only
        # LATEST may still lag behind.
        return _finish_published(s3, bucket, batch, now_iso)
    number = allocate_version(dynamodb, tables.batches_table, batch_id)
    version = version_name(number, batch_id)
    prefix = f"{DATASETS_PREFIX}{version}/"

    photos = skipped = human = 0
    by_species: dict[str, int] = {}
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b") as spool:
        for item in iter_batch_items(dynamodb, tables.photos_table, batch_id, status=LABELED):
            line = dataset_line(item, labels=inputs.labels, label_attribute=inputs.label_attribute)
            if line is None:
                skipped += 1
                continue
            spool.write(json.dumps(line, separators=(",", ":"), default=str).encode() + b"\n")
            photos += 1
            human += 1 if item.get("human_annotated") else 0
            by_species[item["label"]] = by_species.get(item["label"], 0) + 1
        spool.seek(0)
        first = spool.read(4096)
        spool.seek(0)
        # The first line names a photo of this batch; a file that lacks it belongs to someone else.
        _put_once(s3, bucket, prefix + MANIFEST_NAME, spool,
                  content_type="application/x-ndjson", owner_check=first.split(b"\n", 1)[0][:200] or None)

    statistics = {
        "format_version": FORMAT_VERSION,
        "batch_id": batch_id,
        "version": version,
        "photos": photos,
        "skipped_unknown_label": skipped,
        "human_labeled": human,
        "machine_labeled": photos - human,
        "by_species": dict(sorted(by_species.items())),
        "labeling": labeling,
        "review": review,
    }
    if engine is not None:
        statistics["engine"] = engine
    # After the counts: the estimate uses them (docs/cli.md, "Where the cost figures come from").
    reviewed = int((review or {}).get("reviewed") or 0)
    cost = batch_estimated_cost(
        dynamodb=dynamodb, batches_table=tables.batches_table, batch_id=batch_id,
        kind=batch.get("kind") or labeling.get("kind"), human_labeled=human, machine_labeled=photos - human,
        reviewed=reviewed, configuration=inputs.configuration, published_at=now_iso,
    )
    statistics["estimated_cost"] = cost
    lineage = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "version_number": number,
        "batch_id": batch_id,
        "published_at": now_iso,
        "job_name": batch.get("job_name") or labeling.get("job_name"),
        "job_arn": batch.get("job_arn"),
        "job_kind": batch.get("kind") or labeling.get("kind"),
        "initial_model_arn": batch.get("initial_model_arn"),
        "model_arn": batch.get("model_arn") or labeling.get("final_model_arn"),
        "taxonomy_hash": batch.get("taxonomy_hash"),
        "review_job_name": (review or {}).get("job_name"),
        "label_attribute": inputs.label_attribute,
        "labels": inputs.labels,
        "label_categories": {"uri": inputs.label_categories_uri, "hash": _sha256_of(s3, inputs.label_categories_uri)},
        "ui_template": {"uri": inputs.ui_template_uri, "hash": _sha256_of(s3, inputs.ui_template_uri)},
        "review_template": {"uri": inputs.review_template_uri, "hash": _sha256_of(s3, inputs.review_template_uri)}
        if inputs.review_template_uri
        else None,
        "configuration": inputs.configuration,
    }
    if engine is not None:
        # Which of the engine's models labeled this version, and which one it trained for the next batch.
        lineage["engine_model"] = (engine.get("decision") or {}).get("model")
        lineage["engine_trained_model"] = (engine.get("training") or {}).get("model")
    marker = f'"batch_id": "{batch_id}"'.encode()
    _put_once(s3, bucket, prefix + STATS_NAME, json.dumps(statistics, indent=1, default=str).encode(),
              content_type="application/json", owner_check=marker)
    _put_once(s3, bucket, prefix + LINEAGE_NAME, json.dumps(lineage, indent=1, default=str).encode(),
              content_type="application/json", owner_check=marker)

    # Statistics as written: a re-run whose statistics file already existed reports the first run's figures.
    written = json.loads(s3.get_object(Bucket=bucket, Key=prefix + STATS_NAME)["Body"].read())
    marked = mark_published(dynamodb, tables.batches_table, batch_id, version=version, number=number,
                            dataset_uri=s3_uri(bucket, prefix), statistics=written, now_iso=now_iso)
    return _finish_published(s3, bucket, marked, now_iso, statistics=written)


def mark_published(
    dynamodb: Any, batches_table: str, batch_id: str, *, version: str, number: int, dataset_uri: str,
    statistics: dict[str, Any], now_iso: str,
) -> dict[str, Any]:
    """Mark the batch ``PUBLISHED`` as ``version``; returns the batch item after the update.

    Conditional: the batch exists, is not ``FAILED`` (its photos went back to the pool), and carries no other
    ``dataset_version``. Repeating it for the same version changes nothing that matters.

    Raises:
        PublishRefusedError: when the condition fails.
    """
    cost = statistics.get("estimated_cost") or {}
    stats = {**{k: statistics.get(k) for k in ("photos", "human_labeled", "machine_labeled",
                                               "skipped_unknown_label")},
             "reviewed": int((statistics.get("review") or {}).get("reviewed") or 0),
             "estimated_cost_usd": cost.get("total_usd"), "estimated_savings_usd": cost.get("savings_usd")}
    try:
        resp = dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": batch_id}},
            UpdateExpression="SET #s = :published, dataset_version = :v, dataset_version_number = :n, "
                             "dataset_uri = :u, stats = :stats, published_at = if_not_exists(published_at, :now), "
                             "updated_at = :now REMOVE parked_step, park_reason",
            ConditionExpression="attribute_exists(batch_id) AND #s <> :failed AND "
                                "(attribute_not_exists(dataset_version) OR dataset_version = :v)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":published": to_attr(PUBLISHED), ":v": to_attr(version),
                                       ":n": to_attr(number), ":u": to_attr(dataset_uri), ":stats": to_attr(stats),
                                       ":now": to_attr(now_iso), ":failed": to_attr(FAILED)},
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        current = get_batch(dynamodb, batches_table, batch_id) or {}
        raise PublishRefusedError(
            f"batch {batch_id} cannot be published as {version}: it is {current.get('status') or 'missing'}"
            + (f" with {current['dataset_version']}" if current.get("dataset_version") else "")) from exc
    return from_item(resp.get("Attributes")) or {}


def _finish_published(s3: Any, bucket: str, batch: dict[str, Any], now_iso: str,
                      statistics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move ``LATEST`` for a batch already marked ``PUBLISHED`` and return the publish result."""
    version = str(batch["dataset_version"])
    number = int(batch["dataset_version_number"])
    prefix = f"{DATASETS_PREFIX}{version}/"
    if statistics is None:
        statistics = json.loads(s3.get_object(Bucket=bucket, Key=prefix + STATS_NAME)["Body"].read())
    manifest_uri = s3_uri(bucket, prefix + MANIFEST_NAME)
    moved = _advance_latest(s3, bucket, {
        "version": version, "version_number": number, "prefix": s3_uri(bucket, prefix), "manifest_uri": manifest_uri,
        "batch_id": batch["batch_id"], "published_at": batch.get("published_at") or now_iso,
    })
    return {
        "version": version,
        "version_number": number,
        "prefix": s3_uri(bucket, prefix),
        "manifest_uri": manifest_uri,
        "statistics_uri": s3_uri(bucket, prefix + STATS_NAME),
        "lineage_uri": s3_uri(bucket, prefix + LINEAGE_NAME),
        "photos": int(statistics.get("photos") or 0),
        "latest_moved": moved,
        "estimated_cost": statistics.get("estimated_cost") or {},
    }
