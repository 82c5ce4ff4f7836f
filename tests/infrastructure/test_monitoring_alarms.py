"""The operations alarms (issue 7): each exists with its metric, threshold, comparison and the operations topic.

Alarms are found by the metric they read, never by logical id; references to the pipeline are resolved through its
exports back to the function or state machine they name.
"""

from __future__ import annotations

import re

import pytest

from tests.infrastructure.monitoring_helpers import (
    alarms,
    alarms_on,
    config_of,
    one,
    pipeline_functions,
    resolve,
    resources,
    service_of,
    topic_ref,
)
from tests.infrastructure.synth import Synthesis

ENVS = ["dev", "prod"]


@pytest.fixture(params=ENVS)
def syn(request: pytest.FixtureRequest) -> tuple[str, Synthesis]:
    return request.param, request.getfixturevalue(request.param)


def _sole(found: list) -> object:
    assert len(found) == 1, f"expected exactly one alarm, found {[a.logical_id for a in found]}"
    return found[0]


def _notifies_topic_only(syn: Synthesis, alarm) -> None:
    assert alarm.props["AlarmActions"] == [topic_ref(syn)]
    assert alarm.props.get("ActionsEnabled", True) is True


def _dlq_name(syn: Synthesis) -> str:
    """The queue the intake queue's redrive policy sends poison messages to, read from the storage template."""
    queues = resources(syn, "storage", "AWS::SQS::Queue")
    redriving = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert len(redriving) == 1
    target = redriving[0]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return queues[target]["Properties"]["QueueName"]


def test_dead_letter_messages_alarm(syn: tuple[str, Synthesis]) -> None:
    _, s = syn
    alarm = _sole(alarms_on(s, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=_dlq_name(s)))
    assert alarm.threshold == 0 and alarm.comparison == "GreaterThanThreshold"
    assert alarm.metrics[0].stat == "Maximum"
    _notifies_topic_only(s, alarm)


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut"])
def test_failed_and_timed_out_executions_alarm(syn: tuple[str, Synthesis], metric: str) -> None:
    _, s = syn
    sm_id, _ = one(s, "pipeline", "AWS::StepFunctions::StateMachine")
    alarm = _sole(alarms_on(s, "AWS/States", metric, StateMachineArn={"Ref": sm_id}))
    assert alarm.threshold == 0 and alarm.comparison == "GreaterThanThreshold"
    assert alarm.metrics[0].stat == "Sum"
    assert alarm.props["EvaluationPeriods"] == 1 and alarm.props["DatapointsToAlarm"] == 1
    _notifies_topic_only(s, alarm)


def test_every_pipeline_function_has_an_errors_alarm(syn: tuple[str, Synthesis]) -> None:
    _, s = syn
    functions = pipeline_functions(s)
    assert len(functions) >= 8  # the workflow's and the review stage's functions at least
    for handler_dir, (lid, _) in functions.items():
        alarm = _sole(alarms_on(s, "AWS/Lambda", "Errors", FunctionName={"Ref": lid}))
        assert alarm.threshold == 0 and alarm.comparison == "GreaterThanThreshold", handler_dir
        assert alarm.metrics[0].stat == "Sum"
        _notifies_topic_only(s, alarm)


def test_intake_functions_are_monitored(dev: Synthesis) -> None:
    functions = pipeline_functions(dev)
    if "register" not in functions:
        pytest.skip("the pipeline stack does not create the intake functions yet")
    for handler_dir in ("register", "dispatch"):
        lid, _ = functions[handler_dir]
        assert alarms_on(dev, "AWS/Lambda", "Errors", FunctionName={"Ref": lid})


def _evaluate(expression: str, **values: float) -> float:
    """Evaluate the IF(cond, a, b) metric-math form the quarantine alarm uses, with plain arithmetic inside."""
    m = re.fullmatch(r"IF\((.+?), (.+), (.+)\)", expression)
    assert m, expression
    cond, yes, no = (compile(part, "<expr>", "eval") for part in m.groups())
    return eval(yes if eval(cond, {}, values) else no, {}, values)  # noqa: S307 - our own synthesized expression


def test_quarantine_rate_alarm(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    config = config_of(env)
    found = [a for a in alarms(s) if a.expression is not None]
    alarm = _sole(found)
    by_name = {m.name: m for m in alarm.metrics}
    assert set(by_name) == {"PhotosRegistered", "PhotosQuarantined"}
    if "register" in pipeline_functions(s):
        service = service_of(s, "register")
    else:  # until the intake is wired, the service name LambdaKit would give it
        service = f"{config.project}-register"
    for m in by_name.values():
        assert m.namespace == "FieldLabel" and m.dimensions == {"service": service} and m.stat == "Sum"
    assert alarm.threshold == config.monitoring.quarantine_rate_threshold
    assert alarm.comparison == "GreaterThanThreshold"
    r, q = by_name["PhotosRegistered"].id, by_name["PhotosQuarantined"].id
    # quarantined / (registered + quarantined) once there are enough photos to call it a rate
    assert _evaluate(alarm.expression, **{r: 80, q: 20}) == pytest.approx(0.2)
    assert _evaluate(alarm.expression, **{r: 0, q: 50}) == pytest.approx(1.0)
    assert _evaluate(alarm.expression, **{r: 2, q: 3}) == 0
    _notifies_topic_only(s, alarm)


def test_batch_waiting_too_long_alarm(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    config = config_of(env)
    service = (service_of(s, "dispatch") if "dispatch" in pipeline_functions(s) else f"{config.project}-dispatch")
    alarm = _sole(alarms_on(s, "FieldLabel", "OldestPendingAgeSeconds", service=service))
    max_wait = config.batching.max_wait_hours * 3600
    interval = config.batching.dispatch_every_minutes * 60
    # the configured maximum plus slack for the dispatcher's schedule, not more than two runs' worth
    assert alarm.threshold == max_wait + 2 * interval
    assert alarm.comparison == "GreaterThanThreshold"
    assert alarm.metrics[0].stat == "Maximum" and alarm.metrics[0].period == interval
    _notifies_topic_only(s, alarm)


def test_audit_contradicting_the_engines_bound_alarms_with_the_own_engine_only(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    config = config_of(env)
    found = alarms_on(s, "FieldLabel", "MachineLabelAuditContradictsBound", service=service_of(s, "publish_dataset"))
    if config.labeling.engine != "model":
        assert found == []
        return
    alarm = _sole(found)
    # publish emits 1 when the audit's lower bound on the error exceeds alpha, 0 when it does not
    assert alarm.threshold == 1 and alarm.comparison == "GreaterThanOrEqualToThreshold"
    assert alarm.metrics[0].stat == "Maximum"
    assert alarm.props["TreatMissingData"] == "notBreaching"
    _notifies_topic_only(s, alarm)


def test_no_other_alarms_and_all_notify_the_topic(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    every = alarms(s)
    # intake DLQ + async failures + failed + timed out + quarantine rate + waiting too long + one per function
    # (+ the engine's audit)
    engine = config_of(env).labeling.engine == "model"
    assert len(every) == 6 + len(pipeline_functions(s)) + engine
    for a in every:
        _notifies_topic_only(s, a)
        assert a.props["AlarmDescription"].strip(), a.logical_id
        assert "docs/operations.md" in a.props["AlarmDescription"], a.logical_id


def test_failed_or_stopped_labeling_jobs_go_to_the_topic(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    config = config_of(env)
    rule_id, rule = one(s, "monitoring", "AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Ground Truth Labeling Job State Change"]
    assert sorted(pattern["detail"]["LabelingJobStatus"]) == ["Failed", "Stopped"]
    prefix = pattern["resources"][0]["prefix"]
    assert prefix == f"arn:aws:sagemaker:{config.region}:{config.account}:labeling-job/{config.project}-"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == topic_ref(s)
    # EventBridge may publish only for this rule
    _, policy = one(s, "monitoring", "AWS::SNS::TopicPolicy")
    events = [st for st in policy["Properties"]["PolicyDocument"]["Statement"]
              if st["Effect"] == "Allow" and st["Principal"] == {"Service": "events.amazonaws.com"}]
    assert len(events) == 1
    assert events[0]["Action"] == "sns:Publish"
    assert events[0]["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}


def test_topic_is_encrypted_and_publishers_may_use_its_key(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    config = config_of(env)
    key_id, key = one(s, "monitoring", "AWS::KMS::Key")
    _, topic = one(s, "monitoring", "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com"):
        grants = [st for st in statements if st["Effect"] == "Allow" and service in str(st["Principal"])]
        assert len(grants) == 1, service
        assert sorted(grants[0]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    _, policy = one(s, "monitoring", "AWS::SNS::TopicPolicy")
    doc = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for st in doc)
    for service in ("cloudwatch.amazonaws.com", "budgets.amazonaws.com"):
        (st,) = [st for st in doc if st["Effect"] == "Allow" and st["Principal"] == {"Service": service}]
        assert st["Action"] == "sns:Publish"
        assert st["Condition"]["StringEquals"] == {"aws:SourceAccount": config.account}


def test_alarm_emails_subscribe_to_the_topic(syn: tuple[str, Synthesis]) -> None:
    env, s = syn
    config = config_of(env)
    subs = resources(s, "monitoring", "AWS::SNS::Subscription").values()
    assert sorted(x["Properties"]["Endpoint"] for x in subs) == sorted(config.monitoring.alarm_emails)
    for x in subs:
        assert x["Properties"]["Protocol"] == "email" and x["Properties"]["TopicArn"] == topic_ref(s)


def test_prod_has_an_alarm_email_and_dev_has_none() -> None:
    # keeps test_alarm_emails_subscribe_to_the_topic from passing vacuously in both environments
    assert config_of("prod").monitoring.alarm_emails and not config_of("dev").monitoring.alarm_emails


def test_resolve_follows_exports_to_the_pipeline(dev: Synthesis) -> None:
    imports = [m.dimensions for a in alarms(dev) for m in a.metrics if "FunctionName" in m.dimensions]
    assert imports and all(set(d["FunctionName"]) == {"Ref"} for d in imports)
    assert resolve(dev, "plain") == "plain"
