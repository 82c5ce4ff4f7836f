"""Label Studio's database, its Fargate service and the two load balancers in front of it.

* :class:`StudioDatabase`: PostgreSQL on RDS in the isolated subnets, encrypted with the project's key, backed up,
  credentials generated into Secrets Manager.
* :class:`StudioService`: the official image on Fargate in the private subnets, bootstrapped with the admin account
  whose API token the pipeline uses (as ``localrun/labelstudio.py`` starts it locally); its task role may read only
  the photos' labeling copies (Label Studio presigns them for the browser).
* :class:`StudioLoadBalancers`: the taxonomists' internet-facing HTTPS load balancer, whose listener first signs
  people in through the project's Cognito user pool; and an internal HTTPS load balancer under the same host name
  (a private hosted zone answers for it inside the VPC) that only the pipeline's functions may reach.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import grants
from stacks.config import AppConfig, LabelStudio
from stacks.label_studio_network import LabelStudioNetwork
from stacks.label_studio_refs import grant_decrypt_via_secrets_manager
from stacks.lambda_code import retention_days
from stacks.nag import ack, checkov_skip

CONTAINER_NAME = "label-studio"
CONTAINER_PORT = 8080
HEALTH_PATH = "/health"  # Label Studio's own health view: {"status": "UP"} once Django serves requests
DATABASE_NAME = "labelstudio"
DATABASE_USER = "labelstudio"
# What the task role may read in the intake bucket: the objects a task's image can name (a photo's labeling_ref is
# its labeling copy, or the original upload when that is already displayable; docs/contracts.md).
LABELING_PREFIXES = ("labeling-copies/", "uploads/")
# The first start migrates an empty database; until then the health check must not count.
FIRST_START_GRACE = Duration.minutes(10)


def _retain(config: AppConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY


def _log_group(scope: Construct, id_: str, config: AppConfig, key: kms.IKey, name: str | None = None) -> logs.LogGroup:
    return logs.LogGroup(
        scope, id_, log_group_name=name, retention=retention_days(config.retention.log_retention_days),
        encryption_key=key, removal_policy=_retain(config),
    )


class StudioDatabase(Construct):
    """Exposes ``instance``, ``secret`` (a view that knows its key), ``security_group``, ``log_groups``."""

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig, network: LabelStudioNetwork,
                 key: kms.IKey) -> None:
        super().__init__(scope, id_)
        ls = _settings(config)
        db = ls.database
        credentials = rds.DatabaseSecret(self, "Credentials", username=DATABASE_USER)
        # Under the data key, set on the resource for the reason given in stacks.label_studio_stack.encrypted_secret.
        resource = credentials.node.default_child
        assert isinstance(resource, secretsmanager.CfnSecret)
        resource.kms_key_id = key.key_arn
        ack(credentials, "AwsSolutions-SMG4",
            "The container reads the database password when a task starts; a rotation would break the running "
            "tasks' connections until a new deployment. Rotate by hand with a forced new deployment.")

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            description=f"{config.project}: Label Studio database (only the service connects)",
        )
        identifier = f"{config.project}-label-studio"
        # RDS writes its exported logs to these names; creating them first gives them our key and retention.
        self.log_groups = [
            _log_group(self, f"{kind.capitalize()}Logs", config, key, f"/aws/rds/instance/{identifier}/{kind}")
            for kind in ("postgresql", "upgrade")
        ]
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            instance_identifier=identifier,
            # A minor version RDS still creates (a bare "17" is refused for new instances); minor upgrades are
            # applied by RDS in the maintenance window.
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_9),
            instance_type=ec2.InstanceType(db.instance_class),
            vpc=network.vpc,
            vpc_subnets=network.database_subnets,
            security_groups=[self.security_group],
            publicly_accessible=False,
            credentials=rds.Credentials.from_secret(credentials),
            database_name=DATABASE_NAME,
            allocated_storage=db.allocated_storage_gib,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            storage_encryption_key=key,
            multi_az=db.multi_az,
            backup_retention=Duration.days(db.backup_retention_days),
            copy_tags_to_snapshot=True,
            delete_automated_backups=not config.removal_retain,
            deletion_protection=config.removal_retain,
            removal_policy=RemovalPolicy.SNAPSHOT if config.removal_retain else RemovalPolicy.DESTROY,
            auto_minor_version_upgrade=True,
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
        )
        for group in self.log_groups:
            self.instance.node.add_dependency(group)
        attached = self.instance.secret
        assert attached is not None
        # By the attachment's ARN (the same secret): whoever reads it then waits for RDS to have added the host and
        # port to it, so a task never starts with credentials that have no POSTGRE_HOST yet.
        self.secret = secretsmanager.Secret.from_secret_attributes(
            self, "CredentialsWithKey", secret_complete_arn=attached.secret_arn, encryption_key=key
        )
        self._acknowledge(config)

    def _acknowledge(self, config: AppConfig) -> None:
        db = _settings(config).database
        instance = self.instance
        ack(instance, "AwsSolutions-RDS11",
            "Only the service's security group reaches the database, in subnets without a route out; a "
            "non-default port would hide nothing from it.")
        checkov_skip(instance, "CKV_AWS_161",
                     "Label Studio has no IAM database authentication; its password lives in Secrets Manager.")
        checkov_skip(instance, "CKV_AWS_118",
                     "Enhanced monitoring needs a role with a managed policy; CPU, memory, storage and connection "
                     "metrics come from CloudWatch and are alarmed in the monitoring stack.")
        if not db.multi_az:
            reason = ("label_studio.database.multi_az is off: a labeling server for a small team tolerates the "
                      "minutes of a single-AZ recovery from the daily backups; set it to true for a standby.")
            ack(instance, "AwsSolutions-RDS3", reason)
            checkov_skip(instance, "CKV_AWS_157", reason)
        if not config.removal_retain:
            reason = ("retention.removal_policy is 'destroy' in this environment, so the database is meant to go "
                      "with the stack; 'retain' turns deletion protection on.")
            ack(instance, "AwsSolutions-RDS10", reason)


def _settings(config: AppConfig) -> LabelStudio:
    if config.label_studio is None:
        raise ValueError("label_studio: the Label Studio stack needs the label_studio block of the config")
    return config.label_studio


class StudioService(Construct):
    """Exposes ``cluster``, ``service``, ``task_role``, ``security_group``, ``log_group``."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        network: LabelStudioNetwork,
        database: StudioDatabase,
        key: kms.IKey,
        intake_bucket: s3.IBucket,
        token_secret: secretsmanager.ISecret,
        admin_password: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, id_)
        ls = _settings(config)
        stack = Stack.of(self)
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=network.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_role = iam.Role(
            self, "TaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.project}: Label Studio server (reads the photos' labeling copies, nothing else)",
        )
        # Label Studio's S3 storage presigns these objects for the browser with the task's credentials, and lists the
        # storage prefix once when the connection is checked. S3 decrypts them with the reader's kms:Decrypt, which
        # is allowed only through S3.
        self.task_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[intake_bucket.arn_for_objects(f"{p}*") for p in LABELING_PREFIXES],
        ))
        self.task_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[intake_bucket.bucket_arn],
            conditions=grants.list_prefix_condition(LABELING_PREFIXES),
        ))
        self.task_role.add_to_policy(iam.PolicyStatement(
            actions=["kms:Decrypt"], resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
        ))
        partition = stack.partition
        ack(self.task_role, f"AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{intake_bucket.bucket_name}/"
                            f"{LABELING_PREFIXES[0]}*]",
            "Any photo's labeling copy can be a task's image; the prefix holds nothing else.")
        ack(self.task_role, f"AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{intake_bucket.bucket_name}/"
                            f"{LABELING_PREFIXES[1]}*]",
            "A photo whose original is already displayable has no copy: its labeling_ref is the upload itself.")

        task = ecs.FargateTaskDefinition(
            self, "Task", cpu=ls.cpu, memory_limit_mib=ls.memory_mib, task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = _log_group(self, "Logs", config, key)
        origin = f"https://{ls.domain_name}"
        db = database.instance
        task.add_container(
            "LabelStudio",
            container_name=CONTAINER_NAME,
            image=ecs.ContainerImage.from_registry(ls.image),
            # `label-studio start` is the command that creates the admin account from LABEL_STUDIO_USERNAME /
            # _PASSWORD / _USER_TOKEN (and migrates the database) before serving, as localrun/labelstudio.py does.
            command=["label-studio", "start", "--no-browser", "--port", str(CONTAINER_PORT)],
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="label-studio", log_group=self.log_group),
            environment={
                "DJANGO_DB": "default",
                "POSTGRE_NAME": DATABASE_NAME,
                "POSTGRE_PORT": db.db_instance_endpoint_port,
                "LABEL_STUDIO_HOST": origin,
                # Behind the load balancer Django sees plain HTTP; the browser's origin is the HTTPS host.
                "CSRF_TRUSTED_ORIGINS": origin,
                "SESSION_COOKIE_SECURE": "1",
                "CSRF_COOKIE_SECURE": "1",
                "LABEL_STUDIO_USERNAME": ls.admin_email,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                # Accounts are made by `fieldlabel taxonomists add`, never by self sign-up.
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "AWS_DEFAULT_REGION": stack.region,
                "COLLECT_ANALYTICS": "false",
                "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LATEST_VERSION_CHECK": "false",
                "PYTHONUNBUFFERED": "1",
            },
            secrets={
                "POSTGRE_HOST": ecs.Secret.from_secrets_manager(database.secret, "host"),
                "POSTGRE_USER": ecs.Secret.from_secrets_manager(database.secret, "username"),
                "POSTGRE_PASSWORD": ecs.Secret.from_secrets_manager(database.secret, "password"),
                "LABEL_STUDIO_PASSWORD": ecs.Secret.from_secrets_manager(admin_password),
                "LABEL_STUDIO_USER_TOKEN": ecs.Secret.from_secrets_manager(token_secret),
            },
            # The image has Python but no curl.
            health_check=ecs.HealthCheck(
                command=["CMD-SHELL", "python3 -c \"import urllib.request; urllib.request.urlopen("
                         f"'http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}', timeout=4)\" || exit 1"],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.minutes(5),
            ),
        )
        # ECS reads the secrets above as the execution role; they are under the data key (see
        # stacks.label_studio_refs.grant_secret_read for why the grant is spelled out).
        grant_decrypt_via_secrets_manager(task.obtain_execution_role(), key)
        ack(task, "AwsSolutions-ECS2",
            "The environment holds only settings (database name and port, host name, feature switches); the "
            "database credentials, the admin password and the API token come from Secrets Manager.")

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            description=f"{config.project}: Label Studio service tasks",
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
            "HTTPS: the image registry, AWS APIs (Secrets Manager, CloudWatch Logs) and the pipeline webhook URL",
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=task,
            desired_count=ls.desired_count,
            assign_public_ip=False,
            vpc_subnets=network.service_subnets,
            security_groups=[self.security_group],
            health_check_grace_period=FIRST_START_GRACE,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            # A new task serves before the old one stops, so a deployment never leaves taxonomists without a server.
            min_healthy_percent=100,
            max_healthy_percent=200,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        # The first task migrates the database, so the service waits for the instance.
        self.service.node.add_dependency(db)
        db.connections.allow_default_port_from(self.security_group, "Label Studio tasks to PostgreSQL")


class StudioLoadBalancers(Construct):
    """Exposes ``public`` and ``internal`` (load balancers), ``public_targets``, ``internal_targets``,
    ``listener`` (the public HTTPS listener), ``client`` (the Cognito app client of the sign-in), ``private_zone``,
    ``logs_bucket``."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        network: LabelStudioNetwork,
        service: StudioService,
        user_pool_id: str,
        access_logs_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, id_)
        ls = _settings(config)
        vpc = network.vpc
        certificate = acm.Certificate.from_certificate_arn(self, "Certificate", ls.certificate_arn)

        # --- the taxonomists' load balancer ----------------------------------------------------------------------
        public_sg = ec2.SecurityGroup(
            self, "PublicSecurityGroup", vpc=vpc, allow_all_outbound=False,
            description=f"{config.project}: Label Studio load balancer for taxonomists (HTTPS only)",
        )
        sources = config.workforce.allowed_cidrs or ("0.0.0.0/0",)
        for cidr in sources:
            public_sg.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS from taxonomists")
        if not config.workforce.allowed_cidrs:
            ack(public_sg, "AwsSolutions-EC23",
                "Taxonomists work from anywhere (field stations, home); the listener signs everyone in through "
                "Cognito before a request reaches Label Studio. workforce.allowed_cidrs narrows this rule.")
        # The authenticate action calls Cognito's token and user-info endpoints from the load balancer itself.
        public_sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                                  "Cognito token and user-info endpoints (authenticate action)")
        self.public = elbv2.ApplicationLoadBalancer(
            self, "Public", vpc=vpc, internet_facing=True, security_group=public_sg,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
        )
        self.public.log_access_logs(access_logs_bucket, prefix="public")

        pool = cognito.UserPool.from_user_pool_id(self, "UserPool", user_pool_id)
        domain = cognito.UserPoolDomain.from_domain_name(
            self, "UserPoolDomain", config.workforce.cognito_domain_prefix or ""
        )
        # A client of its own: the load balancer's callback is the only redirect it accepts.
        self.client = cognito.UserPoolClient(
            self, "SignInClient", user_pool=pool, generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"https://{ls.domain_name}/oauth2/idpresponse"],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
        )
        self.public_targets = self._targets("PublicTargets", vpc, service)
        self.listener = self.public.add_listener(
            "Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS, certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS, open=False,
            default_action=elbv2_actions.AuthenticateCognitoAction(
                user_pool=pool, user_pool_client=self.client, user_pool_domain=domain,
                scope="openid email",
                session_timeout=Duration.hours(12),
                next=elbv2.ListenerAction.forward([self.public_targets]),
            ),
        )

        # --- the pipeline's load balancer: same host name and certificate, inside the VPC ----------------------------
        internal_sg = ec2.SecurityGroup(
            self, "InternalSecurityGroup", vpc=vpc, allow_all_outbound=False,
            description=f"{config.project}: Label Studio API for the pipeline functions",
        )
        internal_sg.add_ingress_rule(network.lambda_security_group, ec2.Port.tcp(443),
                                     "HTTPS from the pipeline Label Studio functions")
        self.internal = elbv2.ApplicationLoadBalancer(
            self, "Internal", vpc=vpc, internet_facing=False, security_group=internal_sg,
            vpc_subnets=network.service_subnets, drop_invalid_header_fields=True,
        )
        self.internal.log_access_logs(access_logs_bucket, prefix="internal")
        self.internal_targets = self._targets("InternalTargets", vpc, service)
        self.internal.add_listener(
            "Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS, certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS, open=False,
            default_action=elbv2.ListenerAction.forward([self.internal_targets]),
        )
        # Split horizon: inside the VPC the host name is the internal load balancer, so the functions call
        # https://<domain_name> with a certificate that matches and never meet the Cognito sign-in.
        self.private_zone = route53.PrivateHostedZone(self, "PrivateZone", zone_name=ls.domain_name, vpc=vpc)
        route53.ARecord(self, "InternalAlias", zone=self.private_zone,
                        target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.internal)))
        if ls.hosted_zone_id:
            route53.ARecord(
                self, "PublicAlias",
                zone=route53.HostedZone.from_hosted_zone_id(self, "PublicZone", ls.hosted_zone_id),
                record_name=f"{ls.domain_name}.",
                target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.public)),
            )

        for lb in (self.public, self.internal):
            service.security_group.connections.allow_from(
                lb, ec2.Port.tcp(CONTAINER_PORT), "Label Studio port from its load balancers"
            )

    def _targets(self, id_: str, vpc: ec2.IVpc, service: StudioService) -> elbv2.ApplicationTargetGroup:
        group = elbv2.ApplicationTargetGroup(
            self, id_, vpc=vpc, port=CONTAINER_PORT, protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            health_check=elbv2.HealthCheck(path=HEALTH_PATH, healthy_http_codes="200",
                                           interval=Duration.seconds(30), timeout=Duration.seconds(5)),
            deregistration_delay=Duration.seconds(30),
        )
        group.add_target(service.service.load_balancer_target(container_name=CONTAINER_NAME,
                                                              container_port=CONTAINER_PORT))
        return group
