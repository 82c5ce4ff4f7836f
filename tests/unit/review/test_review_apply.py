"""Apply review: outcomes, registry updates, reviewer reliability and machine-label accuracy with Wilson intervals."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import boto3
import pytest
from botocore.stub import Stubber
from fieldlabel.review.accuracy import AccuracyTally, wilson_interval
from fieldlabel.review.apply import decide, registry_update
from moto import mock_aws

UNKNOWN = "not-a-tree-or-cannot-tell"
BATCH = "b20261126t063000z-1a2b3c4d"
JOB = "fl-review-b20261126t063000z-1a2b3c4d"


@dataclass
class FakeContext:
    function_name: str = "apply-review"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:apply-review"
    aws_request_id: str = "req-1"


# ----------------------------------------------------------------------------------------------------- accuracy


def test_wilson_interval_matches_textbook_values():
    # Wilson (1927) / Newcombe (1998) worked example: 81 of 263 -> 0.2553 .. 0.3662
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=5e-4) and hi == pytest.approx(0.3662, abs=5e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=5e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=5e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_overall_accuracy_reweights_strata_to_the_batch():
    # Given a big species sampled 10 of 1000 (all right) and a rare one sampled 5 of 5 (all wrong)
    t = AccuracyTally()
    for _ in range(10):
        t.add("big", "big", 1000)
    for _ in range(5):
        t.add("rare", "other", 5)
    s = t.summary()
    # The batch is 1000 right + 5 wrong: re-weighted accuracy 1000/1005, not the raw 10/15
    assert s["overall"]["accuracy"] == pytest.approx(1000 / 1005, abs=1e-4)
    assert s["overall"]["n"] == 15
    assert s["by_species"]["rare"] == {
        "accuracy": 0.0,
        "ci_low": 0.0,
        "ci_high": pytest.approx(0.4345, abs=1e-3),
        "n": 5,
    }
    assert s["by_species"]["big"]["accuracy"] == 1.0
    lo, hi = s["overall"]["ci_low"], s["overall"]["ci_high"]
    assert lo < s["overall"]["accuracy"] <= hi


def test_wilson_coverage_on_simulated_audits():
    import random

    rng = random.Random(1)
    covered = 0
    for _ in range(2000):
        k = sum(rng.random() < 0.9 for _ in range(40))
        lo, hi = wilson_interval(k, 40)
        covered += lo <= 0.9 <= hi
    assert covered / 2000 > 0.93


# ----------------------------------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("review", "lur", "expected"),
    [
        (None, "a", "no_answer"),
        ({"label": None, "confidence": 0.0, "needs_adjudication": True}, "a", "no_answer"),
        ({"label": "a", "confidence": 0.99, "needs_adjudication": False}, "a", "confirmed"),
        ({"label": "b", "confidence": 0.99, "needs_adjudication": False}, "a", "corrected"),
        ({"label": "b", "confidence": 0.6, "needs_adjudication": False}, "a", "needs_adjudication"),
        ({"label": "b", "confidence": 0.99, "needs_adjudication": True}, "a", "needs_adjudication"),
        ({"label": UNKNOWN, "confidence": 0.95, "needs_adjudication": False}, "a", "cannot_tell"),
    ],
)
def test_decide(review, lur, expected):
    assert decide(review, lur, unknown_label=UNKNOWN, threshold=0.9) == expected


def test_registry_update_request_is_valid_for_dynamodb_model():
    client = boto3.client("dynamodb", region_name="us-east-1")
    req = registry_update(
        "sha256:p1",
        batch_id=BATCH,
        outcome="corrected",
        review={"label": "b", "confidence": 0.97, "agreement": 1.0, "needs_adjudication": False, "answers": 3},
        label_under_review="a",
        source="machine",
        job_name=JOB,
        now_iso="2026-11-26T07:00:00Z",
        photos_table="photos",
    )
    with Stubber(client) as stub:
        stub.add_response("update_item", {}, req)
        client.update_item(**req)  # Stubber validates the request against botocore's service model
    assert "machine_label = if_not_exists(machine_label, :old)" in req["UpdateExpression"]


# ----------------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        ddb.create_table(
            TableName="photos",
            KeySchema=[{"AttributeName": "photo_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "photo_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName="reviewers",
            KeySchema=[{"AttributeName": "worker_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "worker_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield s3, ddb


def _line(pid, lur, source, reason, review, stratum=None):
    line = {
        "source-ref": f"s3://intake/labeling-copies/{pid}.jpg",
        "photo-id": f"sha256:{pid}",
        "label-under-review": {"label": lur, "confidence": 0.97, "source": source},
        "review-reason": reason,
        "species-review": review,
        "species-review-metadata": {"job_name": JOB, "type": "groundTruth/custom", "human-annotated": "yes"},
    }
    if stratum:
        line["audit-stratum"] = {"size": stratum, "sampled": 2}
    return line


def _rv(label, conf=0.98, adj=False):
    return {"label": label, "confidence": conf, "agreement": 1.0, "needs_adjudication": adj, "answers": 3}


def _setup(s3, ddb):
    for pid, label in [("m1", "a"), ("m2", "a"), ("m3", "b"), ("m4", "b"), ("m5", "c"), ("h1", "c")]:
        ddb.put_item(
            TableName="photos",
            Item={"photo_id": {"S": f"sha256:{pid}"}, "batch_id": {"S": BATCH}, "label": {"S": label}},
        )
    lines = [
        _line("m1", "a", "machine", "audit", _rv("a"), 100),
        _line("m2", "a", "machine", "audit", _rv("b"), 100),
        _line("m3", "b", "machine", "audit", _rv("b"), 10),
        _line("m4", "b", "machine", "audit", _rv("c", 0.55, True), 10),
        _line("m5", "c", "machine", "audit", _rv(UNKNOWN), 3),
        _line("h1", "c", "human", "low_confidence", _rv("a")),
        _line("gone", "c", "human", "low_confidence", _rv("a")),
    ]
    body = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    s3.put_object(Bucket="artifacts", Key=f"gt-output/{JOB}/manifests/output/output.manifest", Body=body.encode())
    answers = [
        {"datasetObjectId": "0", "answers": [["senior", "a"], ["w2", "a"], ["w3", "a"]]},
        {"datasetObjectId": "1", "answers": [["senior", "b"], ["w2", "b"], ["w3", "a"]]},
        {"datasetObjectId": "2", "answers": [["senior", "b"], ["w2", "b"], ["w3", "c"]]},
    ]
    s3.put_object(
        Bucket="artifacts",
        Key=f"review-answers/{JOB}/x.jsonl",
        Body="\n".join(json.dumps(a) for a in answers).encode(),
    )


def _handler(monkeypatch, s3, ddb):
    monkeypatch.setenv("PHOTOS_TABLE", "photos")
    monkeypatch.setenv("REVIEWERS_TABLE", "reviewers")
    monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
    monkeypatch.setenv("UNKNOWN_LABEL", UNKNOWN)
    monkeypatch.setenv("ADJUDICATION_THRESHOLD", "0.9")
    from apply_review import handler

    handler._settings.cache_clear()
    monkeypatch.setattr(handler, "_clients", lambda: (s3, ddb))
    return handler


def _item(ddb, pid):
    from boto3.dynamodb.types import TypeDeserializer

    raw = ddb.get_item(TableName="photos", Key={"photo_id": {"S": f"sha256:{pid}"}})["Item"]
    return {k: TypeDeserializer().deserialize(v) for k, v in raw.items()}


def test_apply_review_updates_registry_reviewers_and_reports_accuracy(aws, monkeypatch):
    s3, ddb = aws
    _setup(s3, ddb)
    handler = _handler(monkeypatch, s3, ddb)
    event = {
        "batch_id": BATCH,
        "output_manifest_uri": f"s3://artifacts/gt-output/{JOB}/manifests/output/output.manifest",
    }
    out = handler.lambda_handler(event, FakeContext())

    assert out["reviewed"] == 7 and out["bad_lines"] == 1 and out["not_in_batch"] == 1
    assert out["outcomes"] == {
        "confirmed": 2,
        "corrected": 3,
        "cannot_tell": 1,
        "needs_adjudication": 1,
        "no_answer": 0,
    }
    assert out["corrections"] == 4 and out["needs_adjudication"] == 1
    # audited machine labels with a trusted verdict: m1 right, m2 wrong (stratum a: 100), m3 right (stratum b: 10)
    acc = out["machine_accuracy"]
    assert out["audited"] == 3 and out["unverifiable_audits"] == 2
    assert acc["by_species"]["a"]["accuracy"] == 0.5 and acc["by_species"]["a"]["n"] == 2
    lo, hi = wilson_interval(1, 2)
    assert acc["by_species"]["a"]["ci_low"] == pytest.approx(lo, abs=1e-4)
    assert acc["by_species"]["a"]["ci_high"] == pytest.approx(hi, abs=1e-4)
    # re-weighted: a (weight 50 each: one right one wrong), b (weight 10, right) -> (50 + 10) / (100 + 10)
    assert acc["overall"]["accuracy"] == pytest.approx(60 / 110, abs=1e-4)

    m2 = _item(ddb, "m2")
    assert m2["label"] == "b" and m2["machine_label"] == "a" and m2["label_source"] == "expert_review"
    assert m2["review"]["decision"] == "corrected" and m2["review"]["reviewed_label"] == "b"
    m1 = _item(ddb, "m1")
    assert m1["label"] == "a" and "machine_label" not in m1 and m1["review"]["decision"] == "confirmed"
    m4 = _item(ddb, "m4")
    assert m4["label"] == "b" and m4["review"]["needs_adjudication"] is True
    assert _item(ddb, "m5")["label"] == UNKNOWN
    h1 = _item(ddb, "h1")
    assert h1["label"] == "a" and h1["previous_label"] == "c" and "machine_label" not in h1

    senior = ddb.get_item(TableName="reviewers", Key={"worker_id": {"S": "senior"}})["Item"]
    w3 = ddb.get_item(TableName="reviewers", Key={"worker_id": {"S": "w3"}})["Item"]
    assert float(senior["answers"]["N"]) == 3 and float(w3["answers"]["N"]) == 3
    assert float(senior["correct"]["N"]) > float(w3["correct"]["N"])
    assert senior["jobs_applied"]["SS"] == [JOB]
    assert out["reviewers"] == {"updated": 3, "already_applied": 0}

    # A retry changes nothing: same registry state, reviewer counts not added twice.
    again = handler.lambda_handler(event, FakeContext())
    assert again["reviewers"] == {"updated": 0, "already_applied": 3}
    assert _item(ddb, "m2")["machine_label"] == "a" and _item(ddb, "m2")["label"] == "b"
    senior2 = ddb.get_item(TableName="reviewers", Key={"worker_id": {"S": "senior"}})["Item"]
    assert senior2["answers"] == senior["answers"] and senior2["correct"] == senior["correct"]
    assert math.isclose(float(senior2["accuracy"]["N"]), float(senior["correct"]["N"]) / 3, rel_tol=1e-4)
