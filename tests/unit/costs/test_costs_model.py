"""The batch cost model, checked against numbers computed by hand (see the comments for the arithmetic)."""

from __future__ import annotations

import pytest
from fieldlabel.costs import (
    DEFAULT_PRICES,
    Assumptions,
    BatchUsage,
    ObjectTier,
    estimate_batch_cost,
    estimate_iterations,
    load_assumptions,
    load_price_book,
    tiered_object_charges,
)
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

TIERS = (ObjectTier(up_to=50_000, usd_per_object=0.08), ObjectTier(up_to=1_000_000, usd_per_object=0.04),
         ObjectTier(up_to=None, usd_per_object=0.02))

# Round prices so that every figure below can be checked with pencil and paper.
SIMPLE_PRICES = {
    "gt_tiers": [{"up_to": 50_000, "usd_per_object": 0.08}, {"up_to": None, "usd_per_object": 0.04}],
    "training_instance_hour": {"usd": 4.0},
    "transform_instance_hour": {"usd": 0.2},
    "lambda_request": {"usd": 0.0000002},
    "lambda_gb_second": {"usd": 0.00002},
    "sfn_transition": {"usd": 0.000025},
    "s3_put": {"usd": 0.000005},
    "s3_get": {"usd": 0.0000004},
    "taxonomist_hour": {"usd": 60.0},
    "reviewer_hour": {"usd": 90.0},
}
SIMPLE_ASSUMPTIONS = {
    "objects_per_iteration": 1000, "training_hours_per_iteration": 0.5, "transform_overhead_hours_per_iteration": 0.1,
    "transform_seconds_per_object": 0.036, "workers_per_object": 2, "seconds_per_task": 18,
    "review_workers_per_object": 1, "review_seconds_per_task": 36,
    "lambda_invocations_per_photo": 2, "lambda_invocations_per_batch": 10, "lambda_gb_seconds_per_invocation": 0.5,
    "sfn_transitions_per_batch": 40, "s3_puts_per_photo": 3, "s3_gets_per_photo": 5,
}


@pytest.fixture
def prices():
    return load_price_book(SIMPLE_PRICES)


@pytest.fixture
def assumptions():
    return load_assumptions(SIMPLE_ASSUMPTIONS)


def _charges(start, count, free=0):
    return [(c.tier, c.objects, pytest.approx(c.usd)) for c in tiered_object_charges(start, count, TIERS,
                                                                                        free_objects=free)]


# --- tiers ---------------------------------------------------------------------------------------------------------


def test_batch_straddling_the_50k_boundary_pays_both_tiers():
    # 49,000 already labeled this month; 2,000 more: 1,000 x 0.08 + 1,000 x 0.04 = 80 + 40
    assert _charges(49_000, 2_000) == [(1, 1_000, 80.0), (2, 1_000, 40.0)]


def test_boundaries_are_exclusive_upper_bounds():
    assert _charges(0, 50_000) == [(1, 50_000, 4_000.0)]  # objects 0..49,999 are all tier 1
    assert _charges(50_000, 10) == [(2, 10, 0.4)]  # the 50,001st object of the month is tier 2
    assert _charges(49_999, 2) == [(1, 1, 0.08), (2, 1, 0.04)]


def test_batch_spanning_three_tiers():
    # 40,000 earlier; 1,000,000 more: 10,000 x 0.08 + 950,000 x 0.04 + 40,000 x 0.02 = 800 + 38,000 + 800
    charges = _charges(40_000, 1_000_000)
    assert charges == [(1, 10_000, 800.0), (2, 950_000, 38_000.0), (3, 40_000, 800.0)]


def test_free_objects_come_first_in_the_month():
    assert _charges(0, 1_000, free=500) == [(0, 500, 0.0), (1, 500, 40.0)]
    assert _charges(300, 100, free=500) == [(0, 100, 0.0)]
    assert _charges(600, 100, free=500) == [(1, 100, 8.0)]


def test_zero_objects_cost_nothing_and_negative_is_refused():
    assert tiered_object_charges(123, 0, TIERS) == []
    with pytest.raises(ValueError):
        tiered_object_charges(-1, 5, TIERS)


# --- full estimate -------------------------------------------------------------------------------------------------


def test_hand_computed_batch_with_automated_labeling(prices, assumptions):
    # 2,000 photos, 1,200 labeled by the machine, 49,000 objects labeled earlier this month.
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_labeled=1_200,
                                         objects_labeled_earlier_this_month=49_000), prices, assumptions)
    items = {i.key: i for i in est.line_items}
    # GT fee: 1,000 x 0.08 + 1,000 x 0.04
    assert items["gt-objects-tier-1"].usd == pytest.approx(80.0)
    assert items["gt-objects-tier-2"].usd == pytest.approx(40.0)
    # iterations: ceil(2,000 / 1,000) = 2; training 2 x 0.5 h = 1 h x $4
    assert est.iterations == 2
    assert items["al-training"].quantity == pytest.approx(1.0)
    assert items["al-training"].usd == pytest.approx(4.0)
    # transform: 2 x 0.1 h + 2,000 x (2 + 1) / 2 x 0.036 s / 3600 = 0.2 + 0.03 = 0.23 h x $0.2
    assert items["al-transform"].quantity == pytest.approx(0.23)
    assert items["al-transform"].usd == pytest.approx(0.046)
    # taxonomists: 800 x 2 workers x 18 s = 8 h x $60
    assert items["human-labeling-time"].quantity == pytest.approx(8.0)
    assert items["human-labeling-time"].usd == pytest.approx(480.0)
    # Lambda: 2,000 x 2 + 10 = 4,010 requests ($0.000802), 2,005 GB-s ($0.0401)
    assert items["lambda-requests"].usd == pytest.approx(0.000802)
    assert items["lambda-duration"].usd == pytest.approx(0.0401)
    # Step Functions 40 x 0.000025; S3 6,000 PUT x 0.000005, 10,000 GET x 0.0000004
    assert items["sfn-transitions"].usd == pytest.approx(0.001)
    assert items["s3-put"].usd == pytest.approx(0.03)
    assert items["s3-get"].usd == pytest.approx(0.004)
    # totals: 120 + 4 + 0.046 + 480 + 0.075902 (infra)
    assert est.total_usd == pytest.approx(604.121902)
    # all-human: 120 + 2,000 x 2 x 18 s = 20 h x $60 = 1,200 + 0.075902; no AL compute
    assert est.all_human_total_usd == pytest.approx(1_320.075902)
    assert {i.key for i in est.all_human_line_items} >= {"human-labeling-time"}
    assert not {"al-training", "al-transform"} & {i.key for i in est.all_human_line_items}
    assert est.savings_usd == pytest.approx(715.954)
    assert est.savings_share == pytest.approx(715.954 / 1_320.075902)
    assert (est.human_labeled, est.machine_labeled) == (800, 1_200)


def test_human_only_batch_saves_nothing(prices, assumptions):
    est = estimate_batch_cost(BatchUsage(photos=800, automated=False), prices, assumptions)
    assert est.iterations == 0
    assert not any(i.key.startswith("al-") for i in est.line_items)
    # 800 x 0.08 + 800 x 2 x 18 s = 8 h x $60 + infra (1,610 req, 805 GB-s, 40 tr., 2,400 PUT, 4,000 GET)
    infra = 1_610 * 0.0000002 + 805 * 0.00002 + 40 * 0.000025 + 2_400 * 0.000005 + 4_000 * 0.0000004
    assert est.total_usd == pytest.approx(64 + 480 + infra)
    assert est.total_usd == pytest.approx(est.all_human_total_usd)
    assert est.savings_usd == pytest.approx(0.0)
    assert est.savings_share == pytest.approx(0.0)


def test_automated_batch_where_the_machine_labeled_nothing_costs_more_than_all_human(prices, assumptions):
    # The AL compute is spent even when no label clears the threshold: the saving is negative, not hidden.
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_labeled=0), prices, assumptions)
    assert est.savings_usd == pytest.approx(-(4.0 + 0.046))
    assert est.savings_share < 0


def test_explicit_iterations_drive_the_compute(prices, assumptions):
    # 5 rounds: training 2.5 h x $4 = 10; transform 5 x 0.1 + 2,000 x 3 x 0.036 / 3600 = 0.5 + 0.06 = 0.56 h x 0.2
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_share=0.5, iterations=5), prices, assumptions)
    items = {i.key: i for i in est.line_items}
    assert items["al-training"].usd == pytest.approx(10.0)
    assert items["al-transform"].quantity == pytest.approx(0.56)
    assert est.machine_labeled == 1_000


def test_review_objects_follow_the_batch_in_the_month_and_cost_reviewer_time(prices, assumptions):
    # 49,500 earlier; 400 photos take positions 49,500..49,899 (tier 1: $32); 200 reviewed objects take
    # 49,900..50,099: 100 x 0.08 + 100 x 0.04 = $12; reviewer time 200 x 36 s = 2 h x $90 = $180
    est = estimate_batch_cost(BatchUsage(photos=400, automated=False, objects_labeled_earlier_this_month=49_500,
                                         reviewed_objects=200), prices, assumptions)
    items = {i.key: i for i in est.line_items}
    assert items["gt-objects-tier-1"].usd == pytest.approx(32.0)
    assert items["gt-review-objects-tier-1"].usd == pytest.approx(8.0)
    assert items["gt-review-objects-tier-2"].usd == pytest.approx(4.0)
    assert items["review-time"].quantity == pytest.approx(2.0)
    assert items["review-time"].usd == pytest.approx(180.0)
    # review is the same with or without automated labeling
    assert "review-time" in {i.key for i in est.all_human_line_items}


def test_machine_share_rounds_half_up():
    assert BatchUsage(photos=5, machine_share=0.5).machine_count == 3
    assert BatchUsage(photos=5, machine_share=0.49).machine_count == 2
    assert BatchUsage(photos=5, machine_share=1.0).machine_count == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"photos": 10, "machine_labeled": 11},
        {"photos": 10, "machine_labeled": 1, "machine_share": 0.1},
        {"photos": 10, "automated": False, "machine_share": 0.5},
        {"photos": -1},
        {"photos": 10, "machine_share": 1.5},
    ],
)
def test_inconsistent_usage_is_refused(kwargs):
    with pytest.raises(ValidationError):
        BatchUsage(**kwargs)


def test_iterations_estimate():
    a = Assumptions(objects_per_iteration=1000)
    assert [estimate_iterations(n, a) for n in (0, 1, 1000, 1001, 5000)] == [0, 1, 1, 2, 5]


def test_empty_batch_costs_only_the_per_batch_overheads(prices, assumptions):
    est = estimate_batch_cost(BatchUsage(photos=0), prices, assumptions)
    assert est.iterations == 0
    # 10 invocations (requests + 5 GB-s) and 40 transitions
    assert est.total_usd == pytest.approx(10 * 0.0000002 + 5 * 0.00002 + 40 * 0.000025)
    assert est.savings_share == 0.0


# --- price book ----------------------------------------------------------------------------------------------------


def test_default_price_book_marks_what_could_not_be_confirmed():
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_share=0.6))
    assert set(est.unconfirmed_prices) == {
        "gt-objects-tier-1", "al-training", "al-transform", "human-labeling-time", "s3-put", "s3-get"}
    confirmed = {i.key for i in est.line_items if i.confirmed}
    assert {"lambda-requests", "lambda-duration", "sfn-transitions"} <= confirmed
    assert DEFAULT_PRICES.gt_tiers_confirmed is False
    assert [t.up_to for t in DEFAULT_PRICES.gt_tiers] == [50_000, 1_000_000, None]


def test_overrides_merge_into_the_defaults_and_keep_provenance():
    book = load_price_book({"taxonomist_hour": {"usd": 42.0}})
    assert book.taxonomist_hour.usd == 42.0
    assert book.taxonomist_hour.source == DEFAULT_PRICES.taxonomist_hour.source
    assert book.training_instance_hour == DEFAULT_PRICES.training_instance_hour


@pytest.mark.parametrize(
    "tiers",
    [
        [],
        [{"up_to": 50_000, "usd_per_object": 0.08}],  # last tier must be open-ended
        [{"up_to": None, "usd_per_object": 0.08}, {"up_to": None, "usd_per_object": 0.04}],
        [{"up_to": 100, "usd_per_object": 0.08}, {"up_to": 50, "usd_per_object": 0.04},
         {"up_to": None, "usd_per_object": 0.02}],
    ],
)
def test_malformed_tiers_are_refused(tiers):
    with pytest.raises(ValidationError):
        load_price_book({"gt_tiers": tiers})


def test_unknown_price_keys_are_refused():
    with pytest.raises(ValidationError):
        load_price_book({"taxonomist_hourly": 50})


# --- property: the tier split equals pricing every object of the month one by one ---------------------------------


@given(
    bounds=st.lists(st.integers(1, 60), min_size=0, max_size=3, unique=True).map(sorted),
    prices=st.lists(st.sampled_from([0.0, 0.01, 0.02, 0.04, 0.08]), min_size=4, max_size=4),
    start=st.integers(0, 80),
    count=st.integers(0, 80),
    free=st.integers(0, 30),
)
def test_tier_split_matches_pricing_each_object(bounds, prices, start, count, free):
    tiers = tuple(ObjectTier(up_to=b, usd_per_object=p) for b, p in zip(bounds, prices, strict=False)) + (
        ObjectTier(up_to=None, usd_per_object=prices[len(bounds)]),)

    def price_of(position: int) -> float:
        if position < free:
            return 0.0
        for tier in tiers:
            if tier.up_to is None or position < tier.up_to:
                return tier.usd_per_object
        raise AssertionError("unreachable")

    charges = tiered_object_charges(start, count, tiers, free_objects=free)
    assert sum(c.objects for c in charges) == count
    assert sum(c.usd for c in charges) == pytest.approx(sum(price_of(p) for p in range(start, start + count)))
    assert all(c.objects > 0 for c in charges)


# --- which objects pass through a Ground Truth job -----------------------------------------------------------------


def test_own_engine_machine_labels_pay_no_per_object_fee_and_no_active_learning(prices, assumptions):
    # Same batch as the hand-computed one, labeled by the own engine: the 1,200 machine labels are written to the
    # registry without a job, so only the 800 taxonomists' photos pay the fee (1,000 free positions left in tier 1
    # at 49,000: 800 x 0.08 = 64), and no automated-labeling compute runs.
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_labeled=1_200, engine="model",
                                         objects_labeled_earlier_this_month=49_000), prices, assumptions)
    items = {i.key: i for i in est.line_items}
    assert items["gt-objects-tier-1"].quantity == 800
    assert items["gt-objects-tier-1"].usd == pytest.approx(64.0)
    assert "gt-objects-tier-2" not in items
    assert est.iterations == 0 and not any(k.startswith("al-") for k in items)
    # 64 + 480 (taxonomists) + 0.075902 (infra)
    assert est.total_usd == pytest.approx(544.075902)
    # the all-human baseline still puts every photo through a job: 120 + 1,200 + infra
    assert est.all_human_total_usd == pytest.approx(1_320.075902)


def test_label_studio_backend_pays_no_per_object_fee_on_either_side(prices, assumptions):
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_labeled=1_200, engine="model", backend="label_studio",
                                         reviewed_objects=100), prices, assumptions)
    for items in (est.line_items, est.all_human_line_items):
        assert not any(i.key.startswith("gt-") for i in items)
    # reviewers' time is still paid: 100 x 1 x 36 s = 1 h x $90
    assert {i.key: i.usd for i in est.line_items}["review-time"] == pytest.approx(90.0)
    assert est.total_usd == pytest.approx(480.0 + 90.0 + 0.075902)
    assert est.all_human_total_usd == pytest.approx(1_200.0 + 90.0 + 0.075902)


def test_review_job_objects_follow_the_labeling_job_objects_in_the_month(prices, assumptions):
    # Own engine on Ground Truth: 800 job objects from position 49,500 (500 in tier 1, 300 in tier 2), then the review
    # job's 100 objects at 50,300 (tier 2).
    est = estimate_batch_cost(BatchUsage(photos=2_000, machine_labeled=1_200, engine="model", reviewed_objects=100,
                                         objects_labeled_earlier_this_month=49_500), prices, assumptions)
    items = {i.key: i for i in est.line_items}
    assert (items["gt-objects-tier-1"].quantity, items["gt-objects-tier-2"].quantity) == (500, 300)
    assert items["gt-review-objects-tier-2"].quantity == 100
    assert BatchUsage(photos=2_000, machine_labeled=1_200, engine="model").job_objects == 800
    assert BatchUsage(photos=2_000, machine_labeled=1_200).job_objects == 2_000
    assert BatchUsage(photos=2_000, automated=False, backend="label_studio", reviewed_objects=5).review_job_objects == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"photos": 10, "machine_labeled": 2, "backend": "label_studio"}, "engine 'model'"),
    ({"photos": 10, "machine_labeled": 2, "engine": "model", "iterations": 3}, "iterations must be 0"),
    ({"photos": 10, "engine": "sagemaker"}, "engine"),
])
def test_inconsistent_engine_or_backend_is_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        BatchUsage(**kwargs)
