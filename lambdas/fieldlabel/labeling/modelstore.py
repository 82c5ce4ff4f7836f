"""Where the own engine's models and expert labels live (``labeling.engine: model``; docs/contracts.md).

A *chain* is one taxonomy (its hash) and one embedding model: a model trained on one chain's labels is never used
on another, so a taxonomy change or a new embedding model starts over. Per chain, in the artifacts bucket::

    models/<taxonomy-hash>/<embedding-model>/v<NNNNNN>-<batch_id>/model.bin       TrainedModel.to_bytes()
    models/<taxonomy-hash>/<embedding-model>/v<NNNNNN>-<batch_id>/lineage.json    labels used, metrics, batches
    models/<taxonomy-hash>/<embedding-model>/labels/<batch_id>.npz                the batch's expert labels

and a control item ``#engine-model#<taxonomy-hash>#<embedding-model>`` in the batches table pointing at the newest
version. Training reads one label shard per batch (O(batches) objects), never the whole photos table.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from fieldlabel.common.s3uri import parse_s3_uri, s3_uri
from fieldlabel.registry.model import error_code, from_item

MODELS_PREFIX = "models/"
CONTROL_PREFIX = "#engine-model#"
MODEL_FILE = "model.bin"
LINEAGE_FILE = "lineage.json"


def taxonomy_hash(labels: Sequence[str], unknown_label: str) -> str:
    """A short, stable hash of the label set in category order: the chain key a taxonomy change moves."""
    doc = json.dumps({"labels": list(labels), "unknown_label": unknown_label}, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _key_part(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:100]


@dataclass(frozen=True)
class Chain:
    """One model chain: a taxonomy and an embedding model."""

    taxonomy_hash: str
    embedding_model: str

    @property
    def prefix(self) -> str:
        return f"{MODELS_PREFIX}{self.taxonomy_hash}/{_key_part(self.embedding_model)}/"

    @property
    def control_key(self) -> str:
        return f"{CONTROL_PREFIX}{self.taxonomy_hash}#{self.embedding_model}"

    def version_prefix(self, name: str) -> str:
        return f"{self.prefix}{name}/"

    def shard_key(self, batch_id: str) -> str:
        return f"{self.prefix}labels/{batch_id}.npz"


@dataclass(frozen=True)
class ModelPointer:
    """The control item: the chain's newest model version."""

    version: int
    name: str
    model_uri: str
    lineage_uri: str
    source_batch_id: str
    trained_at: str
    labels_used: int

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.name, "model_uri": self.model_uri,
                "lineage_uri": self.lineage_uri, "source_batch_id": self.source_batch_id,
                "trained_at": self.trained_at, "labels_used": self.labels_used}


def version_name(number: int, batch_id: str) -> str:
    """``v<NNNNNN>-<batch_id>``."""
    return f"v{number:06d}-{batch_id}"


def read_pointer(dynamodb: Any, batches_table: str, chain: Chain) -> ModelPointer | None:
    """The chain's current model, or None before its first training."""
    resp = dynamodb.get_item(TableName=batches_table, Key={"batch_id": {"S": chain.control_key}},
                             ConsistentRead=True)
    item = from_item(resp.get("Item")) or {}
    if not isinstance(item.get("version"), int) or not item.get("model_uri"):
        return None
    return ModelPointer(version=int(item["version"]), name=str(item["name"]), model_uri=str(item["model_uri"]),
                        lineage_uri=str(item.get("lineage_uri", "")),
                        source_batch_id=str(item.get("source_batch_id", "")),
                        trained_at=str(item.get("trained_at", "")), labels_used=int(item.get("labels_used", 0)))


def read_bytes(s3: Any, uri: str) -> bytes:
    bucket, key = parse_s3_uri(uri)
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def allocate_version(dynamodb: Any, batches_table: str, chain: Chain) -> int:
    """The next version number of the chain (a counter on the control item; a crash leaves a gap, no twins)."""
    resp = dynamodb.update_item(
        TableName=batches_table, Key={"batch_id": {"S": chain.control_key}},
        UpdateExpression="ADD last_number :one", ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    return int(resp["Attributes"]["last_number"]["N"])


def publish_version(
    *, dynamodb: Any, s3: Any, batches_table: str, bucket: str, chain: Chain, number: int, batch_id: str,
    model_bytes: bytes, lineage: dict[str, Any], trained_at: str, labels_used: int,
) -> tuple[ModelPointer, bool]:
    """Write a model version and move the control item to it unless a newer version is already there.

    Returns:
        ``(pointer of this version, moved)``.
    """
    name = version_name(number, batch_id)
    prefix = chain.version_prefix(name)
    s3.put_object(Bucket=bucket, Key=prefix + MODEL_FILE, Body=model_bytes, ContentType="application/octet-stream")
    s3.put_object(Bucket=bucket, Key=prefix + LINEAGE_FILE, Body=json.dumps(lineage, indent=1, default=str).encode(),
                  ContentType="application/json")
    pointer = ModelPointer(version=number, name=name, model_uri=s3_uri(bucket, prefix + MODEL_FILE),
                           lineage_uri=s3_uri(bucket, prefix + LINEAGE_FILE), source_batch_id=batch_id,
                           trained_at=trained_at, labels_used=labels_used)
    try:
        dynamodb.update_item(
            TableName=batches_table, Key={"batch_id": {"S": chain.control_key}},
            UpdateExpression="SET #v = :v, #n = :n, model_uri = :m, lineage_uri = :l, source_batch_id = :b, "
                             "trained_at = :t, labels_used = :u, taxonomy_hash = :th, embedding_model = :em",
            # Batches can finish out of order; the pointer only moves forward.
            ConditionExpression="attribute_not_exists(#v) OR #v < :v",
            ExpressionAttributeNames={"#v": "version", "#n": "name"},
            ExpressionAttributeValues={
                ":v": {"N": str(number)}, ":n": {"S": name}, ":m": {"S": pointer.model_uri},
                ":l": {"S": pointer.lineage_uri}, ":b": {"S": batch_id}, ":t": {"S": trained_at},
                ":u": {"N": str(labels_used)}, ":th": {"S": chain.taxonomy_hash}, ":em": {"S": chain.embedding_model},
            },
        )
        return pointer, True
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return pointer, False


# ----------------------------------------------------------------------------------------------------- label shards


@dataclass
class LabelShard:
    """A batch's expert labels with their embeddings (float16) and whether each came from the random slice."""

    batch_id: str
    photo_ids: np.ndarray  # (n,) str
    labels: np.ndarray  # (n,) str
    embeddings: np.ndarray  # (n, D) float16
    random_slice: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return int(self.photo_ids.shape[0])


def write_shard(s3: Any, bucket: str, chain: Chain, shard: LabelShard) -> str:
    """Store the shard (``.npz``, no pickles); a retried training step overwrites its own shard."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf, photo_ids=np.asarray(shard.photo_ids, dtype=str), labels=np.asarray(shard.labels, dtype=str),
        embeddings=np.asarray(shard.embeddings, dtype=np.float16), random_slice=np.asarray(shard.random_slice, bool),
    )
    key = chain.shard_key(shard.batch_id)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue(), ContentType="application/octet-stream")
    return s3_uri(bucket, key)


def iter_shards(s3: Any, bucket: str, chain: Chain) -> Iterator[LabelShard]:
    """Every label shard of the chain, in key (batch id, i.e. time) order."""
    prefix = chain.prefix + "labels/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith(".npz"):
                continue
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            with np.load(io.BytesIO(body), allow_pickle=False) as data:
                yield LabelShard(batch_id=key[len(prefix):-len(".npz")], photo_ids=data["photo_ids"],
                                 labels=data["labels"], embeddings=data["embeddings"],
                                 random_slice=data["random_slice"])
