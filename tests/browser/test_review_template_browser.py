"""Drive the built and rendered expert-review template in headless Chromium, fully offline.

The page is rendered the way Ground Truth renders it (fieldlabel.ui.preview: Liquid with autoescape and the GT
filters), served from 127.0.0.1, and gets an offline stand-in for crowd-html-elements.js through page.route. Every
other non-local request is aborted, so the test proves the template loads nothing from the internet.

Requires Debian's chromium at /usr/bin/chromium (``apt-get install -y chromium``); skipped when it is absent.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fieldlabel.ui.render import build_review_template
from fieldlabel.ui.task_input import build_review_task_input
from fieldlabel.ui.taxonomy import parse_taxonomy

from tests.unit.ui.test_ui_labeling_template import labeling_task_input
from tests.unit.ui.ui_fixtures import HOSTILE_NOTE, UNKNOWN, review_line, taxonomy_document

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
STUB = Path(__file__).with_name("crowd_stub") / "crowd-html-elements.js"
CROWD_JS = "https://assets.crowd.aws/crowd-html-elements.js"
SCREENSHOT = Path("/tmp/expert-review-ui.png")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium)"
    ),
]


def _photo_jpeg() -> bytes:
    # A stand-in field photo: sky, a trunk and a crown, big enough that zooming matters.
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (2400, 1600), (170, 200, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 1250, 2400, 1600), fill=(90, 140, 70))
    draw.rectangle((1120, 700, 1280, 1350), fill=(95, 70, 50))
    draw.ellipse((700, 150, 1700, 900), fill=(40, 110, 45))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[str]:
    """Serve tmp_path on 127.0.0.1 at a random port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            yield instance
        finally:
            instance.close()


def _open_review_page(
    browser: Any, site: str, tmp_path: Path, taxonomy_doc: dict[str, Any], line: dict[str, Any], *, photo: bool = True,
    task_input: dict[str, Any] | None = None,
):
    from fieldlabel.ui.preview import render_task

    taxonomy = parse_taxonomy(taxonomy_doc)
    built = build_review_template((ROOT / "ui_templates" / "expert-review.liquid.html").read_text(), taxonomy)
    task_input = task_input or build_review_task_input(line, taxonomy)
    if photo:
        (tmp_path / "photo.jpg").write_bytes(_photo_jpeg())

    def presign(uri: str) -> str:
        # grant_read_access stand-in: the task photo is served locally, reference photos are not served at all.
        return f"{site}/photo.jpg?sig=test" if uri == line["source-ref"] else f"{site}/missing-reference.jpg"

    (tmp_path / "task.html").write_text(render_task(built, task_input, presign=presign))

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url == CROWD_JS:
            route.fulfill(status=200, content_type="application/javascript", body=STUB.read_text())
        elif url.startswith(site):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", guard)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site}/task.html")
    page.wait_for_function("customElements.get('crowd-form') !== undefined")
    if photo:
        page.wait_for_function("document.getElementById('fl-photo').naturalWidth > 0")
    return page, outside, errors


def _submissions(page: Any) -> list[Any]:
    return page.evaluate("window.__crowdSubmissions")


def test_reviewer_corrects_species_and_answer_matches_contract(browser: Any, site: str, tmp_path: Path) -> None:
    # Given a 400-species taxonomy and a machine label under review with hostile collector notes
    doc = taxonomy_document(400)
    page, outside, errors = _open_review_page(browser, site, tmp_path, doc, review_line("quercus-robur"))

    # Then nothing outside 127.0.0.1 was requested except configured https reference photos (aborted here), the
    # page raised no error, and the hostile notes stayed text
    assert all(url.startswith("https://herbarium.example.org/ref/") for url in outside)
    assert errors == []
    assert page.evaluate("window.__pwned") is None
    assert page.inner_text("#fl-notes") == HOSTILE_NOTE
    assert page.locator("#fl-options li").count() == 60
    assert page.locator("crowd-button").count() == 1
    assert "of 400" in page.inner_text("#fl-count")

    # When the reviewer submits without a decision, the form refuses and says why
    page.click("#fl-submit")
    assert "Choose Confirm, Correct or Cannot tell" in page.inner_text("#fl-error")
    assert _submissions(page) == []

    # When they choose Correct but no species, the form still refuses
    page.check("#fl-decision-correct")
    page.click("#fl-submit")
    assert "Pick the correct species" in page.inner_text("#fl-error")
    assert _submissions(page) == []

    # When they search by common name and pick with the keyboard
    page.fill("#fl-search", "sessile oak")
    options = page.locator("#fl-options li")
    assert options.count() == 1
    assert options.first.get_attribute("data-label") == "quercus-petraea"
    page.press("#fl-search", "Enter")
    assert "Quercus petraea" in page.inner_text("#fl-selected")

    # And they zoom the photo in, add a comment and submit
    page.click("#fl-zoom-in")
    assert page.evaluate("getComputedStyle(document.getElementById('fl-photo')).transform") != "none"
    page.fill("#fl-comment", 'Acorns sessile, leaf stalk 1.5 cm; "petraea" <sure>')
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.click("#fl-submit")

    # Then crowd-form submitted exactly one object holding only the review
    submissions = _submissions(page)
    assert len(submissions) == 1
    (answer,) = submissions[0]
    assert set(answer) == {"review"}
    review = json.loads(answer["review"])
    assert review == {
        "decision": "correct",
        "species": "quercus-petraea",
        "comment": 'Acorns sessile, leaf stalk 1.5 cm; "petraea" <sure>',
    }
    page.close()


def test_scientific_name_search_is_keyboard_navigable(browser: Any, site: str, tmp_path: Path) -> None:
    # Given the review page with 400 species
    page, _, errors = _open_review_page(browser, site, tmp_path, taxonomy_document(400), review_line("acer-robur"))

    # When the reviewer types a genus and moves down the list with the arrow keys
    page.focus("#fl-search")
    page.keyboard.type("Quercus")
    labels = page.eval_on_selector_all("#fl-options li", "els => els.map(e => e.dataset.label)")
    assert labels and all(label.startswith("quercus-") for label in labels)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    active_id = page.get_attribute("#fl-search", "aria-activedescendant")
    chosen = page.get_attribute(f"#{active_id}", "data-label")
    page.keyboard.press("Enter")
    page.click("#fl-submit")

    # Then the third match is the submitted species
    assert chosen == labels[2]
    assert errors == []
    (answer,) = _submissions(page)[0]
    assert json.loads(answer["review"])["species"] == chosen
    page.close()


def test_photo_zooms_and_pans_from_the_keyboard(browser: Any, site: str, tmp_path: Path) -> None:
    # Given the review page with the photo fitted to the viewer
    page, _, _ = _open_review_page(browser, site, tmp_path, taxonomy_document(10), review_line("acer-robur"))
    fitted = page.inner_text("#fl-zoom-level")

    # When the reviewer focuses the photo, zooms in twice and pans right
    page.focus("#fl-viewer")
    page.keyboard.press("+")
    page.keyboard.press("+")
    zoomed = page.inner_text("#fl-zoom-level")
    before = page.evaluate("document.getElementById('fl-photo').style.transform")
    page.keyboard.press("ArrowRight")
    after = page.evaluate("document.getElementById('fl-photo').style.transform")

    # Then the zoom level grew by 1.25 squared, panning moved the photo, and 0 fits it again
    assert int(zoomed.rstrip("%")) == pytest.approx(int(fitted.rstrip("%")) * 1.5625, abs=2)
    assert before != after
    page.keyboard.press("0")
    assert page.inner_text("#fl-zoom-level") == fitted
    page.close()


def test_unloadable_photo_is_explained_and_cannot_tell_still_works(browser: Any, site: str, tmp_path: Path) -> None:
    # Given a task whose presigned photo URL no longer works
    page, _, _ = _open_review_page(browser, site, tmp_path, taxonomy_document(10), review_line(), photo=False)

    # Then the viewer says what to do, and a cannot_tell answer can still be submitted
    page.wait_for_selector(".fl-photo-error")
    assert "could not be loaded" in page.inner_text("#fl-viewer")
    page.check("#fl-decision-cannot-tell")
    page.fill("#fl-comment", "photo link expired")
    page.click("#fl-submit")
    (answer,) = _submissions(page)[0]
    assert json.loads(answer["review"]) == {"decision": "cannot_tell", "species": "", "comment": "photo link expired"}
    page.close()


def test_confirm_and_cannot_tell_answers(browser: Any, site: str, tmp_path: Path) -> None:
    # Given the review page
    page, _, _ = _open_review_page(browser, site, tmp_path, taxonomy_document(30), review_line("fagus-robur"))

    # When the reviewer chooses Cannot tell, then Confirm, submitting each time
    page.check("#fl-decision-cannot-tell")
    page.click("#fl-submit")
    page.check("#fl-decision-confirm")
    page.click("#fl-submit")

    # Then cannot_tell carries no species and confirm names the label under review
    first, second = (json.loads(s[0]["review"]) for s in _submissions(page))
    assert first == {"decision": "cannot_tell", "species": "", "comment": ""}
    assert second == {"decision": "confirm", "species": "fagus-robur", "comment": ""}
    assert page.get_attribute("#fl-app", "data-unknown-label") == UNKNOWN
    page.close()


def test_submitted_answer_consolidates_to_the_chosen_species(browser: Any, site: str, tmp_path: Path) -> None:
    """End of the contract: the answer the page submits, fed to the post-annotation Lambda, yields that species."""
    if not (ROOT / "lambdas" / "post_annotation" / "handler.py").exists():
        pytest.skip("post_annotation not yet available")
    from tests.browser.post_annotation_bridge import consolidate_one

    # Given a reviewer who corrects the machine label to Quercus petraea in the browser
    doc = taxonomy_document(400)
    line = review_line("quercus-robur")
    page, _, _ = _open_review_page(browser, site, tmp_path, doc, line)
    page.check("#fl-decision-correct")
    page.fill("#fl-search", "Quercus petraea")
    page.press("#fl-search", "Enter")
    page.click("#fl-submit")
    (answer,) = _submissions(page)[0]
    page.close()

    # When Ground Truth hands that answer to the post-annotation Lambda
    consolidated = consolidate_one(doc, line, json.dumps(answer))

    # Then the consolidated review label is the species the reviewer chose
    assert consolidated["species-review"]["label"] == "quercus-petraea"


# ---------------------------------------------------------------------------------------- the engine's labeling job


def test_taxonomist_confirms_the_model_suggestion_in_one_click(browser: Any, site: str, tmp_path: Path) -> None:
    # Given the labeling job's task: the model suggests one of 400 species at 0.874
    doc = taxonomy_document(400)
    label = doc["labels"][21]["label"]
    task = labeling_task_input(doc, {"label": label, "confidence": 0.874})
    page, outside, errors = _open_review_page(browser, site, tmp_path, doc, review_line(), task_input=task)
    assert errors == [] and all(url.startswith("https://herbarium.example.org/ref/") for url in outside)
    assert "Model suggestion: " + doc["labels"][21]["display_name"] in page.inner_text("#fl-suggestion")
    assert "(87 % confident)" in page.inner_text("#fl-suggestion")
    assert page.evaluate("window.flReview.mode") == "suggestion"
    page.screenshot(path="/tmp/labeling-suggestion-ui.png", full_page=True)

    # When the taxonomist clicks "Confirm and submit"
    page.click("#fl-confirm-suggestion")

    # Then one answer in the review format was submitted, confirming the suggested species
    (submission,) = _submissions(page)
    (answer,) = submission
    assert set(answer) == {"review"}
    assert json.loads(answer["review"]) == {"decision": "confirm", "species": label, "comment": ""}
    page.close()


def test_taxonomist_corrects_the_suggestion_with_the_picker(browser: Any, site: str, tmp_path: Path) -> None:
    # Given a suggestion of Quercus robur among 400 species
    doc = taxonomy_document(400)
    task = labeling_task_input(doc, {"label": "quercus-robur", "confidence": 0.55})
    page, _, errors = _open_review_page(browser, site, tmp_path, doc, review_line(), task_input=task)

    # When the taxonomist searches by common name and picks another species, with a comment
    page.fill("#fl-search", "sessile oak")
    assert page.locator("#fl-options li").count() == 1
    page.press("#fl-search", "Enter")
    page.fill("#fl-comment", "acorns sessile")
    page.click("#fl-submit")

    # Then the answer corrects the suggestion to the picked species
    (answer,) = _submissions(page)[0]
    assert json.loads(answer["review"]) == {"decision": "correct", "species": "quercus-petraea",
                                            "comment": "acorns sessile"}
    assert errors == []
    page.close()


def test_without_suggestion_the_picker_is_the_task(browser: Any, site: str, tmp_path: Path) -> None:
    # Given a photo the model has no suggestion for, and 400 species
    doc = taxonomy_document(400)
    page, _, errors = _open_review_page(browser, site, tmp_path, doc, review_line(),
                                        task_input=labeling_task_input(doc, None))
    assert page.evaluate("window.flReview.mode") == "pick"
    assert page.locator("#fl-confirm-suggestion").count() == 0
    assert page.locator("#fl-decision-confirm").count() == 0
    assert page.get_attribute("#fl-picker", "aria-disabled") == "false"
    assert "of 400" in page.inner_text("#fl-count")

    # When the taxonomist submits without picking, the form refuses and says why
    page.click("#fl-submit")
    assert "Pick the species from the list" in page.inner_text("#fl-error")
    assert _submissions(page) == []

    # When they search a genus, move down with the keyboard and pick
    page.focus("#fl-search")
    page.keyboard.type("Fraxinus")
    labels = page.eval_on_selector_all("#fl-options li", "els => els.map(e => e.dataset.label)")
    assert labels and all(x.startswith("fraxinus-") for x in labels)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.screenshot(path="/tmp/labeling-pick-ui.png", full_page=True)
    page.click("#fl-submit")

    # Then the answer names the picked species (decision "correct": the species is the taxonomist's own)
    (answer,) = _submissions(page)[0]
    assert json.loads(answer["review"]) == {"decision": "correct", "species": labels[1], "comment": ""}

    # And Cannot tell is still possible
    page.check("#fl-decision-cannot-tell")
    page.click("#fl-submit")
    assert json.loads(_submissions(page)[1][0]["review"]) == {"decision": "cannot_tell", "species": "", "comment": ""}
    assert errors == []
    page.close()
