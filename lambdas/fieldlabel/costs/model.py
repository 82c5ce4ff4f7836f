"""What labeling a batch cost, against what it would have cost had every photo gone to the taxonomists.

Pure: no AWS calls, no clock. Prices live in a :class:`PriceBook` (every price carries its source and whether it
could be confirmed; docs/costs.md lists them), and everything that is an estimate rather than a price lives in
:class:`Assumptions`, so both are visible and configurable.

The model, per batch:

* **Ground Truth per-object fee**: every object of a Ground Truth labeling job pays it, human- or machine-labeled
  (facts §9). Tiers apply to the cumulative number of objects labeled in the month, so a batch is charged from
  position ``objects_labeled_earlier_this_month`` onwards and may straddle a tier boundary. Review-job objects are
  labeled objects too and follow the batch's objects. Which objects are in a job depends on the deployment
  (``BatchUsage.engine`` and ``backend``, the config's ``labeling.engine`` and ``labeling.backend``): with Ground
  Truth's automated labeling every photo is; with the own engine (``model``) only the photos sent to the
  taxonomists are, because machine labels are written to the registry without a job; on the Label Studio backend no
  photo is (its cost is standing infrastructure, :mod:`fieldlabel.costs.standing`, not per batch).
* **Automated labeling compute**: per active-learning iteration, training on ``ml.p3.2xlarge`` and batch transform
  on ``ml.c5.xlarge`` (facts §3). Ground Truth does not publish its iteration size, so the number of iterations is
  ``ceil(photos / objects_per_iteration)`` unless given, training hours are a fixed amount per iteration, and each
  iteration's transform scores the objects still unlabeled (falling linearly from all of them to 1/n of them):
  ``transform_hours = n * overhead + photos * (n + 1) / 2 * seconds_per_object / 3600``.
* **Human labeling time**: human-labeled objects x workers per object x seconds per task x the taxonomist's hourly
  cost. A private workforce pays no per-task fee; its cost is people's time.
* **Expert review time** (optional): reviewed objects x reviewers x seconds x the reviewer's hourly cost.
* **Lambda, Step Functions, S3**: per photo and per batch counts at list prices (free tiers ignored: they are
  account-wide).

The all-human baseline keeps the same review and infrastructure, drops the automated-labeling compute and sends every
object to the taxonomists (so, on Ground Truth, every photo pays the per-object fee there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Frozen):
    """One unit price with its provenance."""

    usd: float = Field(ge=0)
    unit: str
    source: str
    confirmed: bool
    note: str = ""


class ObjectTier(_Frozen):
    """A Ground Truth per-object price tier: applies while the month's cumulative object count is below ``up_to``
    (``None``: no upper bound)."""

    up_to: int | None = Field(default=None, gt=0)
    usd_per_object: float = Field(ge=0)


GT_PRICING_PAGE = "https://aws.amazon.com/sagemaker/groundtruth/pricing/"


class PriceBook(_Frozen):
    """Every price the model uses (defaults: us-east-1, on-demand). See docs/costs.md for each source."""

    region: str = "us-east-1"
    gt_tiers: tuple[ObjectTier, ...] = (
        ObjectTier(up_to=50_000, usd_per_object=0.08),
        ObjectTier(up_to=1_000_000, usd_per_object=0.04),
        ObjectTier(up_to=None, usd_per_object=0.02),
    )
    gt_tiers_source: str = (
        "third-party write-ups only; the AWS pricing page's table is not in its text (facts §9). Check "
        + GT_PRICING_PAGE
    )
    gt_tiers_confirmed: bool = False
    gt_free_objects_per_month: int = Field(
        default=0, ge=0, description="500 in the first two months after first SageMaker use (facts §9), else 0"
    )
    training_instance_type: str = "ml.p3.2xlarge"
    training_instance_hour: Price = Price(
        usd=3.825, unit="instance-hour", confirmed=False,
        source="public code price tables (several repositories agree); not read on an AWS page: "
               "https://aws.amazon.com/sagemaker/pricing/",
    )
    transform_instance_type: str = "ml.c5.xlarge"
    transform_instance_hour: Price = Price(
        usd=0.204, unit="instance-hour", confirmed=False,
        source="public code price tables (several repositories agree); not read on an AWS page: "
               "https://aws.amazon.com/sagemaker/pricing/",
    )
    lambda_request: Price = Price(
        usd=0.20 / 1_000_000, unit="request", confirmed=True,
        source="https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html ($0.20 per 1M)",
    )
    lambda_gb_second: Price = Price(
        usd=0.0000166667, unit="GB-second", confirmed=True,
        source="https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html "
               "($0.00001667 per GB-second, x86)",
    )
    sfn_transition: Price = Price(
        usd=0.025 / 1000, unit="state transition", confirmed=True,
        source="https://aws.amazon.com/step-functions/pricing/ ($0.025 per 1,000, US East (N. Virginia))",
    )
    s3_put: Price = Price(
        usd=0.005 / 1000, unit="PUT request", confirmed=False,
        source="third-party summaries of https://aws.amazon.com/s3/pricing/ (S3 Standard, $0.005 per 1,000)",
    )
    s3_get: Price = Price(
        usd=0.0004 / 1000, unit="GET request", confirmed=False,
        source="third-party summaries of https://aws.amazon.com/s3/pricing/ (S3 Standard, $0.0004 per 1,000)",
    )
    taxonomist_hour: Price = Price(
        usd=50.0, unit="person-hour", confirmed=False,
        source="assumption: set it to your institute's loaded hourly cost of a taxonomist",
    )
    reviewer_hour: Price = Price(
        usd=70.0, unit="person-hour", confirmed=False,
        source="assumption: set it to your institute's loaded hourly cost of a senior reviewer",
    )

    @model_validator(mode="after")
    def _tiers_ascending(self) -> PriceBook:
        if not self.gt_tiers:
            raise ValueError("gt_tiers: at least one tier is needed")
        bounds = [t.up_to for t in self.gt_tiers]
        if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
            raise ValueError("gt_tiers: only the last tier may (and must) have up_to = null")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(set(finite)):
            raise ValueError("gt_tiers: up_to must be strictly ascending")
        return self


class Assumptions(_Frozen):
    """Estimates that are not prices. Ground Truth documents none of the active-learning sizes; these are ours."""

    objects_per_iteration: int = Field(default=1000, gt=0, description="objects handled per active-learning round")
    training_hours_per_iteration: float = Field(default=0.5, ge=0)
    transform_overhead_hours_per_iteration: float = Field(default=0.1, ge=0, description="instance start-up etc.")
    transform_seconds_per_object: float = Field(default=0.02, ge=0)
    workers_per_object: int = Field(default=1, ge=1, le=9, description="NumberOfHumanWorkersPerDataObject")
    seconds_per_task: float = Field(default=20.0, ge=0, description="a taxonomist's time per photo")
    review_workers_per_object: int = Field(default=1, ge=1, le=9)
    review_seconds_per_task: float = Field(default=30.0, ge=0)
    lambda_invocations_per_photo: float = Field(default=3, ge=0, description="intake, labeling copy, post-label")
    lambda_invocations_per_batch: float = Field(default=10, ge=0)
    lambda_gb_seconds_per_invocation: float = Field(default=0.5, ge=0, description="1024 MB x 0.5 s")
    sfn_transitions_per_batch: float = Field(default=40, ge=0)
    s3_puts_per_photo: float = Field(default=3, ge=0, description="upload, labeling copy, manifest/output share")
    s3_gets_per_photo: float = Field(default=5, ge=0, description="intake reads, Ground Truth and the worker UI")


Engine = Literal["groundtruth", "model"]
Backend = Literal["groundtruth", "label_studio"]


class BatchUsage(_Frozen):
    """One batch: how many photos, how many the machine labeled (actual count, or an expected share), and how
    many objects were labeled earlier in the same month (for the tiers).

    ``engine`` and ``backend`` are the config's ``labeling.engine`` and ``labeling.backend``: they decide which
    objects pass through a Ground Truth job and so pay its per-object fee (see the module docstring).
    """

    photos: int = Field(ge=0)
    automated: bool = True
    machine_labeled: int | None = Field(default=None, ge=0, description="LabelCounters.MachineLabeled, when known")
    machine_share: float | None = Field(default=None, ge=0, le=1, description="expected share, before the job")
    iterations: int | None = Field(default=None, ge=0, description="active-learning rounds, when known")
    objects_labeled_earlier_this_month: int = Field(default=0, ge=0)
    reviewed_objects: int = Field(default=0, ge=0, description="objects sent to expert review")
    engine: Engine = Field(
        default="groundtruth", description="who machine-labels: Ground Truth's automated labeling or the own engine")
    backend: Backend = Field(
        default="groundtruth", description="where the taxonomists label: Ground Truth jobs or Label Studio")

    @model_validator(mode="after")
    def _consistent(self) -> BatchUsage:
        if self.backend == "label_studio" and self.engine == "groundtruth" and self.automated:
            raise ValueError("backend label_studio has no Ground Truth automated labeling: use engine 'model' "
                             "or a human-only batch")
        if self.engine == "model" and self.iterations:
            raise ValueError("engine 'model' runs no Ground Truth active-learning iterations (iterations must be 0)")
        if self.machine_labeled is not None and self.machine_share is not None:
            raise ValueError("give machine_labeled or machine_share, not both")
        if self.machine_labeled is not None and self.machine_labeled > self.photos:
            raise ValueError(f"machine_labeled ({self.machine_labeled}) exceeds photos ({self.photos})")
        if not self.automated and (self.machine_labeled or self.machine_share):
            raise ValueError("a human-only batch has no machine-labeled objects")
        return self

    @property
    def machine_count(self) -> int:
        """Machine-labeled objects (the share is rounded half up)."""
        if not self.automated:
            return 0
        if self.machine_labeled is not None:
            return self.machine_labeled
        if self.machine_share is not None:
            return min(self.photos, math.floor(self.photos * self.machine_share + 0.5))
        return 0

    @property
    def job_objects(self) -> int:
        """Photos that pass through a Ground Truth labeling job (and pay its per-object fee)."""
        if self.backend != "groundtruth":
            return 0
        return self.photos - self.machine_count if self.engine == "model" else self.photos

    @property
    def review_job_objects(self) -> int:
        """Reviewed photos that pass through a Ground Truth review job (none on Label Studio)."""
        return self.reviewed_objects if self.backend == "groundtruth" else 0


class LineItem(_Frozen):
    """One row of the bill."""

    key: str
    description: str
    quantity: float
    unit: str
    unit_usd: float
    usd: float
    confirmed: bool
    source: str


class TierCharge(_Frozen):
    """The part of a run of objects that falls in one tier."""

    tier: int  # 1-based
    objects: int
    usd_per_object: float
    usd: float


class CostEstimate(_Frozen):
    """The estimate for one batch, with the all-human baseline."""

    photos: int
    human_labeled: int
    machine_labeled: int
    iterations: int
    line_items: tuple[LineItem, ...]
    total_usd: float
    all_human_line_items: tuple[LineItem, ...]
    all_human_total_usd: float
    savings_usd: float
    savings_share: float
    unconfirmed_prices: tuple[str, ...]


DEFAULT_PRICES = PriceBook()
DEFAULT_ASSUMPTIONS = Assumptions()


def tiered_object_charges(
    start: int, count: int, tiers: tuple[ObjectTier, ...], *, free_objects: int = 0
) -> list[TierCharge]:
    """Charge ``count`` objects occupying month positions ``[start, start + count)``.

    Positions below ``free_objects`` cost nothing (they are reported as tier 0); the rest pay the price of the tier
    their position falls in.

    Raises:
        ValueError: negative ``start`` or ``count``.
    """
    if start < 0 or count < 0:
        raise ValueError("start and count must be >= 0")
    charges: list[TierCharge] = []
    pos, end = start, start + count
    if pos < free_objects and pos < end:
        n = min(end, free_objects) - pos
        charges.append(TierCharge(tier=0, objects=n, usd_per_object=0.0, usd=0.0))
        pos += n
    for index, tier in enumerate(tiers, start=1):
        if pos >= end:
            break
        upper = tier.up_to if tier.up_to is not None else end
        if pos < upper:
            n = min(end, upper) - pos
            charges.append(TierCharge(tier=index, objects=n, usd_per_object=tier.usd_per_object,
                                      usd=n * tier.usd_per_object))
            pos += n
    return charges


def estimate_iterations(photos: int, assumptions: Assumptions = DEFAULT_ASSUMPTIONS) -> int:
    """Active-learning rounds for ``photos`` objects: ``ceil(photos / objects_per_iteration)`` (0 for none)."""
    return math.ceil(photos / assumptions.objects_per_iteration) if photos else 0


def _item(key: str, description: str, quantity: float, price: Price) -> LineItem:
    return LineItem(key=key, description=description, quantity=quantity, unit=price.unit, unit_usd=price.usd,
                    usd=quantity * price.usd, confirmed=price.confirmed, source=price.source)


def _object_fee_items(usage: BatchUsage, objects: int, prices: PriceBook) -> list[LineItem]:
    """Per-object fees of ``objects`` labeling-job objects, then the review job's, from the month position on."""
    items: list[LineItem] = []
    gt_source = prices.gt_tiers_source
    start = usage.objects_labeled_earlier_this_month
    for charge in tiered_object_charges(start, objects, prices.gt_tiers, free_objects=prices.gt_free_objects_per_month):
        items.append(LineItem(
            key=f"gt-objects-tier-{charge.tier}",
            description=("Ground Truth per-object fee, free tier" if charge.tier == 0
                         else f"Ground Truth per-object fee, tier {charge.tier}"),
            quantity=charge.objects, unit="labeled object", unit_usd=charge.usd_per_object, usd=charge.usd,
            confirmed=prices.gt_tiers_confirmed or charge.tier == 0, source=gt_source))
    for charge in tiered_object_charges(start + objects, usage.review_job_objects, prices.gt_tiers,
                                        free_objects=prices.gt_free_objects_per_month):
        items.append(LineItem(
            key=f"gt-review-objects-tier-{charge.tier}",
            description=f"Ground Truth per-object fee of the review job, tier {charge.tier}",
            quantity=charge.objects, unit="labeled object", unit_usd=charge.usd_per_object, usd=charge.usd,
            confirmed=prices.gt_tiers_confirmed or charge.tier == 0, source=gt_source))
    return items


def _common_items(usage: BatchUsage, prices: PriceBook, a: Assumptions) -> list[LineItem]:
    """Line items that are the same with or without automated labeling (per-object fees aside)."""
    items: list[LineItem] = []
    if usage.reviewed_objects:
        review_hours = usage.reviewed_objects * a.review_workers_per_object * a.review_seconds_per_task / 3600
        items.append(_item("review-time", "expert review time", review_hours, prices.reviewer_hour))
    invocations = usage.photos * a.lambda_invocations_per_photo + a.lambda_invocations_per_batch
    items.append(_item("lambda-requests", "Lambda requests", invocations, prices.lambda_request))
    items.append(_item("lambda-duration", "Lambda duration", invocations * a.lambda_gb_seconds_per_invocation,
                       prices.lambda_gb_second))
    items.append(_item("sfn-transitions", "Step Functions state transitions", a.sfn_transitions_per_batch,
                       prices.sfn_transition))
    items.append(_item("s3-put", "S3 PUT requests", usage.photos * a.s3_puts_per_photo, prices.s3_put))
    items.append(_item("s3-get", "S3 GET requests", usage.photos * a.s3_gets_per_photo, prices.s3_get))
    return items


def _human_item(objects: int, prices: PriceBook, a: Assumptions) -> LineItem:
    hours = objects * a.workers_per_object * a.seconds_per_task / 3600
    return _item("human-labeling-time", "taxonomists' labeling time", hours, prices.taxonomist_hour)


def estimate_batch_cost(
    usage: BatchUsage, prices: PriceBook = DEFAULT_PRICES, assumptions: Assumptions = DEFAULT_ASSUMPTIONS
) -> CostEstimate:
    """Estimate what labeling ``usage`` cost, and what it would have cost all-human.

    Args:
        usage: the batch (actual counts after the job, or an expected machine share before it).
        prices: unit prices.
        assumptions: non-price estimates.

    Returns:
        The CostEstimate; ``savings_share`` is ``savings / all_human_total`` (0 when that total is 0).
    """
    machine = usage.machine_count
    human = usage.photos - machine
    if usage.automated and usage.photos and usage.engine == "groundtruth":
        iterations = usage.iterations if usage.iterations is not None else estimate_iterations(usage.photos,
                                                                                                assumptions)
    else:
        iterations = 0
    common = _common_items(usage, prices, assumptions)

    items = _object_fee_items(usage, usage.job_objects, prices) + common
    items.append(_human_item(human, prices, assumptions))
    if iterations:
        a = assumptions
        train_hours = iterations * a.training_hours_per_iteration
        transform_hours = (iterations * a.transform_overhead_hours_per_iteration
                           + usage.photos * (iterations + 1) / 2 * a.transform_seconds_per_object / 3600)
        items.append(_item("al-training", f"automated labeling training ({prices.training_instance_type})",
                           train_hours, prices.training_instance_hour))
        items.append(_item("al-transform", f"automated labeling batch transform ({prices.transform_instance_type})",
                           transform_hours, prices.transform_instance_hour))
    all_human_objects = usage.photos if usage.backend == "groundtruth" else 0
    baseline = (_object_fee_items(usage, all_human_objects, prices) + common
                + [_human_item(usage.photos, prices, assumptions)])

    total = sum(i.usd for i in items)
    all_human = sum(i.usd for i in baseline)
    savings = all_human - total
    return CostEstimate(
        photos=usage.photos,
        human_labeled=human,
        machine_labeled=machine,
        iterations=iterations,
        line_items=tuple(items),
        total_usd=total,
        all_human_line_items=tuple(baseline),
        all_human_total_usd=all_human,
        savings_usd=savings,
        savings_share=savings / all_human if all_human > 0 else 0.0,
        unconfirmed_prices=tuple(sorted({i.key for i in items if not i.confirmed and i.usd > 0})),
    )


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_price_book(overrides: Mapping[str, Any] | None = None) -> PriceBook:
    """The default price book with ``overrides`` deep-merged in, e.g. ``{"taxonomist_hour": {"usd": 42}}``.

    Raises:
        pydantic.ValidationError: an override has the wrong shape or value.
    """
    return PriceBook.model_validate(_deep_merge(DEFAULT_PRICES.model_dump(), overrides or {}))


def load_assumptions(overrides: Mapping[str, Any] | None = None) -> Assumptions:
    """The default assumptions with ``overrides`` applied.

    Raises:
        pydantic.ValidationError: an override has the wrong shape or value.
    """
    return Assumptions.model_validate(_deep_merge(DEFAULT_ASSUMPTIONS.model_dump(), overrides or {}))
