"""Process a finished labeling job's output: record each photo's label in the registry, collect statistics.

The output manifest (up to 100,000 lines) is streamed line by line from S3 and registry updates go out in bounded
windows, so memory stays flat whatever the batch size.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.common.s3uri import parse_s3_uri
from fieldlabel.labeling.backend import KIND_AUTOMATED, LabeledPhoto, LabelingBackend
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.registry_io import record_model, update_batch
from fieldlabel.registry.model import BATCHED, LABELED, error_code, to_attr

_WINDOW = 512
_FAILURE_SAMPLES = 20


class JobNotCompletedError(RuntimeError):
    """The job did not complete, so there is no output to process (the failure path takes over)."""


@dataclass
class LabelingStats:
    """Per-batch statistics of one labeling job."""

    job_name: str
    kind: str
    lines: int = 0
    labeled: int = 0
    human: int = 0
    machine: int = 0
    failed: int = 0
    bad_lines: int = 0
    not_in_batch: int = 0
    already_recorded: int = 0
    by_species: Counter[str] = field(default_factory=Counter)
    failure_reasons: Counter[str] = field(default_factory=Counter)
    failure_samples: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    released: int = 0
    parked: int = 0
    quarantined: int = 0
    final_model_arn: str | None = None
    model_recorded: bool = False
    stopped_early: bool = False  # the job was stopped: its labels are the part it finished

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (state output, batch item, dataset statistics)."""
        return {
            "job_name": self.job_name,
            "kind": self.kind,
            "lines": self.lines,
            "labeled": self.labeled,
            "human_labeled": self.human,
            "machine_labeled": self.machine,
            "automation_share": round(self.machine / self.labeled, 4) if self.labeled else 0.0,
            "failed": self.failed,
            "bad_lines": self.bad_lines,
            "not_in_batch": self.not_in_batch,
            "already_recorded": self.already_recorded,
            "by_species": dict(sorted(self.by_species.items())),
            "failure_reasons": dict(self.failure_reasons.most_common(10)),
            "failure_samples": self.failure_samples,
            "label_counters": self.counters,
            "released": self.released,
            "parked": self.parked,
            "quarantined": self.quarantined,
            "final_model_arn": self.final_model_arn,
            "model_recorded": self.model_recorded,
            "stopped_early": self.stopped_early,
        }


def iter_manifest(s3: Any, uri: str) -> Iterator[dict[str, Any] | None]:
    """Yield each line of a JSON Lines object as a dict (None for a line that is not a JSON object).

    Reads the S3 streaming body line by line; the object is never held in memory as a whole.
    """
    bucket, key = parse_s3_uri(uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for raw in body.iter_lines(chunk_size=64 * 1024):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield None
            continue
        yield obj if isinstance(obj, dict) else None


def label_update(photo: LabeledPhoto, *, batch_id: str, photos_table: str, now_iso: str) -> dict[str, Any]:
    """The UpdateItem request recording one label (conditional on the photo still belonging to the batch)."""
    values: dict[str, Any] = {
        ":labeled": LABELED, ":batched": BATCHED, ":b": batch_id, ":label": photo.label,
        ":human": bool(photo.human_annotated), ":job": photo.job_name or "", ":now": now_iso,
    }
    sets = ["#s = :labeled", "#l = :label", "human_annotated = :human", "job_name = :job", "updated_at = :now",
            "label_source = :src"]
    values[":src"] = "human" if photo.human_annotated else "machine"
    if photo.confidence is not None:
        values[":conf"] = photo.confidence
        sets.append("label_confidence = :conf")
    return {
        "TableName": photos_table,
        "Key": {"photo_id": {"S": photo.photo_id}},
        "UpdateExpression": "SET " + ", ".join(sets),
        # Only a photo still waiting for its label is written. A re-run (a retry, or `fieldlabel resume` at record)
        # finds the photos it already labeled LABELED and leaves them alone: an expert's correction made since is
        # never overwritten by the job's original label.
        "ConditionExpression": "batch_id = :b AND #s = :batched",
        "ExpressionAttributeNames": {"#s": "status", "#l": "label"},
        "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _apply(dynamodb: Any, request: dict[str, Any]) -> str:
    """``"done"``, ``"already"`` (LABELED in this batch by an earlier run) or ``"not_in_batch"``."""
    try:
        dynamodb.update_item(**request)
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        old = exc.response.get("Item")
        if old is None:  # the old item is not in the error: read it (strongly consistent)
            old = dynamodb.get_item(TableName=request["TableName"], Key=request["Key"],
                                    ConsistentRead=True).get("Item") or {}
        batch_id = request["ExpressionAttributeValues"][":b"]["S"]
        if old.get("status", {}).get("S") == LABELED and old.get("batch_id", {}).get("S") == batch_id:
            return "already"
        return "not_in_batch"
    return "done"


def record_labels(
    dynamodb: Any, photos: Iterable[LabeledPhoto], *, batch_id: str, photos_table: str, now_iso: str,
    stats: LabelingStats, concurrency: int,
) -> None:
    """Write the labels in windows of concurrent UpdateItems; failed photos are only counted here."""
    pending: list[dict[str, Any]] = []

    def flush(pool: ThreadPoolExecutor) -> None:
        for outcome in pool.map(lambda r: _apply(dynamodb, r), pending):
            if outcome == "already":
                stats.already_recorded += 1
            elif outcome == "not_in_batch":
                stats.not_in_batch += 1
        pending.clear()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for photo in photos:
            if photo.photo_id is None:
                stats.bad_lines += 1
                continue
            if photo.failed:
                stats.failed += 1
                stats.failure_reasons[(photo.failure_reason or "unknown")[:200]] += 1
                if len(stats.failure_samples) < _FAILURE_SAMPLES:
                    stats.failure_samples.append(photo.photo_id)
                continue
            stats.labeled += 1
            stats.by_species[photo.label or ""] += 1
            if photo.human_annotated:
                stats.human += 1
            else:
                stats.machine += 1
            pending.append(label_update(photo, batch_id=batch_id, photos_table=photos_table, now_iso=now_iso))
            if len(pending) >= _WINDOW:
                flush(pool)
        if pending:
            flush(pool)


def process_output(
    *,
    dynamodb: Any,
    s3: Any,
    backend: LabelingBackend,
    tables: Tables,
    batch_id: str,
    kind: str,
    job: dict[str, Any],
    now_iso: str,
    release_unlabeled: Callable[[str], tuple[int, int, int]],
    expected_count: int | None = None,
    left_out: int = 0,
    taxonomy_hash: str = "",
    concurrency: int = 16,
) -> dict[str, Any]:
    """Record a finished job's labels, release the photos it could not label, keep its model for the next job.

    A job stopped after labeling some objects (``JobResult.stopped_with_labels``) is processed the same way: the
    labels it wrote before the stop are paid for and recorded, and every photo it did not label is released.

    Args:
        dynamodb: boto3 DynamoDB client (thread-safe).
        s3: boto3 S3 client.
        backend: the labeling backend that ran the job.
        tables: registry tables and artifacts bucket.
        batch_id: the batch.
        kind: ``automated`` or ``human_only``.
        job: the job description (DescribeLabelingJob response / ``createLabelingJob.sync`` output).
        now_iso: ISO-8601 UTC timestamp.
        release_unlabeled: called with a reason when photos of the batch remain without a label; returns
            ``(released, parked, quarantined)``.
        expected_count: photos in the job's input manifest; when every one of them got a label and no photo was
            left out of the manifest, nothing is released (unknown: always check).
        left_out: photos of the batch the manifest left out (no labeling copy); they are still BATCHED and are
            handed to ``release_unlabeled`` too (which quarantines them).
        taxonomy_hash: the label set the job used; the model is kept under it (``#model#<hash>``).
        concurrency: parallel registry updates.

    Returns:
        The batch's labeling statistics (:meth:`LabelingStats.as_dict`).

    Raises:
        JobNotCompletedError: when the job is neither ``Completed`` nor stopped with labels.
    """
    result = backend.job_result(job)
    if not (result.completed or result.stopped_with_labels) or not result.output_manifest_uri:
        raise JobNotCompletedError(f"job {result.job_name} is {result.status}: {result.failure_reason or 'no output'}")
    stats = LabelingStats(job_name=result.job_name, kind=kind, counters=result.counters.as_dict(),
                          final_model_arn=result.final_model_arn, stopped_early=not result.completed)

    def parsed() -> Iterator[LabeledPhoto]:
        for line in iter_manifest(s3, result.output_manifest_uri or ""):
            stats.lines += 1
            if line is None:
                stats.bad_lines += 1
                continue
            yield backend.parse_output_line(line)

    record_labels(dynamodb, parsed(), batch_id=batch_id, photos_table=tables.photos_table, now_iso=now_iso,
                  stats=stats, concurrency=concurrency)
    # Whatever is still BATCHED now came back without a label (failed objects, or lines missing from the output).
    reason = f"not labeled by {result.job_name}" + ("" if result.completed else " (the job was stopped)")
    if stats.failure_reasons:
        reason += f": {stats.failure_reasons.most_common(1)[0][0]}"
    recorded = stats.labeled - stats.not_in_batch
    if expected_count is None or left_out or stats.failed or stats.bad_lines or recorded < expected_count:
        stats.released, stats.parked, stats.quarantined = release_unlabeled(reason)

    if kind == KIND_AUTOMATED and result.final_model_arn:
        stats.model_recorded = record_model(
            dynamodb, tables.batches_table, model_arn=result.final_model_arn, job_name=result.job_name,
            batch_id=batch_id, completed_at=now_iso, taxonomy_hash=taxonomy_hash,
        )
    update_batch(
        dynamodb, tables.batches_table, batch_id,
        {"job_name": result.job_name, "job_arn": result.job_arn, "model_arn": result.final_model_arn,
         "labeling_stats": stats.as_dict(), "updated_at": now_iso},
    )
    return stats.as_dict()
