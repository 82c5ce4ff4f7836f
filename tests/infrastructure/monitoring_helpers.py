"""Reading the synthesized monitoring stack: alarms by their metric, references resolved back to the pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stacks.config import AppConfig, load_config
from tests.infrastructure.synth import Synthesis, context_for

HANDLER_SUFFIX = ".handler.lambda_handler"


def config_of(env: str) -> AppConfig:
    return load_config(context_for(env))


def resources(syn: Synthesis, stack: str, rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in syn.templates[stack]["Resources"].items() if r["Type"] == rtype}


def one(syn: Synthesis, stack: str, rtype: str) -> tuple[str, dict[str, Any]]:
    found = resources(syn, stack, rtype)
    assert len(found) == 1, f"expected one {rtype} in {stack}, found {sorted(found)}"
    return next(iter(found.items()))


def resolve(syn: Synthesis, value: Any) -> Any:
    """Turn ``Fn::ImportValue`` of a pipeline export back into what it exports (e.g. ``{"Ref": <logical id>}``)."""
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        export = value["Fn::ImportValue"]
        for tpl in syn.templates.values():
            for out in tpl.get("Outputs", {}).values():
                if out.get("Export", {}).get("Name") == export:
                    return out["Value"]
        raise AssertionError(f"no stack exports {export}")
    return value


def pipeline_functions(syn: Synthesis) -> dict[str, tuple[str, dict[str, Any]]]:
    """Handler folder -> (logical id, properties) of every pipeline function made from ``lambdas/<dir>``."""
    out = {}
    for lid, r in resources(syn, "pipeline", "AWS::Lambda::Function").items():
        handler = r["Properties"].get("Handler", "")
        if handler.endswith(HANDLER_SUFFIX):
            out[handler.removesuffix(HANDLER_SUFFIX)] = (lid, r["Properties"])
    return out


def service_of(syn: Synthesis, handler_dir: str) -> str:
    """The POWERTOOLS_SERVICE_NAME the deployed function really has (the metrics' ``service`` dimension)."""
    functions = pipeline_functions(syn)
    assert handler_dir in functions, f"no {handler_dir} function in the pipeline stack"
    return functions[handler_dir][1]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]


@dataclass(frozen=True)
class MetricRef:
    """One metric an alarm reads, with its references resolved."""

    id: str
    namespace: str
    name: str
    dimensions: dict[str, Any]
    stat: str
    period: int


@dataclass(frozen=True)
class Alarm:
    logical_id: str
    props: dict[str, Any]
    metrics: tuple[MetricRef, ...]
    expression: str | None

    @property
    def threshold(self) -> float:
        return self.props["Threshold"]

    @property
    def comparison(self) -> str:
        return self.props["ComparisonOperator"]


def alarms(syn: Synthesis) -> list[Alarm]:
    """Every alarm of the monitoring stack, metric-math or single-metric, in one shape."""
    out = []
    for lid, r in resources(syn, "monitoring", "AWS::CloudWatch::Alarm").items():
        p = r["Properties"]
        refs: list[MetricRef] = []
        expression = None
        if "Metrics" in p:
            for q in p["Metrics"]:
                if "Expression" in q:
                    expression = q["Expression"]
                    continue
                ms = q["MetricStat"]
                m = ms["Metric"]
                dims = {d["Name"]: resolve(syn, d["Value"]) for d in m.get("Dimensions", [])}
                refs.append(MetricRef(q["Id"], m["Namespace"], m["MetricName"], dims, ms["Stat"], ms["Period"]))
        else:
            dims = {d["Name"]: resolve(syn, d["Value"]) for d in p.get("Dimensions", [])}
            refs.append(MetricRef("m1", p["Namespace"], p["MetricName"], dims, p.get("Statistic", ""), p["Period"]))
        out.append(Alarm(lid, p, tuple(refs), expression))
    return out


def alarms_on(syn: Synthesis, namespace: str, name: str, **dims: Any) -> list[Alarm]:
    """Alarms that read metric ``namespace``/``name`` with (at least) the dimensions ``dims``."""
    return [
        a
        for a in alarms(syn)
        if any(m.namespace == namespace and m.name == name and all(m.dimensions.get(k) == v for k, v in dims.items())
               for m in a.metrics)
    ]


def topic_ref(syn: Synthesis) -> dict[str, str]:
    lid, _ = one(syn, "monitoring", "AWS::SNS::Topic")
    return {"Ref": lid}


def dashboard_text(syn: Synthesis) -> str:
    _, dash = one(syn, "monitoring", "AWS::CloudWatch::Dashboard")
    return json.dumps(dash["Properties"]["DashboardBody"])
