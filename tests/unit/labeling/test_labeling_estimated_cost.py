"""The estimated cost the publish step records in the dataset statistics and the batch summary (moto)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fieldlabel.costs import BatchUsage, estimate_batch_cost, load_assumptions, load_price_book
from fieldlabel.labeling.costing import MONTH_PREFIX, month_position
from fieldlabel.labeling.publish import PublishInputs, publish_dataset
from fieldlabel.labeling.summary import published_summary
from fieldlabel.registry.model import to_item

from tests.unit.labeling.conftest import LABELS, World

B1 = "b20261126t063000z-1a2b3c4d"
B2 = "b20261127t063000z-00000002"
B3 = "b20261201t063000z-00000003"


def _label_all(world: World, ids: list[str], human: int) -> None:
    for i, pid in enumerate(ids):
        world.ddb.update_item(
            TableName="t-photos", Key={"photo_id": {"S": pid}},
            UpdateExpression="SET #s = :l, #lab = :label, human_annotated = :h, label_confidence = :c",
            ExpressionAttributeNames={"#s": "status", "#lab": "label"},
            ExpressionAttributeValues=to_item({":l": "LABELED", ":label": LABELS[i % 2], ":h": i < human,
                                               ":c": 0.9}))


def _publish(world: World, batch_id: str, *, n: int, human: int, kind: str, configuration: dict[str, Any],
             reviewed: int = 0, now: str = "2026-11-26T09:00:00.000000Z") -> tuple[dict[str, Any], dict[str, Any]]:
    ids = world.seed(batch_id, n)
    world.ddb.update_item(TableName="t-batches", Key={"batch_id": {"S": batch_id}},
                          UpdateExpression="SET kind = :k", ExpressionAttributeValues={":k": {"S": kind}})
    _label_all(world, ids, human)
    if not any(b["Name"] == "assets" for b in world.s3.list_buckets()["Buckets"]):
        world.s3.create_bucket(Bucket="assets")
        world.s3.put_object(Bucket="assets", Key="c.json", Body=b"{}")
        world.s3.put_object(Bucket="assets", Key="ui.html", Body=b"<crowd-form></crowd-form>")
    inputs = PublishInputs(labels=LABELS, label_attribute="species", label_categories_uri="s3://assets/c.json",
                           ui_template_uri="s3://assets/ui.html", review_template_uri=None,
                           configuration=configuration)
    review = {"reviewed": reviewed, "corrections": 0} if reviewed else None
    dataset = publish_dataset(dynamodb=world.ddb, s3=world.s3, tables=world.tables, batch_id=batch_id,
                              inputs=inputs, labeling={"kind": kind, "labeled": n}, review=review, now_iso=now)
    stats = json.loads(world.s3.get_object(Bucket="artifacts-bucket",
                                           Key=f"datasets/{dataset['version']}/statistics.json")["Body"].read())
    return dataset, stats


def test_statistics_carry_the_estimate_with_prices_from_config(world: World) -> None:
    # Given prices in CONFIG_JSON's costs key and 3 taxonomists per photo in the job settings
    config = {"runtime": {"costs": {"prices": {"taxonomist_hour": {"usd": 36}},
                                    "assumptions": {"seconds_per_task": 10}}},
              "jobs": {"workers_per_photo": 3}}
    dataset, stats = _publish(world, B1, n=20, human=5, kind="automated", configuration=config, reviewed=4)
    cost = stats["estimated_cost"]
    # Then the block is the cost model's estimate of the version's counts with those prices
    expected = estimate_batch_cost(
        BatchUsage(photos=20, machine_labeled=15, reviewed_objects=4),
        load_price_book({"taxonomist_hour": {"usd": 36}}),
        load_assumptions({"seconds_per_task": 10, "workers_per_object": 3}),
    )
    assert cost["total_usd"] == round(expected.total_usd, 2)
    assert cost["all_human_total_usd"] == round(expected.all_human_total_usd, 2)
    assert cost["savings_usd"] == round(expected.savings_usd, 2)
    assert (cost["human_labeled"], cost["machine_labeled"], cost["reviewed"]) == (5, 15, 4)
    assert cost["prices_from"] == "CONFIG_JSON costs" and cost["workers_per_object"] == 3
    human = next(i for i in cost["line_items"] if i["key"] == "human-labeling-time")
    assert human["quantity"] == pytest.approx(5 * 3 * 10 / 3600, abs=1e-4) and human["unit_usd"] == 36
    assert {i["key"] for i in cost["line_items"]} >= {"al-training", "al-transform", "gt-objects-tier-1"}
    # And the batch record and the publish result carry the totals
    batch = world.batch(B1)
    assert batch["stats"]["estimated_cost_usd"] == cost["total_usd"] and batch["stats"]["reviewed"] == 4
    assert dataset["estimated_cost"] == cost


def test_summary_shows_the_estimate(world: World) -> None:
    dataset, stats = _publish(world, B1, n=10, human=10, kind="human_only", configuration={})
    summary = published_summary(project="treelabel", batch_id=B1, labeling={"labeled": 10, "human_labeled": 10},
                                review=None, dataset=dataset)
    figures = summary["figures"]["estimated_cost"]
    assert figures["total_usd"] == stats["estimated_cost"]["total_usd"]
    assert figures["savings_usd"] == 0.0  # a human-only batch saves nothing
    assert "al-training" not in figures["line_items"]
    assert f"Estimated cost: ${figures['total_usd']:,.2f}" in summary["message"]
    assert "prices: fieldlabel.costs defaults" in summary["message"]


def test_month_position_counts_each_batch_once(world: World) -> None:
    _, s1 = _publish(world, B1, n=6, human=6, kind="human_only", configuration={}, reviewed=2)
    _, s2 = _publish(world, B2, n=4, human=4, kind="human_only", configuration={}, now="2026-11-27T09:00:00Z")
    _, s3 = _publish(world, B3, n=3, human=3, kind="human_only", configuration={}, now="2026-12-01T09:00:00Z")
    assert s1["estimated_cost"]["objects_labeled_earlier_this_month"] == 0
    assert s2["estimated_cost"]["objects_labeled_earlier_this_month"] == 8  # B1's 6 photos + 2 review objects
    assert s3["estimated_cost"]["objects_labeled_earlier_this_month"] == 0  # a new month
    # a retried publish of B2 does not count it again, and finds the same position
    assert month_position(world.ddb, "t-batches", batch_id=B2, month="2026-11", objects=4) == 8
    item = world.ddb.get_item(TableName="t-batches", Key={"batch_id": {"S": MONTH_PREFIX + "2026-11"}})["Item"]
    assert item["objects"]["N"] == "12" and set(item["counted"]["SS"]) == {B1, B2}


def test_tier_boundary_from_the_month_position(world: World) -> None:
    world.ddb.put_item(TableName="t-batches", Item=to_item({"batch_id": MONTH_PREFIX + "2026-11",
                                                            "objects": 49_995, "counted": {"b-earlier"}}))
    _, stats = _publish(world, B1, n=10, human=10, kind="human_only", configuration={})
    tiers = {i["key"]: i["quantity"] for i in stats["estimated_cost"]["line_items"] if i["key"].startswith("gt-")}
    assert tiers == {"gt-objects-tier-1": 5, "gt-objects-tier-2": 5}


@pytest.mark.parametrize("bad", [{"prices": {"taxonomist_hour": {"usd": -1}}}, {"pricez": {}}, "cheap"])
def test_a_broken_cost_config_never_stops_the_publish(world: World, bad: Any) -> None:
    _, stats = _publish(world, B1, n=4, human=4, kind="human_only", configuration={"runtime": {"costs": bad}})
    cost = stats["estimated_cost"]
    assert cost["prices_from"].startswith("fieldlabel.costs defaults (CONFIG_JSON costs ignored: ")
    default = estimate_batch_cost(BatchUsage(photos=4, automated=False))
    assert cost["total_usd"] == round(default.total_usd, 2)


def test_an_engine_batch_pays_no_automated_labeling_instances(world: World) -> None:
    # Given a batch the own engine labeled (kind model): 12 machine labels, 8 by taxonomists
    _, stats = _publish(world, B1, n=20, human=8, kind="model", configuration={"jobs": {"workers_per_photo": 3}})
    cost = stats["estimated_cost"]
    keys = {i["key"] for i in cost["line_items"]}
    # Then the estimate has no Ground Truth training or transform instance, and the machine labels save people's time
    assert not {"al-training", "al-transform"} & keys
    assert (cost["machine_labeled"], cost["human_labeled"]) == (12, 8)
    expected = estimate_batch_cost(BatchUsage(photos=20, machine_labeled=12, engine="model"),
                                   load_price_book(), load_assumptions({"workers_per_object": 3}))
    assert cost["total_usd"] == pytest.approx(expected.total_usd, abs=0.01)
    assert cost["savings_usd"] > 0
    # And only the taxonomists' 8 photos went through a Ground Truth job: they alone pay the per-object fee and
    # count towards the month's tiers
    assert (cost["engine"], cost["backend"], cost["job_objects"]) == ("model", "groundtruth", 8)
    assert sum(i["quantity"] for i in cost["line_items"] if i["key"].startswith("gt-objects-")) == 8
    item = world.ddb.get_item(TableName="t-batches", Key={"batch_id": {"S": MONTH_PREFIX + "2026-11"}})["Item"]
    assert item["objects"]["N"] == "8"


def test_a_label_studio_batch_pays_no_ground_truth_fee(world: World) -> None:
    # Given the Label Studio backend (the own engine labels there; reviewers too)
    config = {"runtime": {"backend": "label_studio", "engine": "model"}}
    _, stats = _publish(world, B1, n=20, human=8, kind="model", configuration=config, reviewed=3)
    cost = stats["estimated_cost"]
    # Then no per-object fee on either side, nothing counted towards the month's tiers, reviewers' time still paid
    assert not any(i["key"].startswith("gt-") for i in cost["line_items"])
    assert (cost["backend"], cost["job_objects"]) == ("label_studio", 0)
    assert any(i["key"] == "review-time" for i in cost["line_items"])
    expected = estimate_batch_cost(BatchUsage(photos=20, machine_labeled=12, engine="model", backend="label_studio",
                                              reviewed_objects=3))
    assert cost["all_human_total_usd"] == round(expected.all_human_total_usd, 2)
    item = world.ddb.get_item(TableName="t-batches", Key={"batch_id": {"S": MONTH_PREFIX + "2026-11"}})["Item"]
    assert item["objects"]["N"] == "0"
