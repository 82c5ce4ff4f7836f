"""Post-annotation Lambda: payload streaming, answer validation, response shape and size, the answer log."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import boto3
import pytest
from botocore.stub import Stubber
from fieldlabel.review.consolidation import ConsolidationConfig
from fieldlabel.review.identity import IdentityCache
from fieldlabel.review.payload import PayloadFormatError, iter_json_array, parse_object
from fieldlabel.review.postannotation import (
    ManifestLookup,
    PostAnnotationSettings,
    ResponseTooLargeError,
    consolidate_payload,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

UNKNOWN = "not-a-tree-or-cannot-tell"
LABELS = ["quercus-robur", "fagus-sylvatica", "betula-pendula", UNKNOWN]
JOB = "fl-review-b20261126t063000z-1a2b3c4d"
JOB_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{JOB}"


@dataclass
class FakeContext:
    function_name: str = "post-annotation"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:post-annotation"
    aws_request_id: str = "req-1"


def answer(decision, species=None, comment=None, as_string=False):
    review = {"decision": decision}
    if species is not None:
        review["species"] = species
    if comment is not None:
        review["comment"] = comment
    return json.dumps({"review": json.dumps(review) if as_string else review})


def obj(oid, photo, answers):
    return {
        "datasetObjectId": str(oid),
        "dataObject": {"s3Uri": f"s3://intake/labeling-copies/{photo}.jpg"},
        "annotations": [{"workerId": w, "annotationData": {"content": c}} for w, c in answers],
    }


# ------------------------------------------------------------------------------------------------ streaming parser


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_iter_json_array_yields_each_element_whatever_the_chunk_size(chunk):
    items = [{"a": i, "s": "ÿ€𝄞 naïve", "n": [1, {"x": "]"}]} for i in range(20)]
    data = json.dumps(items, ensure_ascii=False).encode()
    assert list(iter_json_array(io.BytesIO(data), chunk_size=chunk)) == items


@pytest.mark.parametrize("data", [b"", b"{}", b"[1, 2", b"[1, {]", b"x[1]"])
def test_iter_json_array_rejects_non_arrays(data):
    with pytest.raises(PayloadFormatError):
        list(iter_json_array(io.BytesIO(data), chunk_size=2))


def test_iter_json_array_empty_array():
    assert list(iter_json_array(io.BytesIO(b" [ ] "))) == []


# ----------------------------------------------------------------------------------------------- answer validation


def test_parse_object_maps_decisions_and_skips_malformed_answers():
    lookup = {"s3://intake/labeling-copies/p1.jpg": ("sha256:p1", None)}
    from fieldlabel.review.payload import LabelUnderReview

    lookup["s3://intake/labeling-copies/p1.jpg"] = ("sha256:p1", LabelUnderReview("quercus-robur", 0.97, "machine"))
    o = obj(
        0,
        "p1",
        [
            ("w1", answer("confirm", comment="  clear acorns ")),
            ("w2", answer("correct", "fagus-sylvatica", as_string=True)),
            ("w3", answer("cannot_tell")),
            ("w4", ""),
            ("w5", "not json"),
            ("w6", json.dumps({"other": 1})),
            ("w7", answer("correct")),
            ("w8", answer("correct", "picea-abies")),
            ("w9", answer("maybe")),
            ("w1", answer("cannot_tell")),
        ],
    )
    o["annotations"].append({"annotationData": {"content": answer("confirm")}})
    p = parse_object(o, valid_labels=set(LABELS), unknown_label=UNKNOWN, lookup=lookup)
    assert p.photo_id == "sha256:p1"
    assert p.answers == [("w1", "quercus-robur"), ("w2", "fagus-sylvatica"), ("w3", UNKNOWN)]
    assert p.comments == ["clear acorns"]
    assert p.skipped == {
        "empty_answer": 1,
        "answer_not_json": 1,
        "review_missing": 1,
        "correct_without_species": 1,
        "unknown_label": 1,
        "unknown_decision": 1,
        "duplicate_worker": 1,
        "worker_missing": 1,
    }


def test_confirm_without_label_under_review_is_skipped_not_fatal():
    p = parse_object(obj(1, "p9", [("w1", answer("confirm"))]), valid_labels=None, unknown_label=UNKNOWN, lookup={})
    assert p.answers == []
    assert p.skipped == {"confirm_without_label_under_review": 1}


def test_label_under_review_in_the_data_object_is_used_without_lookup():
    o = obj(2, "p2", [("w1", answer("confirm"))])
    o["dataObject"]["label-under-review"] = {"label": "betula-pendula", "source": "machine"}

    class Exploding(dict):
        def __contains__(self, key):
            raise AssertionError("lookup must not be read")

    o["dataObject"]["photo-id"] = "sha256:p2"
    p = parse_object(o, valid_labels=set(LABELS), unknown_label=UNKNOWN, lookup=Exploding())
    assert p.answers == [("w1", "betula-pendula")]


# ----------------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        for b in ("gt-output", "artifacts"):
            s3.create_bucket(Bucket=b)
        ddb.create_table(
            TableName="reviewers",
            KeySchema=[{"AttributeName": "worker_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "worker_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ManifestLookup.clear_cache()
        IdentityCache.clear()
        yield s3, ddb


def _manifest(s3, photos):
    lines = [
        json.dumps(
            {
                "source-ref": f"s3://intake/labeling-copies/{p}.jpg",
                "photo-id": f"sha256:{p}",
                "label-under-review": {"label": lab, "confidence": 0.95, "source": "machine"},
            }
        )
        for p, lab in photos
    ]
    s3.put_object(Bucket="artifacts", Key="jobs/b1/review.manifest", Body="\n".join(lines).encode())


def _sagemaker_stub(times=1):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(sm)
    response = {
        "LabelingJobStatus": "InProgress",
        "LabelCounters": {},
        "CreationTime": "2026-11-26T06:30:00Z",
        "LastModifiedTime": "2026-11-26T06:30:00Z",
        "JobReferenceCode": "x",
        "LabelingJobName": JOB,
        "LabelingJobArn": JOB_ARN,
        "LabelAttributeName": "species-review",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://artifacts/jobs/b1/review.manifest"}}},
        "OutputConfig": {"S3OutputPath": "s3://artifacts/gt-output/"},
        "RoleArn": "arn:aws:iam::123456789012:role/gt",
        "HumanTaskConfig": {
            "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/taxonomists",
            "UiConfig": {"UiTemplateS3Uri": "s3://artifacts/templates/expert-review.liquid.html"},
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 3,
            "TaskTimeLimitInSeconds": 3600,
        },
    }
    for _ in range(times):
        stub.add_response("describe_labeling_job", response, {"LabelingJobName": JOB})
    stub.activate()
    return sm, stub


def _event(uri="s3://gt-output/payloads/p1.json"):
    return {
        "version": "2018-10-16",
        "labelingJobArn": JOB_ARN,
        "labelCategories": LABELS,
        "labelAttributeName": "species-review",
        "roleArn": "arn:aws:iam::123456789012:role/gt",
        "payload": {"s3Uri": uri},
    }


def test_handler_consolidates_payload_into_ground_truth_response(aws, monkeypatch):
    s3, ddb = aws
    _manifest(s3, [("p1", "quercus-robur"), ("p2", "fagus-sylvatica"), ("p3", "betula-pendula")])
    ddb.put_item(
        TableName="reviewers", Item={"worker_id": {"S": "senior"}, "answers": {"N": "900"}, "correct": {"N": "880"}}
    )
    payload = [
        obj(
            0, "p1", [("senior", answer("confirm")), ("w2", answer("confirm")), ("w3", answer("confirm", comment="ok"))]
        ),
        obj(1, "p2", [("senior", answer("correct", "quercus-robur")), ("w2", answer("confirm")), ("w3", "")]),
        obj(2, "p3", [("w2", "{broken")]),
    ]
    s3.put_object(Bucket="gt-output", Key="payloads/p1.json", Body=json.dumps(payload).encode())
    sm, stub = _sagemaker_stub()
    monkeypatch.setenv("REVIEWERS_TABLE", "reviewers")
    monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
    monkeypatch.setenv("UNKNOWN_LABEL", UNKNOWN)
    from post_annotation import handler

    handler._settings.cache_clear()
    monkeypatch.setattr(handler, "_clients", lambda: (s3, ddb, sm))
    response = handler.lambda_handler(_event(), FakeContext())
    stub.assert_no_pending_responses()

    assert [r["datasetObjectId"] for r in response] == ["0", "1", "2"]
    first, second, third = (r["consolidatedAnnotation"]["content"]["species-review"] for r in response)
    assert first["label"] == "quercus-robur" and first["agreement"] == 1.0 and first["answers"] == 3
    assert first["comments"] == ["ok"] and first["needs_adjudication"] is False and first["confidence"] > 0.9
    # 1-1 split between a senior reviewer and a newcomer: the senior wins, the tie goes to adjudication
    assert second["label"] == "quercus-robur" and second["needs_adjudication"] is True
    assert second["skipped"] == 1 and second["answers"] == 2 and second["agreement"] == 0.5
    assert "tie" in second["reasons"] and first["reasons"] == []
    # no valid answer at all
    assert third == {
        "label": None,
        "confidence": 0.0,
        "needs_adjudication": True,
        "reasons": ["no_answer"],
        "agreement": 0.0,
        "answers": 0,
        "skipped": 1,
        "comments": [],
    }
    logs = s3.list_objects_v2(Bucket="artifacts", Prefix=f"review-answers/{JOB}/")["Contents"]
    assert len(logs) == 1
    lines = [json.loads(x) for x in s3.get_object(Bucket="artifacts", Key=logs[0]["Key"])["Body"].read().splitlines()]
    assert lines[0]["photo-id"] == "sha256:p1" and len(lines[0]["answers"]) == 3
    assert lines[1]["answers"] == [["senior", "quercus-robur"], ["w2", "fagus-sylvatica"]]


def test_retry_of_the_same_payload_overwrites_its_answer_log(aws):
    s3, ddb = aws
    _manifest(s3, [("p1", "quercus-robur")])
    s3.put_object(
        Bucket="gt-output", Key="payloads/p1.json", Body=json.dumps([obj(0, "p1", [("w", answer("confirm"))])])
    )
    sm, _ = _sagemaker_stub(times=1)
    settings = PostAnnotationSettings(reviewers_table="reviewers", unknown_label=UNKNOWN, artifacts_bucket="artifacts")
    a = consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)
    # second call: the manifest map is cached for the job, so DescribeLabelingJob is not called again
    b = consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)
    assert a.answer_log_uri == b.answer_log_uri
    assert len(s3.list_objects_v2(Bucket="artifacts", Prefix="review-answers/")["Contents"]) == 1


def test_response_falls_back_to_smaller_tiers_and_fails_clearly_when_nothing_fits(aws):
    s3, ddb = aws
    photos = [(f"p{i}", "quercus-robur") for i in range(300)]
    _manifest(s3, photos)
    payload = [
        obj(i, p, [("w1", answer("confirm", comment="x" * 400)), ("w2", answer("confirm", comment="y" * 400))])
        for i, (p, _) in enumerate(photos)
    ]
    s3.put_object(Bucket="gt-output", Key="payloads/p1.json", Body=json.dumps(payload).encode())
    sm, _ = _sagemaker_stub()
    sizes = {}
    for budget in (10**7, 100_000, 60_000, 52_000, 10_000):
        settings = PostAnnotationSettings(
            reviewers_table="reviewers", unknown_label=UNKNOWN, response_budget_bytes=budget
        )
        if budget == 10_000:
            with pytest.raises(ResponseTooLargeError):
                consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)
            continue
        out = consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)
        assert len(out.response) == 300
        assert len(json.dumps(out.response)) <= budget
        sizes[out.tier] = out.response_bytes
        content = out.response[0]["consolidatedAnnotation"]["content"]["species-review"]
        assert content["label"] == "quercus-robur"
        assert ("comments" in content) == (out.tier == "full")
        assert ("reasons" in content) == (out.tier != "bare")
    assert list(sizes) == ["full", "compact", "minimal", "bare"]


def test_consolidation_config_reaches_the_em(aws):
    s3, ddb = aws
    _manifest(s3, [("p1", "quercus-robur")])
    s3.put_object(
        Bucket="gt-output", Key="payloads/p1.json", Body=json.dumps([obj(0, "p1", [("w", answer("confirm"))])])
    )
    sm, _ = _sagemaker_stub()
    strict = PostAnnotationSettings(
        reviewers_table="reviewers",
        unknown_label=UNKNOWN,
        consolidation=ConsolidationConfig(adjudication_threshold=0.99),
    )
    out = consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=strict)
    assert out.needs_adjudication == 1


def test_rewritten_manifest_is_reread_without_a_new_describe_call(aws):
    s3, ddb = aws
    _manifest(s3, [("p1", "quercus-robur")])
    s3.put_object(
        Bucket="gt-output", Key="payloads/p1.json", Body=json.dumps([obj(0, "p1", [("w", answer("confirm"))])])
    )
    sm, stub = _sagemaker_stub(times=1)
    settings = PostAnnotationSettings(reviewers_table="reviewers", unknown_label=UNKNOWN)
    first = consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)
    _manifest(s3, [("p1", "betula-pendula")])
    second = consolidate_payload(_event(), s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)
    stub.assert_no_pending_responses()
    label = [o.response[0]["consolidatedAnnotation"]["content"]["species-review"]["label"] for o in (first, second)]
    assert label == ["quercus-robur", "betula-pendula"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(json_values, max_size=8), chunk=st.integers(min_value=1, max_value=17), ascii_only=st.booleans())
def test_iter_json_array_roundtrips_any_json_array(items, chunk, ascii_only):
    data = json.dumps(items, ensure_ascii=ascii_only).encode()
    assert list(iter_json_array(io.BytesIO(data), chunk_size=chunk)) == items


def test_answer_stored_in_s3_is_fetched_and_an_unreadable_one_is_skipped():
    o = obj(3, "p3", [])
    o["dataObject"]["label-under-review"] = {"label": "quercus-robur", "source": "machine"}
    o["dataObject"]["photo-id"] = "sha256:p3"
    o["annotations"] = [
        {"workerId": "w1", "annotationData": {"s3Uri": "s3://gt-output/answers/w1.json"}},
        {"workerId": "w2", "annotationData": {"s3Uri": "s3://gt-output/answers/missing.json"}},
    ]
    store = {"s3://gt-output/answers/w1.json": answer("correct", "fagus-sylvatica")}

    def fetch(uri):
        return store[uri]

    p = parse_object(o, valid_labels=set(LABELS), unknown_label=UNKNOWN, fetch=fetch)
    assert p.answers == [("w1", "fagus-sylvatica")]
    assert p.skipped == {"answer_unreadable": 1}
    p = parse_object(o, valid_labels=set(LABELS), unknown_label=UNKNOWN)
    assert p.skipped == {"answer_in_s3": 2}
