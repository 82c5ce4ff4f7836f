"""Reliability follows the person: workerId -> Cognito sub from worker-response files, job 1 feeding job 2, and a
bounded per-reviewer job history."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from fieldlabel.review.apply import ApplySettings, update_reliability
from fieldlabel.review.identity import (
    IdentityCache,
    resolve_identities,
    reviewer_key,
    subs_in_response,
    worker_response_prefix,
)
from fieldlabel.review.postannotation import ManifestLookup, PostAnnotationSettings, consolidate_payload
from fieldlabel.review.reliability import MAX_JOBS_REMEMBERED, load_priors, record_job
from moto import mock_aws

UNKNOWN = "not-a-tree-or-cannot-tell"
LABELS = ["quercus-robur", "fagus-sylvatica", "betula-pendula", "picea-abies", UNKNOWN]
NOW = "2026-11-26T07:00:00Z"


def _payload_uri(job):
    return (
        f"s3://artifacts/gt-output/{job}/annotations/consolidated-annotation/consolidation-request/iteration-1/"
        "2026-11-26_07:00:00.json"
    )


def _response_key(job, oid):
    return f"gt-output/{job}/annotations/worker-response/iteration-1/{oid}/2026-11-26_06:59:00.json"


def _response_doc(workers_subs, labels=None):
    """A worker-response document as Ground Truth writes it for a private (Cognito) workforce."""
    return {
        "answers": [
            {
                "acceptanceTime": "2026-11-26T06:58:00.000Z",
                "submissionTime": "2026-11-26T06:59:00.000Z",
                "timeSpentInSeconds": 60.0,
                "workerId": w,
                "answerContent": {"review": json.dumps({"decision": "confirm"})},
                "workerMetadata": {
                    "identityData": {
                        "identityProviderType": "Cognito",
                        "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
                        "sub": sub,
                    }
                }
                if sub
                else {},
            }
            for w, sub in workers_subs
        ]
    }


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        ddb.create_table(
            TableName="reviewers",
            KeySchema=[{"AttributeName": "worker_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "worker_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ManifestLookup.clear_cache()
        IdentityCache.clear()
        yield s3, ddb
        IdentityCache.clear()


# ------------------------------------------------------------------------------------------------------ pure parts


def test_worker_response_prefix_sits_beside_the_consolidation_request():
    bucket, base, iteration = worker_response_prefix(_payload_uri("job-1"))
    assert bucket == "artifacts"
    assert base == "gt-output/job-1/annotations/worker-response/"
    assert iteration == "iteration-1/"
    assert worker_response_prefix("s3://b/payloads/p1.json") is None


def test_subs_are_read_only_from_answers_that_carry_an_identity():
    doc = _response_doc([("private.a", "sub-a"), ("private.b", None)])
    doc["answers"].append("garbage")
    assert subs_in_response(doc) == {"private.a": "sub-a"}
    assert subs_in_response({"answers": "x"}) == {} and subs_in_response([]) == {}
    assert reviewer_key("private.a", "sub-a") == "sub:sub-a" and reviewer_key("private.b", None) == "private.b"


def test_resolution_reads_one_folder_per_unknown_worker_and_falls_back_to_worker_id(aws):
    s3, _ = aws
    job = "job-1"
    # 50 photos answered by the same two workers; a third worker whose responses carry no identity.
    for oid in range(50):
        doc = _response_doc([("private.a", "sub-a"), ("private.b", "sub-b"), ("public.c", None)])
        s3.put_object(Bucket="artifacts", Key=_response_key(job, oid), Body=json.dumps(doc).encode())
    answered = {w: [str(i) for i in range(50)] for w in ("private.a", "private.b", "public.c")}
    res = resolve_identities(s3, job_name=job, payload_uri=_payload_uri(job), answered=answered)
    assert res.keys == {"private.a": "sub:sub-a", "private.b": "sub:sub-b", "public.c": "public.c"}
    assert res.from_sub == 2 and res.fallback == 1
    # One file taught both subs; the identity-less worker is tried on at most 3 photos, not all 50.
    assert res.reads <= 1 + 3
    # A second call for the same job uses the container cache for the known workers.
    again = resolve_identities(s3, job_name=job, payload_uri=_payload_uri(job), answered={"private.a": ["7"]})
    assert again.keys == {"private.a": "sub:sub-a"} and again.reads == 0


def test_unreadable_responses_fall_back_without_failing(aws):
    s3, _ = aws
    s3.put_object(Bucket="artifacts", Key=_response_key("job-x", "0"), Body=b"{not json")
    res = resolve_identities(s3, job_name="job-x", payload_uri=_payload_uri("job-x"), answered={"w": ["0"]})
    assert res.keys == {"w": "w"} and len(res.errors) == 1


# --------------------------------------------------------------------------------------------- job 1 -> job 2


def _answer(decision, species=None):
    review = {"decision": decision}
    if species:
        review["species"] = species
    return json.dumps({"review": json.dumps(review)})


def _sagemaker(job, manifest_uri):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(sm)
    stub.add_response(
        "describe_labeling_job",
        {
            "LabelingJobStatus": "InProgress",
            "LabelCounters": {},
            "CreationTime": "2026-11-26T06:30:00Z",
            "LastModifiedTime": "2026-11-26T06:30:00Z",
            "JobReferenceCode": "x",
            "LabelingJobName": job,
            "LabelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{job}",
            "LabelAttributeName": "species-review",
            "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
            "OutputConfig": {"S3OutputPath": "s3://artifacts/gt-output/"},
            "RoleArn": "arn:aws:iam::123456789012:role/gt",
            "HumanTaskConfig": {
                "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t",
                "UiConfig": {"UiTemplateS3Uri": "s3://artifacts/templates/t.html"},
                "TaskTitle": "t",
                "TaskDescription": "d",
                "NumberOfHumanWorkersPerDataObject": 3,
                "TaskTimeLimitInSeconds": 3600,
            },
        },
        {"LabelingJobName": job},
    )
    stub.activate()
    return sm


def _run_job(s3, ddb, job, photos, answers_of, worker_sub):
    """Write the manifest, payload and worker-response files of one review job, then run post-annotation.

    ``answers_of[i]`` is a list of (workerId, species) for photo i; ``worker_sub`` maps workerId -> Cognito sub.
    """
    manifest = "\n".join(
        json.dumps(
            {
                "source-ref": f"s3://intake/labeling-copies/{job}-{i}.jpg",
                "photo-id": f"sha256:{job}-{i}",
                "label-under-review": {"label": lab, "source": "machine"},
            }
        )
        for i, lab in enumerate(photos)
    )
    s3.put_object(Bucket="artifacts", Key=f"jobs/{job}/review.manifest", Body=manifest.encode())
    payload = []
    for i, answers in enumerate(answers_of):
        payload.append(
            {
                "datasetObjectId": str(i),
                "dataObject": {"s3Uri": f"s3://intake/labeling-copies/{job}-{i}.jpg"},
                "annotations": [
                    {
                        "workerId": w,
                        "annotationData": {
                            "content": _answer("confirm") if sp == photos[i] else _answer("correct", sp)
                        },
                    }
                    for w, sp in answers
                ],
            }
        )
        doc = _response_doc([(w, worker_sub.get(w)) for w, _ in answers])
        s3.put_object(Bucket="artifacts", Key=_response_key(job, i), Body=json.dumps(doc).encode())
    uri = _payload_uri(job)
    bucket, key = uri[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(payload).encode())
    event = {
        "version": "2018-10-16",
        "labelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{job}",
        "labelCategories": LABELS,
        "labelAttributeName": "species-review",
        "roleArn": "arn:aws:iam::123456789012:role/gt",
        "payload": {"s3Uri": uri},
    }
    settings = PostAnnotationSettings(reviewers_table="reviewers", unknown_label=UNKNOWN, artifacts_bucket="artifacts")
    sm = _sagemaker(job, f"s3://artifacts/jobs/{job}/review.manifest")
    return consolidate_payload(event, s3=s3, dynamodb=ddb, sagemaker=sm, settings=settings)


def _apply_settings():
    return ApplySettings(
        photos_table="photos", reviewers_table="reviewers", artifacts_bucket="artifacts", unknown_label=UNKNOWN
    )


def _job2(s3, ddb):
    # Job 2: the same three people under NEW workerIds (not documented to be stable across jobs); one answer each.
    subs = {"private.x2": "sub-expert", "private.y2": "sub-good", "private.z2": "sub-careless"}
    photos = ["quercus-robur", "fagus-sylvatica", "betula-pendula"]
    answers = [[("private.x2", "quercus-robur")], [("private.y2", "fagus-sylvatica")], [("private.z2", "picea-abies")]]
    out = _run_job(s3, ddb, "review-job-2", photos, answers, subs)
    return [r["consolidatedAnnotation"]["content"]["species-review"] for r in out.response]


def test_job_two_uses_the_reliability_job_one_learnt_under_the_cognito_sub(aws):
    s3, ddb = aws
    # Without any history, all three sole answers are from "new" reviewers (prior 0.8 < 0.9): all flagged alike.
    fresh = _job2(s3, ddb)
    assert [c["confidence"] for c in fresh] == [0.8, 0.8, 0.8]
    assert all(c["reasons"] == ["sole_answer_low_reliability"] for c in fresh)
    IdentityCache.clear()
    ManifestLookup.clear_cache()
    s3.delete_object(Bucket="artifacts", Key=f"review-answers/review-job-2/{_log_name(s3, 'review-job-2')}")

    # Job 1: 60 photos, three reviewers on each: the expert is always right, "good" is right on 5 of 6 photos,
    # "careless" is right on 1 photo in 3.
    subs1 = {"private.x1": "sub-expert", "private.y1": "sub-good", "private.z1": "sub-careless"}
    species = LABELS[:4]
    photos, answers = [], []
    for i in range(60):
        truth = species[i % 4]
        wrong = species[(i + 1) % 4]
        photos.append(truth)
        answers.append(
            [
                ("private.x1", truth),
                ("private.y1", truth if i % 6 else wrong),
                ("private.z1", truth if i % 3 == 0 else species[(i + 2) % 4]),
            ]
        )
    out1 = _run_job(s3, ddb, "review-job-1", photos, answers, subs1)
    assert out1.identities == {"sub": 3, "worker_id": 0, "reads": 1, "errors": 0}
    log = _read_log(s3, "review-job-1")
    assert log[0]["answers"][0][0] == "sub:sub-expert" and log[0]["worker_ids"][0] == "private.x1"
    rel = update_reliability(s3=s3, dynamodb=ddb, job_name="review-job-1", settings=_apply_settings(), now_iso=NOW)
    assert rel == {"updated": 3, "already_applied": 0}
    stored = load_priors(ddb, "reviewers", ["sub:sub-expert", "sub:sub-good", "sub:sub-careless", "private.x1"])
    assert set(stored) == {"sub:sub-expert", "sub:sub-good", "sub:sub-careless"}  # keyed by person, not workerId
    acc = {k: p.correct / p.answers for k, p in stored.items()}
    assert acc["sub:sub-expert"] > 0.95 > acc["sub:sub-good"] > 0.7 > acc["sub:sub-careless"]

    # Job 2 under new workerIds: each sole answer's confidence is now that person's reliability from job 1.
    expert, good, careless = _job2(s3, ddb)
    assert expert["label"] == "quercus-robur" and expert["confidence"] > 0.9 and expert["reasons"] == []
    assert good["confidence"] < 0.9 and good["reasons"] == ["sole_answer_low_reliability"]
    # The careless reviewer's sole answer stands (it is not silently replaced) but is flagged with the reason.
    assert careless["label"] == "picea-abies" and careless["confidence"] < 0.6
    assert "sole_answer_low_reliability" in careless["reasons"] and "unreliable_reviewers" in careless["reasons"]
    assert expert["confidence"] > good["confidence"] > careless["confidence"]


def _log_name(s3, job):
    return s3.list_objects_v2(Bucket="artifacts", Prefix=f"review-answers/{job}/")["Contents"][0]["Key"].rsplit("/")[-1]


def _read_log(s3, job):
    key = f"review-answers/{job}/{_log_name(s3, job)}"
    return [json.loads(x) for x in s3.get_object(Bucket="artifacts", Key=key)["Body"].read().splitlines()]


# --------------------------------------------------------------------------------------------- bounded history


def test_job_history_per_reviewer_is_bounded_and_retries_stay_idempotent(aws):
    _, ddb = aws
    jobs = [f"review-job-{i:03d}" for i in range(MAX_JOBS_REMEMBERED + 7)]
    for job in jobs:
        assert record_job(ddb, "reviewers", job, {"sub:a": (2.0, 1.5)}, now_iso=NOW)["updated"] == 1
    item = ddb.get_item(TableName="reviewers", Key={"worker_id": {"S": "sub:a"}})["Item"]
    assert sorted(item["jobs_applied"]["SS"]) == jobs[-MAX_JOBS_REMEMBERED:]
    assert [v["S"] for v in item["job_order"]["L"]] == jobs[-MAX_JOBS_REMEMBERED:]
    assert float(item["answers"]["N"]) == 2.0 * len(jobs)
    # The latest job retried: nothing added.
    assert record_job(ddb, "reviewers", jobs[-1], {"sub:a": (2.0, 1.5)}, now_iso=NOW) == {
        "updated": 0,
        "already_applied": 1,
    }
    again = ddb.get_item(TableName="reviewers", Key={"worker_id": {"S": "sub:a"}})["Item"]
    assert again["answers"] == item["answers"]
