"""An execution stopped by hand or timed out reaches fail_batch through the EventBridge rule: its jobs are stopped,
then the batch is released (nothing was labeled) or parked (its labeling job had completed)."""

from __future__ import annotations

import importlib
import json
from typing import Any

import boto3
import pytest

from tests.unit.labeling.conftest import World
from tests.unit.labeling.fakes import FakeLabelingJobs

BATCH = "b20261126t063000z-1a2b3c4d"
JOB = f"treelabel-dev-{BATCH}"
REVIEW_JOB = f"{JOB}-review"


class _Context:
    function_name = "fail-batch"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:111111111111:function:fail-batch"
    aws_request_id = "req-1"


def _handler(world: World, monkeypatch: pytest.MonkeyPatch, topic_arn: str, jobs: FakeLabelingJobs) -> Any:
    env = {"PHOTOS_TABLE": world.tables.photos_table, "BATCHES_TABLE": world.tables.batches_table,
           "ARTIFACTS_BUCKET": world.tables.artifacts_bucket, "PROJECT_PREFIX": "treelabel-dev", "MAX_ATTEMPTS": "3",
           "SUMMARY_TOPIC_ARN": topic_arn, "GT_ROLE_ARN": "arn:aws:iam::111111111111:role/gt",
           "WORKTEAM_ARN": "arn:aws:sagemaker:us-east-1:111111111111:workteam/private-crowd/t",
           "LABEL_CATEGORIES_URI": "s3://assets/label-categories.json", "UI_TEMPLATE_URI": "s3://assets/ui.html",
           "KMS_KEY_ARN": "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
           "RETRY_BACKOFF_SECONDS": "600", "RETRY_BACKOFF_MAX_SECONDS": "3600"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import fail_batch.handler as mod

    mod = importlib.reload(mod)  # its settings and clients are cached per container
    monkeypatch.setattr(mod, "_clients", lambda: (world.ddb, jobs))
    return mod


def _rule_event(name: str = f"batch-{BATCH}") -> dict[str, Any]:
    """What the rule's input transformer sends (stacks/labeling_workflow.py)."""
    return {"execution_name": name,
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


def _set_batch(world: World, **values: Any) -> None:
    from fieldlabel.labeling.registry_io import update_batch

    update_batch(world.ddb, world.tables.batches_table, BATCH, values)


def test_a_stopped_execution_stops_its_running_job_and_releases_its_batch(world: World, monkeypatch, topic) -> None:
    # Given a batch whose labeling job is still running when an operator stops the execution
    ids = world.seed(BATCH, 3)
    _set_batch(world, status="LABELING", job_name=JOB)
    jobs = FakeLabelingJobs({JOB: "InProgress"})
    mod = _handler(world, monkeypatch, topic[0], jobs)

    out = mod.lambda_handler(_rule_event(), _Context())

    # Then the job is stopped explicitly, the photos back off for one attempt, the batch is FAILED, the team hears
    assert jobs.stopped == [JOB] and jobs.jobs[JOB] == "Stopping"
    assert out["figures"]["released"] == 3 and out["figures"]["jobs"] == {JOB: "stopped", REVIEW_JOB: "absent"}
    assert {(world.photo(p)["status"], world.photo(p)["attempts"]) for p in ids} == {("BACKOFF", 1)}
    assert world.batch(BATCH)["status"] == "FAILED" and "ABORTED" in world.batch(BATCH)["failure_reason"]
    messages = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=topic[1])["Messages"]
    assert json.loads(messages[0]["Body"])["Subject"] == f"[treelabel-dev] batch {BATCH} FAILED"


def test_a_stopped_execution_after_its_job_completed_parks_the_batch(world: World, monkeypatch, topic) -> None:
    # Given labels already recorded and the review job running when the execution is stopped
    ids = world.seed(BATCH, 2, status="LABELED")
    _set_batch(world, status="REVIEWING", job_name=JOB, review_job_name=REVIEW_JOB, labeling_stats={"labeled": 2})
    jobs = FakeLabelingJobs({JOB: "Completed", REVIEW_JOB: "InProgress"})
    mod = _handler(world, monkeypatch, topic[0], jobs)

    out = mod.lambda_handler(_rule_event(), _Context())

    # Then the review job is stopped, the paid labels stay, and the batch waits for an operator at review
    assert jobs.stopped == [REVIEW_JOB]
    assert out["figures"]["outcome"] == "parked" and out["figures"]["step"] == "review"
    assert {world.photo(p)["status"] for p in ids} == {"LABELED"}
    batch = world.batch(BATCH)
    assert (batch["status"], batch["parked_step"]) == ("PARKED", "review")
    messages = boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=topic[1])["Messages"]
    assert "PARKED at review" in json.loads(messages[0]["Body"])["Subject"]


@pytest.mark.parametrize("status", ["InProgress", "Stopped"])
def test_a_stopped_execution_whose_job_labeled_photos_parks_the_batch_at_record(world: World, monkeypatch, topic,
                                                                                  status: str) -> None:
    # Given a labeling job that has labeled 2 of 3 photos (still running, or already stopped) when the execution stops
    ids = world.seed(BATCH, 3)
    _set_batch(world, status="LABELING", job_name=JOB)
    jobs = FakeLabelingJobs({JOB: status}, labeled={JOB: 2})
    mod = _handler(world, monkeypatch, topic[0], jobs)

    out = mod.lambda_handler(_rule_event(), _Context())

    # Then the job is stopped (Ground Truth keeps what it labeled), nothing is released, and the batch waits at record
    # for `fieldlabel resume` to record those labels and release the rest
    assert jobs.stopped == ([JOB] if status == "InProgress" else [])
    assert out["figures"]["outcome"] == "parked" and out["figures"]["step"] == "record"
    assert out["figures"]["jobs"][JOB] == "stopped with labels"
    assert {world.photo(p)["status"] for p in ids} == {"BATCHED"}
    assert (world.batch(BATCH)["status"], world.batch(BATCH)["parked_step"]) == ("PARKED", "record")


def test_a_stopped_resumption_keeps_the_batch_parked(world: World, monkeypatch, topic) -> None:
    # Given a resumed execution (its name carries the resumption number) stopped while the batch is parked again
    ids = world.seed(BATCH, 2, status="LABELED")
    _set_batch(world, status="PARKED", parked_step="publish", job_name=JOB, labeling_stats={"labeled": 2})
    mod = _handler(world, monkeypatch, topic[0], FakeLabelingJobs({JOB: "Completed"}))
    out = mod.lambda_handler(_rule_event(f"batch-{BATCH}-resume-2"), _Context())
    assert out["figures"]["step"] == "publish" and world.batch(BATCH)["status"] == "PARKED"
    assert {world.photo(p)["status"] for p in ids} == {"LABELED"}


@pytest.mark.parametrize("status", ["PUBLISHED", "FAILED"])
def test_a_batch_that_already_finished_is_left_alone(world: World, monkeypatch, topic, status: str) -> None:
    ids = world.seed(BATCH, 2, status="LABELED")
    _set_batch(world, status=status, job_name=JOB)
    jobs = FakeLabelingJobs({JOB: "InProgress"})
    mod = _handler(world, monkeypatch, topic[0], jobs)
    assert mod.lambda_handler(_rule_event(), _Context()) == {"skipped": True, "batch_id": BATCH, "status": status}
    assert {world.photo(p)["status"] for p in ids} == {"LABELED"}
    assert jobs.stopped == []
    assert "Messages" not in boto3.client("sqs", region_name="us-east-1").receive_message(QueueUrl=topic[1])
