"""The offline demo on the Label Studio backend (``--backend label-studio``): the same run and the same report, with
the people answering in a REAL local Label Studio server (fixture ``label_studio``) instead of the Ground Truth
stand-in. The report's figures are recounted from the registry, the dataset and the server."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from localrun.demo import Demo, DemoOptions
from localrun.panel import PanelSettings
from localrun.report import LABEL_STUDIO_SIMULATED

pytestmark = pytest.mark.slow


def test_demo_on_label_studio_reports_what_the_server_and_the_registry_hold(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any, tmp_path: Path) -> None:
    from fieldlabel.labeling.label_studio.client import LabelStudioClient

    out = io.StringIO()
    options = DemoOptions(photos=24, batches=1, seed=13, output=tmp_path / "demo-output", backend="label-studio",
                          panel=PanelSettings(taxonomist_accuracy=0.85), dispatch_every_seconds=1.0,
                          timeout_seconds=600)
    with Demo(options, out=out, templates=studio_templates, label_studio=label_studio) as demo:
        report = demo.run()
        h = demo.harness
        assert h is not None and demo.samples is not None
        photos = h.photos()
        (batch_id,) = [b.batch_id for b in report.batches]
        item = h.batch(batch_id)
        client = LabelStudioClient(label_studio.url, label_studio.token)
        tasks = client.tasks_of_batch(int(item["ls_labeling_project"]), batch_id)

    assert report.backend == "label_studio" and not h.ground_truth.jobs  # no Ground Truth stand-in ran
    labeled = {pid: p for pid, p in photos.items() if p["status"] == "LABELED"}
    # Every photo the engine left to people was a task in the server, answered by the configured three people each.
    assert {t["data"]["photo_id"] for t in tasks} == {pid for pid, p in labeled.items()
                                                     if p["label_source"] != "machine"}
    assert all(len({a["completed_by"] for a in t["annotations"]}) >= 3 for t in tasks)
    (job,) = [j for j in report.jobs if j["kind"] == "taxonomists"]
    assert job == {"name": item["ls_labeling_job"], "status": "FINISHED", "kind": "taxonomists",
                   "objects": len(tasks)}
    assert report.labeled == len(labeled) and report.dataset_versions == [item["dataset_version"]]
    text = out.getvalue()
    assert "Label Studio:       " in text and "Ground Truth jobs" not in text
    assert LABEL_STUDIO_SIMULATED in text
