"""The self-hosted Label Studio server (``labeling.backend: label_studio``; docs/label-studio.md, "Deployment").

Built only for that backend. Reads like the deployment diagram: network -> secrets -> database -> service behind two
load balancers (the taxonomists' one, signed in through the project's Cognito, and the pipeline's internal one).
The pipeline stack receives :attr:`LabelStudioStack.refs`.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import AppConfig
from stacks.label_studio_network import ZONES, LabelStudioNetwork
from stacks.label_studio_refs import LabelStudioRefs
from stacks.label_studio_server import StudioDatabase, StudioLoadBalancers, StudioService
from stacks.nag import ack, checkov_skip
from stacks.storage_stack import StorageStack
from stacks.workforce_stack import WorkforceStack

# Label Studio keeps API tokens in a 40-character column (a Django REST framework token key).
TOKEN_LENGTH = 40


def encrypted_secret(
    scope: Construct, id_: str, *, key: kms.IKey, description: str, length: int, rotation_reason: str
) -> secretsmanager.ISecret:
    """A generated secret (letters and digits only) encrypted with ``key``, as a view that knows its key.

    The key is set on the CloudFormation resource rather than through the construct: the construct would add a
    ``kms:GenerateDataKey*`` / ``kms:ReEncrypt*`` statement for Secrets Manager to the data key's policy in the
    storage stack (wildcard actions, and a storage-stack change). The key policy already delegates to IAM, and every
    reader gets ``kms:Decrypt`` through :meth:`ISecret.grant_read` on the returned view, which carries the key.
    """
    secret = secretsmanager.Secret(
        scope,
        id_,
        description=description,
        generate_secret_string=secretsmanager.SecretStringGenerator(
            password_length=length, exclude_punctuation=True, include_space=False
        ),
    )
    resource = secret.node.default_child
    assert isinstance(resource, secretsmanager.CfnSecret)
    resource.kms_key_id = key.key_arn
    ack(secret, "AwsSolutions-SMG4", rotation_reason)
    return secretsmanager.Secret.from_secret_attributes(
        scope, f"{id_}WithKey", secret_complete_arn=secret.secret_arn, encryption_key=key
    )


class LabelStudioStack(Stack):
    """Network, secrets, database, service and its two load balancers.

    Exposes ``network``, ``token_secret``, ``webhook_secret``, ``admin_password``, ``database``, ``server``
    (:class:`StudioService`), ``load_balancers``, ``api_url`` and ``refs`` (:class:`LabelStudioRefs`, what the
    pipeline's Label Studio functions get).
    """

    @property
    def availability_zones(self) -> list[str]:
        """The region's first Availability Zones, chosen by CloudFormation at deploy time (``Fn::GetAZs``).

        An environment-bound stack would otherwise look the account's zones up with AWS credentials at synth time,
        and synthesis here is offline.
        """
        return [Fn.select(i, Fn.get_azs()) for i in range(ZONES)]

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: AppConfig,
        storage: StorageStack,
        workforce: WorkforceStack,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id_, **kwargs)  # type: ignore[arg-type]
        ls = config.label_studio
        if ls is None:
            raise ValueError("label_studio: the Label Studio stack needs the label_studio block of the config")
        self.workforce = workforce
        # The data key as an imported view: grants on it then go to the grantee's IAM policy only. On the storage
        # stack's own construct CDK would also write each grantee into the key policy there, a cross-stack cycle.
        key = kms.Key.from_key_arn(self, "DataKey", storage.key.key_arn)
        self.network = LabelStudioNetwork(self, "Network", config=config, key=key)

        # --- secrets: the admin's API token (the pipeline's), the webhooks' shared secret, the admin's password ----
        self.token_secret = encrypted_secret(
            self, "ApiToken", key=key, length=TOKEN_LENGTH,
            description=f"{config.project}: API token of the Label Studio admin account the pipeline calls as",
            rotation_reason=(
                "The container sets this token on the admin account when it starts; a rotation would have to "
                "restart the service too. Rotate by hand: put a new value, then force a new deployment "
                "(docs/label-studio.md, 'Deployment')."
            ),
        )
        self.webhook_secret = encrypted_secret(
            self, "WebhookSecret", key=key, length=48,
            description=f"{config.project}: shared secret Label Studio's webhooks send to the pipeline",
            rotation_reason=(
                "Label Studio stores this value in each project's webhook headers; rotating it means updating "
                "every webhook at the same moment, which the submit function does when it next ensures the webhook."
            ),
        )
        self.admin_password = encrypted_secret(
            self, "AdminPassword", key=key, length=32,
            description=f"{config.project}: password of the Label Studio admin account ({ls.admin_email})",
            rotation_reason=(
                "Only read by the container at start-up to create the admin account; nobody signs in with it "
                "day to day (the pipeline uses the API token)."
            ),
        )

        # --- database, service, load balancers ----------------------------------------------------------------------
        self.database = StudioDatabase(self, "Database", config=config, network=self.network, key=key)
        self.server = StudioService(
            self, "Server", config=config, network=self.network, database=self.database, key=key,
            intake_bucket=s3.Bucket.from_bucket_name(self, "IntakeBucket", storage.names.intake_bucket),
            token_secret=self.token_secret, admin_password=self.admin_password,
        )
        self.load_balancers = StudioLoadBalancers(
            self, "LoadBalancers", config=config, network=self.network, service=self.server,
            user_pool_id=workforce.user_pool_id, access_logs_bucket=self._load_balancer_logs(config),
        )

        # What in-VPC functions call: the internal load balancer under the same host name, resolved by a private
        # hosted zone inside the VPC (docs/decisions.md, "Label Studio: the pipeline's way to the API").
        self.api_url = f"https://{ls.domain_name}"
        self.refs = LabelStudioRefs(
            vpc=self.network.vpc,
            lambda_security_group=self.network.lambda_security_group,
            lambda_subnets=self.network.lambda_subnets,
            api_url=self.api_url,
            token_secret=self.token_secret,
            webhook_secret=self.webhook_secret,
            secrets_key=key,
        )
        for oid, value, desc in (
            ("LabelStudioUrl", f"https://{ls.domain_name}", "Label Studio (taxonomists sign in through Cognito)"),
            # The CLI finds the server and its token by these names (cli/fieldlabel_cli/labelstudio.py).
            ("LabelStudioTokenSecretArn", self.token_secret.secret_arn, "The pipeline's Label Studio API token"),
            ("LabelStudioWebhookSecretArn", self.webhook_secret.secret_arn,
             "Shared secret of Label Studio's webhooks"),
            ("LabelStudioAdminPasswordSecretArn", self.admin_password.secret_arn, f"Password of {ls.admin_email}"),
        ):
            CfnOutput(self, oid, value=value, description=desc)

    def _load_balancer_logs(self, config: AppConfig) -> s3.Bucket:
        """The load balancers' access logs. Load balancers deliver only to SSE-S3 buckets."""
        bucket = s3.Bucket(
            self,
            "LoadBalancerLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs",
                                              expiration=Duration.days(config.retention.access_log_days))],
            removal_policy=RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY,
            auto_delete_objects=False,
        )
        reason = ("This bucket only receives the load balancers' access logs, which are themselves the access record; "
                  "logging the log deliveries would only add noise.")
        ack(bucket, "AwsSolutions-S1", reason)
        checkov_skip(bucket, "CKV_AWS_18", reason)
        checkov_skip(bucket, "CKV_AWS_21",
                     "Load balancers only ever add new log objects here and the lifecycle rule expires them; versions "
                     "would keep nothing more.")
        return bucket
