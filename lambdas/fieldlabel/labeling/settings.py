"""Environment of the workflow functions (prepare, process output, publish, fail), parsed once per process.

The CDK construct (stacks/labeling_workflow.py) sets these variables; docs/workflow.md lists them per function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fieldlabel.intake.dispatch import Backoff
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend, GroundTruthSettings, ReviewJobSettings


class WorkflowEnv(BaseModel):
    """Variables shared by the workflow functions; each function checks the ones it needs with :meth:`require`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    photos_table: str = Field(default="", alias="PHOTOS_TABLE")
    batches_table: str = Field(default="", alias="BATCHES_TABLE")
    artifacts_bucket: str = Field(default="", alias="ARTIFACTS_BUCKET")
    project: str = Field(default="", alias="PROJECT_PREFIX")
    region: str = Field(default="", alias="AWS_REGION")
    config_json: str = Field(default="{}", alias="CONFIG_JSON")
    job_settings_json: str = Field(default="{}", alias="JOB_SETTINGS_JSON")
    role_arn: str = Field(default="", alias="GT_ROLE_ARN")
    workteam_arn: str = Field(default="", alias="WORKTEAM_ARN")
    review_workteam_arn: str = Field(default="", alias="REVIEW_WORKTEAM_ARN")
    label_categories_uri: str = Field(default="", alias="LABEL_CATEGORIES_URI")
    ui_template_uri: str = Field(default="", alias="UI_TEMPLATE_URI")
    review_template_uri: str = Field(default="", alias="REVIEW_TEMPLATE_URI")
    pre_annotation_arn: str = Field(default="", alias="PRE_ANNOTATION_ARN")
    post_annotation_arn: str = Field(default="", alias="POST_ANNOTATION_ARN")
    kms_key_arn: str = Field(default="", alias="KMS_KEY_ARN")
    poll_seconds: int = Field(default=300, ge=0, le=3600, alias="POLL_SECONDS")
    max_attempts: int = Field(default=3, ge=1, alias="MAX_ATTEMPTS")
    update_concurrency: int = Field(default=16, ge=1, le=64, alias="UPDATE_CONCURRENCY")
    retry_backoff_seconds: int = Field(default=3600, ge=0, alias="RETRY_BACKOFF_SECONDS")
    retry_backoff_max_seconds: int = Field(default=86_400, ge=0, alias="RETRY_BACKOFF_MAX_SECONDS")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkflowEnv:
        """Build from environment variables (empty strings count as unset)."""
        env = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in env.items() if k.isupper() and v != ""})

    def require(self, *names: str) -> None:
        """Raise ValueError naming every required variable that is missing."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            fields = type(self).model_fields
            raise ValueError("missing environment: " + ", ".join(fields[n].alias or n for n in missing))

    @property
    def runtime_config(self) -> dict[str, Any]:
        """``CONFIG_JSON``: project, labels (category order), unknown label, automated, workers per photo."""
        return dict(json.loads(self.config_json))

    @property
    def job_settings(self) -> dict[str, Any]:
        """``JOB_SETTINGS_JSON``: labeling and review task settings from the frozen config."""
        return dict(json.loads(self.job_settings_json))

    @property
    def labels(self) -> list[str]:
        """Label categories in the label-category file's order (their index is the class id)."""
        return list(self.runtime_config.get("labels") or [])

    @property
    def backoff(self) -> Backoff:
        """How long released photos wait before they are due again (intake's rule, docs/intake.md)."""
        return Backoff(self.retry_backoff_seconds, self.retry_backoff_max_seconds)

    @property
    def taxonomy_hash(self) -> str:
        """The label set's hash: what a stored active-learning model was trained on (``#model#<hash>``)."""
        # The own engine's chain key (fieldlabel.labeling.modelstore), so both kinds of model follow one label-set
        # identity. Imported here: modelstore needs numpy, which the functions that never read it need not load.
        from fieldlabel.labeling.modelstore import taxonomy_hash

        return taxonomy_hash(self.labels, self.unknown_label)

    @property
    def automated_enabled(self) -> bool:
        return bool(self.runtime_config.get("automated", False))

    @property
    def engine(self) -> str:
        """``labeling.engine``: ``groundtruth`` (Ground Truth's automated labeling) or ``model`` (the own engine)."""
        return str(self.runtime_config.get("engine") or "groundtruth")

    @property
    def engine_settings(self) -> dict[str, Any]:
        """``alpha, delta, min_examples_per_species, calibration_fraction`` of the own engine (config ``engine``)."""
        return dict(self.runtime_config.get("engine_settings") or {})

    @property
    def unknown_label(self) -> str:
        return str(self.runtime_config.get("unknown_label") or "not-a-tree-or-cannot-tell")

    @property
    def review_enabled(self) -> bool:
        return bool(self.job_settings.get("review_enabled", False))

    def backend(self) -> GroundTruthBackend:
        """The Ground Truth backend configured from this environment."""
        self.require("project", "region", "role_arn", "workteam_arn", "label_categories_uri", "ui_template_uri",
                     "artifacts_bucket", "kms_key_arn")
        js = self.job_settings
        review = None
        review_vars = (self.review_workteam_arn, self.review_template_uri, self.pre_annotation_arn,
                       self.post_annotation_arn)
        if all(review_vars):
            review = ReviewJobSettings(
                workteam_arn=self.review_workteam_arn,
                ui_template_uri=self.review_template_uri,
                pre_annotation_arn=self.pre_annotation_arn,
                post_annotation_arn=self.post_annotation_arn,
                reviewers_per_photo=int(js.get("reviewers_per_photo", 2)),
                task_time_limit_seconds=int(js.get("review_task_time_limit_seconds", 900)),
                task_availability_seconds=int(js.get("task_availability_seconds", 10 * 86400)),
            )
        return GroundTruthBackend(
            GroundTruthSettings(
                project=self.project,
                region=self.region,
                partition=_partition(self.region),
                role_arn=self.role_arn,
                workteam_arn=self.workteam_arn,
                label_categories_uri=self.label_categories_uri,
                ui_template_uri=self.ui_template_uri,
                output_path=f"s3://{self.artifacts_bucket}/gt-output/",
                kms_key_arn=self.kms_key_arn,
                workers_per_photo=int(js.get("workers_per_photo", 3)),
                task_time_limit_seconds=int(js.get("task_time_limit_seconds", 600)),
                task_availability_seconds=int(js.get("task_availability_seconds", 10 * 86400)),
                max_concurrent_tasks=int(js.get("max_concurrent_tasks", 1000)),
                task_title=str(js.get("task_title") or "Identify the tree species in the photo"),
                task_description=str(js.get("task_description") or "Choose the species shown."),
                review=review,
                cost_tags=tuple(sorted((str(k), str(v)) for k, v in self.runtime_config.get("tags", {}).items())),
            )
        )


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
