"""The review job's pre-annotation Lambda, end to end with moto S3 and DynamoDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.unit.ui.ui_fixtures import review_line, taxonomy_document

ARTIFACTS = "fl-artifacts"
TAXONOMY_KEY = "config/taxonomy.json"
PHOTOS = "fl-photos"
JOB_ARN = "arn:aws:sagemaker:us-east-1:111111111111:labeling-job/treelabel-review-b20261126t063000z-1a2b3c4d"


@dataclass
class Context:
    function_name: str = "pre-annotation"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111111111111:function:pre-annotation"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


def _event(data_object: Any) -> dict[str, Any]:
    return {"version": "2018-10-16", "labelingJobArn": JOB_ARN, "dataObject": data_object}


@pytest.fixture()
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=ARTIFACTS)
        s3.put_object(Bucket=ARTIFACTS, Key=TAXONOMY_KEY, Body=json.dumps(taxonomy_document(25)).encode())
        boto3.client("dynamodb").create_table(
            TableName=PHOTOS,
            KeySchema=[{"AttributeName": "photo_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "photo_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setenv("TAXONOMY_S3_URI", f"s3://{ARTIFACTS}/{TAXONOMY_KEY}")
        monkeypatch.setenv("PHOTOS_TABLE", PHOTOS)
        from pre_annotation import handler as module

        module.reset_caches()
        yield module
        module.reset_caches()


def test_review_line_becomes_a_human_task(handler: Any) -> None:
    # Given a review manifest line
    line = review_line("quercus-robur")

    # When Ground Truth asks for its task input
    response = handler.lambda_handler(_event(line), Context())

    # Then the object goes to the reviewers with the contract's task input
    assert response["isHumanAnnotationRequired"] is True
    task = response["taskInput"]
    assert task["taskObject"] == line["source-ref"]
    assert task["photoId"] == line["photo-id"]
    assert task["labelUnderReview"]["displayName"] == "Quercus robur (pedunculate oak)"
    assert len(task["taxonomy"]) == 25
    assert task["field"]["collector"] == line["field"]["collector"]
    assert json.loads(json.dumps(response)) == response


def test_missing_field_metadata_comes_from_the_registry(handler: Any) -> None:
    # Given a line without field metadata and the photo's registry item
    boto3.resource("dynamodb").Table(PHOTOS).put_item(
        Item={
            "photo_id": "sha256:0a1b2c3d",
            "status": "LABELED",
            "field": {"site_id": "S77", "latitude": Decimal("48.1"), "longitude": Decimal("11.6"), "notes": "ridge"},
        }
    )
    line = review_line()
    del line["field"]

    # When the task input is built
    task = handler.lambda_handler(_event(line), Context())["taskInput"]

    # Then the registry's field map is shown
    assert task["field"] == {"site_id": "S77", "notes": "ridge", "latitude": 48.1, "longitude": 11.6}


def test_malformed_line_is_kept_from_reviewers_without_failing(handler: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Given a line whose label under review has no label
    line = review_line()
    line["label-under-review"] = {"confidence": 0.5, "source": "machine"}

    # When Ground Truth asks for its task input
    response = handler.lambda_handler(_event(line), Context())

    # Then the object is not sent to reviewers, the reason travels in the task input, and the log says why
    assert response["isHumanAnnotationRequired"] is False
    assert response["taskInput"]["error"] == "bad-label-under-review"
    assert response["taskInput"]["photoId"] == line["photo-id"]
    rejected = [r for r in caplog.records if str(r.msg).startswith("review manifest line rejected")]
    assert len(rejected) == 1
    assert rejected[0].levelname == "ERROR"
    assert rejected[0].reason == "bad-label-under-review"  # type: ignore[attr-defined]


def test_event_without_data_object_is_rejected_not_raised(handler: Any) -> None:
    response = handler.lambda_handler({"version": "2018-10-16", "labelingJobArn": JOB_ARN}, Context())
    assert response == {
        "taskInput": {"error": "not-an-object", "errorDetail": "dataObject must be a JSON object"},
        "isHumanAnnotationRequired": False,
    }


def test_taxonomy_is_read_once_per_container(handler: Any) -> None:
    # Given a first invocation that loaded the taxonomy
    handler.lambda_handler(_event(review_line()), Context())
    boto3.client("s3").delete_object(Bucket=ARTIFACTS, Key=TAXONOMY_KEY)

    # Then later invocations in the same container do not read S3 again
    assert handler.lambda_handler(_event(review_line()), Context())["isHumanAnnotationRequired"] is True

    # And a fresh container without the file fails loudly instead of sending tasks without a taxonomy
    handler.reset_caches()
    with pytest.raises(ClientError):
        handler.lambda_handler(_event(review_line()), Context())


def test_missing_taxonomy_setting_is_a_configuration_error(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAXONOMY_S3_URI")
    handler.reset_caches()
    with pytest.raises(RuntimeError, match="TAXONOMY_S3_URI"):
        handler.lambda_handler(_event(review_line()), Context())
