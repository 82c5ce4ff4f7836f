"""Reading the Powertools EMF blobs a handler prints: one record per (metric, value, dimension set)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EmfMetric:
    namespace: str
    name: str
    value: float
    unit: str | None
    dimensions: dict[str, str]


def emf_metrics(stdout: str) -> list[EmfMetric]:
    """Every metric datapoint in ``stdout`` (EMF lines are JSON objects with an ``_aws`` key)."""
    out: list[EmfMetric] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                raw = blob[metric["Name"]]
                for value in raw if isinstance(raw, list) else [raw]:
                    for dim_set in directive["Dimensions"]:
                        out.append(EmfMetric(directive["Namespace"], metric["Name"], value, metric.get("Unit"),
                                             {d: blob[d] for d in dim_set}))
    return out


def values(metrics: list[EmfMetric], name: str, **dimensions: str) -> list[float]:
    """Values of ``name`` whose dimensions are exactly ``dimensions``."""
    return [m.value for m in metrics if m.name == name and m.dimensions == dimensions]


def only(metrics: list[EmfMetric], name: str, **dimensions: str) -> float:
    found = values(metrics, name, **dimensions)
    assert len(found) == 1, f"{name} {dimensions}: {found} in {[(m.name, m.dimensions) for m in metrics]}"
    return found[0]
