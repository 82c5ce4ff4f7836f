"""``fieldlabel report`` against moto, over dataset versions written by the workflow's publish step."""

from __future__ import annotations

import json

import pytest
from fieldlabel.costs import BatchUsage, estimate_batch_cost, load_price_book
from moto import mock_aws
from operator_fixtures import Photo, make_world, publish_batch
from PIL import Image

B1 = "b20261103t060000z-00000001"  # November, automated
B2 = "b20261110t060000z-00000002"  # November, human-only
B3 = "b20261202t060000z-00000003"  # December, automated
B_FAIL = "b20261111t060000z-000000ff"


def _photos(tag: str, human: int, machine: int) -> list[Photo]:
    return ([Photo(f"sha256:{tag}h{i:04d}", "quercus-robur", True) for i in range(human)]
            + [Photo(f"sha256:{tag}m{i:04d}", "fagus-sylvatica", False, 0.91) for i in range(machine)])


@pytest.fixture
def world(tmp_path):
    with mock_aws():
        w = make_world(tmp_path)
        # 30 audits of B1: 27 right -> accuracy 0.9
        audits = [("fagus-sylvatica", "fagus-sylvatica")] * 27 + [("fagus-sylvatica", "quercus-robur")] * 3
        publish_batch(w, B1, _photos("a", 4, 16), kind="automated", published_at="2026-11-03T12:00:00.000000Z",
                      audits=audits, reviewed=30, failed=1)
        publish_batch(w, B2, _photos("b", 10, 0), kind="human_only", published_at="2026-11-10T12:00:00.000000Z")
        audits3 = [("fagus-sylvatica", "fagus-sylvatica")] * 10
        publish_batch(w, B3, _photos("c", 2, 8), kind="automated", published_at="2026-12-02T12:00:00.000000Z",
                      audits=audits3, reviewed=10)
        w.put_batch(B_FAIL, "FAILED", kind="automated", photo_count=1300, updated_at="2026-11-11T09:00:00Z",
                    failure_reason="LabelingJobFailed: no workers")
        w.put_batch("b20261126t060000z-0000abcd", "LABELING", kind="human_only", photo_count=3)
        yield w


def _expected_total(human, machine, *, automated=True, reviewed=0, earlier=0):
    usage = BatchUsage(photos=human + machine, automated=automated, machine_labeled=machine if automated else None,
                       reviewed_objects=reviewed, objects_labeled_earlier_this_month=earlier)
    return estimate_batch_cost(usage, load_price_book())


def test_rows_per_published_batch_with_counts_accuracy_and_cost(world, cli):
    r = cli("report", "--outputs", world.outputs, "--json")
    assert r.code == 0, r.stderr
    data = r.json()
    rows = {row["batch_id"]: row for row in data["batches"]}
    assert list(rows) == [B1, B2, B3]  # published batches only, in publication order
    b1 = rows[B1]
    assert (b1["photos"], b1["human_labeled"], b1["machine_labeled"]) == (20, 4, 16)
    assert b1["automation_share"] == 0.8 and b1["not_labeled"] == 1
    assert b1["reviewed"] == 30 and b1["audited"] == 30 and b1["accuracy"] == 0.9 and b1["corrections"] == 3
    assert b1["dataset_version"].startswith("v000001-") and b1["statistics"] == "read"
    assert rows[B2]["accuracy"] is None and rows[B2]["audited"] == 0
    # Costs: B2 follows B1 in November (tiers count B1's 20 labeled + 30 review objects); B3 starts December afresh.
    e1 = _expected_total(4, 16, reviewed=30)
    e2 = _expected_total(10, 0, automated=False, earlier=50)
    e3 = _expected_total(2, 8, reviewed=10)
    for row, est in ((b1, e1), (rows[B2], e2), (rows[B3], e3)):
        assert row["cost"]["total_usd"] == pytest.approx(est.total_usd, abs=0.006)
        assert row["cost"]["all_human_total_usd"] == pytest.approx(est.all_human_total_usd, abs=0.006)
    assert rows[B2]["cost"]["objects_labeled_earlier_this_month"] == 50
    assert rows[B3]["cost"]["objects_labeled_earlier_this_month"] == 0
    t = data["total"]
    assert (t["batches"], t["photos"], t["human_labeled"], t["machine_labeled"]) == (3, 40, 16, 24)
    assert t["automation_share"] == 0.6 and t["audited"] == 40
    assert t["accuracy"] == pytest.approx((0.9 * 30 + 1.0 * 10) / 40, abs=1e-4)
    assert t["cost_usd"] == pytest.approx(e1.total_usd + e2.total_usd + e3.total_usd, abs=0.02)
    assert [f["batch_id"] for f in data["failed_batches"]] == [B_FAIL]
    assert [m["period"] for m in data["months"]] == ["2026-11", "2026-12"]


def test_table_output(world, cli):
    r = cli("report", "--outputs", world.outputs)
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["PUBLISHED", "BATCH", "KIND", "PHOTOS"]
    row1 = next(line for line in lines if B1 in line).split()
    assert row1[:8] == ["2026-11-03", B1, "automated", "20", "4", "16", "80.0%", "30"] and row1[8] == "90.0%"
    assert any(line.startswith("total") and "3 batch(es)" in line for line in lines)
    assert "Failed batches in the period: 1" in r.stdout and "no workers" in r.stdout


def test_by_month_and_period_filters(world, cli):
    r = cli("report", "--outputs", world.outputs, "--by", "month", "--json", "--since", "2026-11-05")
    data = r.json()
    assert [row["batch_id"] for row in data["batches"]] == [B2, B3]
    assert [(m["period"], m["batches"], m["photos"]) for m in data["months"]] == [("2026-11", 1, 10),
                                                                                  ("2026-12", 1, 10)]
    assert data["failed_batches"][0]["batch_id"] == B_FAIL
    # the cost of B2 still counts B1's objects (published before the period) for the month's tiers
    assert data["batches"][0]["cost"]["objects_labeled_earlier_this_month"] == 50
    r = cli("report", "--outputs", world.outputs, "--by", "month")
    assert r.code == 0 and r.stdout.splitlines()[0].split()[:2] == ["MONTH", "BATCHES"]
    assert cli("report", "--outputs", world.outputs, "--until", "2026-01-01").stdout.startswith(
        "No batch published in the period.")


def test_one_batch_in_detail_with_line_items(world, cli):
    r = cli("report", "--outputs", world.outputs, "--batch", B1.upper())
    assert r.code == 0, r.stderr
    assert f"Batch {B1} (automated)" in r.stdout
    assert "machine-label accuracy 90.0% (95% CI" in r.stdout and "30 audited" in r.stdout
    assert "taxonomists' labeling time" in r.stdout and "automated labeling training" in r.stdout
    assert "all photos to taxonomists" in r.stdout


def test_config_recomputes_every_cost_with_its_prices(world, cli, tmp_path):
    cfg = tmp_path / "prices.json"
    cfg.write_text(json.dumps({"prices": {"taxonomist_hour": {"usd": 100}}, "assumptions": {"seconds_per_task": 36}}))
    base = {r["batch_id"]: r for r in cli("report", "--outputs", world.outputs, "--json").json()["batches"]}
    r = cli("report", "--outputs", world.outputs, "--json", "--config", str(cfg))
    rows = {row["batch_id"]: row for row in r.json()["batches"]}
    # B2: 10 photos all human: 10 x 36 s = 0.1 h x $100 = $10 of labeling time (was 10 x 20 s x $50 = $2.78)
    human_item = next(i for i in rows[B2]["cost"]["line_items"] if i["key"] == "human-labeling-time")
    assert human_item["usd"] == 10.0 and human_item["quantity"] == 0.1
    assert rows[B2]["cost"]["source"] == "computed by fieldlabel report"
    assert rows[B2]["cost"]["total_usd"] == pytest.approx(base[B2]["cost"]["total_usd"] - 2.78 + 10.0, abs=0.011)


def test_cost_recorded_at_publish_is_used_as_is(world, cli):
    # A version whose statistics carry an estimated_cost (the publish step records one): the report shows it as is.
    from fieldlabel.labeling.publish import STATS_NAME

    row = cli("report", "--outputs", world.outputs, "--json", "--batch", B3).json()
    bucket, prefix = "fl-artifacts", f"datasets/{row['dataset_version']}/"
    stats = json.loads(world.s3.get_object(Bucket=bucket, Key=prefix + STATS_NAME)["Body"].read())
    stats["estimated_cost"] = {"total_usd": 12.34, "all_human_total_usd": 56.78, "savings_usd": 44.44,
                               "savings_share": 0.7827, "line_items": [], "prices_from": "CONFIG_JSON costs"}
    world.s3.put_object(Bucket=bucket, Key=prefix + STATS_NAME, Body=json.dumps(stats))
    row = cli("report", "--outputs", world.outputs, "--json", "--batch", B3).json()
    assert row["cost"]["total_usd"] == 12.34 and row["cost"]["source"] == "recorded at publish"


def test_chart_is_a_png(world, cli, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.png"
    r = cli("report", "--outputs", world.outputs, "--chart", str(out))
    assert r.code == 0, r.stderr
    assert f"Chart written to {out}" in r.stderr
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 300 and img.height > 300


def test_bad_input(world, cli, tmp_path):
    r = cli("report", "--outputs", world.outputs, "--batch", "b20991231t000000z-deadbeef")
    assert r.code == 1 and "unknown batch 'b20991231t000000z-deadbeef'" in r.stderr
    r = cli("report", "--outputs", world.outputs, "--batch", "batch-7")
    assert r.code == 2 and "not a batch id: 'batch-7'" in r.stderr
    r = cli("report", "--outputs", world.outputs, "--batch", "b20261126t060000z-0000abcd")
    assert r.code == 1 and "is not published (status LABELING)" in r.stderr
    assert cli("report", "--outputs", world.outputs, "--since", "yesterday").code == 2
    r = cli("report", "--outputs", world.outputs, "--since", "2026-12-01", "--until", "2026-11-01")
    assert r.code == 2 and "after --until" in r.stderr
    r = cli("report", "--outputs", world.outputs, "--chart", str(tmp_path / "chart.txt"))
    assert r.code == 2 and ".png" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"prices": {"taxonomist_hour": {"usd": -5}}}')
    r = cli("report", "--outputs", world.outputs, "--config", str(bad))
    assert r.code == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("report", "--outputs", world.outputs, "--config", str(tmp_path / "missing.json"))
    assert r.code == 2 and "config file not found" in r.stderr
    r = cli("report", "--outputs", world.outputs, "--batches-table", "nope")
    assert r.code == 1 and "table 'nope' not found" in r.stderr
    for line in r.stderr.splitlines():
        assert line.startswith("fieldlabel: error: ")


def test_nothing_published_yet(tmp_path, cli):
    with mock_aws():
        w = make_world(tmp_path)
        r = cli("report", "--outputs", w.outputs)
        c = cli("report", "--outputs", w.outputs, "--chart", str(tmp_path / "c.png"))
    assert r.code == 0 and r.stdout.strip() == "No batch published yet."
    assert c.code == 1 and "nothing to chart" in c.stderr


def test_recomputed_costs_follow_the_engine_the_batch_ran_with(tmp_path, cli):
    # Given an own-engine batch (kind model: 4 taxonomists' photos, 16 machine labels) and then a human-only batch,
    # both in November, recomputed with a price book without free objects
    with mock_aws():
        w = make_world(tmp_path)
        publish_batch(w, B1, _photos("a", 4, 16), kind="model", published_at="2026-11-03T12:00:00.000000Z")
        publish_batch(w, B2, _photos("b", 10, 0), kind="human_only", published_at="2026-11-10T12:00:00.000000Z")
        cfg = tmp_path / "prices.json"
        cfg.write_text(json.dumps({"prices": {"gt_free_objects_per_month": 0}}))
        r = cli("report", "--outputs", w.outputs, "--json", "--config", str(cfg))
    assert r.code == 0, r.stderr
    rows = {row["batch_id"]: row for row in r.json()["batches"]}
    prices = load_price_book({"gt_free_objects_per_month": 0})
    # Then the engine batch's machine labels pay no per-object fee (they never entered a job) ...
    b1 = rows[B1]["cost"]
    assert (b1["engine"], b1["job_objects"]) == ("model", 4)
    assert sum(i["quantity"] for i in b1["line_items"] if i["key"].startswith("gt-objects-")) == 4
    expected = estimate_batch_cost(BatchUsage(photos=20, machine_labeled=16, engine="model"), prices)
    assert b1["total_usd"] == round(expected.total_usd, 2)
    # ... and the next batch's month position counts only those 4 job objects
    assert rows[B2]["cost"]["objects_labeled_earlier_this_month"] == 4
