"""The Label Studio deployment (labeling.backend 'label_studio', environment 'studio'): assertions on the synthesized
templates. Each test names the property it protects."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.label_studio_server import CONTAINER_PORT, LABELING_PREFIXES
from tests.infrastructure.monitoring_helpers import (
    alarms_on,
    config_of,
    dashboard_text,
    resolve,
    resources,
    topic_ref,
)
from tests.infrastructure.synth import Synthesis, synthesize

LS = "label_studio"
CONFIG = config_of("studio")
SETTINGS = CONFIG.label_studio
assert SETTINGS is not None
INTAKE = f"treelabel-studio-intake-{CONFIG.account}-{CONFIG.region}"


def _res(syn: Synthesis, rtype: str, stack: str = LS) -> dict[str, dict[str, Any]]:
    return resources(syn, stack, rtype)


def _only(syn: Synthesis, rtype: str, **props: Any) -> tuple[str, dict[str, Any]]:
    found = [(lid, r["Properties"]) for lid, r in _res(syn, rtype).items()
             if all(r["Properties"].get(k) == v for k, v in props.items())]
    assert len(found) == 1, f"expected one {rtype} with {props}, found {[lid for lid, _ in found]}"
    return found[0]


def _data_key(syn: Synthesis) -> Any:
    ((lid, _),) = [(lid, r) for lid, r in resources(syn, "storage", "AWS::KMS::Key").items()
                   if "DataKey" in lid]
    return {"Fn::GetAtt": [lid, "Arn"]}


def _subnets_of_type(syn: Synthesis, kind: str) -> list[dict[str, str]]:
    """Refs to the VPC's subnets whose CDK subnet type is ``kind`` (Public, Private, Isolated)."""
    out = []
    for lid, r in _res(syn, "AWS::EC2::Subnet").items():
        tags = {t["Key"]: t["Value"] for t in r["Properties"]["Tags"]}
        if tags["aws-cdk:subnet-type"] == kind:
            out.append({"Ref": lid})
    assert len(out) == 2, f"expected a {kind} subnet in each of two zones"
    return sorted(out, key=lambda r: r["Ref"])


def _group_id(lid: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [lid, "GroupId"]}


def _groups(syn: Synthesis) -> dict[str, str]:
    """Security-group logical id by a short name taken from its description."""
    names = {"database": "database", "service tasks": "service", "for taxonomists": "public_lb",
             "for the pipeline functions": "internal_lb", "that call the Label Studio API": "functions"}
    out = {}
    for lid, r in _res(syn, "AWS::EC2::SecurityGroup").items():
        desc = r["Properties"]["GroupDescription"]
        matched = [short for part, short in names.items() if part in desc]
        assert len(matched) == 1, desc
        out[matched[0]] = lid
    assert set(out) == set(names.values())
    return out


def _ingress(syn: Synthesis, group_lid: str) -> list[dict[str, Any]]:
    """Every ingress rule of a group: inline ones and separate AWS::EC2::SecurityGroupIngress resources."""
    inline = list(_res(syn, "AWS::EC2::SecurityGroup")[group_lid]["Properties"].get("SecurityGroupIngress", []))
    separate = [r["Properties"] for r in _res(syn, "AWS::EC2::SecurityGroupIngress").values()
                if r["Properties"]["GroupId"] == _group_id(group_lid)]
    return inline + separate


def _policy_statements(syn: Synthesis, role_lid: str) -> list[dict[str, Any]]:
    role = _res(syn, "AWS::IAM::Role")[role_lid]["Properties"]
    assert not role.get("ManagedPolicyArns"), f"{role_lid} has a managed policy"
    out = [st for p in role.get("Policies", []) for st in p["PolicyDocument"]["Statement"]]
    for pol in _res(syn, "AWS::IAM::Policy").values():
        if {"Ref": role_lid} in pol["Properties"]["Roles"]:
            out += pol["Properties"]["PolicyDocument"]["Statement"]
    return out


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _task_definition(syn: Synthesis) -> dict[str, Any]:
    ((_, task),) = _res(syn, "AWS::ECS::TaskDefinition").items()
    return task["Properties"]


# --- only for this backend ----------------------------------------------------------------------------------------

def test_the_studio_environment_adds_the_stack_cleanly_and_the_others_have_none(studio: Synthesis,
                                                                               dev: Synthesis) -> None:
    assert studio.findings == []
    assert set(studio.templates) == {"storage", "workforce", LS, "pipeline", "monitoring"}
    assert LS not in dev.templates
    kinds = {r["Type"] for tpl in dev.templates.values() for r in tpl["Resources"].values()}
    assert not kinds & {"AWS::ECS::Service", "AWS::RDS::DBInstance", "AWS::EC2::VPC"}


def test_outputs_name_the_server_and_its_token_for_the_cli(studio: Synthesis) -> None:
    outputs = studio.templates[LS]["Outputs"]
    assert outputs["LabelStudioUrl"]["Value"] == f"https://{SETTINGS.domain_name}"
    token_lid = next(lid for lid, r in _res(studio, "AWS::SecretsManager::Secret").items()
                     if "API token" in r["Properties"]["Description"])
    assert outputs["LabelStudioTokenSecretArn"]["Value"] == {"Ref": token_lid}


# --- database -----------------------------------------------------------------------------------------------------

def test_database_is_encrypted_with_the_data_key_private_and_backed_up(studio: Synthesis) -> None:
    ((_, db),) = _res(studio, "AWS::RDS::DBInstance").items()
    p = db["Properties"]
    assert p["StorageEncrypted"] is True
    assert resolve(studio, p["KmsKeyId"]) == _data_key(studio)
    assert p["PubliclyAccessible"] is False
    assert p["BackupRetentionPeriod"] == SETTINGS.database.backup_retention_days
    assert p["Engine"] == "postgres" and p["DBInstanceClass"] == f"db.{SETTINGS.database.instance_class}"
    assert p["EnableCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    ((_, group),) = _res(studio, "AWS::RDS::DBSubnetGroup").items()
    assert sorted(group["Properties"]["SubnetIds"], key=lambda r: r["Ref"]) == _subnets_of_type(studio, "Isolated")
    # The exported logs land in groups made beforehand, under the data key.
    names = {r["Properties"].get("LogGroupName"): r["Properties"]
             for r in _res(studio, "AWS::Logs::LogGroup").values()}
    for kind in ("postgresql", "upgrade"):
        group_props = names[f"/aws/rds/instance/{p['DBInstanceIdentifier']}/{kind}"]
        assert resolve(studio, group_props["KmsKeyId"]) == _data_key(studio)


def test_every_secret_and_log_group_is_under_the_data_key(studio: Synthesis) -> None:
    secrets = _res(studio, "AWS::SecretsManager::Secret")
    assert len(secrets) == 4  # API token, webhook secret, admin password, database credentials
    for lid, r in secrets.items():
        assert resolve(studio, r["Properties"]["KmsKeyId"]) == _data_key(studio), lid
    groups = _res(studio, "AWS::Logs::LogGroup")
    assert len(groups) == 4  # flow logs, container, two database exports
    for lid, r in groups.items():
        assert resolve(studio, r["Properties"]["KmsKeyId"]) == _data_key(studio), lid
        assert r["Properties"]["RetentionInDays"] == CONFIG.retention.log_retention_days, lid


# --- service ------------------------------------------------------------------------------------------------------

def test_service_runs_in_private_subnets_without_a_public_address(studio: Synthesis) -> None:
    ((_, service),) = _res(studio, "AWS::ECS::Service").items()
    net = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert net["AssignPublicIp"] == "DISABLED"
    assert sorted(net["Subnets"], key=lambda r: r["Ref"]) == _subnets_of_type(studio, "Private")
    assert service["Properties"]["DesiredCount"] == SETTINGS.desired_count
    assert service["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True, "Rollback": True}
    assert len(service["Properties"]["LoadBalancers"]) == 2  # behind both load balancers


def test_container_is_the_pinned_image_bootstrapped_like_the_local_server(studio: Synthesis) -> None:
    task = _task_definition(studio)
    assert (task["Cpu"], task["Memory"]) == (str(SETTINGS.cpu), str(SETTINGS.memory_mib))
    ((container),) = task["ContainerDefinitions"]
    assert container["Image"] == SETTINGS.image
    assert container["Command"][:2] == ["label-studio", "start"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["DJANGO_DB"] == "default" and env["POSTGRE_NAME"] == "labelstudio"
    assert env["LABEL_STUDIO_HOST"] == f"https://{SETTINGS.domain_name}"
    assert env["CSRF_TRUSTED_ORIGINS"] == f"https://{SETTINGS.domain_name}"
    assert env["LABEL_STUDIO_USERNAME"] == SETTINGS.admin_email
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    # Nothing secret in the environment: the credentials and the token come from Secrets Manager.
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    assert set(secrets) == {"POSTGRE_HOST", "POSTGRE_USER", "POSTGRE_PASSWORD", "LABEL_STUDIO_PASSWORD",
                            "LABEL_STUDIO_USER_TOKEN"}
    assert not set(secrets) & set(env)
    token_lid = next(lid for lid, r in _res(studio, "AWS::SecretsManager::Secret").items()
                     if "API token" in r["Properties"]["Description"])
    assert secrets["LABEL_STUDIO_USER_TOKEN"] == {"Ref": token_lid}
    for name, field in (("POSTGRE_HOST", "host"), ("POSTGRE_USER", "username"), ("POSTGRE_PASSWORD", "password")):
        assert secrets[name]["Fn::Join"][1][-1] == f":{field}::", name
    health = " ".join(container["HealthCheck"]["Command"])
    assert f"127.0.0.1:{CONTAINER_PORT}/health" in health
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_task_role_reads_only_the_labeling_copies(studio: Synthesis) -> None:
    role_lid = _task_definition(studio)["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = _policy_statements(studio, role_lid)
    by_action = {tuple(_as_list(st["Action"])): st for st in statements}
    assert set(by_action) == {("s3:GetObject",), ("s3:ListBucket",), ("kms:Decrypt",)}
    assert sorted(by_action[("s3:GetObject",)]["Resource"]) == sorted(
        f"arn:aws:s3:::{INTAKE}/{p}*" for p in LABELING_PREFIXES)
    listing = by_action[("s3:ListBucket",)]
    assert listing["Resource"] == f"arn:aws:s3:::{INTAKE}"
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": [f"{p}*" for p in LABELING_PREFIXES]}}
    decrypt = by_action[("kms:Decrypt",)]
    assert resolve(studio, decrypt["Resource"]) == _data_key(studio)
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{CONFIG.region}.amazonaws.com"}}


def test_execution_role_reads_the_service_secrets_and_decrypts_only_through_secrets_manager(
    studio: Synthesis,
) -> None:
    role_lid = _task_definition(studio)["ExecutionRoleArn"]["Fn::GetAtt"][0]
    statements = _policy_statements(studio, role_lid)
    reads = [st for st in statements if "secretsmanager:GetSecretValue" in _as_list(st["Action"])]
    (read,) = reads
    webhook_lid = next(lid for lid, r in _res(studio, "AWS::SecretsManager::Secret").items()
                       if "webhooks" in r["Properties"]["Description"])
    assert len(read["Resource"]) == 3 and {"Ref": webhook_lid} not in read["Resource"]
    (decrypt,) = [st for st in statements if _as_list(st["Action"]) == ["kms:Decrypt"]]
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{CONFIG.region}.amazonaws.com"}}


# --- load balancers -----------------------------------------------------------------------------------------------

def _listener_of(syn: Synthesis, scheme: str) -> dict[str, Any]:
    lb_lid, _ = _only(syn, "AWS::ElasticLoadBalancingV2::LoadBalancer", Scheme=scheme)
    _, listener = _only(syn, "AWS::ElasticLoadBalancingV2::Listener", LoadBalancerArn={"Ref": lb_lid})
    return listener


def test_taxonomists_listener_is_https_and_signs_in_through_cognito_before_forwarding(studio: Synthesis) -> None:
    listener = _listener_of(studio, "internet-facing")
    assert listener["Protocol"] == "HTTPS" and listener["Port"] == 443
    assert listener["Certificates"] == [{"CertificateArn": SETTINGS.certificate_arn}]
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    auth, forward = sorted(listener["DefaultActions"], key=lambda a: a["Order"])
    assert auth["Type"] == "authenticate-cognito" and forward["Type"] == "forward"
    cfg = auth["AuthenticateCognitoConfig"]
    assert cfg["UserPoolDomain"] == CONFIG.workforce.cognito_domain_prefix
    pool_ref = cfg["UserPoolArn"]["Fn::Join"][1][-1]
    assert resolve(studio, pool_ref) == {"Ref": next(iter(resources(studio, "workforce", "AWS::Cognito::UserPool")))}
    client_lid = cfg["UserPoolClientId"]["Ref"]
    client = _res(studio, "AWS::Cognito::UserPoolClient")[client_lid]["Properties"]
    assert client["CallbackURLs"] == [f"https://{SETTINGS.domain_name}/oauth2/idpresponse"]
    assert client["GenerateSecret"] is True and client["AllowedOAuthFlows"] == ["code"]
    target = _res(studio, "AWS::ElasticLoadBalancingV2::TargetGroup")[forward["TargetGroupArn"]["Ref"]]
    assert target["Properties"]["HealthCheckPath"] == "/health"
    assert target["Properties"]["Port"] == CONTAINER_PORT and target["Properties"]["TargetType"] == "ip"


def test_pipeline_reaches_the_api_on_an_internal_https_listener_under_the_same_name(studio: Synthesis) -> None:
    listener = _listener_of(studio, "internal")
    assert listener["Protocol"] == "HTTPS" and listener["Certificates"] == [
        {"CertificateArn": SETTINGS.certificate_arn}]
    ((action),) = listener["DefaultActions"]
    assert action["Type"] == "forward"
    ((zone_lid, zone),) = _res(studio, "AWS::Route53::HostedZone").items()
    assert zone["Properties"]["Name"] == f"{SETTINGS.domain_name}."
    assert zone["Properties"]["VPCs"][0]["VPCId"] == {"Ref": next(iter(_res(studio, "AWS::EC2::VPC")))}
    internal_lid, _ = _only(studio, "AWS::ElasticLoadBalancingV2::LoadBalancer", Scheme="internal")
    ((_, record),) = _res(studio, "AWS::Route53::RecordSet").items()
    assert record["Properties"]["HostedZoneId"] == {"Ref": zone_lid}
    assert record["Properties"]["Name"] == f"{SETTINGS.domain_name}."
    assert internal_lid in str(record["Properties"]["AliasTarget"]["DNSName"])


def test_load_balancers_log_access_and_drop_invalid_headers(studio: Synthesis) -> None:
    for _, lb in _res(studio, "AWS::ElasticLoadBalancingV2::LoadBalancer").items():
        attrs = {a["Key"]: a["Value"] for a in lb["Properties"]["LoadBalancerAttributes"]}
        assert attrs["access_logs.s3.enabled"] == "true"
        assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"


# --- security groups ----------------------------------------------------------------------------------------------

def test_security_groups_admit_only_the_next_hop(studio: Synthesis) -> None:
    g = _groups(studio)

    def sources(group: str) -> list[tuple[Any, Any, Any]]:
        return sorted((((r.get("SourceSecurityGroupId") or r.get("CidrIp")), r["FromPort"], r["ToPort"])
                       for r in _ingress(studio, g[group])), key=str)

    # Database: only the service's tasks, on the database's port.
    ((source, port, _),) = sources("database")
    assert source == _group_id(g["service"])
    assert port == {"Fn::GetAtt": [next(iter(_res(studio, "AWS::RDS::DBInstance"))), "Endpoint.Port"]}
    # Service: only its two load balancers, on Label Studio's port.
    assert sources("service") == sorted([(_group_id(g["public_lb"]), CONTAINER_PORT, CONTAINER_PORT),
                                         (_group_id(g["internal_lb"]), CONTAINER_PORT, CONTAINER_PORT)],
                                        key=str)
    # Internal load balancer: only the pipeline's functions, HTTPS.
    assert sources("internal_lb") == [(_group_id(g["functions"]), 443, 443)]
    # Taxonomists' load balancer: HTTPS only (from anywhere unless workforce.allowed_cidrs narrows it).
    assert sources("public_lb") == [("0.0.0.0/0", 443, 443)]
    # Nothing else is open to the internet, and the functions' group admits nothing.
    assert sources("functions") == []
    for name, lid in g.items():
        if name != "public_lb":
            assert all("CidrIp" not in r for r in _ingress(studio, lid)), name


def test_database_and_functions_cannot_reach_out_beyond_what_they_need(studio: Synthesis) -> None:
    g = _groups(studio)
    groups = _res(studio, "AWS::EC2::SecurityGroup")
    db_egress = groups[g["database"]]["Properties"]["SecurityGroupEgress"]
    assert db_egress == [{"CidrIp": "255.255.255.255/32", "Description": "Disallow all traffic", "FromPort": 252,
                          "IpProtocol": "icmp", "ToPort": 86}]  # CDK's "no egress" marker
    fn_egress = groups[g["functions"]]["Properties"]["SecurityGroupEgress"]
    assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in fn_egress] == [("0.0.0.0/0", 443, 443)]


# --- monitoring ---------------------------------------------------------------------------------------------------

def test_monitoring_alarms_on_5xx_unhealthy_hosts_cpu_memory_and_the_database(studio: Synthesis) -> None:
    lbs = {r["Properties"]["Scheme"]: {"Fn::GetAtt": [lid, "LoadBalancerFullName"]}
           for lid, r in _res(studio, "AWS::ElasticLoadBalancingV2::LoadBalancer").items()}
    (five_xx,) = alarms_on(studio, "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", LoadBalancer=lbs["internal"])
    watched = {(m.name, str(m.dimensions["LoadBalancer"])) for m in five_xx.metrics}
    assert {name for name, _ in watched} == {"HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"}
    assert {lb for _, lb in watched} == {str(lbs["internet-facing"]), str(lbs["internal"])}
    listener = _listener_of(studio, "internet-facing")
    targets = next(a["TargetGroupArn"]["Ref"] for a in listener["DefaultActions"] if a["Type"] == "forward")
    (unhealthy,) = alarms_on(studio, "AWS/ApplicationELB", "UnHealthyHostCount",
                             TargetGroup={"Fn::GetAtt": [targets, "TargetGroupFullName"]})
    assert unhealthy.threshold == 0 and unhealthy.comparison == "GreaterThanThreshold"
    ((service_lid, _),) = _res(studio, "AWS::ECS::Service").items()
    for metric in ("CPUUtilization", "MemoryUtilization"):
        (alarm,) = alarms_on(studio, "AWS/ECS", metric, ServiceName={"Fn::GetAtt": [service_lid, "Name"]})
        assert alarm.threshold == 90
    db_lid = next(iter(_res(studio, "AWS::RDS::DBInstance")))
    for metric in ("CPUUtilization", "FreeStorageSpace"):
        assert alarms_on(studio, "AWS/RDS", metric, DBInstanceIdentifier={"Ref": db_lid}), metric
    topic = topic_ref(studio)
    for alarm in [five_xx, unhealthy, *alarms_on(studio, "AWS/RDS", "FreeStorageSpace")]:
        assert topic in alarm.props["AlarmActions"]
    dashboard = dashboard_text(studio)
    assert "Label Studio: service, load balancers, database" in dashboard
    assert "Label Studio errors (container log, last 50)" in dashboard


# --- an existing workforce, office networks only -------------------------------------------------------------------

EXISTING = {
    "workforce": {"mode": "existing", "existing_workforce_name": "default",
                  "existing_user_pool_id": "us-east-1_EXAMPLE11", "existing_app_client_id": "1example23456789",
                  "cognito_domain_prefix": "institute-workforce", "allowed_cidrs": ["203.0.113.0/24"]},
    "label_studio": {"hosted_zone_id": "Z0123456789EXAMPLE"},
}


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    return synthesize(tmp_path_factory.mktemp("cdk-studio-existing"), "studio", EXISTING)


def test_existing_pool_signs_in_allowed_networks_alone_reach_the_load_balancer_and_dns_points_at_it(
    existing: Synthesis,
) -> None:
    assert existing.findings == []
    listener = _listener_of(existing, "internet-facing")
    auth = next(a for a in listener["DefaultActions"] if a["Type"] == "authenticate-cognito")
    cfg = auth["AuthenticateCognitoConfig"]
    assert cfg["UserPoolDomain"] == "institute-workforce"
    assert cfg["UserPoolArn"] == f"arn:aws:cognito-idp:{CONFIG.region}:{CONFIG.account}:userpool/us-east-1_EXAMPLE11"
    public_lb = _groups(existing)["public_lb"]
    assert [(r["CidrIp"], r["FromPort"]) for r in _ingress(existing, public_lb)] == [("203.0.113.0/24", 443)]
    public_alias = [r["Properties"] for r in _res(existing, "AWS::Route53::RecordSet").values()
                    if r["Properties"].get("HostedZoneId") == "Z0123456789EXAMPLE"]
    (alias,) = public_alias
    public_lb_lid, _ = _only(existing, "AWS::ElasticLoadBalancingV2::LoadBalancer", Scheme="internet-facing")
    assert alias["Name"] == f"{SETTINGS.domain_name}." and alias["Type"] == "A"
    assert public_lb_lid in str(alias["AliasTarget"]["DNSName"])
