"""From a finished batch's counts to its cost estimate, as recorded in the dataset statistics and the batch summary.

Pure, like :mod:`fieldlabel.costs.model`. The publish step and ``fieldlabel report`` both use :func:`estimated_cost`,
so the figure an operator sees in a report and the one published with the dataset are computed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fieldlabel.costs.model import (
    Assumptions,
    Backend,
    BatchUsage,
    Engine,
    PriceBook,
    estimate_batch_cost,
    load_assumptions,
    load_price_book,
)

KIND_HUMAN_ONLY = "human_only"
KIND_MODEL = "model"  # fieldlabel.labeling.backend's batch kinds; this module stays free of the labeling package


def usage_from_counts(
    *,
    human_labeled: int,
    machine_labeled: int,
    kind: str | None,
    reviewed: int = 0,
    objects_labeled_earlier_this_month: int = 0,
    engine: str | None = None,
    backend: str | None = None,
) -> BatchUsage:
    """The :class:`BatchUsage` of a finished batch: its labeled objects and who labeled them.

    Args:
        human_labeled: photos labeled by taxonomists.
        machine_labeled: photos labeled by automated labeling.
        kind: the batch kind (``automated`` or ``human_only``); a human-only batch pays no training.
        reviewed: photos sent to the expert-review job (they pay the per-object fee again, and reviewers' time).
        objects_labeled_earlier_this_month: objects labeled by earlier batches this month (the per-object tiers).
        engine: ``labeling.engine`` as configured or recorded (None: ``groundtruth``); a batch of kind ``model``, or
            any batch on Label Studio, was labeled by the own engine whatever this says.
        backend: ``labeling.backend`` as configured or recorded (None: ``groundtruth``).
    """
    resolved_backend: Backend = "label_studio" if backend == "label_studio" else "groundtruth"
    # Only the own engine labels outside a Ground Truth job, and Label Studio has no Ground Truth automated labeling.
    own_engine = kind == KIND_MODEL or engine == "model" or resolved_backend == "label_studio"
    resolved_engine: Engine = "model" if own_engine else "groundtruth"
    automated = kind != KIND_HUMAN_ONLY
    return BatchUsage(
        photos=max(0, human_labeled) + max(0, machine_labeled),
        automated=automated,
        machine_labeled=max(0, machine_labeled) if automated else None,
        reviewed_objects=max(0, reviewed),
        objects_labeled_earlier_this_month=max(0, objects_labeled_earlier_this_month),
        engine=resolved_engine,
        backend=resolved_backend,
    )


def cost_settings(config: Mapping[str, Any] | None) -> tuple[PriceBook, Assumptions]:
    """Prices and assumptions from a ``{"prices": {...}, "assumptions": {...}}`` override object (None: defaults).

    Raises:
        pydantic.ValidationError: an override has the wrong shape or value.
        ValueError: ``config`` has keys other than ``prices`` and ``assumptions``.
    """
    config = dict(config or {})
    unknown = set(config) - {"prices", "assumptions"}
    if unknown:
        raise ValueError(f"cost config: unknown keys {sorted(unknown)}; expected 'prices' and/or 'assumptions'")
    return load_price_book(config.get("prices") or {}), load_assumptions(config.get("assumptions") or {})


def estimated_cost(
    usage: BatchUsage, prices: PriceBook, assumptions: Assumptions, *, prices_from: str
) -> dict[str, Any]:
    """The ``estimated_cost`` block: line items, total, all-human total and savings, rounded to cents for reading.

    Args:
        usage: the batch's counts (:func:`usage_from_counts`).
        prices: unit prices.
        assumptions: non-price estimates.
        prices_from: where the prices came from, recorded with the figures (e.g. ``"CONFIG_JSON costs"``).
    """
    est = estimate_batch_cost(usage, prices, assumptions)
    return {
        "currency": "USD",
        "photos": est.photos,
        "human_labeled": est.human_labeled,
        "machine_labeled": est.machine_labeled,
        "reviewed": usage.reviewed_objects,
        "iterations": est.iterations,
        "objects_labeled_earlier_this_month": usage.objects_labeled_earlier_this_month,
        "engine": usage.engine,
        "backend": usage.backend,
        "job_objects": usage.job_objects + usage.review_job_objects,
        "line_items": [
            {"key": i.key, "description": i.description, "quantity": round(i.quantity, 4), "unit": i.unit,
             "unit_usd": i.unit_usd, "usd": round(i.usd, 2), "confirmed": i.confirmed}
            for i in est.line_items
        ],
        "total_usd": round(est.total_usd, 2),
        "all_human_total_usd": round(est.all_human_total_usd, 2),
        "savings_usd": round(est.savings_usd, 2),
        "savings_share": round(est.savings_share, 4),
        "unconfirmed_prices": list(est.unconfirmed_prices),
        "prices_from": prices_from,
        "region": prices.region,
        "note": "estimate (docs/costs.md); prices listed in unconfirmed_prices are assumptions or unconfirmed",
    }
