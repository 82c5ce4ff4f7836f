"""``fieldlabel flush`` against moto: the real dispatcher runs in-process behind moto's Lambda Invoke."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from fieldlabel.common.clock import frozen, iso
from fieldlabel.registry.model import from_item
from fieldlabel_cli.errors import CliError
from fieldlabel_cli.flush import FLUSH_PAYLOAD, invoke_dispatcher
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from operator_fixtures import BATCHES, DISPATCH_FN, PHOTOS, make_world

# A fixed instant pinned into every clock the command and the dispatcher read (world fixture): the lease and the
# photos' ages mean the same on any date, however long the test session runs.
NOW = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


class _Context:
    function_name = DISPATCH_FN
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{DISPATCH_FN}"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000
MOTO_CONFIG = {"lambda": {"use_docker": False}}


@pytest.fixture
def world(tmp_path, monkeypatch):
    with mock_aws(config=MOTO_CONFIG), frozen(NOW):
        w = make_world(tmp_path)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="labeling", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        boto3.client("lambda", region_name="us-east-1").create_function(
            FunctionName=DISPATCH_FN, Runtime="python3.13", Role=role, Handler="dispatch.handler.lambda_handler",
            Code={"ZipFile": b"placeholder"})
        for k, v in {"PHOTOS_TABLE": PHOTOS, "BATCHES_TABLE": BATCHES, "STATE_MACHINE_ARN": arn,
                     "BATCH_SIZE": "5000", "MAX_WAIT_SECONDS": "86400", "SMALL_BATCH_POLICY": "wait",
                     "POWERTOOLS_METRICS_NAMESPACE": "Test"}.items():
            monkeypatch.setenv(k, v)
        events: list[dict] = []
        from dispatch import handler as dispatch_handler

        def invoke(self, function_name, qualifier, body, headers, response_headers):
            # moto without Docker echoes the payload; run the real dispatcher instead (offline-toolchain.md §6)
            self.get_function(function_name, qualifier)  # moto's ResourceNotFoundException for an unknown name
            events.append(json.loads(body))
            dispatch_handler.settings.cache_clear()
            dispatch_handler.clients.cache_clear()
            return json.dumps(dispatch_handler.lambda_handler(json.loads(body), _Context())).encode()

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
        w.events = events
        w.sfn, w.sm_arn = sfn, arn
        yield w
        dispatch_handler.settings.cache_clear()
        dispatch_handler.clients.cache_clear()


def seed(w, n):
    for i in range(n):
        w.put_photo(f"sha256:f{i:05d}", "PENDING", iso(NOW - timedelta(minutes=30) + timedelta(seconds=i)))


def statuses(w):
    out = {}
    for raw in w.ddb.scan(TableName=PHOTOS)["Items"]:
        s = from_item(raw)["status"]
        out[s] = out.get(s, 0) + 1
    return out


def test_small_batch_asks_and_yes_starts_a_human_only_batch(world, cli):
    seed(world, 5)
    r = cli("flush", "--outputs", world.outputs, stdin_tty=True, stdin_text="y\n")
    assert r.code == 0, r.stderr
    assert "below the 1,250 needed for automated labeling" in r.stderr and "[y/N]" in r.stderr
    assert world.events == [FLUSH_PAYLOAD]
    assert "Started batch b" in r.stdout and "5 photo(s), human_only" in r.stdout
    assert statuses(world) == {"BATCHED": 5}
    (execution,) = world.sfn.list_executions(stateMachineArn=world.sm_arn)["executions"]
    described = json.loads(world.sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert described["photo_count"] == 5 and described["kind"] == "human_only"


def test_answering_no_changes_nothing(world, cli):
    seed(world, 5)
    r = cli("flush", "--outputs", world.outputs, stdin_tty=True, stdin_text="n\n")
    assert r.code == 0 and "Nothing started." in r.stderr
    assert world.events == [] and statuses(world) == {"PENDING": 5}


def test_without_a_terminal_a_small_batch_needs_yes(world, cli):
    seed(world, 5)
    r = cli("flush", "--outputs", world.outputs)
    assert r.code == 2 and "pass --yes" in r.stderr and world.events == []
    r = cli("flush", "--outputs", world.outputs, "--yes", "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["started"] is True and data["forced"] is True and data["decision"] == "forced"
    assert [(b["photo_count"], b["kind"]) for b in data["batches"]] == [(5, "human_only")]


def test_a_batch_at_the_minimum_is_automated_without_asking(world, cli, monkeypatch):
    # Counting is what decides whether to ask, so the dispatcher's answer is checked, not the 1,250 claim itself:
    # claiming 1,250 photos in moto takes too long for a unit test. The dispatcher's forced decision at the
    # minimum is tested in tests/unit/intake/test_intake_dispatch_force.py.
    from fieldlabel.intake.dispatch import PendingStats

    monkeypatch.setattr("fieldlabel_cli.commands.flush.pending_stats",
                        lambda ddb, table, now: PendingStats(1250, iso(NOW), 60.0))
    seed(world, 3)
    r = cli("flush", "--outputs", world.outputs)  # no terminal, no --yes: it must not ask
    assert r.code == 0, r.stderr
    assert "[y/N]" not in r.stderr and world.events == [FLUSH_PAYLOAD]


def test_nothing_pending_invokes_nothing(world, cli):
    r = cli("flush", "--outputs", world.outputs, "--yes")
    assert r.code == 0 and "Nothing is pending" in r.stdout and world.events == []


def test_dispatcher_busy_is_a_clear_failure(world, cli):
    seed(world, 2)
    world.put_batch("#dispatch-lease", "-", owner="other-run", expires_at=NOW.timestamp() + 300)
    r = cli("flush", "--outputs", world.outputs, "--yes")
    assert r.code == 1 and "the dispatcher is already running" in r.stderr
    assert statuses(world) == {"PENDING": 2}


def test_unknown_function_and_missing_config(world, cli, tmp_path):
    seed(world, 2)
    r = cli("flush", "--outputs", world.outputs, "--yes", "--dispatch-function", "no-such-fn")
    assert r.code == 1 and "dispatch function 'no-such-fn' not found" in r.stderr and "Traceback" not in r.stderr
    outputs = tmp_path / "storage-only.json"
    outputs.write_text(json.dumps({"PhotosTableName": PHOTOS}))
    r = cli("flush", "--outputs", str(outputs), "--yes")
    assert r.code == 1 and "DispatchFunctionName is not in outputs file" in r.stderr
    assert "--dispatch-function" in r.stderr


def _stubbed_lambda(response):
    client = boto3.client("lambda", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("invoke", response, {"FunctionName": "fn", "InvocationType": "RequestResponse",
                                           "Payload": json.dumps(FLUSH_PAYLOAD).encode()})
    stub.activate()
    return client


def test_function_error_shows_the_error_message():
    from botocore.response import StreamingBody

    raw = json.dumps({"errorType": "ValidationError", "errorMessage": "STATE_MACHINE_ARN missing"}).encode()
    client = _stubbed_lambda({"StatusCode": 200, "FunctionError": "Unhandled",
                              "Payload": StreamingBody(io.BytesIO(raw), len(raw))})
    with pytest.raises(CliError) as err:
        invoke_dispatcher(client, "fn")
    assert "the dispatcher failed: ValidationError: STATE_MACHINE_ARN missing" in err.value.message
    assert "/aws/lambda/fn" in err.value.message


def test_unexpected_answer_is_reported():
    from botocore.response import StreamingBody

    raw = b'"hello"'
    client = _stubbed_lambda({"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(raw), len(raw))})
    with pytest.raises(CliError, match="answered something unexpected"):
        invoke_dispatcher(client, "fn")
