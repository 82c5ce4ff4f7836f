"""A taxonomist's answer through Label Studio's own labeling page, in headless Chromium, fully offline.

The local Label Studio server (fixture ``label_studio``) serves its real front end; the test signs in as the admin,
opens a task of a batch the backend submitted, searches the species picker (hundreds of taxa), picks one and
presses Submit. The answer must reach the export, the consolidation and the output manifest. Every request that is
not to 127.0.0.1 is aborted and recorded, so the labeling page is shown to load nothing from the internet.

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

import boto3
import pytest
from fieldlabel.labeling.label_studio.backend import LabelStudioBackend, LabelStudioSettings
from fieldlabel.labeling.label_studio.client import LabelStudioClient
from fieldlabel.labeling.label_studio.completion import batch_status, finish_batch
from moto import mock_aws

from localrun.labelstudio import LabelStudioServer

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/label-studio-labeling-page.png")
UNKNOWN = "not-a-tree-or-cannot-tell"
# Hundreds of taxa, as in a real flora; the one to find is among them.
LABELS = tuple((f"genus{i:03d}-species", f"Genus{i:03d} species{i:03d} (tree {i})") for i in range(400)) + (
    ("fagus-sylvatica", "Fagus sylvatica (beech)"),)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium)"
    ),
]


class _PhotoHandler(http.server.SimpleHTTPRequestHandler):
    # The labeling page loads the image cross-origin (like a presigned S3 URL, which S3's CORS rule allows).
    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture()
def photo_site(tmp_path: Path) -> Iterator[str]:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1200, 800), (170, 200, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((560, 350, 640, 800), fill=(95, 70, 50))
    draw.ellipse((350, 80, 850, 450), fill=(40, 110, 45))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    (tmp_path / "photo.jpg").write_bytes(buf.getvalue())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_PhotoHandler, directory=str(tmp_path)))
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
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        try:
            yield instance
        finally:
            instance.close()


def _signed_in_page(browser: Any, server: LabelStudioServer) -> tuple[Any, list[str]]:
    """A page signed in as the server's admin; every request not to 127.0.0.1 is aborted and recorded."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    # A hang guard, not a speed limit: on a loaded 2-core machine the Label Studio front end can take half a minute.
    page.set_default_timeout(180_000)
    outside: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(f"{server.url}/user/login/")
    page.fill("input[name=email]", server.email)
    page.fill("input[name=password]", server.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    return page, outside


def test_a_taxonomist_searches_picks_and_submits_and_the_answer_reaches_the_manifest(
    label_studio: LabelStudioServer, browser: Any, photo_site: str
) -> None:
    client = LabelStudioClient(label_studio.url, label_studio.token)
    backend = LabelStudioBackend(LabelStudioSettings(
        project="flbrowser", taxonomy_hash="b0b0b0b0b0b0b0b0", labels=LABELS, unknown_label=UNKNOWN,
        output_path="s3://artifacts/ls-output/", annotators_per_photo=1))
    line = {"source-ref": "s3://copies/photo.jpg", "photo-id": "sha256:browser",
            "field": {"site_id": "A7", "notes": "by the pond"}}
    batch_id = "b-browser-" + photo_site.rsplit(":", 1)[1]  # a batch of its own per photo server
    submitted = backend.submit_batch(client, stage="labeling", batch_id=batch_id, lines=[line],
                                     image_url=lambda ref: f"{photo_site}/photo.jpg")
    (task_id,) = submitted.task_ids

    page, outside = _signed_in_page(browser, label_studio)
    page.goto(f"{label_studio.url}/projects/{submitted.project_id}/data?task={task_id}")
    page.locator(".lsf-richtext__line", has_text="Site: A7 · Notes: by the pond").wait_for()
    page.wait_for_function("[...document.images].some(i => i.src.endsWith('/photo.jpg') && i.naturalWidth > 0)")
    picker = page.locator(".ant-select").filter(has_text="Search the species list")
    picker.click()
    search = page.get_by_test_id("taxonomy-search")
    search.fill("beech")
    beech = page.get_by_text("Fagus sylvatica (beech)")
    beech.wait_for()
    # The search filtered the list: another taxon's entry is gone while the match is shown.
    page.get_by_text("Genus123 species123 (tree 123)").wait_for(state="detached")
    beech.click()
    page.keyboard.press("Escape")
    page.screenshot(path=str(SCREENSHOT))
    with page.expect_response(lambda r: r.request.method == "POST"
                              and f"/api/tasks/{task_id}/annotations" in r.url) as posted:
        page.get_by_role("button", name="Submit").click()
    assert posted.value.status == 201, posted.value.text()
    assert outside == []

    assert batch_status(client, submitted.project_id, batch_id, 1).complete
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        job = backend.job_name(batch_id)
        finish_batch(client, s3, project_id=submitted.project_id, batch_id=batch_id, job_name=job,
                     output_uri=backend.output_uri(job), labels=[label for label, _ in LABELS],
                     unknown_label=UNKNOWN)
        body = s3.get_object(Bucket="artifacts", Key=backend.output_uri(job).split("/", 3)[3])["Body"].read()
    (out,) = [json.loads(x) for x in body.decode().splitlines()]
    labeled = backend.parse_output_line(out)
    assert (labeled.photo_id, labeled.label, labeled.human_annotated) == ("sha256:browser", "fagus-sylvatica", True)
    assert out["species"]["answers"] == 1
