"""Test-wide setup: import paths, an offline AWS environment, and shared fixtures.

Every test runs with fake credentials and a fixed region so that nothing can reach, or read credentials for, a real
AWS account: boto3 talks only to moto or to injected fakes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS = ROOT / "lambdas"
for p in (str(ROOT), str(LAMBDAS)):
    if p not in sys.path:
        sys.path.insert(0, p)

_OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_METRICS_NAMESPACE": "FieldLabel",
    "POWERTOOLS_SERVICE_NAME": "fieldlabel-tests",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
for _k, _v in _OFFLINE_ENV.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)

# Hypothesis' default 200 ms deadline turns a loaded 2-core CI machine into flaky failures; correctness, not speed,
# is what property tests check here (speed has its own benchmarks).
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("fieldlabel", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fieldlabel")


def pytest_sessionstart(session: object) -> None:
    from localrun.iamcheck import session as iam_session

    iam_session.session_start()


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """The executed-IAM check's report of grants no test used (tests/e2e; localrun/iamcheck/session.py)."""
    from localrun.iamcheck import session as iam_session

    config = getattr(session, "config", None)
    reporter = config.pluginmanager.get_plugin("terminalreporter") if config is not None else None
    iam_session.session_finish(reporter)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real Label Studio server on 127.0.0.1 (SQLite), one per test process (localrun/labelstudio.py).

    Tests share it, so each test creates its own projects (project titles carry the test's batch ids).
    """
    from localrun.labelstudio import LabelStudioServer

    with LabelStudioServer(tmp_path_factory.mktemp("label-studio")) as server:
        yield server
