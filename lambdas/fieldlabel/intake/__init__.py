"""Intake: S3 events, validation and labeling copies, EXIF and sidecar metadata, dispatch and claiming."""

from fieldlabel.intake.dispatch import Backoff, ReleaseReport, release_batch, release_batch_photos

__all__ = ["Backoff", "ReleaseReport", "release_batch", "release_batch_photos"]
