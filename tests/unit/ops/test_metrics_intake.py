"""EMF metrics of the intake handlers, as the operations alarms and dashboard read them (namespace, name, value,
unit and dimensions). The handlers run against moto, set up with the intake owner's helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import SERVICE
from moto import mock_aws

from stacks.config import load_config
from stacks.monitoring_metrics import NAMESPACE, service_name
from tests.infrastructure.synth import context_for
from tests.unit.intake.intake_helpers import (
    BATCHES,
    BUCKET,
    PHOTOS,
    FakeContext,
    fast_moto_transactions,
    jpeg,
    make_env,
    png_with_declared_size,
    sqs_record,
)
from tests.unit.ops.metrics_helpers import emf_metrics, only, values

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env():
    with mock_aws(), fast_moto_transactions():
        yield make_env()


@pytest.fixture
def register(env, monkeypatch):
    for k, v in {"INTAKE_BUCKET": BUCKET, "PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "BATCH_SIZE": "1000",
                 "MAX_PIXELS": "50000000"}.items():
        monkeypatch.setenv(k, v)
    from register import handler as mod

    mod.settings.cache_clear()
    mod.clients.cache_clear()
    yield mod
    mod.settings.cache_clear()
    mod.clients.cache_clear()


def _sqs(env, key: str, data: bytes, n: int) -> dict:
    return sqs_record(f"m{n}", {"Records": [env.put(key, data)]})


def test_register_emits_counts_and_per_reason_quarantine(env, register, capsys):
    capsys.readouterr()
    event = {"Records": [
        _sqs(env, "uploads/a/one.jpg", jpeg(color=(10, 200, 10)), 1),
        _sqs(env, "uploads/a/two.jpg", jpeg(color=(200, 10, 10), orientation=6), 2),
        _sqs(env, "uploads/a/notes.jpg", b"field notes, not a photo", 3),
        _sqs(env, "uploads/a/empty.jpg", b"", 4),
        _sqs(env, "uploads/a/bomb.png", png_with_declared_size(20_000, 20_000), 5),
    ]}
    assert register.lambda_handler(event, FakeContext()) == {"batchItemFailures": []}
    metrics = emf_metrics(capsys.readouterr().out)

    assert {m.namespace for m in metrics} == {NAMESPACE}
    assert all(m.unit == "Count" for m in metrics)
    svc = {"service": SERVICE}
    assert only(metrics, "PhotosRegistered", **svc) == 2
    assert only(metrics, "PhotosQuarantined", **svc) == 3
    for reason in ("not_an_image", "empty", "too_many_pixels"):
        assert only(metrics, "PhotosQuarantined", reason=reason, service=SERVICE) == 1, reason
    assert only(metrics, "DuplicatesSkipped", **svc) == 0
    copies = env.s3.list_objects_v2(Bucket=BUCKET, Prefix="labeling-copies/").get("KeyCount", 0)
    assert copies >= 1  # the rotated photo needs an upright copy
    assert only(metrics, "LabelingCopiesMade", **svc) == copies


def test_register_emits_both_rate_terms_even_when_nothing_is_new(env, register, capsys):
    # the quarantine-rate alarm divides by registered + quarantined: both must be present, as zeros, every time
    photo = jpeg(color=(1, 2, 3))
    register.lambda_handler({"Records": [_sqs(env, "uploads/b/first.jpg", photo, 1)]}, FakeContext())
    capsys.readouterr()
    register.lambda_handler({"Records": [_sqs(env, "uploads/b/again.jpg", photo, 2)]}, FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    assert only(metrics, "PhotosRegistered", service=SERVICE) == 0
    assert only(metrics, "PhotosQuarantined", service=SERVICE) == 0
    assert only(metrics, "DuplicatesSkipped", service=SERVICE) == 1
    assert [m for m in metrics if "reason" in m.dimensions] == []


@pytest.fixture
def dispatch(env, monkeypatch):
    for k, v in {"PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": env.state_machine_arn,
                 "BATCH_SIZE": "1000", "MAX_WAIT_SECONDS": "3600", "SMALL_BATCH_POLICY": "human_only"}.items():
        monkeypatch.setenv(k, v)
    from dispatch import handler as mod

    mod.settings.cache_clear()
    monkeypatch.setattr(mod, "clients", lambda: {"ddb": env.ddb, "sfn": env.sfn})
    yield mod
    mod.settings.cache_clear()


def _seed_pending(env, n: int, age: timedelta) -> None:
    start = utc_now() - age
    for i in range(n):
        env.ddb.put_item(TableName=PHOTOS, Item={
            "photo_id": {"S": f"sha256:p{i:04d}"}, "status": {"S": "PENDING"}, "attempts": {"N": "0"},
            "registered_at": {"S": iso(start + timedelta(seconds=i))}})


def test_dispatch_emits_claims_and_the_pool_as_it_leaves_it(env, dispatch, capsys):
    _seed_pending(env, 7, timedelta(hours=2))  # older than MAX_WAIT_SECONDS: due by age
    capsys.readouterr()
    summary = dispatch.lambda_handler({"trigger": "schedule"}, FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    assert len(summary["batches"]) == 1

    svc = {"service": SERVICE}
    assert only(metrics, "BatchesClaimed", **svc) == 1
    assert only(metrics, "PhotosClaimed", **svc) == 7
    # measured after the claim: a batch that went out does not trip the waiting alarm
    assert only(metrics, "PendingPhotos", **svc) == 0
    assert only(metrics, "OldestPendingAgeSeconds", **svc) == 0
    units = {m.name: m.unit for m in metrics}
    assert units["OldestPendingAgeSeconds"] == "Seconds" and units["PendingPhotos"] == "Count"


def test_dispatch_reports_a_due_batch_left_waiting(env, dispatch, monkeypatch, capsys):
    # the path the "batch waiting too long" alarm exists for: photos past the maximum wait that were not claimed
    monkeypatch.setenv("SMALL_BATCH_POLICY", "wait")
    dispatch.settings.cache_clear()
    _seed_pending(env, 7, timedelta(hours=2))
    capsys.readouterr()
    summary = dispatch.lambda_handler({"trigger": "schedule"}, FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    assert summary["batches"] == []
    assert only(metrics, "BatchesClaimed", service=SERVICE) == 0
    assert only(metrics, "PendingPhotos", service=SERVICE) == 7
    age = only(metrics, "OldestPendingAgeSeconds", service=SERVICE)
    assert 7200 <= age < 7200 + 120  # the oldest photo's real age, above MAX_WAIT_SECONDS


def test_dispatch_reports_pending_figures_when_nothing_is_due(env, dispatch, capsys):
    _seed_pending(env, 3, timedelta(minutes=10))
    capsys.readouterr()
    dispatch.lambda_handler({"trigger": "schedule"}, FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    assert only(metrics, "BatchesClaimed", service=SERVICE) == 0
    assert only(metrics, "PendingPhotos", service=SERVICE) == 3
    assert 600 <= only(metrics, "OldestPendingAgeSeconds", service=SERVICE) < 600 + 120


def test_metrics_carry_the_service_name_the_alarms_use():
    """In a Lambda, POWERTOOLS_SERVICE_NAME is set by LambdaKit; every metric, per-reason ones too, must carry it."""
    config = load_config(context_for("dev"))
    expected = service_name(config, "register")
    code = (
        "from types import SimpleNamespace\n"
        "from register.handler import emit_metrics\n"
        "from fieldlabel.common.observability import metrics\n"
        "emit_metrics(SimpleNamespace(registered=4, quarantined={'empty': 1}, duplicates=0, copies_made=0,\n"
        "                             embedded=4, embedding_failures=0))\n"
        "metrics.flush_metrics()\n"
    )
    run_env = {**os.environ, "POWERTOOLS_SERVICE_NAME": expected, "PYTHONPATH": str(ROOT / "lambdas")}
    out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True).stdout
    metrics = emf_metrics(out)
    assert only(metrics, "PhotosRegistered", service=expected) == 4
    assert only(metrics, "PhotosQuarantined", service=expected) == 1
    assert only(metrics, "PhotosQuarantined", reason="empty", service=expected) == 1
    assert values(metrics, "PhotosRegistered", service=SERVICE) == []
    assert json.loads(json.dumps(expected)) == f"{config.project}-register"
