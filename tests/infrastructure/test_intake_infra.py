"""Intake wiring in the synthesized pipeline stack (issue 3): event source, schedule, settings and least privilege."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.synth import Synthesis


def _function(syn: Synthesis, handler: str) -> tuple[str, dict[str, Any]]:
    found = [(lid, r["Properties"]) for _, lid, r in syn.resources("AWS::Lambda::Function")
             if r["Properties"].get("Handler") == f"{handler}.handler.lambda_handler"]
    assert len(found) == 1, handler
    return found[0]


def _role_statements(syn: Synthesis, fn_props: dict[str, Any]) -> list[dict[str, Any]]:
    role = fn_props["Role"]["Fn::GetAtt"][0]
    return [s for _, _, p in syn.resources("AWS::IAM::Policy")
            if any(r.get("Ref") == role for r in p["Properties"]["Roles"])
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _actions(st: dict[str, Any]) -> list[str]:
    a = st["Action"]
    return [a] if isinstance(a, str) else a


def test_register_consumes_the_intake_queue_with_partial_batch_failures(dev: Synthesis) -> None:
    lid, _ = _function(dev, "register")
    (esm,) = [r["Properties"] for _, _, r in dev.resources("AWS::Lambda::EventSourceMapping")
              if r["Properties"]["FunctionName"] == {"Ref": lid}]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["EventSourceArn"] == "arn:aws:sqs:us-east-1:111111111111:treelabel-dev-intake-events"
    assert esm["BatchSize"] == 20 and esm["MaximumBatchingWindowInSeconds"] == 10


def test_queue_visibility_is_six_times_the_register_timeout(dev: Synthesis) -> None:
    _, fn = _function(dev, "register")
    (queue,) = [r["Properties"] for _, _, r in dev.resources("AWS::SQS::Queue")
                if r["Properties"].get("QueueName") == "treelabel-dev-intake-events"]
    assert queue["VisibilityTimeout"] >= 6 * fn["Timeout"]


def test_register_settings_come_from_config(dev: Synthesis) -> None:
    _, fn = _function(dev, "register")
    env = fn["Environment"]["Variables"]
    assert env["BATCH_SIZE"] == "1250" and env["DEDUPE_MODE"] == "content"
    assert env["MAX_PHOTO_BYTES"] == str(200 * 1024 * 1024)
    assert env["INTAKE_BUCKET"] == "treelabel-dev-intake-111111111111-us-east-1"
    assert env["PHOTOS_TABLE"] == "treelabel-dev-photos" and env["BATCHES_TABLE"] == "treelabel-dev-batches"
    assert "Ref" in env["DISPATCH_FUNCTION_NAME"]


def test_register_may_read_uploads_write_copies_tag_but_never_delete(dev: Synthesis) -> None:
    _, fn = _function(dev, "register")
    sts = _role_statements(dev, fn)
    by_action: dict[str, list[Any]] = {}
    for s in sts:
        for a in _actions(s):
            by_action.setdefault(a, []).append(s["Resource"])
    bucket = "arn:aws:s3:::treelabel-dev-intake-111111111111-us-east-1"
    assert by_action["s3:GetObject"] == [f"{bucket}/uploads/*"]
    assert by_action["s3:PutObject"] == [f"{bucket}/labeling-copies/*"]
    assert by_action["s3:PutObjectTagging"] == [f"{bucket}/uploads/*"]
    assert by_action["s3:GetObjectVersionTagging"] == [f"{bucket}/uploads/*"]  # versioned bucket: tags per version
    assert by_action["s3:ListBucket"] == [bucket]  # finds a folder's _folder.json sidecar
    (listing,) = [s for s in sts if "s3:ListBucket" in _actions(s)]
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": ["uploads/*"]}}  # listings under uploads/
    assert not [a for a in by_action if "Delete" in a and a.startswith("s3:")]
    assert "dynamodb:UpdateItem" in by_action and "lambda:InvokeFunction" in by_action


def test_dispatcher_runs_on_a_schedule_and_may_start_only_the_workflow(dev: Synthesis) -> None:
    lid, fn = _function(dev, "dispatch")
    (schedule,) = [r["Properties"] for _, _, r in dev.resources("AWS::Scheduler::Schedule")]
    assert schedule["ScheduleExpression"] == "rate(15 minutes)"
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": [lid, "Arn"]}
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 2
    (sm_lid,) = [x for _, x, _ in dev.resources("AWS::StepFunctions::StateMachine")]
    assert fn["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": sm_lid}
    starts = [s for s in _role_statements(dev, fn) if "states:StartExecution" in _actions(s)]
    assert [s["Resource"] for s in starts] == [{"Ref": sm_lid}]
    env = fn["Environment"]["Variables"]
    assert env["MAX_WAIT_SECONDS"] == str(24 * 3600) and env["SMALL_BATCH_POLICY"] == "human_only"
    assert env["AUTOMATED_LABELING"] == "true" and env["MAX_BATCH_SIZE"] == "100000"
    assert fn["Timeout"] == 900
    scans = [s["Resource"] for s in _role_statements(dev, fn) if "dynamodb:Scan" in _actions(s)]
    assert len(scans) == 1 and "treelabel-dev-batches" in str(scans) and "photos" not in str(scans)


def test_human_only_config_reaches_the_dispatcher(prod: Synthesis) -> None:
    _, fn = _function(prod, "dispatch")
    assert fn["Environment"]["Variables"]["BATCH_SIZE"] == "5000"
    assert fn["Environment"]["Variables"]["MAX_WAIT_SECONDS"] == str(72 * 3600)


def test_only_the_functions_that_embed_get_the_embedding_models_layer(dev: Synthesis) -> None:
    (models,) = [(lid, r["Properties"]) for _, lid, r in dev.resources("AWS::Lambda::LayerVersion")
                 if "ONNX" in r["Properties"].get("Description", "")]
    models_id, props = models
    assert props["LicenseInfo"] == "Apache-2.0"
    with_models = []
    for _, _, r in dev.resources("AWS::Lambda::Function"):
        layers = r["Properties"].get("Layers", [])
        if {"Ref": models_id} in layers:
            with_models.append(r["Properties"]["Handler"])
            assert len(layers) == 2
    # register embeds every photo; with the own engine (dev), prepare embeds what intake could not
    assert sorted(with_models) == ["prepare_job.handler.lambda_handler", "register.handler.lambda_handler"]
