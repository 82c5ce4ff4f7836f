"""The ``ls_accounts`` Lambda: the admin token in moto Secrets Manager, the REAL local Label Studio server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from fieldlabel.labeling.label_studio.client import LabelStudioClient
from moto import mock_aws

from localrun.labelstudio import LabelStudioServer
from tests.unit.labelstudio.signin import signs_in


@dataclass
class Context:
    function_name: str = "ls-accounts"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111111111111:function:ls-accounts"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def handler(label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # The JSON shape of the secret; the plain string is covered by the CLI test.
        arn = boto3.client("secretsmanager").create_secret(
            Name="ls-token", SecretString=json.dumps({"token": label_studio.token}))["ARN"]
        monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
        monkeypatch.setenv("LABEL_STUDIO_TOKEN_SECRET_ARN", arn)
        from ls_accounts import handler as module

        yield module


def test_the_handler_makes_the_account_and_logs_no_password(handler: Any, label_studio: LabelStudioServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    answer = handler.lambda_handler({"email": "Handler.Person@Example.org", "name": "Handler de Person"}, Context())
    assert answer["created"] is True and answer["email"] == "handler.person@example.org"
    assert answer["url"] == label_studio.url and isinstance(answer["password"], str)
    assert signs_in(label_studio.url, answer["email"], answer["password"])
    user = LabelStudioClient(label_studio.url, label_studio.token).find_user(answer["email"])
    assert user is not None and (user["id"], user["first_name"], user["last_name"]) == (
        answer["user_id"], "Handler", "de Person")
    records = [r for r in caplog.records if r.pathname.endswith("ls_accounts/handler.py")]
    assert [r.getMessage() for r in records] == ["Label Studio account"]  # it logs, but not the password
    assert all(answer["password"] not in json.dumps(r.__dict__, default=str) for r in caplog.records)

    again = handler.lambda_handler({"email": "handler.person@example.org"}, Context())
    assert (again["created"], again["password"], again["user_id"]) == (False, None, answer["user_id"])


def test_a_bad_event_is_refused_before_any_call(handler: Any) -> None:
    with pytest.raises(ValueError, match="email"):
        handler.lambda_handler({"name": "Nobody"}, Context())


def test_a_missing_setting_is_named(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_TOKEN_SECRET_ARN")
    with pytest.raises(RuntimeError, match="LABEL_STUDIO_TOKEN_SECRET_ARN"):
        handler.lambda_handler({"email": "a@example.org"}, Context())
