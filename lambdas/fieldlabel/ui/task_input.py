"""Review manifest line -> the expert-review template's ``task.input`` (docs/contracts.md, "Review job").

Pure functions plus two small adapters that take injected boto3 clients (taxonomy from S3, field metadata from the
photos table). The handler in ``lambdas/pre_annotation`` wires them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from fieldlabel.ui.taxonomy import Taxonomy, parse_taxonomy_json

# Field keys the template knows how to show, with the longest string kept (sidecar limits from contracts.md; EXIF
# camera strings are short but not bounded by any contract, so they get a generous cap).
FIELD_TEXT_LIMITS: dict[str, int] = {
    "site_id": 64,
    "collector": 128,
    "notes": 2000,
    "suspected_species": 128,
    "captured_at": 64,
    "habitat": 256,
    "specimen_part": 16,
    "camera_make": 128,
    "camera_model": 128,
}
FIELD_NUMBER_RANGES: dict[str, tuple[float, float]] = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0)}
SOURCES = ("machine", "human")
# A labeling-job line (``labeling.engine: model``) is marked ``"task": "label"`` and may carry the model's suggestion.
LABELING_TASK = "label"
SUGGESTION_SOURCES = ("model",)


class MalformedLineError(ValueError):
    """A review manifest line cannot become a review task; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _s3_uri(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("s3://") or "/" not in value[5:] or value.endswith("/"):
        raise MalformedLineError("bad-source-ref", f"source-ref must be an s3://bucket/key URI, got {value!r:.200}")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def normalize_field(field: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keep the field-metadata keys the template shows, with types and lengths it can rely on.

    Unknown keys, wrong types and out-of-range coordinates are dropped rather than failing the task: metadata helps
    the reviewer but the photo alone is reviewable. Overlong text is cut at the contract's limit.
    """
    out: dict[str, Any] = {}
    if not isinstance(field, Mapping):
        return out
    for key, limit in FIELD_TEXT_LIMITS.items():
        value = field.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()[:limit]
    for key, (low, high) in FIELD_NUMBER_RANGES.items():
        number = _number(field.get(key))
        if number is not None and low <= number <= high:
            out[key] = number
    return out


def _label_under_review(value: Any, taxonomy: Taxonomy, sources: tuple[str, ...] = SOURCES) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedLineError("bad-label-under-review", "label-under-review must be an object")
    label = value.get("label")
    if not isinstance(label, str) or not label.strip():
        raise MalformedLineError("bad-label-under-review", "label-under-review.label must be a non-empty string")
    label = label.strip()
    confidence_raw = value.get("confidence")
    confidence = _number(confidence_raw)
    if confidence_raw is not None and (confidence is None or not 0.0 <= confidence <= 1.0):
        raise MalformedLineError(
            "bad-label-under-review", f"label-under-review.confidence must be a number in 0..1, got {confidence_raw!r}"
        )
    source = value.get("source")
    if source not in sources:
        raise MalformedLineError(
            "bad-label-under-review", f"label-under-review.source must be one of {sources}, got {source!r:.50}"
        )
    return {
        "label": label,
        "displayName": taxonomy.display_name(label),
        "confidence": confidence,
        "source": source,
        # A label outside the current taxonomy can still be reviewed (and corrected); the template says so.
        "inTaxonomy": taxonomy.is_known(label),
    }


def is_labeling_line(data_object: Any) -> bool:
    """True for a line of the engine's labeling job (``"task": "label"``); review lines have no ``task``."""
    return isinstance(data_object, Mapping) and data_object.get("task") == LABELING_TASK


def build_labeling_task_input(
    data_object: Any,
    taxonomy: Taxonomy,
    *,
    field_lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Turn one line of the engine's labeling manifest into the template's task input (its "suggestion" mode).

    The line's ``label-under-review`` is the model's suggestion ``{label, confidence, source: "model"}``, shown for
    the taxonomist to confirm; without one (no model yet, or a photo it could not score) ``labelUnderReview`` is
    null and the taxonomist picks from the searchable list. The answer format is the review one, so the same
    post-annotation Lambda consolidates both jobs.

    Returns:
        As :func:`build_review_task_input`, plus ``"task": "label"``.

    Raises:
        MalformedLineError: as :func:`build_review_task_input`; a suggestion, when present, must be well formed.
    """
    if not isinstance(data_object, Mapping):
        raise MalformedLineError("not-an-object", "dataObject must be a JSON object")
    suggestion = data_object.get("label-under-review")
    line = dict(data_object)
    line.pop("label-under-review", None)
    task = _task_input(line, taxonomy, field_lookup=field_lookup, label_under_review=None)
    if suggestion is not None:
        task["labelUnderReview"] = _label_under_review(suggestion, taxonomy, SUGGESTION_SOURCES)
    task["task"] = LABELING_TASK
    return task


def build_review_task_input(
    data_object: Any,
    taxonomy: Taxonomy,
    *,
    field_lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Turn one review manifest line into the review template's task input.

    Args:
        data_object: the manifest line Ground Truth passes as ``dataObject``: ``source-ref``, ``photo-id``,
            optional ``field`` and ``label-under-review`` ``{label, confidence, source}``.
        taxonomy: the current taxonomy.
        field_lookup: called with the photo id when the line carries no ``field`` object (e.g. reads the photos
            table); its result is used as the field metadata.

    Returns:
        ``{"taskObject", "photoId", "field", "labelUnderReview", "taxonomy"}`` as in docs/contracts.md, plus
        ``field.suspected_species_display`` when the suspected species is a taxonomy label and
        ``labelUnderReview.inTaxonomy``.

    Raises:
        MalformedLineError: the line is not an object, or lacks a usable source-ref, photo-id or label-under-review.
    """
    if not isinstance(data_object, Mapping):
        raise MalformedLineError("not-an-object", "dataObject must be a JSON object")
    _s3_uri(data_object.get("source-ref"))
    _photo_id(data_object)
    label_under_review = _label_under_review(data_object.get("label-under-review"), taxonomy)
    return _task_input(data_object, taxonomy, field_lookup=field_lookup, label_under_review=label_under_review)


def _photo_id(data_object: Mapping[str, Any]) -> str:
    photo_id = data_object.get("photo-id")
    if not isinstance(photo_id, str) or not photo_id.strip() or len(photo_id) > 256:
        raise MalformedLineError("bad-photo-id", "photo-id must be a non-empty string of at most 256 characters")
    return photo_id


def _task_input(
    data_object: Mapping[str, Any],
    taxonomy: Taxonomy,
    *,
    field_lookup: Callable[[str], Mapping[str, Any] | None] | None,
    label_under_review: dict[str, Any] | None,
) -> dict[str, Any]:
    task_object = _s3_uri(data_object.get("source-ref"))
    photo_id = _photo_id(data_object)

    raw_field = data_object.get("field")
    if not isinstance(raw_field, Mapping) and field_lookup is not None:
        raw_field = field_lookup(photo_id)
    field = normalize_field(raw_field)
    suspected = field.get("suspected_species")
    if suspected is not None and taxonomy.get(suspected) is not None:
        field["suspected_species_display"] = taxonomy.display_name(suspected)

    return {
        "taskObject": task_object,
        "photoId": photo_id,
        "field": field,
        "labelUnderReview": label_under_review,
        "taxonomy": taxonomy.task_input_list(),
    }


def error_task_input(data_object: Any, error: MalformedLineError) -> dict[str, Any]:
    """The task input returned (with ``isHumanAnnotationRequired: false``) for a line that cannot be reviewed.

    Carries the reason and whatever identifies the line, so the job's output and the Lambda log can be matched up.
    """
    out: dict[str, Any] = {"error": error.reason, "errorDetail": error.detail[:500]}
    if isinstance(data_object, Mapping):
        for key, target in (("photo-id", "photoId"), ("source-ref", "taskObject")):
            value = data_object.get(key)
            if isinstance(value, str):
                out[target] = value[:1024]
    return out


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``.

    Raises:
        ValueError: not an s3 URI with a bucket and a key.
    """
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


def load_taxonomy(s3_client: Any, uri: str) -> Taxonomy:
    """Read and validate the taxonomy file at ``uri`` (``s3://<artifacts>/config/taxonomy.json``).

    Raises:
        ValueError: ``uri`` is not an s3 URI.
        TaxonomyError: the file is not a valid taxonomy.
        botocore.exceptions.ClientError: S3 refused the read.
    """
    bucket, key = split_s3_uri(uri)
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return parse_taxonomy_json(body)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


def field_from_registry(dynamodb_client: Any, table_name: str, photo_id: str) -> dict[str, Any] | None:
    """The ``field`` map of a photo in the photos table (contracts.md), or None when the item or map is absent.

    Raises:
        botocore.exceptions.ClientError: DynamoDB refused the read.
    """
    from boto3.dynamodb.types import TypeDeserializer

    response = dynamodb_client.get_item(
        TableName=table_name,
        Key={"photo_id": {"S": photo_id}},
        ProjectionExpression="#f",
        ExpressionAttributeNames={"#f": "field"},
    )
    item = response.get("Item")
    if not item or "field" not in item:
        return None
    value = _plain(TypeDeserializer().deserialize(item["field"]))
    return value if isinstance(value, dict) else None
