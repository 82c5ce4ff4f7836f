"""The standing monthly cost of the Label Studio deployment, checked against numbers computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fieldlabel.costs import (
    LabelStudioDeployment,
    StandingAssumptions,
    label_studio_monthly_cost,
    load_standing_prices,
)
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[3]

# Round prices so that every figure can be checked with pencil and paper.
ROUND = load_standing_prices({
    "fargate_vcpu_hour": {"usd": 0.04}, "fargate_gb_hour": {"usd": 0.005},
    "rds_instance_hour": {"t4g.micro": 0.02, "t4g.small": 0.04},
    "rds_storage_gb_month": {"usd": 0.1},
    "load_balancer_hour": {"usd": 0.02}, "lcu_hour": {"usd": 0.01},
    "nat_gateway_hour": {"usd": 0.05}, "nat_gb": {"usd": 0.05},
    "public_ipv4_hour": {"usd": 0.005}, "secret_month": {"usd": 0.4}, "hosted_zone_month": {"usd": 0.5},
})
MONTH = StandingAssumptions(hours_per_month=700, lcu_per_load_balancer=0.5, nat_gb_per_month=10)


def _by_key(cost):
    return {i.key: i for i in cost.line_items}


def test_default_sizing_by_hand() -> None:
    cost = label_studio_monthly_cost(LabelStudioDeployment(), ROUND, MONTH)
    items = _by_key(cost)
    # 1 task x 1 vCPU x 700 h x 0.04 = 28; 2 GB x 700 h x 0.005 = 7
    assert items["fargate-vcpu"].usd == pytest.approx(28.0)
    assert items["fargate-memory"].usd == pytest.approx(7.0)
    # single-AZ db.t4g.micro: 700 h x 0.02 = 14; 20 GiB x 0.1 = 2
    assert items["rds-instance"].usd == pytest.approx(14.0)
    assert items["rds-storage"].usd == pytest.approx(2.0)
    # two load balancers: 2 x 700 h x 0.02 = 28; 2 x 0.5 LCU x 700 h x 0.01 = 7
    assert items["load-balancers"].usd == pytest.approx(28.0)
    assert items["load-balancer-lcu"].usd == pytest.approx(7.0)
    # one NAT gateway: 700 h x 0.05 = 35; 10 GB x 0.05 = 0.5
    assert items["nat-gateways"].usd == pytest.approx(35.0)
    assert items["nat-data"].usd == pytest.approx(0.5)
    # 2 load-balancer addresses + 1 NAT address: 3 x 700 h x 0.005 = 10.5
    assert items["public-ipv4"].usd == pytest.approx(10.5)
    # 4 secrets x 0.4 = 1.6; one private zone 0.5
    assert items["secrets"].usd == pytest.approx(1.6)
    assert items["hosted-zone"].usd == pytest.approx(0.5)
    assert cost.total_usd == pytest.approx(28 + 7 + 14 + 2 + 28 + 7 + 35 + 0.5 + 10.5 + 1.6 + 0.5)


def test_sizing_scales_tasks_nat_gateways_and_a_multi_az_database() -> None:
    bigger = LabelStudioDeployment(cpu=2048, memory_mib=4096, desired_count=2, nat_gateways=2,
                                   db_instance_class="t4g.small", db_storage_gib=50, db_multi_az=True)
    items = _by_key(label_studio_monthly_cost(bigger, ROUND, MONTH))
    assert items["fargate-vcpu"].usd == pytest.approx(2 * 2 * 700 * 0.04)      # 112
    assert items["fargate-memory"].usd == pytest.approx(2 * 4 * 700 * 0.005)   # 28
    assert items["rds-instance"].usd == pytest.approx(2 * 700 * 0.04)          # standby billed: 56
    assert items["rds-storage"].usd == pytest.approx(2 * 50 * 0.1)             # both copies: 10
    assert items["nat-gateways"].usd == pytest.approx(2 * 700 * 0.05)          # 70
    assert items["public-ipv4"].usd == pytest.approx((2 + 2) * 700 * 0.005)    # 14
    assert "Multi-AZ" in items["rds-instance"].description


def test_the_studio_environment_costs_what_docs_costs_md_says() -> None:
    """The worked figure in docs/costs.md is the model's answer for the shipped 'studio' sizing at default prices."""
    block = json.loads((ROOT / "cdk.json").read_text())["context"]["environments"]["studio"]["label_studio"]
    cost = label_studio_monthly_cost(LabelStudioDeployment.from_config_block(block))
    assert round(cost.total_usd, 2) == 132.01
    assert "**$132.01 per month**" in (ROOT / "docs" / "costs.md").read_text()
    assert set(cost.unconfirmed_prices) == {i.key for i in cost.line_items}  # none of them read on an AWS page


def test_config_block_keys_map_onto_the_deployment() -> None:
    d = LabelStudioDeployment.from_config_block({
        "image": "heartexlabs/label-studio:1.23.2", "domain_name": "labels.example.org", "cpu": 2048,
        "memory_mib": 4096, "desired_count": 2, "nat_gateways": 2,
        "database": {"instance_class": "t4g.small", "allocated_storage_gib": 40, "multi_az": True},
    })
    assert (d.cpu, d.memory_mib, d.desired_count, d.nat_gateways) == (2048, 4096, 2, 2)
    assert (d.db_instance_class, d.db_storage_gib, d.db_multi_az) == ("t4g.small", 40, True)
    assert LabelStudioDeployment.from_config_block({}) == LabelStudioDeployment()


def test_an_unpriced_database_class_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"no price for db\.r7g\.large"):
        label_studio_monthly_cost(LabelStudioDeployment(db_instance_class="r7g.large"))
    priced = load_standing_prices({"rds_instance_hour": {"r7g.large": 0.25}})
    assert "t4g.micro" in priced.rds_instance_hour  # merged, not replaced
    cost = label_studio_monthly_cost(LabelStudioDeployment(db_instance_class="r7g.large"), priced)
    assert _by_key(cost)["rds-instance"].usd == pytest.approx(730 * 0.25)


def test_bad_overrides_fail_validation() -> None:
    with pytest.raises(ValidationError):
        load_standing_prices({"nat_gb": {"usd": -1}})
    with pytest.raises(ValidationError):
        LabelStudioDeployment(desired_count=0)
