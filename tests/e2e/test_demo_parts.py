"""The demo's own parts, fast: sample photos (judged by the real intake code), the simulated panel, the event pump."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from urllib.parse import unquote_plus

import boto3
import pytest
from fieldlabel.intake.media import Quarantine, inspect_image
from moto import mock_aws

from localrun.panel import PanelSettings, labeling_plan, review_plan
from localrun.pump import EventPump, is_s3_test_event
from localrun.samples import BROKEN_KINDS, generate
from localrun.wiring import TemplatesMissing, load_templates, schedule_seconds

SPECIES = ["quercus-robur", "fagus-sylvatica", "acer-pseudoplatanus", "betula-pendula"]


def test_samples_are_what_intake_will_make_of_them() -> None:
    s = generate(20, SPECIES, seed=1, heic=2, rotated=3, duplicates=2)
    for p in s.photos:
        if p.kind in BROKEN_KINDS:
            with pytest.raises(Quarantine) as exc:
                inspect_image(p.data)
            assert exc.value.reason == BROKEN_KINDS[p.kind]
            continue
        info = inspect_image(p.data)
        if p.kind != "duplicate":
            assert info.format == ("HEIF" if p.kind == "heic" else "JPEG")
            assert info.orientation == (6 if p.kind == "rotated" else 1)
        assert p.species in SPECIES
    ids = [p.photo_id for p in s.photos if p.species]
    assert len(set(ids)) == len(ids) - s.duplicates == 20
    assert set(s.truth) == set(ids)
    assert generate(20, SPECIES, seed=1, heic=2, rotated=3, duplicates=2).files() == s.files()
    assert generate(20, SPECIES, seed=2).files() != s.files()


def _lines(n: int) -> list[dict[str, str]]:
    return [{"photo-id": f"sha256:{i:064x}", "source-ref": f"s3://b/{i}.jpg"} for i in range(n)]


def test_panel_answers_with_the_configured_accuracy_and_share() -> None:
    lines = _lines(4000)
    truth = {line["photo-id"]: SPECIES[i % len(SPECIES)] for i, line in enumerate(lines)}
    settings = PanelSettings(taxonomists_per_photo=1, taxonomist_accuracy=0.8, machine_share=0.3,
                             machine_accuracy=0.9, seed=4)
    plan = labeling_plan(truth, SPECIES, settings)
    outcomes = [plan(i, line) for i, line in enumerate(lines)]
    kinds = Counter(o.kind for o in outcomes)
    assert kinds["machine"] / len(lines) == pytest.approx(0.3, abs=0.03)

    def accuracy(kind: str) -> float:
        rows = [(o, line) for o, line in zip(outcomes, lines, strict=True) if o.kind == kind]
        return sum(o.label == truth[line["photo-id"]] for o, line in rows) / len(rows)

    assert accuracy("machine") == pytest.approx(0.9, abs=0.03)
    assert accuracy("human") == pytest.approx(0.8, abs=0.03)
    # Reproducible per photo, whatever its position in the manifest.
    assert plan(0, lines[7]) == outcomes[7]


def test_panel_majority_beats_one_taxonomist_and_reviewers_follow_the_truth() -> None:
    lines = _lines(3000)
    truth = {line["photo-id"]: SPECIES[i % len(SPECIES)] for i, line in enumerate(lines)}

    def human_accuracy(per_photo: int) -> float:
        plan = labeling_plan(truth, SPECIES, PanelSettings(taxonomists_per_photo=per_photo, taxonomist_accuracy=0.7,
                                                           machine_share=0.0))
        return sum(plan(i, x).label == truth[x["photo-id"]] for i, x in enumerate(lines)) / len(lines)

    assert human_accuracy(5) > human_accuracy(1) + 0.1
    review = review_plan(truth, SPECIES, PanelSettings(reviewers_per_photo=3, reviewer_accuracy=0.95))
    answers = [review(i, {**x, "label-under-review": {"label": SPECIES[0]}}) for i, x in enumerate(lines)]
    right = sum(a["label"] == truth[x["photo-id"]] for a, x in zip(answers, lines, strict=True)) / len(lines)
    assert right > 0.95
    assert all(a["answers"] == 3 and 0 < a["agreement"] <= 1 for a in answers)


def test_panel_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        PanelSettings(machine_share=1.5)
    with pytest.raises(ValueError):
        PanelSettings(taxonomists_per_photo=0)


class _Lambda:
    """Records invocations; answers like the register function would (partial failures) or fails outright."""

    def __init__(self, fail_ids: set[int] | None = None, crash: bool = False) -> None:
        self.events: list[dict] = []
        self.fail_ids = fail_ids or set()
        self.crash = crash

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict:  # noqa: N803 - boto3 names
        event = json.loads(Payload)
        self.events.append(event)
        if self.crash:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "boom"}')}
        if FunctionName == "dispatch":
            return {"Payload": io.BytesIO(json.dumps({"batches": [{"batch_id": "b1"}]}).encode())}
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                    if json.loads(r["body"])["n"] in self.fail_ids]
        return {"Payload": io.BytesIO(json.dumps({"batchItemFailures": failures}).encode())}


@mock_aws
def test_pump_delivers_sqs_batches_and_keeps_only_reported_failures() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="intake", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    for n in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    lam = _Lambda(fail_ids={3})
    pump = EventPump(sqs=sqs, lambda_client=lam, queue_url=url, register_function="register",
                     dispatch_function="dispatch", batch_size=20, dispatch_every_seconds=3600)
    assert pump.pump_once() == 19  # 20 delivered, the reported one stays
    first = lam.events[0]["Records"]
    assert len(first) == 20
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert {r["eventSource"] for r in first} == {"aws:sqs"} and {r["eventSourceARN"] for r in first} == {arn}
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    assert [json.loads(r.body)["n"] for r in SQSEvent(lam.events[0]).records] == list(range(20))
    lam.fail_ids = set()
    pump.drain()
    time.sleep(1.1)  # the reported message comes back once its visibility timeout has passed
    pump.drain()
    delivered = Counter(json.loads(r["body"])["n"] for e in lam.events for r in e["Records"])
    assert delivered[3] == 2 and all(delivered[n] == 1 for n in range(25) if n != 3)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert pump.tick(force=True) == {"batches": [{"batch_id": "b1"}]}
    assert pump.stats.dispatch_runs == 1


@mock_aws
def test_pump_does_not_count_s3s_test_event_as_an_upload() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="intake", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-26T00:00:00.000Z", "Bucket": "intake"}))
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    lam = _Lambda(fail_ids=set())
    lam_invoke = lam.invoke

    def invoke(FunctionName: str, InvocationType: str, Payload: bytes) -> dict:  # noqa: N803 - boto3 names
        # The test event has no "n"; the register function ignores it and reports no failure for it.
        event = json.loads(Payload)
        event["Records"] = [r for r in event["Records"] if "n" in json.loads(r["body"])]
        return lam_invoke(FunctionName, InvocationType, json.dumps(event).encode())

    lam.invoke = invoke  # type: ignore[method-assign]
    pump = EventPump(sqs=sqs, lambda_client=lam, queue_url=url, register_function="register",
                     dispatch_function="dispatch")
    assert pump.drain() == 4  # every message leaves the queue
    assert pump.stats.test_events == 1 and pump.stats.messages == 4
    assert not is_s3_test_event(json.dumps({"n": 1})) and not is_s3_test_event("not json")


@mock_aws
def test_pump_leaves_the_whole_batch_when_the_function_fails() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="intake", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    pump = EventPump(sqs=sqs, lambda_client=_Lambda(crash=True), queue_url=url, register_function="register",
                     dispatch_function="dispatch")
    assert pump.pump_once() == 0
    assert pump.stats.failed_messages == 5
    time.sleep(1.1)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "5"


def test_wiring_helpers(tmp_path) -> None:
    assert schedule_seconds("rate(5 minutes)") == 300
    assert schedule_seconds("rate(1 hour)") == 3600
    assert schedule_seconds("cron(0 * * * ? *)") is None
    with pytest.raises(TemplatesMissing, match="make synth"):
        load_templates(tmp_path)


@pytest.mark.slow
def test_the_demo_builds_from_a_cloud_assembly_folder(tmp_path) -> None:
    # What `make demo` does with cdk.out: templates through manifest.json, assets from the asset.<hash>.* files,
    # the intake queues and the S3 -> SQS notification as the Storage template defines them.
    from localrun.harness import REGION, WorkflowHarness, synth_templates
    from localrun.wiring import create_intake

    synthesized = synth_templates(outdir=str(tmp_path))
    templates = load_templates(tmp_path)
    assert {k: templates[k] for k in synthesized} == synthesized
    with WorkflowHarness(templates, assets_dir=tmp_path) as h:
        s3 = boto3.client("s3", region_name=REGION)
        published = 0
        for fn in h.functions.values():
            for var in ("LABEL_CATEGORIES_URI", "UI_TEMPLATE_URI", "REVIEW_TEMPLATE_URI", "TAXONOMY_S3_URI"):
                if fn["env"].get(var):
                    bucket, key = fn["env"][var][5:].split("/", 1)
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    assert body == (tmp_path / f"asset.{key}").read_bytes()
                    published += 1
        assert published >= 4
        intake = create_intake(h)
        sqs = boto3.client("sqs", region_name=REGION)
        attrs = sqs.get_queue_attributes(QueueUrl=intake.queue_url, AttributeNames=["All"])["Attributes"]
        storage = templates["storage"]["Resources"]
        (queue,) = [r for r in storage.values()
                    if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]]
        assert attrs["VisibilityTimeout"] == str(queue["Properties"]["VisibilityTimeout"])
        assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == queue["Properties"]["RedrivePolicy"][
            "maxReceiveCount"]
        ddb = boto3.client("dynamodb", region_name=REGION)
        for res in storage.values():
            if res["Type"] == "AWS::DynamoDB::GlobalTable":
                table = ddb.describe_table(TableName=res["Properties"]["TableName"])["Table"]
                assert table["KeySchema"] == res["Properties"]["KeySchema"]
                assert sorted(g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])) == sorted(
                    g["IndexName"] for g in res["Properties"].get("GlobalSecondaryIndexes", []))
        # A photo put under uploads/ reaches the intake queue; one elsewhere does not.
        sqs.purge_queue(QueueUrl=intake.queue_url)
        s3.put_object(Bucket=h.intake_bucket, Key="uploads/x/IMG_1.jpg", Body=b"1")
        s3.put_object(Bucket=h.intake_bucket, Key="labeling-copies/y.jpg", Body=b"2")
        bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=intake.queue_url,
                                                                      MaxNumberOfMessages=10).get("Messages", [])]
        keys = [unquote_plus(r["s3"]["object"]["key"]) for b in bodies for r in b.get("Records", [])]  # URL-encoded
        assert keys == ["uploads/x/IMG_1.jpg"]
        assert intake.batch_size == next(r["Properties"]["BatchSize"] for r in templates["pipeline"]["Resources"]
                                         .values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
