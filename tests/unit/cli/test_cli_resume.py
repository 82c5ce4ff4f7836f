"""``fieldlabel resume`` against moto: a parked batch gets a new execution at its parked step; anything else is
refused with one line and no execution."""

from __future__ import annotations

import json

import boto3
import pytest
from fieldlabel.common.clock import frozen
from moto import mock_aws
from operator_fixtures import make_world

from tests.unit.cli.test_cli_status import NOW

BATCH = "b20261126t063000z-1a2b3c4d"


@pytest.fixture
def world(tmp_path):
    with mock_aws(), frozen(NOW):
        w = make_world(tmp_path)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="labeling", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
        outputs = json.loads(open(w.outputs).read())
        outputs["treelabel-Pipeline"]["StateMachineArn"] = arn
        open(w.outputs, "w").write(json.dumps(outputs))
        w.sfn, w.arn = sfn, arn  # type: ignore[attr-defined]
        yield w


def _executions(world) -> dict[str, dict]:
    out = {}
    for e in world.sfn.list_executions(stateMachineArn=world.arn)["executions"]:
        out[e["name"]] = json.loads(world.sfn.describe_execution(executionArn=e["executionArn"])["input"])
    return out


def test_resume_starts_the_parked_step_and_says_so(world, cli):
    world.put_batch(BATCH, "PARKED", kind="automated", photo_count=1300, parked_step="publish",
                    park_reason="RuntimeError: S3 unavailable", job_name=f"treelabel-{BATCH}",
                    labeling_stats={"labeled": 1293})
    r = cli("resume", BATCH, "--outputs", world.outputs)
    assert r.code == 0, r.stderr
    assert f"Resumed batch {BATCH} at publish: execution batch-{BATCH}-resume-1" in r.stdout
    assert "S3 unavailable" in r.stdout
    assert _executions(world) == {f"batch-{BATCH}-resume-1": {
        "batch_id": BATCH, "photo_count": 1300, "kind": "automated", "attempt": 2, "resume_from": "publish",
        "resume": 1}}


def test_resume_from_another_step_in_json(world, cli):
    world.put_batch(BATCH, "PARKED", kind="human_only", photo_count=40, parked_step="publish",
                    labeling_stats={"labeled": 40})
    r = cli("resume", BATCH, "--from", "review", "--outputs", world.outputs, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["step"] == "review" and r.json()["execution_name"] == f"batch-{BATCH}-resume-1"
    assert _executions(world)[f"batch-{BATCH}-resume-1"]["resume_from"] == "review"


@pytest.mark.parametrize("status,message", [("LABELING", "is LABELING, not parked"),
                                            ("FAILED", "is FAILED, not parked")])
def test_a_batch_that_is_not_parked_is_refused(world, cli, status, message):
    world.put_batch(BATCH, status, kind="human_only", photo_count=40)
    r = cli("resume", BATCH, "--outputs", world.outputs)
    assert r.code == 1 and message in r.stderr and r.stderr.count("\n") == 1
    assert _executions(world) == {}


def test_resume_at_review_needs_recorded_labels(world, cli):
    world.put_batch(BATCH, "PARKED", kind="human_only", photo_count=40, parked_step="record")
    r = cli("resume", BATCH, "--from", "review", "--outputs", world.outputs)
    assert r.code == 1 and "resume it at record" in r.stderr
    assert _executions(world) == {}


def test_a_malformed_batch_id_is_a_usage_error_before_any_aws_call(world, cli):
    r = cli("resume", "batch-42", "--outputs", world.outputs)
    assert r.code == 2 and "not a batch id" in r.stderr
