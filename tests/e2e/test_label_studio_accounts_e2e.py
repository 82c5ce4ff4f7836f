"""``fieldlabel taxonomists add`` on the ``studio`` deployment: the CLI invokes the synthesized ``ls_accounts``
function (moto Lambda runs the real handler as the function's role, with the template's environment pointed at a
REAL local Label Studio server and the admin token in moto Secrets Manager). Every AWS call the function makes is
checked against the templates' IAM (tests/e2e/conftest.py); the CLI's own calls are the operator's, not checked."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import boto3
from fieldlabel_cli.context import AppContext
from fieldlabel_cli.main import run

from localrun.harness import REGION, WorkflowHarness
from tests.unit.labelstudio.signin import signs_in


def _cli(*argv: str) -> tuple[int, str, str]:
    ctx = AppContext(stdout=io.StringIO(), stderr=io.StringIO(), stdin=io.StringIO())
    code = run(list(argv), ctx=ctx)
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()  # type: ignore[attr-defined]


def test_taxonomists_add_makes_the_account_through_the_deployed_function(
        studio_templates: dict[str, dict[str, Any]], label_studio: Any, tmp_path: Path) -> None:
    email = "deployed.person@botany.example.org"
    with WorkflowHarness(studio_templates, label_studio=label_studio) as h:
        (name,) = [n for n, f in h.functions.items() if f["handler"] == "ls_accounts.handler.lambda_handler"]
        cognito = boto3.client("cognito-idp", region_name=REGION)
        pool = cognito.create_user_pool(PoolName="workforce")["UserPool"]["Id"]
        for group in ("taxonomists", "senior-reviewers"):
            cognito.create_group(UserPoolId=pool, GroupName=group)
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({
            "UserPoolId": pool, "TaxonomistsGroupName": "taxonomists", "ReviewersGroupName": "senior-reviewers",
            "LabelStudioUrl": "https://labels.example.org", "LabelStudioAccountsFunctionName": name}))
        code, out, err = _cli("taxonomists", "add", email, "--name", "Deployed Person", "--outputs", str(outputs),
                              "--region", REGION)
        assert code == 0, err
        assert [n for n, _ in h.invocations] == [name]
    password = re.search(r"one-time password:\s+(\S+)", out)
    assert password, out
    assert "https://labels.example.org" in out
    assert signs_in(label_studio.url, email, password.group(1))
