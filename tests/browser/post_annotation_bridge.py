"""Feed one worker answer to the real post-annotation Lambda (lambdas/post_annotation/handler.py) offline.

S3 and DynamoDB are moto; SageMaker's DescribeLabelingJob (which moto does not implement) is a one-method fake that
points at the review manifest, exactly the call the Lambda makes to find the label under review.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

ARTIFACTS = "fl-test-artifacts"
REVIEWERS = "fl-test-reviewers"
JOB = "treelabel-review-b20261126t063000z-1a2b3c4d"


@dataclass
class _Context:
    function_name: str = "post-annotation"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111111111111:function:post-annotation"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


class _SageMaker:
    def __init__(self, manifest_uri: str) -> None:
        self._uri = manifest_uri

    def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803 - boto3 parameter name
        assert LabelingJobName == JOB
        return {"InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": self._uri}}}}


def consolidate_one(taxonomy_doc: dict[str, Any], line: dict[str, Any], content: str) -> dict[str, Any]:
    """Run the post-annotation handler on a payload with one object and one answer; return its consolidated content."""
    import post_annotation.handler as handler

    with mock_aws():
        s3 = boto3.client("s3")
        dynamodb = boto3.client("dynamodb")
        s3.create_bucket(Bucket=ARTIFACTS)
        dynamodb.create_table(
            TableName=REVIEWERS,
            KeySchema=[{"AttributeName": "worker_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "worker_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        manifest_key = "jobs/b20261126t063000z-1a2b3c4d/review.manifest"
        s3.put_object(Bucket=ARTIFACTS, Key=manifest_key, Body=(json.dumps(line) + "\n").encode())
        payload = [
            {
                "datasetObjectId": "0",
                "dataObject": {"s3Uri": line["source-ref"]},
                "annotations": [{"workerId": "private.us-east-1.0a1b2c3d4e5f", "annotationData": {"content": content}}],
            }
        ]
        payload_key = f"gt-output/{JOB}/annotations/consolidation-request/iteration-1/payload.json"
        s3.put_object(Bucket=ARTIFACTS, Key=payload_key, Body=json.dumps(payload).encode())
        labels = [entry["label"] for entry in taxonomy_doc["labels"]] + [taxonomy_doc["unknown_label"]]
        event = {
            "version": "2018-10-16",
            "labelingJobArn": f"arn:aws:sagemaker:us-east-1:111111111111:labeling-job/{JOB}",
            "labelCategories": labels,
            "labelAttributeName": "species-review",
            "roleArn": "arn:aws:iam::111111111111:role/gt-execution",
            "payload": {"s3Uri": f"s3://{ARTIFACTS}/{payload_key}"},
        }
        env = {
            "REVIEWERS_TABLE": REVIEWERS,
            "ARTIFACTS_BUCKET": ARTIFACTS,
            "UNKNOWN_LABEL": taxonomy_doc["unknown_label"],
        }
        clients = (s3, dynamodb, _SageMaker(f"s3://{ARTIFACTS}/{manifest_key}"))
        handler._settings.cache_clear()
        try:
            with mock.patch.dict("os.environ", env), mock.patch.object(handler, "_clients", return_value=clients):
                response = handler.lambda_handler(event, _Context())
        finally:
            handler._settings.cache_clear()
    assert len(response) == 1 and response[0]["datasetObjectId"] == "0"
    return response[0]["consolidatedAnnotation"]["content"]
