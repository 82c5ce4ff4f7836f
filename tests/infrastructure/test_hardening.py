"""Hardened defaults (issue 11): function logs, async failures, concurrency, encrypted execution log, kept keys,
and the table settings cdk-nag does not check for TableV2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.monitoring_helpers import alarms_on, resources
from tests.infrastructure.synth import Synthesis, synthesize

LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
CONFIGURED = {
    "monitoring": {"log_execution_data": True},
    "concurrency": {"register_max_concurrency": 4, "reserved": {"dispatch": 1, "register": 20}},
}


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """dev with execution data logged and concurrency limits set."""
    return synthesize(tmp_path_factory.mktemp("cdk-configured"), "dev", CONFIGURED)


def _syn(request: pytest.FixtureRequest, env: str) -> Synthesis:
    return request.getfixturevalue(env)


def _statements(role: dict[str, Any], policies: dict[str, dict[str, Any]], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to ``role_id``."""
    out = [st for p in role["Properties"].get("Policies", []) for st in p["PolicyDocument"]["Statement"]]
    for pol in policies.values():
        if {"Ref": role_id} in pol["Properties"].get("Roles", []):
            out += pol["Properties"]["PolicyDocument"]["Statement"]
    return out


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _functions(syn: Synthesis) -> list[tuple[str, str, dict[str, Any]]]:
    return syn.resources("AWS::Lambda::Function")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_function_writes_only_to_its_own_encrypted_log_group(env: str, request: pytest.FixtureRequest) -> None:
    syn = _syn(request, env)
    functions = _functions(syn)
    assert len(functions) >= 12  # the pipeline's, the portal set-up, CDK's provider and notification handlers
    retention = 30 if env == "dev" else 365
    for stack, lid, fn in functions:
        tpl = syn.templates[stack]
        p = fn["Properties"]
        log_ref = p["LoggingConfig"]["LogGroup"]
        group_id = log_ref["Ref"]
        group = tpl["Resources"][group_id]
        assert group["Type"] == "AWS::Logs::LogGroup", lid
        assert group["Properties"]["RetentionInDays"] == retention, lid
        assert "KmsKeyId" in group["Properties"], f"{lid}: log group not under a customer-managed key"
        role_id = p["Role"]["Fn::GetAtt"][0]
        role = tpl["Resources"][role_id]
        assert not role["Properties"].get("ManagedPolicyArns"), f"{lid}: managed policy on its role"
        log_statements = [st for st in _statements(role, resources(syn, stack, "AWS::IAM::Policy"), role_id)
                          if any(a.startswith("logs:") for a in _as_list(st["Action"]))]
        assert log_statements, f"{lid}: no log grant"
        for st in log_statements:
            assert set(_as_list(st["Action"])) == LOG_ACTIONS, lid
            assert _as_list(st["Resource"]) == [{"Fn::GetAtt": [group_id, "Arn"]}], lid


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_keys_of_log_groups_let_cloudwatch_logs_use_them_for_this_account_only(
    env: str, request: pytest.FixtureRequest
) -> None:
    syn = _syn(request, env)
    region = {"dev": "us-east-1", "prod": "eu-west-1"}[env]
    logged = 0
    for _, lid, key in syn.resources("AWS::KMS::Key"):
        grants = [st for st in key["Properties"]["KeyPolicy"]["Statement"]
                  if st.get("Principal") == {"Service": f"logs.{region}.amazonaws.com"}]
        for st in grants:
            logged += 1
            assert all("*" not in a for a in _as_list(st["Action"])), lid
            arn = json.dumps(st["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
            assert ":log-group:*" in arn and ("111111111111" in arn or "222222222222" in arn), lid
    assert logged == 2  # the data key (storage, pipeline) and the workforce key (portal set-up)


def test_execution_log_is_encrypted_and_holds_no_execution_data_unless_configured(
    dev: Synthesis, configured: Synthesis
) -> None:
    for syn, expected in ((dev, False), (configured, True)):
        ((_, _, sm),) = syn.resources("AWS::StepFunctions::StateMachine")
        logging = sm["Properties"]["LoggingConfiguration"]
        assert logging["IncludeExecutionData"] is expected
        group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        assert "KmsKeyId" in syn.templates["pipeline"]["Resources"][group_id]["Properties"]


def _async_queue(syn: Synthesis) -> str:
    queues = {lid: q for lid, q in resources(syn, "pipeline", "AWS::SQS::Queue").items()
              if q["Properties"].get("QueueName", "").endswith("-async-failures")}
    assert len(queues) == 1
    lid, q = next(iter(queues.items()))
    assert q["Properties"]["SqsManagedSseEnabled"] is True
    return lid


def _handler_id(syn: Synthesis, handler_dir: str) -> str:
    (lid,) = [lid for lid, r in resources(syn, "pipeline", "AWS::Lambda::Function").items()
              if r["Properties"]["Handler"] == f"{handler_dir}.handler.lambda_handler"]
    return lid


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_asynchronously_invoked_functions_send_failures_to_the_alarmed_queue(
    env: str, request: pytest.FixtureRequest
) -> None:
    syn = _syn(request, env)
    queue = _async_queue(syn)
    configs = {r["Properties"]["FunctionName"]["Ref"]: r["Properties"]
               for r in resources(syn, "pipeline", "AWS::Lambda::EventInvokeConfig").values()}
    for handler_dir in ("dispatch", "fail_batch"):
        cfg = configs[_handler_id(syn, handler_dir)]
        assert cfg["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert cfg["MaximumRetryAttempts"] == 2
    assert len(configs) == 2  # everything else is invoked synchronously


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_schedule_and_the_stopped_execution_rule_have_dead_letter_queues(
    env: str, request: pytest.FixtureRequest
) -> None:
    syn = _syn(request, env)
    queue_arn = {"Fn::GetAtt": [_async_queue(syn), "Arn"]}
    ((_, _, schedule),) = syn.resources("AWS::Scheduler::Schedule")
    assert schedule["Properties"]["Target"]["DeadLetterConfig"]["Arn"] == queue_arn
    rules = [r for _, _, r in syn.resources("AWS::Events::Rule")
             if r["Properties"]["EventPattern"].get("source") == ["aws.states"]]
    assert len(rules) == 1
    (target,) = rules[0]["Properties"]["Targets"]
    assert target["DeadLetterConfig"]["Arn"] == queue_arn
    # EventBridge may deliver to the queue for that rule only.
    (policy,) = [r for _, _, r in syn.resources("AWS::SQS::QueuePolicy")
                 if {"Ref": _async_queue(syn)} in r["Properties"]["Queues"]]
    allows = [st for st in policy["Properties"]["PolicyDocument"]["Statement"]
              if st["Effect"] == "Allow" and st["Principal"] == {"Service": "events.amazonaws.com"}]
    assert allows and all("aws:SourceArn" in json.dumps(st["Condition"]) for st in allows)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_async_failures_queue_is_alarmed(env: str, request: pytest.FixtureRequest) -> None:
    syn = _syn(request, env)
    queue = _async_queue(syn)
    found = alarms_on(syn, "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                      QueueName={"Fn::GetAtt": [queue, "QueueName"]})
    assert len(found) == 1
    assert found[0].threshold == 0 and found[0].comparison == "GreaterThanThreshold"
    assert "Failed asynchronous invocations" in found[0].props["AlarmDescription"]


def test_register_event_source_concurrency_is_capped_and_configurable(dev: Synthesis, configured: Synthesis) -> None:
    for syn, expected in ((dev, 10), (configured, 4)):
        ((_, _, mapping),) = syn.resources("AWS::Lambda::EventSourceMapping")
        assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": expected}


def test_reserved_concurrency_is_off_by_default_and_set_per_function_when_configured(
    dev: Synthesis, prod: Synthesis, configured: Synthesis
) -> None:
    for syn in (dev, prod):
        assert not [lid for _, lid, f in _functions(syn) if "ReservedConcurrentExecutions" in f["Properties"]]
    fns = resources(configured, "pipeline", "AWS::Lambda::Function")
    reserved = {lid: f["Properties"]["ReservedConcurrentExecutions"] for lid, f in fns.items()
                if "ReservedConcurrentExecutions" in f["Properties"]}
    assert reserved == {_handler_id(configured, "dispatch"): 1, _handler_id(configured, "register"): 20}


@pytest.mark.parametrize(("env", "policy"), [("dev", "Delete"), ("prod", "Retain")])
def test_operations_key_follows_the_removal_policy(env: str, policy: str, request: pytest.FixtureRequest) -> None:
    syn = _syn(request, env)
    ((_, key),) = resources(syn, "monitoring", "AWS::KMS::Key").items()
    assert key["DeletionPolicy"] == policy and key["UpdateReplacePolicy"] == policy


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_table_is_under_the_data_key_with_recovery_and_protection(
    env: str, request: pytest.FixtureRequest
) -> None:
    # cdk-nag's DynamoDB rules skip TableV2 (AWS::DynamoDB::GlobalTable), so this test is their stand-in.
    syn = _syn(request, env)
    storage = syn.templates["storage"]["Resources"]
    (data_key,) = [lid for lid, r in storage.items() if r["Type"] == "AWS::KMS::Key"]
    tables = syn.resources("AWS::DynamoDB::GlobalTable")
    assert len(tables) == 3 and all(stack == "storage" for stack, _, _ in tables)
    for _, lid, t in tables:
        p = t["Properties"]
        assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}, lid
        for replica in p["Replicas"]:
            assert replica["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [data_key, "Arn"]}, lid
            assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, lid
            assert replica["DeletionProtectionEnabled"] is (env == "prod"), lid
        assert t["DeletionPolicy"] == ("Retain" if env == "prod" else "Delete"), lid


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_checkov_skip_names_a_check_and_gives_a_reason(env: str, request: pytest.FixtureRequest) -> None:
    syn = _syn(request, env)
    skips = [(stack, lid, s) for stack, tpl in syn.templates.items() for lid, r in tpl["Resources"].items()
             for s in r.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert len(skips) > 30
    for stack, lid, s in skips:
        assert s["id"].startswith("CKV_AWS_") and len(s["comment"]) >= 20, (stack, lid, s)


def test_synth_writes_templates_that_checkov_reads(dev: Synthesis) -> None:
    # `make synth` runs checkov on cdk.out/*.template.json; the session synthesis writes the same files.
    names = sorted(p.name for p in Path(dev.outdir).glob("*.template.json"))
    assert names == sorted(f"treelabel-dev-{s}.template.json" for s in ("Storage", "Workforce", "Pipeline",
                                                                         "Monitoring"))
