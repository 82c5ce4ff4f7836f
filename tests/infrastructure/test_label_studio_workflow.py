"""The workflow on the Label Studio backend as synthesized (``studio`` environment): run states that wait for a task
token, the webhook's Function URL, the poll schedule, the functions' network placement and their IAM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.synth import Synthesis, synthesize

WAIT = "arn:<AWS::Partition>:states:::lambda:invoke.waitForTaskToken"
DAY = 86_400


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    return synthesize(Path(tmp_path_factory.mktemp("cdk-studio-flow")), "studio")


@pytest.fixture(scope="module")
def pipeline(studio: Synthesis) -> dict[str, Any]:
    assert studio.findings == [], studio.findings
    return studio.templates["pipeline"]


def _by_handler(tpl: dict[str, Any], handler_dir: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(lid, r) for lid, r in tpl["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"].get("Handler") == f"{handler_dir}.handler.lambda_handler"]
    return found


def _definition(tpl: dict[str, Any]) -> dict[str, Any]:
    (sm,) = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    parts = sm["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"<{p.get('Fn::GetAtt', [p.get('Ref')])[0]}>" for p in parts)
    return dict(json.loads(text))


def _statements(tpl: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    out = []
    for res in tpl["Resources"].values():
        if res["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in res["Properties"]["Roles"]:
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(stmt: dict[str, Any]) -> list[str]:
    a = stmt["Action"]
    return [a] if isinstance(a, str) else list(a)


def test_the_run_states_wait_for_a_task_token_from_the_submit_function(pipeline: dict[str, Any]) -> None:
    states = _definition(pipeline)["States"]
    submit_id, _ = _by_handler(pipeline, "ls_submit")
    assert "Run the automated labeling job" not in states  # Label Studio has no automated labeling
    assert not any(s.get("Resource") == "arn:aws:states:::sagemaker:createLabelingJob.sync" for s in states.values())
    for name, stage, look_up, stop in (
            ("Run the human labeling job", "labeling", "Look up the labeling job",
             "Stop the labeling job that ran too long"),
            ("Run the expert review job", "review", "Look up the review job", "Stop the review job that ran too long")):
        run = states[name]
        assert run["Resource"] == WAIT and run["TimeoutSeconds"] == 31 * DAY
        assert run["Parameters"]["FunctionName"] == f"<{submit_id}>"
        payload = run["Parameters"]["Payload"]
        assert payload["task_token.$"] == "$$.Task.Token" and payload["action"] == "submit"
        assert payload["stage"] == stage
        catches = {tuple(c["ErrorEquals"]): c["Next"] for c in run["Catch"]}
        assert catches[("States.Timeout",)] == stop and catches[("States.ALL",)] == look_up
        assert any("LabelStudioUnavailableError" in r["ErrorEquals"] for r in run["Retry"])
        for other, action in ((look_up, "look_up"), (stop, "stop")):
            assert states[other]["Resource"] == f"<{submit_id}>"
            assert states[other]["Parameters"]["action"] == action and states[other]["Parameters"]["stage"] == stage
    # The look-up's answer goes through the same choice as a Ground Truth job's description.
    assert states["Look up the labeling job"]["Next"] == "Has the labeling job finished?"
    assert states["Stop the labeling job that ran too long"]["Next"] == "Release the batch's photos"


def test_the_webhook_has_a_function_url_and_the_poll_a_schedule(pipeline: dict[str, Any]) -> None:
    webhook_id, _ = _by_handler(pipeline, "ls_webhook")
    poll_id, _ = _by_handler(pipeline, "ls_poll")
    (url,) = [r["Properties"] for r in pipeline["Resources"].values() if r["Type"] == "AWS::Lambda::Url"]
    assert url["AuthType"] == "NONE" and url["TargetFunctionArn"] == {"Fn::GetAtt": [webhook_id, "Arn"]}
    schedules = [r["Properties"] for r in pipeline["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"
                 and r["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [poll_id, "Arn"]}]
    (schedule,) = schedules
    assert schedule["ScheduleExpression"] == "rate(10 minutes)"
    assert json.loads(schedule["Target"]["Input"]) == {"trigger": "schedule"}
    assert "DeadLetterConfig" in schedule["Target"]


def test_the_label_studio_functions_run_in_its_vpc_with_its_url_and_secrets(pipeline: dict[str, Any]) -> None:
    for handler in ("ls_submit", "ls_webhook", "ls_poll", "fail_batch"):
        _, fn = _by_handler(pipeline, handler)
        props = fn["Properties"]
        assert props["VpcConfig"]["SecurityGroupIds"] and props["VpcConfig"]["SubnetIds"], handler
        env = props["Environment"]["Variables"]
        assert env["LABEL_STUDIO_URL"] == "https://labels.example.org", handler
        assert "Fn::ImportValue" in env["LABEL_STUDIO_TOKEN_SECRET_ARN"], handler
        # the projects' S3 storage of the labeling copies, presigned for the configured minutes
        assert env["LABEL_STUDIO_IMAGES_PREFIX"] == "labeling-copies/", handler
        assert env["LABEL_STUDIO_PRESIGN_TTL_MINUTES"] == "15", handler
        assert "Fn::ImportValue" in json.dumps(env["LABEL_STUDIO_IMAGES_BUCKET"]) or \
            str(env["LABEL_STUDIO_IMAGES_BUCKET"]).startswith("treelabel-studio-intake-"), handler
        assert len(json.dumps(props["Environment"]["Variables"])) < 4096, handler  # Lambda's environment limit
    _, submit = _by_handler(pipeline, "ls_submit")
    assert "Fn::GetAtt" in submit["Properties"]["Environment"]["Variables"]["WEBHOOK_URL"]
    # Functions that never call Label Studio stay outside the VPC.
    for handler in ("prepare_job", "process_output", "publish_dataset"):
        assert "VpcConfig" not in _by_handler(pipeline, handler)[1]["Properties"], handler


def test_only_the_webhook_and_the_poll_may_resume_executions_and_only_this_state_machine(
        pipeline: dict[str, Any]) -> None:
    (sm,) = [r for r in pipeline["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    name = sm["Properties"]["StateMachineName"]
    assert name == "treelabel-studio-labeling"
    resuming = set()
    for lid, res in pipeline["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        for stmt in _statements(pipeline, lid):
            if any(a.startswith("states:SendTask") for a in _actions(stmt)):
                assert _actions(stmt) == ["states:SendTaskSuccess"]
                assert stmt["Resource"] == f"arn:aws:states:us-east-1:111111111111:stateMachine:{name}"
                resuming.add(lid)
    expected = {_by_handler(pipeline, h)[1]["Properties"]["Role"]["Fn::GetAtt"][0] for h in ("ls_webhook", "ls_poll")}
    assert resuming == expected


def test_secret_reads_are_limited_to_the_label_studio_secrets(pipeline: dict[str, Any]) -> None:
    for handler, secrets in (("ls_submit", 2), ("ls_webhook", 2), ("ls_poll", 1), ("fail_batch", 1)):
        _, fn = _by_handler(pipeline, handler)
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        stmts = [s for s in _statements(pipeline, role) if any(a.startswith("secretsmanager:") for a in _actions(s))]
        (stmt,) = stmts
        assert sorted(_actions(stmt)) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        assert len(resources) == secrets and all("Fn::ImportValue" in r for r in resources), handler
    # VPC functions get the network-interface actions, never the managed AWSLambdaVPCAccessExecutionRole.
    for res in pipeline["Resources"].values():
        if res["Type"] == "AWS::IAM::Role":
            assert not res["Properties"].get("ManagedPolicyArns"), res
