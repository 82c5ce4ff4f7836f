#!/usr/bin/env python3
"""CDK app: load the environment's config, build the stacks, register the cdk-nag packs. No AWS calls here."""

from __future__ import annotations

import sys

import aws_cdk as cdk

from stacks.config import AppConfig, ConfigError, load_config
from stacks.label_studio_stack import LabelStudioStack
from stacks.monitoring_stack import MonitoringStack
from stacks.nag import add_nag_packs
from stacks.pipeline_stack import PipelineStack
from stacks.storage_stack import StorageStack
from stacks.workforce_stack import WorkforceStack


def build(app: cdk.App, config: AppConfig | None = None) -> dict[str, cdk.Stack]:
    """Create every stack of one environment in ``app`` and return them by short name."""
    config = config or load_config(_context(app))
    env = cdk.Environment(account=config.account, region=config.region)
    prefix = config.project
    storage = StorageStack(
        app, f"{prefix}-Storage", config=config, env=env, description=f"{prefix}: photos, datasets, registry (stateful)"
    )
    workforce = WorkforceStack(
        app,
        f"{prefix}-Workforce",
        config=config,
        env=env,
        description=f"{prefix}: taxonomists' workforce and work teams",
    )
    # The self-hosted Label Studio server, only for that labeling backend (docs/label-studio.md, "Deployment").
    label_studio = (
        LabelStudioStack(
            app, f"{prefix}-LabelStudio", config=config, storage=storage, workforce=workforce, env=env,
            description=f"{prefix}: self-hosted Label Studio (network, database, service, load balancers)",
        )
        if config.labeling.backend == "label_studio"
        else None
    )
    pipeline = PipelineStack(
        app,
        f"{prefix}-Pipeline",
        config=config,
        storage=storage,
        workforce=workforce,
        label_studio=label_studio.refs if label_studio else None,
        env=env,
        description=f"{prefix}: intake, labeling workflow and expert review",
    )
    monitoring = MonitoringStack(
        app, f"{prefix}-Monitoring", config=config, pipeline=pipeline, label_studio=label_studio, env=env,
        description=f"{prefix}: dashboard, alarms, operations topic, budget",
    )
    stacks: dict[str, cdk.Stack] = {
        "storage": storage, "workforce": workforce, "pipeline": pipeline, "monitoring": monitoring,
    }
    if label_studio is not None:
        stacks["label_studio"] = label_studio
    for stack in stacks.values():
        for key, value in sorted(config.tags.items()):
            cdk.Tags.of(stack).add(key, value)
    return stacks


def _context(app: cdk.App) -> dict[str, object]:
    return {k: app.node.try_get_context(k) for k in ("env", "environments", "account", "region")}


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(_context(app))
    except ConfigError as err:
        print(f"Configuration error: {err}", file=sys.stderr)
        sys.exit(1)
    build(app, config)
    add_nag_packs(app)
    app.synth()


if __name__ == "__main__":
    main()
