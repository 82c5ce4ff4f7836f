"""The expert-review template: built from source + taxonomy, fed the pre-annotation task input, rendered by a real
Liquid engine with Ground Truth's autoescaping and filters."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fieldlabel.ui.preview import fake_presign, render_task
from fieldlabel.ui.render import TemplateBuildError, build_review_template
from fieldlabel.ui.task_input import build_review_task_input
from fieldlabel.ui.taxonomy import parse_taxonomy

from tests.unit.ui.ui_fixtures import (
    HOSTILE_COLLECTOR,
    HOSTILE_NOTE,
    UNKNOWN,
    by_id,
    parse_html,
    review_line,
    taxonomy_document,
)

SOURCE = (Path(__file__).resolve().parents[3] / "ui_templates" / "expert-review.liquid.html").read_text()
CROWD_JS = "https://assets.crowd.aws/crowd-html-elements.js"


def _render(doc: dict[str, Any], line: dict[str, Any]) -> str:
    taxonomy = parse_taxonomy(doc)
    return render_task(build_review_template(SOURCE, taxonomy), build_review_task_input(line, taxonomy))


def test_task_data_reaches_the_script_as_parseable_json_with_all_400_species() -> None:
    # Given 400 species and a review line
    doc = taxonomy_document(400)
    line = review_line("quercus-robur")

    # When rendered
    elements = parse_html(_render(doc, line))

    # Then the task-input node decodes (as textContent would) to JSON holding the whole picker list
    task = json.loads(by_id(elements, "fl-task-input").text)
    assert len(task["taxonomy"]) == 400
    assert [t["label"] for t in task["taxonomy"]] == [e["label"] for e in doc["labels"]]
    assert task["labelUnderReview"]["label"] == "quercus-robur"
    assert task["field"]["notes"] == HOSTILE_NOTE
    # and the build-time copy the script falls back on has the same 400 species
    baked = json.loads(by_id(elements, "fl-taxonomy-baked").text)
    assert [t["label"] for t in baked] == [t["label"] for t in task["taxonomy"]]
    assert by_id(elements, "fl-app").attrs["data-unknown-label"] == UNKNOWN


def test_hostile_field_metadata_is_escaped_everywhere() -> None:
    # Given collector text with a script, an event handler, quotes and Liquid
    page = _render(taxonomy_document(20), review_line())
    elements = parse_html(page)

    # Then the only scripts are the crowd loader and the template's own inline script
    scripts = [e for e in elements if e.tag == "script"]
    assert [s.attrs.get("src") for s in scripts] == [CROWD_JS, None]
    assert "__pwned" not in scripts[1].text
    # no element was created from the notes, and the notes read back verbatim as text
    assert not [e for e in elements if e.tag == "img" and "onerror" in e.attrs]
    assert by_id(elements, "fl-notes").text == HOSTILE_NOTE
    assert any(e.tag == "dd" and e.text == HOSTILE_COLLECTOR for e in elements)
    assert not [e for e in elements if e.tag == "b" and e.text == "bold"]
    # the raw markup never appears unescaped in the page source
    assert "<script>window.__pwned" not in page
    assert "</script><script>" not in page


def test_photo_and_label_under_review_are_shown() -> None:
    # Given a machine label with confidence 0.62
    elements = parse_html(_render(taxonomy_document(20), review_line("quercus-robur")))

    # Then the photo src is the presigned URL and the label, its display name, source and confidence are shown
    assert by_id(elements, "fl-photo").attrs["src"] == fake_presign(
        "s3://example-intake/labeling-copies/sha256-0a1b2c3d.jpg"
    )
    assert by_id(elements, "fl-under-review-name").text.strip() == "Quercus robur (pedunculate oak)"
    assert by_id(elements, "fl-under-review-label").text == "quercus-robur"
    assert by_id(elements, "fl-confidence").text == "62%"
    badges = [e.text for e in elements if e.tag == "span" and "fl-badge" in e.attrs.get("class", "")]
    assert badges == ["machine"]


def test_human_label_without_confidence_outside_taxonomy() -> None:
    # Given a human label the current taxonomy no longer has, with no confidence
    line = review_line("ulmus-procera")
    line["label-under-review"] = {"label": "ulmus-procera", "confidence": None, "source": "human"}
    page = _render(taxonomy_document(20), line)
    elements = parse_html(page)

    # Then the page says so instead of inventing a number or a name
    assert by_id(elements, "fl-confidence").text == "not recorded"
    assert [e.text for e in elements if e.tag == "span" and "fl-badge" in e.attrs.get("class", "")] == ["human"]
    assert "not in the current species list" in page


def test_field_record_shows_coordinates_even_at_zero() -> None:
    # Given a photo taken at 0,0 (falsy in Python, truthy in Liquid)
    line = review_line()
    line["field"] = {"latitude": 0.0, "longitude": 0.0}
    elements = parse_html(_render(taxonomy_document(5), line))

    # Then the place row is there with a map link to 0,0
    field = by_id(elements, "fl-field")
    assert "Place" in field.text and "0.0, 0.0" in field.text
    links = [e.attrs["href"] for e in elements if e.tag == "a" and "openstreetmap" in e.attrs.get("href", "")]
    assert links == ["https://www.openstreetmap.org/?mlat=0.0&mlon=0.0#map=15/0.0/0.0"]


def test_crowd_form_submits_only_the_review_input() -> None:
    elements = parse_html(_render(taxonomy_document(5), review_line()))
    in_form = [e for e in elements if "crowd-form" in e.ancestors and "name" in e.attrs]
    assert [(e.tag, e.attrs["name"], e.attrs.get("type")) for e in in_form] == [("input", "review", "hidden")]
    buttons = [e for e in elements if e.tag == "crowd-button"]
    assert len(buttons) == 1 and buttons[0].attrs["form-action"] == "submit"


def test_template_never_assigns_task_data_to_inner_html_and_loads_nothing_else() -> None:
    # The script builds every node with createElement/textContent; no stylesheet or script from elsewhere.
    script = SOURCE[SOURCE.index("<script>\n") :]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script
    urls = re.findall(r'(?:src|href)="(https?://[^"/]+/)', SOURCE)
    assert urls == [CROWD_JS[: CROWD_JS.index("/", 8) + 1], "https://www.openstreetmap.org/"]
    assert "<link" not in SOURCE and "@import" not in SOURCE


def test_review_reference_photos_are_inert_until_cloned() -> None:
    # Given species with https and s3 reference photos
    doc = taxonomy_document(30)
    page = _render(doc, review_line())
    elements = parse_html(page)

    # Then every reference photo sits inside the <template>, s3 ones presigned
    refs = [e for e in elements if e.tag == "img" and "fl-ref-photo" in e.attrs.get("class", "")]
    assert refs and all("template" in e.ancestors for e in refs)
    srcs = {e.attrs["src"] for e in refs}
    assert fake_presign("s3://example-artifacts/reference/quercus-robur.jpg") in srcs
    assert "https://herbarium.example.org/ref/quercus-robur.jpg" in srcs


def test_hostile_taxonomy_names_stay_text_in_review_page() -> None:
    doc = copy.deepcopy(taxonomy_document(5))
    doc["labels"][2]["scientific_name"] = "</div><script>x()</script>{{ task.input.photoId }}"
    doc["labels"][2]["display_name"] = "evil </template><img src=x onerror=y()>"
    page = _render(doc, review_line())
    elements = parse_html(page)
    assert [e.tag for e in elements].count("script") == 2
    assert not [e for e in elements if "onerror" in e.attrs]
    baked = json.loads(by_id(elements, "fl-taxonomy-baked").text)
    assert baked[2]["scientificName"] == "</div><script>x()</script>{{ task.input.photoId }}"


def test_build_requires_review_markers() -> None:
    with pytest.raises(TemplateBuildError, match="taxonomy-json"):
        build_review_template(SOURCE.replace("<!--fieldlabel:taxonomy-json-->", ""), taxonomy_document(3))
