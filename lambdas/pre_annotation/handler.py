"""Pre-annotation Lambda of the expert-review job and of the engine's labeling job: one manifest line -> the
expert-review template's task input (a review line: the label under review; a labeling line, ``"task": "label"``:
the model's suggestion, or none for the searchable picker).

Ground Truth calls it once per data object with ``{"version", "labelingJobArn", "dataObject"}`` and expects
``{"taskInput": {...}, "isHumanAnnotationRequired": bool}`` (docs/contracts.md, "Review job").

A line that cannot become a review task (no usable source-ref, photo-id or label-under-review) is logged and
answered with ``isHumanAnnotationRequired: false`` and an error task input, which keeps that one object away from the
reviewers instead of failing the invocation; the rest of the job goes on. A taxonomy that cannot be loaded is
different: it would break every task, so that raises.

Environment: ``TAXONOMY_S3_URI`` (required, ``s3://<artifacts>/config/taxonomy.json``), ``PHOTOS_TABLE``
(optional: when set, field metadata missing from a line is read from the photos table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.ui.task_input import (
    MalformedLineError,
    build_labeling_task_input,
    build_review_task_input,
    error_task_input,
    field_from_registry,
    is_labeling_line,
    load_taxonomy,
)
from fieldlabel.ui.taxonomy import Taxonomy


@dataclass(frozen=True)
class Settings:
    """Environment of this function, parsed once per container."""

    taxonomy_s3_uri: str
    photos_table: str | None

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        uri = env.get("TAXONOMY_S3_URI", "")
        if not uri.startswith("s3://"):
            raise RuntimeError("TAXONOMY_S3_URI must be set to the s3:// URI of config/taxonomy.json")
        return cls(taxonomy_s3_uri=uri, photos_table=env.get("PHOTOS_TABLE") or None)


_settings: Settings | None = None
_taxonomy: Taxonomy | None = None
_clients: dict[str, Any] = {}


def _client(name: str) -> Any:
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


def _get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def _get_taxonomy(settings: Settings) -> Taxonomy:
    # Cached per container: the taxonomy changes only with a deployment, which replaces the containers.
    global _taxonomy
    if _taxonomy is None:
        _taxonomy = load_taxonomy(_client("s3"), settings.taxonomy_s3_uri)
        logger.info("taxonomy loaded", extra={"species": len(_taxonomy.taxa), "uri": settings.taxonomy_s3_uri})
    return _taxonomy


def reset_caches() -> None:
    """Forget settings, taxonomy and clients (tests; a warm container never needs it)."""
    global _settings, _taxonomy
    _settings = None
    _taxonomy = None
    _clients.clear()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Ground Truth pre-annotation entry point (see module docstring)."""
    settings = _get_settings()
    taxonomy = _get_taxonomy(settings)
    data_object = event.get("dataObject") if isinstance(event, dict) else None
    logger.append_keys(labeling_job_arn=event.get("labelingJobArn") if isinstance(event, dict) else None)

    field_lookup = None
    if settings.photos_table:
        table = settings.photos_table

        def field_lookup(photo_id: str) -> dict[str, Any] | None:
            return field_from_registry(_client("dynamodb"), table, photo_id)

    try:
        build = build_labeling_task_input if is_labeling_line(data_object) else build_review_task_input
        task_input = build(data_object, taxonomy, field_lookup=field_lookup)
    except MalformedLineError as exc:
        logger.error(
            "review manifest line rejected; the object is not sent to reviewers",
            extra={"reason": exc.reason, "detail": exc.detail, "data_object": str(data_object)[:2000]},
        )
        metrics.add_metric(name="ReviewLineRejected", unit=MetricUnit.Count, value=1)
        return {"taskInput": error_task_input(data_object, exc), "isHumanAnnotationRequired": False}

    metrics.add_metric(name="ReviewTaskPrepared", unit=MetricUnit.Count, value=1)
    return {"taskInput": task_input, "isHumanAnnotationRequired": True}
