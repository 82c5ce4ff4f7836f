"""``fieldlabel status`` against moto: the pending pool, running batches and jobs, failures, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber
from fieldlabel.common.clock import frozen, iso
from fieldlabel_cli.context import AppContext
from moto import mock_aws
from operator_fixtures import BATCHES, make_world

# A fixed instant, pinned into the command's clock by the world fixture: ages are exact on any date and under load.
NOW = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
B_RUN = "b20261126t060000z-0000aaaa"
B_REV = "b20261125t060000z-0000bbbb"
B_OLD_FAIL = "b20261120t060000z-0000cccc"
B_NEW_FAIL = "b20261124t060000z-0000dddd"
B_PARKED = "b20261123t060000z-0000ffff"


@pytest.fixture
def world(tmp_path):
    with mock_aws(), frozen(NOW):
        w = make_world(tmp_path)
        # 3 pending (oldest 2 days old), 2 in a running batch, 4 labeled, 1 parked, 1 quarantined
        for i, age_h in enumerate((48, 5, 1)):
            w.put_photo(f"sha256:p{i}", "PENDING", iso(NOW - timedelta(hours=age_h)))
        for i in range(2):
            w.put_photo(f"sha256:b{i}", "BATCHED", iso(NOW - timedelta(days=3)), batch_id=B_RUN)
        for i in range(4):
            w.put_photo(f"sha256:l{i}", "LABELED", iso(NOW - timedelta(days=6)), batch_id=B_OLD_FAIL)
        w.put_photo("sha256:k0", "PARKED", iso(NOW - timedelta(days=9)), park_reason="LabelingJobFailed")
        w.put_photo("sha256:q0", "QUARANTINED", iso(NOW - timedelta(days=9)), quarantine_reason="not_an_image")
        # 1 released after a failed attempt, backing off for 2 more hours
        w.put_photo("sha256:w0", "BACKOFF", iso(NOW - timedelta(days=4)), attempts=1,
                    due_at=iso(NOW + timedelta(hours=2)), last_batch_id=B_NEW_FAIL)
        w.put_batch(B_RUN, "LABELING", kind="human_only", photo_count=2, created_at=iso(NOW - timedelta(hours=3)),
                    job_name=f"treelabel-{B_RUN}", execution_arn="arn:aws:states:us-east-1:1:execution:sm:x")
        w.put_batch(B_REV, "REVIEWING", kind="automated", photo_count=1300, created_at=iso(NOW - timedelta(days=1)),
                    job_name=f"treelabel-{B_REV}", review_job_name=f"treelabel-{B_REV}-review")
        w.put_batch(B_OLD_FAIL, "FAILED", kind="automated", photo_count=1250, updated_at="2026-11-20T09:00:00Z",
                    failure_reason="States.Timeout: old")
        w.put_batch(B_NEW_FAIL, "FAILED", kind="human_only", photo_count=40, updated_at="2026-11-24T09:00:00Z",
                    failure_reason="LabelingJobFailed: ClientError: workteam not found")
        w.put_batch("b20261119t060000z-0000eeee", "PUBLISHED", dataset_version="v000001-b20261119t060000z-0000eeee",
                    updated_at="2026-11-19T12:00:00Z")
        w.put_batch("#pending-counter", "-", pending=3)
        w.put_batch(B_PARKED, "PARKED", kind="human_only", photo_count=30, parked_step="publish",
                    parked_at="2026-11-23T10:00:00Z", park_reason="RuntimeError: S3 unavailable",
                    labeling_stats={"labeled": 30})
        # one stored model per label set; status shows the most recent
        w.put_batch("#model#0123456789abcdef", "-", model_arn="arn:aws:sagemaker:us-east-1:1:model/m1",
                    job_name="j1", source_batch_id="b20261119t060000z-0000eeee",
                    completed_at="2026-11-19T11:00:00Z", taxonomy_hash="sha256:0123456789abcdef00")
        w.put_batch("#model#fedcba9876543210", "-", model_arn="arn:aws:sagemaker:us-east-1:1:model/m0",
                    job_name="j0", source_batch_id="b20261101t060000z-0000eeee",
                    completed_at="2026-11-01T11:00:00Z", taxonomy_hash="sha256:fedcba987654321000")
        yield w


def test_status_shows_pool_running_batches_and_failures(world, cli):
    r = cli("status", "--outputs", world.outputs)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert "Pending:    3 photo(s)" in out and "(2 d 0 h ago)" in out
    assert "3 pending, 2 in batches, 4 labeled, 1 parked, 1 quarantined" in out
    assert "Dispatcher: idle" in out and "arn:aws:sagemaker:us-east-1:1:model/m1" in out
    assert "Published:  1 batch(es); latest b20261119t060000z-0000eeee" in out
    # running batches, oldest first, with the job of their current phase
    assert out.index(B_REV) < out.index(B_RUN)
    assert f"treelabel-{B_REV}-review" in out and f"treelabel-{B_RUN}" in out
    # failures, newest first, with reasons
    # photos backing off, and the parked batch with the command that resumes it
    due = iso(NOW + timedelta(hours=2))
    assert f"Backing off: 1 photo(s) released after a failed attempt, pending again from {due}" in out
    assert f"{B_PARKED}  at publish" in out and "S3 unavailable" in out and "fieldlabel resume BATCH_ID" in out
    assert "Last failures (2 of 2)" in out
    assert out.index(B_NEW_FAIL) < out.index(B_OLD_FAIL)
    assert "workteam not found" in out


def test_status_json_is_complete_and_control_items_are_not_batches(world, cli):
    r = cli("status", "--outputs", world.outputs, "--json", "--failures", "1")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["pending"]["count"] == 3 and data["pending"]["counter"] == 3
    assert data["pending"]["oldest_age_seconds"] == 48 * 3600
    assert data["photos"] == {"PENDING": 3, "BACKOFF": 1, "BATCHED": 2, "LABELED": 4, "PARKED": 1,
                              "QUARANTINED": 1}
    assert data["backoff_next_due_at"] == iso(NOW + timedelta(hours=2))
    assert [(b["batch_id"], b["parked_step"]) for b in data["parked"]] == [(B_PARKED, "publish")]
    assert data["model"]["model_arn"].endswith("/m1") and data["model"]["taxonomy_hash"].startswith("sha256:0123")
    assert [b["batch_id"] for b in data["running"]] == [B_REV, B_RUN]
    assert data["running"][1]["status"] == "LABELING" and data["running"][1]["photo_count"] == 2
    assert [f["batch_id"] for f in data["failures"]] == [B_NEW_FAIL] and data["failed_batches"] == 2
    assert data["dispatcher"]["running"] is False
    assert not any(b["batch_id"].startswith("#") for b in data["running"] + data["failures"])


def test_status_reports_a_dispatcher_holding_its_lease(world, cli):
    world.put_batch("#dispatch-lease", "-", owner="run-1", expires_at=NOW.timestamp() + 200)
    r = cli("status", "--outputs", world.outputs, "--json")
    assert r.json()["dispatcher"]["running"] is True


def test_status_jobs_reads_progress_from_sagemaker(world, cli, monkeypatch):
    # moto has no labeling jobs; a botocore Stubber checks our requests and the responses against the service model
    original = AppContext.client
    stubs = []

    def client(self, service, **kw):
        c = original(self, service, **kw)
        if service == "sagemaker":
            stub = Stubber(c)
            stub.add_response("describe_labeling_job", _job(f"treelabel-{B_REV}-review", "InProgress", 30, 10, 0),
                              {"LabelingJobName": f"treelabel-{B_REV}-review"})
            stub.add_client_error("describe_labeling_job", "ResourceNotFound", "job gone",
                                  expected_params={"LabelingJobName": f"treelabel-{B_RUN}"})
            stub.activate()
            stubs.append(stub)
        return c

    monkeypatch.setattr(AppContext, "client", client)
    r = cli("status", "--outputs", world.outputs, "--jobs")
    assert r.code == 0, r.stderr
    assert "[InProgress: 40 labeled (30 human, 10 machine), 5 to go]" in r.stdout
    assert "[ResourceNotFound: job gone]" in r.stdout
    stubs[0].assert_no_pending_responses()


def _job(name, status, human, machine, failed):
    now = datetime(2026, 11, 26, tzinfo=UTC)
    return {
        "LabelingJobStatus": status, "LabelingJobName": name, "LabelAttributeName": "species-review",
        "LabelCounters": {"TotalLabeled": human + machine, "HumanLabeled": human, "MachineLabeled": machine,
                          "FailedNonRetryableError": failed, "Unlabeled": 5},
        "CreationTime": now, "LastModifiedTime": now, "JobReferenceCode": "x",
        "LabelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{name}",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://a/b"}}},
        "OutputConfig": {"S3OutputPath": "s3://a/o/"}, "RoleArn": "arn:aws:iam::123456789012:role/r",
        "HumanTaskConfig": {"WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t",
                            "UiConfig": {"UiTemplateS3Uri": "s3://a/t.html"}, "TaskTitle": "t",
                            "TaskDescription": "d", "NumberOfHumanWorkersPerDataObject": 1,
                            "TaskTimeLimitInSeconds": 300, "PreHumanTaskLambdaArn": "arn:aws:lambda:x",
                            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": "arn:aws:lambda:y"}},
    }


def test_empty_registry(tmp_path, cli):
    with mock_aws():
        w = make_world(tmp_path)
        r = cli("status", "--outputs", w.outputs)
    assert r.code == 0, r.stderr
    assert "Pending:    none" in r.stdout and "Running batches: none" in r.stdout and "Failures: none" in r.stdout
    assert "Model:      none yet" in r.stdout


def test_unknown_table_is_one_line_and_exit_1(world, cli):
    r = cli("status", "--outputs", world.outputs, "--photos-table", "no-such-table")
    assert r.code == 1
    assert r.stderr.strip() == ("fieldlabel: error: table 'no-such-table' not found (check --photos-table, "
                                "--outputs or --stack-prefix, and --region)")
    r = cli("status", "--outputs", world.outputs, "--batches-table", "nope")
    assert r.code == 1 and "table 'nope' not found (check --batches-table" in r.stderr


def test_missing_config_names_the_output_and_option(tmp_path, cli):
    outputs = tmp_path / "o.json"
    outputs.write_text(json.dumps({"IntakeBucketName": "x"}))
    r = cli("status", "--outputs", str(outputs))
    assert r.code == 1 and "Traceback" not in r.stderr
    assert "PhotosTableName is not in outputs file" in r.stderr and "--photos-table" in r.stderr
    r = cli("status", "--outputs", str(tmp_path / "missing.json"))
    assert r.code == 2 and "outputs file not found" in r.stderr


def test_bad_option_is_a_usage_error(world, cli):
    assert cli("status", "--outputs", world.outputs, "--failures", "-1").code == 2
    assert cli("status", "--failures", "many").code == 2


def test_missing_stacks_mention_the_pipeline_stack_too(cli):
    with mock_aws():
        r = cli("status", "--stack-prefix", "nothing-here")
    assert r.code == 1
    assert "no stack named nothing-here-Storage or nothing-here-Workforce or nothing-here-Pipeline" in r.stderr


def test_table_names_from_stack_outputs(tmp_path, cli):
    with mock_aws():
        w = make_world(tmp_path)
        import boto3

        cfn = boto3.client("cloudformation", region_name="us-east-1")
        tpl = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
               "Outputs": {"PhotosTableName": {"Value": "fl-photos"}, "BatchesTableName": {"Value": BATCHES}}}
        cfn.create_stack(StackName="demo-Storage", TemplateBody=json.dumps(tpl))
        w.put_photo("sha256:x", "PENDING", iso(NOW))
        r = cli("status", "--stack-prefix", "demo", "--json")
    assert r.code == 0, r.stderr
    assert r.json()["pending"]["count"] == 1


def test_aws_region_variable_is_honoured(tmp_path, cli, monkeypatch):
    # botocore itself reads only AWS_DEFAULT_REGION; the demo's demo.env and the error message say AWS_REGION
    with mock_aws():
        w = make_world(tmp_path)
        w.put_photo("sha256:x", "PENDING", iso(NOW))
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.delenv("AWS_REGION", raising=False)
        r = cli("status", "--outputs", w.outputs, "--json")
        assert r.code == 1 and "no AWS region configured" in r.stderr
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        r = cli("status", "--outputs", w.outputs, "--json")
    assert r.code == 0, r.stderr
    assert r.json()["pending"]["count"] == 1
