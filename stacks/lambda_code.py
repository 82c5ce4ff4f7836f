"""How every Lambda function of the app is packaged and configured, defined once.

All functions share one code asset (the ``lambdas/`` folder: thin handlers plus the ``fieldlabel`` domain package)
and one dependency layer built by ``pip install --platform`` on the synth machine, so no Docker is needed
(docs/decisions.md, "Lambda packaging"). The ONNX image models (~43 MB) are left out of the code asset and ship in a
layer of their own, attached only to the functions that embed images (docs/decisions.md, "Embedding model"), so every
other function stays far below Lambda's 250 MB unpacked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import AppConfig

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = ROOT / "lambdas"
EMBEDDING_MODELS_DIR = LAMBDAS_DIR / "fieldlabel" / "embedding" / "models"
# Layers unpack under /opt: the models land in /opt/fieldlabel-models (fieldlabel.embedding.runtime.LAYER_MODELS_DIR).
MODELS_LAYER_FOLDER = "fieldlabel-models"

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64
_PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
_PIP_PYTHON = "3.14"

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
        subprocess.run(cmd, check=True)
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


class LambdaKit(Construct):
    """The shared code asset, the dependency layer and a factory for consistently configured functions.

    Exposes :meth:`function`, which every construct uses to create its Lambdas.
    """

    def __init__(self, scope: Construct, id_: str, *, config: AppConfig) -> None:
        super().__init__(scope, id_)
        self._config = config
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
        reserved_concurrent_executions: int | None = None,
        embedding_models: bool = False,
    ) -> lambda_.Function:
        """Create a function whose handler is ``lambdas/<handler_dir>/handler.py:lambda_handler``.

        Every function gets X-Ray tracing, an explicit log group with the configured retention, Powertools
        settings, and the shared code and layer; ``embedding_models`` adds the ONNX models layer (functions that
        call ``fieldlabel.embedding.load_embedder``).
        """
        if not (LAMBDAS_DIR / handler_dir / "handler.py").is_file():
            raise FileNotFoundError(f"lambdas/{handler_dir}/handler.py does not exist")
        log_group = logs.LogGroup(
            scope,
            f"{id_}Logs",
            retention=retention_days(self._config.retention.log_retention_days),
            removal_policy=RemovalPolicy.RETAIN if self._config.removal_retain else RemovalPolicy.DESTROY,
        )
        env = {
            "POWERTOOLS_SERVICE_NAME": f"{self._config.project}-{handler_dir.replace('_', '-')}",
            "POWERTOOLS_METRICS_NAMESPACE": "FieldLabel",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "PROJECT_PREFIX": self._config.project,
            **(environment or {}),
        }
        return lambda_.Function(
            scope,
            id_,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self.code,
            handler=f"{handler_dir}.handler.lambda_handler",
            layers=[self.layer, self.models_layer] if embedding_models else [self.layer],
            environment=env,
            timeout=timeout or Duration.seconds(60),
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            reserved_concurrent_executions=reserved_concurrent_executions,
        )


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
