"""Finishing a Label Studio batch: is it done, export + consolidate + output manifest, or withdraw it.

``finish_batch`` turns a batch's annotations into exactly what a finished Ground Truth custom job leaves behind: an
output manifest whose lines are the input lines plus ``<attr>`` (the consolidation the post-annotation Lambda
computes, :func:`fieldlabel.review.postannotation.consolidate_objects`) and ``<attr>-metadata``, the answer log the
review's reliability update reads, and a DescribeLabelingJob-shaped description. So ``process_output`` and
``apply_review`` run unchanged on either backend. See docs/label-studio.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fieldlabel.common.clock import utc_now
from fieldlabel.common.s3uri import parse_s3_uri
from fieldlabel.labeling.label_studio.backend import BACKEND_NAME, LABEL_ATTRIBUTE
from fieldlabel.labeling.label_studio.client import LabelStudioClient
from fieldlabel.labeling.label_studio.labeling_config import answer_label
from fieldlabel.review.consolidation import ConsolidationConfig
from fieldlabel.review.payload import ParsedObject, label_under_review_from_line, review_content
from fieldlabel.review.postannotation import consolidate_objects, write_answer_log

# The reviewers-table key of a Label Studio account. Ground Truth answers are keyed by the Cognito ``sub``; Label
# Studio knows the person by the e-mail they sign in with (the one `fieldlabel taxonomists add` registered).
EMAIL_KEY_PREFIX = "email:"


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch is: tasks fully answered (``done``) of the batch's tasks (``total``)."""

    done: int
    total: int
    expected: int
    complete: bool

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (logs, state output)."""
        return {"done": self.done, "total": self.total, "expected": self.expected, "complete": self.complete}


def _answered(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The task's submitted (not skipped) annotations."""
    return [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]


def task_done(task: Mapping[str, Any], answers_per_photo: int | None = None) -> bool:
    """Label Studio's own verdict (``is_labeled``: the project's overlap is reached), or the count when given."""
    if answers_per_photo is not None:
        return len(_answered(task)) >= answers_per_photo
    return bool(task.get("is_labeled"))


def batch_status(
    client: LabelStudioClient, project_id: int, batch_id: str, expected: int, *,
    tasks: Sequence[Mapping[str, Any]] | None = None,
) -> BatchProgress:
    """Whether every task of the batch has its answers.

    ``expected`` is the number of photos submitted; a batch with fewer tasks than that (an import still missing,
    or a stop that withdrew the unanswered ones) is not complete, so only a submission that fully landed completes.
    Without ``tasks`` the server counts (two one-row requests, ~0.1 s for 1,000 tasks where reading them takes ~9 s
    on the local server): the webhook and the poll run this often, the full read only once, in ``finish_batch``.
    """
    if tasks is not None:
        total = len(tasks)
        done = sum(1 for t in tasks if task_done(t))
    else:
        total = client.count_batch_tasks(project_id, batch_id)
        done = total - client.count_batch_tasks(project_id, batch_id, unfinished=True) if total else 0
    return BatchProgress(done=done, total=total, expected=expected,
                         complete=total > 0 and total >= expected and done == total)


def user_keys(client: LabelStudioClient) -> dict[int, str]:
    """Label Studio user id -> reviewers-table key ``email:<address>`` for every member of the organisation."""
    users = client.request("GET", "/api/users/") or []
    out: dict[int, str] = {}
    for user in users if isinstance(users, list) else users.get("results", []):
        if isinstance(user, dict) and isinstance(user.get("id"), int) and user.get("email"):
            out[user["id"]] = f"{EMAIL_KEY_PREFIX}{str(user['email']).strip().lower()}"
    return out


def _annotator(annotation: Mapping[str, Any]) -> int | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id")
    return who if isinstance(who, int) else None


def parse_task(
    task: Mapping[str, Any], *, valid_labels: set[str], keys: Mapping[int, str]
) -> ParsedObject:
    """One task's annotations as the consolidation's input: ``(reviewer key, label)`` per valid answer.

    Skipped answers are counted by reason as in the post-annotation Lambda: ``no_choice`` (nothing, or more than
    one entry, picked), ``unknown_label`` (a label outside the taxonomy, e.g. after a hand edit of the config),
    ``worker_missing`` and ``duplicate_worker`` (only a person's first answer counts).
    """
    data = task.get("data") or {}
    raw_line = data.get("line")
    line: dict[str, Any] = raw_line if isinstance(raw_line, dict) else {}
    parsed = ParsedObject(
        dataset_object_id=str(task.get("id")),
        source_ref=line.get("source-ref") if isinstance(line.get("source-ref"), str) else None,
        photo_id=str(data.get("photo_id")) if data.get("photo_id") else None,
        label_under_review=label_under_review_from_line(line),
    )
    seen: set[str] = set()
    for annotation in sorted(_answered(task), key=lambda a: int(a.get("id") or 0)):
        user = _annotator(annotation)
        if user is None:
            parsed.skip("worker_missing")
            continue
        key = keys.get(user, f"ls-user:{user}")
        label = answer_label(annotation.get("result"))
        if label is None:
            parsed.skip("no_choice")
        elif label not in valid_labels:
            parsed.skip("unknown_label")
        elif key in seen:
            parsed.skip("duplicate_worker")
        else:
            seen.add(key)
            parsed.answers.append((key, label))
    return parsed


def finish_batch(
    client: LabelStudioClient,
    s3: Any,
    *,
    project_id: int,
    batch_id: str,
    job_name: str,
    output_uri: str,
    labels: Sequence[str],
    unknown_label: str,
    label_attribute: str = LABEL_ATTRIBUTE,
    dynamodb: Any = None,
    reviewers_table: str | None = None,
    consolidation: ConsolidationConfig | None = None,
    artifacts_bucket: str | None = None,
    kms_key_id: str | None = None,
) -> dict[str, Any]:
    """Export a batch's annotations, consolidate them, write the output manifest; returns its job description.

    Args:
        client: the API client.
        s3: boto3 S3 client (writes the output manifest and the answer log).
        project_id: the stage's project.
        batch_id: the batch.
        job_name: the batch's job name in the stage (``backend.job_name`` or ``backend.review_job_name``).
        output_uri: where the output manifest goes (``backend.output_uri(job_name)``).
        labels: the taxonomy's labels (the unknown label may be among them).
        unknown_label: the label of "not a tree / cannot tell".
        label_attribute: ``species`` (labeling) or ``species-review`` (review).
        dynamodb, reviewers_table: the stored reviewer reliability that seeds the consolidation (both or neither).
        consolidation: the tunables (the review settings' thresholds).
        artifacts_bucket: where the answer log goes (``review-answers/<job>/``); None writes none.
        kms_key_id: SSE-KMS key of the output manifest (None: the bucket's default encryption).

    Returns:
        ``{"LabelingJobName", "LabelingJobArn": None, "LabelingJobStatus": "Completed", "LabelingJobOutput":
        {"OutputDatasetS3Uri"}, "LabelCounters", "Backend": "label_studio", "ProjectId", "Consolidation"}``.
    """
    tasks = client.tasks_of_batch(project_id, batch_id)
    valid = set(labels) | {unknown_label}
    keys = user_keys(client)
    parsed = [parse_task(t, valid_labels=valid, keys=keys) for t in tasks]
    done = consolidate_objects(parsed, valid_labels=valid, unknown_label=unknown_label, key_of={},
                               dynamodb=dynamodb, reviewers_table=reviewers_table,
                               config=consolidation or ConsolidationConfig())
    result = done.result
    created = utc_now().strftime("%Y-%m-%dT%H:%M:%S.%f")
    lines: list[str] = []
    labeled = 0
    for i, (task, p) in enumerate(zip(tasks, parsed, strict=True)):
        raw_line = (task.get("data") or {}).get("line")
        line: dict[str, Any] = dict(raw_line) if isinstance(raw_line, dict) else {
            "source-ref": p.source_ref, "photo-id": p.photo_id}
        label = done.label(i)
        labeled += label is not None
        line[label_attribute] = review_content(
            label=label, confidence=result.confidence[i], agreement=result.agreement[i],
            needs_adjudication=bool(result.needs_adjudication[i]), answers=int(result.answers[i]), comments=[],
            skipped=sum(p.skipped.values()), reasons=result.reasons(i),
        )
        # Ground Truth's custom-job metadata. The job name is written bare (one of the two forms Ground Truth uses):
        # apply_review, when not told the job, takes it as is to find the answer log under review-answers/<job>/.
        line[f"{label_attribute}-metadata"] = {
            "job_name": job_name, "job-name": job_name,
            "type": "groundTruth/custom", "human-annotated": "yes", "creation_date": created,
            "label-studio": {"project": project_id, "task": task.get("id")},
        }
        lines.append(json.dumps(line, separators=(",", ":"), sort_keys=True))
    bucket, key = parse_s3_uri(output_uri)
    extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
    s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n" if lines else "").encode(),
                  ContentType="application/x-ndjson", **extra)
    answer_log = None
    if artifacts_bucket and parsed:
        # Keyed by the batch, so a finish that runs twice overwrites its own log instead of adding a copy.
        answer_log = write_answer_log(s3, artifacts_bucket, job_name, f"label-studio://{project_id}/{batch_id}",
                                      parsed, {})
    return {
        "LabelingJobName": job_name,
        "LabelingJobArn": None,
        "LabelingJobStatus": "Completed",
        "LabelingJobOutput": {"OutputDatasetS3Uri": output_uri},
        "LabelCounters": {"TotalLabeled": labeled, "HumanLabeled": labeled, "MachineLabeled": 0,
                          "FailedNonRetryableError": len(tasks) - labeled, "Unlabeled": 0},
        "Backend": BACKEND_NAME,
        "ProjectId": project_id,
        "Consolidation": {"model": result.model, "answers": done.answers, "reviewers": len(done.workers),
                          "needs_adjudication": int(result.needs_adjudication.sum()),
                          "skipped": _skipped(parsed), "answer_log_uri": answer_log},
    }


def _skipped(parsed: Sequence[ParsedObject]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parsed:
        for reason, n in p.skipped.items():
            out[reason] = out.get(reason, 0) + n
    return out


def stop_batch(client: LabelStudioClient, project_id: int, batch_id: str) -> str:
    """Take the batch out of the taxonomists' queue; answers already given stay (a later finish exports them).

    Tasks nobody has answered are deleted. A task with some but not all of its answers is kept and marked labeled
    (``is_labeled``), which is what Label Studio's queue skips, so nobody is served a stopped batch's photo again.
    Returns ``"stopped"`` when the batch had tasks, ``"absent"`` when it has none (never submitted, or already
    withdrawn and fully unanswered).
    """
    tasks = client.tasks_of_batch(project_id, batch_id)
    if not tasks:
        return "absent"
    unanswered = [int(t["id"]) for t in tasks if not _answered(t)]
    if unanswered:
        client.delete_tasks(project_id, unanswered)
    for task in tasks:
        if _answered(task) and not task.get("is_labeled"):
            client.request("PATCH", f"/api/tasks/{int(task['id'])}/", body={"is_labeled": True})
    return "stopped"
