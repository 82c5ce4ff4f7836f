"""An execution stopped by hand or timed out is released by the EventBridge rule's call to fail_batch."""

from __future__ import annotations

import importlib
import json
from typing import Any

import boto3
import pytest
from conftest import World

BATCH = "b20261126t063000z-1a2b3c4d"


class _Context:
    function_name = "fail-batch"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:111111111111:function:fail-batch"
    aws_request_id = "req-1"


def _handler(world: World, monkeypatch: pytest.MonkeyPatch, topic_arn: str) -> Any:
    for k, v in {"PHOTOS_TABLE": world.tables.photos_table, "BATCHES_TABLE": world.tables.batches_table,
                 "PROJECT_PREFIX": "treelabel-dev", "MAX_ATTEMPTS": "3", "SUMMARY_TOPIC_ARN": topic_arn}.items():
        monkeypatch.setenv(k, v)
    import fail_batch.handler as mod

    mod = importlib.reload(mod)  # its settings and clients are cached per container
    return mod


def _rule_event() -> dict[str, Any]:
    """What the rule's input transformer sends (stacks/labeling_workflow.py)."""
    return {"execution_name": f"batch-{BATCH}",
            "error": {"Error": "ABORTED",
                      "Cause": "the execution was stopped or timed out before the workflow could finish"}}


@pytest.fixture
def topic(world: World) -> tuple[str, str]:
    sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    arn = sns.create_topic(Name="summaries")["TopicArn"]
    q = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)
    return arn, q


def test_a_stopped_execution_releases_its_batch_and_tells_the_team(world: World, monkeypatch, topic) -> None:
    ids = world.seed(BATCH, 3)
    world.ddb.update_item(TableName=world.tables.batches_table, Key={"batch_id": {"S": BATCH}},
                          UpdateExpression="SET #s = :l", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":l": {"S": "LABELING"}})
    mod = _handler(world, monkeypatch, topic[0])
    out = mod.lambda_handler(_rule_event(), _Context())
    assert out["figures"]["released"] == 3 and out["figures"]["batch_id"] == BATCH
    assert {world.photo(p)["status"] for p in ids} == {"PENDING"}
    assert world.batch(BATCH)["status"] == "FAILED" and "ABORTED" in world.batch(BATCH)["failure_reason"]
    messages = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=topic[1])["Messages"]
    assert BATCH in json.loads(messages[0]["Body"])["Subject"]


@pytest.mark.parametrize("status", ["PUBLISHED", "FAILED"])
def test_a_batch_that_already_finished_is_left_alone(world: World, monkeypatch, topic, status: str) -> None:
    ids = world.seed(BATCH, 2, status="LABELED")
    world.ddb.update_item(TableName=world.tables.batches_table, Key={"batch_id": {"S": BATCH}},
                          UpdateExpression="SET #s = :p", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":p": {"S": status}})
    mod = _handler(world, monkeypatch, topic[0])
    assert mod.lambda_handler(_rule_event(), _Context()) == {"skipped": True, "batch_id": BATCH, "status": status}
    assert {world.photo(p)["status"] for p in ids} == {"LABELED"}
    assert "Messages" not in boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=topic[1])
