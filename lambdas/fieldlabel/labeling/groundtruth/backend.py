"""SageMaker Ground Truth as the labeling backend: job requests, manifest lines, output lines, counters.

Request shapes follow the CreateLabelingJob API (botocore's SageMaker model, validated in the tests) and the
reference sheet (groundtruth-facts.md §1-§3, §10). Output lines follow "Output metadata" (§3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from fieldlabel.labeling.backend import (
    KIND_AUTOMATED,
    KIND_HUMAN_ONLY,
    KIND_MODEL,
    STOPPED_WITH_LABELS,
    BatchPhoto,
    JobResult,
    LabelCounters,
    LabeledPhoto,
)
from fieldlabel.labeling.groundtruth.regions import builtin_arns

# Ground Truth refuses automated data labeling below this many objects (facts §3).
AUTOMATED_MINIMUM = 1250
LABEL_ATTRIBUTE = "species"
REVIEW_LABEL_ATTRIBUTE = "species-review"
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# Private workforces allow tasks to stay available up to 30 days (facts §1, §10).
MAX_TASK_AVAILABILITY_SECONDS = 30 * 24 * 3600
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class ReviewJobSettings:
    """The expert-review job: reviewers' team, review template and our own annotation Lambdas."""

    workteam_arn: str
    ui_template_uri: str
    pre_annotation_arn: str
    post_annotation_arn: str
    reviewers_per_photo: int = 2
    task_time_limit_seconds: int = 900
    task_availability_seconds: int = 10 * 24 * 3600
    task_title: str = "Review the species label of a tree photo"
    task_description: str = "Confirm the label, correct it, or say you cannot tell."


@dataclass(frozen=True)
class GroundTruthSettings:
    """Everything a labeling-job request is built from (the prepare Lambda's environment)."""

    project: str
    region: str
    role_arn: str
    workteam_arn: str
    label_categories_uri: str
    ui_template_uri: str
    output_path: str
    kms_key_arn: str
    partition: str = "aws"
    workers_per_photo: int = 3
    task_time_limit_seconds: int = 600
    task_availability_seconds: int = 10 * 24 * 3600
    max_concurrent_tasks: int = 1000
    task_title: str = "Identify the tree species in the photo"
    task_description: str = "Choose the species shown, or 'not a tree / cannot tell'."
    review: ReviewJobSettings | None = None
    # The deployment's cost-allocation tags (config ``tags``), so labeling charges show up in the project's budget.
    cost_tags: tuple[tuple[str, str], ...] = ()


class GroundTruthBackend:
    """:class:`fieldlabel.labeling.backend.LabelingBackend` for SageMaker Ground Truth."""

    label_attribute = LABEL_ATTRIBUTE

    def __init__(self, settings: GroundTruthSettings) -> None:
        self.settings = settings

    # ----------------------------------------------------------------------------------------------- names, kinds

    def job_name(self, batch_id: str) -> str:
        """``<project>-<batch_id>``: deterministic, so a retried step finds (and adopts) the same job.

        Raises:
            ValueError: if the name breaks Ground Truth's 63-character ``[a-zA-Z0-9](-*[a-zA-Z0-9])*`` rule.
        """
        return _checked_name(f"{self.settings.project}-{batch_id}")

    def review_job_name(self, batch_id: str) -> str:
        """``<project>-<batch_id>-review``."""
        return _checked_name(f"{self.settings.project}-{batch_id}-review")

    def choose_kind(self, photo_count: int, *, automated_enabled: bool) -> str:
        """Automated labeling when enabled and the batch reaches Ground Truth's 1,250-object minimum."""
        return KIND_AUTOMATED if automated_enabled and photo_count >= AUTOMATED_MINIMUM else KIND_HUMAN_ONLY

    # ------------------------------------------------------------------------------------------------ manifests

    def manifest_line(self, photo: BatchPhoto) -> dict[str, Any]:
        """Input-manifest line (docs/contracts.md, "Manifest lines"): what the worker sees plus our metadata."""
        return photo.manifest_line()

    # ------------------------------------------------------------------------------------------------- requests

    def build_job_request(
        self, *, batch_id: str, kind: str, manifest_uri: str, initial_model_arn: str | None = None
    ) -> dict[str, Any]:
        """The CreateLabelingJob request of a batch (built-in single-label image classification).

        Args:
            batch_id: the batch.
            kind: ``automated`` adds ``LabelingJobAlgorithmsConfig``; ``human_only`` leaves it out.
            manifest_uri: the batch's input manifest.
            initial_model_arn: the active-learning model the last automated job ended with, if any.

        Raises:
            ValueError: on an unknown kind, or a model ARN given for a human-only job.
        """
        s = self.settings
        if kind == KIND_MODEL:
            if initial_model_arn:
                raise ValueError("the own engine's labeling job takes no active-learning model")
            return self._engine_labeling_request(batch_id=batch_id, manifest_uri=manifest_uri)
        if kind not in (KIND_AUTOMATED, KIND_HUMAN_ONLY):
            raise ValueError(f"unknown job kind {kind!r}")
        if initial_model_arn and kind != KIND_AUTOMATED:
            raise ValueError("an initial active-learning model only applies to automated labeling")
        arns = builtin_arns(s.region, s.partition)
        request = self._request(
            name=self.job_name(batch_id), label_attribute=LABEL_ATTRIBUTE, manifest_uri=manifest_uri,
            tags=self._tags(batch_id, kind),
            human_task=self._taxonomists_task(template_uri=s.ui_template_uri, pre_arn=arns.pre_human_task_lambda,
                                              post_arn=arns.annotation_consolidation_lambda),
        )
        if kind == KIND_AUTOMATED:
            algorithms: dict[str, Any] = {
                "LabelingJobAlgorithmSpecificationArn": arns.algorithm_specification,
                "LabelingJobResourceConfig": {"VolumeKmsKeyId": s.kms_key_arn},
            }
            if initial_model_arn:
                algorithms["InitialActiveLearningModelArn"] = initial_model_arn
            request["LabelingJobAlgorithmsConfig"] = algorithms
        return request

    def _engine_labeling_request(self, *, batch_id: str, manifest_uri: str) -> dict[str, Any]:
        """The taxonomists' job of a batch under ``labeling.engine: model``: a custom task (no automated labeling).

        It shows the expert-review template in its suggestion mode (the model's suggestion to confirm, or the
        searchable picker) and uses our own pre-/post-annotation Lambdas, so the answers and their consolidation
        are the review job's; the consolidated label lands under the label attribute ``species``.

        Raises:
            ValueError: when the backend was built without the custom-task settings (template, Lambdas).
        """
        r = self.settings.review
        if r is None:
            raise ValueError("custom-task settings (template, pre/post-annotation Lambdas) are missing; "
                             "the engine's labeling job cannot be built")
        return self._request(
            name=self.job_name(batch_id), label_attribute=LABEL_ATTRIBUTE, manifest_uri=manifest_uri,
            tags=self._tags(batch_id, KIND_MODEL),
            human_task=self._taxonomists_task(template_uri=r.ui_template_uri, pre_arn=r.pre_annotation_arn,
                                              post_arn=r.post_annotation_arn),
        )

    def _taxonomists_task(self, *, template_uri: str, pre_arn: str, post_arn: str) -> dict[str, Any]:
        """``HumanTaskConfig`` of a labeling job on the taxonomists' team; only the UI and the two Lambdas differ
        between the built-in classifier (automated or human-only jobs) and the engine's custom task."""
        s = self.settings
        return {
            "WorkteamArn": s.workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": template_uri},
            "PreHumanTaskLambdaArn": pre_arn,
            "TaskKeywords": ["image", "classification", "trees", "species"],
            "TaskTitle": s.task_title,
            "TaskDescription": s.task_description,
            "NumberOfHumanWorkersPerDataObject": s.workers_per_photo,
            "TaskTimeLimitInSeconds": s.task_time_limit_seconds,
            "TaskAvailabilityLifetimeInSeconds": min(s.task_availability_seconds, MAX_TASK_AVAILABILITY_SECONDS),
            "MaxConcurrentTaskCount": s.max_concurrent_tasks,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": post_arn},
        }

    def build_review_request(self, *, batch_id: str, manifest_uri: str) -> dict[str, Any]:
        """The CreateLabelingJob request of a batch's expert review: a custom task on the reviewers' team.

        Raises:
            ValueError: when the backend was built without review settings.
        """
        s, r = self.settings, self.settings.review
        if r is None:
            raise ValueError("review settings are missing; the review job cannot be built")
        return self._request(
            name=self.review_job_name(batch_id), label_attribute=REVIEW_LABEL_ATTRIBUTE, manifest_uri=manifest_uri,
            tags=self._tags(batch_id, "review"),
            human_task={
                "WorkteamArn": r.workteam_arn,
                "UiConfig": {"UiTemplateS3Uri": r.ui_template_uri},
                "PreHumanTaskLambdaArn": r.pre_annotation_arn,
                "TaskKeywords": ["image", "review", "trees", "species"],
                "TaskTitle": r.task_title,
                "TaskDescription": r.task_description,
                "NumberOfHumanWorkersPerDataObject": r.reviewers_per_photo,
                "TaskTimeLimitInSeconds": r.task_time_limit_seconds,
                "TaskAvailabilityLifetimeInSeconds": min(r.task_availability_seconds, MAX_TASK_AVAILABILITY_SECONDS),
                "MaxConcurrentTaskCount": s.max_concurrent_tasks,
                "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": r.post_annotation_arn},
            },
        )

    def _request(self, *, name: str, label_attribute: str, manifest_uri: str, tags: list[dict[str, str]],
                 human_task: dict[str, Any]) -> dict[str, Any]:
        """What every job of ours shares: input, encrypted output, role, categories, no early stop."""
        s = self.settings
        return {
            "LabelingJobName": name,
            "LabelAttributeName": label_attribute,
            "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
            "OutputConfig": {"S3OutputPath": s.output_path, "KmsKeyId": s.kms_key_arn},
            "RoleArn": s.role_arn,
            "LabelCategoryConfigS3Uri": s.label_categories_uri,
            "StoppingConditions": {"MaxPercentageOfInputDatasetLabeled": 100},
            "HumanTaskConfig": human_task,
            "Tags": tags,
        }

    def _tags(self, batch_id: str, kind: str) -> list[dict[str, str]]:
        # The configured cost-allocation tags override the default project tag, so the budget's filter matches.
        merged = {"project": self.settings.project, **dict(self.settings.cost_tags), "batch-id": batch_id,
                  "job-kind": kind}
        return [{"Key": k, "Value": v} for k, v in merged.items()]

    # --------------------------------------------------------------------------------------------------- output

    def parse_output_line(self, line: dict[str, Any]) -> LabeledPhoto:
        """One output-manifest line (facts §3, "Output metadata").

        A failed object either carries ``failure-reason`` in its metadata or lacks the label attribute; both come
        back as a :class:`LabeledPhoto` without ``label``.
        """
        meta = line.get(f"{LABEL_ATTRIBUTE}-metadata")
        meta = meta if isinstance(meta, dict) else {}
        photo_id = line.get("photo-id") if isinstance(line.get("photo-id"), str) else None
        source_ref = line.get("source-ref") if isinstance(line.get("source-ref"), str) else None
        job_name = _job_name(meta.get("job-name") or meta.get("job_name"))
        content = line.get(LABEL_ATTRIBUTE)
        if isinstance(content, dict):
            return _custom_output(content, meta, photo_id, source_ref, job_name)
        failure = meta.get("failure-reason")
        label = meta.get("class-name")
        if failure or LABEL_ATTRIBUTE not in line or not isinstance(label, str) or not label:
            reason = str(failure) if failure else "no label in the output manifest"
            return LabeledPhoto(photo_id, source_ref, None, None, None, job_name, meta.get("creation-date"), reason)
        confidence = meta.get("confidence")
        return LabeledPhoto(
            photo_id=photo_id,
            source_ref=source_ref,
            label=label,
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            human_annotated=_yes(meta.get("human-annotated")),
            job_name=job_name,
            creation_date=meta.get("creation-date"),
        )

    def label_counters(self, describe_response: dict[str, Any]) -> LabelCounters:
        """Ground Truth's ``LabelCounters`` of a DescribeLabelingJob response (zeros when absent)."""
        c = describe_response.get("LabelCounters") or {}
        return LabelCounters(
            total_labeled=int(c.get("TotalLabeled", 0)),
            human_labeled=int(c.get("HumanLabeled", 0)),
            machine_labeled=int(c.get("MachineLabeled", 0)),
            failed_non_retryable=int(c.get("FailedNonRetryableError", 0)),
            unlabeled=int(c.get("Unlabeled", 0)),
        )

    def stop_job(self, client: Any, job_name: str) -> str:
        """StopLabelingJob when DescribeLabelingJob says the job may still run (see the Protocol)."""
        try:
            described = client.describe_labeling_job(LabelingJobName=job_name)
        except ClientError as exc:
            if _error_code(exc) in (*_ABSENT, "ValidationException"):
                return "absent"
            raise
        status = str(described["LabelingJobStatus"])
        # A stopped job keeps what it labeled (StopLabelingJob writes those results): say so, so the batch is parked
        # for its labels to be recorded instead of released.
        labeled = self.label_counters(described).total_labeled > 0
        if status in ("Stopped", "Stopping"):
            return STOPPED_WITH_LABELS if labeled else status
        if status in TERMINAL_STATUSES:
            return status
        try:
            client.stop_labeling_job(LabelingJobName=job_name)
        except ClientError as exc:
            if _error_code(exc) in _ABSENT:
                return "absent"
            if _error_code(exc) == "ValidationException":
                # It reached a terminal state between the two calls: nothing left to stop.
                return "finished"
            raise
        return STOPPED_WITH_LABELS if labeled else "stopped"

    def job_result(self, describe_response: dict[str, Any]) -> JobResult:
        """The workflow's view of a DescribeLabelingJob response (also the output of ``createLabelingJob.sync``)."""
        output = describe_response.get("LabelingJobOutput") or {}
        name = str(describe_response.get("LabelingJobName", ""))
        status = str(describe_response.get("LabelingJobStatus", ""))
        manifest = output.get("OutputDatasetS3Uri")
        if not manifest and status == "Stopped":
            # A stopped job's results go to its output location (StopLabelingJob), in the documented layout
            # <S3OutputPath>/<job name>/manifests/output/output.manifest; LabelingJobOutput is only promised for a
            # completed job, so the path is derived rather than read.
            base = str((describe_response.get("OutputConfig") or {}).get("S3OutputPath") or "")
            manifest = f"{base.rstrip('/')}/{name}/manifests/output/output.manifest" if base and name else None
        return JobResult(
            job_name=name,
            job_arn=describe_response.get("LabelingJobArn"),
            status=status,
            output_manifest_uri=manifest,
            final_model_arn=output.get("FinalActiveLearningModelArn") or None,
            counters=self.label_counters(describe_response),
            failure_reason=describe_response.get("FailureReason"),
        )


def _custom_output(content: dict[str, Any], meta: dict[str, Any], photo_id: str | None, source_ref: str | None,
                   job_name: str | None) -> LabeledPhoto:
    """A custom job's line: our post-annotation Lambda's consolidated ``{"label", "confidence", ...}``.

    Ground Truth adds ``{"job_name", "type": "groundTruth/custom", "human-annotated": "yes", "creation_date"}`` as
    metadata (facts §4). A photo no taxonomist gave a valid answer for has ``label: null``.
    """
    created = meta.get("creation-date") or meta.get("creation_date")
    label = content.get("label")
    if meta.get("failure-reason") or not isinstance(label, str) or not label:
        reason = str(meta.get("failure-reason") or "no valid answer from the taxonomists")
        return LabeledPhoto(photo_id, source_ref, None, None, None, job_name, created, reason)
    confidence = content.get("confidence")
    return LabeledPhoto(
        photo_id=photo_id, source_ref=source_ref, label=label,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        human_annotated=True, job_name=job_name, creation_date=created,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# DescribeLabelingJob answers an unknown name with ResourceNotFound; some SageMaker APIs use ValidationException.
_ABSENT = ("ResourceNotFound", "ResourceNotFoundException")


def _checked_name(name: str) -> str:
    if len(name) > 63 or not JOB_NAME_PATTERN.match(name):
        raise ValueError(f"labeling job name {name!r} breaks Ground Truth's rule (1-63 chars, letters/digits/'-')")
    return name


def _job_name(value: Any) -> str | None:
    """Ground Truth writes ``job-name`` both as ``<job>`` and ``labeling-job/<job>`` (facts §3)."""
    if not isinstance(value, str) or not value:
        return None
    return value.rsplit("/", 1)[-1]


def _yes(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "true")
    return None
