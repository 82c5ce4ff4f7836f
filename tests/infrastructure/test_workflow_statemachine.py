"""The labeling workflow as synthesized: state machine settings, definition shape, and the IAM it is given."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infrastructure.synth import Synthesis

DAY = 86_400
SYNC = "arn:aws:states:::sagemaker:createLabelingJob.sync"


def _pipeline(dev: Synthesis) -> dict[str, Any]:
    assert dev.findings == [], dev.findings
    return dev.templates["pipeline"]


def _one(tpl: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(lid, r) for lid, r in tpl["Resources"].items() if r["Type"] == rtype]
    return found


def _definition(tpl: dict[str, Any]) -> dict[str, Any]:
    """The ASL with every intrinsic replaced by a ``<LogicalId>`` placeholder."""
    _, sm = _one(tpl, "AWS::StepFunctions::StateMachine")
    parts = sm["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"<{_token(p)}>" for p in parts)
    return dict(json.loads(text))


def _token(node: dict[str, Any]) -> str:
    if "Fn::GetAtt" in node:
        return node["Fn::GetAtt"][0]
    if "Ref" in node:
        return str(node["Ref"])
    return "import"


@pytest.fixture(scope="module")
def definition(dev: Synthesis) -> dict[str, Any]:
    return _definition(_pipeline(dev))


def test_standard_state_machine_with_logging_tracing_and_timeout(dev: Synthesis) -> None:
    tpl = _pipeline(dev)
    _, sm = _one(tpl, "AWS::StepFunctions::StateMachine")
    props = sm["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    # Every event, but not the states' input and output (photo keys, labels) unless monitoring.log_execution_data.
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False
    log_group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    log_group = tpl["Resources"][log_group_id]["Properties"]
    assert log_group["RetentionInDays"] == 30
    # Under the customer-managed data key (imported from the storage stack), not CloudWatch's own key.
    assert "DataKey" in json.dumps(log_group["KmsKeyId"])
    definition = _definition(tpl)
    # Ground Truth's 30-day limit, the review job and the steps fit; Standard workflows allow a year.
    assert 35 * DAY <= definition["TimeoutSeconds"] <= 365 * DAY


def test_jobs_run_on_the_optimized_sync_integration_with_timeouts_below_the_execution(definition: dict) -> None:
    states = definition["States"]
    runs = {n: s for n, s in states.items() if s.get("Resource") == SYNC}
    assert set(runs) == {"Run the automated labeling job", "Run the human labeling job", "Run the expert review job"}
    for name, state in runs.items():
        assert 30 * DAY < state["TimeoutSeconds"] < definition["TimeoutSeconds"], name
        timeout_catch = next(c for c in state["Catch"] if c["ErrorEquals"] == ["States.Timeout"])
        stop = states[timeout_catch["Next"]]
        assert stop["Resource"].endswith(":states:::aws-sdk:sagemaker:stopLabelingJob"), name
        assert any(c["ErrorEquals"] == ["States.ALL"] for c in state["Catch"]), name
        assert state["Retry"] and all("States.ALL" not in r["ErrorEquals"] for r in state["Retry"]), name
        params = state["Parameters"]
        # the role is fixed in the definition, the rest comes from the prepare step's request
        assert params["RoleArn"].startswith("<GroundTruthExecutionRole")
        fields = {k.removesuffix(".$") for k in params}
        assert {"LabelingJobName", "LabelAttributeName", "InputConfig", "OutputConfig", "RoleArn",
                "HumanTaskConfig", "LabelCategoryConfigS3Uri", "StoppingConditions", "Tags"} <= fields, name
        assert ("LabelingJobAlgorithmsConfig" in fields) is (name == "Run the automated labeling job")


def test_every_task_retries_transient_errors_and_catches_the_rest(definition: dict) -> None:
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        assert state.get("Catch"), f"{name} has no Catch"
        if state["Resource"].startswith("<"):  # our Lambdas
            retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert {"Lambda.TooManyRequestsException", "Lambda.ServiceException", "ThrottlingException"} <= retried


def test_states_read_as_sentences_and_all_lead_somewhere(definition: dict) -> None:
    states = definition["States"]
    for name in states:
        assert re.fullmatch(r"[A-Z][a-z]+( [\w'-]+)+\??", name), name
    targets = {definition["StartAt"]}
    for s in states.values():
        targets |= {s.get("Next"), s.get("Default")} | {c["Next"] for c in s.get("Choices", []) + s.get("Catch", [])}
    assert set(states) <= targets  # nothing unreachable
    assert {"The dataset is published", "The batch failed", "The batch is parked"} <= {n for n, s in states.items()
                                                                  if s["Type"] in ("Succeed", "Fail")}


def test_failures_before_the_job_completed_release_the_batch_and_notify(definition: dict) -> None:
    states = definition["States"]
    release = states["Release the batch's photos"]
    assert release["Next"] == "Tell the team the batch failed"
    assert states["Tell the team the batch failed"]["Next"] == "The batch failed"
    for name in ("Prepare the labeling job", "Look up the labeling job", "Stop the labeling job that ran too long"):
        assert any(c["Next"] == "Release the batch's photos" for c in states[name]["Catch"]), name
    choice = states["Has the labeling job finished?"]
    assert choice["Default"] == "Release the batch's photos"


def test_a_stopped_job_with_labels_is_recorded_not_released(definition: dict) -> None:
    # Ground Truth writes what a stopped job labeled to its output (StopLabelingJob): paid labels are recorded.
    states = definition["States"]
    choice = states["Has the labeling job finished?"]
    stopped = next(c for c in choice["Choices"] if c.get("StringEquals") == "Stopped")
    assert stopped["Next"] == "Did the stopped job label any photo?"
    labeled = states["Did the stopped job label any photo?"]
    # a response without counters is checked first (a missing path in a comparison would be a runtime error)
    assert labeled["Choices"] == [
        {"Variable": "$.job.LabelCounters.TotalLabeled", "IsPresent": False, "Next": "Release the batch's photos"},
        {"Variable": "$.job.LabelCounters.TotalLabeled", "NumericGreaterThan": 0, "Next": "Record the labels"}]
    assert labeled["Default"] == "Release the batch's photos"
    # a job stopped for running too long is looked at again (Stopping -> wait -> Stopped) before anything is released
    assert states["Stop the labeling job that ran too long"]["Next"] == "Look up the labeling job"


# Steps that run on labels already paid for, and the step each one parks the batch at.
AFTER_JOB = {"Record the labels": "record", "Select photos for expert review": "review",
             "Prepare the review job": "review", "Look up the review job": "review",
             "Apply the expert review": "review", "Publish the dataset version": "publish"}


def test_failures_after_the_job_are_retried_then_park_the_batch_at_that_step(definition: dict) -> None:
    states = definition["States"]
    for name, step in AFTER_JOB.items():
        state = states[name]
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        entry = states[catch["Next"]]
        assert (entry["Type"], entry["Result"], entry["ResultPath"]) == ("Pass", step, "$.park_step"), name
        assert entry["Next"] == "Park the batch for an operator", name
        if state["Resource"].startswith("<"):  # our Lambdas: any error is retried (last retrier) before parking
            assert state["Retry"][-1]["ErrorEquals"] == ["States.ALL"], name
            assert all("States.ALL" not in r["ErrorEquals"] for r in state["Retry"][:-1]), name
    park = states["Park the batch for an operator"]
    assert park["Next"] == "Tell the team the batch is parked"
    assert states["Tell the team the batch is parked"]["Next"] == "The batch is parked"
    assert states["The batch is parked"] == {**states["The batch is parked"], "Type": "Fail", "Error": "BatchParked"}
    # nothing after the job completed leads to the release (which would send paid photos back to the pool)
    for name in AFTER_JOB:
        assert all(c["Next"] != "Release the batch's photos" for c in states[name]["Catch"]), name


def test_a_resumption_enters_at_the_parked_step(definition: dict) -> None:
    states = definition["States"]
    assert definition["StartAt"] == "Is this a resumption?"
    start = states["Is this a resumption?"]
    assert start["Choices"] == [{"Variable": "$.resume_from", "IsPresent": True, "Next": "Prepare the resumption"}]
    assert start["Default"] == "Prepare the labeling job"
    resume = states["Prepare the resumption"]
    assert resume["ResultPath"] == "$" and resume["Catch"][0]["Next"] == "The batch could not be resumed"
    where = states[resume["Next"]]
    assert {c["StringEquals"]: c["Next"] for c in where["Choices"]} == {
        "record": "Does the batch already have a labeling job?", "review": "Is expert review enabled?",
        "publish": "Publish the dataset version"}


def test_review_stage_sits_between_recording_and_publishing(definition: dict, prod: Synthesis) -> None:
    # dev runs the own engine: training sits between the review and publishing
    states = definition["States"]
    assert states["Record the labels"]["Next"] == "Is expert review enabled?"
    assert states["Apply the expert review"]["Next"] == "Train the model"
    anything = states["Is there anything to review?"]
    assert anything["Choices"][0]["Variable"] == "$.review_selection.review_count"
    # a failed review never blocks training or publishing
    assert states["Note that the review did not finish"]["Next"] == "Train the model"
    # prod (engine groundtruth) publishes right after the review, as before
    gt_states = _definition(prod.templates["pipeline"])["States"]
    assert gt_states["Apply the expert review"]["Next"] == "Publish the dataset version"
    assert gt_states["Note that the review did not finish"]["Next"] == "Publish the dataset version"
    assert "Train the model" not in gt_states and "Note that the model labeled every photo" not in gt_states
    assert "training" not in json.dumps(gt_states["Publish the dataset version"]["Parameters"])
    # a review job that ran and did not finish never blocks what follows; one that exists is adopted
    run = states["Run the expert review job"]
    assert {c["ErrorEquals"][0]: c["Next"] for c in run["Catch"]} == {
        "States.Timeout": "Stop the review job that ran too long", "States.ALL": "Look up the review job"}
    finished = states["Has the review job finished?"]
    assert finished["Default"] == "Note that the review did not finish"
    assert finished["Choices"][0] == {"Variable": "$.review_job.LabelingJobStatus", "StringEquals": "Completed",
                                      "Next": "Apply the expert review"}


def test_engine_states_train_after_review_and_skip_an_empty_human_job(definition: dict) -> None:
    states = definition["States"]
    # a batch the engine labeled completely needs no taxonomists' job
    start = states["Does the batch already have a labeling job?"]
    variables = [c["Variable"] for c in start["Choices"]]
    assert variables[:2] == ["$.prepared.exists", "$.prepared.human_count"]
    no_job = states["Note that the model labeled every photo"]
    assert no_job["Result"] == {"LabelingJobStatus": "NotNeeded"} and no_job["ResultPath"] == "$.job"
    assert no_job["Next"] == "Record the labels"
    # training: its own function, its result goes to publishing, a failure is noted and publishing goes on
    train = states["Train the model"]
    assert train["Next"] == "Publish the dataset version" and train["ResultPath"] == "$.training"
    assert train["Parameters"] == {"batch_id.$": "$.batch_id"}
    (catch,) = train["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == "Note that training failed"
    noted = states["Note that training failed"]
    assert noted["Next"] == "Publish the dataset version" and noted["ResultPath"] == "$.training"
    assert states["Publish the dataset version"]["Parameters"]["training.$"] == "$.training"


def test_train_function_is_sized_for_100k_labels_and_holds_least_privilege(dev: Synthesis) -> None:
    tpl = _pipeline(dev)
    (lid, fn), = [(k, r) for k, r in tpl["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                  and r["Properties"]["Handler"] == "train_model.handler.lambda_handler"]
    assert (fn["Properties"]["MemorySize"], fn["Properties"]["Timeout"]) == (4096, 900)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    stmts = _policy_statements(tpl, role)
    actions = {a for st in stmts for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert not [a for a in actions if "*" in a]
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "dynamodb:Query", "dynamodb:UpdateItem"} <= actions
    assert not {"s3:DeleteObject", "dynamodb:DeleteTable", "dynamodb:Scan", "sagemaker:CreateLabelingJob"} & actions
    listing = next(st for st in stmts if st["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    writes = next(st for st in stmts if "s3:PutObject" in st["Action"])
    resources = writes["Resource"] if isinstance(writes["Resource"], list) else [writes["Resource"]]
    assert all(json.dumps(r).endswith('/models/*"]]}') or str(r).endswith("/models/*") for r in resources), resources


def _policy_statements(tpl: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    out = []
    for res in tpl["Resources"].values():
        if res["Type"] != "AWS::IAM::Policy":
            continue
        roles = [r["Ref"] for r in res["Properties"]["Roles"]]
        if any(r.startswith(role_prefix) for r in roles):
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_state_machine_role_holds_exactly_what_the_sync_integration_needs(dev: Synthesis) -> None:
    tpl = _pipeline(dev)
    stmts = _policy_statements(tpl, "LabelingWorkflowStateMachineRole")
    by_action = {}
    for st in stmts:
        for action in [st["Action"]] if isinstance(st["Action"], str) else st["Action"]:
            by_action[action] = st
    sagemaker = {a for a in by_action if a.startswith("sagemaker:")}
    assert sagemaker == {"sagemaker:CreateLabelingJob", "sagemaker:DescribeLabelingJob", "sagemaker:StopLabelingJob",
                         "sagemaker:AddTags", "sagemaker:ListTags"}
    for action in sagemaker - {"sagemaker:ListTags"}:
        resources = by_action[action]["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        assert resources == ["arn:aws:sagemaker:us-east-1:111111111111:labeling-job/treelabel-dev-*"], action
    # ListTags on "*", as AWS's .sync template gives it (docs/decisions.md, "Executed IAM")
    assert by_action["sagemaker:ListTags"]["Resource"] == "*"
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert pass_role["Resource"]["Fn::GetAtt"][0].startswith("GroundTruthExecutionRole")
    assert by_action["events:PutRule"]["Resource"] == (
        "arn:aws:events:us-east-1:111111111111:rule/StepFunctionsGetEventsForSageMaker*")
    assert not [a for a in by_action if "*" in a]


def test_ground_truth_may_invoke_exactly_the_review_annotation_functions(dev: Synthesis) -> None:
    tpl = _pipeline(dev)
    statements = _policy_statements(tpl, "GroundTruthExecutionRole")
    (stmt,) = [st for st in statements if st["Action"] == "lambda:InvokeFunction"]
    targets = sorted(r["Fn::GetAtt"][0] for r in stmt["Resource"])
    assert [t.rstrip("0123456789ABCDEF") for t in targets] == [
        "LabelingWorkflowReviewPostAnnotation", "LabelingWorkflowReviewPreAnnotation"]


def test_summary_topic_is_encrypted_and_refuses_plain_http(dev: Synthesis) -> None:
    tpl = _pipeline(dev)
    lid, topic = _one(tpl, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    policies = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"
                and {"Ref": lid} in r["Properties"]["Topics"]]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)


def test_prepare_function_gets_the_job_settings_it_builds_requests_from(dev: Synthesis) -> None:
    tpl = _pipeline(dev)
    fns = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
           and r["Properties"]["Handler"] == "prepare_job.handler.lambda_handler"]
    (fn,) = fns
    env = fn["Properties"]["Environment"]["Variables"]
    for var in ("PHOTOS_TABLE", "BATCHES_TABLE", "ARTIFACTS_BUCKET", "GT_ROLE_ARN", "WORKTEAM_ARN",
                "REVIEW_WORKTEAM_ARN", "LABEL_CATEGORIES_URI", "UI_TEMPLATE_URI", "REVIEW_TEMPLATE_URI",
                "PRE_ANNOTATION_ARN", "POST_ANNOTATION_ARN", "KMS_KEY_ARN", "CONFIG_JSON", "JOB_SETTINGS_JSON"):
        assert env.get(var), var
    settings = json.loads(env["JOB_SETTINGS_JSON"])
    assert (settings["review_enabled"], settings["reviewers_per_photo"], settings["workers_per_photo"]) == (True, 2, 3)


def test_publish_may_list_datasets_so_a_missing_latest_is_a_404(dev: Synthesis) -> None:
    # Reading datasets/LATEST before the first version exists must answer 404 (publish expects it); S3 answers 403
    # to a caller without s3:ListBucket. Found by the executed-IAM check (tests/e2e, localrun/iamcheck).
    stmts = _policy_statements(_pipeline(dev), "LabelingWorkflowPublishDatasetServiceRole")
    (listing,) = [s for s in stmts
                  if "s3:ListBucket" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert listing["Resource"] == "arn:aws:s3:::treelabel-dev-artifacts-111111111111-us-east-1"
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": ["datasets/*"]}}
