"""The expert-review template serving the engine's labeling job (``labeling.engine: model``), rendered by a real
Liquid engine with Ground Truth's autoescaping and filters.

A labeling task input is the review one with ``"task": "label"`` and ``labelUnderReview`` either the model's
suggestion (``source: "model"``) or null (docs/contracts.md, docs/templates.md). The review mode must not change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fieldlabel.ui.preview import render_task
from fieldlabel.ui.render import build_review_template
from fieldlabel.ui.task_input import build_labeling_task_input, build_review_task_input
from fieldlabel.ui.taxonomy import parse_taxonomy

from tests.unit.ui.ui_fixtures import by_id, parse_html, review_line, taxonomy_document

SOURCE = (Path(__file__).resolve().parents[3] / "ui_templates" / "expert-review.liquid.html").read_text()


def labeling_task_input(doc: dict[str, Any], suggestion: dict[str, Any] | None) -> dict[str, Any]:
    """The labeling job's task input as the real pre-annotation code builds it from a labeling manifest line
    (``"task": "label"``, with the model's suggestion ``{label, confidence, source: "model"}`` or none)."""
    line = review_line("quercus-robur")
    line["task"] = "label"
    if suggestion is None:
        line.pop("label-under-review")
    else:
        line["label-under-review"] = {"source": "model", **suggestion}
    return build_labeling_task_input(line, parse_taxonomy(doc))


def _render(doc: dict[str, Any], task: dict[str, Any]) -> str:
    return render_task(build_review_template(SOURCE, parse_taxonomy(doc)), task)


def _ids(elements: list[Any], *ids: str) -> list[str]:
    return [e.attrs["id"] for e in elements if e.attrs.get("id") in ids]


def _decisions(elements: list[Any]) -> list[str]:
    return [e.attrs["value"] for e in elements if e.tag == "input" and e.attrs.get("name") == "fl-decision"]


def test_model_suggestion_shows_species_confidence_and_one_click_confirm() -> None:
    # Given the model suggests Acer alba at 0.874 among 400 species
    doc = taxonomy_document(400)
    label = doc["labels"][21]["label"]
    page = _render(doc, labeling_task_input(doc, {"label": label, "confidence": 0.874}))
    elements = parse_html(page)

    # Then the suggestion card says "Model suggestion: <species> (87 % confident)" with a one-click Confirm
    card = by_id(elements, "fl-suggestion")
    text = " ".join(card.text.split())
    assert f"Model suggestion: {doc['labels'][21]['display_name']} (87 % confident)" in text
    assert by_id(elements, "fl-under-review-label").text == label
    assert by_id(elements, "fl-confirm-suggestion").tag == "button"
    # and the three decisions and the picker are there to correct it; the review card is not
    assert _decisions(elements) == ["confirm", "correct", "cannot_tell"]
    assert by_id(elements, "fl-search").attrs["role"] == "combobox"
    assert "Label to check" not in page
    assert not _ids(elements, "fl-no-suggestion")
    # and the whole taxonomy reaches the picker's data
    task = json.loads(by_id(elements, "fl-task-input").text)
    assert len(task["taxonomy"]) == 400 and task["task"] == "label"
    assert task["labelUnderReview"]["source"] == "model"
    # the submit button names the job
    assert [e.text.strip() for e in elements if e.tag == "crowd-button"] == ["Submit label"]


def test_no_suggestion_shows_the_picker_only() -> None:
    # Given a photo the model has no suggestion for (first batch, or not scored)
    doc = taxonomy_document(300)
    page = _render(doc, labeling_task_input(doc, None))
    elements = parse_html(page)

    # Then there is no suggestion, no confirm, and the picker is the task
    by_id(elements, "fl-no-suggestion")
    assert "Model suggestion" not in page
    assert not _ids(elements, "fl-confirm-suggestion", "fl-suggestion")
    assert _decisions(elements) == ["correct", "cannot_tell"]
    assert "Pick" in by_id(elements, "fl-no-suggestion").text or "pick" in by_id(elements, "fl-no-suggestion").text
    labels = [e for e in elements if e.tag == "label" and e.attrs.get("for") == "fl-search"]
    assert labels and labels[0].text.startswith("Species")
    task = json.loads(by_id(elements, "fl-task-input").text)
    assert task["labelUnderReview"] is None and len(task["taxonomy"]) == 300


def test_suggestion_without_confidence_shows_no_number() -> None:
    doc = taxonomy_document(10)
    page = _render(doc, labeling_task_input(doc, {"label": doc["labels"][0]["label"], "confidence": None}))
    elements = parse_html(page)
    assert "% confident" not in page
    assert "Model suggestion:" in by_id(elements, "fl-suggestion").text


def test_review_mode_is_unchanged_by_the_labeling_modes() -> None:
    # Given a review line (no task marker): the review card, badge and wording of the review job
    doc = taxonomy_document(20)
    taxonomy = parse_taxonomy(doc)
    page = render_task(build_review_template(SOURCE, taxonomy), build_review_task_input(review_line(), taxonomy))
    elements = parse_html(page)
    assert "Label to check" in page and "Model suggestion" not in page
    assert _decisions(elements) == ["confirm", "correct", "cannot_tell"]
    assert by_id(elements, "fl-confidence").text == "62%"
    assert [e.text.strip() for e in elements if e.tag == "crowd-button"] == ["Submit review"]
    assert not _ids(elements, "fl-confirm-suggestion", "fl-suggestion", "fl-no-suggestion")


def test_the_form_submits_only_the_review_input_in_every_mode() -> None:
    doc = taxonomy_document(5)
    for suggestion in (None, {"label": doc["labels"][1]["label"], "confidence": 0.9}):
        elements = parse_html(_render(doc, labeling_task_input(doc, suggestion)))
        in_form = [e for e in elements if "crowd-form" in e.ancestors and "name" in e.attrs]
        assert [(e.tag, e.attrs["name"], e.attrs.get("type")) for e in in_form] == [("input", "review", "hidden")]
        # the one-click confirm sits outside the form, so crowd-form submits nothing else
        assert all("crowd-form" not in e.ancestors for e in elements if e.attrs.get("id") == "fl-confirm-suggestion")


def test_hostile_suggestion_display_name_stays_text() -> None:
    doc = taxonomy_document(5)
    doc["labels"][0]["display_name"] = '<img src=x onerror="window.__pwned=1"> {{ 7 * 7 }}'
    page = _render(doc, labeling_task_input(doc, {"label": doc["labels"][0]["label"], "confidence": 0.5}))
    elements = parse_html(page)
    assert not [e for e in elements if "onerror" in e.attrs]
    assert by_id(elements, "fl-under-review-name").text == '<img src=x onerror="window.__pwned=1"> {{ 7 * 7 }}'
