"""A moto world for the operator commands: registry tables, buckets, photos and batches in the states the workflow
leaves them, and dataset versions written by the workflow's own publish step (fieldlabel.labeling.publish)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from fieldlabel.labeling.prepare import Tables
from fieldlabel.labeling.process import LabelingStats
from fieldlabel.labeling.publish import PublishInputs, publish_dataset
from fieldlabel.registry import create_registry_tables
from fieldlabel.registry.model import to_item
from fieldlabel.review.apply import ApplyOutcome

PHOTOS, BATCHES = "fl-photos", "fl-batches"
ARTIFACTS, INTAKE = "fl-artifacts", "fl-intake"
DISPATCH_FN = "fl-dispatch"
LABELS = ["quercus-robur", "fagus-sylvatica", "pinus-sylvestris", "not-a-tree-or-cannot-tell"]
CATEGORIES_URI = f"s3://{ARTIFACTS}/config/label-categories.json"
TEMPLATE_URI = f"s3://{ARTIFACTS}/templates/species.liquid.html"


@dataclass
class World:
    ddb: Any
    s3: Any
    outputs: str

    def put_photo(self, photo_id: str, status: str, registered_at: str, **extra: Any) -> None:
        self.ddb.put_item(TableName=PHOTOS, Item=to_item({"photo_id": photo_id, "status": status,
                                                          "registered_at": registered_at, "attempts": 0, **extra}))

    def put_batch(self, batch_id: str, status: str, **extra: Any) -> None:
        self.ddb.put_item(TableName=BATCHES, Item=to_item({"batch_id": batch_id, "status": status, **extra}))


def make_world(tmp_path: Path, region: str = "us-east-1") -> World:
    """Tables and buckets (inside an active mock_aws) and an outputs file naming them, cdk --outputs-file shape."""
    ddb = boto3.client("dynamodb", region_name=region)
    s3 = boto3.client("s3", region_name=region)
    create_registry_tables(ddb, PHOTOS, BATCHES)
    for b in (ARTIFACTS, INTAKE):
        s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=ARTIFACTS, Key="config/label-categories.json",
                  Body=json.dumps({"document-version": "2018-11-28", "labels": [{"label": x} for x in LABELS]}))
    s3.put_object(Bucket=ARTIFACTS, Key="templates/species.liquid.html", Body=b"<crowd-form></crowd-form>")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({
        "treelabel-Storage": {"IntakeBucketName": INTAKE, "ArtifactsBucketName": ARTIFACTS,
                              "PhotosTableName": PHOTOS, "BatchesTableName": BATCHES},
        "treelabel-Pipeline": {"DispatchFunctionName": DISPATCH_FN},
    }))
    return World(ddb, s3, str(outputs))


@dataclass
class Photo:
    photo_id: str
    label: str
    human: bool
    confidence: float = 0.95
    field: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    key: str | None = None


def publish_batch(world: World, batch_id: str, photos: list[Photo], *, kind: str, published_at: str,
                  audits: list[tuple[str, str]] = (), reviewed: int = 0, failed: int = 0) -> dict[str, Any]:
    """Put a batch through the workflow's end states: photos LABELED with their labeling copies in the intake
    bucket, the batch REVIEWING, then the real publish step. ``audits`` are (machine label, reviewed label) pairs."""
    world.put_batch(batch_id, "REVIEWING", kind=kind, photo_count=len(photos) + failed,
                    created_at=published_at.replace("T12", "T06"), updated_at=published_at,
                    job_name=f"treelabel-{batch_id}", execution_arn=f"arn:aws:states:::execution:sm:batch-{batch_id}")
    stats = LabelingStats(job_name=f"treelabel-{batch_id}", kind=kind)
    for p in photos:
        key = p.key or f"labeling-copies/{p.photo_id.replace(':', '-')}.jpg"
        world.s3.put_object(Bucket=INTAKE, Key=key, Body=f"jpeg bytes of {p.photo_id}".encode())
        world.put_photo(p.photo_id, "LABELED", "2026-11-01T00:00:00.000000Z", batch_id=batch_id,
                        labeling_ref=f"s3://{INTAKE}/{key}", label=p.label, label_confidence=p.confidence,
                        human_annotated=p.human, label_source="human" if p.human else "machine",
                        job_name=f"treelabel-{batch_id}", updated_at=published_at, field=p.field,
                        original={"bucket": INTAKE, "key": f"uploads/site/{p.photo_id.split(':')[-1]}.HEIC"},
                        review=p.review)
        stats.labeled += 1
        stats.human += int(p.human)
        stats.machine += int(not p.human)
        stats.by_species[p.label] += 1
    stats.failed = failed
    review = None
    if reviewed:
        outcome = ApplyOutcome(job_name=f"treelabel-{batch_id}-review")
        outcome.reviewed = reviewed
        for machine_label, reviewed_label in audits:
            outcome.tally.add(machine_label, reviewed_label)
            outcome.outcomes["confirmed" if machine_label == reviewed_label else "corrected"] += 1
        review = outcome.as_dict()
    return publish_dataset(
        dynamodb=world.ddb, s3=world.s3, tables=Tables(PHOTOS, BATCHES, ARTIFACTS), batch_id=batch_id,
        inputs=PublishInputs(labels=LABELS, label_attribute="species", label_categories_uri=CATEGORIES_URI,
                             ui_template_uri=TEMPLATE_URI, review_template_uri=None, configuration={}),
        labeling=stats.as_dict(), review=review, now_iso=published_at,
    )
