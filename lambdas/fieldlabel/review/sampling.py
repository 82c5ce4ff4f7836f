"""Choosing which photos of a labeled batch go to expert review, and writing the review manifest.

Two reasons to review a photo (docs/review.md, "Sampling"):

* ``audit``: a random sample of the machine-labeled photos at ``AUDIT_SAMPLE_RATE``, stratified by machine label.
  The sample is a pure function of (batch id, photo ids, labels): every photo gets the key
  sha256("<batch_id>:<photo_id>") and the lowest keys win, so a retried step picks the same photos.
* ``low_confidence``: every human-labeled photo whose ``label_confidence`` is below ``LOW_CONFIDENCE_THRESHOLD``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

_DESER = TypeDeserializer()
_BATCH_GET_MAX = 100


@dataclass(frozen=True)
class Candidate:
    """The few attributes of a labeled photo the selection needs."""

    photo_id: str
    label: str
    confidence: float | None
    human: bool


@dataclass(frozen=True)
class Selection:
    """The photos chosen for review, with the stratum sizes apply-review needs to weight the audit."""

    audit: dict[str, list[str]]  # machine label -> chosen photo ids
    stratum_sizes: dict[str, int]  # machine label -> machine-labeled photos in the batch
    low_confidence: list[str]

    @property
    def count(self) -> int:
        """Number of photos to review."""
        return sum(len(v) for v in self.audit.values()) + len(self.low_confidence)


@dataclass(frozen=True)
class SamplingSettings:
    """Tunables of the selection (from the environment)."""

    audit_sample_rate: float = 0.05
    low_confidence_threshold: float = 0.7
    max_review_photos: int = 30_000


def sample_key(batch_id: str, photo_id: str) -> str:
    """The deterministic random key of a photo within a batch (lower = chosen first)."""
    return hashlib.sha256(f"{batch_id}:{photo_id}".encode()).hexdigest()


def allocate(stratum_sizes: dict[str, int], budget: int, batch_id: str) -> dict[str, int]:
    """Split an audit budget over strata (machine labels).

    Every stratum gets one sample when the budget covers all strata; the rest is shared in proportion to stratum size
    (largest remainder). With a budget smaller than the number of strata, the strata are drawn with probability
    proportional to their size (deterministic, seeded by the batch id) and get one sample each.

    Args:
        stratum_sizes: label -> number of machine-labeled photos (> 0).
        budget: total number of audit samples.
        batch_id: seed.

    Returns:
        label -> number of samples (never more than the stratum size).
    """
    strata = {k: v for k, v in stratum_sizes.items() if v > 0}
    total = sum(strata.values())
    budget = max(0, min(budget, total))
    if budget == 0:
        return {}
    if budget < len(strata):
        # Efraimidis-Spirakis weighted sampling without replacement: key = u^(1/w), highest keys win.
        def es_key(label: str) -> float:
            u = (int(sample_key(batch_id, "stratum:" + label)[:13], 16) + 1) / (16**13 + 2)
            return math.log(u) / strata[label]

        chosen = sorted(strata, key=lambda s: (-es_key(s), s))[:budget]
        return dict.fromkeys(chosen, 1)
    alloc = dict.fromkeys(strata, 1)
    rest = budget - len(strata)
    spare = {k: v - 1 for k, v in strata.items()}
    spare_total = sum(spare.values())
    if rest and spare_total:
        quotas = {k: rest * v / spare_total for k, v in spare.items()}
        for k, q in quotas.items():
            alloc[k] += int(q)
        left = rest - sum(int(q) for q in quotas.values())
        for k in sorted(quotas, key=lambda k: (-(quotas[k] - int(quotas[k])), k))[:left]:
            alloc[k] += 1
    return {k: min(v, strata[k]) for k, v in alloc.items()}


def select_for_review(candidates: list[Candidate], batch_id: str, settings: SamplingSettings) -> Selection:
    """Choose the audit sample and the low-confidence human labels of one batch.

    The audit budget is ``ceil(rate * machine-labeled photos)`` (at least one when the rate is positive and there is
    any machine label). The total is capped at ``max_review_photos``: the audit sample is kept whole, then the
    low-confidence photos with the lowest confidence first.
    """
    by_label: dict[str, list[str]] = defaultdict(list)
    low: list[tuple[float, str, str]] = []
    for c in candidates:
        if not c.human:
            by_label[c.label].append(c.photo_id)
        elif c.confidence is not None and c.confidence < settings.low_confidence_threshold:
            low.append((c.confidence, sample_key(batch_id, c.photo_id), c.photo_id))
    sizes = {k: len(v) for k, v in by_label.items()}
    machine = sum(sizes.values())
    rate = min(max(settings.audit_sample_rate, 0.0), 1.0)
    budget = math.ceil(rate * machine - 1e-9) if rate > 0 and machine else 0
    budget = min(budget, settings.max_review_photos)
    audit: dict[str, list[str]] = {}
    for label, n in allocate(sizes, budget, batch_id).items():
        audit[label] = sorted(by_label[label], key=lambda pid: sample_key(batch_id, pid))[:n]
    room = max(settings.max_review_photos - sum(len(v) for v in audit.values()), 0)
    low.sort()
    return Selection(audit=audit, stratum_sizes=sizes, low_confidence=[pid for _, _, pid in low[:room]])


# ------------------------------------------------------------------------------------------------------- AWS adapters


def _plain(value: Any) -> Any:
    """DynamoDB numbers (Decimal) -> int/float so the manifest is plain JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("yes", "true", "1")
    return bool(value)


def query_batch_candidates(dynamodb: Any, photos_table: str, batch_id: str) -> list[Candidate]:
    """Read the labeled photos of a batch from the ``by_batch`` GSI, projecting only what the selection needs."""
    out: list[Candidate] = []
    kwargs: dict[str, Any] = {
        "TableName": photos_table,
        "IndexName": "by_batch",
        "KeyConditionExpression": "batch_id = :b",
        "ExpressionAttributeValues": {":b": {"S": batch_id}},
        "ExpressionAttributeNames": {"#s": "status", "#l": "label"},
        "ProjectionExpression": "photo_id, #s, #l, label_confidence, human_annotated",
    }
    while True:
        resp = dynamodb.query(**kwargs)
        for raw in resp.get("Items", []):
            item = {k: _DESER.deserialize(v) for k, v in raw.items()}
            label = item.get("label")
            if item.get("status") != "LABELED" or not isinstance(label, str) or not label:
                continue
            conf = item.get("label_confidence")
            out.append(
                Candidate(
                    photo_id=item["photo_id"],
                    label=label,
                    confidence=float(conf) if conf is not None else None,
                    human=_truthy(item.get("human_annotated")),
                )
            )
        if "LastEvaluatedKey" not in resp:
            return out
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def get_photos(dynamodb: Any, photos_table: str, photo_ids: list[str]) -> dict[str, dict[str, Any]]:
    """BatchGetItem the full registry items of the chosen photos (100 keys a request, unprocessed keys retried)."""
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(photo_ids), _BATCH_GET_MAX):
        request: dict[str, Any] = {
            photos_table: {"Keys": [{"photo_id": {"S": p}} for p in photo_ids[start : start + _BATCH_GET_MAX]]}
        }
        for attempt in range(10):
            resp = dynamodb.batch_get_item(RequestItems=request)
            for raw in resp.get("Responses", {}).get(photos_table, []):
                item = {k: _DESER.deserialize(v) for k, v in raw.items()}
                out[item["photo_id"]] = item
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(min(0.05 * 2**attempt, 2.0))
        else:
            raise RuntimeError("photos table kept returning unprocessed keys")
    return out


def manifest_line(photo: dict[str, Any], *, reason: str, stratum: tuple[int, int] | None) -> dict[str, Any]:
    """One review-manifest line (docs/review.md, "Review manifest line")."""
    original = photo.get("original") or {}
    line: dict[str, Any] = {
        "source-ref": photo["labeling_ref"],
        "photo-id": photo["photo_id"],
        "field": _plain(photo.get("field") or {}),
        "label-under-review": {
            "label": photo["label"],
            "confidence": _plain(photo.get("label_confidence")),
            "source": "human" if _truthy(photo.get("human_annotated")) else "machine",
        },
        "review-reason": reason,
    }
    if original.get("bucket") and original.get("key"):
        line["original-ref"] = f"s3://{original['bucket']}/{original['key']}"
    if stratum is not None:
        line["audit-stratum"] = {"size": stratum[0], "sampled": stratum[1]}
    return line


@dataclass
class ReviewSelectionOutcome:
    """What select-review returns to the workflow."""

    review_count: int
    manifest_uri: str | None
    audit_count: int = 0
    low_confidence_count: int = 0
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The state output."""
        return {
            "review_count": self.review_count,
            "manifest_uri": self.manifest_uri,
            "audit_count": self.audit_count,
            "low_confidence_count": self.low_confidence_count,
        }


def build_review_manifest(
    *,
    dynamodb: Any,
    s3: Any,
    photos_table: str,
    artifacts_bucket: str,
    batch_id: str,
    settings: SamplingSettings,
) -> ReviewSelectionOutcome:
    """Select a batch's photos for review and write ``jobs/<batch_id>/review.manifest`` to the artifacts bucket.

    Nothing is written when nothing needs review (``review_count`` 0, ``manifest_uri`` None). Photos that vanished
    between the query and the read, or lack a ``labeling_ref``, are left out and listed in ``missing``.
    """
    selection = select_for_review(query_batch_candidates(dynamodb, photos_table, batch_id), batch_id, settings)
    if selection.count == 0:
        return ReviewSelectionOutcome(0, None)
    chosen = [pid for ids in selection.audit.values() for pid in ids] + selection.low_confidence
    photos = get_photos(dynamodb, photos_table, chosen)
    lines: list[str] = []
    outcome = ReviewSelectionOutcome(0, None)
    for label in sorted(selection.audit):
        ids = selection.audit[label]
        for pid in ids:
            photo = photos.get(pid)
            if not photo or not photo.get("labeling_ref"):
                outcome.missing.append(pid)
                continue
            stratum = (selection.stratum_sizes[label], len(ids))
            lines.append(json.dumps(manifest_line(photo, reason="audit", stratum=stratum), separators=(",", ":")))
            outcome.audit_count += 1
    for pid in selection.low_confidence:
        photo = photos.get(pid)
        if not photo or not photo.get("labeling_ref"):
            outcome.missing.append(pid)
            continue
        lines.append(json.dumps(manifest_line(photo, reason="low_confidence", stratum=None), separators=(",", ":")))
        outcome.low_confidence_count += 1
    outcome.review_count = len(lines)
    if not lines:
        return outcome
    key = f"jobs/{batch_id}/review.manifest"
    s3.put_object(
        Bucket=artifacts_bucket, Key=key, Body=("\n".join(lines) + "\n").encode(), ContentType="application/x-ndjson"
    )
    outcome.manifest_uri = f"s3://{artifacts_bucket}/{key}"
    return outcome
