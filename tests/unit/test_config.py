"""Every configuration rule fails with a message that names the key and says what is allowed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import AUTOMATED_LABELING_MINIMUM, AppConfig, ConfigError, load_config

CONTEXT: dict[str, Any] = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]


def _ctx(patch: dict[str, Any] | None = None, env: str = "dev") -> dict[str, Any]:
    ctx = copy.deepcopy(CONTEXT)
    block = ctx["environments"][env]
    for dotted, value in (patch or {}).items():
        *path, last = dotted.split(".")
        target = block
        for p in path:
            target = target.setdefault(p, {})
        if value is _DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return ctx


_DELETE = object()


def _error(patch: dict[str, Any], env: str = "dev") -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(_ctx(patch, env), env)
    return str(exc.value)


def _species(n: int) -> list[dict[str, str]]:
    return [{"label": f"species-{i}", "scientific_name": f"Genus species{i}"} for i in range(n)]


def test_both_shipped_environments_are_valid() -> None:
    dev = load_config(CONTEXT)
    prod = load_config(CONTEXT, "prod")
    assert isinstance(dev, AppConfig) and dev.env_name == "dev" and prod.env_name == "prod"
    assert dev.taxonomy.labels[-1] == "not-a-tree-or-cannot-tell"
    assert dev.workforce.mode == "create" and prod.workforce.mode == "existing"


def test_config_is_frozen() -> None:
    cfg = load_config(CONTEXT)
    with pytest.raises(Exception, match="frozen"):
        cfg.project = "other"  # type: ignore[misc]


def test_environment_is_selected_and_unknown_names_are_listed() -> None:
    assert load_config({**CONTEXT, "env": "prod"}).env_name == "prod"
    with pytest.raises(ConfigError, match=r"unknown environment 'stage'; defined: dev, prod"):
        load_config({**CONTEXT, "env": "stage"})
    with pytest.raises(ConfigError, match="context.environments: missing"):
        load_config({"env": "dev"})


def test_account_and_region_can_be_overridden_on_the_command_line() -> None:
    cfg = load_config({**CONTEXT, "account": "999999999999", "region": "eu-west-1"})
    assert (cfg.account, cfg.region) == ("999999999999", "eu-west-1")


def test_fewer_than_two_species() -> None:
    msg = _error({"taxonomy.species": _species(1)})
    assert "environments.dev.taxonomy.species" in msg and "at least 2 species" in msg


def test_duplicate_species_labels() -> None:
    msg = _error({"taxonomy.species": _species(2) + _species(1)})
    assert "environments.dev.taxonomy.species" in msg and "repeated: species-0" in msg


def test_malformed_species_label() -> None:
    msg = _error({"taxonomy.species": [{"label": "Quercus Robur", "scientific_name": "Q"}, *_species(2)]})
    assert "taxonomy.species.0.label" in msg and "lowercase letters, digits and hyphens" in msg


def test_unknown_label_may_not_be_a_species() -> None:
    msg = _error({"taxonomy.unknown_label": "species-1", "taxonomy.species": _species(3)})
    assert "environments.dev.taxonomy" in msg and "must not also be a species label" in msg


def test_reference_image_must_be_https() -> None:
    sp = _species(2)
    sp[0]["reference_image"] = "http://example.org/oak.jpg"
    assert "reference_image: must be an https:// URL" in _error({"taxonomy.species": sp}).replace(
        "taxonomy.species.0.", ""
    )


def test_automated_labeling_needs_the_ground_truth_minimum_batch() -> None:
    msg = _error({"batching.batch_size": 1000, "labeling.engine": "groundtruth"})
    assert "batching.batch_size" in msg and str(AUTOMATED_LABELING_MINIMUM) in msg and "got 1000" in msg
    # The same batch size is fine for human-only labeling, and for the own engine.
    cfg = load_config(_ctx({"batching.batch_size": 1000, "labeling.engine": "groundtruth",
                            "labeling.automated": False}))
    assert cfg.batching.batch_size == 1000
    assert load_config(_ctx({"batching.batch_size": 1, "labeling.engine": "model"})).batching.batch_size == 1


def test_region_without_built_in_labeling_functions() -> None:
    msg = _error({"region": "eu-north-1"})
    assert "environments.dev.region" in msg and "'eu-north-1'" in msg and "us-east-1" in msg


def test_more_categories_than_the_worker_ui_shows() -> None:
    msg = _error({"taxonomy.species": _species(10), "labeling.engine": "groundtruth"})
    assert "taxonomy.species" in msg and "at most 10 categories" in msg and "has 11" in msg
    assert len(load_config(_ctx({"taxonomy.species": _species(9), "labeling.engine": "groundtruth"})
                           ).taxonomy.labels) == 10


def test_the_own_engine_takes_hundreds_of_species() -> None:
    cfg = load_config(_ctx({"taxonomy.species": _species(300), "labeling.engine": "model"}))
    assert len(cfg.taxonomy.labels) == 301


def test_engine_defaults_and_runtime_form() -> None:
    cfg = load_config(_ctx({"engine": _DELETE, "labeling.engine": _DELETE}))
    assert cfg.labeling.engine == "groundtruth"  # today's behaviour unless asked
    assert (cfg.engine.alpha, cfg.engine.confidence, cfg.engine.min_examples_per_species,
            cfg.engine.calibration_fraction) == (0.05, 0.95, 10, 0.03)
    dev = load_config(CONTEXT)
    assert dev.labeling.engine == "model"
    runtime = json.loads(dev.runtime_json())
    assert runtime["engine"] == "model"
    assert runtime["engine_settings"] == {"alpha": 0.05, "delta": 0.05, "min_examples_per_species": 10,
                                          "calibration_fraction": 0.03}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("labeling.engine", "sagemaker", "environments.dev.labeling.engine"),
    ("engine.alpha", 0.5, "environments.dev.engine.alpha"),
    ("engine.alpha", 0.0, "environments.dev.engine.alpha"),
    ("engine.confidence", 1.0, "environments.dev.engine.confidence"),
    ("engine.min_examples_per_species", 0, "environments.dev.engine.min_examples_per_species"),
    ("engine.calibration_fraction", 0.6, "environments.dev.engine.calibration_fraction"),
    ("engine.seed", 3, "environments.dev.engine.seed"),
])
def test_engine_values_name_their_key(key: str, value: Any, expected: str) -> None:
    assert expected in _error({key: value})


def test_malformed_email() -> None:
    msg = _error({"workforce.taxonomists": ["ana@example.org", "not-an-email"]})
    assert "environments.dev.workforce.taxonomists" in msg and "not-an-email" in msg
    msg = _error({"monitoring.alarm_emails": ["ops@"]})
    assert "monitoring.alarm_emails" in msg and "ops@" in msg


def test_duplicate_email() -> None:
    assert "must be unique" in _error({"workforce.reviewers": ["a@example.org", "A@example.org"]})


def test_existing_workforce_needs_its_pool_and_client() -> None:
    msg = _error({"workforce.existing_user_pool_id": _DELETE}, env="prod")
    assert "environments.prod.workforce" in msg and "existing_user_pool_id: required when mode is 'existing'" in msg


def test_existing_workforce_settings_are_refused_in_create_mode() -> None:
    msg = _error({"workforce.existing_workforce_name": "default"})
    assert "existing_workforce_name: only allowed when mode is 'existing'" in msg


def test_create_mode_needs_a_cognito_domain_prefix() -> None:
    msg = _error({"workforce.cognito_domain_prefix": _DELETE})
    assert "workforce.cognito_domain_prefix: required when workforce.mode is 'create'" in msg


def test_cognito_domain_prefix_may_not_name_aws() -> None:
    assert "'aws', 'amazon' or 'cognito'" in _error({"workforce.cognito_domain_prefix": "my-aws-team"})


def test_workforce_mode_must_be_create_or_existing() -> None:
    msg = _error({"workforce.mode": "shared"})
    assert "environments.dev.workforce.mode" in msg and "'create' or 'existing'" in msg


def test_cidrs_are_checked() -> None:
    assert "'10.0.0/8' is not a CIDR block" in _error({"workforce.allowed_cidrs": ["10.0.0/8"]})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("labeling.workers_per_photo", 10, "less than or equal to 9"),
        ("labeling.task_time_limit_seconds", 10, "greater than or equal to 30"),
        ("labeling.task_availability_days", 31, "less than or equal to 30"),
        ("labeling.max_concurrent_tasks", 6000, "less than or equal to 5000"),
        ("batching.max_batch_size", 200_000, "less than or equal to 100000"),
        ("batching.max_wait_hours", 0, "greater than 0"),
        ("batching.small_batch_policy", "drop", "'human_only' or 'wait'"),
        ("review.audit_sample_rate", 1.5, "less than or equal to 1"),
        ("intake.dedupe", "name", "'content' or 'object'"),
        ("retention.log_retention_days", 42, "Input should be 1, 3, 5"),
        ("retention.removal_policy", "keep", "'retain' or 'destroy'"),
        ("project", "Tree_Label", "2-20 lowercase letters"),
        ("account", "12345", "12-digit AWS account id"),
    ],
)
def test_out_of_range_values_name_their_key(key: str, value: Any, expected: str) -> None:
    msg = _error({key: value})
    assert f"environments.dev.{key}" in msg and expected in msg


def test_max_batch_size_below_batch_size() -> None:
    msg = _error({"batching.max_batch_size": 1300, "batching.batch_size": 2000})
    assert "environments.dev.batching" in msg and "max_batch_size (1300) must be >= batch_size (2000)" in msg


def test_unknown_keys_are_refused() -> None:
    msg = _error({"labeling.auto": True})
    assert "environments.dev.labeling.auto" in msg and "Extra inputs are not permitted" in msg


def test_missing_required_section() -> None:
    msg = _error({"workforce": _DELETE})
    assert "environments.dev.workforce: Field required" in msg


def test_bad_tag_key() -> None:
    assert "tag key 'aws:owner' is not allowed" in _error({"tags": {"aws:owner": "x"}})


def test_label_category_file_matches_ground_truth_format() -> None:
    cfg = load_config(CONTEXT)
    doc = cfg.taxonomy.label_category_file()
    assert doc["document-version"] == "2018-11-28"
    assert [x["label"] for x in doc["labels"]] == list(cfg.taxonomy.labels)
    assert len({x["label"] for x in doc["labels"]}) == len(doc["labels"])


def test_synth_fails_with_the_message(tmp_path: Path) -> None:
    """`cdk synth` runs app.py; a bad value must stop it with the key named, not a traceback."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    bad = _ctx({"batching.batch_size": 10, "labeling.engine": "groundtruth"})
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=root,
        env={**__import__("os").environ, "CDK_CONTEXT_JSON": json.dumps(bad), "CDK_OUTDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Configuration error" in result.stderr and "batching.batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_cost_prices_live_in_config_and_are_validated_at_synth() -> None:
    cfg = load_config(_ctx({"costs": {"prices": {"taxonomist_hour": {"usd": 42}}}}))
    assert json.loads(cfg.runtime_json())["costs"]["prices"] == {"taxonomist_hour": {"usd": 42}}
    msg = _error({"costs": {"prices": {"taxonomist_hour": {"usd": "a lot"}}}})
    assert "environments.dev.costs" in msg and "prices.taxonomist_hour.usd" in msg


def test_hardening_defaults_log_no_execution_data_and_reserve_nothing() -> None:
    for env in ("dev", "prod"):
        c = load_config(CONTEXT, env)
        assert c.monitoring.log_execution_data is False
        assert c.concurrency.register_max_concurrency == 10 and c.concurrency.reserved == {}


def test_reserved_concurrency_names_existing_functions_only() -> None:
    ok = load_config(_ctx({"concurrency.reserved": {"dispatch": 1, "register": 50}}), "dev")
    assert ok.concurrency.reserved == {"dispatch": 1, "register": 50}
    msg = _error({"concurrency.reserved": {"dispatcher": 1}})
    assert "environments.dev.concurrency.reserved" in msg and "unknown function folder(s) dispatcher" in msg
    assert "dispatch" in msg.split("allowed:")[1]
    msg = _error({"concurrency.reserved": {"dispatch": 0}})
    assert "environments.dev.concurrency.reserved" in msg and "1..1000" in msg and "dispatch" in msg


@pytest.mark.parametrize("value", [1, 1001])
def test_register_max_concurrency_is_within_what_lambda_accepts(value: int) -> None:
    # Lambda's MaximumConcurrency for SQS event sources is 2..1000.
    msg = _error({"concurrency.register_max_concurrency": value})
    assert "environments.dev.concurrency.register_max_concurrency" in msg


def test_log_execution_data_is_a_boolean() -> None:
    assert load_config(_ctx({"monitoring.log_execution_data": True}), "dev").monitoring.log_execution_data is True
    assert "environments.dev.monitoring.log_execution_data" in _error({"monitoring.log_execution_data": "maybe"})


# --- labeling.backend 'label_studio' (docs/label-studio.md) -------------------------------------------------------

def test_the_studio_environment_runs_label_studio_with_the_own_engine() -> None:
    studio = load_config(CONTEXT, "studio")
    assert studio.labeling.backend == "label_studio" and studio.labeling.engine == "model"
    assert studio.label_studio is not None and studio.label_studio.image.endswith(":1.23.2")
    assert json.loads(studio.runtime_json())["backend"] == "label_studio"
    assert load_config(CONTEXT).labeling.backend == "groundtruth"


@pytest.mark.parametrize(("patch", "expected"), [
    ({"label_studio": _DELETE}, "environments.studio: label_studio: required when labeling.backend is 'label_studio'"),
    ({"labeling.engine": "groundtruth", "labeling.automated": True},
     "labeling.backend: 'label_studio' has no automated labeling of its own"),
    ({"labeling.backend": "mechanical-turk"}, "environments.studio.labeling.backend"),
    ({"label_studio.image": "heartexlabs/label-studio:latest"},
     "environments.studio.label_studio.image: must be pinned"),
    ({"label_studio.image": "heartexlabs/label-studio"}, "environments.studio.label_studio.image: must be pinned"),
    ({"label_studio.domain_name": "Labels_Example"}, "environments.studio.label_studio.domain_name"),
    ({"label_studio.certificate_arn": "arn:aws:iam::111111111111:server-certificate/x"},
     "environments.studio.label_studio.certificate_arn: must be an ACM certificate ARN"),
    ({"label_studio.cpu": 300}, "cpu: must be one of 512, 1024, 2048, 4096"),
    ({"label_studio.memory_mib": 1024}, "memory_mib: 1024 is not valid with cpu 1024"),
    ({"label_studio.vpc_cidr": "10.42.0.0/24"}, "environments.studio.label_studio.vpc_cidr"),
    ({"label_studio.database.instance_class": "db.t4g.micro"},
     "environments.studio.label_studio.database.instance_class"),
    ({"label_studio.database.backup_retention_days": 0},
     "environments.studio.label_studio.database.backup_retention_days"),
])
def test_label_studio_settings_fail_naming_the_key(patch: dict[str, Any], expected: str) -> None:
    assert expected in _error(patch, "studio")


_EXISTING_WORKFORCE = {"workforce.mode": "existing", "workforce.existing_workforce_name": "default",
                      "workforce.existing_user_pool_id": "us-east-1_EXAMPLE11",
                      "workforce.existing_app_client_id": "1example23456789"}


def test_label_studio_on_an_existing_workforce_needs_its_pool_domain() -> None:
    msg = _error({**_EXISTING_WORKFORCE, "workforce.cognito_domain_prefix": _DELETE}, "studio")
    assert "workforce.cognito_domain_prefix: required with labeling.backend 'label_studio'" in msg
    cfg = load_config(_ctx({**_EXISTING_WORKFORCE, "workforce.cognito_domain_prefix": "institute-workforce"},
                           "studio"), "studio")
    assert cfg.workforce.mode == "existing" and cfg.workforce.cognito_domain_prefix == "institute-workforce"


def test_label_studio_accepts_human_only_batches_and_a_digest_pinned_image() -> None:
    cfg = load_config(_ctx({"labeling.engine": "groundtruth", "labeling.automated": False,
                            "label_studio.image": "heartexlabs/label-studio@sha256:" + "a" * 64}, "studio"), "studio")
    assert cfg.labeling.backend == "label_studio" and not cfg.labeling.automated
