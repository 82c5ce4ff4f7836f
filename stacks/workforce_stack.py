"""The taxonomists: a Cognito user pool, the private workforce, and one work team per group.

There can be only one private workforce per account and region (facts §6). ``workforce.mode = "create"`` makes it
(with our own user pool); ``"existing"`` attaches our groups and work teams to the account's workforce and its pool.
"""

from __future__ import annotations

import hashlib
import json

from aws_cdk import CfnOutput, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.config import AppConfig
from stacks.kms_policy import account_key_policy, allow_cloudwatch_logs
from stacks.lambda_code import LambdaKit, function_logs, lambda_role
from stacks.nag import ack, ack_wildcards, arn_token, checkov_skip_deploy_time_function

TAXONOMISTS_GROUP = "taxonomists"
REVIEWERS_GROUP = "senior-reviewers"
# Until the portal exists its URL is unknown; the portal set-up replaces this placeholder right after.
_PLACEHOLDER_URL = "https://placeholder.invalid"


class WorkforceStack(Stack):
    """User pool (or the existing workforce's pool), groups, workforce, work teams, notifications, members.

    Exposes ``taxonomists_team``, ``reviewers_team`` (``CfnWorkteam``), ``user_pool_id`` and ``portal_url``.
    """

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig, **kwargs: object) -> None:
        super().__init__(scope, id_, **kwargs)  # type: ignore[arg-type]
        wf = config.workforce
        creating = wf.mode == "create"
        removal = RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY

        if creating:
            pool = self._user_pool(config, removal)
            self.user_pool_id = pool.user_pool_id
            self.user_pool_arn = pool.user_pool_arn
            domain = pool.add_domain(
                "PortalLogin", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=wf.cognito_domain_prefix or "")
            )
            client = pool.add_client(
                "GroundTruthClient",
                # Every published workforce set-up uses a confidential client; a public one is unconfirmed (facts §6).
                generate_secret=True,
                o_auth=cognito.OAuthSettings(
                    flows=cognito.OAuthFlows(authorization_code_grant=True),
                    scopes=[cognito.OAuthScope.EMAIL, cognito.OAuthScope.OPENID, cognito.OAuthScope.PROFILE],
                    callback_urls=[f"{_PLACEHOLDER_URL}/oauth2/idpresponse"],
                    logout_urls=[f"{_PLACEHOLDER_URL}/logout"],
                ),
                supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
                prevent_user_existence_errors=True,
            )
            self.client_id = client.user_pool_client_id
            workforce = sagemaker.CfnWorkforce(
                self,
                "Workforce",
                workforce_name=f"{config.project}-taxonomists",
                cognito_config=sagemaker.CfnWorkforce.CognitoConfigProperty(
                    user_pool=pool.user_pool_id, client_id=client.user_pool_client_id
                ),
                source_ip_config=sagemaker.CfnWorkforce.SourceIpConfigProperty(cidrs=list(wf.allowed_cidrs))
                if wf.allowed_cidrs
                else None,
            )
            # Ground Truth requires the pool's domain to exist before the workforce (facts §6).
            workforce.node.add_dependency(domain)
            workforce_name = workforce.workforce_name
        else:
            self.user_pool_id = wf.existing_user_pool_id or ""
            self.user_pool_arn = self.format_arn(
                service="cognito-idp", resource="userpool", resource_name=self.user_pool_id
            )
            self.client_id = wf.existing_app_client_id or ""
            workforce_name = wf.existing_workforce_name or ""

        groups = {
            name: cognito.CfnUserPoolGroup(
                self, f"{cid}Group", user_pool_id=self.user_pool_id, group_name=name, description=desc
            )
            for cid, name, desc in (
                ("Taxonomists", TAXONOMISTS_GROUP, "Taxonomists who label field photos"),
                ("Reviewers", REVIEWERS_GROUP, "Senior taxonomists who audit machine labels and settle disagreements"),
            )
        }

        notify_key = kms.Key(
            self,
            "NotificationsKey",
            description=f"{config.project}: work-team notification topics and the portal set-up's logs",
            enable_key_rotation=True,
            policy=account_key_policy(),
            removal_policy=removal,
        )
        allow_cloudwatch_logs(notify_key)
        # SageMaker publishes new-task notices to the topic, so it must be able to use the topic's key.
        notify_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("sagemaker.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )

        members: dict[str, list[str]] = {}
        for email in wf.taxonomists:
            members.setdefault(email, []).append(TAXONOMISTS_GROUP)
        for email in wf.reviewers:
            members.setdefault(email, []).append(REVIEWERS_GROUP)

        self.taxonomists_team = self._team(
            config,
            "Taxonomists",
            TAXONOMISTS_GROUP,
            groups,
            workforce_name,
            notify_key,
            [e for e, g in members.items() if TAXONOMISTS_GROUP in g],
        )
        self.reviewers_team = self._team(
            config,
            "Reviewers",
            REVIEWERS_GROUP,
            groups,
            workforce_name,
            notify_key,
            [e for e, g in members.items() if REVIEWERS_GROUP in g],
        )
        if creating:
            self.taxonomists_team.node.add_dependency(workforce)
            self.reviewers_team.node.add_dependency(workforce)

        self.portal_url = self._portal_setup(config, creating, members, notify_key)

        for oid, value, desc in (
            ("PortalUrl", self.portal_url, "Labeling portal sign-in URL for taxonomists"),
            ("TaxonomistsWorkteamArn", self.taxonomists_team.attr_workteam_arn, "Work team of the labeling jobs"),
            ("ReviewersWorkteamArn", self.reviewers_team.attr_workteam_arn, "Work team of the review jobs"),
            ("UserPoolId", self.user_pool_id, "Cognito user pool of the taxonomists"),
            ("UserPoolClientId", self.client_id, "App client the labeling portal signs in with"),
            ("TaxonomistsGroupName", TAXONOMISTS_GROUP, "Cognito group of the taxonomists"),
            ("ReviewersGroupName", REVIEWERS_GROUP, "Cognito group of the senior reviewers"),
        ):
            CfnOutput(self, oid, value=value, description=desc)

    def _user_pool(self, config: AppConfig, removal: RemovalPolicy) -> cognito.UserPool:
        pool = cognito.UserPool(
            self,
            "Taxonomists",
            user_pool_name=f"{config.project}-taxonomists",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            # cdk-nag checks the flags the template states, so each rule is spelled out.
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(7),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            user_invitation=cognito.UserInvitationConfig(
                email_subject=f"Your invitation to the {config.project} tree-labeling portal",
                email_body=(
                    f"You have been invited to label tree photos for {config.project} in the Amazon SageMaker Ground "
                    "Truth labeling portal. Your user name is {username} and your temporary password is {####} . "
                    "The portal address follows in this message once the portal is set up."
                ),
            ),
            deletion_protection=config.removal_retain,
            removal_policy=removal,
        )
        return pool

    def _team(
        self,
        config: AppConfig,
        cid: str,
        group: str,
        groups: dict[str, cognito.CfnUserPoolGroup],
        workforce_name: str,
        key: kms.IKey,
        emails: list[str],
    ) -> sagemaker.CfnWorkteam:
        topic = sns.Topic(
            self,
            f"{cid}Notifications",
            master_key=key,
            enforce_ssl=True,
            display_name=f"{config.project} {group} labeling tasks",
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("sagemaker.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {
                        "aws:SourceArn": self.format_arn(service="sagemaker", resource="workteam", resource_name="*")
                    },
                },
            )
        )
        # Ground Truth subscribes members only for console-made teams, so configured members are subscribed here.
        for email in emails:
            subscription = topic.add_subscription(subs.EmailSubscription(email))
            ack(subscription, "Serverless-SNSRedrivePolicy",
                "A new-task e-mail that bounces needs no replay: the tasks wait in the labeling portal.")
        team = sagemaker.CfnWorkteam(
            self,
            f"{cid}Team",
            workteam_name=f"{config.project}-{group}",
            workforce_name=workforce_name,
            description=f"{config.project}: {groups[group].description}",
            member_definitions=[
                sagemaker.CfnWorkteam.MemberDefinitionProperty(
                    cognito_member_definition=sagemaker.CfnWorkteam.CognitoMemberDefinitionProperty(
                        cognito_user_pool=self.user_pool_id,
                        cognito_client_id=self.client_id,
                        cognito_user_group=groups[group].group_name or group,
                    )
                )
            ],
            notification_configuration=sagemaker.CfnWorkteam.NotificationConfigurationProperty(
                notification_topic_arn=topic.topic_arn
            ),
        )
        team.add_resource_dependency(groups[group])
        return team

    def _portal_setup(self, config: AppConfig, creating: bool, members: dict[str, list[str]],
                      log_key: kms.IKey) -> str:
        kit = LambdaKit(self, "Code", config=config, log_key=log_key)
        fn = kit.function(
            self,
            "PortalSetupFunction",
            handler_dir="portal_setup",
            invoked_by="the custom-resource provider framework",
            description="Connects the Cognito pool to the labeling portal and invites configured taxonomists",
            timeout=Duration.minutes(2),
            memory_size=256,
        )
        # In 'existing' mode the pool and client belong to whoever made the workforce: leave their settings alone.
        pool_actions = ["cognito-idp:AdminGetUser", "cognito-idp:AdminCreateUser", "cognito-idp:AdminAddUserToGroup"]
        if creating:
            pool_actions += [
                "cognito-idp:DescribeUserPool",
                "cognito-idp:UpdateUserPool",
                "cognito-idp:DescribeUserPoolClient",
                "cognito-idp:UpdateUserPoolClient",
            ]
        fn.add_to_role_policy(iam.PolicyStatement(actions=pool_actions, resources=[self.user_pool_arn]))
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeWorkteam"], resources=[self.taxonomists_team.attr_workteam_arn]
            )
        )
        # The Provider framework's own function gets our kind of role and log group too (no managed policy).
        framework_role = lambda_role(self, "PortalSetupProviderRole",
                                     description=f"{config.project} portal set-up provider framework")
        provider = cr.Provider(
            self, "PortalSetupProvider", on_event_handler=fn, framework_on_event_role=framework_role,
            log_group=function_logs(self, "PortalSetupProvider", config=config, key=log_key, role=framework_role),
        )
        settings = {
            "Project": config.project,
            "UserPoolId": self.user_pool_id,
            "ClientId": self.client_id,
            "WorkteamName": self.taxonomists_team.attr_workteam_name,
            "ManageClient": str(creating).lower(),
            "ManageInvitation": str(creating).lower(),
            "Members": [{"Email": e, "Groups": g} for e, g in sorted(members.items())],
        }
        resource = CustomResource(
            self,
            "PortalSetup",
            service_token=provider.service_token,
            properties={
                **settings,
                # A CloudFormation update of the pool or client resets what the set-up changed; re-run it then.
                "Revision": hashlib.sha256(
                    json.dumps(config.workforce.model_dump(), sort_keys=True).encode()
                ).hexdigest(),
            },
        )
        resource.node.add_dependency(self.taxonomists_team, self.reviewers_team)
        self._acknowledge(fn, provider, framework_role)
        return resource.get_att_string("PortalUrl")

    def _acknowledge(self, fn: lambda_.Function, provider: cr.Provider, framework_role: iam.IRole) -> None:
        framework_fn = provider.node.find_child("framework-onEvent")
        checkov_skip_deploy_time_function(framework_fn)
        ack(framework_fn, "Serverless-LambdaDefaultMemorySize",
            "CDK's Provider framework function only relays one CloudFormation event; CDK sizes it.")
        ack(framework_fn, "Serverless-LambdaTracing",
            "CDK's Provider framework function takes no tracing option; the set-up function it calls is traced.")
        ack(framework_fn, "Serverless-LambdaDLQ",
            "The Provider framework reports every error to CloudFormation, which fails the deployment visibly.")
        ack_wildcards(
            framework_role, [f"{arn_token(fn)}:*"],
            "The Provider framework invokes any version of its own on-event handler.",
        )
