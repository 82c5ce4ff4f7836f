"""Review sampling: deterministic stratified audit sample, low-confidence human labels, the review manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
import pytest
from fieldlabel.review.sampling import Candidate, SamplingSettings, allocate, select_for_review
from moto import mock_aws


@dataclass
class FakeContext:
    function_name: str = "select-review"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:select-review"
    aws_request_id: str = "req-1"


def _machine(n_by_label):
    return [Candidate(f"sha256:{label}-{i}", label, 0.97, False) for label, n in n_by_label.items() for i in range(n)]


def test_allocation_gives_every_species_one_sample_then_shares_the_rest_by_size():
    sizes = {"a": 1000, "b": 100, "c": 3, "d": 1}
    alloc = allocate(sizes, 56, "b1")
    assert sum(alloc.values()) == 56
    assert all(alloc[k] >= 1 for k in sizes)
    assert alloc["a"] > alloc["b"] > alloc["c"] >= alloc["d"]
    assert all(alloc[k] <= sizes[k] for k in sizes)


def test_allocation_smaller_than_species_count_picks_distinct_species_deterministically():
    sizes = {f"s{i}": 10 * (i + 1) for i in range(50)}
    a = allocate(sizes, 5, "b1")
    assert a == allocate(dict(reversed(list(sizes.items()))), 5, "b1")
    assert len(a) == 5 and set(a.values()) == {1}
    assert allocate(sizes, 5, "b2") != a  # another batch, another draw


def test_selection_is_deterministic_and_independent_of_query_order():
    cands = _machine({"quercus-robur": 400, "fagus-sylvatica": 150, "betula-pendula": 20})
    s = SamplingSettings(audit_sample_rate=0.05)
    first = select_for_review(cands, "b20261126t063000z-1a2b3c4d", s)
    again = select_for_review(list(reversed(cands)), "b20261126t063000z-1a2b3c4d", s)
    assert first == again
    assert first.count == 29  # ceil(0.05 * 570)
    assert {k: len(v) for k, v in first.audit.items()}.keys() == {"quercus-robur", "fagus-sylvatica", "betula-pendula"}
    assert first.stratum_sizes == {"quercus-robur": 400, "fagus-sylvatica": 150, "betula-pendula": 20}
    other = select_for_review(cands, "b20261126t063000z-ffffffff", s)
    assert other.audit != first.audit


def test_audit_sample_is_uniform_within_a_species():
    # Over many batches each photo of a species is chosen about equally often.
    cands = _machine({"a": 20})
    hits = dict.fromkeys((c.photo_id for c in cands), 0)
    for b in range(2000):
        for pid in select_for_review(cands, f"batch-{b}", SamplingSettings(audit_sample_rate=0.1)).audit["a"]:
            hits[pid] += 1
    assert sum(hits.values()) == 2 * 2000
    assert min(hits.values()) > 140 and max(hits.values()) < 260  # expected 200 each


def test_low_confidence_human_labels_are_reviewed_and_rate_zero_disables_audit():
    cands = _machine({"a": 10}) + [
        Candidate("h1", "a", 0.5, True),
        Candidate("h2", "a", 0.69, True),
        Candidate("h3", "a", 0.7, True),
        Candidate("h4", "a", None, True),
    ]
    sel = select_for_review(cands, "b", SamplingSettings(audit_sample_rate=0.0, low_confidence_threshold=0.7))
    assert sel.audit == {}
    assert sel.low_confidence == ["h1", "h2"]


def test_cap_keeps_the_audit_and_the_least_confident_human_labels():
    cands = _machine({"a": 100}) + [Candidate(f"h{i}", "a", i / 100, True) for i in range(50)]
    sel = select_for_review(cands, "b", SamplingSettings(audit_sample_rate=0.05, max_review_photos=8))
    assert sum(len(v) for v in sel.audit.values()) == 5
    assert sel.low_confidence == ["h0", "h1", "h2"]


@pytest.fixture
def registry():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        ddb.create_table(
            TableName="photos",
            KeySchema=[{"AttributeName": "photo_id", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "photo_id", "AttributeType": "S"},
                {"AttributeName": "batch_id", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_batch",
                    "KeySchema": [
                        {"AttributeName": "batch_id", "KeyType": "HASH"},
                        {"AttributeName": "photo_id", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield ddb, s3


def _put_photo(ddb, pid, batch, label, conf, human, status="LABELED"):
    ddb.put_item(
        TableName="photos",
        Item={
            "photo_id": {"S": pid},
            "batch_id": {"S": batch},
            "status": {"S": status},
            "label": {"S": label},
            "label_confidence": {"N": str(conf)},
            "human_annotated": {"BOOL": human},
            "labeling_ref": {"S": f"s3://intake/labeling-copies/{pid.replace(':', '-')}.jpg"},
            "original": {"M": {"bucket": {"S": "intake"}, "key": {"S": f"uploads/site/{pid[-4:]}.HEIC"}}},
            "field": {"M": {"site_id": {"S": "S12"}, "latitude": {"N": "51.5"}, "longitude": {"N": "-0.12"}}},
        },
    )


def test_handler_writes_review_manifest_and_is_retry_safe(registry, monkeypatch):
    ddb, s3 = registry
    batch = "b20261126t063000z-1a2b3c4d"
    for i in range(120):
        _put_photo(ddb, f"sha256:m{i:04d}", batch, "quercus-robur" if i < 100 else "fagus-sylvatica", 0.96, False)
    _put_photo(ddb, "sha256:h0001", batch, "betula-pendula", 0.4, True)
    _put_photo(ddb, "sha256:h0002", batch, "betula-pendula", 0.95, True)
    _put_photo(ddb, "sha256:q0001", batch, "betula-pendula", 0.1, True, status="QUARANTINED")
    _put_photo(ddb, "sha256:o0001", "b-other", "betula-pendula", 0.1, True)
    monkeypatch.setenv("PHOTOS_TABLE", "photos")
    monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
    monkeypatch.setenv("AUDIT_SAMPLE_RATE", "0.05")
    monkeypatch.setenv("LOW_CONFIDENCE_THRESHOLD", "0.7")
    from select_review import handler

    handler._env.cache_clear()
    monkeypatch.setattr(handler, "_clients", lambda: (ddb, s3))
    out = handler.lambda_handler({"batch_id": batch}, FakeContext())
    assert out == {
        "review_count": 7,
        "manifest_uri": f"s3://artifacts/jobs/{batch}/review.manifest",
        "audit_count": 6,
        "low_confidence_count": 1,
    }
    body = s3.get_object(Bucket="artifacts", Key=f"jobs/{batch}/review.manifest")["Body"].read()
    lines = [json.loads(x) for x in body.decode().splitlines()]
    assert len(lines) == 7
    audit = [x for x in lines if x["review-reason"] == "audit"]
    assert {x["label-under-review"]["label"] for x in audit} == {"quercus-robur", "fagus-sylvatica"}
    assert all(x["label-under-review"]["source"] == "machine" for x in audit)
    assert {x["audit-stratum"]["size"] for x in audit} == {100, 20}
    low = [x for x in lines if x["review-reason"] == "low_confidence"]
    assert low[0]["photo-id"] == "sha256:h0001"
    assert low[0]["label-under-review"] == {"label": "betula-pendula", "confidence": 0.4, "source": "human"}
    assert low[0]["field"] == {"site_id": "S12", "latitude": 51.5, "longitude": -0.12}
    assert low[0]["source-ref"].startswith("s3://intake/labeling-copies/")
    assert low[0]["original-ref"] == "s3://intake/uploads/site/0001.HEIC"
    # A retry picks the same photos and writes the same manifest.
    assert handler.lambda_handler({"batch_id": batch}, FakeContext()) == out
    assert s3.get_object(Bucket="artifacts", Key=f"jobs/{batch}/review.manifest")["Body"].read() == body


def test_handler_returns_zero_when_nothing_to_review(registry, monkeypatch):
    ddb, s3 = registry
    _put_photo(ddb, "sha256:h1", "b-empty", "a", 0.99, True)
    monkeypatch.setenv("PHOTOS_TABLE", "photos")
    monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
    from select_review import handler

    handler._env.cache_clear()
    monkeypatch.setattr(handler, "_clients", lambda: (ddb, s3))
    out = handler.lambda_handler({"batch_id": "b-empty"}, FakeContext())
    assert out["review_count"] == 0 and out["manifest_uri"] is None
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts")


def test_handler_fails_fast_without_required_environment(monkeypatch):
    monkeypatch.delenv("PHOTOS_TABLE", raising=False)
    monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
    from select_review import handler

    handler._env.cache_clear()
    with pytest.raises(ValueError, match="PHOTOS_TABLE"):
        handler.lambda_handler({"batch_id": "b"}, FakeContext())
    handler._env.cache_clear()
