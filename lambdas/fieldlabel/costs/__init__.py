"""Cost model of a labeling batch (pure; see :mod:`fieldlabel.costs.model` and docs/costs.md), and the standing
monthly cost of the Label Studio deployment (:mod:`fieldlabel.costs.standing`)."""

from fieldlabel.costs.model import (
    DEFAULT_ASSUMPTIONS,
    DEFAULT_PRICES,
    Assumptions,
    BatchUsage,
    CostEstimate,
    LineItem,
    ObjectTier,
    Price,
    PriceBook,
    TierCharge,
    estimate_batch_cost,
    estimate_iterations,
    load_assumptions,
    load_price_book,
    tiered_object_charges,
)
from fieldlabel.costs.standing import (
    LabelStudioDeployment,
    StandingAssumptions,
    StandingCost,
    StandingPrices,
    label_studio_monthly_cost,
    load_standing_prices,
)
from fieldlabel.costs.usage import cost_settings, estimated_cost, usage_from_counts

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "DEFAULT_PRICES",
    "Assumptions",
    "BatchUsage",
    "CostEstimate",
    "LabelStudioDeployment",
    "LineItem",
    "ObjectTier",
    "Price",
    "PriceBook",
    "StandingAssumptions",
    "StandingCost",
    "StandingPrices",
    "TierCharge",
    "estimate_batch_cost",
    "estimate_iterations",
    "label_studio_monthly_cost",
    "load_assumptions",
    "load_price_book",
    "load_standing_prices",
    "cost_settings",
    "estimated_cost",
    "tiered_object_charges",
    "usage_from_counts",
]
