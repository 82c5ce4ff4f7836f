"""The labeling-backend seam: what the workflow needs from whatever labels the photos.

Intake, publishing and review only see these shapes. Everything that speaks a particular labeling service (its job
request, its region tables, its output manifest and counters) lives behind :class:`LabelingBackend`; the Ground Truth
implementation is :class:`fieldlabel.labeling.groundtruth.backend.GroundTruthBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Protocol

KIND_AUTOMATED = "automated"
KIND_HUMAN_ONLY = "human_only"
# labeling.engine 'model': the own engine labels what it can certify, taxonomists label the rest in a custom job.
KIND_MODEL = "model"
# stop_job's outcome for a job stopped (now or before) after labeling objects: its finished labels can be recorded.
STOPPED_WITH_LABELS = "stopped with labels"


@dataclass(frozen=True)
class BatchPhoto:
    """One photo of a batch as the labeling job sees it (from the registry's ``by_batch`` index)."""

    photo_id: str
    labeling_ref: str
    original_ref: str | None = None
    field: dict[str, Any] = dc_field(default_factory=dict)

    def manifest_line(self) -> dict[str, Any]:
        """The input-manifest line of this photo, the same for every backend (docs/contracts.md, "Manifest lines")."""
        line: dict[str, Any] = {"source-ref": self.labeling_ref, "photo-id": self.photo_id}
        if self.original_ref:
            line["original-ref"] = self.original_ref
        if self.field:
            line["field"] = self.field
        return line


@dataclass(frozen=True)
class LabeledPhoto:
    """One line of a finished job's output: the label of one photo, or why it has none.

    ``label`` is None when the backend could not label the photo; ``failure_reason`` then says why.
    """

    photo_id: str | None
    source_ref: str | None
    label: str | None
    confidence: float | None
    human_annotated: bool | None
    job_name: str | None
    creation_date: str | None = None
    failure_reason: str | None = None

    @property
    def failed(self) -> bool:
        """True when the photo came back without a label."""
        return self.label is None


@dataclass(frozen=True)
class LabelCounters:
    """The backend's own per-job counts (Ground Truth's ``LabelCounters``)."""

    total_labeled: int = 0
    human_labeled: int = 0
    machine_labeled: int = 0
    failed_non_retryable: int = 0
    unlabeled: int = 0

    def as_dict(self) -> dict[str, int]:
        """Plain dict for statistics files and state output."""
        return {
            "total_labeled": self.total_labeled,
            "human_labeled": self.human_labeled,
            "machine_labeled": self.machine_labeled,
            "failed_non_retryable": self.failed_non_retryable,
            "unlabeled": self.unlabeled,
        }


@dataclass(frozen=True)
class JobResult:
    """What a finished (or failed) labeling job tells the workflow."""

    job_name: str
    job_arn: str | None
    status: str
    output_manifest_uri: str | None
    final_model_arn: str | None
    counters: LabelCounters
    failure_reason: str | None = None
    extra: dict[str, Any] = dc_field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """True when the job finished and its output can be processed."""
        return self.status == "Completed"

    @property
    def stopped_with_labels(self) -> bool:
        """True when the job was stopped after labeling some objects: Ground Truth writes the results obtained
        before the stop to the output location (StopLabelingJob), and they are paid for, so they are recorded."""
        return self.status == "Stopped" and self.counters.total_labeled > 0 and bool(self.output_manifest_uri)


class LabelingBackend(Protocol):
    """What a labeling service has to provide so the workflow can run a batch through it."""

    label_attribute: str

    def job_name(self, batch_id: str) -> str:
        """The deterministic job name of a batch (a retry finds the same job)."""
        ...

    def review_job_name(self, batch_id: str) -> str:
        """The deterministic name of a batch's expert-review job."""
        ...

    def choose_kind(self, photo_count: int, *, automated_enabled: bool) -> str:
        """``automated`` or ``human_only`` for a batch of ``photo_count`` photos."""
        ...

    def manifest_line(self, photo: BatchPhoto) -> dict[str, Any]:
        """One input-manifest line for ``photo``."""
        ...

    def build_job_request(
        self, *, batch_id: str, kind: str, manifest_uri: str, initial_model_arn: str | None = None
    ) -> dict[str, Any]:
        """The complete request that starts the labeling job of a batch (``kind`` ``model``: the custom job)."""
        ...

    def build_review_request(self, *, batch_id: str, manifest_uri: str) -> dict[str, Any]:
        """The complete request that starts the expert-review job of a batch."""
        ...

    def parse_output_line(self, line: dict[str, Any]) -> LabeledPhoto:
        """One output-manifest line as a :class:`LabeledPhoto`."""
        ...

    def job_result(self, describe_response: dict[str, Any]) -> JobResult:
        """The workflow's view of a job description (status, output, model, counters)."""
        ...

    def label_counters(self, describe_response: dict[str, Any]) -> LabelCounters:
        """The backend's own counts of a job."""
        ...

    def stop_job(self, client: Any, job_name: str) -> str:
        """Stop ``job_name`` if it may still be running, through the backend's own ``client``.

        Tolerates a job that already finished, is stopping, or does not exist. Returns ``"stopped"``, ``"absent"``,
        or the status the job already had (e.g. ``"Completed"``), so the caller knows whether its labels exist;
        :data:`STOPPED_WITH_LABELS` when the job is (being) stopped after labeling some objects, whose results the
        service keeps (the batch is then parked at ``record``, not released).
        """
        ...
