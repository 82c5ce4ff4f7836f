"""``fieldlabel taxonomists add`` on a Label Studio deployment: the Cognito user AND the Label Studio account with a
one-time password.

Cognito, Secrets Manager and Lambda are moto; the deployment's ``ls_accounts`` function runs in-process when the CLI
invokes it (moto without Docker would only echo the payload), against the REAL local Label Studio server (fixture
``label_studio``). ``--label-studio-url`` talks to the server directly (the local demo's mode).
"""

from __future__ import annotations

import functools
import io
import json
import re
from dataclasses import dataclass

import boto3
import pytest
from botocore.stub import Stubber
from fieldlabel.labeling.label_studio.client import LabelStudioClient
from fieldlabel_cli.errors import CliError
from fieldlabel_cli.labelstudio import invoke_accounts_function
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from localrun.labelstudio import LabelStudioServer
from tests.unit.labelstudio.signin import signs_in

FUNCTION = "treelabel-ls-accounts"
PUBLIC_URL = "https://labels.example.org"
MOTO_CONFIG = {"lambda": {"use_docker": False}}


@dataclass
class _Context:
    function_name: str = FUNCTION
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
    aws_request_id: str = "req-1"


@pytest.fixture
def deployment(label_studio: LabelStudioServer, tmp_path, monkeypatch):
    """A user pool with the two groups, the admin token in a secret, the accounts function (its environment as the
    stack sets it: the in-VPC API address), and the outputs of a Label Studio deployment."""
    monkeypatch.delenv("FIELDLABEL_LABEL_STUDIO_TOKEN", raising=False)
    with mock_aws(config=MOTO_CONFIG):
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = cognito.create_user_pool(PoolName="workforce")["UserPool"]["Id"]
        for group in ("taxonomists", "senior-reviewers"):
            cognito.create_group(UserPoolId=pool_id, GroupName=group)
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        arn = secrets.create_secret(Name="ls-admin-token", SecretString=label_studio.token)["ARN"]
        role = boto3.client("iam", region_name="us-east-1").create_role(
            RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        boto3.client("lambda", region_name="us-east-1").create_function(
            FunctionName=FUNCTION, Runtime="python3.13", Role=role, Handler="ls_accounts.handler.lambda_handler",
            Code={"ZipFile": b"placeholder"})
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
        monkeypatch.setenv("LABEL_STUDIO_TOKEN_SECRET_ARN", arn)
        invocations: list[dict] = []
        from ls_accounts import handler as accounts_handler

        def invoke(self, function_name, qualifier, body, headers, response_headers):
            self.get_function(function_name, qualifier)  # moto's ResourceNotFoundException for an unknown name
            invocations.append(json.loads(body))
            return json.dumps(accounts_handler.lambda_handler(json.loads(body), _Context())).encode()

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({
            "treelabel-Workforce": {"UserPoolId": pool_id, "TaxonomistsGroupName": "taxonomists",
                                    "ReviewersGroupName": "senior-reviewers"},
            "treelabel-LabelStudio": {"LabelStudioUrl": PUBLIC_URL, "LabelStudioTokenSecretArn": arn},
            "treelabel-Pipeline": {"LabelStudioAccountsFunctionName": FUNCTION},
        }))
        yield cognito, pool_id, str(outputs), invocations


def _password(stdout: str) -> str:
    match = re.search(r"one-time password:\s+(\S+)", stdout)
    assert match, stdout
    return match.group(1)


def test_add_makes_the_account_through_the_function_and_prints_the_password_once(
        deployment, label_studio: LabelStudioServer, cli) -> None:
    cognito, pool_id, outputs, invocations = deployment
    r = cli("taxonomists", "add", "Maria.Costa@Botany.example.org", "--name", "Maria da Costa", "--outputs", outputs)
    assert r.code == 0, r.stderr
    email = "maria.costa@botany.example.org"
    assert invocations == [{"email": email, "first_name": "Maria", "last_name": "da Costa"}]
    password = _password(r.stdout)
    assert r.stdout.count(password) == 1 and password not in r.stderr
    assert PUBLIC_URL in r.stdout and "privately" in r.stdout and "Account & Settings" in r.stdout
    # The password the CLI printed is the one Label Studio checks.
    assert signs_in(label_studio.url, email, password)
    user = LabelStudioClient(label_studio.url, label_studio.token).find_user(email)
    assert user is not None and (user["first_name"], user["last_name"]) == ("Maria", "da Costa")
    assert cognito.admin_get_user(UserPoolId=pool_id, Username=email)

    again = cli("taxonomists", "add", email, "--reviewer", "--outputs", outputs, "--json")
    assert again.code == 0, again.stderr
    account = again.json()["label_studio"]
    assert account["created"] is False and account["password"] is None and account["user_id"] == user["id"]
    assert signs_in(label_studio.url, email, password)


def test_json_output_carries_the_password_and_the_public_address(deployment, label_studio: LabelStudioServer,
                                                                 cli) -> None:
    _, _, outputs, _ = deployment
    r = cli("taxonomists", "add", "json.person@botany.example.org", "--outputs", outputs, "--json")
    assert r.code == 0, r.stderr
    account = r.json()["label_studio"]
    assert account["created"] is True and account["url"] == PUBLIC_URL
    assert signs_in(label_studio.url, "json.person@botany.example.org", account["password"])


def test_direct_mode_talks_to_the_given_server(deployment, label_studio: LabelStudioServer, cli,
                                               monkeypatch) -> None:
    _, _, outputs, invocations = deployment
    monkeypatch.setenv("FIELDLABEL_LABEL_STUDIO_TOKEN", label_studio.token)
    r = cli("taxonomists", "add", "local.person@botany.example.org", "--outputs", outputs,
            "--label-studio-url", label_studio.url)
    assert r.code == 0, r.stderr
    assert invocations == []
    assert label_studio.url in r.stdout
    assert signs_in(label_studio.url, "local.person@botany.example.org", _password(r.stdout))


def test_a_deployment_without_label_studio_makes_no_account(tmp_path, cli) -> None:
    with mock_aws():
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = cognito.create_user_pool(PoolName="workforce")["UserPool"]["Id"]
        for group in ("taxonomists", "senior-reviewers"):
            cognito.create_group(UserPoolId=pool_id, GroupName=group)
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({"UserPoolId": pool_id, "TaxonomistsGroupName": "taxonomists",
                                       "ReviewersGroupName": "senior-reviewers"}))
        r = cli("taxonomists", "add", "gt.person@botany.example.org", "--outputs", str(outputs), "--json",
                "--region", "us-east-1")
    assert r.code == 0, r.stderr
    assert "label_studio" not in r.json()


def test_a_label_studio_deployment_without_the_function_says_what_to_do(deployment, tmp_path, cli) -> None:
    _, _, outputs, _ = deployment
    doc = json.loads(open(outputs).read())
    del doc["treelabel-Pipeline"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(doc))
    r = cli("taxonomists", "add", "old.person@botany.example.org", "--outputs", str(older))
    assert r.code != 0
    assert "LabelStudioAccountsFunctionName" in r.stderr and "running `add` again is safe" in r.stderr


def test_a_missing_function_is_named(deployment, cli) -> None:
    _, _, outputs, _ = deployment
    r = cli("taxonomists", "add", "z@botany.example.org", "--outputs", outputs,
            "--label-studio-accounts-function", "no-such-function")
    assert r.code != 0 and "no-such-function" in r.stderr and "not found" in r.stderr


def test_a_failing_function_shows_its_error() -> None:
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    error = {"errorType": "AccountError", "errorMessage": "Label Studio refused the sign-up of a@b.org: nope"}
    stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                 "Payload": io.BytesIO(json.dumps(error).encode())},
                      {"FunctionName": "fn", "InvocationType": "RequestResponse",
                       "Payload": json.dumps({"email": "a@b.org", "first_name": "", "last_name": ""}).encode()})
    with stub, pytest.raises(CliError) as info:
        invoke_accounts_function(client, "fn", "a@b.org", None)
    text = str(info.value)
    assert "AccountError: Label Studio refused the sign-up" in text and "/aws/lambda/fn" in text
    assert "running `add` again is safe" in text


def test_an_unreachable_label_studio_is_a_clear_error(deployment, cli, monkeypatch) -> None:
    _, _, outputs, _ = deployment
    monkeypatch.setenv("FIELDLABEL_LABEL_STUDIO_TOKEN", "t" * 40)
    # The client's backoff, without the waiting.
    monkeypatch.setattr("fieldlabel_cli.labelstudio.LabelStudioClient",
                        functools.partial(LabelStudioClient, sleep=lambda _: None))
    r = cli("taxonomists", "add", "x@botany.example.org", "--outputs", outputs,
            "--label-studio-url", "http://127.0.0.1:9")
    assert r.code != 0 and "Label Studio" in r.stderr and "127.0.0.1:9" in r.stderr


def test_the_cognito_sign_in_in_front_of_the_api_is_explained(deployment, cli, monkeypatch) -> None:
    """A direct call from outside the VPC meets the public load balancer's Cognito sign-in: the CLI says to use the
    deployment's function instead."""
    import http.server
    import threading

    class SignIn(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(302)
            self.send_header("Location", "https://auth.example.org/oauth2/authorize?client_id=x")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SignIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cognito, pool_id, outputs, _ = deployment
        monkeypatch.setenv("FIELDLABEL_LABEL_STUDIO_TOKEN", "t" * 40)
        r = cli("taxonomists", "add", "y@botany.example.org", "--outputs", outputs,
                "--label-studio-url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert r.code != 0
    assert "Cognito sign-in" in r.stderr and "leave out --label-studio-url" in r.stderr
    assert "running `add` again is safe" in r.stderr
    assert cognito.admin_get_user(UserPoolId=pool_id, Username="y@botany.example.org")
