"""The app's configuration: one frozen, typed model built at synth time from ``cdk.json`` context.

``cdk.json`` holds per-environment blocks under ``context.environments``; ``-c env=<name>`` selects one (default
``context.env``). Every value is validated here, before any construct is built, so a bad value fails ``cdk synth``
with a message that names the key and says what is allowed. Constructs receive the model and never read context.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from fieldlabel.labeling.groundtruth.regions import SUPPORTED_REGIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Ground Truth refuses automated data labeling below this many objects (facts §3) and caps a job at 100,000 (§10).
AUTOMATED_LABELING_MINIMUM = 1250
MAX_OBJECTS_PER_JOB = 100_000

# How many categories each worker UI can show. crowd-image-classifier documents "up to 10 categories"
# (facts §5, §10; rendering beyond that is UNCONFIRMED, see docs/decisions.md), and it is the only UI that works with
# Ground Truth's built-in consolidation, which automated labeling requires.
WORKER_UI_CATEGORY_LIMITS: dict[str, int] = {"crowd-image-classifier": 10}

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_LABEL = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
LAMBDAS_DIR = Path(__file__).resolve().parent.parent / "lambdas"
_TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")


class ConfigError(ValueError):
    """A configuration value is missing or not allowed. The message names every offending key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Species(_Frozen):
    """One category of the taxonomy."""

    label: str = Field(description="machine label: lowercase letters, digits and hyphens, at most 64 characters")
    scientific_name: str = Field(min_length=1, max_length=128)
    common_name: str = Field(default="", max_length=128)
    reference_image: str | None = Field(default=None, description="https:// URL of a reference photo for the UI")

    @field_validator("label")
    @classmethod
    def _label_format(cls, v: str) -> str:
        if not _LABEL.match(v):
            raise ValueError(
                "must be lowercase letters, digits and hyphens (start with a letter or digit), <= 64 chars"
            )
        return v

    @field_validator("reference_image")
    @classmethod
    def _https_only(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("https://"):
            raise ValueError("must be an https:// URL")
        return v

    @property
    def display_name(self) -> str:
        return f"{self.scientific_name} ({self.common_name})" if self.common_name else self.scientific_name


class Taxonomy(_Frozen):
    """The label taxonomy: the species taxonomists choose from, plus one 'not a tree / cannot tell' label."""

    species: tuple[Species, ...]
    unknown_label: str = "not-a-tree-or-cannot-tell"

    @field_validator("species")
    @classmethod
    def _at_least_two_unique(cls, v: tuple[Species, ...]) -> tuple[Species, ...]:
        if len(v) < 2:
            raise ValueError(
                f"needs at least 2 species (Ground Truth image classification needs >= 2 labels), got {len(v)}"
            )
        seen: set[str] = set()
        dupes = sorted({s.label for s in v if s.label in seen or seen.add(s.label)})  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"labels must be unique; repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _unknown_not_a_species(self) -> Taxonomy:
        if not _LABEL.match(self.unknown_label):
            raise ValueError("unknown_label: must be lowercase letters, digits and hyphens, <= 64 chars")
        if any(s.label == self.unknown_label for s in self.species):
            raise ValueError(f"unknown_label {self.unknown_label!r} must not also be a species label")
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        """All category labels in the order the worker sees them, the unknown label last."""
        return (*(s.label for s in self.species), self.unknown_label)

    def label_category_file(self) -> dict[str, Any]:
        """The label-category configuration file Ground Truth reads (``LabelCategoryConfigS3Uri``)."""
        return {"document-version": "2018-11-28", "labels": [{"label": label} for label in self.labels]}

    def taxonomy_file(self) -> dict[str, Any]:
        """The full taxonomy with display names, read by the templates and the review Lambdas."""
        return {
            "labels": [
                {
                    "label": s.label,
                    "scientific_name": s.scientific_name,
                    "common_name": s.common_name,
                    "display_name": s.display_name,
                    "reference_image": s.reference_image,
                }
                for s in self.species
            ],
            "unknown_label": self.unknown_label,
        }


class Batching(_Frozen):
    """When accumulated uploads become a labeling batch."""

    batch_size: int = Field(ge=1, le=MAX_OBJECTS_PER_JOB, description="pending photos that make a batch due")
    max_wait_hours: float = Field(
        gt=0, le=24 * 30, description="a batch is due once the oldest pending photo is this old"
    )
    max_batch_size: int = Field(default=MAX_OBJECTS_PER_JOB, ge=1, le=MAX_OBJECTS_PER_JOB)
    small_batch_policy: Literal["human_only", "wait"] = "human_only"
    dispatch_every_minutes: int = Field(default=15, ge=1, le=1440)

    @model_validator(mode="after")
    def _max_not_below_size(self) -> Batching:
        if self.max_batch_size < self.batch_size:
            raise ValueError(f"max_batch_size ({self.max_batch_size}) must be >= batch_size ({self.batch_size})")
        return self


class Labeling(_Frozen):
    """The labeling jobs: who labels (Ground Truth's automated labeling or our own engine) and the human tasks."""

    engine: Literal["groundtruth", "model"] = Field(
        default="groundtruth",
        description="'groundtruth': Ground Truth automated data labeling; 'model': the pipeline's own engine "
                    "(fieldlabel.engine) labels what it can certify, taxonomists label the rest in the custom template",
    )
    automated: bool = Field(
        default=True,
        description="with engine 'groundtruth': use Ground Truth automated data labeling (active learning)",
    )
    backend: Literal["groundtruth", "label_studio"] = Field(
        default="groundtruth",
        description="who shows the human tasks: 'groundtruth' (SageMaker Ground Truth jobs on the private workteam) "
                    "or 'label_studio' (the self-hosted Label Studio server this app deploys; docs/label-studio.md)",
    )
    worker_ui: Literal["crowd-image-classifier"] = "crowd-image-classifier"
    workers_per_photo: int = Field(default=3, ge=1, le=9)
    task_time_limit_seconds: int = Field(default=600, ge=30, le=28_800)
    task_availability_days: int = Field(default=10, ge=1, le=30)
    max_concurrent_tasks: int = Field(default=1000, ge=1, le=5000)
    max_attempts: int = Field(default=3, ge=1, le=10, description="failed labeling attempts before a photo is parked")
    # A released photo waits retry_backoff_minutes * 2^(attempts-1), at most retry_backoff_max_hours, before it is
    # due again, so an outage does not burn its attempts in a few dispatcher runs (0 = due at once).
    retry_backoff_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60,
                                       description="back-off of a released photo after its first failed attempt")
    retry_backoff_max_hours: int = Field(default=24, ge=1, le=30 * 24, description="longest back-off of a photo")
    task_title: str = Field(default="Identify the tree species in the photo", min_length=1, max_length=128)
    task_description: str = Field(
        default="Choose the species shown, or 'not a tree / cannot tell'.", min_length=1, max_length=255
    )


class Review(_Frozen):
    """Expert review of machine labels and of low-agreement human labels."""

    enabled: bool = True
    audit_sample_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    low_confidence_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    adjudication_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    reviewers_per_photo: int = Field(default=2, ge=1, le=9)
    task_time_limit_seconds: int = Field(default=900, ge=30, le=28_800)


class Engine(_Frozen):
    """The own auto-labeling engine (``labeling.engine: model``; docs/engine.md): its guarantee and its guards."""

    alpha: float = Field(default=0.05, gt=0.0, lt=0.5,
                         description="target error rate among machine labels")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0,
                              description="probability 1-delta with which the error bound holds")
    min_examples_per_species: int = Field(default=10, ge=1, le=100_000,
                                          description="human-confirmed examples before a species may be auto-labeled")
    calibration_fraction: float = Field(default=0.03, ge=0.0, le=0.5,
                                        description="random share of each batch sent to taxonomists whatever its score")

    def settings_json(self) -> dict[str, Any]:
        """The runtime form (``fieldlabel.engine.EngineSettings`` fields; delta = 1 - confidence)."""
        return {"alpha": self.alpha, "delta": round(1.0 - self.confidence, 10),
                "min_examples_per_species": self.min_examples_per_species,
                "calibration_fraction": self.calibration_fraction}


class LabelStudioDatabase(_Frozen):
    """The Label Studio server's PostgreSQL (RDS), encrypted with the project's key and backed up."""

    instance_class: str = Field(default="t4g.micro", description="RDS instance class without 'db.', e.g. t4g.small")
    allocated_storage_gib: int = Field(default=20, ge=20, le=1000)
    backup_retention_days: int = Field(default=7, ge=1, le=35)
    multi_az: bool = False

    @field_validator("instance_class")
    @classmethod
    def _instance_class(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9]*\.[a-z0-9]+", v):
            raise ValueError("must look like 't4g.micro' (family.size, without the 'db.' prefix)")
        return v


# Fargate's valid CPU units and the memory (MiB) each allows
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size).
FARGATE_MEMORY_MIB: dict[int, tuple[int, ...]] = {
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}


class LabelStudio(_Frozen):
    """The self-hosted Label Studio server (``labeling.backend: label_studio``; docs/label-studio.md)."""

    image: str = Field(default="heartexlabs/label-studio:1.23.2",
                       description="the official image, pinned by tag or digest (never 'latest')")
    domain_name: str = Field(description="the HTTPS host name taxonomists open, e.g. labels.example.org")
    certificate_arn: str = Field(description="ACM certificate for domain_name, in the stack's region")
    hosted_zone_id: str | None = Field(default=None, description="Route 53 zone to create domain_name's alias in")
    cpu: int = Field(default=1024, description="Fargate CPU units: 512, 1024, 2048 or 4096")
    memory_mib: int = Field(default=2048, description="Fargate memory in MiB, valid for cpu")
    desired_count: int = Field(default=1, ge=1, le=4)
    vpc_cidr: str = Field(default="10.42.0.0/16")
    nat_gateways: int = Field(default=1, ge=1, le=3, description="NAT gateways (the image is pulled through them)")
    database: LabelStudioDatabase = LabelStudioDatabase()
    presign_ttl_minutes: int = Field(default=15, ge=1, le=720,
                                     description="lifetime of the presigned photo URLs the browser receives")
    poll_minutes: int = Field(default=10, ge=1, le=1440,
                              description="how often the fallback poll looks for batches a lost webhook left open")
    admin_email: str = Field(default="fieldlabel-admin@example.org",
                             description="the server's admin account, used by the pipeline's API calls")

    @field_validator("image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        name, _, tag = v.rpartition(":")
        if "@sha256:" in v:
            return v
        if not name or not tag or "/" in tag or tag == "latest":
            raise ValueError("must be pinned: 'repository:tag' (not 'latest') or 'repository@sha256:<digest>'")
        return v

    @field_validator("domain_name")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.fullmatch(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", v):
            raise ValueError("must be a lowercase DNS host name such as labels.example.org")
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _cert(cls, v: str) -> str:
        if not re.fullmatch(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}", v):
            raise ValueError("must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<uuid>)")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"must be an IPv4 network such as 10.42.0.0/16 ({e})") from None
        if net.version != 4 or not 16 <= net.prefixlen <= 22:
            raise ValueError("must be an IPv4 network with a prefix between /16 and /22")
        return v

    @model_validator(mode="after")
    def _fargate_size(self) -> LabelStudio:
        allowed = FARGATE_MEMORY_MIB.get(self.cpu)
        if allowed is None:
            raise ValueError(f"cpu: must be one of {', '.join(map(str, FARGATE_MEMORY_MIB))}, got {self.cpu}")
        if self.memory_mib not in allowed:
            raise ValueError(f"memory_mib: {self.memory_mib} is not valid with cpu {self.cpu}; "
                             f"allowed {allowed[0]}-{allowed[-1]} in steps of 1024")
        return self


class Workforce(_Frozen):
    """The taxonomists' private workforce (Cognito)."""

    mode: Literal["create", "existing"] = Field(
        description="'create' makes the account's private workforce in this region; 'existing' attaches to it"
    )
    existing_workforce_name: str | None = Field(
        default=None, description="name of the existing workforce (mode=existing)"
    )
    # A private workforce is bound to one Cognito user pool and app client, so attaching to an existing workforce
    # means adding our groups and work teams to *its* pool.
    existing_user_pool_id: str | None = Field(default=None, description="Cognito user pool of the existing workforce")
    existing_app_client_id: str | None = Field(default=None, description="app client of the existing workforce")
    taxonomists: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] = Field(default=(), max_length=10)
    cognito_domain_prefix: str | None = None

    @field_validator("taxonomists", "reviewers")
    @classmethod
    def _emails(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in v if not _EMAIL.match(e)]
        if bad:
            raise ValueError(f"malformed e-mail address(es): {', '.join(bad)} (expected name@domain.tld)")
        lowered = [e.lower() for e in v]
        if len(set(lowered)) != len(lowered):
            raise ValueError("e-mail addresses must be unique")
        return v

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for c in v:
            try:
                ipaddress.ip_network(c)
            except ValueError:
                raise ValueError(f"{c!r} is not a CIDR block (e.g. 203.0.113.0/24)") from None
        return v

    @field_validator("cognito_domain_prefix")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", v):
            raise ValueError("must be lowercase letters, digits and hyphens, 1-63 chars, not starting/ending with '-'")
        if v is not None and re.search(r"aws|amazon|cognito", v):
            raise ValueError("Cognito refuses domain prefixes containing 'aws', 'amazon' or 'cognito'")
        return v

    @model_validator(mode="after")
    def _existing_needs_name(self) -> Workforce:
        existing = ("existing_workforce_name", "existing_user_pool_id", "existing_app_client_id")
        if self.mode == "existing":
            missing = [k for k in existing if not getattr(self, k)]
            if missing:
                raise ValueError(f"{', '.join(missing)}: required when mode is 'existing'")
            if not re.fullmatch(r"[\w-]+_[0-9a-zA-Z]+", self.existing_user_pool_id or ""):
                raise ValueError("existing_user_pool_id: expected a Cognito user pool id like 'eu-west-1_AbC123'")
        else:
            given = [k for k in existing if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)}: only allowed when mode is 'existing'")
        return self


class Intake(_Frozen):
    """How uploads are validated and deduplicated."""

    max_photo_megabytes: int = Field(default=200, ge=1, le=5000)
    dedupe: Literal["content", "object"] = "content"


class Retention(_Frozen):
    """How long things are kept, and what `cdk destroy` does with stateful resources."""

    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653] = 90
    noncurrent_version_days: int = Field(default=90, ge=1, le=3650)
    abort_incomplete_upload_days: int = Field(default=7, ge=1, le=365)
    access_log_days: int = Field(default=365, ge=1, le=3650)
    removal_policy: Literal["retain", "destroy"] = "retain"


class Monitoring(_Frozen):
    """Alarm thresholds and who hears about them."""

    alarm_emails: tuple[str, ...] = ()
    quarantine_rate_threshold: float = Field(default=0.2, ge=0.0, le=1.0)
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    log_execution_data: bool = Field(
        default=False,
        description="write each workflow state's input and output (photo keys, labels, job requests) to the "
        "execution log; off by default so the log holds only the events",
    )

    @field_validator("alarm_emails")
    @classmethod
    def _emails(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in v if not _EMAIL.match(e)]
        if bad:
            raise ValueError(f"malformed e-mail address(es): {', '.join(bad)} (expected name@domain.tld)")
        return v


class Concurrency(_Frozen):
    """Limits on how many copies of a function run at once.

    ``register_max_concurrency`` caps the register function's SQS event source (Lambda's ``MaximumConcurrency``): a
    burst of uploads is worked off at this pace instead of taking the account's concurrency. ``reserved`` sets
    reserved concurrency per function folder (``lambdas/<folder>``); it is optional because reserving fails the
    deploy in an account whose unreserved concurrency would drop below 100 (new accounts often have a limit of 10).
    """

    register_max_concurrency: int = Field(default=10, ge=2, le=1000)
    reserved: dict[str, int] = Field(default_factory=dict)

    @field_validator("reserved")
    @classmethod
    def _known_functions(cls, v: dict[str, int]) -> dict[str, int]:
        known = function_folders()
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown function folder(s) {', '.join(unknown)}; allowed: {', '.join(known)}")
        bad = sorted(k for k, n in v.items() if not 1 <= n <= 1000)
        if bad:
            raise ValueError(f"reserved concurrency must be 1..1000 (0 would stop the function): {', '.join(bad)}")
        return v


def function_folders() -> tuple[str, ...]:
    """The Lambda handler folders, ``lambdas/<folder>/handler.py``."""
    return tuple(sorted(p.parent.name for p in LAMBDAS_DIR.glob("*/handler.py")))


class Costs(_Frozen):
    """Prices and assumptions of the per-batch cost estimate, as overrides of ``fieldlabel.costs``' defaults.

    Shapes as in docs/costs.md, e.g. ``{"prices": {"taxonomist_hour": {"usd": 42}}}``; validated at synth by the
    cost model itself, so a wrong price fails ``cdk synth`` instead of being ignored at publish time.
    """

    prices: dict[str, Any] = Field(default_factory=dict)
    assumptions: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_for_the_cost_model(self) -> Costs:
        from fieldlabel.costs import load_assumptions, load_price_book

        for name, loader, value in (("prices", load_price_book, self.prices),
                                    ("assumptions", load_assumptions, self.assumptions)):
            try:
                loader(value)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"{name}.{where}: {first['msg']} (see docs/costs.md)") from None
        return self


class AppConfig(_Frozen):
    """Everything one deployment (environment) of the pipeline is built from."""

    env_name: str
    project: str = Field(
        description="name prefix for resources and stacks: lowercase, 2-20 chars, starts with a letter"
    )
    account: str = Field(description="12-digit AWS account id")
    region: str
    taxonomy: Taxonomy
    batching: Batching
    labeling: Labeling
    engine: Engine = Engine()
    review: Review = Review()
    workforce: Workforce
    intake: Intake = Intake()
    retention: Retention = Retention()
    monitoring: Monitoring = Monitoring()
    concurrency: Concurrency = Concurrency()
    costs: Costs = Costs()
    label_studio: LabelStudio | None = None
    tags: Annotated[dict[str, str], Field(default_factory=dict, max_length=40)]

    @field_validator("project")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v):
            raise ValueError("must be 2-20 lowercase letters, digits or hyphens, starting with a letter")
        return v

    @field_validator("account")
    @classmethod
    def _account(cls, v: str) -> str:
        if not re.fullmatch(r"\d{12}", v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in SUPPORTED_REGIONS:
            raise ValueError(
                f"{v!r} has no Ground Truth built-in image-classification functions; "
                f"allowed: {', '.join(SUPPORTED_REGIONS)}"
            )
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not _TAG_KEY.match(k) or k.lower().startswith("aws:"):
                raise ValueError(f"tag key {k!r} is not allowed (1-128 chars, not starting with 'aws:')")
            if len(val) > 256:
                raise ValueError(f"tag {k!r}: value longer than 256 characters")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> AppConfig:
        problems: list[str] = []
        # The own engine (labeling.engine 'model') has no batch minimum and its taxonomists use the custom
        # template's searchable picker, so Ground Truth's two limits below apply only to engine 'groundtruth'.
        groundtruth = self.labeling.engine == "groundtruth"
        if groundtruth and self.labeling.automated and self.batching.batch_size < AUTOMATED_LABELING_MINIMUM:
            problems.append(
                "batching.batch_size: automated labeling needs batches of at least "
                f"{AUTOMATED_LABELING_MINIMUM} photos (Ground Truth's minimum), got {self.batching.batch_size}; "
                "raise it, set labeling.automated to false, or use labeling.engine 'model'"
            )
        limit = WORKER_UI_CATEGORY_LIMITS[self.labeling.worker_ui]
        n = len(self.taxonomy.labels)
        if groundtruth and n > limit:
            problems.append(
                f"taxonomy.species: the worker UI {self.labeling.worker_ui!r} shows at most {limit} categories, "
                f"but the taxonomy has {n} (species + the unknown label); use at most {limit - 1} species, "
                "or labeling.engine 'model' (custom template with a searchable picker)"
            )
        if self.labeling.backend == "label_studio":
            if self.label_studio is None:
                problems.append("label_studio: required when labeling.backend is 'label_studio' "
                                "(domain_name and certificate_arn at least; docs/label-studio.md)")
            if groundtruth and self.labeling.automated:
                problems.append("labeling.backend: 'label_studio' has no automated labeling of its own; "
                                "use labeling.engine 'model', or set labeling.automated to false (human-only batches)")
            # The load balancer signs taxonomists in on the pool's hosted UI, so it needs the pool's domain.
            if self.workforce.mode == "existing" and not self.workforce.cognito_domain_prefix:
                problems.append("workforce.cognito_domain_prefix: required with labeling.backend 'label_studio' when "
                                "workforce.mode is 'existing' (the existing user pool's domain prefix, where the "
                                "Label Studio load balancer signs taxonomists in)")
        if self.workforce.mode == "create" and not self.workforce.cognito_domain_prefix:
            problems.append("workforce.cognito_domain_prefix: required when workforce.mode is 'create'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def removal_retain(self) -> bool:
        return self.retention.removal_policy == "retain"

    def runtime_json(self) -> str:
        """The part of the config Lambdas need at run time, as compact JSON (env var ``CONFIG_JSON``)."""
        return json.dumps(
            {
                "project": self.project,
                "labels": list(self.taxonomy.labels),
                "unknown_label": self.taxonomy.unknown_label,
                "automated": self.labeling.automated,
                "engine": self.labeling.engine,
                "engine_settings": self.engine.settings_json(),
                "backend": self.labeling.backend,
                "workers_per_photo": self.labeling.workers_per_photo,
                "tags": self.tags,
                "costs": self.costs.model_dump(),
            },
            separators=(",", ":"),
        )


def _format_errors(env: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__")
        msg = e["msg"].removeprefix("Value error, ")
        key = f"environments.{env}" + (f".{loc}" if loc else "")
        got = e.get("input")
        shown = "" if isinstance(got, dict | list | tuple) or got is None or repr(got) in msg else f" (got {got!r})"
        lines.append(f"  - {key}: {msg}{shown}")
    return "\n".join(lines)


def load_config(context: Mapping[str, Any], env: str | None = None) -> AppConfig:
    """Build the frozen config for one environment from CDK context.

    Args:
        context: the CDK context (``cdk.json`` ``context`` plus ``-c`` overrides).
        env: environment name; defaults to ``context["env"]``.

    Raises:
        ConfigError: naming each bad key, what was given and what is allowed.
    """
    env_name = env or context.get("env")
    environments = context.get("environments")
    if not isinstance(environments, Mapping) or not environments:
        raise ConfigError("cdk.json context.environments: missing; add at least one environment block (e.g. 'dev')")
    if not env_name:
        raise ConfigError(f"context.env: missing; choose one of {', '.join(sorted(environments))} with -c env=NAME")
    block = environments.get(env_name)
    if not isinstance(block, Mapping):
        raise ConfigError(f"context.env: unknown environment {env_name!r}; defined: {', '.join(sorted(environments))}")
    # -c account=... / -c region=... override the block, so one cdk.json serves several accounts.
    overrides = {k: context[k] for k in ("account", "region") if context.get(k)}
    try:
        return AppConfig.model_validate({**block, **overrides, "env_name": env_name})
    except ValidationError as err:
        raise ConfigError(
            f"invalid configuration for environment {env_name!r}:\n{_format_errors(env_name, err)}"
        ) from None
