"""Fixtures of the end-to-end workflow tests: the synthesized templates (once), a fresh harness per test, and the
executed-IAM check (localrun.iamcheck, docs/decisions.md "Executed IAM") around every test that runs the pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localrun.harness import WorkflowHarness, context_with, synth_templates
from localrun.iamcheck import session as iam_session
from localrun.iamcheck.check import IamCheck


@pytest.fixture(scope="session")
def templates() -> dict[str, dict[str, Any]]:
    """The dev environment with Ground Truth's automated labeling (``labeling.engine: groundtruth``), synthesized
    once per test session."""
    return synth_templates(context_with("groundtruth"))


@pytest.fixture(scope="session")
def engine_templates() -> dict[str, dict[str, Any]]:
    """The dev environment as shipped: the own engine (``labeling.engine: model``)."""
    return synth_templates()


@pytest.fixture(scope="session")
def studio_templates() -> dict[str, dict[str, Any]]:
    """The ``studio`` environment: the own engine with ``labeling.backend: label_studio`` (the Label Studio stack,
    and the workflow's Label Studio functions and run states)."""
    return synth_templates({"env": "studio"})


@pytest.fixture(scope="session")
def studio_iam_check(studio_templates: dict[str, dict[str, Any]]) -> IamCheck:
    """The IAM of the ``studio`` templates (the Label Studio functions' roles included)."""
    check = IamCheck(studio_templates, WorkflowHarness(studio_templates).account)
    iam_session.CHECKS.append(check)
    return check


@pytest.fixture(scope="session")
def iam_check(templates: dict[str, dict[str, Any]]) -> IamCheck:
    """The templates' IAM, for the harness account; collects what every test exercised."""
    check = IamCheck(templates, WorkflowHarness(templates).account)
    iam_session.CHECKS.append(check)
    return check


@pytest.fixture(scope="session")
def engine_iam_check(engine_templates: dict[str, dict[str, Any]]) -> IamCheck:
    """The IAM of the engine's templates (``labeling.engine: model``)."""
    check = IamCheck(engine_templates, WorkflowHarness(engine_templates).account)
    iam_session.CHECKS.append(check)
    return check


@pytest.fixture(autouse=True)
def executed_iam(request: pytest.FixtureRequest) -> Iterator[None]:
    """Record every AWS call of a test that runs the pipeline (it uses ``harness``, ``templates``,
    ``engine_templates`` or ``studio_templates``) and fail it when the deployed IAM would deny one: with the caller,
    the action, the resource and the statement to add."""
    names = set(request.fixturenames)
    if "studio_templates" in names:
        check: IamCheck = request.getfixturevalue("studio_iam_check")
    elif "engine_templates" in names:
        check = request.getfixturevalue("engine_iam_check")
    elif {"harness", "templates"} & names:
        check = request.getfixturevalue("iam_check")
    else:
        yield
        return
    with check.recorder() as rec:
        yield
    result = check.evaluate(rec)
    if result.denied:
        pytest.fail(result.message(), pytrace=False)


@pytest.fixture
def harness(templates: dict[str, dict[str, Any]]) -> Iterator[WorkflowHarness]:
    """A moto world built from the templates, with the real handlers and a fake Ground Truth."""
    with WorkflowHarness(templates) as h:
        yield h
