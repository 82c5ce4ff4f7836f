"""The framework: help text, exit codes, and one-line errors (never a traceback) for user mistakes."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, NoRegionError, ProfileNotFound
from fieldlabel_cli.errors import translate_aws_error
from fieldlabel_cli.main import build_parser
from moto import mock_aws


def _one_line_error(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert lines[0].startswith("fieldlabel: error: ")
    return lines[0]


def test_help_lists_only_working_commands(cli, capsys):
    # argparse writes --help to the real stdout
    r = cli("--help")
    out = capsys.readouterr().out
    assert r.code == 0
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(choices) == ["cost", "evaluate", "export", "flush", "report", "resume", "status", "taxonomists",
                               "upload"]
    for name in choices:
        assert name in out
    assert "--endpoint-url" in out and "--outputs" in out and "--json" in out


@pytest.mark.parametrize("argv", [["upload", "--help"], ["taxonomists", "add", "--help"], ["cost", "--help"],
                                  ["status", "--help"], ["flush", "--help"], ["report", "--help"],
                                  ["export", "--help"], ["resume", "--help"]])
def test_every_subcommand_has_help(cli, argv, capsys):
    r = cli(*argv)
    assert r.code == 0
    assert "usage: fieldlabel" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["upload"], ["upload", "x", "--workers", "0"], ["taxonomists"]])
def test_usage_errors_exit_2(cli, argv, capsys):
    assert cli(*argv).code == 2
    assert "usage: fieldlabel" in capsys.readouterr().err


def test_global_options_work_after_the_subcommand_too(tmp_path, files, cli):
    folder = tmp_path / "f"
    files.write(folder / "a.jpg", files.jpeg(1))
    before = cli("--json", "upload", str(folder), "--dry-run")
    after = cli("upload", str(folder), "--dry-run", "--json")
    assert before.code == after.code == 0
    assert before.json() == after.json()


def test_missing_folder_is_a_usage_error(cli, tmp_path):
    r = cli("upload", str(tmp_path / "nope"), "--dry-run")
    assert r.code == 2
    assert "not a folder" in _one_line_error(r)


def test_bad_prefix_is_a_usage_error(cli, tmp_path):
    r = cli("upload", str(tmp_path), "--prefix", "../escape", "--dry-run")
    assert r.code == 2
    assert "--prefix" in _one_line_error(r)


def test_wrong_bucket_is_one_clear_line_and_exit_1(tmp_path, files, cli):
    folder = tmp_path / "f"
    files.write(folder / "a.jpg", files.jpeg(1))
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="the-right-bucket")
        r = cli("upload", str(folder), "--bucket", "the-wrong-bucket")
    assert r.code == 1
    line = _one_line_error(r)
    assert "the-wrong-bucket" in line and "does not exist" in line


def test_access_denied_on_put_stops_the_run_with_one_line(tmp_path, files, cli, aws_calls):
    from botocore.exceptions import ClientError

    folder = tmp_path / "f"
    for i in range(4):
        files.write(folder / f"{i}.jpg", files.jpeg(i))
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
    aws_calls.fail_on = ("PutObject", 1, denied)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="intake")
        r = cli("upload", str(folder), "--bucket", "intake", "--workers", "1")
    assert r.code == 1
    assert "access denied" in _one_line_error(r)
    # the first refusal stops the run: no file after it was tried
    assert aws_calls.count("PutObject") == 1


def test_missing_credentials_are_one_clear_line_and_exit_1(tmp_path, files, cli, monkeypatch):
    # Given no credentials anywhere: env unset, empty config and credentials files, no instance metadata
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    folder = tmp_path / "f"
    files.write(folder / "a.jpg", files.jpeg(1))

    # When uploading (to a loopback port nothing listens on, so no request could ever leave the machine;
    # not under mock_aws, which would supply fake credentials)
    r = cli("upload", str(folder), "--bucket", "intake", "--endpoint-url", "http://127.0.0.1:9")

    # Then one line says what to do
    assert r.code == 1
    assert "no AWS credentials found" in _one_line_error(r)


def test_unknown_profile_is_one_clear_line(tmp_path, files, cli, monkeypatch):
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    folder = tmp_path / "f"
    files.write(folder / "a.jpg", files.jpeg(1))
    r = cli("upload", str(folder), "--bucket", "intake", "--profile", "no-such-profile")
    assert r.code == 1
    assert "no-such-profile" in _one_line_error(r)


def test_unreachable_endpoint_is_one_clear_line(tmp_path, files, cli, fast_retries):
    folder = tmp_path / "f"
    files.write(folder / "a.jpg", files.jpeg(1))
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    r = cli("upload", str(folder), "--bucket", "intake", "--endpoint-url", "http://127.0.0.1:9")
    assert r.code == 1
    assert "cannot reach AWS at http://127.0.0.1:9" in _one_line_error(r)


@pytest.mark.parametrize(
    ("exc", "fragment"),
    [
        (NoRegionError(), "no AWS region configured: pass --region"),
        (ProfileNotFound(profile="field"), "AWS profile not found: field"),
        (ClientError({"Error": {"Code": "ExpiredToken", "Message": "x"}}, "PutObject"), "invalid or expired"),
        (ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce"}}, "PutObject"),
         "AWS refused PutObject: SlowDown: Please reduce"),
    ],
)
def test_translation_of_other_aws_errors(exc, fragment):
    assert fragment in translate_aws_error(exc).message
