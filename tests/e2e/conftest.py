"""Fixtures of the end-to-end workflow tests: the synthesized templates (once) and a fresh harness per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localrun.harness import WorkflowHarness, synth_templates


@pytest.fixture(scope="session")
def templates() -> dict[str, dict[str, Any]]:
    """The dev environment's templates, synthesized once per test session."""
    return synth_templates()


@pytest.fixture
def harness(templates: dict[str, dict[str, Any]]) -> Iterator[WorkflowHarness]:
    """A moto world built from the templates, with the real handlers and a fake Ground Truth."""
    with WorkflowHarness(templates) as h:
        yield h
