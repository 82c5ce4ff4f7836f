"""Dispatch Lambda: on a schedule, or invoked asynchronously by register when the pending count crosses BATCH_SIZE."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from fieldlabel.common.clock import utc_now
from fieldlabel.common.observability import logger, metrics, tracer
from fieldlabel.intake.dispatch import DispatchReport, run_dispatch
from fieldlabel.intake.settings import DispatchSettings


@cache
def settings() -> DispatchSettings:
    """Environment, parsed once per container."""
    return DispatchSettings.from_env()


@cache
def clients() -> dict[str, Any]:
    """boto3 clients, created lazily on first use."""
    return {"ddb": boto3.client("dynamodb"), "sfn": boto3.client("stepfunctions")}


def emit_metrics(report: DispatchReport) -> None:
    """Dispatch metrics (docs/intake.md, "Metrics"); pending figures only when this run held the lease."""
    metrics.add_metric(name="BatchesClaimed", unit=MetricUnit.Count, value=len(report.batches))
    metrics.add_metric(name="PhotosClaimed", unit=MetricUnit.Count, value=report.photos_claimed)
    if report.swept is not None:
        # strays returned by the sweep: should be 0; a steady non-zero count means a path that leaves photos behind
        metrics.add_metric(name="StrayPhotosSwept", unit=MetricUnit.Count,
                           value=report.swept.released + report.swept.parked + report.swept.quarantined)
    if report.stats is not None:
        metrics.add_metric(name="PendingPhotos", unit=MetricUnit.Count, value=report.stats.count)
        metrics.add_metric(name="OldestPendingAgeSeconds", unit=MetricUnit.Seconds,
                           value=report.stats.oldest_age_seconds)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the dispatcher once and return a summary (batch ids started, photos claimed, batches recovered)."""
    c = clients()
    time_left = (lambda: context.get_remaining_time_in_millis() / 1000) if context is not None else None
    # {"trigger": "flush", "force": true} from `fieldlabel flush`: batch whatever is pending now
    force = (event or {}).get("force") is True
    report = run_dispatch(ddb=c["ddb"], sfn=c["sfn"], settings=settings(), now=utc_now(), time_left=time_left,
                          force=force)
    emit_metrics(report)
    summary = {
        "lease": report.lease,
        "trigger": (event or {}).get("trigger", "schedule"),
        "forced": force,
        "decision": report.decision.reason if report.decision else None,
        "pending_after": report.stats.count if report.stats else None,
        "batches": report.batches,
        "recovered": report.recovered,
        "photos_claimed": report.photos_claimed,
        "promoted": report.promoted,
        "swept": None if report.swept is None else {
            "examined": report.swept.examined, "released": report.swept.released, "parked": report.swept.parked,
            "quarantined": report.swept.quarantined, "reasons": report.swept.reasons},
        "lease_lost": report.lease_lost,
    }
    logger.info("dispatch run", extra=summary)
    return summary
