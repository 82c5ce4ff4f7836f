"""EMF metrics of the workflow and review handlers that the dashboard's batch and label sections graph.

A real batch is made the way production makes one (photos registered as pending, the dispatch handler claims them),
then the workflow handlers run against moto and their EMF output is read back.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fieldlabel.common.clock import iso, utc_now
from fieldlabel.common.observability import SERVICE
from fieldlabel.labeling.groundtruth.backend import LABEL_ATTRIBUTE, GroundTruthBackend, GroundTruthSettings
from moto import mock_aws

from tests.unit.intake.intake_helpers import BATCHES, BUCKET, PHOTOS, FakeContext, fast_moto_transactions, make_env
from tests.unit.ops.metrics_helpers import emf_metrics, only
from tests.unit.review.test_review_apply import BATCH as REVIEW_BATCH
from tests.unit.review.test_review_apply import JOB as REVIEW_JOB
from tests.unit.review.test_review_apply import _handler as apply_review_handler
from tests.unit.review.test_review_apply import _setup as review_setup
from tests.unit.review.test_review_apply import aws  # noqa: F401 - the review owner's moto fixture

PROJECT = "treelabel-test"


@pytest.fixture
def env(monkeypatch):
    with mock_aws(), fast_moto_transactions():
        e = make_env()
        for k, v in {"PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "ARTIFACTS_BUCKET": BUCKET,
                     "STATE_MACHINE_ARN": e.state_machine_arn, "BATCH_SIZE": "1000", "MAX_WAIT_SECONDS": "3600",
                     "PROJECT_PREFIX": PROJECT}.items():
            monkeypatch.setenv(k, v)
        yield e


def _claimed_batch(env, n: int, monkeypatch) -> tuple[str, list[str]]:
    """Pending photos older than the maximum wait, claimed into one batch by the dispatch handler."""
    start = utc_now() - timedelta(hours=2)
    ids = []
    for i in range(n):
        pid = f"sha256:w{i:04d}"
        env.ddb.put_item(TableName=PHOTOS, Item={
            "photo_id": {"S": pid}, "status": {"S": "PENDING"}, "attempts": {"N": "0"},
            "registered_at": {"S": iso(start + timedelta(seconds=i))},
            "labeling_ref": {"S": f"s3://{BUCKET}/uploads/{i}.jpg"}})
        ids.append(pid)
    from dispatch import handler as dispatch

    dispatch.settings.cache_clear()
    monkeypatch.setattr(dispatch, "clients", lambda: {"ddb": env.ddb, "sfn": env.sfn})
    (batch,) = dispatch.lambda_handler({"trigger": "schedule"}, FakeContext())["batches"]
    dispatch.settings.cache_clear()
    return batch["batch_id"], ids


def _status(env, pid: str) -> str:
    return env.ddb.get_item(TableName=PHOTOS, Key={"photo_id": {"S": pid}})["Item"]["status"]["S"]


def _backend() -> GroundTruthBackend:
    return GroundTruthBackend(GroundTruthSettings(
        project=PROJECT, region="us-east-1", role_arn="arn:aws:iam::123456789012:role/gt",
        workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t",
        label_categories_uri=f"s3://{BUCKET}/config/label-categories.json",
        ui_template_uri=f"s3://{BUCKET}/config/ui.liquid.html", output_path=f"s3://{BUCKET}/gt-output/",
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
    ))


def test_process_output_emits_human_and_machine_labels_of_the_batch(env, monkeypatch, capsys):
    batch_id, ids = _claimed_batch(env, 6, monkeypatch)
    job_name = f"{PROJECT}-{batch_id}"[:63]

    def line(pid: str, *, human: bool | None, label: str = "quercus-robur") -> dict:
        meta: dict = {"job-name": f"labeling-job/{job_name}", "creation-date": "2026-11-26T07:00:00"}
        out = {"source-ref": f"s3://{BUCKET}/uploads/x.jpg", "photo-id": pid}
        if human is None:
            meta["failure-reason"] = "ClientError: worker task expired"
        else:
            meta.update({"class-name": label, "confidence": 0.9, "human-annotated": "yes" if human else "no"})
            out[LABEL_ATTRIBUTE] = 0
        out[f"{LABEL_ATTRIBUTE}-metadata"] = meta
        return out

    # three labeled by people, two by the model, one failed
    lines = [line(ids[0], human=True), line(ids[1], human=True), line(ids[2], human=True),
             line(ids[3], human=False), line(ids[4], human=False), line(ids[5], human=None)]
    key = f"gt-output/{job_name}/manifests/output/output.manifest"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(json.dumps(x) for x in lines).encode())
    job = {"LabelingJobName": job_name, "LabelingJobStatus": "Completed",
           "LabelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{job_name}",
           "LabelingJobOutput": {"OutputDatasetS3Uri": f"s3://{BUCKET}/{key}"},
           "LabelCounters": {"TotalLabeled": 5, "HumanLabeled": 3, "MachineLabeled": 2,
                             "FailedNonRetryableError": 1, "Unlabeled": 0}}

    from process_output import handler

    handler._env.cache_clear()
    monkeypatch.setattr(handler, "_backend", _backend)
    monkeypatch.setattr(handler, "_clients", lambda: (env.ddb, env.s3))
    capsys.readouterr()
    handler.lambda_handler({"batch_id": batch_id, "kind": "automated", "job": job}, FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    handler._env.cache_clear()

    svc = {"service": SERVICE}
    assert only(metrics, "PhotosLabeledByHumans", **svc) == 3
    assert only(metrics, "PhotosLabeledByMachine", **svc) == 2
    assert only(metrics, "PhotosNotLabeled", **svc) == 1
    assert {m.namespace for m in metrics} == {"FieldLabel"} and {m.unit for m in metrics} == {"Count"}
    assert _status(env, ids[5]) == "BACKOFF"  # the failed photo went back to the pool, after a back-off


def test_fail_batch_emits_one_failed_batch(env, monkeypatch, capsys):
    batch_id, ids = _claimed_batch(env, 3, monkeypatch)
    from fail_batch import handler

    from tests.unit.labeling.fakes import FakeLabelingJobs

    handler._env.cache_clear()
    monkeypatch.setattr(handler, "_clients", lambda: (env.ddb, FakeLabelingJobs()))
    monkeypatch.setattr(handler, "_backend", _backend)
    capsys.readouterr()
    handler.lambda_handler({"batch_id": batch_id, "error": {"Error": "States.TaskFailed", "Cause": "boom"}},
                           FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    handler._env.cache_clear()
    assert only(metrics, "BatchesFailed", service=SERVICE) == 1
    assert all(_status(env, pid) == "BACKOFF" for pid in ids)


def test_apply_review_emits_measured_machine_accuracy(aws, monkeypatch, capsys):  # noqa: F811
    s3, ddb = aws
    review_setup(s3, ddb)
    handler = apply_review_handler(monkeypatch, s3, ddb)
    capsys.readouterr()
    out = handler.lambda_handler(
        {"batch_id": REVIEW_BATCH,
         "output_manifest_uri": f"s3://artifacts/gt-output/{REVIEW_JOB}/manifests/output/output.manifest"},
        FakeContext(),
    )
    metrics = emf_metrics(capsys.readouterr().out)
    accuracy = only(metrics, "MachineLabelAccuracy", service=SERVICE)
    # the review owner's hand-computed audit: (50 + 10) / (100 + 10) of machine labels right, as a percentage
    assert accuracy == pytest.approx(100 * 60 / 110, abs=0.01)
    assert accuracy == pytest.approx(100 * out["machine_accuracy"]["overall"]["accuracy"])
    assert [m.unit for m in metrics if m.name == "MachineLabelAccuracy"] == ["Percent"]
    assert only(metrics, "ReviewCorrections", service=SERVICE) == out["corrections"] == 4
    assert only(metrics, "ReviewNeedsAdjudication", service=SERVICE) == 1


@pytest.mark.parametrize(("ci_high", "expected"), [(0.90, 1), (0.99, 0)])
def test_publish_emits_whether_the_audit_contradicts_the_engines_bound(env, monkeypatch, capsys, ci_high, expected):
    # Given a labeled batch of the own engine whose audit measured the machine labels
    batch_id, ids = _claimed_batch(env, 3, monkeypatch)
    for pid in ids:
        env.ddb.update_item(TableName=PHOTOS, Key={"photo_id": {"S": pid}},
                            UpdateExpression="SET #s = :l, #lab = :q, human_annotated = :f, label_source = :m",
                            ExpressionAttributeNames={"#s": "status", "#lab": "label"},
                            ExpressionAttributeValues={":l": {"S": "LABELED"}, ":q": {"S": "quercus-robur"},
                                                       ":f": {"BOOL": False}, ":m": {"S": "machine"}})
    for key, body in (("config/label-categories.json", b'{"labels": [{"label": "quercus-robur"}]}'),
                      ("config/ui.liquid.html", b"<crowd-form></crowd-form>")):
        env.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    monkeypatch.setenv("LABEL_CATEGORIES_URI", f"s3://{BUCKET}/config/label-categories.json")
    monkeypatch.setenv("UI_TEMPLATE_URI", f"s3://{BUCKET}/config/ui.liquid.html")
    monkeypatch.setenv("CONFIG_JSON", json.dumps({"project": PROJECT, "labels": ["quercus-robur"],
                                                  "engine": "model"}))
    labeling = {"labeled": 3, "human_labeled": 0, "machine_labeled": 3, "kind": "model",
                "engine": {"method": "ltt", "alpha": 0.05, "delta": 0.05, "threshold": 0.9, "coverage": 1.0,
                           "certified_bound": 0.04, "calibration_size": 400, "blocked_species": []}}
    review = {"reviewed": 3, "corrections": 0,
              "machine_accuracy": {"overall": {"accuracy": 0.8, "ci_low": 0.5, "ci_high": ci_high, "n": 3}}}

    from publish_dataset import handler

    handler._env.cache_clear()
    monkeypatch.setattr(handler, "_clients", lambda: (env.ddb, env.s3))
    capsys.readouterr()
    out = handler.lambda_handler({"batch_id": batch_id, "labeling": labeling, "review": review,
                                  "training": {"trained": True, "model": "v000002-x", "labels_used": 9}},
                                 FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    handler._env.cache_clear()

    # Then the alarm's metric says whether the audit's lower error bound (1 - ci_high) exceeds alpha
    assert only(metrics, "MachineLabelAuditContradictsBound", service=SERVICE) == expected
    assert out["figures"]["engine"]["audit_contradicts_bound"] is bool(expected)
    stats = json.loads(env.s3.get_object(Bucket=BUCKET, Key=out["dataset"]["statistics_uri"].split("/", 3)[3])
                       ["Body"].read())
    assert stats["engine"]["decision"]["certified_bound"] == 0.04
    assert stats["engine"]["audit"]["error_ci_low"] == pytest.approx(1 - ci_high)
    assert stats["engine"]["training"]["model"] == "v000002-x"


def test_process_output_counts_the_engines_machine_labels_when_no_job_was_needed(env, monkeypatch, capsys):
    # Given a batch the engine labeled completely at prepare time (no taxonomists' job)
    batch_id, _ = _claimed_batch(env, 3, monkeypatch)
    summary = {"method": "ltt", "alpha": 0.05, "threshold": 0.8, "coverage": 1.0, "certified_bound": 0.03,
               "calibration_size": 300, "blocked_species": []}
    env.ddb.update_item(TableName=BATCHES, Key={"batch_id": {"S": batch_id}},
                        UpdateExpression="SET engine_machine_labeled = :n, engine_machine_by_species = :b, "
                                         "engine_summary = :s, kind = :k",
                        ExpressionAttributeValues={":n": {"N": "3"}, ":b": {"M": {"quercus-robur": {"N": "3"}}},
                                                   ":s": {"S": json.dumps(summary)}, ":k": {"S": "model"}})
    monkeypatch.setenv("CONFIG_JSON", json.dumps({"project": PROJECT, "engine": "model"}))

    from process_output import handler

    handler._env.cache_clear()
    monkeypatch.setattr(handler, "_backend", _backend)
    monkeypatch.setattr(handler, "_clients", lambda: (env.ddb, env.s3))
    capsys.readouterr()
    stats = handler.lambda_handler({"batch_id": batch_id, "kind": "model",
                                    "job": {"LabelingJobStatus": handler.NO_JOB_STATUS}}, FakeContext())
    metrics = emf_metrics(capsys.readouterr().out)
    handler._env.cache_clear()

    # Then the machine labels count, the decision is carried on, and nothing was released
    assert (stats["labeled"], stats["machine_labeled"], stats["human_labeled"], stats["released"]) == (3, 3, 0, 0)
    assert stats["automation_share"] == 1.0 and stats["by_species"] == {"quercus-robur": 3}
    assert stats["engine"]["certified_bound"] == 0.03
    assert only(metrics, "PhotosLabeledByMachine", service=SERVICE) == 3
