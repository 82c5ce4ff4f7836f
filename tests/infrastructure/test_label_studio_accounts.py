"""The Label Studio accounts function as synthesized (``studio`` environment): in the VPC like the workflow's Label
Studio functions, reading only the admin's token, named by the output the CLI reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.synth import Synthesis, synthesize


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    return synthesize(Path(tmp_path_factory.mktemp("cdk-studio-accounts")), "studio")


def _function(tpl: dict[str, Any], handler_dir: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(lid, r) for lid, r in tpl["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"].get("Handler") == f"{handler_dir}.handler.lambda_handler"]
    return found


def _statements(tpl: dict[str, Any], role_ref: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for res in tpl["Resources"].values():
        if res["Type"] == "AWS::IAM::Policy" and role_ref in res["Properties"]["Roles"]:
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(stmt: dict[str, Any]) -> set[str]:
    a = stmt["Action"]
    return {a} if isinstance(a, str) else set(a)


def test_the_accounts_function_is_placed_granted_and_named(studio: Synthesis) -> None:
    assert studio.findings == [], studio.findings
    pipeline = studio.templates["pipeline"]
    lid, fn = _function(pipeline, "ls_accounts")
    props = fn["Properties"]
    # The same network placement as the workflow's Label Studio functions.
    _, submit = _function(pipeline, "ls_submit")
    assert props["VpcConfig"] == submit["Properties"]["VpcConfig"]
    env = props["Environment"]["Variables"]
    assert env["LABEL_STUDIO_URL"] == submit["Properties"]["Environment"]["Variables"]["LABEL_STUDIO_URL"]
    assert env["LABEL_STUDIO_TOKEN_SECRET_ARN"] == \
        submit["Properties"]["Environment"]["Variables"]["LABEL_STUDIO_TOKEN_SECRET_ARN"]
    assert "LABEL_STUDIO_WEBHOOK_SECRET_ARN" not in env
    assert pipeline["Outputs"]["LabelStudioAccountsFunctionName"]["Value"] == {"Ref": lid}

    statements = _statements(pipeline, {"Ref": props["Role"]["Fn::GetAtt"][0]})
    by_action: dict[str, list[Any]] = {}
    for st in statements:
        assert st["Effect"] == "Allow"
        for action in _actions(st):
            assert "*" not in action, action
            by_action.setdefault(action, []).append(st["Resource"])
    # Only the token secret, nothing else of the project: no S3, no DynamoDB, no Step Functions.
    assert by_action["secretsmanager:GetSecretValue"] == [env["LABEL_STUDIO_TOKEN_SECRET_ARN"]]
    assert not [a for a in by_action if a.split(":")[0] in ("s3", "dynamodb", "states", "lambda")]
    (decrypt,) = [st for st in statements if "kms:Decrypt" in _actions(st)]
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"]
    assert set(by_action) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "kms:Decrypt",
                              "xray:PutTraceSegments", "xray:PutTelemetryRecords", "ec2:CreateNetworkInterface",
                              "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
                              "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
                              "logs:CreateLogStream", "logs:PutLogEvents"}


def test_a_ground_truth_deployment_has_no_accounts_function(tmp_path: Path) -> None:
    dev = synthesize(tmp_path, "dev")
    pipeline = dev.templates["pipeline"]
    assert not [r for r in pipeline["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"].get("Handler") == "ls_accounts.handler.lambda_handler"]
    assert "LabelStudioAccountsFunctionName" not in pipeline.get("Outputs", {})
