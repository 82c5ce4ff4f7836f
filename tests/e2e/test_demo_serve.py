"""``python -m localrun --serve``: a folder uploaded with the real CLI over HTTP is registered, batched and labeled."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from pathlib import Path

import boto3
import pytest
from fieldlabel_cli.context import AppContext
from fieldlabel_cli.main import run as cli_run

from localrun.harness import REGION
from localrun.iamcheck.principals import UPLOADER, acting_as
from localrun.panel import PanelSettings
from localrun.samples import generate
from localrun.serve import ServeOptions, Server

pytestmark = pytest.mark.slow


def test_upload_through_the_cli_into_the_served_demo_gets_labeled(templates, tmp_path: Path) -> None:
    options = ServeOptions(port=0, output=tmp_path / "demo-output", batch_age_seconds=1, dispatch_every_seconds=0.5,
                           poll_seconds=0.2, panel=PanelSettings(seed=3))
    out = io.StringIO()
    with Server(options, out=out, templates=templates) as server:
        worker = threading.Thread(target=server.loop, kwargs={"max_seconds": 900}, daemon=True)
        worker.start()
        try:
            assert server.ready.wait(300)
            h = server.demo.harness
            assert h is not None and server.endpoint and server.endpoint.startswith("http://127.0.0.1:")
            outputs = json.loads(server.outputs_path.read_text())
            assert outputs["IntakeBucketName"] == h.intake_bucket
            # The operator commands find the dispatcher in the same file (flush resolves it before reading the pool).
            assert outputs["DispatchFunctionName"] == server.demo.intake.dispatch_function
            demo_args = ["--endpoint-url", server.endpoint, "--outputs", str(server.outputs_path)]
            stdout, stderr = io.StringIO(), io.StringIO()
            code = cli_run(["flush", "--yes", *demo_args], ctx=AppContext(stdout=stdout, stderr=stderr))
            assert code == 0, stderr.getvalue()
            assert "Nothing is pending" in stdout.getvalue()

            folder = tmp_path / "field-day"
            samples = generate(4, ["quercus-robur", "fagus-sylvatica"], seed=5, heic=1, rotated=1, duplicates=0,
                               broken=False)
            samples.write(folder)
            stdout, stderr = io.StringIO(), io.StringIO()
            with acting_as(UPLOADER):  # a scientist with the documented upload policy (docs/uploader-policy.json)
                code = cli_run(["upload", str(folder), "--endpoint-url", server.endpoint, "--outputs",
                                str(server.outputs_path), "--prefix", "field-day"],
                               ctx=AppContext(stdout=stdout, stderr=stderr))
            assert code == 0, stderr.getvalue()

            s3 = boto3.client("s3", region_name=REGION)
            listed = {o["Key"] for o in s3.list_objects_v2(Bucket=h.intake_bucket,
                                                            Prefix="uploads/field-day/")["Contents"]}
            assert {f"uploads/field-day/{p.rel}" for p in samples.photos} <= listed
            ids = {"sha256:" + hashlib.sha256((folder / p.rel).read_bytes()).hexdigest() for p in samples.photos}

            deadline = time.monotonic() + 800
            while time.monotonic() < deadline:
                photos = h.photos()
                if ids <= set(photos) and all(photos[i]["status"] == "LABELED" for i in ids) and server.finished:
                    break
                time.sleep(0.5)
            photos = h.photos()
            assert all(photos[i]["status"] == "LABELED" for i in ids), {i: photos.get(i, {}).get("status")
                                                                          for i in ids}
            stdout, stderr = io.StringIO(), io.StringIO()
            code = cli_run(["status", "--json", *demo_args], ctx=AppContext(stdout=stdout, stderr=stderr))
            assert code == 0, stderr.getvalue()
            assert json.loads(stdout.getvalue())["photos"]["LABELED"] >= len(ids)
        finally:
            server.stop.set()
            worker.join(30)
        # The finished workflow's dataset was copied locally and holds the uploaded photos.
        manifests = list((options.output / "dataset").glob("*/dataset.manifest"))
        lines = [json.loads(x) for m in manifests for x in m.read_text().splitlines() if x]
        assert ids <= {line["photo-id"] for line in lines}
        assert any(e["status"] == "SUCCEEDED" for e in server.finished)
    text = out.getvalue()
    assert "fieldlabel upload" in text and "Workflow batch-" in text
