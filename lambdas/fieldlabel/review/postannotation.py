"""The post-annotation (consolidation) step of the review job, with injected AWS clients.

Flow per invocation: stream the payload file -> validate answers -> look up the label under review -> EM seeded by
stored reviewer reliability -> write the answer log (for the job-wide reliability update in apply-review) ->
return the response in the largest tier that fits Lambda's response limit. See docs/review.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fieldlabel.review.consolidation import ConsolidationConfig, ConsolidationResult, WorkerPrior, consolidate
from fieldlabel.review.identity import resolve_identities
from fieldlabel.review.payload import (
    RESPONSE_TIERS,
    LabelUnderReview,
    ParsedObject,
    iter_json_array,
    json_size,
    label_under_review_from_line,
    parse_object,
    response_entry,
    review_content,
)
from fieldlabel.review.reliability import load_priors
from fieldlabel.review.s3io import iter_jsonl, open_object, split_s3_uri

ANSWER_LOG_PREFIX = "review-answers/"
LAMBDA_SYNC_RESPONSE_LIMIT = 6 * 1024 * 1024


class ResponseTooLargeError(RuntimeError):
    """Even the bare response does not fit Lambda's synchronous response limit."""


@dataclass(frozen=True)
class PostAnnotationSettings:
    """What the post-annotation step needs besides the event (parsed once from the environment by the handler)."""

    reviewers_table: str
    unknown_label: str
    artifacts_bucket: str | None = None
    consolidation: ConsolidationConfig = field(default_factory=ConsolidationConfig)
    response_budget_bytes: int = 5_500_000


@dataclass
class PostAnnotationOutcome:
    """The response for Ground Truth plus the figures the handler logs and emits as metrics."""

    response: list[dict[str, Any]]
    objects: int = 0
    answers: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    needs_adjudication: int = 0
    tier: str = "full"
    response_bytes: int = 0
    answer_log_uri: str | None = None
    model: str = ""
    identities: dict[str, int] = field(default_factory=dict)


def job_name_from_arn(arn: str) -> str:
    """``arn:aws:sagemaker:<r>:<acct>:labeling-job/<name>`` -> ``<name>``."""
    if ":labeling-job/" not in arn:
        raise ValueError(f"not a labeling-job ARN: {arn!r}")
    return arn.rsplit("/", 1)[-1]


class ManifestLookup(Mapping[str, tuple[str | None, LabelUnderReview | None]]):
    """source-ref -> (photo-id, label under review), read from the review job's input manifest on first use.

    The documented payload carries only ``dataObject.s3Uri``, not the manifest line, so the label a ``confirm``
    refers to is recovered from the manifest the job was created with (DescribeLabelingJob gives its URI).
    """

    # Warm containers reuse both: Ground Truth calls the function several times per job. The map is re-read when the
    # manifest's ETag changes, so a stale copy is never used even if a manifest is rewritten under the same key.
    _uri_cache: dict[str, str] = {}
    _map_cache: dict[str, tuple[str, dict[str, tuple[str | None, LabelUnderReview | None]]]] = {}

    def __init__(self, *, s3: Any, sagemaker: Any, job_name: str) -> None:
        self._s3, self._sagemaker, self._job = s3, sagemaker, job_name
        self._data: dict[str, tuple[str | None, LabelUnderReview | None]] | None = None
        self.manifest_uri: str | None = None

    @classmethod
    def clear_cache(cls) -> None:
        """Forget cached manifests (tests; a new deployment starts empty anyway)."""
        cls._uri_cache.clear()
        cls._map_cache.clear()

    def _load(self) -> dict[str, tuple[str | None, LabelUnderReview | None]]:
        if self._data is not None:
            return self._data
        uri = self._uri_cache.get(self._job)
        if uri is None:
            job = self._sagemaker.describe_labeling_job(LabelingJobName=self._job)
            uri = job["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
            self._uri_cache.clear()
            self._uri_cache[self._job] = uri
        self.manifest_uri = uri
        bucket, key = split_s3_uri(uri)
        etag = self._s3.head_object(Bucket=bucket, Key=key).get("ETag", "")
        cached = self._map_cache.get(uri)
        if cached is not None and cached[0] == etag:
            self._data = cached[1]
            return self._data
        data: dict[str, tuple[str | None, LabelUnderReview | None]] = {}
        for _, line in iter_jsonl(self._s3, uri):
            if line and isinstance(line.get("source-ref"), str):
                photo = line.get("photo-id") if isinstance(line.get("photo-id"), str) else None
                data[line["source-ref"]] = (photo, label_under_review_from_line(line))
        self._map_cache.clear()
        self._map_cache[uri] = (etag, data)
        self._data = data
        return data

    def __getitem__(self, key: str) -> tuple[str | None, LabelUnderReview | None]:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()


@dataclass(frozen=True)
class ConsolidatedObjects:
    """The consolidation of a list of parsed objects: the class list the result's indices refer to, and the result."""

    classes: list[str]
    result: ConsolidationResult
    workers: list[str]
    answers: int

    def label(self, i: int) -> str | None:
        """The consensus label of object ``i`` (None when it had no valid answer)."""
        return self.classes[self.result.label[i]] if self.result.label[i] >= 0 else None


def consolidate_objects(
    parsed: list[ParsedObject],
    *,
    valid_labels: set[str] | None,
    unknown_label: str,
    key_of: Mapping[str, str],
    dynamodb: Any,
    reviewers_table: str | None,
    config: ConsolidationConfig,
) -> ConsolidatedObjects:
    """Reliability-weighted consensus of every object's answers, seeded by the stored reviewer reliability.

    The one consolidation of human answers, whichever labeling backend collected them: the post-annotation Lambda
    calls it for a Ground Truth payload, the Label Studio backend for a batch's exported annotations.

    Args:
        parsed: the objects with their valid ``(worker id, label)`` answers.
        valid_labels: the label categories (None: the labels answered).
        unknown_label: the label of "not a tree / cannot tell".
        key_of: worker id -> reviewer key (the reviewers table's ``worker_id``); missing ids are their own key.
        dynamodb: boto3 DynamoDB client for the stored priors (None: every reviewer is new).
        reviewers_table: the reviewers table (None or empty: every reviewer is new).
        config: the consolidation's tunables.
    """
    classes = sorted(valid_labels) if valid_labels is not None else sorted(
        {lab for p in parsed for _, lab in p.answers})
    if len(classes) < 2:
        classes = sorted(set(classes) | {unknown_label, "\u0000other"})
    class_idx = {c: i for i, c in enumerate(classes)}
    workers = sorted({key_of.get(w, w) for p in parsed for w, _ in p.answers})
    worker_idx = {w: i for i, w in enumerate(workers)}
    items, ws, labs = [], [], []
    for i, p in enumerate(parsed):
        for w, lab in p.answers:
            items.append(i)
            ws.append(worker_idx[key_of.get(w, w)])
            labs.append(class_idx[lab])
    stored = load_priors(dynamodb, reviewers_table, workers) if workers and dynamodb is not None and \
        reviewers_table else {}
    result = consolidate(
        np.array(items, dtype=np.int64),
        np.array(ws, dtype=np.int64),
        np.array(labs, dtype=np.int64),
        n_items=len(parsed),
        n_workers=len(workers),
        n_classes=len(classes),
        priors=[stored.get(w, WorkerPrior()) for w in workers],
        config=config,
    )
    return ConsolidatedObjects(classes=classes, result=result, workers=workers, answers=len(items))


def consolidate_payload(
    event: dict[str, Any],
    *,
    s3: Any,
    dynamodb: Any,
    sagemaker: Any,
    settings: PostAnnotationSettings,
) -> PostAnnotationOutcome:
    """Consolidate one post-annotation request and build the response Ground Truth expects.

    Args:
        event: the post-annotation request (``labelingJobArn``, ``labelCategories``, ``labelAttributeName``,
            ``payload.s3Uri``).
        s3: boto3 S3 client (reads the payload and the review manifest, writes the answer log).
        dynamodb: boto3 DynamoDB client (reads reviewer priors).
        sagemaker: boto3 SageMaker client (DescribeLabelingJob, only when the payload lacks the label under review).
        settings: table names, unknown label, tunables.

    Returns:
        PostAnnotationOutcome whose ``response`` is returned to Ground Truth as is.

    Raises:
        KeyError/ValueError: if the request itself is malformed (no payload URI or job ARN).
        PayloadFormatError: if the payload file is not a JSON array.
        ResponseTooLargeError: if even the bare response exceeds the response budget.
    """
    job_name = job_name_from_arn(event["labelingJobArn"])
    label_attr = event.get("labelAttributeName") or "species-review"
    payload_uri = event["payload"]["s3Uri"]
    categories = [c for c in (event.get("labelCategories") or []) if isinstance(c, str) and c]
    valid = set(categories) | {settings.unknown_label} if categories else None
    lookup = ManifestLookup(s3=s3, sagemaker=sagemaker, job_name=job_name)

    def fetch(uri: str) -> str:
        return str(open_object(s3, uri).read().decode("utf-8"))

    parsed: list[ParsedObject] = []
    skipped_objects = 0
    for obj in iter_json_array(open_object(s3, payload_uri)):
        p = parse_object(obj, valid_labels=valid, unknown_label=settings.unknown_label, lookup=lookup, fetch=fetch)
        if p is None:
            skipped_objects += 1
            continue
        parsed.append(p)

    outcome = PostAnnotationOutcome(response=[], objects=len(parsed))
    if skipped_objects:
        outcome.skipped["object_without_id"] = skipped_objects
    for p in parsed:
        for reason, n in p.skipped.items():
            outcome.skipped[reason] = outcome.skipped.get(reason, 0) + n

    # Reliability follows the person: workerId -> Cognito sub from the job's worker-response files.
    answered: dict[str, list[str]] = {}
    for p in parsed:
        for w, _ in p.answers:
            answered.setdefault(w, []).append(p.dataset_object_id)
    ident = resolve_identities(s3, job_name=job_name, payload_uri=payload_uri, answered=answered)
    key_of = ident.keys
    outcome.identities = {"sub": ident.from_sub, "worker_id": ident.fallback, "reads": ident.reads,
                          "errors": len(ident.errors)}
    done = consolidate_objects(parsed, valid_labels=valid, unknown_label=settings.unknown_label, key_of=key_of,
                               dynamodb=dynamodb, reviewers_table=settings.reviewers_table,
                               config=settings.consolidation)
    classes, result = done.classes, done.result
    outcome.answers = done.answers
    outcome.model = result.model
    outcome.needs_adjudication = int(result.needs_adjudication.sum())

    if settings.artifacts_bucket:
        outcome.answer_log_uri = write_answer_log(
            s3, settings.artifacts_bucket, job_name, payload_uri, parsed, key_of
        )

    for tier in RESPONSE_TIERS:
        entries = [
            response_entry(
                p.dataset_object_id,
                label_attr,
                review_content(
                    label=classes[result.label[i]] if result.label[i] >= 0 else None,
                    confidence=result.confidence[i],
                    agreement=result.agreement[i],
                    needs_adjudication=bool(result.needs_adjudication[i]),
                    answers=int(result.answers[i]),
                    comments=p.comments,
                    skipped=sum(p.skipped.values()),
                    reasons=result.reasons(i),
                    tier=tier,
                ),
            )
            for i, p in enumerate(parsed)
        ]
        size = json_size(entries)
        if size <= settings.response_budget_bytes:
            outcome.response, outcome.tier, outcome.response_bytes = entries, tier, size
            return outcome
    raise ResponseTooLargeError(
        f"{len(parsed)} objects need {size} bytes even in the bare form (budget "
        f"{settings.response_budget_bytes}); split the review job (MAX_REVIEW_PHOTOS in select-review)"
    )


def write_answer_log(
    s3: Any, bucket: str, job_name: str, payload_uri: str, parsed: list[ParsedObject], key_of: Mapping[str, str]
) -> str:
    """Write every valid answer of this invocation to the artifacts bucket, keyed by the payload URI.

    (The Label Studio backend passes a ``label-studio://`` URI of the batch as ``payload_uri``, one log per batch.)

    The key is a hash of the payload URI, so a retried invocation overwrites its own log instead of adding a copy;
    apply-review reads all logs of the job to update reviewer reliability on the whole job at once. ``answers`` hold
    the reviewer keys (``sub:<sub>`` or the workerId) that reliability is stored under; ``worker_ids`` the job's
    workerIds in the same order.
    """
    digest = hashlib.sha256(payload_uri.encode()).hexdigest()[:32]
    key = f"{ANSWER_LOG_PREFIX}{job_name}/{digest}.jsonl"
    lines = (
        json.dumps(
            {
                "datasetObjectId": p.dataset_object_id,
                "source-ref": p.source_ref,
                "photo-id": p.photo_id,
                "answers": [[key_of.get(w, w), lab] for w, lab in p.answers],
                "worker_ids": [w for w, _ in p.answers],
                "comments": p.comments,
                "skipped": p.skipped,
            },
            separators=(",", ":"),
        )
        for p in parsed
    )
    s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode(), ContentType="application/x-ndjson")
    return f"s3://{bucket}/{key}"
