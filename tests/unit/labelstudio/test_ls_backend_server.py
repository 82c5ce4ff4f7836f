"""The Label Studio backend against a REAL Label Studio server (fixture ``label_studio``, localrun/labelstudio.py).

Simulated taxonomists are real accounts of the server; their answers are submitted through its API on their behalf
(``completed_by``), which is what the server records when they press Submit in the browser (tests/browser covers
that path). S3 and DynamoDB are moto.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fieldlabel.labeling.label_studio.backend import ImageStorage, LabelStudioBackend, LabelStudioSettings
from fieldlabel.labeling.label_studio.client import PAGE_SIZE, LabelStudioApiError, LabelStudioClient
from fieldlabel.labeling.label_studio.completion import batch_status, finish_batch, stop_batch
from fieldlabel.labeling.label_studio.labeling_config import picker_result
from fieldlabel.labeling.label_studio.webhook import verify_webhook, webhook_headers
from fieldlabel.review.apply import ApplySettings, apply_review
from fieldlabel.review.consolidation import ConsolidationConfig
from moto import mock_aws

from localrun.labelstudio import LabelStudioServer

UNKNOWN = "not-a-tree-or-cannot-tell"
LABELS = (("quercus-robur", "Quercus robur (pedunculate oak)"), ("fagus-sylvatica", "Fagus sylvatica (beech)"),
          ("betula-pendula", "Betula pendula (silver birch)"))
ALL_LABELS = [label for label, _ in LABELS] + [UNKNOWN]
SECRET = "webhook-secret-" + "x" * 24
BUCKET = "artifacts"


def make_backend(project: str, **kw: Any) -> LabelStudioBackend:
    return LabelStudioBackend(LabelStudioSettings(
        project=project, taxonomy_hash="c0ffee0123456789", labels=LABELS, unknown_label=UNKNOWN,
        output_path=f"s3://{BUCKET}/ls-output/", model_version="engine-v3", **kw))


def lines(n: int, *, suggest: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        line: dict[str, Any] = {"source-ref": f"s3://copies/p{i}.jpg", "photo-id": f"sha256:p{i}",
                                "field": {"site_id": f"S{i}"}}
        if suggest:
            line["label-under-review"] = {"label": "fagus-sylvatica", "confidence": 0.6 + i / 100, "source": "model"}
        out.append(line)
    return out


@pytest.fixture(scope="module")
def client(label_studio: LabelStudioServer) -> LabelStudioClient:
    return LabelStudioClient(label_studio.url, label_studio.token)


@pytest.fixture(scope="module")
def taxonomists(client: LabelStudioClient) -> list[int]:
    return [int(client.ensure_user(f"taxonomist{i}@example.org", f"Tax{i}", "Onomist")["id"]) for i in range(3)]


@pytest.fixture()
def s3() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def answer(client: LabelStudioClient, task_id: int, label: str, who: int) -> None:
    client.create_annotation(task_id, [picker_result(label)], completed_by=who)


def read_manifest(s3: Any, uri: str) -> list[dict[str, Any]]:
    bucket, key = uri[5:].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


class _Listener(http.server.BaseHTTPRequestHandler):
    calls: list[tuple[dict[str, str], dict[str, Any]]]
    arrived: threading.Event

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        type(self).calls.append((dict(self.headers), json.loads(self.rfile.read(length) or b"{}")))
        type(self).arrived.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture()
def listener() -> Iterator[tuple[str, type[_Listener]]]:
    handler = type("Hook", (_Listener,), {"calls": [], "arrived": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/label-studio-webhook", handler
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------------- submission


def test_a_batch_becomes_tasks_with_the_suggestion_as_prediction(client: LabelStudioClient) -> None:
    backend = make_backend("flsubmit")
    result = backend.submit_batch(client, stage="labeling", batch_id="b-sub-1", lines=lines(3))
    assert (result.imported, result.already_present, len(result.task_ids)) == (3, 0, 3)
    project = client.find_project("flsubmit labeling c0ffee012345")
    assert project is not None and project["id"] == result.project_id and project["maximum_annotations"] == 3
    assert "<Taxonomy name=\"species\"" in project["label_config"]
    tasks = client.tasks_of_batch(result.project_id, "b-sub-1")
    assert sorted(t["data"]["photo_id"] for t in tasks) == ["sha256:p0", "sha256:p1", "sha256:p2"]
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"] == "engine-v3" and prediction["score"] == pytest.approx(0.6)
    assert prediction["result"][0]["value"] == {"taxonomy": [["fagus-sylvatica"]]}
    assert tasks[0]["data"]["line"]["label-under-review"]["label"] == "fagus-sylvatica"


def test_resubmission_imports_only_missing_photos_and_batches_stay_apart(client: LabelStudioClient) -> None:
    backend = make_backend("flidem")
    first = backend.submit_batch(client, stage="labeling", batch_id="b-idem-1", lines=lines(2))
    again = backend.submit_batch(client, stage="labeling", batch_id="b-idem-1", lines=lines(4) + lines(1))
    assert (again.imported, again.already_present, again.duplicate_lines) == (2, 2, 1)
    assert set(first.task_ids) < set(again.task_ids) and len(again.task_ids) == 4
    same = backend.submit_batch(client, stage="labeling", batch_id="b-idem-1", lines=lines(4))
    assert same.imported == 0 and same.task_ids == again.task_ids
    other = backend.submit_batch(client, stage="labeling", batch_id="b-idem-2", lines=lines(1))
    assert other.project_id == first.project_id and not set(other.task_ids) & set(again.task_ids)
    assert len(client.tasks_of_batch(first.project_id, "b-idem-1")) == 4


def test_a_batch_larger_than_a_page_is_listed_whole_and_never_imported_twice(client: LabelStudioClient) -> None:
    """The task list pages by 100 and has no 'next' link (the data manager's shape): all pages must be read, or a
    resubmission would import the unseen photos again."""
    backend = make_backend("flpages")
    first = backend.submit_batch(client, stage="labeling", batch_id="b-pages-1", lines=lines(PAGE_SIZE * 2 + 30))
    assert len(client.tasks_of_batch(first.project_id, "b-pages-1")) == PAGE_SIZE * 2 + 30
    again = backend.submit_batch(client, stage="labeling", batch_id="b-pages-1", lines=lines(PAGE_SIZE * 2 + 30))
    assert (again.imported, again.already_present) == (0, PAGE_SIZE * 2 + 30)
    assert batch_status(client, first.project_id, "b-pages-1", PAGE_SIZE * 2 + 30).total == PAGE_SIZE * 2 + 30


def test_projects_are_found_by_exact_title_and_updated_in_place(client: LabelStudioClient) -> None:
    backend = make_backend("flproj")
    p1 = backend.ensure_project(client, "labeling")
    calls: list[str] = []
    recording = LabelStudioClient(client.base_url, client._token)  # noqa: SLF001 - the same server and token
    plain = recording.request

    def record(method: str, path: str, **kw: Any) -> Any:
        calls.append(method)
        return plain(method, path, **kw)

    recording.request = record
    assert backend.ensure_project(recording, "labeling")["id"] == p1["id"]
    assert calls == ["GET"]  # an unchanged project is only read, never rewritten
    wider = make_backend("flproj", annotators_per_photo=5)
    p2 = wider.ensure_project(client, "labeling")
    assert p2["id"] == p1["id"] and p2["maximum_annotations"] == 5
    # "flproj labeling ..." must not be mistaken for "flpro labeling ..." (the API filters by substring).
    assert client.find_project("flpro labeling c0ffee012345") is None
    assert make_backend("flproj").ensure_project(client, "review")["id"] != p1["id"]


def test_a_bad_prediction_is_an_api_error_not_a_retry(client: LabelStudioClient) -> None:
    with pytest.raises(LabelStudioApiError) as err:
        client.request("POST", "/api/projects/", body={"title": "x" * 300})
    assert err.value.status == 400


# ----------------------------------------------------------------------------------- answers, webhook, finish


def test_answers_trigger_the_webhook_and_finish_writes_the_ground_truth_shaped_output(
    client: LabelStudioClient, taxonomists: list[int], s3: Any, listener: tuple[str, type[_Listener]]
) -> None:
    url, hook = listener
    backend = make_backend("flfinish")
    submitted = backend.submit_batch(client, stage="labeling", batch_id="b-fin-1", lines=lines(3))
    pid = submitted.project_id
    client.ensure_webhook(pid, url, webhook_headers(SECRET))
    assert len(client.request("GET", "/api/webhooks/", params={"project": pid})) == 1
    client.ensure_webhook(pid, url, webhook_headers(SECRET))  # idempotent by URL
    assert len(client.request("GET", "/api/webhooks/", params={"project": pid})) == 1

    t0, t1, t2 = submitted.task_ids
    a, b, c = taxonomists
    answer(client, t0, "fagus-sylvatica", a)
    assert hook.arrived.wait(60), "Label Studio did not call the webhook"
    headers, body = hook.calls[0]
    assert verify_webhook(headers, SECRET) and not verify_webhook(headers, SECRET + "!")
    assert body == {"action": "ANNOTATION_CREATED"}  # send_payload off: the receiver re-reads through the API

    assert not batch_status(client, pid, "b-fin-1", 3).complete
    for who in (b, c):
        answer(client, t0, "fagus-sylvatica", who)
    partial = batch_status(client, pid, "b-fin-1", 3)
    assert (partial.done, partial.total, partial.complete) == (1, 3, False)
    assert partial == batch_status(client, pid, "b-fin-1", 3, tasks=client.tasks_of_batch(pid, "b-fin-1"))
    for who, label in ((a, "quercus-robur"), (b, "quercus-robur"), (c, "betula-pendula")):
        answer(client, t1, label, who)
    for who in (a, b, c):
        answer(client, t2, UNKNOWN, who)
    status = batch_status(client, pid, "b-fin-1", 3)
    assert status.complete and (status.done, status.total) == (3, 3)
    assert len(hook.calls) == 9

    job = backend.job_name("b-fin-1")
    described = finish_batch(client, s3, project_id=pid, batch_id="b-fin-1", job_name=job,
                             output_uri=backend.output_uri(job), labels=ALL_LABELS, unknown_label=UNKNOWN,
                             artifacts_bucket=BUCKET)
    result = backend.job_result(described)
    assert result.completed and result.output_manifest_uri == backend.output_uri(job)
    assert result.counters.total_labeled == 3 and result.counters.failed_non_retryable == 0
    out = read_manifest(s3, backend.output_uri(job))
    by_photo = {line["photo-id"]: line for line in out}
    assert {p: backend.parse_output_line(line).label for p, line in by_photo.items()} == {
        "sha256:p0": "fagus-sylvatica", "sha256:p1": "quercus-robur", "sha256:p2": UNKNOWN}
    p1 = by_photo["sha256:p1"]
    assert p1["species"]["answers"] == 3 and p1["species"]["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert p1["species-metadata"]["type"] == "groundTruth/custom" and p1["field"] == {"site_id": "S1"}
    assert backend.parse_output_line(p1).job_name == job
    # The answer log apply-review's reliability update reads, keyed by the taxonomists' e-mail addresses.
    log_uri = described["Consolidation"]["answer_log_uri"]
    assert log_uri.startswith(f"s3://{BUCKET}/review-answers/{job}/")
    logged = read_manifest(s3, log_uri)
    assert {who for rec in logged for who, _ in rec["answers"]} == {
        f"email:taxonomist{i}@example.org" for i in range(3)}


def test_photos_without_answers_come_back_unlabeled(client: LabelStudioClient, taxonomists: list[int],
                                                     s3: Any) -> None:
    backend = make_backend("flpartial", annotators_per_photo=1)
    submitted = backend.submit_batch(client, stage="labeling", batch_id="b-part-1", lines=lines(2, suggest=False))
    answer(client, submitted.task_ids[0], "betula-pendula", taxonomists[0])
    job = backend.job_name("b-part-1")
    described = finish_batch(client, s3, project_id=submitted.project_id, batch_id="b-part-1", job_name=job,
                             output_uri=backend.output_uri(job), labels=ALL_LABELS, unknown_label=UNKNOWN)
    parsed = sorted((backend.parse_output_line(x) for x in read_manifest(s3, backend.output_uri(job))),
                    key=lambda p: p.photo_id or "")
    assert [p.label for p in parsed] == ["betula-pendula", None]
    assert parsed[1].failed and described["LabelCounters"]["FailedNonRetryableError"] == 1
    no_answer = read_manifest(s3, backend.output_uri(job))
    assert any(line["species"]["reasons"] == ["no_answer"] for line in no_answer)


def test_a_review_batch_is_consolidated_with_stored_reliability_and_applied_by_apply_review(
    client: LabelStudioClient, taxonomists: list[int], s3: Any
) -> None:
    """The review stage end to end: the consolidation is the post-annotation Lambda's (seeded by the reviewers table
    it follows the reviewer with the long good record when two disagree, where a plain vote ties), and the output
    and answer log are what apply_review reads: it records the verdict and updates both reviewers' reliability."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for table, key in (("reviewers", "worker_id"), ("photos", "photo_id")):
        dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}])
    for i, (n, correct) in enumerate(((200, 196), (200, 110))):
        dynamodb.put_item(TableName="reviewers", Item={"worker_id": {"S": f"email:taxonomist{i}@example.org"},
                                                       "answers": {"N": str(n)}, "correct": {"N": str(correct)}})
    dynamodb.put_item(TableName="photos", Item={"photo_id": {"S": "sha256:p0"}, "batch_id": {"S": "b-prior-1"},
                                                "label": {"S": "quercus-robur"}})
    backend = make_backend("flprior", reviewers_per_photo=2)
    review_lines = [{**line, "review-reason": "audit", "audit-stratum": {"size": 40, "sampled": 2},
                     "label-under-review": {"label": "quercus-robur", "confidence": 0.99, "source": "machine"}}
                    for line in lines(1)]
    submitted = backend.submit_batch(client, stage="review", batch_id="b-prior-1", lines=review_lines)
    task = submitted.task_ids[0]
    answer(client, task, "quercus-robur", taxonomists[1])
    answer(client, task, "betula-pendula", taxonomists[0])
    job = backend.review_job_name("b-prior-1")
    described = finish_batch(client, s3, project_id=submitted.project_id, batch_id="b-prior-1", job_name=job,
                             output_uri=backend.output_uri(job), labels=ALL_LABELS, unknown_label=UNKNOWN,
                             label_attribute="species-review", dynamodb=dynamodb, reviewers_table="reviewers",
                             consolidation=ConsolidationConfig(adjudication_threshold=0.8),
                             artifacts_bucket=BUCKET)
    (line,) = read_manifest(s3, backend.output_uri(job))
    review = line["species-review"]
    # Reliability decides the label with high confidence; a tie of votes is still flagged for a person to look at.
    assert review["label"] == "betula-pendula" and review["confidence"] > 0.95, review
    assert review["reasons"] == ["tie"] and review["needs_adjudication"] is True
    assert line["review-reason"] == "audit" and line["label-under-review"]["label"] == "quercus-robur"

    outcome = apply_review(
        s3=s3, dynamodb=dynamodb, batch_id="b-prior-1",
        output_manifest_uri=described["LabelingJobOutput"]["OutputDatasetS3Uri"],
        settings=ApplySettings(photos_table="photos", reviewers_table="reviewers", artifacts_bucket=BUCKET,
                               unknown_label=UNKNOWN, correction_threshold=0.8),
        now_iso="2026-12-01T12:00:00Z",
    )
    assert outcome.job_name == job and outcome.reviewed == 1
    photo = dynamodb.get_item(TableName="photos", Key={"photo_id": {"S": "sha256:p0"}})["Item"]
    assert outcome.outcomes["needs_adjudication"] == 1 and photo["label"]["S"] == "quercus-robur"
    assert outcome.reviewers == {"updated": 2, "already_applied": 0}


# ---------------------------------------------------------------------------------------------------------- stop


def test_stop_withdraws_only_unanswered_tasks_and_a_later_finish_keeps_the_answers(
    client: LabelStudioClient, taxonomists: list[int], s3: Any
) -> None:
    backend = make_backend("flstop", annotators_per_photo=2)
    submitted = backend.submit_batch(client, stage="labeling", batch_id="b-stop-1", lines=lines(3))
    answer(client, submitted.task_ids[1], "quercus-robur", taxonomists[0])
    assert backend.stop_job(client, backend.job_name("b-stop-1")) == "stopped"
    left = client.tasks_of_batch(submitted.project_id, "b-stop-1")
    assert [t["id"] for t in left] == [submitted.task_ids[1]]
    # The half-answered photo is out of the queue: Label Studio serves nobody a task of the stopped batch.
    assert left[0]["is_labeled"] is True and len(left[0]["annotations"]) == 1
    with pytest.raises(LabelStudioApiError) as nothing:
        client.request("GET", f"/api/projects/{submitted.project_id}/next/")
    assert nothing.value.status == 404
    assert not batch_status(client, submitted.project_id, "b-stop-1", 3).complete
    job = backend.job_name("b-stop-1")
    finish_batch(client, s3, project_id=submitted.project_id, batch_id="b-stop-1", job_name=job,
                 output_uri=backend.output_uri(job), labels=ALL_LABELS, unknown_label=UNKNOWN)
    (line,) = read_manifest(s3, backend.output_uri(job))
    assert line["photo-id"] == "sha256:p1" and line["species"]["label"] == "quercus-robur"
    assert stop_batch(client, submitted.project_id, "b-never") == "absent"
    assert make_backend("flnothere").stop_job(client, "flnothere-b1") == "absent"
    # A resubmission after a stop brings the withdrawn photos back, the answered one is not imported twice.
    again = backend.submit_batch(client, stage="labeling", batch_id="b-stop-1", lines=lines(3))
    assert (again.imported, again.already_present) == (2, 1)


# ------------------------------------------------------------------------------------------------------- images


def test_s3_uris_reach_the_browser_only_as_short_lived_presigned_urls(client: LabelStudioClient,
                                                                       label_studio: LabelStudioServer) -> None:
    """The task keeps the labeling copy's s3:// URI; Label Studio's resolve endpoint answers with a presigned URL
    (15 minutes) of that object, signed by the project's S3 storage. moto runs as a server, as S3's stand-in."""
    import urllib.error
    import urllib.request

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="copies")
        s3.put_object(Bucket="copies", Key="labeling-copies/sha256-aa.jpg", Body=b"\xff\xd8 the labeling copy")
        storage = ImageStorage(bucket="copies", prefix="labeling-copies/", region="us-east-1",
                               presign_ttl_minutes=15, endpoint_url=endpoint,
                               credentials=(("aws_access_key_id", "testing"), ("aws_secret_access_key", "testing")))
        backend = make_backend("flimages", image_storage=storage)
        line = {"source-ref": "s3://copies/labeling-copies/sha256-aa.jpg", "photo-id": "sha256:aa"}
        submitted = backend.submit_batch(client, stage="labeling", batch_id="b-img-1", lines=[line])
        backend.ensure_project(client, "labeling")  # idempotent: still one storage
        storages = client.request("GET", "/api/storages/s3/", params={"project": submitted.project_id})
        assert len(storages) == 1 and storages[0]["presign_ttl"] == 15

        # What the pipeline reads back is the stored URI (the output manifest's source-ref), not a resolved one.
        (stored,) = client.tasks_of_batch(submitted.project_id, "b-img-1")
        assert stored["data"]["image"] == stored["data"]["line"]["source-ref"] == line["source-ref"]
        task = client.request("GET", f"/api/tasks/{submitted.task_ids[0]}/")
        resolve = task["data"]["image"]
        assert resolve.startswith(f"/tasks/{submitted.task_ids[0]}/resolve/")

        class _Stop(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        request = urllib.request.Request(label_studio.url + resolve,
                                         headers={"Authorization": f"Token {label_studio.token}"})
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(_Stop).open(request, timeout=30)
        location = redirect.value.headers["Location"]
        assert location.startswith(f"{endpoint}/copies/labeling-copies/sha256-aa.jpg?")
        assert "X-Amz-Expires=900" in location and "X-Amz-Signature=" in location
        with urllib.request.urlopen(location, timeout=30) as photo:  # noqa: S310 - the local moto server
            assert photo.read() == b"\xff\xd8 the labeling copy"
    finally:
        server.stop()


def test_taxonomist_accounts_are_created_once(client: LabelStudioClient) -> None:
    first = client.ensure_user("New.Person@example.org", "New", "Person")
    again = client.ensure_user("new.person@example.org")
    assert again["id"] == first["id"] and first["first_name"] == "New"
    with pytest.raises(ValueError):
        client.ensure_user("not-an-address")
