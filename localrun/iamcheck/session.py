"""The test session's side of the executed-IAM check: the report of grants no test exercised.

Checks made in a session register here; at the end the report is written (never a failure). Under pytest-xdist
each worker leaves its ledger next to the report and the controller, which runs no test, merges them. The hooks
are wired in tests/conftest.py (the conftest the xdist controller loads too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing the check pulls in boto3 and the harness: only sessions that ran it pay for that
    from localrun.iamcheck.check import IamCheck

REPORT = Path(os.environ.get("IAM_UNEXERCISED_REPORT", "build/iam-unexercised.txt"))
CHECKS: list[IamCheck] = []


def _ledgers() -> list[Path]:
    return sorted(REPORT.parent.glob("iam-ledger-*.json"))


def session_start() -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        for stale in _ledgers():  # left by an interrupted run
            stale.unlink()


def session_finish(reporter: Any) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        if CHECKS:
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            merged = [check.ledger() for check in CHECKS]
            (REPORT.parent / f"iam-ledger-{worker}.json").write_text(json.dumps(merged))
        return
    ledgers = [check.ledger() for check in CHECKS]
    for path in _ledgers():
        ledgers += json.loads(path.read_text())
        path.unlink()
    if not ledgers:
        return
    from localrun.iamcheck.check import unexercised

    lines = unexercised(ledgers)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    if reporter is not None:
        reporter.write_line(f"{lines[0]} -> {REPORT}")
