"""``fieldlabel taxonomists add`` on a Label Studio deployment: the Cognito user AND the Label Studio account.

Cognito and Secrets Manager are moto; the Label Studio server is the real local one (fixture ``label_studio``).
"""

from __future__ import annotations

import functools
import json

import boto3
import pytest
from fieldlabel.labeling.label_studio.client import LabelStudioClient
from moto import mock_aws

from localrun.labelstudio import LabelStudioServer


@pytest.fixture
def deployment(label_studio: LabelStudioServer, tmp_path, monkeypatch):
    """A user pool with the two groups, the admin token in a secret, and the outputs of a Label Studio deployment."""
    monkeypatch.delenv("FIELDLABEL_LABEL_STUDIO_TOKEN", raising=False)
    with mock_aws():
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = cognito.create_user_pool(PoolName="workforce")["UserPool"]["Id"]
        for group in ("taxonomists", "senior-reviewers"):
            cognito.create_group(UserPoolId=pool_id, GroupName=group)
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        arn = secrets.create_secret(Name="ls-admin-token",
                                    SecretString=json.dumps({"token": label_studio.token}))["ARN"]
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({
            "treelabel-Workforce": {"UserPoolId": pool_id, "TaxonomistsGroupName": "taxonomists",
                                    "ReviewersGroupName": "senior-reviewers"},
            "treelabel-LabelStudio": {"LabelStudioUrl": label_studio.url, "LabelStudioTokenSecretArn": arn},
        }))
        yield cognito, pool_id, str(outputs)


def test_add_creates_the_label_studio_account_once(deployment, label_studio: LabelStudioServer, cli) -> None:
    cognito, pool_id, outputs = deployment
    r = cli("taxonomists", "add", "Maria.Costa@Botany.example.org", "--name", "Maria da Costa", "--outputs", outputs,
            "--json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["label_studio"]["created"] is True and out["label_studio"]["url"] == label_studio.url
    user = LabelStudioClient(label_studio.url, label_studio.token).find_user("maria.costa@botany.example.org")
    assert user is not None and user["id"] == out["label_studio"]["user_id"]
    assert (user["first_name"], user["last_name"]) == ("Maria", "da Costa")
    assert cognito.admin_get_user(UserPoolId=pool_id, Username="maria.costa@botany.example.org")

    again = cli("taxonomists", "add", "maria.costa@botany.example.org", "--reviewer", "--outputs", outputs)
    assert again.code == 0, again.stderr
    assert "Label Studio account exists" in again.stdout


def test_an_unreachable_label_studio_is_a_clear_error(deployment, cli, monkeypatch) -> None:
    _, _, outputs = deployment
    monkeypatch.setenv("FIELDLABEL_LABEL_STUDIO_TOKEN", "t" * 40)
    # The client's backoff, without the waiting.
    monkeypatch.setattr("fieldlabel_cli.labelstudio.LabelStudioClient",
                        functools.partial(LabelStudioClient, sleep=lambda _: None))
    r = cli("taxonomists", "add", "x@botany.example.org", "--outputs", outputs,
            "--label-studio-url", "http://127.0.0.1:9")
    assert r.code != 0 and "Label Studio" in r.stderr and "127.0.0.1:9" in r.stderr


def test_the_cognito_sign_in_in_front_of_the_api_is_explained(deployment, cli, monkeypatch) -> None:
    """Outside the VPC the public load balancer answers with its Cognito sign-in: the CLI says so and what to do."""
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
        cognito, pool_id, outputs = deployment
        monkeypatch.setenv("FIELDLABEL_LABEL_STUDIO_TOKEN", "t" * 40)
        r = cli("taxonomists", "add", "y@botany.example.org", "--outputs", outputs,
                "--label-studio-url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert r.code != 0
    assert "Cognito sign-in" in r.stderr and "--label-studio-url" in r.stderr and "running `add` again" in r.stderr
    assert cognito.admin_get_user(UserPoolId=pool_id, Username="y@botany.example.org")
