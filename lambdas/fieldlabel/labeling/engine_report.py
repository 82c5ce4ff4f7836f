"""The own engine's figures in a batch's labeling statistics, dataset statistics and summary.

The engine certifies, before the batch, an upper bound on the error among its machine labels (``certified_bound``,
at confidence 1-delta). The expert audit measures, after the batch, the machine labels' accuracy with a 95 % Wilson
interval (docs/review.md). The two are put side by side, and the audit *contradicts* the bound when even the
audit's most favourable error (1 - the interval's upper accuracy) is above alpha: that is what the
``MachineLabelAuditContradictsBound`` metric and its alarm report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The decision summary's keys shown in the statistics and the summary (the rest stays in engine-decisions.json).
SUMMARY_KEYS = ("method", "alpha", "delta", "threshold", "thresholds", "coverage", "auto_count", "human_count",
                "calibration_size", "calibration_slice", "certified_bound", "blocked_species", "species_thresholds",
                "model", "not_embedded", "embedded_now")


def add_machine_labels(stats: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
    """The labeling statistics of a human job plus the machine labels the engine wrote before it.

    Args:
        stats: ``process_output``'s statistics of the taxonomists' job (or empty counts when there was none).
        batch: the batch item (``engine_machine_labeled``, ``engine_machine_by_species``, ``engine_summary``).
    """
    out = dict(stats)
    machine = int(batch.get("engine_machine_labeled") or 0)
    by_species = dict(out.get("by_species") or {})
    for label, n in dict(batch.get("engine_machine_by_species") or {}).items():
        by_species[label] = by_species.get(label, 0) + int(n)
    out["machine_labeled"] = int(out.get("machine_labeled") or 0) + machine
    out["labeled"] = int(out.get("labeled") or 0) + machine
    out["by_species"] = dict(sorted(by_species.items()))
    out["automation_share"] = round(out["machine_labeled"] / out["labeled"], 4) if out["labeled"] else 0.0
    raw = batch.get("engine_summary")
    summary = json.loads(raw) if isinstance(raw, str) and raw else {}
    out["engine"] = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    return out


def engine_statistics(labeling: Mapping[str, Any], review: Mapping[str, Any] | None,
                      training: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``engine`` block of a batch's dataset statistics (None when the batch was not labeled by the engine).

    ``audit`` is the expert audit's measured machine-label accuracy with its interval (None without an audit),
    ``audit_contradicts_bound`` is True when the audit's lower bound on the error exceeds alpha.
    """
    decision = labeling.get("engine")
    if not isinstance(decision, Mapping):
        return None
    overall = None
    if review and isinstance(review.get("machine_accuracy"), Mapping):
        overall = review["machine_accuracy"].get("overall")
    audit = None
    contradicts = None
    alpha = decision.get("alpha")
    if isinstance(overall, Mapping) and isinstance(overall.get("accuracy"), int | float) and overall.get("n"):
        ci_low, ci_high = overall.get("ci_low"), overall.get("ci_high")
        audit = {"accuracy": overall["accuracy"], "ci_low": ci_low, "ci_high": ci_high, "n": overall.get("n"),
                 "n_effective": overall.get("n_effective")}
        if isinstance(ci_high, int | float):
            audit["error_ci_low"] = round(1.0 - float(ci_high), 4)
            audit["error_ci_high"] = round(1.0 - float(ci_low), 4) if isinstance(ci_low, int | float) else None
            if isinstance(alpha, int | float):
                contradicts = audit["error_ci_low"] > float(alpha)
    return {
        "decision": dict(decision),
        "audit": audit,
        "audit_contradicts_bound": contradicts,
        "training": dict(training) if isinstance(training, Mapping) else None,
    }


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if isinstance(x, int | float) else "n/a"


def engine_summary_lines(block: Mapping[str, Any] | None) -> list[str]:
    """Human-readable lines for the batch summary."""
    if not block:
        return []
    d = block.get("decision") or {}
    blocked = d.get("blocked_species") or []
    raised = d.get("species_thresholds") or []
    threshold = d.get("threshold")
    lines = [
        f"Engine ({d.get('method', 'model')}, model {d.get('model') or 'none yet'}): threshold "
        f"{threshold if threshold is not None else 'per species'}, coverage {_pct(d.get('coverage'))}, certified "
        f"error bound {_pct(d.get('certified_bound'))} (target {_pct(d.get('alpha'))} at "
        f"{_pct(1 - float(d['delta'])) if isinstance(d.get('delta'), int | float) else 'n/a'} confidence), "
        f"calibration size {d.get('calibration_size', 'n/a')}, blocked species {len(blocked)}"
        + (f", higher thresholds for {len(raised)} species ("
           + ", ".join(f"{r.get('species')} {float(r['threshold']):.3f}" for r in raised
                       if isinstance(r, Mapping) and isinstance(r.get("threshold"), int | float)) + ")"
           if raised else "") + ".",
    ]
    audit = block.get("audit")
    if audit:
        verdict = "CONTRADICTS the bound" if block.get("audit_contradicts_bound") else "consistent with the bound"
        lines.append(f"Audit of machine labels: accuracy {_pct(audit['accuracy'])} "
                     f"({_pct(audit.get('ci_low'))}-{_pct(audit.get('ci_high'))}, n={audit.get('n')}): {verdict}.")
    training = block.get("training") or {}
    if training.get("trained"):
        lines.append(f"Next model: {training.get('model')} from {training.get('labels_used')} expert labels.")
    elif training:
        lines.append(f"No new model: {training.get('reason') or training.get('skipped') or 'training failed'}; "
                     "the next batch uses the current one.")
    return lines
