"""Ground Truth post-annotation payload: streaming parse, answer validation and a size-bounded response.

Shapes (docs/review.md, "Post-annotation Lambda"; AWS Developer Guide, sms-custom-templates-step3-lambda-requirements):
the payload file is a JSON array of ``{"datasetObjectId", "dataObject": {"s3Uri"|"content"}, "annotations":
[{"workerId", "annotationData": {"content": "<JSON string>"}}]}``; the response is a list of
``{"datasetObjectId", "consolidatedAnnotation": {"content": {"<labelAttributeName>": {...}}}}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

REVIEW_DECISIONS = ("confirm", "correct", "cannot_tell")
MAX_COMMENT_CHARS = 500
MAX_COMMENTS_PER_OBJECT = 9


class PayloadFormatError(ValueError):
    """The payload file is not a JSON array (a damaged file, not a damaged answer)."""


def iter_json_array(stream: IO[bytes], *, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array read from a byte stream, one at a time.

    Memory stays bounded by one element plus one chunk, so a payload of 100,000 objects (around 100 MB) is never
    held as a whole.

    Raises:
        PayloadFormatError: if the stream does not hold a JSON array.
    """
    decoder = json.JSONDecoder()
    buf = ""
    pending = b""
    started = False
    eof = False

    pos = 0

    def more() -> bool:
        # Appends the next chunk; consumed text before ``pos`` is dropped here (not after every element), so each
        # byte is copied a bounded number of times.
        nonlocal buf, pending, eof, pos
        if eof:
            return False
        chunk = stream.read(chunk_size)
        if not chunk:
            eof = True
            if pending:
                raise PayloadFormatError("payload ends inside a UTF-8 sequence")
            return False
        data = pending + chunk
        # Keep an incomplete trailing UTF-8 sequence for the next chunk.
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            b = data[-back]
            if b & 0xC0 == 0x80:
                continue
            if b & 0x80:
                need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4
                if back < need:
                    cut = len(data) - back
            break
        buf = buf[pos:] + data[:cut].decode("utf-8")
        pos = 0
        pending = data[cut:]
        return True

    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            if buf[pos] == "," and not started:
                raise PayloadFormatError("unexpected ',' before the array")
            pos += 1
        if pos >= len(buf):
            buf, pos = "", 0
            if not more():
                raise PayloadFormatError("payload ended before the array was closed" if started else "empty payload")
            continue
        ch = buf[pos]
        if not started:
            if ch != "[":
                raise PayloadFormatError("payload is not a JSON array")
            started = True
            pos += 1
            continue
        if ch == "]":
            return
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if not more():
                    raise PayloadFormatError(f"invalid JSON in payload: {exc.msg}") from exc
                continue
            # In a valid array an element is followed by whitespace, ',' or ']'. Anything else (or the end of the
            # buffer) means a number may continue in the next chunk ("1" + "0", "0" + ".5"): read on and decode again.
            if (end < len(buf) and buf[end] in " \t\r\n,]") or not more():
                break
        yield obj
        pos = end


@dataclass(frozen=True)
class LabelUnderReview:
    """The label the reviewers were shown (manifest field ``label-under-review``)."""

    label: str
    confidence: float | None = None
    source: str | None = None


@dataclass
class ParsedObject:
    """One data object of the payload with its valid answers and the reasons for the skipped ones."""

    dataset_object_id: str
    source_ref: str | None
    photo_id: str | None
    label_under_review: LabelUnderReview | None
    answers: list[tuple[str, str]] = field(default_factory=list)  # (worker_id, label)
    comments: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one skipped answer under ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def label_under_review_from_line(line: dict[str, Any]) -> LabelUnderReview | None:
    """Read the ``label-under-review`` field of a review-manifest line (None when absent or malformed)."""
    raw = line.get("label-under-review")
    if not isinstance(raw, dict) or not isinstance(raw.get("label"), str) or not raw["label"]:
        return None
    conf = raw.get("confidence")
    return LabelUnderReview(
        label=raw["label"],
        confidence=float(conf) if isinstance(conf, int | float) and not isinstance(conf, bool) else None,
        source=raw.get("source") if isinstance(raw.get("source"), str) else None,
    )


def parse_object(
    obj: Any,
    *,
    valid_labels: set[str] | None,
    unknown_label: str,
    lookup: Mapping[str, tuple[str | None, LabelUnderReview | None]] | None = None,
    fetch: Callable[[str], str] | None = None,
) -> ParsedObject | None:
    """Validate one payload element and turn its answers into ``(worker_id, label)`` pairs.

    Malformed answers are skipped and counted by reason in ``ParsedObject.skipped``; they are never fatal.

    Args:
        obj: one element of the payload array.
        valid_labels: the job's label categories (None accepts any non-empty label).
        unknown_label: the label a ``cannot_tell`` answer stands for.
        lookup: source-ref -> (photo-id, label under review) from the review manifest, for payloads whose
            ``dataObject`` carries only the ``s3Uri`` (the documented shape).
        fetch: reads an answer Ground Truth stored in S3 (``annotationData.s3Uri`` instead of ``content``);
            without it such answers are skipped as ``answer_in_s3``.

    Returns:
        The parsed object, or None when the element has no ``datasetObjectId`` (nothing can be returned for it).
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("datasetObjectId"), str | int):
        return None
    raw_object = obj.get("dataObject")
    data_object: dict[str, Any] = raw_object if isinstance(raw_object, dict) else {}
    source_ref = data_object.get("s3Uri") or data_object.get("source-ref")
    lur = label_under_review_from_line(data_object)
    photo_id = data_object.get("photo-id") if isinstance(data_object.get("photo-id"), str) else None
    needs_lookup = lur is None or photo_id is None
    if needs_lookup and lookup is not None and isinstance(source_ref, str) and source_ref in lookup:
        found_photo, found_lur = lookup[source_ref]
        photo_id = photo_id or found_photo
        lur = lur or found_lur
    ref = source_ref if isinstance(source_ref, str) else None
    parsed = ParsedObject(str(obj["datasetObjectId"]), ref, photo_id, lur)

    annotations = obj.get("annotations")
    if not isinstance(annotations, list):
        parsed.skip("annotations_missing")
        return parsed
    seen_workers: set[str] = set()
    for ann in annotations:
        label, comment, reason, worker = _parse_answer(ann, lur, valid_labels, unknown_label, fetch)
        if reason is None and worker in seen_workers:
            reason = "duplicate_worker"
        if reason is not None:
            parsed.skip(reason)
            continue
        assert label is not None and worker is not None
        seen_workers.add(worker)
        parsed.answers.append((worker, label))
        if comment and len(parsed.comments) < MAX_COMMENTS_PER_OBJECT:
            parsed.comments.append(comment[:MAX_COMMENT_CHARS])
    return parsed


def _parse_answer(
    ann: Any,
    lur: LabelUnderReview | None,
    valid_labels: set[str] | None,
    unknown_label: str,
    fetch: Callable[[str], str] | None = None,
) -> tuple[str | None, str | None, str | None, str | None]:
    """Return (label, comment, skip_reason, worker_id) for one worker annotation."""
    if not isinstance(ann, dict):
        return None, None, "annotation_not_object", None
    worker = ann.get("workerId")
    if not isinstance(worker, str) or not worker:
        return None, None, "worker_missing", None
    data = ann.get("annotationData")
    content = data.get("content") if isinstance(data, dict) else None
    uri = data.get("s3Uri") if isinstance(data, dict) else None
    if not content and isinstance(uri, str) and uri:
        if fetch is None:
            return None, None, "answer_in_s3", worker
        try:
            content = fetch(uri)
        except Exception:  # noqa: BLE001 - one unreadable answer must not fail the batch
            return None, None, "answer_unreadable", worker
    if not isinstance(content, str) or not content.strip():
        return None, None, "empty_answer", worker
    try:
        answer = json.loads(content)
    except ValueError:
        return None, None, "answer_not_json", worker
    review = answer.get("review") if isinstance(answer, dict) else None
    if isinstance(review, str):
        # The template submits the review as a hidden input, so crowd-form hands it over as a JSON string.
        try:
            review = json.loads(review)
        except ValueError:
            return None, None, "review_not_json", worker
    if not isinstance(review, dict):
        return None, None, "review_missing", worker
    decision = review.get("decision")
    comment = review.get("comment") if isinstance(review.get("comment"), str) else None
    comment = comment.strip() if comment else None
    if decision == "confirm":
        if lur is None:
            return None, comment, "confirm_without_label_under_review", worker
        label = lur.label
    elif decision == "correct":
        species = review.get("species")
        if not isinstance(species, str) or not species.strip():
            return None, comment, "correct_without_species", worker
        label = species.strip()
    elif decision == "cannot_tell":
        label = unknown_label
    else:
        return None, comment, "unknown_decision", worker
    if valid_labels is not None and label not in valid_labels:
        return None, comment, "unknown_label", worker
    return label, comment, None, worker


# ---------------------------------------------------------------------------------------------------------- response


RESPONSE_TIERS = ("full", "compact", "minimal", "bare")


def review_content(
    *,
    label: str | None,
    confidence: float,
    agreement: float,
    needs_adjudication: bool,
    answers: int,
    comments: list[str],
    skipped: int,
    reasons: list[str] | None = None,
    tier: str = "full",
) -> dict[str, Any]:
    """Build the ``species-review`` object for one photo in the given response tier.

    ``full`` carries everything; ``compact`` drops the comments (they stay in Ground Truth's worker-response files
    and the answer log); ``minimal`` keeps what apply-review needs to decide (label, confidence, adjudication and its
    reasons); ``bare``, the last resort for the largest calls, drops the reasons too. ``reasons`` (names from
    ``consolidation.REASONS``) is empty exactly when the photo is not flagged.
    """
    out: dict[str, Any] = {
        "label": label,
        "confidence": round(float(confidence), 4),
        "needs_adjudication": bool(needs_adjudication),
    }
    if tier == "bare":
        return out
    out["reasons"] = list(reasons or [])
    if tier == "minimal":
        return out
    out["agreement"] = round(float(agreement), 4)
    out["answers"] = int(answers)
    out["skipped"] = int(skipped)
    if tier == "full":
        out["comments"] = comments
    return out


def response_entry(dataset_object_id: str, label_attribute_name: str, content: dict[str, Any]) -> dict[str, Any]:
    """One element of the post-annotation response list."""
    return {
        "datasetObjectId": dataset_object_id,
        "consolidatedAnnotation": {"content": {label_attribute_name: content}},
    }


def json_size(entries: Iterable[dict[str, Any]]) -> int:
    """Size in bytes of the response list as ``json.dumps`` with default settings writes it.

    Default separators and ASCII escaping are the larger of the plausible runtime serialisations, so the estimate
    errs on the safe side of Lambda's 6 MB synchronous response limit.
    """
    total = 2
    n = 0
    for e in entries:
        total += len(json.dumps(e))
        n += 1
    return total + 2 * max(n - 1, 0)
