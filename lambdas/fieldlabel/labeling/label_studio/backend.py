"""Label Studio as the labeling backend: projects, tasks with the model's suggestion, job requests, output lines.

Where Ground Truth creates one job per batch, Label Studio keeps one long-lived project per taxonomy version and
stage (``labeling`` for the taxonomists, ``review`` for the senior reviewers), titled
``"<project> <stage> <taxonomy hash[:12]>"``, and a batch is the set of its tasks whose ``data.batch_id`` is the
batch. A new taxonomy version gets new projects, so a picker never offers labels of another label set. The
workflow's seam (:class:`fieldlabel.labeling.backend.LabelingBackend`) is kept: the "job" of a batch is its tasks in
the stage's project, its output is an output manifest in the same line format Ground Truth's custom job writes
(written by :func:`fieldlabel.labeling.label_studio.completion.finish_batch`), and its description is a
DescribeLabelingJob-shaped dict. See docs/label-studio.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fieldlabel.labeling.backend import (
    KIND_HUMAN_ONLY,
    KIND_MODEL,
    BatchPhoto,
    JobResult,
    LabelCounters,
    LabeledPhoto,
)
from fieldlabel.labeling.label_studio.client import LabelStudioClient
from fieldlabel.labeling.label_studio.labeling_config import labeling_config_xml, picker_result

BACKEND_NAME = "label_studio"
LABEL_ATTRIBUTE = "species"
REVIEW_LABEL_ATTRIBUTE = "species-review"
STAGE_LABELING = "labeling"
STAGE_REVIEW = "review"
STAGES = (STAGE_LABELING, STAGE_REVIEW)
# Tasks per import request: one request per batch would be simplest, but a 30,000-photo batch is ~50 MB of JSON.
IMPORT_CHUNK = 500
_FIELD_TEXT_KEYS = (("site_id", "Site"), ("captured_at", "Captured"), ("habitat", "Habitat"),
                    ("specimen_part", "Part shown"), ("suspected_species", "Collector's guess"), ("notes", "Notes"))
_FIELD_TEXT_MAX = 600


@dataclass(frozen=True)
class ImageStorage:
    """Where the labeling copies are, so Label Studio can presign the tasks' ``s3://`` URIs for the browser.

    ``endpoint_url`` and ``credentials`` are for an S3-compatible endpoint in tests; deployed, both stay empty and
    the server signs with its task role (which may read only the labeling copies).
    """

    bucket: str
    prefix: str
    region: str
    presign_ttl_minutes: int = 15
    endpoint_url: str | None = None
    credentials: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LabelStudioSettings:
    """Everything the backend builds projects, tasks and requests from (the functions' environment).

    ``labels`` are ``(label, display name)`` in taxonomy order without the unknown label; ``output_path`` is the
    ``s3://`` prefix the output manifests go to (like Ground Truth's ``S3OutputPath``).
    """

    project: str
    taxonomy_hash: str
    labels: tuple[tuple[str, str], ...]
    unknown_label: str
    output_path: str
    annotators_per_photo: int = 3
    reviewers_per_photo: int = 2
    model_version: str = ""
    image_storage: ImageStorage | None = None
    instructions: str = ("Identify the tree species in the photo. If a suggestion is shown, confirm it by submitting, "
                         "or search the list for the right species; choose 'Not a tree / cannot tell' when unsure.")
    review_instructions: str = ("Review the label shown: submit it if it is right, or search the list for the right "
                                "species; choose 'Not a tree / cannot tell' when the photo does not allow a decision.")

    def __post_init__(self) -> None:
        if not self.project or " " in self.project:
            raise ValueError(f"project must be a non-empty name without spaces, got {self.project!r}")
        if len(self.taxonomy_hash) < 12:
            raise ValueError("taxonomy_hash must have at least 12 characters")
        if not self.output_path.startswith("s3://"):
            raise ValueError(f"output_path must be an s3:// prefix, got {self.output_path!r}")
        if self.annotators_per_photo < 1 or self.reviewers_per_photo < 1:
            raise ValueError("annotators_per_photo and reviewers_per_photo must be at least 1")


@dataclass(frozen=True)
class SubmitResult:
    """What submitting a batch did: the project, every task of the batch, and how many were new."""

    project_id: int
    project_title: str
    task_ids: tuple[int, ...]
    imported: int
    already_present: int
    skipped_lines: int = 0
    duplicate_lines: int = 0
    photo_ids: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (state output, batch item)."""
        return {"project_id": self.project_id, "project_title": self.project_title, "tasks": len(self.task_ids),
                "imported": self.imported, "already_present": self.already_present,
                "skipped_lines": self.skipped_lines, "duplicate_lines": self.duplicate_lines}


class LabelStudioBackend:
    """:class:`fieldlabel.labeling.backend.LabelingBackend` for a self-hosted Label Studio server."""

    label_attribute = LABEL_ATTRIBUTE

    def __init__(self, settings: LabelStudioSettings) -> None:
        self.settings = settings
        self._label_set = {label for label, _ in settings.labels} | {settings.unknown_label}

    # ----------------------------------------------------------------------------------------------- names, kinds

    def job_name(self, batch_id: str) -> str:
        """``<project>-<batch_id>``, as on Ground Truth: the answer logs and the output prefix are keyed by it."""
        return f"{self.settings.project}-{batch_id}"

    def review_job_name(self, batch_id: str) -> str:
        """``<project>-<batch_id>-review``."""
        return f"{self.settings.project}-{batch_id}-review"

    def stage_of(self, job_name: str) -> tuple[str, str]:
        """``(stage, batch_id)`` of a job name this backend made.

        Raises:
            ValueError: for a name of another project.
        """
        prefix = f"{self.settings.project}-"
        if not job_name.startswith(prefix) or len(job_name) == len(prefix):
            raise ValueError(f"{job_name!r} is not a job of project {self.settings.project!r}")
        rest = job_name[len(prefix):]
        if rest.endswith("-review"):
            return STAGE_REVIEW, rest[: -len("-review")]
        return STAGE_LABELING, rest

    def choose_kind(self, photo_count: int, *, automated_enabled: bool) -> str:
        """Always ``human_only``: Label Studio has no automated labeling (the own engine is ``model``)."""
        return KIND_HUMAN_ONLY

    def project_title(self, stage: str) -> str:
        """``"<project> <stage> <taxonomy hash[:12]>"``: one project per taxonomy version and stage."""
        _check_stage(stage)
        return f"{self.settings.project} {stage} {self.settings.taxonomy_hash[:12]}"

    def label_config(self, stage: str) -> str:
        """The stage's labeling configuration (the same picker; the instructions differ)."""
        _check_stage(stage)
        s = self.settings
        return labeling_config_xml(s.labels, unknown_label=s.unknown_label,
                                   instructions=s.instructions if stage == STAGE_LABELING else s.review_instructions)

    def answers_per_photo(self, stage: str) -> int:
        """How many different people answer each photo in ``stage`` (the project's ``maximum_annotations``)."""
        _check_stage(stage)
        return self.settings.annotators_per_photo if stage == STAGE_LABELING else self.settings.reviewers_per_photo

    def label_attribute_of(self, stage: str) -> str:
        """``species`` for the labeling stage, ``species-review`` for the review (as Ground Truth's jobs)."""
        _check_stage(stage)
        return LABEL_ATTRIBUTE if stage == STAGE_LABELING else REVIEW_LABEL_ATTRIBUTE

    def output_uri(self, job_name: str) -> str:
        """Where a batch's output manifest goes (Ground Truth's ``<output>/<job>/manifests/output/`` layout)."""
        return f"{self.settings.output_path.rstrip('/')}/{job_name}/manifests/output/output.manifest"

    # ------------------------------------------------------------------------------------------------ manifests

    def manifest_line(self, photo: BatchPhoto) -> dict[str, Any]:
        """The input-manifest line, in the same shape as on Ground Truth (docs/contracts.md, "Manifest lines")."""
        return photo.manifest_line()

    # ------------------------------------------------------------------------------------------------- requests

    def build_job_request(
        self, *, batch_id: str, kind: str, manifest_uri: str, initial_model_arn: str | None = None
    ) -> dict[str, Any]:
        """What the submit function needs to put a batch into the taxonomists' project.

        Raises:
            ValueError: on ``automated`` (Label Studio has none) or an active-learning model.
        """
        if kind not in (KIND_HUMAN_ONLY, KIND_MODEL):
            raise ValueError(f"Label Studio runs only human_only or model batches, not {kind!r}")
        if initial_model_arn:
            raise ValueError("Label Studio takes no active-learning model")
        return self._request(STAGE_LABELING, self.job_name(batch_id), batch_id, manifest_uri, kind)

    def build_review_request(self, *, batch_id: str, manifest_uri: str) -> dict[str, Any]:
        """What the submit function needs to put a batch's review into the reviewers' project."""
        return self._request(STAGE_REVIEW, self.review_job_name(batch_id), batch_id, manifest_uri, "review")

    def _request(self, stage: str, job_name: str, batch_id: str, manifest_uri: str, kind: str) -> dict[str, Any]:
        return {
            "Backend": BACKEND_NAME,
            "Stage": stage,
            "Kind": kind,
            "BatchId": batch_id,
            "LabelingJobName": job_name,
            "ProjectTitle": self.project_title(stage),
            "MaximumAnnotations": self.answers_per_photo(stage),
            "LabelAttributeName": self.label_attribute_of(stage),
            "ManifestUri": manifest_uri,
            "OutputUri": self.output_uri(job_name),
        }

    # ---------------------------------------------------------------------------------------------------- tasks

    def task_for(
        self, line: Mapping[str, Any], *, batch_id: str, image: str | None = None, model_version: str | None = None
    ) -> dict[str, Any]:
        """The Label Studio task of one input-manifest line.

        ``data.image`` is ``image`` or the line's ``source-ref`` (an ``s3://`` URI the project's S3 storage turns
        into a presigned URL); ``data.line`` keeps the whole manifest line, so the output line can be the input line
        plus the consolidation, as on Ground Truth. The suggestion under review (the model's, or the label a review
        checks) becomes a prediction, so the picker opens on it and confirming is one click; a suggestion outside
        the taxonomy is not offered (the picker could not show it).

        Raises:
            ValueError: when the line has no ``photo-id`` or ``source-ref``.
        """
        photo_id, ref = line.get("photo-id"), line.get("source-ref")
        if not isinstance(photo_id, str) or not photo_id or not isinstance(ref, str) or not ref:
            raise ValueError("a manifest line needs 'photo-id' and 'source-ref'")
        fields = line.get("field") if isinstance(line.get("field"), dict) else {}
        task: dict[str, Any] = {"data": {
            "image": image or ref, "photo_id": photo_id, "batch_id": batch_id, "field": fields,
            "field_text": field_text(fields or {}), "line": dict(line),
        }}
        lur = line.get("label-under-review")
        if isinstance(lur, dict) and isinstance(lur.get("label"), str) and lur["label"] in self._label_set:
            score = lur.get("confidence")
            version = model_version or self.settings.model_version or str(lur.get("source") or "suggestion")
            prediction: dict[str, Any] = {"model_version": version, "result": [picker_result(lur["label"])]}
            if isinstance(score, int | float) and not isinstance(score, bool):
                prediction["score"] = float(score)
            task["predictions"] = [prediction]
        return task

    def ensure_project(self, client: LabelStudioClient, stage: str) -> dict[str, Any]:
        """The stage's project (created, or its labeling config and overlap brought up to date), connected to the
        labeling copies' bucket when ``image_storage`` is set."""
        project = client.ensure_project(
            self.project_title(stage), self.label_config(stage), maximum_annotations=self.answers_per_photo(stage),
            description=f"fieldlabel {self.settings.project}: {stage} of taxonomy {self.settings.taxonomy_hash}",
        )
        storage = self.settings.image_storage
        if storage is not None:
            client.ensure_s3_storage(int(project["id"]), bucket=storage.bucket, prefix=storage.prefix,
                                     region=storage.region, presign_ttl_minutes=storage.presign_ttl_minutes,
                                     endpoint_url=storage.endpoint_url, credentials=dict(storage.credentials))
        return project

    def submit_batch(
        self,
        client: LabelStudioClient,
        *,
        stage: str,
        batch_id: str,
        lines: Iterable[Mapping[str, Any]],
        image_url: Callable[[str], str] | None = None,
        model_version: str | None = None,
    ) -> SubmitResult:
        """Put a batch's photos into the stage's project, idempotently.

        A retry (or a second submission of the same batch) finds the batch's existing tasks by ``data.batch_id``
        and imports only the photos that have none, so no photo is ever in the project twice.

        Args:
            client: the API client.
            stage: ``labeling`` or ``review``.
            batch_id: the batch.
            lines: the batch's input-manifest lines (:meth:`manifest_line`, or the review manifest's lines).
            image_url: maps a line's ``source-ref`` to the URL the browser loads (None: the ``s3://`` URI itself,
                which the project's S3 storage presigns).
            model_version: the engine model that made the suggestions (default: the settings').
        """
        project = self.ensure_project(client, stage)
        project_id = int(project["id"])
        existing = client.tasks_of_batch(project_id, batch_id, annotations=False)
        present = {str((t.get("data") or {}).get("photo_id")): int(t["id"]) for t in existing}
        new_tasks: list[dict[str, Any]] = []
        new_photos: list[str] = []
        seen: set[str] = set()
        skipped = duplicates = 0
        for line in lines:
            photo_id = line.get("photo-id")
            ref = line.get("source-ref")
            if not isinstance(photo_id, str) or not isinstance(ref, str) or not photo_id or not ref:
                skipped += 1
                continue
            if photo_id in seen:
                duplicates += 1
                continue
            seen.add(photo_id)
            if photo_id in present:
                continue
            new_photos.append(photo_id)
            new_tasks.append(self.task_for(line, batch_id=batch_id, image=image_url(ref) if image_url else None,
                                           model_version=model_version))
        already = len(present)
        for start in range(0, len(new_tasks), IMPORT_CHUNK):
            ids = client.import_tasks(project_id, new_tasks[start : start + IMPORT_CHUNK])
            present.update(zip(new_photos[start : start + IMPORT_CHUNK], ids, strict=True))
        return SubmitResult(
            project_id=project_id, project_title=str(project.get("title", "")),
            task_ids=tuple(sorted(present.values())), imported=len(new_tasks), already_present=already,
            skipped_lines=skipped, duplicate_lines=duplicates, photo_ids=tuple(sorted(present)),
        )

    # --------------------------------------------------------------------------------------------------- output

    def parse_output_line(self, line: dict[str, Any]) -> LabeledPhoto:
        """One output-manifest line (:func:`completion.finish_batch` writes them like Ground Truth's custom job).

        A photo nobody gave a valid answer for has ``label: null`` and comes back without a label.
        """
        meta = line.get(f"{LABEL_ATTRIBUTE}-metadata")
        meta = meta if isinstance(meta, dict) else {}
        photo_id = line.get("photo-id") if isinstance(line.get("photo-id"), str) else None
        source_ref = line.get("source-ref") if isinstance(line.get("source-ref"), str) else None
        raw_job = meta.get("job_name") or meta.get("job-name")
        job_name = raw_job.rsplit("/", 1)[-1] if isinstance(raw_job, str) and raw_job else None
        created = meta.get("creation_date") or meta.get("creation-date")
        content = line.get(LABEL_ATTRIBUTE)
        label = content.get("label") if isinstance(content, dict) else None
        if meta.get("failure-reason") or not isinstance(label, str) or not label or not isinstance(content, dict):
            reason = str(meta.get("failure-reason") or "no valid answer from the taxonomists")
            return LabeledPhoto(photo_id, source_ref, None, None, None, job_name, created, reason)
        confidence = content.get("confidence")
        return LabeledPhoto(
            photo_id=photo_id, source_ref=source_ref, label=label,
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            human_annotated=True, job_name=job_name, creation_date=created,
        )

    def label_counters(self, describe_response: dict[str, Any]) -> LabelCounters:
        """The counts :func:`completion.finish_batch` put in its description (zeros when absent)."""
        c = describe_response.get("LabelCounters") or {}
        return LabelCounters(
            total_labeled=int(c.get("TotalLabeled", 0)),
            human_labeled=int(c.get("HumanLabeled", 0)),
            machine_labeled=int(c.get("MachineLabeled", 0)),
            failed_non_retryable=int(c.get("FailedNonRetryableError", 0)),
            unlabeled=int(c.get("Unlabeled", 0)),
        )

    def job_result(self, describe_response: dict[str, Any]) -> JobResult:
        """The workflow's view of :func:`completion.finish_batch`'s description."""
        output = describe_response.get("LabelingJobOutput") or {}
        return JobResult(
            job_name=str(describe_response.get("LabelingJobName", "")),
            job_arn=describe_response.get("LabelingJobArn"),
            status=str(describe_response.get("LabelingJobStatus", "")),
            output_manifest_uri=output.get("OutputDatasetS3Uri"),
            final_model_arn=None,
            counters=self.label_counters(describe_response),
            failure_reason=describe_response.get("FailureReason"),
            extra={k: describe_response[k] for k in ("Backend", "ProjectId", "Consolidation")
                   if k in describe_response},
        )

    def stop_job(self, client: Any, job_name: str) -> str:
        """Withdraw a batch's unanswered tasks from its stage's project (see :func:`completion.stop_batch`)."""
        from fieldlabel.labeling.label_studio.completion import stop_batch

        stage, batch_id = self.stage_of(job_name)
        project = client.find_project(self.project_title(stage))
        if project is None:
            return "absent"
        return stop_batch(client, int(project["id"]), batch_id)


def labels_from_taxonomy(document: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], str]:
    """``(category labels, (label, display name) pairs, unknown label)`` of ``config/taxonomy.json``.

    The category labels are in label-category order with the unknown label last (what ``taxonomy_hash`` and the
    consolidation take); the pairs are what the picker shows (``LabelStudioSettings.labels``).

    Raises:
        ValueError: a document without labels or unknown label.
    """
    entries = document.get("labels")
    unknown = document.get("unknown_label")
    if not isinstance(entries, list) or not entries or not isinstance(unknown, str) or not unknown:
        raise ValueError("taxonomy document needs 'labels' (a non-empty list) and 'unknown_label'")
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("label"), str) or not entry["label"]:
            raise ValueError(f"taxonomy entry without a label: {entry!r}")
        name = entry.get("display_name") or entry.get("scientific_name") or entry["label"]
        pairs.append((entry["label"], str(name)))
    return (*(label for label, _ in pairs), unknown), tuple(pairs), unknown


def field_text(fields: Mapping[str, Any]) -> str:
    """One line of the collector's notes for the labeling page ("Site: A12 · Captured: ... · Notes: ...")."""
    parts = []
    for key, title in _FIELD_TEXT_KEYS:
        value = fields.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            parts.append(f"{title}: {str(value).strip()}")
    lat, lon = fields.get("latitude"), fields.get("longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        parts.append(f"Location: {lat:.5f}, {lon:.5f}")
    text = " · ".join(parts) or "No field notes."
    return text if len(text) <= _FIELD_TEXT_MAX else text[: _FIELD_TEXT_MAX - 1] + "…"


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
