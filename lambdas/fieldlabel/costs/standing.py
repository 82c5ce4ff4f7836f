"""What the self-hosted Label Studio deployment costs per month while it stands, labeling or not.

Pure: no AWS calls, no clock. The batch model (:mod:`fieldlabel.costs.model`) prices what each batch uses; this prices
what ``labeling.backend: label_studio`` keeps running (docs/costs.md, "Standing cost of the Label Studio backend"):

* **Fargate**: tasks x (vCPU x vCPU-hour + GB x GB-hour) x hours.
* **RDS PostgreSQL**: instance-hours of the class (twice with Multi-AZ, which bills the standby) and gp3 storage
  (twice with Multi-AZ). Automated backups up to the database's size are free; longer retention of a database that
  changes little stays within it.
* **Load balancers**: two (the taxonomists' and the pipeline's internal one), each per hour plus an assumed average
  of load-balancer capacity units.
* **NAT gateways**: per hour plus the data they process (image pulls, AWS APIs, webhooks).
* **Public IPv4 addresses**: the internet-facing load balancer's (one per Availability Zone) and each NAT gateway's.
* **Secrets Manager** (4 secrets) and the private hosted zone.

Like the batch model, every price carries its source and whether it could be confirmed, and every estimate that is
not a price is an explicit, configurable assumption.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fieldlabel.costs.model import LineItem, Price

THIRD_PARTY = "third-party summaries of the AWS pricing page (several agree); not read on an AWS page: "
AWS_EXAMPLE = "the AWS pricing page's worked example, read in a transcription of the page (not the page itself): "


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StandingPrices(_Frozen):
    """Prices of what the deployment keeps running (defaults: us-east-1, on-demand, Linux/x86)."""

    fargate_vcpu_hour: Price = Price(usd=0.04048, unit="vCPU-hour", confirmed=False,
                                     source=THIRD_PARTY + "https://aws.amazon.com/fargate/pricing/")
    fargate_gb_hour: Price = Price(usd=0.004445, unit="GB-hour", confirmed=False,
                                   source=THIRD_PARTY + "https://aws.amazon.com/fargate/pricing/")
    # Single-AZ PostgreSQL, by class without "db."; another class needs its price here (load_standing_prices).
    rds_instance_hour: dict[str, float] = Field(default_factory=lambda: {
        "t4g.micro": 0.016, "t4g.small": 0.032, "t4g.medium": 0.065,
    })
    rds_instance_source: str = THIRD_PARTY + "https://aws.amazon.com/rds/postgresql/pricing/"
    rds_storage_gb_month: Price = Price(usd=0.115, unit="GB-month", confirmed=False,
                                        source=THIRD_PARTY + "https://aws.amazon.com/rds/postgresql/pricing/ (gp3)")
    load_balancer_hour: Price = Price(usd=0.0225, unit="load-balancer-hour", confirmed=False,
                                      source=AWS_EXAMPLE + "https://aws.amazon.com/elasticloadbalancing/pricing/")
    lcu_hour: Price = Price(usd=0.008, unit="LCU-hour", confirmed=False,
                            source=AWS_EXAMPLE + "https://aws.amazon.com/elasticloadbalancing/pricing/")
    nat_gateway_hour: Price = Price(usd=0.045, unit="NAT-gateway-hour", confirmed=False,
                                    source=AWS_EXAMPLE + "https://aws.amazon.com/vpc/pricing/")
    nat_gb: Price = Price(usd=0.045, unit="GB processed", confirmed=False,
                          source=AWS_EXAMPLE + "https://aws.amazon.com/vpc/pricing/")
    public_ipv4_hour: Price = Price(usd=0.005, unit="address-hour", confirmed=False,
                                    source="AWS's public IPv4 charge (from February 2024); not re-read here: "
                                           "https://aws.amazon.com/vpc/pricing/")
    secret_month: Price = Price(usd=0.40, unit="secret-month", confirmed=False,
                                source="https://aws.amazon.com/secrets-manager/pricing/ (not re-read here)")
    hosted_zone_month: Price = Price(usd=0.50, unit="hosted-zone-month", confirmed=False,
                                     source="https://aws.amazon.com/route53/pricing/ (not re-read here)")


class StandingAssumptions(_Frozen):
    """Estimates that are not prices."""

    hours_per_month: float = Field(default=730, gt=0)
    lcu_per_load_balancer: float = Field(default=0.2, ge=0, description="average capacity units each one uses: the "
                                         "photos come from S3, so only the UI's and the API's requests pass")
    nat_gb_per_month: float = Field(default=20, ge=0, description="image pulls, AWS API calls, webhooks")


class LabelStudioDeployment(_Frozen):
    """What the deployment runs: the ``label_studio`` config block's sizing (the other keys are ignored)."""

    cpu: int = Field(default=1024, gt=0, description="Fargate CPU units per task (1024 = 1 vCPU)")
    memory_mib: int = Field(default=2048, gt=0)
    desired_count: int = Field(default=1, ge=1)
    nat_gateways: int = Field(default=1, ge=1)
    db_instance_class: str = "t4g.micro"
    db_storage_gib: int = Field(default=20, gt=0)
    db_multi_az: bool = False
    load_balancers: int = Field(default=2, ge=1, description="the taxonomists' and the pipeline's internal one")
    availability_zones: int = Field(default=2, ge=1, description="the internet-facing one has an address in each")
    secrets: int = Field(default=4, ge=0, description="API token, webhook secret, admin password, database")
    hosted_zones: int = Field(default=1, ge=0, description="the private zone of the split-horizon host name")

    @classmethod
    def from_config_block(cls, block: Mapping[str, Any]) -> LabelStudioDeployment:
        """From the ``label_studio`` block of an environment in ``cdk.json`` (defaults as in stacks/config.py)."""
        db = block.get("database") or {}
        given = {
            "cpu": block.get("cpu"), "memory_mib": block.get("memory_mib"),
            "desired_count": block.get("desired_count"), "nat_gateways": block.get("nat_gateways"),
            "db_instance_class": db.get("instance_class"), "db_storage_gib": db.get("allocated_storage_gib"),
            "db_multi_az": db.get("multi_az"),
        }
        return cls.model_validate({k: v for k, v in given.items() if v is not None})


class StandingCost(_Frozen):
    """The monthly bill of the deployment."""

    line_items: tuple[LineItem, ...]
    total_usd: float
    unconfirmed_prices: tuple[str, ...]


def _item(key: str, description: str, quantity: float, price: Price) -> LineItem:
    return LineItem(key=key, description=description, quantity=quantity, unit=price.unit, unit_usd=price.usd,
                    usd=quantity * price.usd, confirmed=price.confirmed, source=price.source)


def label_studio_monthly_cost(
    deployment: LabelStudioDeployment,
    prices: StandingPrices | None = None,
    assumptions: StandingAssumptions | None = None,
) -> StandingCost:
    """The standing monthly cost of ``deployment``.

    Raises:
        ValueError: the database class has no price in ``prices.rds_instance_hour`` (the message names the class).
    """
    p = prices or StandingPrices()
    a = assumptions or StandingAssumptions()
    d = deployment
    hours = a.hours_per_month
    if d.db_instance_class not in p.rds_instance_hour:
        known = ", ".join(sorted(p.rds_instance_hour))
        raise ValueError(f"rds_instance_hour: no price for db.{d.db_instance_class} (known: {known}); add it, e.g. "
                         f'load_standing_prices({{"rds_instance_hour": {{"{d.db_instance_class}": 0.1}}}})')
    copies = 2 if d.db_multi_az else 1  # Multi-AZ bills the standby's instance and storage too
    db_hour = Price(usd=p.rds_instance_hour[d.db_instance_class], unit="instance-hour", confirmed=False,
                    source=p.rds_instance_source)
    az = " (Multi-AZ: primary and standby)" if d.db_multi_az else ""
    items = [
        _item("fargate-vcpu", "Label Studio tasks, vCPU", d.desired_count * d.cpu / 1024 * hours,
              p.fargate_vcpu_hour),
        _item("fargate-memory", "Label Studio tasks, memory", d.desired_count * d.memory_mib / 1024 * hours,
              p.fargate_gb_hour),
        _item("rds-instance", f"PostgreSQL db.{d.db_instance_class}{az}", copies * hours, db_hour),
        _item("rds-storage", f"PostgreSQL gp3 storage{az}", copies * d.db_storage_gib, p.rds_storage_gb_month),
        _item("load-balancers", "load balancers (taxonomists' and internal)", d.load_balancers * hours,
              p.load_balancer_hour),
        _item("load-balancer-lcu", "load-balancer capacity units",
              d.load_balancers * a.lcu_per_load_balancer * hours, p.lcu_hour),
        _item("nat-gateways", "NAT gateways", d.nat_gateways * hours, p.nat_gateway_hour),
        _item("nat-data", "NAT gateway data processed", a.nat_gb_per_month, p.nat_gb),
        _item("public-ipv4", "public IPv4 addresses (load balancer, NAT gateways)",
              (d.availability_zones + d.nat_gateways) * hours, p.public_ipv4_hour),
        _item("secrets", "Secrets Manager secrets", d.secrets, p.secret_month),
        _item("hosted-zone", "private hosted zone", d.hosted_zones, p.hosted_zone_month),
    ]
    return StandingCost(
        line_items=tuple(items),
        total_usd=sum(i.usd for i in items),
        unconfirmed_prices=tuple(sorted(i.key for i in items if not i.confirmed and i.usd > 0)),
    )


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_standing_prices(overrides: Mapping[str, Any] | None = None) -> StandingPrices:
    """The default prices with ``overrides`` deep-merged in, e.g. ``{"rds_instance_hour": {"t4g.large": 0.129}}``.

    Raises:
        pydantic.ValidationError: an override has the wrong shape or value.
    """
    return StandingPrices.model_validate(_merge(StandingPrices().model_dump(), overrides or {}))
