"""``fieldlabel evaluate`` end to end on a small generated folder: the real ONNX embedder, the real engine."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

SPECIES = {"redcircle": (200, 40, 40), "greentri": (40, 170, 60), "bluestripe": (40, 70, 200),
           "yellowsq": (220, 200, 30)}


def _photo(kind: str, seed: int) -> Image.Image:
    """A 96 px photo whose species is learnable from shape and colour, varied in position, size and background."""
    rng = random.Random(seed)
    bg = tuple(rng.randrange(90, 160) for _ in range(3))
    img = Image.new("RGB", (96, 96), bg)
    d = ImageDraw.Draw(img)
    colour = tuple(max(0, min(255, c + rng.randrange(-25, 26))) for c in SPECIES[kind])
    cx, cy, r = rng.randrange(30, 66), rng.randrange(30, 66), rng.randrange(16, 28)
    if kind == "redcircle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == "greentri":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif kind == "bluestripe":
        for x in range(0, 96, 12):
            d.rectangle((x, 0, x + 5, 95), fill=colour)
    else:
        a = rng.random() * math.pi / 4
        pts = [(cx + r * math.cos(a + k * math.pi / 2), cy + r * math.sin(a + k * math.pi / 2)) for k in range(4)]
        d.polygon(pts, fill=colour)
    for _ in range(40):  # speckle, so no two photos are near-duplicates
        x, y = rng.randrange(96), rng.randrange(96)
        d.point((x, y), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labeled")
    for i, kind in enumerate(SPECIES):
        (root / kind).mkdir()
        for j in range(40):
            _photo(kind, 1000 * i + j).save(root / kind / f"{j:02d}.jpg", quality=92)
    # a byte-identical copy, folded as intake folds it
    (root / "redcircle" / "copy.jpg").write_bytes((root / "redcircle" / "00.jpg").read_bytes())
    return root


@pytest.fixture(autouse=True)
def single_view_lite0(monkeypatch):
    """The fastest committed spec (one Lite0 view) keeps the test short; the code path is the deployment's."""
    monkeypatch.setenv("FIELDLABEL_EMBEDDING_SPEC", "lite0")


def test_evaluate_prints_the_table_and_automates_later_batches(cli, folder, tmp_path) -> None:
    chart = tmp_path / "evaluate.png"
    res = cli("evaluate", str(folder), "--batches", "3", "--orders", "1", "--jobs", "1", "--min-examples", "5",
              "--cache", str(tmp_path / "cache"), "--chart", str(chart))
    assert res.code == 0, res.stderr
    assert "160 photos of 4 species (1 byte-identical copies folded)" in res.stderr
    lines = res.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["batch", "photos"])
    rows = [ln.split() for ln in lines[start + 2:start + 5]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][2] == "0.0%"  # batch 1: all human
    assert float(rows[2][2].rstrip("%")) > 0  # the model labels part of batch 3
    assert "automation share (batches 2+)" in res.stdout and "saving" in res.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "cache").glob("effnet-lite0-*.npz"))


def test_evaluate_json_and_cache_reuse(cli, folder, tmp_path, monkeypatch) -> None:
    args = ("evaluate", str(folder), "--batches", "3", "--orders", "2", "--jobs", "1", "--min-examples", "5",
            "--cache", str(tmp_path / "cache"), "--json")
    first = cli(*args)
    assert first.code == 0, first.stderr
    # the second run must not embed anything: the cache holds every photo
    monkeypatch.setattr("fieldlabel_cli.evaluate.embed_paths",
                        lambda *a, **k: pytest.fail("embedded a cached photo"))
    second = cli(*args)
    assert second.code == 0, second.stderr
    data = second.json()
    assert data == first.json() | {"embedding_seconds": data["embedding_seconds"]}
    assert data["photos"] == 160 and data["species"] == 4 and data["orders"] == 2
    b1, b2, b3 = data["batches"]
    assert b1["auto_share"] == 0 and b1["machine_labels"] == 0
    assert b3["machine_labels"] > 0 and b3["machine_accuracy"] >= 0.9
    assert b3["cost_usd"] < b3["human_only_usd"]
    assert b3["certified_bound"] is not None and b3["certified_bound"] <= 0.05


def test_evaluate_usage_errors(cli, tmp_path) -> None:
    (tmp_path / "only").mkdir()
    _photo("redcircle", 1).save(tmp_path / "only" / "a.jpg")
    res = cli("evaluate", str(tmp_path))
    assert res.code == 2 and "one sub-folder of photos per species" in res.stderr
    assert cli("evaluate", str(tmp_path / "missing")).code == 2
    res = cli("evaluate", str(tmp_path), "--batches", "1")
    assert res.code == 2 and "--batches must be at least 2" in res.stderr
    res = cli("evaluate", str(tmp_path), "--alpha", "1.5")
    assert res.code == 2 and "alpha" in res.stderr
