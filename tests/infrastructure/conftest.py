from __future__ import annotations

import pytest

from tests.infrastructure.synth import Synthesis, synthesize


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The dev environment: creates the private workforce, automated labeling on."""
    return synthesize(tmp_path_factory.mktemp("cdk-dev"), "dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The prod environment: attaches to the account's existing workforce, retains data."""
    return synthesize(tmp_path_factory.mktemp("cdk-prod"), "prod")


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The studio environment: labeling.backend 'label_studio', with the Label Studio deployment."""
    return synthesize(tmp_path_factory.mktemp("cdk-studio"), "studio")
