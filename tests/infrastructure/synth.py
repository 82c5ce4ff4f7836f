"""Synthesize the whole app the way `cdk synth` does (same context, cdk-nag registered), for infrastructure tests."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from app import build
from stacks.config import load_config
from stacks.nag import add_nag_packs

ROOT = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]


@dataclass
class Synthesis:
    """Templates by short stack name, plus cdk-nag's findings (empty when everything is acknowledged)."""

    templates: dict[str, dict[str, Any]]
    findings: list[str]
    outdir: Path

    def resources(self, rtype: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Every resource of ``rtype`` as (stack, logical id, resource)."""
        return [
            (stack, lid, res)
            for stack, tpl in self.templates.items()
            for lid, res in tpl.get("Resources", {}).items()
            if res["Type"] == rtype
        ]


def context_for(env: str = "dev", patch: dict[str, Any] | None = None) -> dict[str, Any]:
    """cdk.json context for ``env``, with ``patch`` merged into that environment's block."""
    ctx = copy.deepcopy(CDK_CONTEXT)
    ctx["env"] = env
    if patch:
        _merge(ctx["environments"][env], patch)
    return ctx


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def synthesize(outdir: Path, env: str = "dev", patch: dict[str, Any] | None = None) -> Synthesis:
    """Build and synthesize the app into ``outdir`` with cdk-nag's AwsSolutions and Serverless packs, skipping layer
    bundling."""
    ctx = context_for(env, patch)
    app = cdk.App(outdir=str(outdir), context={**ctx, "aws:cdk:bundling-stacks": []})
    stacks = build(app, load_config(ctx))
    add_nag_packs(app)
    findings: list[str] = []
    try:
        assembly = app.synth()
    except RuntimeError:
        # aws-cdk-lib names the report validation-report.json (older releases: policy-validation-report.json).
        path = next(p for p in (outdir / "validation-report.json", outdir / "policy-validation-report.json")
                    if p.exists())
        report = json.loads(path.read_text())
        findings = [
            f"{v['ruleName']} @ {r['constructPath']}: {v.get('description', '')}"
            for p in report["pluginReports"]
            for v in p["violations"]
            for r in v.get("violatingConstructs", v.get("violatingResources", []))
        ]
        return Synthesis(templates={}, findings=findings, outdir=outdir)
    templates = {name: assembly.get_stack_by_name(s.stack_name).template for name, s in stacks.items()}
    return Synthesis(templates=templates, findings=findings, outdir=outdir)
