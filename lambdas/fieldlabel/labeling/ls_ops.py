"""The workflow's stage operations (:class:`fieldlabel.labeling.ls_workflow.StageOps`) on the Label Studio backend.

A thin adapter: projects, tasks, completion, finishing and withdrawing are the backend's
(:mod:`fieldlabel.labeling.label_studio`); this class only feeds them the functions' environment (project,
taxonomy with display names, answers per photo, where outputs go) and reads the stage's manifest from S3.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from typing import Any

from fieldlabel.common.s3uri import parse_s3_uri
from fieldlabel.labeling.label_studio.backend import (
    ImageStorage,
    LabelStudioBackend,
    LabelStudioSettings,
    labels_from_taxonomy,
)
from fieldlabel.labeling.label_studio.completion import batch_status, finish_batch, stop_batch
from fieldlabel.labeling.label_studio.webhook import webhook_headers
from fieldlabel.labeling.ls_workflow import Progress
from fieldlabel.labeling.registry_io import get_batch
from fieldlabel.labeling.settings import WorkflowEnv
from fieldlabel.review.settings import ReviewEnv

# Ground Truth's output prefix: the output manifests land where process-output and apply-review already read.
OUTPUT_PREFIX = "gt-output/"


def display_labels(s3: Any, taxonomy_uri: str, unknown_label: str) -> tuple[tuple[str, str], ...]:
    """``(label, display name)`` of every taxon in taxonomy order, from the deployed ``taxonomy.json``.

    The display names (scientific and common name) are what the picker searches; the environment carries only the
    labels, and hundreds of names would not fit in Lambda's 4 KB of environment.
    """
    bucket, key = parse_s3_uri(taxonomy_uri)
    _, pairs, _ = labels_from_taxonomy(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return tuple((label, name) for label, name in pairs if label != unknown_label)


class BackendStageOps:
    """:class:`~fieldlabel.labeling.ls_workflow.StageOps` over :class:`LabelStudioBackend` and its completion."""

    def __init__(self, *, env: WorkflowEnv, client: Any, s3: Any, dynamodb: Any, webhook_url: str = "",
                 webhook_secret: str = "", taxonomy_uri: str = "", reviewers_table: str = "",
                 images: ImageStorage | None = None) -> None:
        self._env = env
        self._client = client
        self._s3 = s3
        self._dynamodb = dynamodb
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._taxonomy_uri = taxonomy_uri
        self._reviewers_table = reviewers_table
        self._images = images

    @functools.cached_property
    def backend(self) -> LabelStudioBackend:
        env = self._env
        js = env.job_settings
        labels = display_labels(self._s3, self._taxonomy_uri, env.unknown_label) if self._taxonomy_uri else \
            tuple((label, label) for label in env.labels if label != env.unknown_label)
        return LabelStudioBackend(LabelStudioSettings(
            project=env.project, taxonomy_hash=env.taxonomy_hash, labels=labels, unknown_label=env.unknown_label,
            output_path=f"s3://{env.artifacts_bucket}/{OUTPUT_PREFIX}",
            annotators_per_photo=int(js.get("workers_per_photo", 3)),
            reviewers_per_photo=int(js.get("reviewers_per_photo", 2)),
            image_storage=self._images,
        ))

    def project(self, *, stage: str) -> int:
        project_id = int(self.backend.ensure_project(self._client, stage)["id"])
        if self._webhook_url:
            # One webhook per project, its id in the query: the webhook function checks only that project's
            # batches (Label Studio posts no payload: the webhook carries no photo data).
            sep = "&" if "?" in self._webhook_url else "?"
            self._client.ensure_webhook(project_id, f"{self._webhook_url}{sep}project={project_id}",
                                        webhook_headers(self._webhook_secret))
        return project_id

    def submit(self, *, stage: str, project_id: int, batch_id: str, manifest_uri: str) -> int:
        # The engine model that made the batch's suggestions names the predictions (Label Studio shows it).
        model = (get_batch(self._dynamodb, self._env.batches_table, batch_id) or {}).get("engine_model")
        result = self.backend.submit_batch(self._client, stage=stage, batch_id=batch_id,
                                           lines=self._manifest_lines(manifest_uri),
                                           model_version=str(model) if model and stage == "labeling" else None)
        if result.project_id != project_id:
            raise RuntimeError(f"batch {batch_id} went to project {result.project_id}, expected {project_id}")
        return len(result.task_ids)

    def progress(self, *, stage: str, project_id: int, batch_id: str, expected: int) -> Progress:
        status = batch_status(self._client, project_id, batch_id, expected)
        return Progress(done=status.done, total=status.total, complete=status.complete)

    def finish(self, *, stage: str, project_id: int, batch_id: str, job_name: str,
               output_uri: str) -> dict[str, Any]:
        env = self._env
        return finish_batch(
            self._client, self._s3, project_id=project_id, batch_id=batch_id, job_name=job_name,
            output_uri=output_uri, labels=env.labels, unknown_label=env.unknown_label,
            label_attribute=self.backend.label_attribute_of(stage), dynamodb=self._dynamodb,
            reviewers_table=self._reviewers_table or None,
            consolidation=ReviewEnv.from_environ(dict(os.environ)).consolidation(),
            artifacts_bucket=env.artifacts_bucket, kms_key_id=env.kms_key_arn or None,
        )

    def stop(self, *, stage: str, project_id: int, batch_id: str) -> str:
        return stop_batch(self._client, project_id, batch_id)

    def _manifest_lines(self, uri: str) -> Iterator[dict[str, Any]]:
        """The manifest's JSON lines, streamed (a batch's manifest is never held whole)."""
        bucket, key = parse_s3_uri(uri)
        body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        for raw in body.iter_lines():
            if raw.strip():
                yield json.loads(raw)
