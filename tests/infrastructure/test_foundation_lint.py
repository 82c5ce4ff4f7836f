"""cfn-lint on every synthesized template: no errors (warnings are listed in docs/decisions.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cfnlint
import pytest

from stacks.lambda_code import RUNTIME
from tests.infrastructure.synth import Synthesis

# cfn-lint's runtime-deprecation rules read today's date (Makefile, CFN_LINT_DATED); the runtime test below reads
# the same lifecycle table without one.
DATED_RULES = ("W2531", "E2531", "E2533")


@pytest.mark.parametrize(("env", "stacks"), [("dev", 4), ("prod", 4), ("studio", 5)])
def test_cfn_lint_reports_no_errors(env: str, stacks: int, request: pytest.FixtureRequest) -> None:
    syn: Synthesis = request.getfixturevalue(env)
    templates = sorted(str(p) for p in syn.outdir.glob("*.template.json"))
    assert len(templates) == stacks
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfn-lint")),
            "--non-zero-exit-code",
            "error",
            "--format",
            "parseable",
            "--ignore-checks",
            *DATED_RULES,
            "--",
            *templates,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert result.returncode == 0 and errors == [], result.stdout + result.stderr


def test_the_lambda_runtime_is_the_newest_python_runtime_in_cfn_lints_lifecycle_table(dev: Synthesis) -> None:
    """Date-free form of cfn-lint's deprecation rules: our functions run the Python runtime with no successor.

    When Lambda announces a newer runtime, the pinned cfn-lint's table (updated with cfn-lint) names a successor and
    this fails until stacks/lambda_code.py moves on, long before the old runtime's creation block. CDK's own
    framework handlers (the bucket-notifications singleton, custom-resource providers) follow CDK's runtime, not ours.
    """
    table = json.loads((Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "LmbdRuntimeLifecycle.json")
                       .read_text())
    assert RUNTIME.name in table, f"{RUNTIME.name} is not in cfn-lint's runtime table"
    assert table[RUNTIME.name]["successor"] is None, f"{RUNTIME.name} has a successor: {table[RUNTIME.name]}"
    ours = {
        name: res["Properties"].get("Runtime")
        for tpl in dev.templates.values()
        for name, res in tpl.get("Resources", {}).items()
        if res.get("Type") == "AWS::Lambda::Function"
        and not name.startswith("BucketNotificationsHandler") and "Providerframework" not in name
    }
    assert len(ours) >= 10
    assert {name: rt for name, rt in ours.items() if rt != RUNTIME.name} == {}
