"""Executions stopped by hand or timed out are released by a rule (nothing stays in limbo)."""

from __future__ import annotations

from tests.infrastructure.synth import Synthesis


def test_stopped_or_timed_out_executions_go_to_the_fail_batch_function(dev: Synthesis) -> None:
    (sm,) = [lid for _, lid, _ in dev.resources("AWS::StepFunctions::StateMachine")]
    rules = [r["Properties"] for _, _, r in dev.resources("AWS::Events::Rule")
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["EventPattern"]["detail-type"] == ["Step Functions Execution Status Change"]
    assert rule["EventPattern"]["detail"] == {"stateMachineArn": [{"Ref": sm}], "status": ["ABORTED", "TIMED_OUT"]}
    (target,) = rule["Targets"]
    fail = [(lid, r["Properties"]) for _, lid, r in dev.resources("AWS::Lambda::Function")
            if r["Properties"]["Handler"] == "fail_batch.handler.lambda_handler"]
    assert target["Arn"] == {"Fn::GetAtt": [fail[0][0], "Arn"]}
    assert "<aws.events.event.detail.name>" in str(target["InputTransformer"]) or "$.detail.name" in str(target)
    assert "SUMMARY_TOPIC_ARN" in fail[0][1]["Environment"]["Variables"]
    perms = [p["Properties"] for _, _, p in dev.resources("AWS::Lambda::Permission")
             if p["Properties"]["Principal"] == "events.amazonaws.com"
             and p["Properties"]["FunctionName"] == {"Fn::GetAtt": [fail[0][0], "Arn"]}]
    assert len(perms) == 1
