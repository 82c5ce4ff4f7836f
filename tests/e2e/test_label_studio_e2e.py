"""``labeling.backend: label_studio`` end to end: the ``studio`` environment's synthesized state machine in moto,
with the real handlers and a REAL local Label Studio server (fixture ``label_studio``).

The run states are ``lambda:invoke.waitForTaskToken`` tasks that moto's interpreter executes itself: the real
``ls_submit`` imports the batch into the server and keeps the token; simulated taxonomists and senior reviewers
(localrun/studio_panel.py) answer through the server's API as their own accounts; the server posts its webhooks to a
local relay standing in for the webhook function's URL, and the harness hands them to the real ``ls_webhook``, whose
``SendTaskSuccess`` resumes the execution. What is simulated: the people, the Function URL (the relay), and the
passing of a month for the timeout (the harness hands the waiting state its timeout, as its timer would).
Every AWS call is checked against the templates' IAM (tests/e2e/conftest.py).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from localrun.harness import REGION, WorkflowHarness, config_from_context
from localrun.panel import PanelSettings
from localrun.studio_panel import LabelStudioPanel

pytestmark = pytest.mark.slow

# The lightest committed embedding spec: the engine embeds what intake did not (here: nothing can be read, so every
# photo goes to the taxonomists without a suggestion, as on a chain's first batch).
ENV = {"FIELDLABEL_EMBEDDING_SPEC": "lite0"}
STUDIO = {"env": "studio"}


def _setup(label_studio: Any) -> tuple[Any, list[str], str, int, int]:
    from fieldlabel.labeling.label_studio.client import LabelStudioClient

    config = config_from_context(STUDIO)
    client = LabelStudioClient(label_studio.url, label_studio.token)
    labels = list(config.taxonomy.labels)
    return (client, labels, config.taxonomy.unknown_label, config.labeling.workers_per_photo,
            config.review.reviewers_per_photo)


def _execution(arn: str) -> dict[str, Any]:
    return boto3.client("stepfunctions", region_name=REGION).describe_execution(executionArn=arn)


def _outcomes(responses: list[dict[str, Any]]) -> list[str]:
    import json

    return [c["outcome"] for r in responses for c in json.loads(r["body"])["checked"]]


def test_a_batch_is_labeled_and_reviewed_in_label_studio_and_published(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any) -> None:
    batch_id = "b20261201t080000z-15000001"
    client, labels, unknown, per_photo, reviewers = _setup(label_studio)
    with WorkflowHarness(studio_templates, env_overrides=ENV, label_studio=label_studio) as h:
        ids = h.seed_batch(batch_id, 8, kind="model", write_images=True)
        truth = {pid: labels[i % 3] for i, pid in enumerate(ids)}
        # Taxonomists who disagree now and then, so the review stage has low-confidence labels to check.
        panel = LabelStudioPanel(client, truth, labels, PanelSettings(taxonomist_accuracy=0.7, seed=5))
        arn = h.start_batch(batch_id, photo_count=8, kind="model")

        batch = h.wait_until("the labeling stage submitted", lambda: h.stage_submitted(batch_id))
        project = int(batch["ls_labeling_project"])
        tasks = client.tasks_of_batch(project, batch_id)
        assert sorted(t["data"]["photo_id"] for t in tasks) == sorted(ids) and batch["ls_labeling_expected"] == 8
        assert batch["status"] == "LABELING" and batch["ls_pending"] == {"labeling"}

        # All photos but one answered: every webhook finds the stage incomplete, the execution keeps waiting.
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo, only=set(ids[:-1]))
        early = h.deliver_webhooks()
        assert early and set(_outcomes(early)) == {"incomplete"}
        assert _execution(arn)["status"] == "RUNNING"
        # The last photo's answers complete it: the webhook finishes the stage and resumes the execution, once.
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo, only={ids[-1]})
        late = h.deliver_webhooks()
        assert _outcomes(late).count("finished") == 1, _outcomes(late)

        review = h.wait_until("the review stage submitted", lambda: h.stage_submitted(batch_id, "review"))
        review_project = int(review["ls_review_project"])
        assert review_project != project  # the senior reviewers' own project
        reviewed = client.tasks_of_batch(review_project, batch_id)
        assert 0 < len(reviewed) == review["ls_review_expected"]
        # Each review task shows the label under review as the prediction the picker opens on.
        assert all(t["predictions"] for t in reviewed)
        panel.answer_batch(review_project, batch_id, "review", answers_per_photo=reviewers)
        assert _outcomes(h.deliver_webhooks()).count("finished") == 1

        run = h.wait_for(arn, timeout=600)
        assert run.status == "SUCCEEDED", (run.error, run.cause, run.states)
        for state in ("Run the human labeling job", "Record the labels", "Run the expert review job",
                      "Apply the expert review", "Publish the dataset version"):
            assert state in run.states, state
        assert "Look up the labeling job" not in run.states  # the webhook resumed it; nothing was polled

        photos = h.photos(batch_id)
        assert {p["status"] for p in photos.values()} == {"LABELED"}
        assert {p["label_source"] for p in photos.values()} <= {"human", "expert_review"}
        # The labels are the consolidation of what the people answered in Label Studio.
        out = h.s3_json_lines(run.output["job"]["LabelingJobOutput"]["OutputDatasetS3Uri"])
        consolidated = {x["photo-id"]: x["species"]["label"] for x in out}
        assert set(consolidated) == set(ids)
        for pid, p in photos.items():
            if p["label_source"] == "human":
                assert p["label"] == consolidated[pid]
        assert run.output["review"]["reviewed"] == len(reviewed)
        # The reviewers' reliability is kept per Label Studio account (the answer log finish wrote).
        keys = {i["worker_id"]["S"] for i in
                boto3.client("dynamodb", region_name=REGION).scan(TableName=h.reviewers_table)["Items"]}
        assert any(k.startswith("email:reviewer-") for k in keys), keys
        item = h.batch(batch_id)
        assert item["status"] == "PUBLISHED"
        for stage in ("labeling", "review"):
            assert item[f"ls_{stage}_state"] == "FINISHED"
            assert item[f"ls_{stage}_sent"] == item[f"ls_{stage}_token"]
        assert "ls_pending" not in item
        dataset = h.s3_json_lines(run.output["published"]["dataset"]["manifest_uri"])
        assert len(dataset) == 8

        # A webhook arriving late, and the poll, find nothing left to finish: the batch was finished once.
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo + 1, only={ids[0]})
        assert "finished" not in _outcomes(h.deliver_webhooks())
        assert h.run_ls_poll()["checked"] == 0


def test_a_lost_webhook_only_delays_the_batch_the_poll_finishes_it(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any) -> None:
    batch_id = "b20261201t090000z-15000002"
    client, labels, unknown, per_photo, reviewers = _setup(label_studio)
    with WorkflowHarness(studio_templates, env_overrides=ENV, label_studio=label_studio) as h:
        ids = h.seed_batch(batch_id, 5, kind="model", write_images=True)
        truth = {pid: labels[(i * 2) % 5] for i, pid in enumerate(ids)}
        panel = LabelStudioPanel(client, truth, labels, PanelSettings(taxonomist_accuracy=1.0, seed=9))
        arn = h.start_batch(batch_id, photo_count=5, kind="model")
        batch = h.wait_until("the labeling stage submitted", lambda: h.stage_submitted(batch_id))
        project = int(batch["ls_labeling_project"])
        # A poll before anyone answered changes nothing.
        assert h.run_ls_poll()["incomplete"] == 1
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo)
        assert h.deliver_webhooks(drop=True) == []  # every webhook is lost
        assert _execution(arn)["status"] == "RUNNING"
        polled = h.run_ls_poll()
        assert polled["finished"] == 1 and polled["errors"] == []

        # Unanimous, right answers: nothing is low-confidence; whatever the audit sample picks is reviewed the same
        # way, with the review's webhooks lost too.
        def settled() -> Any:
            if _execution(arn)["status"] != "RUNNING":
                return "ended"
            return h.stage_submitted(batch_id, "review")

        if h.wait_until("the review stage or the end", settled) != "ended":
            item = h.batch(batch_id)
            panel.answer_batch(int(item["ls_review_project"]), batch_id, "review", answers_per_photo=reviewers)
            h.deliver_webhooks(drop=True)
            assert h.run_ls_poll()["finished"] == 1
        run = h.wait_for(arn, timeout=600)
        assert run.status == "SUCCEEDED", (run.error, run.cause, run.states)
        photos = h.photos(batch_id)
        assert {pid: p["label"] for pid, p in photos.items()} == truth
        assert h.webhook_responses == []  # the webhook function never ran


def test_a_batch_that_times_out_in_label_studio_is_withdrawn_and_released(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any) -> None:
    batch_id = "b20261201t100000z-15000003"
    client, labels, unknown, per_photo, reviewers = _setup(label_studio)
    with WorkflowHarness(studio_templates, env_overrides=ENV, label_studio=label_studio) as h:
        ids = h.seed_batch(batch_id, 6, kind="model", write_images=True)
        truth = {pid: labels[i % 4] for i, pid in enumerate(ids)}
        panel = LabelStudioPanel(client, truth, labels, PanelSettings(seed=2))
        arn = h.start_batch(batch_id, photo_count=6, kind="model")
        batch = h.wait_until("the labeling stage submitted", lambda: h.stage_submitted(batch_id))
        project = int(batch["ls_labeling_project"])
        answered = set(ids[:2])
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo, only=answered)
        h.deliver_webhooks()

        # A month passes without the other four photos: the run state times out.
        h.expire_task_token(str(batch["ls_labeling_token"]))
        run = h.wait_for(arn, timeout=300)
        assert run.status == "FAILED" and run.error == "BatchFailed", (run.error, run.states)
        for state in ("Stop the labeling job that ran too long", "Release the batch's photos"):
            assert state in run.states, state
        assert "Record the labels" not in run.states

        # Nobody can label the batch's photos any more: the unanswered tasks are gone, the answered ones stay
        # (their answers are kept, never recorded: the batch failed).
        left = client.tasks_of_batch(project, batch_id)
        assert {t["data"]["photo_id"] for t in left} == answered
        assert all(t["annotations"] for t in left)
        photos = h.photos(batch_id)
        assert {p["status"] for p in photos.values()} == {"BACKOFF"}
        assert all(p["attempts"] == 1 and "label" not in p for p in photos.values())
        item = h.batch(batch_id)
        assert item["status"] == "FAILED" and item["ls_labeling_state"] == "STOPPED"
        assert run.output is None
        # A late answer and its webhook, and the poll: the stopped batch is never finished.
        extra = client.tasks_of_batch(project, batch_id)[0]
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo + 1,
                           only={extra["data"]["photo_id"]})
        assert "finished" not in _outcomes(h.deliver_webhooks())
        assert h.run_ls_poll()["checked"] == 0
        assert {p["status"] for p in h.photos(batch_id).values()} == {"BACKOFF"}


def test_the_webhook_refuses_requests_without_the_shared_secret(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any) -> None:
    with WorkflowHarness(studio_templates, env_overrides=ENV, label_studio=label_studio) as h:
        assert h.post_webhook({})["statusCode"] == 401
        assert h.post_webhook({"X-Fieldlabel-Webhook-Secret": "not-the-secret-at-all"})["statusCode"] == 401
        ok = h.post_webhook({"X-Fieldlabel-Webhook-Secret": h.webhook_secret_value})
        assert ok["statusCode"] == 200


def test_a_parked_batch_resumes_from_its_finished_label_studio_stage(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any) -> None:
    from fieldlabel.labeling.lifecycle import request_resume

    batch_id = "b20261201t110000z-15000004"
    client, labels, unknown, per_photo, reviewers = _setup(label_studio)
    with WorkflowHarness(studio_templates, env_overrides=ENV, label_studio=label_studio) as h:
        ids = h.seed_batch(batch_id, 4, kind="model", write_images=True)
        truth = {pid: labels[i % 2] for i, pid in enumerate(ids)}
        panel = LabelStudioPanel(client, truth, labels, PanelSettings(taxonomist_accuracy=1.0, seed=4))

        def broken(event: dict[str, Any]) -> None:
            raise RuntimeError("registry unavailable")

        h.faults["process_output"] = broken
        arn = h.start_batch(batch_id, photo_count=4, kind="model")
        batch = h.wait_until("the labeling stage submitted", lambda: h.stage_submitted(batch_id))
        project = int(batch["ls_labeling_project"])
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo)
        assert _outcomes(h.deliver_webhooks()).count("finished") == 1
        run = h.wait_for(arn, timeout=300)
        # Recording failed after the answers were in: the batch is parked (its labels are paid for), not released.
        assert (run.status, run.error) == ("FAILED", "BatchParked"), (run.error, run.states)
        assert (h.batch(batch_id)["status"], h.batch(batch_id)["parked_step"]) == ("PARKED", "record")
        assert {p["status"] for p in h.photos(batch_id).values()} == {"BATCHED"}

        # When the operator resumes it (`fieldlabel resume`), the finished stage is looked up, not submitted again.
        del h.faults["process_output"]
        started = request_resume(boto3.client("dynamodb", region_name=REGION),
                                 boto3.client("stepfunctions", region_name=REGION), batches_table=h.batches_table,
                                 state_machine_arn=h.state_machine_arn, batch_id=batch_id,
                                 now_iso="2026-12-01T12:00:00.000000Z")

        def review_or_end() -> Any:
            if _execution(started["execution_arn"])["status"] != "RUNNING":
                return "ended"
            return h.stage_submitted(batch_id, "review")

        if h.wait_until("the review stage or the end", review_or_end) != "ended":
            panel.answer_batch(int(h.batch(batch_id)["ls_review_project"]), batch_id, "review",
                               answers_per_photo=reviewers)
            h.deliver_webhooks()
        resumed = h.wait_for(started["execution_arn"], timeout=300)
        assert resumed.status == "SUCCEEDED", (resumed.error, resumed.cause, resumed.states)
        assert "Look up the labeling job" in resumed.states and "Run the human labeling job" not in resumed.states
        assert {pid: p["label"] for pid, p in h.photos(batch_id).items()} == truth
        # Still one task per photo in the taxonomists' project: nothing was imported (or labeled) twice.
        assert sorted(t["data"]["photo_id"] for t in client.tasks_of_batch(project, batch_id)) == sorted(ids)
        assert h.batch(batch_id)["status"] == "PUBLISHED"


def _without_send_task_success(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    import copy

    from localrun.iamcheck.evaluate import as_list

    copied = copy.deepcopy(templates)
    removed = 0
    for res in copied["pipeline"]["Resources"].values():
        if res["Type"] != "AWS::IAM::Policy":
            continue
        doc = res["Properties"]["PolicyDocument"]
        kept = [s for s in doc["Statement"] if "states:SendTaskSuccess" not in as_list(s["Action"])]
        removed += len(doc["Statement"]) - len(kept)
        doc["Statement"] = kept
    assert removed == 2, "the webhook's and the poll's policies each hold one SendTaskSuccess statement"
    return copied


def test_the_iam_check_sees_the_label_studio_functions_resume_executions_and_read_secrets(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any) -> None:
    from localrun.iamcheck.check import IamCheck

    batch_id = "b20261201t120000z-15000005"
    client, labels, unknown, per_photo, reviewers = _setup(label_studio)
    account = WorkflowHarness(studio_templates).account
    check = IamCheck(studio_templates, account)
    with check.recorder() as rec, WorkflowHarness(studio_templates, env_overrides=ENV, label_studio=label_studio) as h:
        ids = h.seed_batch(batch_id, 2, kind="model", write_images=True)
        panel = LabelStudioPanel(client, {pid: labels[0] for pid in ids}, labels,
                                 PanelSettings(taxonomist_accuracy=1.0, reviewer_accuracy=1.0, seed=1))
        arn = h.start_batch(batch_id, photo_count=2, kind="model")
        project = int(h.wait_until("the labeling stage submitted", lambda: h.stage_submitted(batch_id))
                      ["ls_labeling_project"])
        panel.answer_batch(project, batch_id, "labeling", answers_per_photo=per_photo)
        assert _outcomes(h.deliver_webhooks()).count("finished") == 1

        def review_or_end() -> Any:
            return "ended" if _execution(arn)["status"] != "RUNNING" else h.stage_submitted(batch_id, "review")

        if h.wait_until("the review stage or the end", review_or_end) != "ended":
            panel.answer_batch(int(h.batch(batch_id)["ls_review_project"]), batch_id, "review",
                               answers_per_photo=reviewers)
            h.deliver_webhooks()
        assert h.wait_for(arn, timeout=300).status == "SUCCEEDED"
        webhook = h.function_named("ls_webhook")

    ok = check.evaluate(rec)
    assert not ok.denied, ok.message()
    actions = {(c.principal.label, f"{c.service}.{c.operation}") for c in rec.calls if c.principal is not None}
    assert (f"function {webhook}", "stepfunctions.SendTaskSuccess") in actions
    assert (f"function {webhook}", "secretsmanager.GetSecretValue") in actions
    # Without the grant, the webhook's SendTaskSuccess is reported: on the state machine, by the webhook's role.
    denied = IamCheck(_without_send_task_success(studio_templates), account).evaluate(rec).denied
    assert [(d.access.action, d.access.resource) for d in denied] == [
        ("states:SendTaskSuccess", f"arn:aws:states:us-east-1:{account}:stateMachine:treelabel-studio-labeling")]
    assert denied[0].access.principal.label == f"function {webhook}"
