"""Review manifest line -> review task input, the taxonomy file, and the worker answer reader."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import boto3
import pytest
from fieldlabel.ui.answer import AnswerError, answer_label, parse_review_answer
from fieldlabel.ui.task_input import (
    MalformedLineError,
    build_labeling_task_input,
    build_review_task_input,
    error_task_input,
    field_from_registry,
    is_labeling_line,
    load_taxonomy,
    normalize_field,
)
from fieldlabel.ui.taxonomy import TaxonomyError, parse_taxonomy, parse_taxonomy_json
from moto import mock_aws

from tests.unit.ui.ui_fixtures import UNKNOWN, review_line, taxonomy_document


@pytest.fixture(scope="module")
def taxonomy():
    return parse_taxonomy(taxonomy_document(40))


# ------------------------------------------------------------------------------------------------------ task input


def test_task_input_has_the_contract_shape(taxonomy) -> None:
    # Given a well-formed review line
    line = review_line("quercus-robur")

    # When it becomes a task input
    task = build_review_task_input(line, taxonomy)

    # Then it has exactly the contract's members, with display names resolved from the taxonomy
    assert set(task) == {"taskObject", "photoId", "field", "labelUnderReview", "taxonomy"}
    assert task["taskObject"] == line["source-ref"]
    assert task["photoId"] == line["photo-id"]
    assert task["labelUnderReview"] == {
        "label": "quercus-robur",
        "displayName": "Quercus robur (pedunculate oak)",
        "confidence": 0.62,
        "source": "machine",
        "inTaxonomy": True,
    }
    assert task["taxonomy"][0] == {
        "label": "quercus-robur",
        "scientificName": "Quercus robur",
        "commonName": "pedunculate oak",
        "displayName": "Quercus robur (pedunculate oak)",
    }
    assert len(task["taxonomy"]) == 40
    assert task["field"]["suspected_species"] == "quercus-petraea"
    assert task["field"]["suspected_species_display"] == "Quercus petraea (sessile oak)"
    # and it survives JSON (what Ground Truth does with it)
    assert json.loads(json.dumps(task)) == task


def test_unknown_label_under_review_is_named_plainly(taxonomy) -> None:
    line = review_line()
    line["label-under-review"] = {"label": UNKNOWN, "confidence": 0.3, "source": "human"}
    task = build_review_task_input(line, taxonomy)
    assert task["labelUnderReview"]["displayName"] == "Not a tree / cannot tell"
    assert task["labelUnderReview"]["inTaxonomy"] is True


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda line: line.pop("source-ref"), "bad-source-ref"),
        (lambda line: line.update({"source-ref": "https://example.org/a.jpg"}), "bad-source-ref"),
        (lambda line: line.update({"source-ref": "s3://bucket-only/"}), "bad-source-ref"),
        (lambda line: line.pop("photo-id"), "bad-photo-id"),
        (lambda line: line.update({"photo-id": "  "}), "bad-photo-id"),
        (lambda line: line.pop("label-under-review"), "bad-label-under-review"),
        (lambda line: line["label-under-review"].update({"label": ""}), "bad-label-under-review"),
        (lambda line: line["label-under-review"].update({"confidence": 1.5}), "bad-label-under-review"),
        (lambda line: line["label-under-review"].update({"confidence": "high"}), "bad-label-under-review"),
        (lambda line: line["label-under-review"].update({"source": "oracle"}), "bad-label-under-review"),
    ],
)
def test_malformed_lines_are_rejected_with_a_reason(taxonomy, mutate, reason) -> None:
    line = copy.deepcopy(review_line())
    mutate(line)
    with pytest.raises(MalformedLineError) as info:
        build_review_task_input(line, taxonomy)
    assert info.value.reason == reason


def test_non_object_line_is_rejected(taxonomy) -> None:
    with pytest.raises(MalformedLineError) as info:
        build_review_task_input(["s3://a/b"], taxonomy)
    assert info.value.reason == "not-an-object"


def test_error_task_input_keeps_what_identifies_the_line() -> None:
    error = MalformedLineError("bad-label-under-review", "x" * 900)
    out = error_task_input({"photo-id": "sha256:1", "source-ref": "s3://b/k.jpg", "junk": 1}, error)
    assert out == {
        "error": "bad-label-under-review",
        "errorDetail": "x" * 500,
        "photoId": "sha256:1",
        "taskObject": "s3://b/k.jpg",
    }


def test_field_metadata_is_normalised() -> None:
    field = {
        "site_id": "  S1  ",
        "notes": "n" * 2500,
        "latitude": Decimal("95"),  # out of range: dropped
        "longitude": Decimal("-1.25"),
        "collector": 42,  # wrong type: dropped
        "habitat": "",
        "unexpected": "kept out",
        "captured_at": "2026-05-14T09:31:00Z",
    }
    out = normalize_field(field)
    assert out == {"site_id": "S1", "notes": "n" * 2000, "longitude": -1.25, "captured_at": "2026-05-14T09:31:00Z"}
    assert normalize_field(None) == {}
    assert normalize_field({"latitude": float("nan"), "longitude": True}) == {}


def test_field_lookup_is_used_only_when_the_line_has_no_field(taxonomy) -> None:
    calls: list[str] = []

    def lookup(photo_id: str) -> dict[str, Any]:
        calls.append(photo_id)
        return {"site_id": "from-registry", "latitude": Decimal("10.5"), "longitude": Decimal("20")}

    with_field = build_review_task_input(review_line(), taxonomy, field_lookup=lookup)
    assert calls == [] and with_field["field"]["site_id"] == "S12"

    line = review_line()
    del line["field"]
    without_field = build_review_task_input(line, taxonomy, field_lookup=lookup)
    assert calls == ["sha256:0a1b2c3d"]
    assert without_field["field"] == {"site_id": "from-registry", "latitude": 10.5, "longitude": 20.0}


@mock_aws
def test_field_from_registry_reads_the_photos_table() -> None:
    # Given a photos table item with a field map, written the way the registry writes it
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName="photos",
        KeySchema=[{"AttributeName": "photo_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "photo_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.resource("dynamodb").Table("photos").put_item(
        Item={"photo_id": "sha256:1", "status": "LABELED", "field": {"site_id": "S3", "latitude": Decimal("51.5")}}
    )
    ddb.put_item(TableName="photos", Item={"photo_id": {"S": "sha256:2"}, "status": {"S": "LABELED"}})

    # Then the field map comes back as plain JSON types, and absent items or maps give None
    assert field_from_registry(ddb, "photos", "sha256:1") == {"site_id": "S3", "latitude": 51.5}
    assert field_from_registry(ddb, "photos", "sha256:2") is None
    assert field_from_registry(ddb, "photos", "sha256:missing") is None


@mock_aws
def test_load_taxonomy_from_s3() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="config/taxonomy.json", Body=json.dumps(taxonomy_document(5)).encode())
    tax = load_taxonomy(s3, "s3://artifacts/config/taxonomy.json")
    assert [t.label for t in tax.taxa] == [e["label"] for e in taxonomy_document(5)["labels"]]
    with pytest.raises(ValueError, match="s3://"):
        load_taxonomy(s3, "artifacts/config/taxonomy.json")


# -------------------------------------------------------------------------------------------------------- taxonomy


def test_taxonomy_defaults_and_unknown_entry() -> None:
    doc = {
        "labels": [
            {"label": "a-b", "scientific_name": "A b"},
            {"label": "c-d", "scientific_name": "C d", "common_name": "cee"},
            {"label": UNKNOWN, "scientific_name": "whatever"},
        ],
        "unknown_label": UNKNOWN,
    }
    tax = parse_taxonomy(doc)
    assert [t.label for t in tax.taxa] == ["a-b", "c-d"]
    assert [t.display_name for t in tax.taxa] == ["A b", "C d (cee)"]
    assert tax.display_name("zz") == "zz" and not tax.is_known("zz")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"labels": [{"label": "a"}]}, "unknown_label: missing"),
        ({"labels": [], "unknown_label": UNKNOWN}, "non-empty list"),
        ({"labels": [{"label": "a"}, {"label": "a"}], "unknown_label": UNKNOWN}, "more than once"),
        ({"labels": [{"label": "a\nb"}], "unknown_label": UNKNOWN}, "control characters"),
        ({"labels": [{"label": "a", "common_name": 3}], "unknown_label": UNKNOWN}, "must be a string"),
        ({"labels": [{"label": UNKNOWN}], "unknown_label": UNKNOWN}, "at least one species"),
    ],
)
def test_taxonomy_errors(doc: Any, message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        parse_taxonomy(doc)


def test_taxonomy_json_must_be_json() -> None:
    with pytest.raises(TaxonomyError, match="not valid JSON"):
        parse_taxonomy_json(b"{nope")


# ---------------------------------------------------------------------------------------------------------- answer


@pytest.mark.parametrize(
    "content",
    [
        # what crowd-form submits for the template's hidden input: the review as a JSON string
        json.dumps({"review": json.dumps({"decision": "correct", "species": "acer-robur", "comment": "samaras"})}),
        # the contract's object form
        json.dumps({"review": {"decision": "correct", "species": "acer-robur", "comment": "samaras"}}),
    ],
)
def test_parse_review_answer_accepts_string_and_object_forms(content: str) -> None:
    answer = parse_review_answer(content)
    assert answer == {"decision": "correct", "species": "acer-robur", "comment": "samaras"}
    assert answer_label(answer, "quercus-robur", UNKNOWN) == "acer-robur"


def test_answer_labels_for_confirm_and_cannot_tell() -> None:
    confirm = parse_review_answer({"review": {"decision": "confirm", "species": "quercus-robur"}})
    cannot = parse_review_answer({"review": {"decision": "cannot_tell"}})
    assert answer_label(confirm, "quercus-robur", UNKNOWN) == "quercus-robur"
    assert answer_label(cannot, "quercus-robur", UNKNOWN) == UNKNOWN


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        (json.dumps({"crowd-image-classifier": {"label": "x"}}), "no 'review'"),
        (json.dumps({"review": "{bad"}), "string but not JSON"),
        (json.dumps({"review": {"decision": "maybe"}}), "decision must be"),
        (json.dumps({"review": {"decision": "correct", "species": ""}}), "needs a species"),
        (json.dumps({"review": {"decision": "confirm", "comment": 5}}), "must be strings"),
    ],
)
def test_parse_review_answer_rejects(content: str, message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        parse_review_answer(content)


# --------------------------------------------------------------------------------------------------------- preview


@pytest.mark.parametrize("template", ["review", "classification"])
def test_preview_cli_writes_a_rendered_page(tmp_path, template: str) -> None:
    from fieldlabel.ui.preview import fake_presign, main

    taxonomy_file = tmp_path / "taxonomy.json"
    taxonomy_file.write_text(json.dumps(taxonomy_document(12)))
    out = tmp_path / "page.html"
    assert main([template, "--taxonomy", str(taxonomy_file), "--out", str(out)]) == 0
    page = out.read_text()
    assert fake_presign("s3://example-intake/labeling-copies/sha256-0a1b2c.jpg").replace("&", "&amp;") in page
    assert "{{" not in page and "<!--fieldlabel:" not in page


# ------------------------------------------------------------------------------------ the engine's labeling lines


def test_labeling_line_with_the_models_suggestion(taxonomy) -> None:
    # Given a line of the engine's labeling manifest with the model's suggestion
    line = {**review_line("quercus-robur"), "task": "label",
            "label-under-review": {"label": "quercus-robur", "confidence": 0.71, "source": "model"},
            "engine": {"priority": 0, "calibration": False, "model": "v000001-b"}}
    line.pop("review-reason", None)
    assert is_labeling_line(line) and not is_labeling_line(review_line("quercus-robur"))

    # When it becomes a task input
    task = build_labeling_task_input(line, taxonomy)

    # Then it is the review shape with the suggestion to confirm
    assert task["task"] == "label"
    assert task["labelUnderReview"] == {"label": "quercus-robur", "displayName": "Quercus robur (pedunculate oak)",
                                        "confidence": 0.71, "source": "model", "inTaxonomy": True}
    assert len(task["taxonomy"]) == 40 and task["photoId"] == line["photo-id"]


def test_labeling_line_without_a_suggestion_asks_to_pick_from_the_list(taxonomy) -> None:
    line = {k: v for k, v in review_line("quercus-robur").items() if k != "label-under-review"}
    task = build_labeling_task_input({**line, "task": "label"}, taxonomy)
    assert task["labelUnderReview"] is None and task["taskObject"] == line["source-ref"]


@pytest.mark.parametrize("suggestion", [
    {"label": "quercus-robur", "confidence": 0.7, "source": "machine"},  # a review source, not the model
    {"label": "", "source": "model"},
    {"label": "quercus-robur", "confidence": 1.5, "source": "model"},
])
def test_a_malformed_suggestion_is_rejected(taxonomy, suggestion) -> None:
    line = {**review_line("quercus-robur"), "task": "label", "label-under-review": suggestion}
    with pytest.raises(MalformedLineError, match="bad-label-under-review"):
        build_labeling_task_input(line, taxonomy)


def test_review_lines_still_refuse_the_models_source(taxonomy) -> None:
    line = {**review_line("quercus-robur"),
            "label-under-review": {"label": "quercus-robur", "confidence": 0.7, "source": "model"}}
    with pytest.raises(MalformedLineError, match="bad-label-under-review"):
        build_review_task_input(line, taxonomy)
