"""The image-classification template: built from source + taxonomy, then rendered by a real Liquid engine with
Ground Truth's filters, exactly as a labeler's browser would receive it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from fieldlabel.ui.preview import fake_presign, render_task
from fieldlabel.ui.render import TemplateBuildError, build_classification_template
from fieldlabel.ui.taxonomy import TaxonomyError

from tests.unit.ui.ui_fixtures import UNKNOWN, parse_html, taxonomy_document

SOURCE = (Path(__file__).resolve().parents[3] / "ui_templates" / "image-classification.liquid.html").read_text()
TASK_OBJECT = "s3://example-intake/labeling-copies/sha256-77aa.jpg"


def _task_input(doc: dict) -> dict:
    # What AWS's PRE-ImageMultiClass hands the template: the photo and the label slugs in category-file order.
    return {"taskObject": TASK_OBJECT, "labels": [e["label"] for e in doc["labels"]] + [doc["unknown_label"]]}


def _classifier(page: str):
    elements = parse_html(page)
    classifiers = [e for e in elements if e.tag == "crowd-image-classifier"]
    assert len(classifiers) == 1
    return elements, classifiers[0]


def test_rendered_template_keeps_aws_structure_and_runtime_inputs() -> None:
    # Given a 12-species taxonomy
    doc = taxonomy_document(12)

    # When the template is built and rendered for one task
    page = render_task(build_classification_template(SOURCE, doc), _task_input(doc))

    # Then it is AWS's structure: crowd-form > crowd-image-classifier named crowd-image-classifier
    elements, classifier = _classifier(page)
    assert "crowd-form" in classifier.ancestors
    assert classifier.attrs["name"] == "crowd-image-classifier"
    # the categories attribute decodes to exactly the labels the PRE Lambda passed, in order
    assert json.loads(classifier.attrs["categories"]) == _task_input(doc)["labels"]
    # the photo goes through grant_read_access
    assert classifier.attrs["src"] == fake_presign(TASK_OBJECT)
    assert classifier.attrs["src"].startswith("https://")
    # only the crowd elements script is loaded
    scripts = [e.attrs.get("src") for e in elements if e.tag == "script"]
    assert scripts == ["https://assets.crowd.aws/crowd-html-elements.js"]
    # every build marker is gone
    assert "<!--fieldlabel:" not in page


def test_source_template_liquid_matches_the_documented_aws_template() -> None:
    # Given the source template, before any build or render
    # Then its runtime Liquid is AWS's, character for character, so PRE-/ACS-ImageMultiClass see what they expect
    assert 'name="crowd-image-classifier"' in SOURCE
    assert 'src="{{ task.input.taskObject | grant_read_access }}"' in SOURCE
    assert 'categories="{{ task.input.labels | to_json | escape }}"' in SOURCE
    runtime_liquid = set(re.findall(r"\{\{.*?\}\}|\{%.*?%\}", SOURCE))
    assert runtime_liquid == {
        "{{ task.input.taskObject | grant_read_access }}",
        "{{ task.input.labels | to_json | escape }}",
    }


def test_instructions_name_every_species_and_the_unknown_label() -> None:
    # Given 400 species, some with https and some with s3 reference photos
    doc = taxonomy_document(400)

    # When built and rendered
    page = render_task(build_classification_template(SOURCE, doc), _task_input(doc))
    elements, _ = _classifier(page)

    # Then the species guide has one row per species with its label, scientific and common name
    guide_rows = [e for e in elements if e.tag == "tr" and "tbody" in e.ancestors]
    assert len(guide_rows) == 400
    row_text = {r.text for r in guide_rows}
    for entry in doc["labels"]:
        names = (entry["label"], entry["scientific_name"], entry["common_name"])
        assert any(all(name in t for name in names) for t in row_text)
    # the short-instructions label key lists every species and the unknown label
    key_items = [e for e in elements if e.tag == "li" and {"short-instructions", "details"} <= set(e.ancestors)]
    assert len(key_items) == 401
    assert any(UNKNOWN in e.text for e in key_items)
    # the unknown label is explained in both instruction panes
    full = next(e for e in elements if e.tag == "full-instructions")
    short = next(e for e in elements if e.tag == "short-instructions")
    assert UNKNOWN in full.text and UNKNOWN in short.text
    # reference photos: https as configured, s3 presigned at task time
    images = {e.attrs["src"] for e in elements if e.tag == "img" and "fl-ref-thumb" in e.attrs.get("class", "")}
    expected = set()
    for entry in doc["labels"]:
        if entry.get("reference_image"):
            expected.add(entry["reference_image"])
        for uri in entry.get("reference_images", []):
            expected.add(fake_presign(uri))
    assert images == expected and images


def test_configuration_text_cannot_inject_markup_or_liquid() -> None:
    # Given a taxonomy whose names carry markup, quotes and Liquid
    doc = copy.deepcopy(taxonomy_document(3))
    hostile = '<script>alert(1)</script> "quoted" {{ task.input.taskObject | grant_read_access }} {% raw %}'
    doc["labels"][1]["scientific_name"] = hostile
    doc["labels"][1]["common_name"] = "it's <b>bold</b>"

    # When built and rendered by Liquid
    page = render_task(build_classification_template(SOURCE, doc), _task_input(doc))
    elements, _ = _classifier(page)

    # Then no script element came from configuration and the names read back literally
    assert [e.tag for e in elements].count("script") == 1
    assert not [e for e in elements if e.tag == "b" and "bold" in e.text]
    guide = " ".join(e.text for e in elements if e.tag == "td")
    assert hostile in guide
    assert "it's <b>bold</b>" in guide
    # and Liquid never evaluated the configured expression: the presigned photo URL appears only in src
    assert page.count(fake_presign(TASK_OBJECT).split("?")[0]) == 1


def test_build_rejects_missing_and_unknown_markers() -> None:
    doc = taxonomy_document(3)
    with pytest.raises(TemplateBuildError, match="species-guide"):
        build_classification_template(SOURCE.replace("<!--fieldlabel:species-guide-->", ""), doc)
    with pytest.raises(TemplateBuildError, match="speciesguide"):
        build_classification_template(SOURCE + "<!--fieldlabel:speciesguide-->", doc)


@pytest.mark.parametrize(
    "image",
    ["javascript:alert(1)", "http://plain.example.org/a.jpg", 's3://bucket/key"onerror="x', "s3://bucket/{{x}}.jpg"],
)
def test_build_rejects_reference_images_that_could_escape(image: str) -> None:
    doc = copy.deepcopy(taxonomy_document(3, with_images=False))
    doc["labels"][0]["reference_image"] = image
    with pytest.raises(TaxonomyError, match="reference_images"):
        build_classification_template(SOURCE, doc)
