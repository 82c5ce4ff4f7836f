"""Environment of the review functions, parsed once per process into typed settings."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from fieldlabel.review.consolidation import ConsolidationConfig


class ReviewEnv(BaseModel):
    """Environment variables read by the post-annotation, select-review and apply-review functions.

    Each function checks the names it needs with ``require``; the thresholds have documented defaults.
    """

    photos_table: str | None = Field(default=None, alias="PHOTOS_TABLE")
    reviewers_table: str | None = Field(default=None, alias="REVIEWERS_TABLE")
    artifacts_bucket: str | None = Field(default=None, alias="ARTIFACTS_BUCKET")
    unknown_label: str = Field(default="not-a-tree-or-cannot-tell", alias="UNKNOWN_LABEL")
    label_categories_uri: str = Field(default="", alias="LABEL_CATEGORIES_URI")
    audit_sample_rate: float = Field(default=0.05, ge=0.0, le=1.0, alias="AUDIT_SAMPLE_RATE")
    low_confidence_threshold: float = Field(default=0.7, ge=0.0, le=1.0, alias="LOW_CONFIDENCE_THRESHOLD")
    adjudication_threshold: float = Field(default=0.9, ge=0.0, le=1.0, alias="ADJUDICATION_THRESHOLD")
    low_reliability: float = Field(default=0.7, ge=0.0, le=1.0, alias="LOW_RELIABILITY_THRESHOLD")
    max_review_photos: int = Field(default=30_000, ge=1, alias="MAX_REVIEW_PHOTOS")
    response_budget_bytes: int = Field(default=5_500_000, ge=10_000, le=6 * 1024 * 1024, alias="RESPONSE_BUDGET_BYTES")
    update_concurrency: int = Field(default=8, ge=1, le=64, alias="UPDATE_CONCURRENCY")

    @field_validator("unknown_label")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("UNKNOWN_LABEL must not be empty")
        return v

    def require(self, *names: str) -> None:
        """Raise ValueError naming every required variable that is missing."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ValueError(
                "missing environment: " + ", ".join(type(self).model_fields[n].alias or n for n in missing)
            )

    def consolidation(self) -> ConsolidationConfig:
        """The consolidation tunables implied by the environment."""
        return ConsolidationConfig(
            adjudication_threshold=self.adjudication_threshold, low_reliability=self.low_reliability
        )

    @classmethod
    def from_environ(cls, environ: dict[str, str]) -> ReviewEnv:
        """Parse the given mapping (``os.environ`` in the handlers); empty strings count as unset."""
        return cls.model_validate({k: v for k, v in environ.items() if v != ""})
