"""The deploy-time portal set-up against moto's Cognito (boto3 validates every request against the service model)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from fieldlabel.workforce.portal import PortalSettings, set_up_portal
from moto import mock_aws

SUBDOMAIN = "abc123xyz.labeling.us-east-1.sagemaker.aws"


class FakeSageMaker:
    """moto has no work teams; this answers DescribeWorkteam like the service (facts §6: SubDomain)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def describe_workteam(self, WorkteamName: str) -> dict[str, Any]:  # noqa: N803 - boto3 keyword
        self.calls.append(WorkteamName)
        return {"Workteam": {"WorkteamName": WorkteamName, "SubDomain": SUBDOMAIN}}


@pytest.fixture
def cognito() -> Any:
    with mock_aws():
        client = boto3.client("cognito-idp", region_name="us-east-1")
        yield client


def _pool(cognito: Any) -> tuple[str, str]:
    pool = cognito.create_user_pool(
        PoolName="taxonomists",
        MfaConfiguration="OFF",
        Policies={"PasswordPolicy": {"MinimumLength": 14, "RequireSymbols": True}},
        AdminCreateUserConfig={
            "AllowAdminCreateUserOnly": True,
            "InviteMessageTemplate": {"EmailMessage": "hi {username} {####}", "EmailSubject": "s"},
        },
    )["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName="gt",
        GenerateSecret=True,
        ExplicitAuthFlows=["ALLOW_REFRESH_TOKEN_AUTH"],
        CallbackURLs=["https://placeholder.invalid/oauth2/idpresponse"],
    )["UserPoolClient"]["ClientId"]
    for g in ("taxonomists", "senior-reviewers"):
        cognito.create_group(UserPoolId=pool, GroupName=g)
    return pool, client


def _settings(pool: str, client: str, *, manage: bool = True) -> PortalSettings:
    return PortalSettings.from_properties(
        {
            "Project": "treelabel-dev",
            "UserPoolId": pool,
            "ClientId": client,
            "WorkteamName": "treelabel-dev-taxonomists",
            "ManageClient": str(manage).lower(),
            "ManageInvitation": str(manage).lower(),
            "Members": [
                {"Email": "ana@example.org", "Groups": ["taxonomists"]},
                {"Email": "ben@example.org", "Groups": ["taxonomists", "senior-reviewers"]},
            ],
        }
    )


def test_points_the_client_at_the_portal_and_keeps_its_other_settings(cognito: Any) -> None:
    pool, client = _pool(cognito)
    data = set_up_portal(cognito, FakeSageMaker(), _settings(pool, client))
    assert data == {"PortalUrl": f"https://{SUBDOMAIN}"}
    c = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client)["UserPoolClient"]
    assert c["CallbackURLs"] == [f"https://{SUBDOMAIN}/oauth2/idpresponse"]
    assert c["LogoutURLs"] == [f"https://{SUBDOMAIN}/logout"]
    assert c["AllowedOAuthFlows"] == ["code"] and c["SupportedIdentityProviders"] == ["COGNITO"]
    assert c["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]  # not reset to the default


def test_invitation_names_the_portal_and_pool_policies_survive(cognito: Any) -> None:
    pool, client = _pool(cognito)
    set_up_portal(cognito, FakeSageMaker(), _settings(pool, client))
    p = cognito.describe_user_pool(UserPoolId=pool)["UserPool"]
    msg = p["AdminCreateUserConfig"]["InviteMessageTemplate"]["EmailMessage"]
    assert f"https://{SUBDOMAIN}" in msg and "labeling portal" in msg and "{####}" in msg and "{username}" in msg
    assert p["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert p["Policies"]["PasswordPolicy"]["MinimumLength"] == 14


def test_members_are_created_once_and_added_to_their_groups(cognito: Any) -> None:
    pool, client = _pool(cognito)
    set_up_portal(cognito, FakeSageMaker(), _settings(pool, client))
    set_up_portal(cognito, FakeSageMaker(), _settings(pool, client))  # a CloudFormation update runs it again

    def members(group: str) -> list[str]:
        users = cognito.list_users_in_group(UserPoolId=pool, GroupName=group)["Users"]
        return sorted(u["Username"] for u in users)

    assert members("taxonomists") == ["ana@example.org", "ben@example.org"]
    assert members("senior-reviewers") == ["ben@example.org"]
    assert len(cognito.list_users(UserPoolId=pool)["Users"]) == 2


def test_existing_mode_leaves_the_shared_pool_and_client_alone(cognito: Any) -> None:
    pool, client = _pool(cognito)
    set_up_portal(cognito, FakeSageMaker(), _settings(pool, client, manage=False))
    c = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client)["UserPoolClient"]
    assert c["CallbackURLs"] == ["https://placeholder.invalid/oauth2/idpresponse"]
    invite = cognito.describe_user_pool(UserPoolId=pool)["UserPool"]["AdminCreateUserConfig"]["InviteMessageTemplate"]
    assert invite["EmailMessage"] == "hi {username} {####}"
    assert len(cognito.list_users(UserPoolId=pool)["Users"]) == 2


def test_handler_answers_the_provider_framework(cognito: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import portal_setup.handler as handler

    pool, client = _pool(cognito)
    fake = FakeSageMaker()
    real_client = boto3.client

    def client_factory(service: str, *a: Any, **k: Any) -> Any:
        return fake if service == "sagemaker" else real_client(service, *a, **k)

    monkeypatch.setattr(handler.boto3, "client", client_factory)
    props = {
        "Project": "p",
        "UserPoolId": pool,
        "ClientId": client,
        "WorkteamName": "team",
        "ManageClient": "true",
        "ManageInvitation": "false",
        "Members": [],
    }
    out = handler.lambda_handler({"RequestType": "Create", "ResourceProperties": props}, _Context())
    assert out["Data"] == {"PortalUrl": f"https://{SUBDOMAIN}"} and fake.calls == ["team"]
    gone = handler.lambda_handler(
        {"RequestType": "Delete", "ResourceProperties": props, "PhysicalResourceId": out["PhysicalResourceId"]},
        _Context(),
    )
    assert gone == {"PhysicalResourceId": out["PhysicalResourceId"]} and fake.calls == ["team"]


class _Context:
    function_name = "portal-setup"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:111111111111:function:portal-setup"
    aws_request_id = "req-1"
