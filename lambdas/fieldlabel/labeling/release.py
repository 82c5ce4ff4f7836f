"""Returning photos to the pending pool: the one place the workflow calls intake's release logic.

Intake owns the release rule (``attempts + 1`` and a back-off before the photo is PENDING again, PARKED after
``max_attempts``, QUARANTINED without a labeling copy):
:func:`fieldlabel.intake.release_batch`. It works on the photos still ``BATCHED`` in a batch and marks the batch
FAILED. The workflow needs it in two places:

* a failed run (:func:`release_failed_batch`): exactly intake's semantics;
* photos Ground Truth could not label in an otherwise finished job, and photos left out of its manifest
  (:func:`release_unlabeled`): after the labels are recorded, the photos still ``BATCHED`` are exactly those;
  intake's :func:`fieldlabel.intake.release_batch_photos` releases them without touching the batch, which goes on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fieldlabel.intake import Backoff, ReleaseReport, release_batch, release_batch_photos
from fieldlabel.labeling.registry_io import update_batch


def release_failed_batch(
    dynamodb: Any, *, photos_table: str, batches_table: str, batch_id: str, reason: str, max_attempts: int,
    now: datetime, backoff: Backoff | None = None,
) -> ReleaseReport:
    """Release every photo still ``BATCHED`` in the batch and mark the batch FAILED with ``reason``."""
    return release_batch(dynamodb, photos_table=photos_table, batches_table=batches_table, batch_id=batch_id,
                         reason=reason, max_attempts=max_attempts, now=now, backoff=backoff)


def release_unlabeled(
    dynamodb: Any, *, photos_table: str, batches_table: str, batch_id: str, reason: str, max_attempts: int,
    now: datetime, batch_status: str, now_iso: str, backoff: Backoff | None = None,
) -> ReleaseReport:
    """Release the photos of a finished job that came back without a label, or were left out of its manifest
    (no labeling copy: quarantined); the batch keeps ``batch_status``."""
    report = release_batch_photos(dynamodb, photos_table=photos_table, batches_table=batches_table,
                                  batch_id=batch_id, reason=reason, max_attempts=max_attempts, now=now,
                                  backoff=backoff)
    update_batch(dynamodb, batches_table, batch_id,
                 {"status": batch_status, "unlabeled_reason": reason, "updated_at": now_iso})
    return report
