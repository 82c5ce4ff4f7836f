"""The demo on a labeled folder (``--photos DIR``): the sub-folder names become the taxonomy the app is synthesized
with, the photos go through the real intake, and the folder's labels are the truth the simulated taxonomists answer
from and the engine's machine labels are measured against.

The folder is made here from the demo's leaf generator (three species and a few "other" photos), so the test runs
from the repository alone. Every figure the report states is recounted from the moto tables the run left behind.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from localrun.demo import Demo, DemoOptions
from localrun.leaves import archetype, draw_leaf
from localrun.panel import PanelSettings
from localrun.samples import species_label

pytestmark = pytest.mark.slow

FOLDERS = {"Quercus robur": 60, "Betula pendula": 60, "Pinus sylvestris": 60, "other": 6}


def _labeled_folder(root: Path) -> Path:
    rng = random.Random(3)
    for i, (name, count) in enumerate(FOLDERS.items()):
        sub = root / name
        sub.mkdir(parents=True)
        kind = archetype(species_label(name), i)
        for j in range(count):
            out = io.BytesIO()
            draw_leaf(kind, random.Random(rng.getrandbits(64)), 224, 168).save(out, "JPEG", quality=80)
            (sub / f"{j}.jpg").write_bytes(out.getvalue())
    (root / "README.txt").write_text("not a sub-folder: ignored")
    return root


def test_demo_on_a_labeled_folder_learns_and_reports_what_it_measured(tmp_path: Path) -> None:
    folder = _labeled_folder(tmp_path / "labeled")
    out = io.StringIO()
    # Careful taxonomists: with about 120 expert labels, a few wrong ones would keep the 5 % bound from being
    # certified at all (the engine is right to refuse), and this test is about the demo learning, not about noise.
    options = DemoOptions(photos=None, photos_dir=folder, batches=3, seed=5, output=tmp_path / "demo-output",
                          panel=PanelSettings(taxonomist_accuracy=0.98, reviewer_accuracy=0.99, seed=5),
                          dispatch_every_seconds=1.0, timeout_seconds=1200)
    with Demo(options, out=out) as demo:
        # The taxonomy the app was synthesized with is the folder's: its sub-folder names (as labels), "other"
        # being the unknown label; cdk.json was not touched.
        assert demo._taxonomy() == ["betula-pendula", "pinus-sylvestris", "quercus-robur", demo.unknown_label]
        assert (options.output / "cdk.out" / "manifest.json").is_file()

        report = demo.run()
        h = demo.harness
        assert h is not None and demo.samples is not None
        photos = h.photos()
        truth = demo.samples.truth

        # The folder's photos went through the real intake: every distinct photo registered and labeled, and the
        # truth is the sub-folder each came from.
        labeled = {pid: p for pid, p in photos.items() if p["status"] == "LABELED"}
        assert set(labeled) == set(truth)
        assert sum(FOLDERS.values()) == sum(1 for p in demo.samples.photos if p.kind == "folder")
        assert sum(1 for t in truth.values() if t == demo.unknown_label) == FOLDERS["other"]

        # Per batch: who labeled what and the engine's accuracy against the truth, recounted from the registry.
        assert len(report.batches) == 3
        for b in report.batches:
            item = h.batch(b.batch_id)
            mine = [p for p in labeled.values() if p.get("batch_id") == b.batch_id]
            machine = [p for p in mine if p.get("label_source") == "machine" or p.get("machine_label")]
            assert b.machine_labeled == len(machine) == int(item.get("engine_machine_labeled", 0))
            assert b.human_labeled == len(mine) - len(machine)
            assert b.engine == json.loads(item["engine_summary"])
            model_label = {p["photo_id"]: p.get("machine_label") or p["label"] for p in machine}
            assert b.machine_right == sum(truth[pid] == label for pid, label in model_label.items())
            assert all(truth[p["photo_id"]] != demo.unknown_label for p in machine)  # never auto-labeled
        first, *later = report.batches
        assert first.machine_labeled == 0  # no model before the first batch
        # Later batches are labeled by models trained on the batches before them: the engine learned the leaves
        # (certifying a 5 % bound at 95 % needs about 60 error-free calibration items, so not necessarily at once).
        machine = sum(b.machine_labeled for b in later)
        right = sum(b.machine_right for b in later)
        assert machine > 0, [b.engine for b in later]
        assert right / machine >= 0.9

    text = out.getvalue()
    assert "Who labeled what, per batch" in text and "MEASURED" in text
    saved = json.loads((options.output / "report.json").read_text())
    assert [b["machine_labeled"] for b in saved["batches"]] == [b.machine_labeled for b in report.batches]
    assert saved["engine"] == "model"
