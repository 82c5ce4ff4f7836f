"""Resource discovery: explicit options > outputs file > CloudFormation outputs of <prefix>-Storage/-Workforce."""

from __future__ import annotations

import json

import boto3
import pytest
from fieldlabel_cli.errors import CliError, UsageError
from fieldlabel_cli.resources import ResourceResolver, load_outputs_file
from moto import mock_aws


def _stack(cfn, name: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def cfn():
    with mock_aws():
        yield boto3.client("cloudformation", region_name="us-east-1")


def test_reads_and_merges_outputs_of_both_stacks(cfn):
    _stack(cfn, "treelabel-Storage", {"IntakeBucketName": "intake-123"})
    # the Workforce stack's real output keys (stacks/workforce_stack.py)
    _stack(cfn, "treelabel-Workforce", {"UserPoolId": "us-east-1_abc", "TaxonomistsGroupName": "taxonomists",
                                        "ReviewersGroupName": "senior-reviewers"})
    calls: list[str] = []
    cfn.meta.events.register("provide-client-params", lambda model, **kw: calls.append(model.name))
    r = ResourceResolver(cloudformation=lambda: cfn)
    assert r.get("IntakeBucketName") == "intake-123"
    assert r.get("UserPoolId") == "us-east-1_abc"
    assert r.get("TaxonomistsGroup") == "taxonomists"
    assert r.get("ReviewersGroup") == "senior-reviewers"
    # both stacks read once, then cached
    assert calls == ["DescribeStacks", "DescribeStacks"]


def test_stack_prefix_selects_the_stacks(cfn):
    _stack(cfn, "treelabel-Storage", {"IntakeBucketName": "default-bucket"})
    _stack(cfn, "trees-eu-Storage", {"IntakeBucketName": "eu-bucket"})
    assert ResourceResolver(stack_prefix="trees-eu", cloudformation=lambda: cfn).get("IntakeBucketName") == "eu-bucket"


def test_stack_prefix_from_environment(cfn, monkeypatch):
    _stack(cfn, "envpfx-Storage", {"IntakeBucketName": "env-bucket"})
    monkeypatch.setenv("FIELDLABEL_STACK_PREFIX", "envpfx")
    assert ResourceResolver(cloudformation=lambda: cfn).get("IntakeBucketName") == "env-bucket"


def test_explicit_option_wins_and_needs_no_aws():
    def boom():
        raise AssertionError("CloudFormation must not be called")

    r = ResourceResolver(explicit={"IntakeBucketName": "given"}, cloudformation=boom)
    assert r.get("IntakeBucketName") == "given"


def test_outputs_file_flat_and_cdk_shapes(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"IntakeBucketName": "b1", "UserPoolId": "p1"}))
    cdk = tmp_path / "cdk.json"
    cdk.write_text(json.dumps({"x-Storage": {"IntakeBucketName": "b2"}, "x-Workforce": {"UserPoolId": "p2"}}))
    assert load_outputs_file(flat) == {"IntakeBucketName": "b1", "UserPoolId": "p1"}
    assert load_outputs_file(cdk) == {"IntakeBucketName": "b2", "UserPoolId": "p2"}
    r = ResourceResolver(outputs_file=cdk, cloudformation=lambda: pytest.fail("no CFN with a file"))
    assert r.get("UserPoolId") == "p2"


def test_outputs_file_from_environment(tmp_path, monkeypatch):
    f = tmp_path / "o.json"
    f.write_text(json.dumps({"IntakeBucketName": "from-env"}))
    monkeypatch.setenv("FIELDLABEL_OUTPUTS", str(f))
    assert ResourceResolver().get("IntakeBucketName") == "from-env"


def test_name_missing_from_outputs_file_says_which_option_to_pass(tmp_path):
    f = tmp_path / "o.json"
    f.write_text(json.dumps({"IntakeBucketName": "b"}))
    with pytest.raises(CliError, match="UserPoolId is not in outputs file .* pass --user-pool-id"):
        ResourceResolver(outputs_file=f).get("UserPoolId")


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_broken_outputs_file_is_a_usage_error(tmp_path, content):
    f = tmp_path / "o.json"
    f.write_text(content)
    with pytest.raises(UsageError):
        ResourceResolver(outputs_file=f).get("IntakeBucketName")


def test_missing_outputs_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        ResourceResolver(outputs_file=tmp_path / "nope.json").get("IntakeBucketName")


def test_no_stacks_gives_an_actionable_message(cfn):
    with pytest.raises(CliError) as info:
        ResourceResolver(cloudformation=lambda: cfn).get("IntakeBucketName")
    msg = info.value.message
    assert "no stack named treelabel-Storage or treelabel-Workforce" in msg
    assert "--bucket" in msg and "--outputs" in msg and "--stack-prefix" in msg


def test_cli_uses_cloudformation_outputs_end_to_end(cfn, tmp_path, files, cli):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="intake-from-cfn")
    _stack(cfn, "demo-Storage", {"IntakeBucketName": "intake-from-cfn"})
    folder = tmp_path / "f"
    files.write(folder / "a.jpg", files.jpeg(1))
    r = cli("upload", str(folder), "--stack-prefix", "demo")
    assert r.code == 0, r.stderr
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="intake-from-cfn")["Contents"]] == ["uploads/a.jpg"]
