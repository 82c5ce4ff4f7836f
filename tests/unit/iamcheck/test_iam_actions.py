"""From recorded calls to the permissions AWS checks: actions, resources and the service semantics that matter."""

from __future__ import annotations

from typing import Any

from localrun.iamcheck.actions import AccessMapper
from localrun.iamcheck.policies import BucketInfo, PolicyModel
from localrun.iamcheck.principals import INTERNAL, role
from localrun.iamcheck.recorder import Call

A = "111111111111"
KEY = f"arn:aws:kms:us-east-1:{A}:key/data"
QUEUE = f"arn:aws:sqs:us-east-1:{A}:intake-events"
SM = role(f"arn:aws:iam::{A}:role/StateMachineRole", "state machine")
FN = role(f"arn:aws:iam::{A}:role/PublishRole", "function publish")


def model() -> PolicyModel:
    return PolicyModel(
        account=A, region="us-east-1", roles={}, resource_policies={},
        buckets={"art": BucketInfo("art", KEY), "intake": BucketInfo("intake", KEY, [{"queue": QUEUE,
                                                                                      "prefix": "uploads/"}]),
                 "logs": BucketInfo("logs", None)},
        topic_keys={f"arn:aws:sns:us-east-1:{A}:summaries": KEY}, kms_keys={KEY}, documented={},
        function_roles={}, state_machine_role=SM.arn, schedule_roles={})


def needs(call: Call) -> list[tuple[str, str]]:
    return [(a.action, a.resource) for a in AccessMapper(model()).accesses(call)]


def s3(op: str, status: int = 200, principal: Any = FN, **params: Any) -> Call:
    return Call(principal, "s3", "s3", op, params, status=status)


def test_a_missing_key_needs_list_bucket_for_its_404() -> None:
    missing = s3("GetObject", 404, Bucket="art", Key="datasets/LATEST")
    assert needs(missing) == [("s3:GetObject", "arn:aws:s3:::art/datasets/LATEST"),
                              ("s3:ListBucket", "arn:aws:s3:::art")]
    (implicit,) = [a for a in AccessMapper(model()).accesses(missing) if a.action == "s3:ListBucket"]
    assert "s3:prefix" not in implicit.context and "404" in implicit.why


def test_sse_kms_reads_decrypt_and_writes_generate_a_data_key() -> None:
    assert needs(s3("GetObject", Bucket="art", Key="jobs/m")) == [("s3:GetObject", "arn:aws:s3:::art/jobs/m"),
                                                                  ("kms:Decrypt", KEY)]
    assert needs(s3("HeadObject", Bucket="art", Key="jobs/m")) == [("s3:GetObject", "arn:aws:s3:::art/jobs/m")]
    assert needs(s3("PutObject", Bucket="art", Key="jobs/m")) == [("s3:PutObject", "arn:aws:s3:::art/jobs/m"),
                                                                  ("kms:GenerateDataKey", KEY)]
    assert ("kms:Decrypt", KEY) in needs(s3("CreateMultipartUpload", Bucket="art", Key="big"))
    assert needs(s3("GetObject", Bucket="logs", Key="x")) == [("s3:GetObject", "arn:aws:s3:::logs/x")]  # SSE-S3
    got = AccessMapper(model()).accesses(s3("GetObject", Bucket="art", Key="k"))
    (kms,) = [a for a in got if a.action == "kms:Decrypt"]
    assert kms.context["kms:ViaService"] == "s3.us-east-1.amazonaws.com"


def test_versioned_and_tagging_actions() -> None:
    assert needs(s3("GetObject", Bucket="logs", Key="x", VersionId="v"))[0][0] == "s3:GetObjectVersion"
    assert needs(s3("PutObjectTagging", Bucket="logs", Key="x", VersionId="v"))[0][0] == "s3:PutObjectVersionTagging"
    assert needs(s3("HeadBucket", Bucket="logs")) == [("s3:ListBucket", "arn:aws:s3:::logs")]


def test_a_listing_always_carries_its_prefix() -> None:
    (a,) = AccessMapper(model()).accesses(s3("ListObjectsV2", Bucket="art"))
    assert (a.action, a.context["s3:prefix"]) == ("s3:ListBucket", "")
    (b,) = AccessMapper(model()).accesses(s3("ListObjectsV2", Bucket="art", Prefix="datasets/", Delimiter="/"))
    assert b.context["s3:prefix"] == "datasets/"


def test_an_upload_under_the_notified_prefix_is_delivered_by_s3_itself() -> None:
    accesses = AccessMapper(model()).accesses(s3("PutObject", Bucket="intake", Key="uploads/a.jpg"))
    (delivery,) = [a for a in accesses if a.principal.kind == "service"]
    assert (delivery.principal.name, delivery.action, delivery.resource) == ("s3.amazonaws.com", "sqs:SendMessage",
                                                                            QUEUE)
    assert delivery.context["aws:SourceArn"] == "arn:aws:s3:::intake"
    assert not [a for a in AccessMapper(model()).accesses(s3("PutObject", Bucket="intake", Key="labeling-copies/a"))
                if a.principal.kind == "service"]


def test_dynamodb_batches_transactions_and_indexes() -> None:
    table = f"arn:aws:dynamodb:us-east-1:{A}:table/photos"
    tx = Call(FN, "dynamodb", "dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Update": {"TableName": "photos"}}, {"ConditionCheck": {"TableName": "batches"}}]}, status=200)
    assert needs(tx) == [("dynamodb:UpdateItem", table),
                         ("dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:us-east-1:{A}:table/batches")]
    q = Call(FN, "dynamodb", "dynamodb", "Query", {"TableName": "photos", "IndexName": "by_batch"}, status=200)
    assert needs(q) == [("dynamodb:Query", f"{table}/index/by_batch")]
    bw = Call(FN, "dynamodb", "dynamodb", "BatchWriteItem", {"RequestItems": {"photos": []}}, status=200)
    assert needs(bw) == [("dynamodb:BatchWriteItem", table)]


def test_the_sync_labeling_integration_passes_the_role_tags_the_job_and_manages_its_rule() -> None:
    create = Call(SM, "sagemaker", "sagemaker", "CreateLabelingJob",
                  {"LabelingJobName": "TreeLabel-B1", "RoleArn": f"arn:aws:iam::{A}:role/GT"}, status=200)
    got = needs(create)
    job = f"arn:aws:sagemaker:us-east-1:{A}:labeling-job/treelabel-b1"
    assert ("sagemaker:CreateLabelingJob", job) in got and ("sagemaker:AddTags", job) in got
    assert ("iam:PassRole", f"arn:aws:iam::{A}:role/GT") in got
    assert {a for a, _ in got if a.startswith("events:")} == {"events:PutRule", "events:PutTargets",
                                                               "events:DescribeRule"}
    (pass_role,) = [a for a in AccessMapper(model()).accesses(create) if a.action == "iam:PassRole"]
    assert pass_role.context["iam:PassedToService"] == "sagemaker.amazonaws.com"
    # A function's own CreateLabelingJob without tags is not the .sync integration.
    plain = Call(FN, "sagemaker", "sagemaker", "CreateLabelingJob", {"LabelingJobName": "j", "RoleArn": "r"},
                 status=200)
    assert not [a for a, _ in needs(plain) if a in ("sagemaker:AddTags", "events:PutRule")]


def test_publishing_to_an_encrypted_topic_uses_the_key_and_internal_calls_are_not_checked() -> None:
    pub = Call(SM, "sns", "sns", "Publish", {"TopicArn": f"arn:aws:sns:us-east-1:{A}:summaries"}, status=200)
    assert [a for a, _ in needs(pub)] == ["sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"]
    assert needs(Call(INTERNAL, "lambda", "lambda", "Invoke", {"FunctionName": "f"}, status=200)) == []
    assert needs(Call(None, "s3", "s3", "CreateBucket", {"Bucket": "b"}, status=200)) == []
    inv = Call(SM, "lambda", "lambda", "Invoke", {"FunctionName": "Prepare", "Qualifier": "$LATEST"}, status=200)
    assert needs(inv) == [("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{A}:function:Prepare:$LATEST")]
    sqs = Call(FN, "sqs", "sqs", "DeleteMessageBatch", {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/{A}/q"},
               status=200)
    assert needs(sqs) == [("sqs:DeleteMessage", f"arn:aws:sqs:us-east-1:{A}:q")]
