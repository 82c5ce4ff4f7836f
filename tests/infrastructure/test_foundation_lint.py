"""cfn-lint on every synthesized template: no errors (warnings are listed in docs/decisions.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.infrastructure.synth import Synthesis


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_cfn_lint_reports_no_errors(env: str, request: pytest.FixtureRequest) -> None:
    syn: Synthesis = request.getfixturevalue(env)
    templates = sorted(str(p) for p in syn.outdir.glob("*.template.json"))
    assert len(templates) == 4
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("cfn-lint")),
            "--non-zero-exit-code",
            "error",
            "--format",
            "parseable",
            "--",
            *templates,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert result.returncode == 0 and errors == [], result.stdout + result.stderr
