"""A small registry in moto for the labeling unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from fieldlabel.labeling.groundtruth.backend import GroundTruthBackend, GroundTruthSettings
from fieldlabel.labeling.prepare import Tables
from fieldlabel.registry import create_registry_tables
from fieldlabel.registry.model import from_item, to_item
from moto import mock_aws

LABELS = ["quercus-robur", "fagus-sylvatica", "betula-pendula", "not-a-tree-or-cannot-tell"]
NOW = "2026-11-26T06:30:00.000000Z"


@dataclass
class World:
    """moto clients, table/bucket names and helpers."""

    ddb: Any
    s3: Any
    tables: Tables
    intake: str

    def seed(self, batch_id: str, n: int, *, start: int = 0, status: str = "BATCHED", attempts: int = 0,
             labeling_ref: bool = True) -> list[str]:
        ids = []
        for i in range(start, start + n):
            digest = hashlib.sha256(f"{batch_id}/{i}".encode()).hexdigest()
            pid = f"sha256:{digest}"
            item: dict[str, Any] = {
                "photo_id": pid, "status": status, "batch_id": batch_id, "registered_at": NOW, "updated_at": NOW,
                "attempts": attempts,
                "original": {"bucket": self.intake, "key": f"uploads/IMG_{i}.jpg", "version_id": "", "etag": "e",
                             "size": 10},
                "field": {"site_id": f"S{i}", "latitude": 52.5},
            }
            if labeling_ref:
                item["labeling_ref"] = f"s3://{self.intake}/labeling-copies/sha256-{digest}.jpg"
            self.ddb.put_item(TableName=self.tables.photos_table, Item=to_item(item))
            ids.append(pid)
        self.ddb.put_item(TableName=self.tables.batches_table,
                          Item=to_item({"batch_id": batch_id, "status": "STARTED", "photo_count": n}))
        return ids

    def photo(self, pid: str) -> dict[str, Any]:
        return from_item(self.ddb.get_item(TableName=self.tables.photos_table,
                                           Key={"photo_id": {"S": pid}})["Item"]) or {}

    def batch(self, batch_id: str) -> dict[str, Any]:
        return from_item(self.ddb.get_item(TableName=self.tables.batches_table,
                                           Key={"batch_id": {"S": batch_id}}).get("Item")) or {}


@pytest.fixture
def world() -> Iterator[World]:
    with new_world() as w:
        yield w


@contextmanager
def new_world() -> Iterator[World]:
    """A fresh registry and buckets in moto (crash-injection tests make one per crash point)."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        tables = Tables("t-photos", "t-batches", "artifacts-bucket")
        create_registry_tables(ddb, tables.photos_table, tables.batches_table)
        s3.create_bucket(Bucket=tables.artifacts_bucket)
        s3.create_bucket(Bucket="intake-bucket")
        yield World(ddb, s3, tables, "intake-bucket")


@pytest.fixture
def gt() -> GroundTruthBackend:
    return GroundTruthBackend(GroundTruthSettings(
        project="treelabel-dev", region="us-east-1", role_arn="arn:aws:iam::111111111111:role/gt",
        workteam_arn="arn:aws:sagemaker:us-east-1:111111111111:workteam/private-crowd/taxonomists",
        label_categories_uri="s3://assets/label-categories.json", ui_template_uri="s3://assets/ui.liquid.html",
        output_path="s3://artifacts-bucket/gt-output/",
        kms_key_arn="arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"))
