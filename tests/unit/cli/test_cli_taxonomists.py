"""``fieldlabel taxonomists add/remove/list`` against moto's cognito-idp."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws


@pytest.fixture(scope="module")
def _shared_pool():
    # moto's CreateUserPool takes ~0.3 s (key generation), so the module shares one pool; `pool` empties it.
    with mock_aws():
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = cognito.create_user_pool(PoolName="workforce")["UserPool"]["Id"]
        cognito.create_group(UserPoolId=pool_id, GroupName="taxonomists")
        cognito.create_group(UserPoolId=pool_id, GroupName="senior-reviewers")
        yield cognito, pool_id


@pytest.fixture
def pool(_shared_pool, tmp_path):
    """An empty user pool with the two groups, and an outputs file naming them (as the offline demo writes it)."""
    cognito, pool_id = _shared_pool
    for user in cognito.list_users(UserPoolId=pool_id)["Users"]:
        cognito.admin_delete_user(UserPoolId=pool_id, Username=user["Username"])
    outputs = tmp_path / "outputs.json"
    # the shape `cdk deploy --outputs-file` writes, with the Workforce stack's output keys
    outputs.write_text(json.dumps({"treelabel-Workforce": {
        "UserPoolId": pool_id, "TaxonomistsGroupName": "taxonomists", "ReviewersGroupName": "senior-reviewers"}}))
    return cognito, pool_id, str(outputs)


def members(cognito, pool_id, group) -> list[str]:
    users = cognito.list_users_in_group(UserPoolId=pool_id, GroupName=group)["Users"]
    return sorted(u["Username"] for u in users)


def attrs(cognito, pool_id, username) -> dict[str, str]:
    user = cognito.admin_get_user(UserPoolId=pool_id, Username=username)
    return {a["Name"]: a["Value"] for a in user["UserAttributes"]}


def test_add_invites_by_email_and_joins_the_taxonomists_group(pool, cli, aws_calls):
    cognito, pool_id, outputs = pool
    r = cli("taxonomists", "add", "Ana.Silva@Botany.example.org", "--name", "Ana Silva", "--outputs", outputs)
    assert r.code == 0, r.stderr
    assert "Invited ana.silva@botany.example.org" in r.stdout
    a = attrs(cognito, pool_id, "ana.silva@botany.example.org")
    assert a["email"] == "ana.silva@botany.example.org" and a["email_verified"] == "true" and a["name"] == "Ana Silva"
    assert members(cognito, pool_id, "taxonomists") == ["ana.silva@botany.example.org"]
    assert members(cognito, pool_id, "senior-reviewers") == []
    create = next(p for name, p in aws_calls.params if name == "AdminCreateUser")
    assert create["DesiredDeliveryMediums"] == ["EMAIL"]
    assert "MessageAction" not in create  # the invitation e-mail is sent


def test_add_reviewer_joins_both_groups(pool, cli):
    cognito, pool_id, outputs = pool
    r = cli("taxonomists", "add", "rev@x.org", "--reviewer", "--outputs", outputs, "--json")
    assert r.code == 0
    assert r.json() == {"email": "rev@x.org", "created": True, "groups": ["taxonomists", "senior-reviewers"]}
    assert members(cognito, pool_id, "senior-reviewers") == ["rev@x.org"]


def test_add_again_is_idempotent_and_can_promote(pool, cli):
    cognito, pool_id, outputs = pool
    assert cli("taxonomists", "add", "a@x.org", "--outputs", outputs).code == 0
    r = cli("taxonomists", "add", "a@x.org", "--reviewer", "--outputs", outputs, "--json")
    assert r.code == 0
    assert r.json()["created"] is False
    assert members(cognito, pool_id, "taxonomists") == ["a@x.org"]
    assert members(cognito, pool_id, "senior-reviewers") == ["a@x.org"]


@pytest.mark.parametrize("bad", ["ana", "ana@", "ana@botany", "ana silva@x.org", "a@@x.org"])
def test_malformed_email_is_a_usage_error_before_any_aws_call(pool, cli, aws_calls, bad):
    _, _, outputs = pool
    r = cli("taxonomists", "add", bad, "--outputs", outputs)
    assert r.code == 2
    assert "not a valid e-mail address" in r.stderr and "Traceback" not in r.stderr
    assert aws_calls.calls == []


def test_remove_with_yes_deletes_the_user(pool, cli):
    cognito, pool_id, outputs = pool
    cli("taxonomists", "add", "a@x.org", "--reviewer", "--outputs", outputs)
    r = cli("taxonomists", "remove", "a@x.org", "--yes", "--outputs", outputs, "--json")
    assert r.code == 0, r.stderr
    assert r.json() == {"email": "a@x.org", "removed_from": ["senior-reviewers", "taxonomists"], "deleted": True}
    assert members(cognito, pool_id, "taxonomists") == []
    assert cognito.list_users(UserPoolId=pool_id)["Users"] == []


def test_remove_refuses_without_yes_when_not_interactive(pool, cli):
    cognito, pool_id, outputs = pool
    cli("taxonomists", "add", "a@x.org", "--outputs", outputs)
    r = cli("taxonomists", "remove", "a@x.org", "--outputs", outputs)
    assert r.code == 2
    assert "--yes" in r.stderr
    assert members(cognito, pool_id, "taxonomists") == ["a@x.org"]


@pytest.mark.parametrize(("answer", "removed"), [("n\n", False), ("\n", False), ("y\n", True), ("yes\n", True)])
def test_remove_asks_for_confirmation_on_a_terminal(pool, cli, answer, removed):
    cognito, pool_id, outputs = pool
    cli("taxonomists", "add", "a@x.org", "--outputs", outputs)
    r = cli("taxonomists", "remove", "a@x.org", "--outputs", outputs, stdin_text=answer, stdin_tty=True)
    assert r.code == 0
    assert "Really remove and delete the user a@x.org? [y/N]" in r.stderr
    assert (cognito.list_users(UserPoolId=pool_id)["Users"] == []) is removed


def test_remove_reviewer_only_keeps_the_taxonomist(pool, cli):
    cognito, pool_id, outputs = pool
    cli("taxonomists", "add", "a@x.org", "--reviewer", "--outputs", outputs)
    r = cli("taxonomists", "remove", "a@x.org", "--reviewer-only", "-y", "--outputs", outputs)
    assert r.code == 0
    assert members(cognito, pool_id, "senior-reviewers") == []
    assert members(cognito, pool_id, "taxonomists") == ["a@x.org"]


def test_remove_unknown_user_is_one_line_exit_1(pool, cli):
    _, pool_id, outputs = pool
    r = cli("taxonomists", "remove", "ghost@x.org", "--yes", "--outputs", outputs)
    assert r.code == 1
    assert r.stderr.strip() == f"fieldlabel: error: no user with e-mail ghost@x.org in user pool {pool_id}"


def test_list_shows_roles(pool, cli):
    cognito, pool_id, outputs = pool
    cli("taxonomists", "add", "b@x.org", "--name", "Bea", "--outputs", outputs)
    cli("taxonomists", "add", "a@x.org", "--reviewer", "--outputs", outputs)
    r = cli("taxonomists", "list", "--outputs", outputs, "--json")
    assert r.code == 0
    rows = r.json()
    assert [(x["email"], x["name"], x["taxonomist"], x["reviewer"]) for x in rows] == [
        ("a@x.org", "", True, True),
        ("b@x.org", "Bea", True, False),
    ]
    assert all(x["status"] == "FORCE_CHANGE_PASSWORD" for x in rows)
    table = cli("taxonomists", "list", "--outputs", outputs).stdout.splitlines()
    assert table[0].split() == ["EMAIL", "NAME", "STATUS", "ROLE"]
    assert table[1].split() == ["a@x.org", "FORCE_CHANGE_PASSWORD", "taxonomist+reviewer"]


def test_list_includes_reviewers_outside_the_taxonomists_group(pool, cli):
    cognito, pool_id, outputs = pool
    cognito.admin_create_user(UserPoolId=pool_id, Username="odd@x.org",
                              UserAttributes=[{"Name": "email", "Value": "odd@x.org"}])
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username="odd@x.org", GroupName="senior-reviewers")
    rows = cli("taxonomists", "list", "--outputs", outputs, "--json").json()
    assert rows[0]["email"] == "odd@x.org" and rows[0]["taxonomist"] is False and rows[0]["reviewer"] is True


def test_empty_list_says_how_to_invite(pool, cli):
    _, _, outputs = pool
    assert "fieldlabel taxonomists add EMAIL" in cli("taxonomists", "list", "--outputs", outputs).stdout


def test_wrong_group_name_is_one_clear_line(pool, cli):
    _, pool_id, _ = pool
    r = cli("taxonomists", "add", "a@x.org", "--user-pool-id", pool_id, "--taxonomists-group", "nope",
            "--reviewers-group", "senior-reviewers")
    assert r.code == 1
    assert "not found" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_explicit_pool_options_override_the_outputs_file(pool, cli, tmp_path):
    cognito, pool_id, outputs = pool
    other = cognito.create_user_pool(PoolName="other")["UserPool"]["Id"]
    cognito.create_group(UserPoolId=other, GroupName="taxonomists")
    r = cli("taxonomists", "add", "a@x.org", "--outputs", outputs, "--user-pool-id", other)
    assert r.code == 0
    assert members(cognito, other, "taxonomists") == ["a@x.org"]
    assert members(cognito, pool_id, "taxonomists") == []
