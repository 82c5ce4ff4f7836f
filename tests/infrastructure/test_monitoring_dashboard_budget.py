"""The operations dashboard, the cost budget and the cost-allocation tags (issue 7)."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from app import build
from stacks.config import load_config
from tests.infrastructure.monitoring_helpers import (
    config_of,
    dashboard_text,
    one,
    pipeline_functions,
    resources,
    topic_ref,
)
from tests.infrastructure.synth import Synthesis, context_for

SECTIONS = [
    "Intake: photos registered, quarantined and waiting",
    "Photos registered and quarantined",
    "Quarantined photos by reason",
    "Pending photos",
    "Oldest pending photo age",
    "Intake queue (upload events) and its dead-letter queue",
    "Labeling batches: executions and their duration",
    "Batches claimed and failed",
    "Labels per batch (human vs machine)",
    "Labels per day (human vs machine)",
    "Machine-label accuracy from expert audits",
    "Lambda functions: errors, throttles, durations",
]


def test_dashboard_names_each_section(dev: Synthesis) -> None:
    _, dash = one(dev, "monitoring", "AWS::CloudWatch::Dashboard")
    assert dash["Properties"]["DashboardName"] == f"{config_of('dev').project}-operations"
    text = dashboard_text(dev)
    missing = [s for s in SECTIONS if s not in text]
    assert missing == []


def test_dashboard_graphs_the_metrics_the_sections_promise(dev: Synthesis) -> None:
    text = dashboard_text(dev)
    for metric in ("PhotosRegistered", "PhotosQuarantined", "PendingPhotos", "OldestPendingAgeSeconds",
                   "ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut",
                   "ExecutionTime", "PhotosLabeledByHumans", "PhotosLabeledByMachine", "MachineLabelAccuracy",
                   "ApproximateNumberOfMessagesVisible", "Throttles", "Duration", "Errors"):
        assert f'\\"{metric}\\"' in text, metric


def test_dashboard_shows_every_pipeline_function(dev: Synthesis) -> None:
    text = dashboard_text(dev)
    exports = {
        out["Export"]["Name"]: out["Value"]
        for out in dev.templates["pipeline"].get("Outputs", {}).values() if "Export" in out
    }
    shown = {v["Ref"] for name, v in exports.items() if name in text and isinstance(v, dict) and "Ref" in v}
    for handler_dir, (lid, _) in pipeline_functions(dev).items():
        assert lid in shown, handler_dir


def test_no_budget_unless_configured(dev: Synthesis) -> None:
    assert config_of("dev").monitoring.monthly_budget_usd is None
    assert resources(dev, "monitoring", "AWS::Budgets::Budget") == {}


def test_budget_filters_on_the_cost_allocation_tags_and_notifies_the_topic(prod: Synthesis) -> None:
    config = config_of("prod")
    assert config.monitoring.monthly_budget_usd
    _, budget = one(prod, "monitoring", "AWS::Budgets::Budget")
    data = budget["Properties"]["Budget"]
    assert data["BudgetType"] == "COST" and data["TimeUnit"] == "MONTHLY"
    assert data["BudgetLimit"] == {"Amount": config.monitoring.monthly_budget_usd, "Unit": "USD"}
    filters = data["FilterExpression"]["And"]
    assert sorted((f["Tags"]["Key"], tuple(f["Tags"]["Values"])) for f in filters) == sorted(
        (k, (v,)) for k, v in config.tags.items()
    )
    assert all(f["Tags"]["MatchOptions"] == ["EQUALS"] for f in filters)
    notes = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"], n["Notification"]["ThresholdType"])
        for n in budget["Properties"]["NotificationsWithSubscribers"]
    }
    assert notes == {("ACTUAL", 80, "PERCENTAGE"), ("FORECASTED", 100, "PERCENTAGE")}
    for n in budget["Properties"]["NotificationsWithSubscribers"]:
        assert n["Notification"]["ComparisonOperator"] == "GREATER_THAN"
        assert n["Subscribers"] == [{"Address": topic_ref(prod), "SubscriptionType": "SNS"}]


def test_budget_without_tags_is_refused(tmp_path) -> None:
    ctx = context_for("prod", {"tags": {}})
    ctx["environments"]["prod"]["tags"] = {}
    app = cdk.App(outdir=str(tmp_path), context={**ctx, "aws:cdk:bundling-stacks": []})
    with pytest.raises(ValueError, match="monthly_budget_usd needs at least one tag"):
        build(app, load_config(ctx))


# --- cost-allocation tags ---------------------------------------------------------------------------------------


def _tag_values(res: dict[str, Any]) -> list[dict[str, str]] | None:
    """The tags of ``res`` as a key->value dict per tag set, or None when its type takes no tags."""
    rtype = res["Type"]
    if rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource":
        return None
    props = res.get("Properties", {})
    if rtype == "AWS::DynamoDB::GlobalTable":  # tags live on each replica
        return [_as_dict(r.get("Tags")) for r in props["Replicas"]]
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", rtype).schema
    tagging = schema.get("tagging", {})
    if not tagging.get("taggable", "Tags" in schema["properties"]):
        return None
    prop = tagging.get("tagProperty", "/properties/Tags").rsplit("/", 1)[-1]
    return [_as_dict(props.get(prop))]


def _as_dict(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if isinstance(tags, dict):
        return tags
    return {t["Key"]: t["Value"] for t in tags}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_taggable_resource_carries_the_configured_tags(env: str, request: pytest.FixtureRequest) -> None:
    syn: Synthesis = request.getfixturevalue(env)
    wanted = config_of(env).tags
    assert wanted  # both environments configure cost-allocation tags
    checked, untagged = 0, []
    for stack, tpl in syn.templates.items():
        for lid, res in tpl["Resources"].items():
            sets = _tag_values(res)
            if sets is None:
                continue
            checked += 1
            for tags in sets:
                if any(tags.get(k) != v for k, v in wanted.items()):
                    untagged.append(f"{stack}/{lid} ({res['Type']})")
    assert untagged == []
    assert checked > 40  # the check looked at real resources in every stack
