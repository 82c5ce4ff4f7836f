"""Prepare a batch's labeling job: input manifest, job kind, model chaining, and the complete job request.

Also prepares the expert-review job request of a batch once select-review has written its manifest.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.common.s3uri import s3_uri
from fieldlabel.labeling.backend import KIND_AUTOMATED, LabelingBackend
from fieldlabel.labeling.registry_io import batch_photo, iter_batch_items, read_model, update_batch
from fieldlabel.registry.model import BATCHED

INPUT_MANIFEST_KEY = "jobs/{batch_id}/input.manifest"
# Manifest lines are spooled to /tmp past this size, so memory stays flat for a 100,000-photo batch.
_SPOOL_BYTES = 8 * 1024 * 1024


class EmptyBatchError(RuntimeError):
    """The batch has no photo that could be labeled (the failure path marks it failed)."""


@dataclass(frozen=True)
class Tables:
    """Where the workflow reads and writes."""

    photos_table: str
    batches_table: str
    artifacts_bucket: str


def describe_existing_job(sagemaker: Any, job_name: str) -> dict[str, Any] | None:
    """DescribeLabelingJob, or None when no job has that name."""
    try:
        resp = sagemaker.describe_labeling_job(LabelingJobName=job_name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ResourceNotFound", "ResourceNotFoundException", "ValidationException"):
            return None
        raise
    resp.pop("ResponseMetadata", None)
    return dict(resp)


def write_input_manifest(
    *, dynamodb: Any, s3: Any, backend: LabelingBackend, tables: Tables, batch_id: str
) -> tuple[str, int, int]:
    """Write ``jobs/<batch_id>/input.manifest`` from the batch's photos (``by_batch`` index, status BATCHED).

    Returns:
        ``(manifest URI, photos written, photos skipped for lack of a labeling copy)``.
    """
    key = INPUT_MANIFEST_KEY.format(batch_id=batch_id)
    written = skipped = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b") as spool:
        for item in iter_batch_items(dynamodb, tables.photos_table, batch_id, status=BATCHED):
            photo = batch_photo(item)
            if photo is None:
                skipped += 1
                continue
            spool.write(json.dumps(backend.manifest_line(photo), separators=(",", ":"), default=str).encode())
            spool.write(b"\n")
            written += 1
        if written:
            spool.seek(0)
            s3.upload_fileobj(spool, tables.artifacts_bucket, key,
                              ExtraArgs={"ContentType": "application/x-ndjson"})
    return s3_uri(tables.artifacts_bucket, key), written, skipped


def prepare_labeling_job(
    *,
    dynamodb: Any,
    s3: Any,
    sagemaker: Any,
    backend: LabelingBackend,
    tables: Tables,
    batch_id: str,
    automated_enabled: bool,
    now_iso: str,
    taxonomy_hash: str = "",
) -> dict[str, Any]:
    """Everything the state machine needs to run (or adopt) the batch's labeling job.

    ``taxonomy_hash`` is the label set of the job: an automated job chains only a model trained on the same one.

    A job that already exists under the batch's job name is adopted, never duplicated: the result then has
    ``exists: true`` and the workflow polls it instead of creating one.

    Returns:
        ``{"exists", "job_name", "kind", "photo_count", "manifest_uri", "initial_model_arn", "request"}``
        (``request`` is the complete CreateLabelingJob request; absent when the job exists).

    Raises:
        EmptyBatchError: when no photo of the batch can be labeled.
    """
    job_name = backend.job_name(batch_id)
    existing = describe_existing_job(sagemaker, job_name)
    if existing is not None:
        update_batch(dynamodb, tables.batches_table, batch_id,
                     {"status": "LABELING", "job_name": job_name, "job_arn": existing.get("LabelingJobArn"),
                      "updated_at": now_iso})
        kind = KIND_AUTOMATED if existing.get("LabelingJobAlgorithmsConfig") else "human_only"
        return {"exists": True, "job_name": job_name, "kind": kind,
                "job_status": existing.get("LabelingJobStatus"), "job_arn": existing.get("LabelingJobArn")}

    manifest_uri, count, skipped = write_input_manifest(
        dynamodb=dynamodb, s3=s3, backend=backend, tables=tables, batch_id=batch_id
    )
    if count == 0:
        raise EmptyBatchError(f"batch {batch_id} has no photo with a labeling copy ({skipped} skipped)")
    kind = backend.choose_kind(count, automated_enabled=automated_enabled)
    model = read_model(dynamodb, tables.batches_table, taxonomy_hash) if kind == KIND_AUTOMATED else None
    initial_model_arn = (model or {}).get("model_arn") or None
    request = backend.build_job_request(
        batch_id=batch_id, kind=kind, manifest_uri=manifest_uri, initial_model_arn=initial_model_arn
    )
    update_batch(
        dynamodb,
        tables.batches_table,
        batch_id,
        {"status": "LABELING", "kind": kind, "job_name": job_name, "labeling_photo_count": count,
         # photos left out of the manifest (no labeling copy): process quarantines them after the job
         "labeling_skipped": skipped, "taxonomy_hash": taxonomy_hash or None,
         "initial_model_arn": initial_model_arn, "updated_at": now_iso},
    )
    return {
        "exists": False,
        "job_name": job_name,
        "kind": kind,
        "photo_count": count,
        "skipped": skipped,
        "manifest_uri": manifest_uri,
        "initial_model_arn": initial_model_arn,
        "request": request,
    }


def prepare_review_job(
    *, dynamodb: Any, backend: LabelingBackend, tables: Tables, batch_id: str, manifest_uri: str, now_iso: str
) -> dict[str, Any]:
    """The CreateLabelingJob request of the batch's expert review (manifest written by select-review)."""
    request = backend.build_review_request(batch_id=batch_id, manifest_uri=manifest_uri)
    update_batch(dynamodb, tables.batches_table, batch_id,
                 {"status": "REVIEWING", "review_job_name": request["LabelingJobName"], "updated_at": now_iso})
    return {"job_name": request["LabelingJobName"], "manifest_uri": manifest_uri, "request": request}
