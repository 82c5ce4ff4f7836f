"""The Label Studio backend's pure parts: labeling config, tasks, requests, output lines, webhook secret, client
retries (against a local stand-in HTTP server, so the retry and error paths are real HTTP)."""

from __future__ import annotations

import http.server
import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from fieldlabel.labeling.backend import KIND_AUTOMATED, KIND_HUMAN_ONLY, KIND_MODEL, BatchPhoto
from fieldlabel.labeling.label_studio.backend import (
    LabelStudioBackend,
    LabelStudioSettings,
    field_text,
    labels_from_taxonomy,
)
from fieldlabel.labeling.label_studio.client import (
    LabelStudioApiError,
    LabelStudioClient,
    LabelStudioUnavailableError,
)
from fieldlabel.labeling.label_studio.completion import batch_status, parse_task
from fieldlabel.labeling.label_studio.labeling_config import answer_label, labeling_config_xml, picker_result
from fieldlabel.labeling.label_studio.webhook import WEBHOOK_SECRET_HEADER, verify_webhook, webhook_headers

UNKNOWN = "not-a-tree-or-cannot-tell"
LABELS = (("quercus-robur", "Quercus robur (pedunculate oak)"), ("fagus-sylvatica", "Fagus sylvatica (beech)"))


def settings(**kw: Any) -> LabelStudioSettings:
    base: dict[str, Any] = dict(project="fl", taxonomy_hash="0123456789abcdef", labels=LABELS,
                                unknown_label=UNKNOWN, output_path="s3://artifacts/ls-output/")
    base.update(kw)
    return LabelStudioSettings(**base)


# ------------------------------------------------------------------------------------------------- labeling config


def test_the_picker_offers_every_taxon_by_display_name_and_stores_the_label() -> None:
    root = ET.fromstring(labeling_config_xml(LABELS, unknown_label=UNKNOWN, instructions="Pick <one> & go"))
    picker = root.find("Taxonomy")
    assert picker is not None and picker.get("name") == "species" and picker.get("toName") == "image"
    assert picker.get("maxUsages") == "1" and picker.get("required") == "true"
    choices = [(c.get("value"), c.get("alias")) for c in picker.findall("Choice")]
    assert choices == [("Not a tree / cannot tell", UNKNOWN), ("Quercus robur (pedunculate oak)", "quercus-robur"),
                       ("Fagus sylvatica (beech)", "fagus-sylvatica")]
    assert root.find("Header").get("value") == "Pick <one> & go"  # type: ignore[union-attr]
    assert root.find("Image").get("value") == "$image"  # type: ignore[union-attr]


def test_a_config_of_hundreds_of_taxa_stays_well_formed() -> None:
    many = [(f"taxon-{i:03d}", f"Genus species{i} \"quoted\" & <odd>") for i in range(600)]
    root = ET.fromstring(labeling_config_xml(many, unknown_label=UNKNOWN, instructions="x"))
    assert len(root.find("Taxonomy").findall("Choice")) == 601  # type: ignore[union-attr]


@pytest.mark.parametrize("labels", [(), (("a", "A"), ("a", "B")), (("a", "A"), ("b", "A")), ((UNKNOWN, "X"),)])
def test_ambiguous_label_sets_are_refused(labels: Any) -> None:
    with pytest.raises(ValueError):
        labeling_config_xml(labels, unknown_label=UNKNOWN, instructions="x")


def test_answers_are_read_from_taxonomy_and_choices_results() -> None:
    assert answer_label([picker_result("quercus-robur")]) == "quercus-robur"
    assert answer_label([{"from_name": "species", "value": {"choices": ["fagus-sylvatica"]}}]) == "fagus-sylvatica"
    assert answer_label([{"from_name": "species", "value": {"taxonomy": [["a"], ["b"]]}}]) is None
    assert answer_label([{"from_name": "other", "value": {"taxonomy": [["a"]]}}]) is None
    assert answer_label([]) is None and answer_label(None) is None


# --------------------------------------------------------------------------------------------------------- backend


def test_projects_are_per_stage_and_taxonomy_version() -> None:
    b = LabelStudioBackend(settings())
    assert b.project_title("labeling") == "fl labeling 0123456789ab"
    assert b.project_title("review") == "fl review 0123456789ab"
    assert LabelStudioBackend(settings(taxonomy_hash="ffff456789abcdef")).project_title("labeling") != \
        b.project_title("labeling")
    with pytest.raises(ValueError):
        b.project_title("other")


def test_job_names_round_trip_to_stage_and_batch() -> None:
    b = LabelStudioBackend(settings())
    assert b.stage_of(b.job_name("b-20260101-001")) == ("labeling", "b-20260101-001")
    assert b.stage_of(b.review_job_name("b-20260101-001")) == ("review", "b-20260101-001")
    with pytest.raises(ValueError):
        b.stage_of("other-b1")


def test_requests_refuse_automated_labeling_and_models() -> None:
    b = LabelStudioBackend(settings())
    assert b.choose_kind(5000, automated_enabled=True) == KIND_HUMAN_ONLY
    req = b.build_job_request(batch_id="b1", kind=KIND_MODEL, manifest_uri="s3://a/m.manifest")
    assert req["ProjectTitle"] == "fl labeling 0123456789ab" and req["MaximumAnnotations"] == 3
    assert req["OutputUri"] == "s3://artifacts/ls-output/fl-b1/manifests/output/output.manifest"
    review = b.build_review_request(batch_id="b1", manifest_uri="s3://a/r.manifest")
    assert review["Stage"] == "review" and review["MaximumAnnotations"] == 2
    assert review["LabelAttributeName"] == "species-review"
    with pytest.raises(ValueError):
        b.build_job_request(batch_id="b1", kind=KIND_AUTOMATED, manifest_uri="s3://a/m")
    with pytest.raises(ValueError):
        b.build_job_request(batch_id="b1", kind=KIND_HUMAN_ONLY, manifest_uri="s3://a/m", initial_model_arn="arn:x")


def test_a_task_carries_the_line_the_field_notes_and_the_suggestion_as_prediction() -> None:
    b = LabelStudioBackend(settings(model_version="engine-7"))
    photo = BatchPhoto("sha256:aa", "s3://copies/aa.jpg", field={"site_id": "A12", "notes": "by the river"})
    line = {**b.manifest_line(photo), "label-under-review": {"label": "fagus-sylvatica", "confidence": 0.83,
                                                             "source": "model"}}
    task = b.task_for(line, batch_id="b1")
    assert task["data"]["image"] == "s3://copies/aa.jpg" and task["data"]["batch_id"] == "b1"
    assert task["data"]["line"] == line and task["data"]["field_text"] == "Site: A12 · Notes: by the river"
    assert task["predictions"] == [{"model_version": "engine-7", "score": 0.83,
                                    "result": [picker_result("fagus-sylvatica")]}]
    outside = {**line, "label-under-review": {"label": "not-in-taxonomy", "confidence": 0.9}}
    assert "predictions" not in b.task_for(outside, batch_id="b1", image="http://x/aa.jpg")
    with pytest.raises(ValueError):
        b.task_for({"photo-id": "p"}, batch_id="b1")


def test_the_picker_labels_come_from_the_taxonomy_document() -> None:
    doc = {"labels": [{"label": "quercus-robur", "scientific_name": "Quercus robur", "common_name": "oak",
                       "display_name": "Quercus robur (oak)"},
                      {"label": "fagus-sylvatica", "scientific_name": "Fagus sylvatica"}],
           "unknown_label": UNKNOWN}
    categories, pairs, unknown = labels_from_taxonomy(doc)
    assert categories == ("quercus-robur", "fagus-sylvatica", UNKNOWN) and unknown == UNKNOWN
    assert pairs == (("quercus-robur", "Quercus robur (oak)"), ("fagus-sylvatica", "Fagus sylvatica"))
    with pytest.raises(ValueError):
        labels_from_taxonomy({"labels": [], "unknown_label": UNKNOWN})
    with pytest.raises(ValueError):
        labels_from_taxonomy({"labels": [{"display_name": "x"}], "unknown_label": UNKNOWN})


def test_field_text_is_bounded() -> None:
    assert field_text({}) == "No field notes."
    assert field_text({"latitude": 52.1, "longitude": 13.25}) == "Location: 52.10000, 13.25000"
    assert len(field_text({"notes": "x" * 5000})) == 600


def test_output_lines_parse_like_ground_truth_custom_output() -> None:
    b = LabelStudioBackend(settings())
    meta = {"job_name": "labeling-job/fl-b1", "creation_date": "2026-01-01T00:00:00.000000"}
    ok = b.parse_output_line({"photo-id": "p1", "source-ref": "s3://c/p1.jpg",
                              "species": {"label": "quercus-robur", "confidence": 0.97}, "species-metadata": meta})
    assert (ok.label, ok.confidence, ok.job_name, ok.human_annotated) == ("quercus-robur", 0.97, "fl-b1", True)
    failed = b.parse_output_line({"photo-id": "p2", "species": {"label": None}, "species-metadata": meta})
    assert failed.failed and failed.failure_reason == "no valid answer from the taxonomists"


def test_job_result_reads_the_finish_description() -> None:
    b = LabelStudioBackend(settings())
    r = b.job_result({"LabelingJobName": "fl-b1", "LabelingJobArn": None, "LabelingJobStatus": "Completed",
                      "LabelingJobOutput": {"OutputDatasetS3Uri": "s3://a/o.manifest"},
                      "LabelCounters": {"TotalLabeled": 4, "HumanLabeled": 4, "FailedNonRetryableError": 1},
                      "Backend": "label_studio", "ProjectId": 3})
    assert r.completed and r.output_manifest_uri == "s3://a/o.manifest" and r.final_model_arn is None
    assert r.counters.total_labeled == 4 and r.counters.failed_non_retryable == 1
    assert r.extra == {"Backend": "label_studio", "ProjectId": 3}


# ------------------------------------------------------------------------------------------------------ completion


def _task(tid: int, answers: list[tuple[int | None, Any]], *, labeled: bool = False) -> dict[str, Any]:
    anns = [{"id": 100 * tid + i, "completed_by": who, "result": res, "was_cancelled": res == "cancel"}
            for i, (who, res) in enumerate(answers)]
    return {"id": tid, "is_labeled": labeled, "annotations": anns,
            "data": {"photo_id": f"p{tid}", "batch_id": "b1", "line": {"photo-id": f"p{tid}", "source-ref": "s3://x"}}}


def test_answers_become_reviewer_keyed_pairs_and_bad_ones_are_counted() -> None:
    keys = {1: "email:a@x.org", 2: "email:b@x.org"}
    task = _task(1, [(1, [picker_result("quercus-robur")]), (1, [picker_result("fagus-sylvatica")]),
                     (2, [picker_result("nonsense")]), (3, []), (None, [picker_result("quercus-robur")]),
                     (2, "cancel")])
    parsed = parse_task(task, valid_labels={"quercus-robur", "fagus-sylvatica", UNKNOWN}, keys=keys)
    assert parsed.answers == [("email:a@x.org", "quercus-robur")]
    assert parsed.skipped == {"duplicate_worker": 1, "unknown_label": 1, "no_choice": 1, "worker_missing": 1}
    assert parsed.photo_id == "p1" and parsed.dataset_object_id == "1"


def test_a_batch_is_complete_only_when_every_expected_task_is_labeled() -> None:
    tasks = [_task(1, [], labeled=True), _task(2, [], labeled=True)]
    assert batch_status(None, 1, "b1", 2, tasks=tasks).complete
    assert not batch_status(None, 1, "b1", 3, tasks=tasks).complete
    half = [_task(1, [], labeled=True), _task(2, [])]
    assert batch_status(None, 1, "b1", 2, tasks=half).as_dict() == {
        "done": 1, "total": 2, "expected": 2, "complete": False}
    assert not batch_status(None, 1, "b1", 0, tasks=[]).complete


# --------------------------------------------------------------------------------------------------------- webhook


def test_the_webhook_secret_is_checked_case_insensitively_and_exactly() -> None:
    secret = "s" * 32
    assert verify_webhook(webhook_headers(secret), secret)
    assert verify_webhook({WEBHOOK_SECRET_HEADER.lower(): secret}, secret)
    assert not verify_webhook({WEBHOOK_SECRET_HEADER: secret[:-1] + "t"}, secret)
    assert not verify_webhook({WEBHOOK_SECRET_HEADER: secret}, "")
    assert not verify_webhook({}, secret) and not verify_webhook(None, secret)
    assert not verify_webhook({WEBHOOK_SECRET_HEADER: "short"}, "short")
    with pytest.raises(ValueError):
        webhook_headers("short")


# ---------------------------------------------------------------------------------------------- client over HTTP


class _Scripted(http.server.BaseHTTPRequestHandler):
    script: list[tuple[Any, ...]] = []
    seen: list[tuple[str, str, str | None, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        status, payload, *extra = type(self).script.pop(0)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (extra[0] if extra else {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _answer  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture()
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"script": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_retries_gateway_errors_with_backoff_then_succeeds(scripted: Any) -> None:
    url, handler = scripted
    handler.script = [(503, {}), (502, {}), (200, {"ok": 1})]
    waits: list[float] = []
    client = LabelStudioClient(url, "tok", sleep=waits.append, backoff_seconds=0.5)
    assert client.request("GET", "/api/x") == {"ok": 1}
    assert waits == [0.5, 1.0]
    assert [s[2] for s in handler.seen] == ["Token tok"] * 3


def test_the_client_gives_up_with_a_message_naming_the_server(scripted: Any) -> None:
    url, handler = scripted
    handler.script = [(504, {})] * 3
    client = LabelStudioClient(url, "tok", retries=2, sleep=lambda _: None)
    with pytest.raises(LabelStudioUnavailableError, match=url):
        client.request("GET", "/api/x")


def test_client_errors_are_not_retried(scripted: Any) -> None:
    url, handler = scripted
    handler.script = [(400, {"title": ["bad"]})]
    client = LabelStudioClient(url, "tok", sleep=lambda _: pytest.fail("must not wait"))
    with pytest.raises(LabelStudioApiError) as err:
        client.request("POST", "/api/projects/", body={"title": ""})
    assert err.value.status == 400 and "bad" in err.value.body
    assert handler.seen[0][3] == {"title": ""}


def test_a_redirect_to_a_sign_in_page_is_an_error_that_says_why(scripted: Any) -> None:
    url, handler = scripted
    handler.script = [(302, b"", {"Location": "https://auth.example.org/login?client_id=x"})]
    client = LabelStudioClient(url, "tok", sleep=lambda _: pytest.fail("must not wait"))
    with pytest.raises(LabelStudioApiError, match="Cognito") as err:
        client.request("GET", "/api/users/")
    assert err.value.status == 302 and "https://auth.example.org/login" in err.value.body
    assert len(handler.seen) == 1  # the sign-in page was not fetched


def test_a_page_that_is_not_json_is_an_error(scripted: Any) -> None:
    url, handler = scripted
    handler.script = [(200, b"<html>sign in</html>")]
    with pytest.raises(LabelStudioApiError, match="not JSON"):
        LabelStudioClient(url, "tok").request("GET", "/api/projects/")


def test_an_unreachable_server_is_unavailable_after_the_retries() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    client = LabelStudioClient(f"http://127.0.0.1:{port}", "tok", retries=3, sleep=waits.append, timeout=2)
    with pytest.raises(LabelStudioUnavailableError, match="failed 4 times"):
        client.request("GET", "/api/projects/")
    assert waits == [0.5, 1.0, 2.0]


def test_the_client_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError):
        LabelStudioClient("ftp://x", "tok")
    with pytest.raises(ValueError):
        LabelStudioClient("http://x", "")
