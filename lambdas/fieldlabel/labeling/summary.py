"""The batch summary sent to the notification topic, for a published and for a failed batch."""

from __future__ import annotations

import json
from typing import Any

_SUBJECT_MAX = 100


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if isinstance(x, int | float) else "n/a"


def _cost_figures(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """The summary's part of the dataset's ``estimated_cost`` block (the line items stay in statistics.json)."""
    if not isinstance(block, dict):
        return None
    keys = ("total_usd", "all_human_total_usd", "savings_usd", "savings_share", "currency", "prices_from")
    return {k: block.get(k) for k in keys} | {
        "line_items": {i["key"]: i["usd"] for i in block.get("line_items", []) if isinstance(i, dict)}}


def published_summary(
    *, project: str, batch_id: str, labeling: dict[str, Any], review: dict[str, Any] | None,
    dataset: dict[str, Any], engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Subject, human-readable message and structured figures of a published batch (``engine``: its engine block)."""
    accuracy = None
    if review and isinstance(review.get("machine_accuracy"), dict):
        accuracy = (review["machine_accuracy"].get("overall") or {}).get("accuracy")
    figures = {
        "batch_id": batch_id,
        "outcome": "published",
        "labeled": labeling.get("labeled", 0),
        "human_labeled": labeling.get("human_labeled", 0),
        "machine_labeled": labeling.get("machine_labeled", 0),
        "automation_share": labeling.get("automation_share", 0.0),
        "failed": labeling.get("failed", 0),
        "released": labeling.get("released", 0),
        "parked": labeling.get("parked", 0),
        "by_species": labeling.get("by_species", {}),
        "estimated_cost": _cost_figures(dataset.get("estimated_cost")),
        "dataset_version": dataset.get("version"),
        "dataset_uri": dataset.get("prefix"),
        "manifest_uri": dataset.get("manifest_uri"),
        "review": None
        if not review
        else {
            "reviewed": review.get("reviewed"),
            "corrections": review.get("corrections"),
            "needs_adjudication": review.get("needs_adjudication"),
            "machine_accuracy": accuracy,
            "skipped": review.get("skipped"),
        },
    }
    lines = [
        f"Batch {batch_id} is published as dataset {dataset.get('version')}.",
        f"Labeled: {figures['labeled']} (human {figures['human_labeled']}, machine {figures['machine_labeled']}, "
        f"automation {_pct(figures['automation_share'])}).",
        f"Not labeled: {figures['failed']} (back to pending: {figures['released']}, parked: {figures['parked']}).",
        f"Dataset: {dataset.get('prefix')} (manifest {dataset.get('manifest_uri')}).",
    ]
    cost = figures["estimated_cost"]
    if cost:
        lines.append(
            f"Estimated cost: ${cost['total_usd']:,.2f} against ${cost['all_human_total_usd']:,.2f} with every photo "
            f"labeled by taxonomists: saving ${cost['savings_usd']:,.2f} ({_pct(cost['savings_share'])}); "
            f"prices: {cost['prices_from']} (an estimate, docs/costs.md)."
        )
    if review and review.get("skipped"):
        lines.append(f"Expert review: skipped ({review['skipped']}).")
    elif review:
        lines.append(
            f"Expert review: {review.get('reviewed', 0)} photos, {review.get('corrections', 0)} corrected, "
            f"{review.get('needs_adjudication', 0)} need adjudication, machine-label accuracy {_pct(accuracy)}."
        )
    if engine:
        from fieldlabel.labeling.engine_report import engine_summary_lines

        figures["engine"] = {"decision": engine.get("decision"), "audit": engine.get("audit"),
                             "audit_contradicts_bound": engine.get("audit_contradicts_bound"),
                             "model": (engine.get("training") or {}).get("model")}
        lines += engine_summary_lines(engine)
    lines += ["", json.dumps(figures, indent=1, default=str)]
    return {
        "subject": f"[{project}] batch {batch_id} published"[:_SUBJECT_MAX],
        "message": "\n".join(lines),
        "figures": figures,
    }


def _jobs_line(jobs: dict[str, str] | None) -> str:
    if not jobs:
        return "Jobs: none to stop."
    return "Jobs: " + "; ".join(f"{name} {outcome}" for name, outcome in jobs.items()) + "."


def failed_summary(
    *, project: str, batch_id: str, reason: str, released: int, parked: int, quarantined: int = 0,
    jobs: dict[str, str] | None = None, job_name: str | None = None,
) -> dict[str, Any]:
    """Subject, message and figures of a failed batch (nothing was labeled; its photos went back to the pool)."""
    figures = {
        "batch_id": batch_id,
        "outcome": "failed",
        "reason": reason,
        "job_name": job_name,
        "released": released,
        "parked": parked,
        "quarantined": quarantined,
        "jobs": jobs or {},
    }
    message = "\n".join([
        f"Batch {batch_id} failed: {reason}",
        f"Photos released (pending again after their back-off): {released}; parked after too many attempts: "
        f"{parked}; quarantined without a labeling copy: {quarantined}.",
        _jobs_line(jobs),
        "",
        json.dumps(figures, indent=1, default=str),
    ])
    return {"subject": f"[{project}] batch {batch_id} FAILED"[:_SUBJECT_MAX], "message": message, "figures": figures}


def parked_summary(
    *, project: str, batch_id: str, step: str, reason: str, status: str | None, jobs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Subject, message and figures of a batch held for an operator after its labeling job completed."""
    figures = {"batch_id": batch_id, "outcome": "parked", "step": step, "reason": reason, "status": status,
               "jobs": jobs or {}}
    message = "\n".join([
        f"Batch {batch_id} is parked at step '{step}': {reason}",
        "Its labeling job completed: the labels are kept, nothing went back to the pool.",
        f"When the cause is fixed, run: fieldlabel resume {batch_id}",
        _jobs_line(jobs),
        "",
        json.dumps(figures, indent=1, default=str),
    ])
    return {"subject": f"[{project}] batch {batch_id} PARKED at {step}"[:_SUBJECT_MAX], "message": message,
            "figures": figures}
