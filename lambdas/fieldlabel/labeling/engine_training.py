"""Train the chain's next model after a batch (``labeling.engine: model``; the "Train the model" state).

Every expert label so far counts: consolidated taxonomist labels, audit confirmations of machine labels and expert
corrections. Machine labels nobody audited never do (the model would learn its own mistakes). Each batch's expert
labels are stored once as a shard (``modelstore``), so training reads one object per batch, not the photos table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from fieldlabel.labeling.engine_prepare import DECISIONS_KEY
from fieldlabel.labeling.modelstore import (
    MODEL_FILE,
    Chain,
    LabelShard,
    allocate_version,
    iter_shards,
    publish_version,
    version_name,
    write_shard,
)
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.registry_io import iter_batch_items, update_batch
from fieldlabel.registry.model import LABELED, error_code

_PROJECTION = "photo_id, #s, label, label_source, human_annotated, review, embedding, embedding_model"


def is_expert_label(item: dict[str, Any]) -> bool:
    """True for a label a person gave or confirmed: taxonomists, expert corrections, audit confirmations."""
    source = item.get("label_source")
    if source in ("human", "expert_review"):
        return True
    review = item.get("review")
    return source == "machine" and isinstance(review, dict) and review.get("decision") == "confirmed"


def batch_shard(
    dynamodb: Any, *, photos_table: str, batch_id: str, labels: set[str], embedding_model: str,
    calibration: set[str], decode: Callable[[bytes], np.ndarray],
) -> tuple[LabelShard, dict[str, int]]:
    """The batch's expert labels with their embeddings, and counts of what was left out and why."""
    ids: list[str] = []
    ys: list[str] = []
    vecs: list[np.ndarray] = []
    flags: list[bool] = []
    left_out = {"machine_unaudited": 0, "no_embedding": 0, "label_not_in_taxonomy": 0}
    for item in iter_batch_items(dynamodb, photos_table, batch_id, status=LABELED):
        if not is_expert_label(item):
            left_out["machine_unaudited"] += 1
            continue
        if item.get("label") not in labels:
            left_out["label_not_in_taxonomy"] += 1
            continue
        raw = item.get("embedding")
        raw = getattr(raw, "value", raw)
        if not isinstance(raw, bytes | bytearray) or item.get("embedding_model") != embedding_model:
            left_out["no_embedding"] += 1
            continue
        ids.append(item["photo_id"])
        ys.append(item["label"])
        vecs.append(decode(bytes(raw)))
        flags.append(item["photo_id"] in calibration)
    dim = vecs[0].shape[0] if vecs else 0
    shard = LabelShard(
        batch_id=batch_id, photo_ids=np.asarray(ids, dtype=str), labels=np.asarray(ys, dtype=str),
        embeddings=np.stack(vecs).astype(np.float16) if vecs else np.zeros((0, dim), np.float16),
        random_slice=np.asarray(flags, dtype=bool),
    )
    return shard, left_out


def read_decisions(s3: Any, bucket: str, batch_id: str) -> dict[str, Any]:
    """The batch's ``engine-decisions.json`` (empty when prepare wrote none)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=DECISIONS_KEY.format(batch_id=batch_id))["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return {}
        raise
    return dict(json.loads(body))


def train_after_batch(
    *,
    dynamodb: Any,
    s3: Any,
    tables: Tables,
    batch_id: str,
    chain: Chain,
    labels: list[str],
    engine: Any,
    settings: Any,
    decode: Callable[[bytes], np.ndarray],
    now_iso: str,
) -> dict[str, Any]:
    """Store the batch's label shard, train on every shard of the chain, version the model and point at it.

    Returns:
        ``{"trained", "model", "version", "model_uri", "lineage_uri", "labels_used", "source_batches",
        "batch_labels", "left_out", "metrics", "pointer_moved"}``; ``trained: false`` with ``reason`` when there is
        too little to train on (fewer than two species with labels).
    """
    bucket = tables.artifacts_bucket
    decisions = read_decisions(s3, bucket, batch_id)
    shard, left_out = batch_shard(dynamodb, photos_table=tables.photos_table, batch_id=batch_id,
                                  labels=set(labels), embedding_model=chain.embedding_model,
                                  calibration=set(decisions.get("calibration") or []), decode=decode)
    write_shard(s3, bucket, chain, shard)

    shards = list(iter_shards(s3, bucket, chain))
    result: dict[str, Any] = {"batch_labels": len(shard), "left_out": left_out,
                              "source_batches": len(shards), "trained": False}
    n = sum(len(s) for s in shards)
    present = {str(y) for s in shards for y in s.labels}
    result["labels_used"] = n
    if len(present) < 2:
        result["reason"] = f"expert labels of {len(present)} species so far; training needs at least 2"
        return result
    x = np.concatenate([s.embeddings for s in shards if len(s)]).astype(np.float32)
    y = [str(v) for s in shards for v in s.labels]
    random_slice = np.concatenate([s.random_slice for s in shards if len(s)]).astype(bool)
    source_batches = [s.batch_id for s in shards if len(s)]
    lineage = {"taxonomy_hash": chain.taxonomy_hash, "embedding_model": chain.embedding_model,
               "labels_used": n, "random_slice_labels": int(random_slice.sum()),
               "source_batches": source_batches, "trained_after_batch": batch_id, "trained_at": now_iso,
               "labels": labels}
    model = engine.train_model(x, y, classes=labels, random_slice=random_slice, settings=settings, lineage=lineage)
    number = allocate_version(dynamodb, tables.batches_table, chain)
    metadata = json.loads(json.dumps(model.metadata, default=str))
    record = {**lineage, "version": version_name(number, batch_id), "model_file": MODEL_FILE, "metadata": metadata}
    pointer, moved = publish_version(
        dynamodb=dynamodb, s3=s3, batches_table=tables.batches_table, bucket=bucket, chain=chain, number=number,
        batch_id=batch_id, model_bytes=model.to_bytes(), lineage=record, trained_at=now_iso, labels_used=n)
    # Scalars only: per-species figures stay in lineage.json (the state's payload is limited to 256 KB).
    found = metadata.get("metrics") or metadata.get("validation") or metadata
    metrics = {k: v for k, v in dict(found).items()
               if k not in lineage and (v is None or isinstance(v, int | float | str | bool))}
    result.update({"trained": True, "model": pointer.name, "version": number, "model_uri": pointer.model_uri,
                   "lineage_uri": pointer.lineage_uri, "pointer_moved": moved, "metrics": metrics})
    update_batch(dynamodb, tables.batches_table, batch_id, {"trained_model": pointer.name, "updated_at": now_iso})
    return result
