"""The offline summary (part of the README's main command) reads a real synthesized assembly."""

from __future__ import annotations

from scripts.summarize import main, render, summarize
from tests.infrastructure.synth import Synthesis


def test_summary_lists_each_stack_and_its_outputs(dev: Synthesis, capsys) -> None:  # type: ignore[no-untyped-def]
    stacks = summarize(dev.outdir)
    assert set(stacks) == {
        "treelabel-dev-Storage", "treelabel-dev-Workforce", "treelabel-dev-Pipeline", "treelabel-dev-Monitoring"
    }
    workforce = stacks["treelabel-dev-Workforce"]
    assert workforce["highlights"]["Ground Truth work teams"] == 2
    assert "PortalUrl" in workforce["outputs"]
    assert not any(k.startswith("ExportsOutput") for s in stacks.values() for k in s["outputs"])
    text = render(stacks)
    assert "treelabel-dev-Storage  [aws://111111111111/us-east-1]" in text
    assert main([str(dev.outdir)]) == 0 and "Ground Truth private workforces" in capsys.readouterr().out


def test_summary_explains_a_missing_assembly(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([str(tmp_path)]) == 1
    assert "run `make synth` first" in capsys.readouterr().err
