"""The executed-IAM check itself: it sees what the pipeline does, and it fails when a grant the code needs is gone.

A real workflow run is recorded once and evaluated twice: against the templates as synthesized (nothing denied)
and against a copy whose publish role lost ``s3:ListBucket`` (publish's read of the missing ``datasets/LATEST`` must
then be reported, naming the caller, the action and the resource).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from localrun.harness import WorkflowHarness
from localrun.iamcheck.check import IamCheck
from localrun.iamcheck.evaluate import as_list

pytestmark = pytest.mark.slow

BATCH = "b20261126t063000z-1a2b3c4d"


def _without_publish_list_bucket(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    copied = copy.deepcopy(templates)
    removed = 0
    for res in copied["pipeline"]["Resources"].values():
        roles = [r.get("Ref", "") for r in res.get("Properties", {}).get("Roles", [])]
        if res["Type"] != "AWS::IAM::Policy" or not any(r.startswith("LabelingWorkflowPublishDataset") for r in roles):
            continue
        doc = res["Properties"]["PolicyDocument"]
        kept = [s for s in doc["Statement"] if "s3:ListBucket" not in as_list(s["Action"])]
        removed += len(doc["Statement"]) - len(kept)
        doc["Statement"] = kept
    assert removed == 1, "publish's policy should hold exactly one s3:ListBucket statement"
    return copied


def test_the_check_names_caller_action_and_resource_when_publish_loses_list_bucket(
    templates: dict[str, dict[str, Any]],
) -> None:
    account = WorkflowHarness(templates).account
    check = IamCheck(templates, account)
    with check.recorder() as rec, WorkflowHarness(templates) as h:
        h.seed_batch(BATCH, 12, kind="human_only")
        run = h.run_batch(BATCH, photo_count=12, kind="human_only")
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        artifacts = h.artifacts_bucket

    # Every part of the run was attributed: the functions, the state machine's integrations, Ground Truth's role.
    callers = {c.principal.label for c in rec.calls if c.principal is not None}
    assert {"state machine", "Ground Truth execution role"} <= callers
    assert any(str(c).startswith("function LabelingWorkflowPublishDataset") for c in callers)

    # As synthesized, the deployed IAM allows everything the run did.
    ok = check.evaluate(rec)
    assert not ok.denied, ok.message()
    assert ok.checked > 50

    # Without publish's s3:ListBucket, the run's read of the missing datasets/LATEST would be a 403 on AWS.
    stripped = IamCheck(_without_publish_list_bucket(templates), account).evaluate(rec)
    (denied,) = stripped.denied
    a = denied.access
    assert (a.action, a.resource) == ("s3:ListBucket", f"arn:aws:s3:::{artifacts}")
    assert a.principal.label and a.principal.label.startswith("function LabelingWorkflowPublishDataset")
    message = stripped.message()
    for expected in ("LabelingWorkflowPublishDatasetServiceRole", "s3:ListBucket", f"arn:aws:s3:::{artifacts}",
                     "datasets/LATEST", "404", '"Action": "s3:ListBucket"'):
        assert expected in message, (expected, message)
