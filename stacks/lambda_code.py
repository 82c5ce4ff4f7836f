"""How every Lambda function of the app is packaged and configured, defined once.

All functions share one code asset (the ``lambdas/`` folder: thin handlers plus the ``fieldlabel`` domain package)
and one dependency layer built by ``pip install --platform`` on the synth machine, so no Docker is needed
(docs/decisions.md, "Lambda packaging"). The ONNX image models (~43 MB) are left out of the code asset and ship in a
layer of their own, attached only to the functions that embed images (docs/decisions.md, "Embedding model"), so every
other function stays far below Lambda's 250 MB unpacked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import AppConfig
from stacks.label_studio_refs import LabelStudioRefs
from stacks.nag import ack, ack_wildcards, checkov_skip

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = ROOT / "lambdas"
EMBEDDING_MODELS_DIR = LAMBDAS_DIR / "fieldlabel" / "embedding" / "models"
# Layers unpack under /opt: the models land in /opt/fieldlabel-models (fieldlabel.embedding.runtime.LAYER_MODELS_DIR).
MODELS_LAYER_FOLDER = "fieldlabel-models"

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64
_PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
_PIP_PYTHON = "3.14"
_PIP_MISSING_LOCATION = re.compile(r"WARNING: Location '[^']*' is ignored: it is neither a file nor a directory")

# What the shared code asset leaves out: caches and the layer's requirements, so every handler
# can import the whole domain package. The ONNX files go to the models layer (their manifest stays: it names the model).
_CODE_EXCLUDES = ["**/__pycache__", "**/*.pyc", "requirements.txt", "*.egg-info", "**/*.onnx"]


@jsii.implements(ILocalBundling)
class _PipLayerBundler:
    """Builds the dependency layer with pip for the Lambda platform, on this machine, without Docker."""

    def __init__(self, requirements: Path) -> None:
        self._requirements = requirements

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:  # noqa: ARG002 - jsii signature
        target = Path(output_dir) / "python"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--disable-pip-version-check",
            "-r",
            str(self._requirements),
            "--target",
            str(target),
            "--implementation",
            "cp",
            "--python-version",
            _PIP_PYTHON,
            "--only-binary=:all:",
            "--upgrade",
        ]
        for platform in _PIP_PLATFORMS:
            cmd += ["--platform", platform]
        done = subprocess.run(cmd, capture_output=True, text=True)
        # pip repeats a warning for every package when the machine's pip configuration names an index location
        # that does not exist; nothing in the project can act on it, so only the other lines are passed on.
        shown = [line for line in done.stderr.splitlines() if not _PIP_MISSING_LOCATION.search(line)]
        if shown:
            print("\n".join(shown), file=sys.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not build the dependency layer (exit {done.returncode}); see above")
        # boto3/botocore come with the runtime; tests and type stubs are dead weight in a layer.
        for junk in target.glob("**/tests"):
            shutil.rmtree(junk, ignore_errors=True)
        return True


@jsii.implements(ILocalBundling)
class _ModelsLayerBundler:
    """Lays the committed ONNX files, their manifest, LICENSE and NOTICE out under ``fieldlabel-models/``."""

    def __init__(self, models: Path) -> None:
        self._models = models

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:  # noqa: ARG002 - jsii signature
        target = Path(output_dir) / MODELS_LAYER_FOLDER
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(self._models.iterdir()):
            if f.suffix == ".onnx" or f.name in ("manifest.json", "LICENSE", "NOTICE"):
                shutil.copyfile(f, target / f.name)
        return True


def function_logs(scope: Construct, id_: str, *, config: AppConfig, key: kms.IKey, role: iam.IRole) -> logs.LogGroup:
    """A function's own log group and the only log permission its role gets: writing to that group.

    Replaces the managed ``AWSLambdaBasicExecutionRole`` policy, which lets a function create and write any log
    group in the account (``logs:CreateLogGroup``, ``logs:CreateLogStream``, ``logs:PutLogEvents`` on ``*``). The
    group is explicit so its retention and removal follow the config, and it is encrypted with ``key``, whose policy
    lets CloudWatch Logs use it (:func:`stacks.kms_policy.allow_cloudwatch_logs`). Use it for every function that is
    not made by :meth:`LambdaKit.function` (which calls it), e.g. a CDK framework function given its own role.
    """
    log_group = logs.LogGroup(
        scope,
        f"{id_}Logs",
        retention=retention_days(config.retention.log_retention_days),
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY,
    )
    # The group's Arn attribute ends in ":*", so this covers its log streams and nothing else.
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn])
    )
    return log_group


def lambda_role(scope: Construct, id_: str, *, description: str) -> iam.Role:
    """A Lambda execution role with no managed policy: :func:`function_logs` and the callers add what it may do."""
    return iam.Role(scope, id_, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description)


class LambdaKit(Construct):
    """The shared code asset, the dependency layer and a factory for consistently configured functions.

    Exposes :meth:`function`, which every construct uses to create its Lambdas. ``log_key`` encrypts their log
    groups.
    """

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig, log_key: kms.IKey) -> None:
        super().__init__(scope, id_)
        self._config = config
        self.log_key = log_key
        self.code = lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=_CODE_EXCLUDES)
        requirements = LAMBDAS_DIR / "requirements.txt"
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            description="Powertools, pydantic, Pillow, pillow-heif and numpy for the labeling pipeline",
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            code=lambda_.Code.from_asset(
                str(LAMBDAS_DIR),
                # Hash only the requirements file: the layer changes when the pinned versions change, not the code.
                asset_hash_type=AssetHashType.SOURCE,
                exclude=["*", "!requirements.txt"],
                bundling=BundlingOptions(
                    image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),
                    local=_PipLayerBundler(requirements),
                ),
            ),
            removal_policy=RemovalPolicy.RETAIN if config.removal_retain else RemovalPolicy.DESTROY,
        )
        self._models_layer: lambda_.LayerVersion | None = None

    @property
    def models_layer(self) -> lambda_.LayerVersion:
        """The ONNX image models (Apache-2.0, with their notice), created with the first function that embeds."""
        if self._models_layer is None:
            self._models_layer = lambda_.LayerVersion(
                self,
                "EmbeddingModels",
                description="EfficientNet-Lite ONNX image models (Apache-2.0) for fieldlabel.embedding",
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
                license="Apache-2.0",
                code=lambda_.Code.from_asset(
                    str(EMBEDDING_MODELS_DIR),
                    asset_hash_type=AssetHashType.SOURCE,
                    bundling=BundlingOptions(
                        image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),
                        local=_ModelsLayerBundler(EMBEDDING_MODELS_DIR),
                    ),
                ),
                removal_policy=RemovalPolicy.RETAIN if self._config.removal_retain else RemovalPolicy.DESTROY,
            )
        return self._models_layer

    def function(
        self,
        scope: Construct,
        id_: str,
        *,
        handler_dir: str,
        description: str,
        environment: dict[str, str] | None = None,
        timeout: Duration | None = None,
        memory_size: int = 512,
        async_failures: sqs.IQueue | None = None,
        invoked_by: str | None = None,
        embedding_models: bool = False,
        network: LabelStudioRefs | None = None,
    ) -> lambda_.Function:
        """Create a function whose handler is ``lambdas/<handler_dir>/handler.py:lambda_handler``.

        Every function gets its own role (no managed policy) and its own KMS-encrypted log group with the configured
        retention that only it may write (:func:`function_logs`), X-Ray tracing, Powertools settings, the shared
        code and layer, and the reserved concurrency ``concurrency.reserved`` gives its folder, if any. A function
        that is invoked asynchronously (EventBridge, Scheduler, ``InvocationType=Event``) passes
        ``async_failures``: events that still fail after Lambda's retries are sent there. Every other function names
        its synchronous caller in ``invoked_by`` (e.g. ``"Step Functions"``), which is the reason it needs no
        dead-letter target; one of the two is required, so a new function cannot silently lose failed events.
        ``embedding_models`` adds the ONNX models layer (functions that call ``fieldlabel.embedding.load_embedder``).
        ``network`` places the function in the Label Studio deployment's VPC (private subnets with a NAT route, the
        security group the Label Studio service admits), for the functions that call its API.
        """
        if not (LAMBDAS_DIR / handler_dir / "handler.py").is_file():
            raise FileNotFoundError(f"lambdas/{handler_dir}/handler.py does not exist")
        if (async_failures is None) == (invoked_by is None):
            raise ValueError(f"function {id_}: pass async_failures=<queue> if anything invokes it asynchronously, "
                             "otherwise invoked_by='<its synchronous caller>' (e.g. 'Step Functions')")
        role = lambda_role(scope, f"{id_}ServiceRole", description=f"{self._config.project} {handler_dir} function")
        log_group = function_logs(scope, id_, config=self._config, key=self.log_key, role=role)
        ack_wildcards(role, ["*"], "X-Ray PutTraceSegments and PutTelemetryRecords (active tracing) have no "
                                   "resource ARN." + (_VPC_WILDCARD_REASON if network is not None else ""))
        reserved = self._config.concurrency.reserved.get(handler_dir)
        env = {
            "POWERTOOLS_SERVICE_NAME": f"{self._config.project}-{handler_dir.replace('_', '-')}",
            "POWERTOOLS_METRICS_NAMESPACE": "FieldLabel",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "PROJECT_PREFIX": self._config.project,
            **(environment or {}),
        }
        fn = lambda_.Function(
            scope,
            id_,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self.code,
            handler=f"{handler_dir}.handler.lambda_handler",
            layers=[self.layer, self.models_layer] if embedding_models else [self.layer],
            role=role,
            environment=env,
            timeout=timeout or Duration.seconds(60),
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            reserved_concurrent_executions=reserved,
            **_placement(network),
        )
        if network is not None:
            _allow_vpc_interfaces(role)
        if async_failures is not None:
            # Lambda retries an asynchronous event twice; what still fails is kept for an operator, with an alarm.
            fn.configure_async_invoke(on_failure=destinations.SqsDestination(async_failures), retry_attempts=2)
        self._scanner_notes(fn, handler_dir, reserved, invoked_by, in_vpc=network is not None)
        return fn

    @staticmethod
    def _scanner_notes(fn: lambda_.Function, handler_dir: str, reserved: int | None, invoked_by: str | None,
                       *, in_vpc: bool = False) -> None:
        """The scanners' Lambda checks that this design answers differently, with the reason, on the function."""
        if invoked_by is not None:
            dlq_reason = (f"Invoked synchronously by {invoked_by}: an error returns to the caller, which retries or "
                          "handles it, so there is no asynchronous event to keep.")
        else:
            dlq_reason = ("Invoked asynchronously: an event that fails after Lambda's retries goes to the on-failure "
                          "destination (the async-failures queue, alarmed), which also records the error.")
        ack(fn, "Serverless-LambdaDLQ", dlq_reason)
        checkov_skip(fn, "CKV_AWS_116", dlq_reason)
        if not in_vpc:
            checkov_skip(fn, "CKV_AWS_117", "The functions call only AWS APIs; a VPC would add NAT gateways and "
                         "endpoints (cost, cold starts) and protect nothing here.")
        checkov_skip(fn, "CKV_AWS_173", "The environment holds resource names and settings, no secrets; Lambda "
                     "encrypts it at rest with its service key.")
        if reserved is None:
            checkov_skip(fn, "CKV_AWS_115", f"Reserved concurrency is optional (concurrency.reserved.{handler_dir} "
                         "in the config): reserving fails deploys in accounts with a low concurrency limit.")


def _placement(network: LabelStudioRefs | None) -> dict[str, Any]:
    if network is None:
        return {}
    return {"vpc": network.vpc, "vpc_subnets": network.lambda_subnets,
            "security_groups": [network.lambda_security_group]}


def _allow_vpc_interfaces(role: iam.Role) -> None:
    """What Lambda needs to attach a function to the VPC, instead of the managed AWSLambdaVPCAccessExecutionRole.

    The same explicit actions as that policy. EC2's Describe calls have no resource-level permissions (``*``,
    acknowledged in :meth:`function`); the writes are limited to this account's and region's network interfaces,
    subnets and security groups (the interfaces get their ids at run time).
    """
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], resources=["*"],
    ))
    stack = Stack.of(role)
    scoped = [stack.format_arn(service="ec2", resource=r, resource_name="*")
              for r in ("network-interface", "subnet", "security-group")]
    role.add_to_principal_policy(iam.PolicyStatement(
        actions=["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                 "ec2:UnassignPrivateIpAddresses"],
        resources=scoped,
    ))
    # The stacks have a concrete account and region, so these are the literal ARNs cdk-nag reports.
    ack_wildcards(role, scoped,
                  "Lambda creates and deletes the function's network interfaces in the VPC; their ids are made at run "
                  "time (limited to this account's and region's interfaces, subnets and security groups).")


# The "*" of _allow_vpc_interfaces, acknowledged together with the X-Ray one on the same role.
_VPC_WILDCARD_REASON = (" EC2's DescribeNetworkInterfaces and DescribeSubnets (Lambda attaching the function to the "
                        "VPC) have no resource-level permissions.")


def retention_days(days: int) -> logs.RetentionDays:
    """Map a day count to the CDK RetentionDays enum value (config restricts days to CloudWatch's allowed set)."""
    by_days = {
        1: "ONE_DAY",
        3: "THREE_DAYS",
        5: "FIVE_DAYS",
        7: "ONE_WEEK",
        14: "TWO_WEEKS",
        30: "ONE_MONTH",
        60: "TWO_MONTHS",
        90: "THREE_MONTHS",
        120: "FOUR_MONTHS",
        150: "FIVE_MONTHS",
        180: "SIX_MONTHS",
        365: "ONE_YEAR",
        400: "THIRTEEN_MONTHS",
        545: "EIGHTEEN_MONTHS",
        731: "TWO_YEARS",
        1096: "THREE_YEARS",
        1827: "FIVE_YEARS",
        3653: "TEN_YEARS",
    }
    return getattr(logs.RetentionDays, by_days[days])
