"""Security properties of the synthesized templates (issue 2). Each test names the property it protects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infrastructure.synth import Synthesis

POLICY_TYPES = {
    "AWS::IAM::Policy": lambda p: [p["PolicyDocument"]],
    "AWS::IAM::ManagedPolicy": lambda p: [p["PolicyDocument"]],
    "AWS::IAM::Role": lambda p: [x["PolicyDocument"] for x in p.get("Policies", [])] + [p["AssumeRolePolicyDocument"]],
    "AWS::S3::BucketPolicy": lambda p: [p["PolicyDocument"]],
    "AWS::SQS::QueuePolicy": lambda p: [p["PolicyDocument"]],
    "AWS::SNS::TopicPolicy": lambda p: [p["PolicyDocument"]],
    "AWS::KMS::Key": lambda p: [p["KeyPolicy"]],
}


def _statements(syn: Synthesis) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for rtype, docs in POLICY_TYPES.items():
        for stack, lid, res in syn.resources(rtype):
            for doc in docs(res["Properties"]):
                for st in doc["Statement"]:
                    out.append((f"{stack}/{lid}", st))
    return out


def _actions(st: dict[str, Any]) -> list[str]:
    a = st.get("Action", [])
    return [a] if isinstance(a, str) else list(a)


def _bucket(syn: Synthesis, name_part: str) -> dict[str, Any]:
    found = [
        r["Properties"]
        for _, _, r in syn.resources("AWS::S3::Bucket")
        if name_part in str(r["Properties"].get("BucketName", ""))
    ]
    assert len(found) == 1, f"expected one bucket named *{name_part}*"
    return found[0]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_synth_has_no_unacknowledged_cdk_nag_finding(env: str, request: pytest.FixtureRequest) -> None:
    syn: Synthesis = request.getfixturevalue(env)
    assert syn.findings == []
    assert set(syn.templates) == {"storage", "workforce", "pipeline", "monitoring"}


@pytest.mark.parametrize("env", ["dev", "prod", "studio"])
def test_no_iam_statement_has_a_wildcard_action(env: str, request: pytest.FixtureRequest) -> None:
    syn: Synthesis = request.getfixturevalue(env)
    offenders = [
        (where, a) for where, st in _statements(syn) if st["Effect"] == "Allow" for a in _actions(st) if "*" in a
    ]
    assert offenders == []
    assert len(_statements(syn)) > 20  # the check looked at real policies


def test_no_full_access_managed_policy(dev: Synthesis) -> None:
    for _, lid, res in dev.resources("AWS::IAM::Role"):
        for arn in res["Properties"].get("ManagedPolicyArns", []):
            assert "FullAccess" not in str(arn), lid


@pytest.mark.parametrize("name", ["-intake-", "-artifacts-"])
def test_data_buckets_are_private_encrypted_versioned_logged(dev: Synthesis, name: str) -> None:
    b = _bucket(dev, name)
    sse = b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    assert "Fn::GetAtt" in sse["KMSMasterKeyID"]  # our customer-managed key, not aws/s3
    assert b["VersioningConfiguration"] == {"Status": "Enabled"}
    assert b["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "DestinationBucketName" in b["LoggingConfiguration"]
    rules = {r["Id"]: r for r in b["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7


def test_only_the_intake_bucket_has_the_get_only_cors_rule_ground_truth_needs(dev: Synthesis) -> None:
    assert _bucket(dev, "-intake-")["CorsConfiguration"]["CorsRules"] == [
        {
            "AllowedHeaders": [],
            "AllowedMethods": ["GET"],
            "AllowedOrigins": ["*"],
            "ExposedHeaders": ["Access-Control-Allow-Origin"],
        }
    ]
    assert "CorsConfiguration" not in _bucket(dev, "-artifacts-")


def test_every_bucket_denies_requests_without_tls(dev: Synthesis) -> None:
    buckets = {lid for _, lid, _ in dev.resources("AWS::S3::Bucket")}
    denied = set()
    for _, _, pol in dev.resources("AWS::S3::BucketPolicy"):
        for st in pol["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                denied.add(pol["Properties"]["Bucket"]["Ref"])
    assert buckets and denied == buckets


def test_intake_queue_has_dead_letter_queue_and_long_visibility(dev: Synthesis) -> None:
    queues = {r["Properties"].get("QueueName"): r["Properties"] for _, _, r in dev.resources("AWS::SQS::Queue")}
    events = queues["treelabel-dev-intake-events"]
    assert events["RedrivePolicy"]["maxReceiveCount"] == 5
    assert events["VisibilityTimeout"] >= 6 * 180
    assert all(q.get("SqsManagedSseEnabled") or q.get("KmsMasterKeyId") for q in queues.values())


def test_upload_notifications_go_to_the_intake_queue(dev: Synthesis) -> None:
    ((_, _, n),) = dev.resources("Custom::S3BucketNotifications")
    (qc,) = n["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert qc["Events"] == ["s3:ObjectCreated:*"]
    assert qc["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "uploads/"}]


def test_registry_tables_are_encrypted_with_point_in_time_recovery(dev: Synthesis) -> None:
    tables = dev.resources("AWS::DynamoDB::GlobalTable")
    assert len(tables) == 3
    for _, lid, t in tables:
        p = t["Properties"]
        assert p["SSESpecification"]["SSEEnabled"] is True and p["SSESpecification"]["SSEType"] == "KMS", lid
        for replica in p["Replicas"]:
            assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
            assert "KMSMasterKeyId" in replica["SSESpecification"]


def test_data_key_rotates(dev: Synthesis) -> None:
    for _, _, k in dev.resources("AWS::KMS::Key"):
        assert k["Properties"]["EnableKeyRotation"] is True


def test_ground_truth_role_is_least_privilege(dev: Synthesis) -> None:
    roles = [(lid, r) for _, lid, r in dev.resources("AWS::IAM::Role") if lid.startswith("GroundTruthExecutionRole")]
    assert len(roles) == 1
    lid, role = roles[0]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    # IfExists: Ground Truth is not documented to send aws:SourceAccount (docs/decisions.md, "Executed IAM")
    assert trust["Condition"] == {"StringEqualsIfExists": {"aws:SourceAccount": "111111111111"}}
    assert not role["Properties"].get("ManagedPolicyArns")
    policies = [
        p for _, _, p in dev.resources("AWS::IAM::Policy") if any(r.get("Ref") == lid for r in p["Properties"]["Roles"])
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    actions = {a for s in statements for a in _actions(s)}
    assert not {"s3:*", "sagemaker:*", "*"} & actions
    assert "s3:DeleteObject" not in actions
    (pass_role,) = [s for s in statements if "iam:PassRole" in _actions(s)]
    assert pass_role["Resource"] == {"Fn::GetAtt": [lid, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    reads = [s for s in statements if "s3:GetObject" in _actions(s)]
    read_arns = str([s["Resource"] for s in reads])
    assert "treelabel-dev-intake-111111111111-us-east-1/uploads/*" in read_arns
    assert "/config/*" not in read_arns and "/templates/*" not in read_arns  # nothing is kept there
    (writes,) = [s for s in statements if "s3:PutObject" in _actions(s)]
    assert writes["Resource"] == "arn:aws:s3:::treelabel-dev-artifacts-111111111111-us-east-1/gt-output/*"
    # The CDK asset bucket holding the UI templates and category file: exact objects, and bucket-level reads
    # limited to those keys (AWS documents ListBucket and GetBucketLocation on a job's input buckets).
    asset_reads = [s for s in reads if "cdk-" in str(s["Resource"])]
    assert asset_reads and all(s["Action"] == "s3:GetObject" and "*" not in str(s["Resource"]) for s in asset_reads)
    (asset_list,) = [s for s in statements if "s3:ListBucket" in _actions(s) and "cdk-" in str(s["Resource"])]
    keys = asset_list["Condition"]["StringLikeIfExists"]["s3:prefix"]
    assert keys and all("*" not in k for k in keys)
    for s in statements:
        if "lambda:InvokeFunction" in _actions(s):  # only our own functions, never a pattern
            assert "*" not in str(s["Resource"])


def test_cognito_pool_is_invitation_only_with_strong_passwords_and_mfa(dev: Synthesis) -> None:
    ((_, _, pool),) = dev.resources("AWS::Cognito::UserPool")
    p = pool["Properties"]
    assert p["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    invite = p["AdminCreateUserConfig"]["InviteMessageTemplate"]
    assert "labeling portal" in invite["EmailMessage"] and "{####}" in invite["EmailMessage"]
    policy = p["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 14
    assert all(policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols"))
    assert p["MfaConfiguration"] == "ON"
    assert p["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert len(dev.resources("AWS::Cognito::UserPoolDomain")) == 1
    ((_, _, client),) = dev.resources("AWS::Cognito::UserPoolClient")
    assert client["Properties"]["GenerateSecret"] is True
    groups = sorted(g["Properties"]["GroupName"] for _, _, g in dev.resources("AWS::Cognito::UserPoolGroup"))
    assert groups == ["senior-reviewers", "taxonomists"]


def test_create_mode_makes_the_workforce_and_two_teams(dev: Synthesis) -> None:
    ((_, _, wf),) = dev.resources("AWS::SageMaker::Workforce")
    assert set(wf["Properties"]["CognitoConfig"]) == {"UserPool", "ClientId"}
    teams = dev.resources("AWS::SageMaker::Workteam")
    assert len(teams) == 2
    for _, lid, team in teams:
        assert "WorkforceName" in team["Properties"], lid
        assert "NotificationTopicArn" in team["Properties"]["NotificationConfiguration"]
        assert "Workforce" in team.get("DependsOn", []) or any("Workforce" in d for d in team.get("DependsOn", []))


def test_existing_mode_attaches_to_the_accounts_workforce(prod: Synthesis) -> None:
    assert prod.resources("AWS::SageMaker::Workforce") == []
    assert prod.resources("AWS::Cognito::UserPool") == []
    for _, _, team in prod.resources("AWS::SageMaker::Workteam"):
        assert team["Properties"]["WorkforceName"] == "default"
        member = team["Properties"]["MemberDefinitions"][0]["CognitoMemberDefinition"]
        assert member["CognitoUserPool"] == "eu-west-1_EXAMPLE11"
        assert member["CognitoClientId"] == "1example23456789"


def test_sagemaker_may_publish_to_the_notification_topics(dev: Synthesis) -> None:
    # the work teams' topics; the operations and summary topics are tested with their stacks
    policies = [p for p in dev.resources("AWS::SNS::TopicPolicy") if p[0] == "workforce"]
    assert len(policies) == 2
    for _, _, pol in policies:
        allow = [s for s in pol["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
        assert any(
            s["Principal"] == {"Service": "sagemaker.amazonaws.com"} and _actions(s) == ["sns:Publish"] for s in allow
        )
    for _, _, topic in dev.resources("AWS::SNS::Topic"):
        assert "KmsMasterKeyId" in topic["Properties"]


def test_configured_people_are_created_in_their_groups(dev: Synthesis) -> None:
    ((_, _, setup),) = dev.resources("AWS::CloudFormation::CustomResource")
    members = {m["Email"]: m["Groups"] for m in setup["Properties"]["Members"]}
    assert members == {"taxonomist@example.org": ["taxonomists"], "senior.reviewer@example.org": ["senior-reviewers"]}


@pytest.mark.parametrize("output", ["PortalUrl", "TaxonomistsWorkteamArn", "ReviewersWorkteamArn", "UserPoolId"])
def test_workforce_outputs(dev: Synthesis, output: str) -> None:
    assert output in dev.templates["workforce"]["Outputs"]


def test_tags_from_config_reach_resources(dev: Synthesis) -> None:
    tags = {t["Key"]: t["Value"] for t in _bucket(dev, "-intake-")["Tags"]}
    assert tags["cost-center"] == "field-research" and tags["environment"] == "dev"
