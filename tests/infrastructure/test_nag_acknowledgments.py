"""Every cdk-nag acknowledgment matches a finding on or under the construct it is placed on.

The app is synthesized with acknowledging switched off (each acknowledgment recorded instead), so the packs report
every finding; each recorded acknowledgment must then name a finding inside its scope. An acknowledgment that matches
nothing (left over after a fix, or on the wrong construct) fails here instead of silently waiting to hide a future
finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from stacks import nag
from tests.infrastructure.synth import synthesize


class _RecordingValidations:
    """Stands in for ``aws_cdk.Validations`` in stacks.nag: records acknowledgments, passes everything else on."""

    recorded: list[tuple[str, str]] = []

    @classmethod
    def of(cls, scope: Any) -> Any:
        real = cdk.Validations.of(scope)

        class _Scope:
            def acknowledge(self, acknowledgment: cdk.Acknowledgment) -> None:
                cls.recorded.append((scope.node.path, acknowledgment.id))

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        return _Scope()


def _findings_and_acks(
    outdir: Path, env: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[tuple[str, str]]]:
    _RecordingValidations.recorded = []
    monkeypatch.setattr(nag, "Validations", _RecordingValidations)
    syn = synthesize(outdir, env)
    return syn.findings, list(_RecordingValidations.recorded)


@pytest.mark.parametrize("env", ["dev", "prod", "studio"])
def test_every_acknowledgment_matches_a_finding_in_its_scope(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    findings, acks = _findings_and_acks(tmp_path, env, monkeypatch)
    assert len(acks) > 30 and len(findings) > 30  # the packs ran and the acknowledgments were seen
    # "<rule id> @ <construct path>: <description>"
    found = [(f.split(" @ ", 1)[0], f.split(" @ ", 1)[1].split(": ", 1)[0]) for f in findings]
    unmatched = [
        (path, rule) for path, rule in acks
        if not any(r == rule and (p == path or p.startswith(path + "/")) for r, p in found)
    ]
    assert unmatched == [], "\n".join(f"{rule} @ {path}" for path, rule in unmatched)
