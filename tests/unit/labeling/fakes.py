"""A small SageMaker labeling-job fake for the failure-path tests (moto has no labeling jobs).

Error codes and shapes follow the SageMaker API: DescribeLabelingJob of an unknown name is ``ResourceNotFound``;
StopLabelingJob of a job that is no longer running is refused with ``ValidationException``. The request shapes the
Ground Truth backend sends are checked against botocore's model in test_labeling_lifecycle.py with a Stubber.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def _error(code: str, op: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


class FakeLabelingJobs:
    """``{job name: status}``; stopping a running job makes it ``Stopping``."""

    def __init__(self, jobs: dict[str, str] | None = None, labeled: dict[str, int] | None = None) -> None:
        self.jobs = dict(jobs or {})
        self.labeled = dict(labeled or {})  # objects a job has labeled so far (LabelCounters.TotalLabeled)
        self.stopped: list[str] = []

    def describe_labeling_job(self, *, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if LabelingJobName not in self.jobs:
            raise _error("ResourceNotFound", "DescribeLabelingJob", f"Could not find labeling job {LabelingJobName}")
        n = self.labeled.get(LabelingJobName, 0)
        return {"LabelingJobName": LabelingJobName, "LabelingJobStatus": self.jobs[LabelingJobName],
                "LabelCounters": {"TotalLabeled": n, "HumanLabeled": n, "MachineLabeled": 0,
                                  "FailedNonRetryableError": 0, "Unlabeled": 0}}

    def stop_labeling_job(self, *, LabelingJobName: str) -> dict[str, Any]:  # noqa: N803
        status = self.jobs.get(LabelingJobName)
        if status is None:
            raise _error("ResourceNotFound", "StopLabelingJob", f"Could not find labeling job {LabelingJobName}")
        if status not in ("Initializing", "InProgress"):
            raise _error("ValidationException", "StopLabelingJob", f"Job is {status}")
        self.jobs[LabelingJobName] = "Stopping"
        self.stopped.append(LabelingJobName)
        return {}
