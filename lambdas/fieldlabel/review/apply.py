"""Applying a finished review job: registry corrections, reviewer reliability, machine-label accuracy.

Input is the review job's output manifest (one line per reviewed photo: the review-manifest line plus Ground Truth's
``species-review`` and ``species-review-metadata``) and the answer logs the post-annotation function wrote under
``review-answers/<job-name>/``. See docs/review.md, "Apply review".
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from boto3.dynamodb.types import TypeSerializer

from fieldlabel.common.s3uri import parse_s3_uri
from fieldlabel.review.accuracy import AccuracyTally
from fieldlabel.review.consolidation import ConsolidationConfig, WorkerPrior, consolidate
from fieldlabel.review.payload import label_under_review_from_line
from fieldlabel.review.postannotation import ANSWER_LOG_PREFIX
from fieldlabel.review.reliability import load_priors, record_job
from fieldlabel.review.s3io import iter_jsonl

_SER = TypeSerializer()
_WINDOW = 256

OUTCOMES = ("confirmed", "corrected", "cannot_tell", "needs_adjudication", "no_answer")


@dataclass(frozen=True)
class ApplySettings:
    """Table and bucket names plus the thresholds of the apply step (from the environment)."""

    photos_table: str
    reviewers_table: str
    artifacts_bucket: str
    unknown_label: str
    correction_threshold: float = 0.9
    label_attribute: str = "species-review"
    # s3:// URI of the job's label-category file (a CDK asset); empty = only the labels seen in answers.
    label_categories_uri: str = ""
    consolidation: ConsolidationConfig = field(default_factory=ConsolidationConfig)
    concurrency: int = 8


def decide(review: Any, label_under_review: str | None, *, unknown_label: str, threshold: float) -> str:
    """Outcome of one reviewed photo (one of OUTCOMES).

    A consensus that differs from the label under review changes the registry only when it is confident
    (``confidence >= threshold``) and not flagged for adjudication.
    """
    if not isinstance(review, dict) or not isinstance(review.get("label"), str) or not review["label"]:
        return "no_answer"
    if review.get("needs_adjudication"):
        return "needs_adjudication"
    if review["label"] == label_under_review:
        return "confirmed"
    conf = review.get("confidence")
    if not isinstance(conf, int | float) or conf < threshold:
        return "needs_adjudication"
    return "cannot_tell" if review["label"] == unknown_label else "corrected"


def _dec(x: Any) -> Any:
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, float | int):
        return Decimal(repr(round(float(x), 6)))
    if isinstance(x, dict):
        return {k: _dec(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec(v) for v in x]
    return x


def registry_update(
    photo_id: str,
    *,
    batch_id: str,
    outcome: str,
    review: dict[str, Any],
    label_under_review: str | None,
    source: str | None,
    job_name: str | None,
    now_iso: str,
    photos_table: str,
) -> dict[str, Any]:
    """The UpdateItem request for one reviewed photo (pure, so tests can validate it against botocore's model)."""
    record = {
        "decision": outcome,
        "reviewed_label": review.get("label") if isinstance(review, dict) else None,
        "label_under_review": label_under_review,
        "label_source": source,
        "confidence": review.get("confidence") if isinstance(review, dict) else None,
        "agreement": review.get("agreement") if isinstance(review, dict) else None,
        "needs_adjudication": bool(review.get("needs_adjudication")) if isinstance(review, dict) else True,
        "answers": review.get("answers") if isinstance(review, dict) else 0,
        # Absent (None) when the response came in the ``bare`` tier, which drops the reasons to fit.
        "reasons": [r for r in review["reasons"] if isinstance(r, str)]
        if isinstance(review, dict) and isinstance(review.get("reasons"), list)
        else None,
        "job_name": job_name,
        "reviewed_at": now_iso,
    }
    values: dict[str, Any] = {":review": _dec(record), ":now": now_iso, ":b": batch_id}
    sets = ["review = :review", "updated_at = :now"]
    if outcome in ("corrected", "cannot_tell") and label_under_review:
        values[":new"] = review["label"]
        values[":old"] = label_under_review
        values[":src"] = "expert_review"
        sets += ["#label = :new", "label_source = :src"]
        # The first label a photo got from the model is kept for good, even if it is reviewed again later.
        sets.append(
            "machine_label = if_not_exists(machine_label, :old)" if source == "machine" else "previous_label = :old"
        )
    request: dict[str, Any] = {
        "TableName": photos_table,
        "Key": {"photo_id": {"S": photo_id}},
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": "attribute_exists(photo_id) AND batch_id = :b",
        "ExpressionAttributeValues": {k: _SER.serialize(v) for k, v in values.items()},
    }
    if "#label = :new" in sets:
        request["ExpressionAttributeNames"] = {"#label": "label"}
    return request


@dataclass
class ApplyOutcome:
    """Figures for the batch summary and dataset statistics."""

    reviewed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    bad_lines: int = 0
    not_in_batch: int = 0
    tally: AccuracyTally = field(default_factory=AccuracyTally)
    unverifiable: int = 0
    reviewers: dict[str, int] = field(default_factory=dict)
    job_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The state output (docs/review.md, "apply-review")."""
        acc = self.tally.summary()
        return {
            "reviewed": self.reviewed,
            "audited": acc["overall"]["n"],
            "machine_accuracy": acc,
            "corrections": self.outcomes["corrected"] + self.outcomes["cannot_tell"],
            "needs_adjudication": self.outcomes["needs_adjudication"],
            "outcomes": {k: self.outcomes[k] for k in OUTCOMES},
            "unverifiable_audits": self.unverifiable,
            "bad_lines": self.bad_lines,
            "not_in_batch": self.not_in_batch,
            "reviewers": self.reviewers,
            "job_name": self.job_name,
        }


def apply_review(
    *,
    s3: Any,
    dynamodb: Any,
    batch_id: str,
    output_manifest_uri: str,
    settings: ApplySettings,
    now_iso: str,
    job_name: str | None = None,
) -> ApplyOutcome:
    """Apply a finished review job to the registry and the reviewers table.

    Args:
        s3: boto3 S3 client.
        dynamodb: boto3 DynamoDB client (thread-safe; updates run ``settings.concurrency`` at a time).
        batch_id: the batch the review belongs to (updates are conditional on the photo's ``batch_id``).
        output_manifest_uri: ``LabelingJobOutput.OutputDatasetS3Uri`` of the review job.
        settings: names and thresholds.
        now_iso: ISO-8601 UTC timestamp.
        job_name: the review job's name; read from ``species-review-metadata.job_name`` when omitted.

    Returns:
        ApplyOutcome.
    """
    out = ApplyOutcome(job_name=job_name)
    attr = settings.label_attribute
    pending: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(settings.concurrency, 1)) as pool:
        for _, line in iter_jsonl(s3, output_manifest_uri):
            photo_id = line.get("photo-id") if line else None
            if not line or not isinstance(photo_id, str):
                out.bad_lines += 1
                continue
            if out.job_name is None:
                meta = line.get(f"{attr}-metadata") or {}
                out.job_name = meta.get("job_name") or meta.get("job-name")
            lur = label_under_review_from_line(line)
            review = line.get(attr)
            outcome = decide(
                review,
                lur.label if lur else None,
                unknown_label=settings.unknown_label,
                threshold=settings.correction_threshold,
            )
            out.reviewed += 1
            out.outcomes[outcome] += 1
            if line.get("review-reason") == "audit" and lur is not None and lur.source == "machine":
                if outcome in ("confirmed", "corrected") and isinstance(review, dict):
                    stratum = line.get("audit-stratum") or {}
                    out.tally.add(lur.label, review["label"], stratum.get("size"))
                else:
                    out.unverifiable += 1
            pending.append(
                registry_update(
                    photo_id,
                    batch_id=batch_id,
                    outcome=outcome,
                    review=review if isinstance(review, dict) else {},
                    label_under_review=lur.label if lur else None,
                    source=lur.source if lur else None,
                    job_name=out.job_name,
                    now_iso=now_iso,
                    photos_table=settings.photos_table,
                )
            )
            if len(pending) >= _WINDOW:
                out.not_in_batch += sum(pool.map(lambda r: _update(dynamodb, r), pending))
                pending = []
        if pending:
            out.not_in_batch += sum(pool.map(lambda r: _update(dynamodb, r), pending))

    if out.job_name:
        out.reviewers = update_reliability(
            s3=s3, dynamodb=dynamodb, job_name=out.job_name, settings=settings, now_iso=now_iso
        )
    return out


def _update(dynamodb: Any, request: dict[str, Any]) -> int:
    """Run one UpdateItem; 1 when the photo is not (or no longer) in the batch."""
    try:
        dynamodb.update_item(**request)
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return 1
    return 0


def update_reliability(
    *, s3: Any, dynamodb: Any, job_name: str, settings: ApplySettings, now_iso: str
) -> dict[str, int]:
    """Re-run the consolidation on all answers of the job and add each reviewer's counts to the reviewers table.

    Doing this once per job (rather than per post-annotation call) sees every answer of a reviewer together and
    cannot double-count a retried Ground Truth invocation: the answer logs are keyed by payload.
    """
    answers: list[tuple[int, str, str]] = []
    n_items = 0
    paginator = s3.get_paginator("list_objects_v2")
    prefix = f"{ANSWER_LOG_PREFIX}{job_name}/"
    seen_objects: set[str] = set()
    for page in paginator.paginate(Bucket=settings.artifacts_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            for _, rec in iter_jsonl(s3, f"s3://{settings.artifacts_bucket}/{obj['Key']}"):
                if not rec or not isinstance(rec.get("answers"), list):
                    continue
                # An object answered in two invocations (a Ground Truth retry with a new payload) counts once.
                oid = str(rec.get("datasetObjectId"))
                if oid in seen_objects:
                    continue
                seen_objects.add(oid)
                for pair in rec["answers"]:
                    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair):
                        answers.append((n_items, pair[0], pair[1]))
                n_items += 1
    if not answers:
        return {"updated": 0, "already_applied": 0}
    classes = set(_label_categories(s3, settings)) | {a[2] for a in answers} | {settings.unknown_label}
    class_idx = {c: i for i, c in enumerate(sorted(classes))}
    workers = sorted({a[1] for a in answers})
    worker_idx = {w: i for i, w in enumerate(workers)}
    stored = load_priors(dynamodb, settings.reviewers_table, workers)
    res = consolidate(
        np.array([a[0] for a in answers]),
        np.array([worker_idx[a[1]] for a in answers]),
        np.array([class_idx[a[2]] for a in answers]),
        n_items=n_items,
        n_workers=len(workers),
        n_classes=max(len(class_idx), 2),
        priors=[stored.get(w, WorkerPrior()) for w in workers],
        config=settings.consolidation,
    )
    stats = {w: (float(res.worker_answers[i]), float(res.worker_expected_correct[i])) for i, w in enumerate(workers)}
    return record_job(dynamodb, settings.reviewers_table, job_name, stats, now_iso=now_iso)


def _label_categories(s3: Any, settings: ApplySettings) -> list[str]:
    """Labels of the label-category file, so reviewers' reliability covers every class, not just those answered.

    Raises:
        botocore.exceptions.ClientError: when a configured file cannot be read (a wrong URI must not go unnoticed).
    """
    if not settings.label_categories_uri:
        return []
    bucket, key = parse_s3_uri(settings.label_categories_uri)
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return [x["label"] for x in doc.get("labels", []) if isinstance(x, dict) and isinstance(x.get("label"), str)]
