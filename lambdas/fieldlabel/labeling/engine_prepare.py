"""Prepare a batch under ``labeling.engine: model``: score it with the chain's model, label what the engine certifies,
and write the taxonomists' manifest for the rest (docs/workflow.md, "The own engine").

Steps: read the batch's photos (``by_batch``, with their ``embedding``) -> compute embeddings intake did not store
(from ``labeling_ref``) and keep them on the photo -> load the chain's current model (none for the first batch) ->
``decide_batch`` -> machine labels for ``auto`` photos straight into the registry -> the human job's manifest with the
rest (the random calibration slice included), most informative first, each line carrying the model's suggestion and
its confidence -> the decisions file ``jobs/<batch_id>/engine-decisions.json`` (summary, model, calibration slice)
that training and publishing read back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from fieldlabel.common.s3uri import parse_s3_uri, s3_uri
from fieldlabel.labeling.backend import KIND_MODEL, BatchPhoto, LabelingBackend
from fieldlabel.labeling.prepare import INPUT_MANIFEST_KEY, EmptyBatchError, Tables, describe_existing_job
from fieldlabel.labeling.registry_io import batch_photo, get_batch, iter_batch_items, update_batch
from fieldlabel.registry.model import BATCHED, LABELED, error_code, to_attr

DECISIONS_KEY = "jobs/{batch_id}/engine-decisions.json"
# Manifest lines are spooled to /tmp past this size, as for Ground Truth's jobs.
_SPOOL_BYTES = 8 * 1024 * 1024
_EMBED_CHUNK = 32
# Time kept for deciding, labeling and writing the manifest after embedding (100,000 photos: about a minute).
EMBED_TIME_RESERVE_SECONDS = 180.0
_UPDATE_CONCURRENCY = 16
# Marks a labeling-job line for the pre-annotation Lambda (review lines have no ``task``).
LABELING_TASK = "label"


@dataclass(frozen=True)
class EngineContext:
    """What the engine step needs besides the tables: the chain, the settings and the label set."""

    taxonomy_hash: str
    labels: tuple[str, ...]
    settings: Any  # fieldlabel.engine.EngineSettings


def batch_seed(batch_id: str, base: int = 0) -> int:
    """A per-batch seed, so each batch draws its own calibration slice, reproducibly (a retry draws the same)."""
    return (int(hashlib.sha256(batch_id.encode()).hexdigest()[:8], 16) + base) % (2**31)


def _embedding_bytes(item: dict[str, Any]) -> bytes | None:
    raw = item.get("embedding")
    raw = getattr(raw, "value", raw)  # boto3's Binary
    return bytes(raw) if isinstance(raw, bytes | bytearray) and raw else None


def pil_open(data: bytes) -> Any:
    """Bytes -> RGB image with Pillow (used when the embedding package brings no decoder of its own)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def _load_image(s3: Any, uri: str, open_image: Callable[[bytes], Any]) -> Any:
    bucket, key = parse_s3_uri(uri)
    return open_image(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def compute_missing_embeddings(
    *, dynamodb: Any, s3: Any, photos_table: str, photos: list[BatchPhoto], embedder: Any, model_id: str,
    encode: Callable[[np.ndarray], bytes], open_image: Callable[[bytes], Any] = pil_open,
    time_left: Callable[[], float] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Embed photos intake left without a (current) embedding and store it on the photo item.

    Each vector is stored as soon as it is computed, so work done before a timeout is never lost. When
    ``time_left()`` (seconds) drops below :data:`EMBED_TIME_RESERVE_SECONDS` the remaining photos are left for the
    taxonomists without a suggestion: a batch whose photos all lack embeddings (say, after a change of embedding
    model) is still labeled, by people, instead of timing out.

    Returns:
        ``({photo_id: vector}, {photo_id: why it could not be embedded})``; a photo whose labeling copy cannot be
        read goes to the taxonomists without a suggestion.
    """
    vectors: dict[str, np.ndarray] = {}
    problems: dict[str, str] = {}
    for start in range(0, len(photos), _EMBED_CHUNK):
        chunk = photos[start:start + _EMBED_CHUNK]
        if time_left is not None and time_left() < EMBED_TIME_RESERVE_SECONDS:
            problems.update({p.photo_id: "no time left in this step to embed it" for p in photos[start:]})
            break
        images, ids = [], []
        for photo in chunk:
            try:
                images.append(_load_image(s3, photo.labeling_ref, open_image))
                ids.append(photo.photo_id)
            except Exception as exc:  # noqa: BLE001 - one unreadable copy must not stop the batch
                problems[photo.photo_id] = f"{type(exc).__name__}: {str(exc)[:200]}"
        if not images:
            continue
        matrix = np.asarray(embedder.embed_images(images), dtype=np.float32)
        for pid, vec in zip(ids, matrix, strict=True):
            vectors[pid] = vec
            dynamodb.update_item(
                TableName=photos_table, Key={"photo_id": {"S": pid}},
                UpdateExpression="SET embedding = :e, embedding_model = :m",
                ConditionExpression="attribute_exists(photo_id)",
                ExpressionAttributeValues={":e": {"B": encode(vec)}, ":m": {"S": model_id}},
            )
    return vectors, problems


def machine_label_update(*, photo_id: str, label: str, confidence: float, batch_id: str, photos_table: str,
                         model_name: str, now_iso: str) -> dict[str, Any]:
    """The UpdateItem that records one machine label (conditional on the photo still being in the batch)."""
    values = {":labeled": LABELED, ":batched": BATCHED, ":b": batch_id, ":label": label, ":conf": confidence,
              ":human": False, ":src": "machine", ":job": model_name, ":now": now_iso}
    return {
        "TableName": photos_table,
        "Key": {"photo_id": {"S": photo_id}},
        "UpdateExpression": "SET #s = :labeled, #l = :label, label_confidence = :conf, human_annotated = :human, "
                            "label_source = :src, job_name = :job, machine_model = :job, updated_at = :now",
        "ConditionExpression": "batch_id = :b AND (#s = :batched OR #s = :labeled)",
        "ExpressionAttributeNames": {"#s": "status", "#l": "label"},
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
    }


def _apply_all(dynamodb: Any, requests: Iterable[dict[str, Any]]) -> int:
    """Run the updates 16 at a time; returns how many photos had left the batch meanwhile."""
    def one(request: dict[str, Any]) -> int:
        try:
            dynamodb.update_item(**request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return 1
            raise
        return 0

    with ThreadPoolExecutor(max_workers=_UPDATE_CONCURRENCY) as pool:
        return sum(pool.map(one, list(requests)))


def _suggestion_fields(suggestion: str | None, confidence: float | None) -> dict[str, Any]:
    if suggestion is None:
        return {}
    conf = None if confidence is None else round(float(confidence), 4)
    return {"label-under-review": {"label": suggestion, "confidence": conf, "source": "model"}}


def prepare_engine_job(
    *,
    dynamodb: Any,
    s3: Any,
    sagemaker: Any,
    backend: LabelingBackend,
    tables: Tables,
    batch_id: str,
    context: EngineContext,
    embedding: Any,
    engine: Any,
    load_model: Callable[[str], Any],
    read_pointer: Callable[[str], Any],
    now_iso: str,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Decide the batch with the chain's model and prepare the taxonomists' job for the rest.

    Args:
        dynamodb, s3, sagemaker: boto3 clients.
        backend: the labeling backend (its ``build_job_request(kind="model")`` is the custom job).
        tables: registry tables and artifacts bucket.
        batch_id: the batch.
        context: taxonomy hash, labels and ``EngineSettings``.
        embedding: the ``fieldlabel.embedding`` module (``EMBEDDING_MODEL_ID``, ``EMBEDDING_DIM``,
            ``load_embedder``, ``encode_embedding``, ``decode_embedding``, ``open_image``).
        engine: the ``fieldlabel.engine`` module (``decide_batch``).
        load_model: model URI -> ``TrainedModel``.
        read_pointer: embedding model id -> the chain's ``ModelPointer`` or None.
        now_iso: ISO-8601 UTC timestamp.
        time_left: seconds left in the invocation (bounds the embedding of photos intake did not embed).

    Returns:
        As ``prepare_labeling_job`` plus ``human_count``, ``machine_count``, ``engine`` (the decision summary) and
        ``model`` (the version used, or None). ``human_count == 0`` means no job is needed (``request`` is None).

    Raises:
        EmptyBatchError: when no photo of the batch can be labeled.
    """
    job_name = backend.job_name(batch_id)
    existing = describe_existing_job(sagemaker, job_name)
    batch = get_batch(dynamodb, tables.batches_table, batch_id) or {}
    if existing is not None:
        update_batch(dynamodb, tables.batches_table, batch_id,
                     {"status": "LABELING", "job_name": job_name, "job_arn": existing.get("LabelingJobArn"),
                      "updated_at": now_iso})
        return {"exists": True, "job_name": job_name, "kind": KIND_MODEL,
                "job_status": existing.get("LabelingJobStatus"), "job_arn": existing.get("LabelingJobArn"),
                "human_count": batch.get("labeling_photo_count", 0)}

    model_id = embedding.EMBEDDING_MODEL_ID
    photos: list[BatchPhoto] = []
    stored: dict[str, np.ndarray] = {}
    missing: list[BatchPhoto] = []
    skipped = 0
    # LABELED photos of this batch are machine labels an earlier attempt of this step wrote; they are decided again.
    for item in iter_batch_items(dynamodb, tables.photos_table, batch_id):
        if item.get("status") not in (BATCHED, LABELED):
            continue
        if item.get("status") == LABELED and item.get("label_source") != "machine":
            continue
        photo = batch_photo(item)
        if photo is None:
            skipped += 1
            continue
        photos.append(photo)
        raw = _embedding_bytes(item)
        if raw is not None and item.get("embedding_model") == model_id:
            stored[photo.photo_id] = embedding.decode_embedding(raw).astype(np.float16)
        else:
            missing.append(photo)
    if not photos:
        raise EmptyBatchError(f"batch {batch_id} has no photo with a labeling copy ({skipped} skipped)")
    problems: dict[str, str] = {}
    if missing:
        computed, problems = compute_missing_embeddings(
            dynamodb=dynamodb, s3=s3, photos_table=tables.photos_table, photos=missing,
            embedder=embedding.load_embedder(), model_id=model_id, encode=embedding.encode_embedding,
            # The same decoding as intake's (the embedding package's), so both paths give the same vectors.
            open_image=getattr(embedding, "open_image", pil_open), time_left=time_left)
        stored.update({pid: vec.astype(np.float16) for pid, vec in computed.items()})

    photos.sort(key=lambda p: p.photo_id)
    scored = [p for p in photos if p.photo_id in stored]
    pointer = read_pointer(model_id)
    model = load_model(pointer.model_uri) if pointer is not None else None
    settings = dataclasses.replace(context.settings, seed=batch_seed(batch_id, int(context.settings.seed)))
    # Filled row by row (float16 vectors in, one float32 matrix out): 100,000 x 2,560 stays near 1.5 GB at peak.
    x = np.empty((len(scored), int(embedding.EMBEDDING_DIM)), dtype=np.float32)
    for i, p in enumerate(scored):
        x[i] = stored.pop(p.photo_id)
    decision = engine.decide_batch(model, x, [p.photo_id for p in scored], settings=settings)
    by_id = {d.photo_id: d for d in decision.items}

    model_name = pointer.name if pointer is not None else None
    auto = [d for d in decision.items if d.auto and d.suggestion is not None]
    machine_by_species = Counter(d.suggestion for d in auto)
    left_batch = _apply_all(dynamodb, (
        machine_label_update(photo_id=d.photo_id, label=str(d.suggestion), confidence=float(d.confidence or 0.0),
                             batch_id=batch_id, photos_table=tables.photos_table,
                             model_name=str(model_name), now_iso=now_iso)
        for d in auto))

    # Most informative first (the backend shows tasks roughly in manifest order); unscored photos last.
    human = [p for p in photos if not (p.photo_id in by_id and by_id[p.photo_id].auto)]
    human.sort(key=lambda p: (by_id[p.photo_id].priority if p.photo_id in by_id else 1 << 30, p.photo_id))
    manifest_uri = None
    if human:
        key = INPUT_MANIFEST_KEY.format(batch_id=batch_id)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b") as spool:
            for rank, photo in enumerate(human):
                d = by_id.get(photo.photo_id)
                line = {**backend.manifest_line(photo), "task": LABELING_TASK,
                        **_suggestion_fields(d.suggestion if d else None, d.confidence if d else None),
                        "engine": {"priority": rank, "calibration": bool(d.calibration) if d else False,
                                   "model": model_name}}
                spool.write(json.dumps(line, separators=(",", ":"), default=str).encode() + b"\n")
            spool.seek(0)
            s3.upload_fileobj(spool, tables.artifacts_bucket, key, ExtraArgs={"ContentType": "application/x-ndjson"})
        manifest_uri = s3_uri(tables.artifacts_bucket, key)

    summary = dict(decision.summary)
    summary["model"] = model_name
    summary["not_embedded"] = len(problems)
    # Embedded here because intake had not (0 when intake's embedding step did its job).
    summary["embedded_now"] = len(missing) - len(problems)
    decisions = {
        "batch_id": batch_id, "model": pointer.as_dict() if pointer is not None else None,
        "embedding_model": model_id, "taxonomy_hash": context.taxonomy_hash, "summary": summary,
        "calibration": sorted(d.photo_id for d in decision.items if d.calibration),
        "machine": sorted(d.photo_id for d in auto), "not_embedded": problems,
    }
    s3.put_object(Bucket=tables.artifacts_bucket, Key=DECISIONS_KEY.format(batch_id=batch_id),
                  Body=json.dumps(decisions, separators=(",", ":"), default=str).encode(),
                  ContentType="application/json")

    request = (backend.build_job_request(batch_id=batch_id, kind=KIND_MODEL, manifest_uri=manifest_uri)
               if manifest_uri else None)
    machine_count = len(auto) - left_batch
    update_batch(dynamodb, tables.batches_table, batch_id, {
        "status": "LABELING", "kind": KIND_MODEL, "job_name": job_name if request else None,
        "labeling_photo_count": len(human), "engine_machine_labeled": machine_count,
        # As JSON text: the engine's summary may hold values DynamoDB numbers cannot (e.g. an infinite threshold).
        "engine_machine_by_species": dict(sorted(machine_by_species.items())),
        "engine_summary": json.dumps(summary, separators=(",", ":"), default=str),
        "engine_model": model_name, "updated_at": now_iso,
    })
    return {
        "exists": False, "job_name": job_name, "kind": KIND_MODEL, "photo_count": len(photos),
        "human_count": len(human), "machine_count": machine_count, "skipped": skipped,
        "manifest_uri": manifest_uri, "initial_model_arn": None, "request": request,
        "engine": summary, "model": model_name,
    }
