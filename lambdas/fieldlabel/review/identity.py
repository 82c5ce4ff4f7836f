"""Who answered: map Ground Truth ``workerId``s to a key that follows the person across jobs.

AWS documents ``workerId`` as unique to a worker but not that it stays the same across labeling jobs. For private
(Cognito) workforces the worker-response files Ground Truth writes under the job's output prefix carry the Cognito
identity of each answer::

    <S3OutputPath>/<job>/annotations/worker-response/iteration-<n>/<datasetObjectId>/<timestamp>.json
    {"answers": [{"workerId": "private.us-east-1.abc...", "answerContent": {...},
                  "workerMetadata": {"identityData": {"identityProviderType": "Cognito",
                                                      "issuer": "https://cognito-idp...", "sub": "<uuid>"}}}]}

Reliability is therefore keyed by ``sub:<sub>``; a worker whose responses carry no identity (public or vendor
workforces, an unreadable file) keeps the plain ``workerId`` as key. The mapping is resolved per job with a bounded
number of reads: one object a worker answered is enough to learn that worker's ``sub``, so the function reads at most
``max_objects_per_worker`` response folders per unresolved worker, not one per photo. See docs/review.md,
"Reliability".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fieldlabel.review.s3io import split_s3_uri

SUB_PREFIX = "sub:"
_ITERATION = re.compile(r"/iteration-(\d+)/")
_MAX_RESPONSE_BYTES = 5 * 1024 * 1024


def reviewer_key(worker_id: str, sub: str | None) -> str:
    """The reviewers-table key of one worker: ``sub:<sub>`` when the Cognito identity is known, else the workerId."""
    return f"{SUB_PREFIX}{sub}" if sub else worker_id


def worker_response_prefix(payload_uri: str) -> tuple[str, str, str | None] | None:
    """``(bucket, "<job output>/annotations/worker-response/", "iteration-<n>/" or None)`` for a payload URI.

    The post-annotation payload lives under ``<job output>/annotations/consolidated-annotation/...``; the worker
    responses sit beside it. None when the URI has no ``/annotations/`` segment (then no identity can be read).
    """
    bucket, key = split_s3_uri(payload_uri)
    cut = key.rfind("/annotations/")
    if cut < 0:
        return None
    base = key[: cut + len("/annotations/")] + "worker-response/"
    m = _ITERATION.search(key[cut:])
    return bucket, base, f"iteration-{m.group(1)}/" if m else None


def subs_in_response(doc: Any) -> dict[str, str]:
    """workerId -> Cognito sub for every answer of one worker-response document that carries both."""
    out: dict[str, str] = {}
    answers = doc.get("answers") if isinstance(doc, dict) else None
    for ans in answers if isinstance(answers, list) else []:
        if not isinstance(ans, dict) or not isinstance(ans.get("workerId"), str):
            continue
        meta = ans.get("workerMetadata")
        ident = meta.get("identityData") if isinstance(meta, dict) else None
        sub = ident.get("sub") if isinstance(ident, dict) else None
        if isinstance(sub, str) and sub:
            out[ans["workerId"]] = sub
    return out


@dataclass
class IdentityResolution:
    """Result of :func:`resolve_identities`."""

    keys: dict[str, str]  # workerId -> reviewer key
    from_sub: int = 0  # workers keyed by their Cognito sub
    fallback: int = 0  # workers keyed by workerId (no identity found)
    reads: int = 0  # worker-response objects read
    errors: list[str] = field(default_factory=list)


class IdentityCache:
    """workerId -> sub learned per job, kept for the container's life (Ground Truth calls the function many times
    per job; a job's mapping never changes)."""

    _subs: dict[str, dict[str, str]] = {}

    @classmethod
    def get(cls, job: str) -> dict[str, str]:
        """The mapping learned so far for ``job`` (created empty)."""
        if job not in cls._subs:
            if len(cls._subs) >= 8:  # a container serves one job at a time; keep a few, never grow without bound
                cls._subs.pop(next(iter(cls._subs)))
            cls._subs[job] = {}
        return cls._subs[job]

    @classmethod
    def clear(cls) -> None:
        """Forget everything (tests)."""
        cls._subs.clear()


def resolve_identities(
    s3: Any,
    *,
    job_name: str,
    payload_uri: str,
    answered: Mapping[str, Iterable[str]],
    max_objects_per_worker: int = 3,
) -> IdentityResolution:
    """Map every workerId of this payload to its reviewer key.

    Args:
        s3: boto3 S3 client (ListObjectsV2 and GetObject under the job's output prefix).
        job_name: the labeling job (cache key).
        payload_uri: the post-annotation payload URI (locates the worker responses).
        answered: workerId -> datasetObjectIds that worker answered in this payload.
        max_objects_per_worker: response folders tried per worker before falling back to the workerId.

    Returns:
        IdentityResolution; read errors are recorded, never raised (reliability then falls back to the workerId).
    """
    known = IdentityCache.get(job_name)
    res = IdentityResolution(keys={})
    where = worker_response_prefix(payload_uri)
    tried: dict[str, int] = {}
    done_objects: set[str] = set()
    for worker in sorted(answered):
        if worker in known or where is None:
            continue
        for oid in sorted(set(answered[worker])):
            if worker in known or tried.get(worker, 0) >= max_objects_per_worker:
                break
            if oid in done_objects:
                continue
            done_objects.add(oid)
            tried[worker] = tried.get(worker, 0) + 1
            known.update(_read_object_responses(s3, where, oid, res))
    for worker in answered:
        sub = known.get(worker)
        res.keys[worker] = reviewer_key(worker, sub)
        if sub:
            res.from_sub += 1
        else:
            res.fallback += 1
    return res


def _read_object_responses(
    s3: Any, where: tuple[str, str, str | None], object_id: str, res: IdentityResolution
) -> dict[str, str]:
    bucket, base, iteration = where
    prefixes = [f"{base}{iteration}{object_id}/"] if iteration else []
    found: dict[str, str] = {}
    try:
        if not prefixes:
            # No iteration in the payload URI: look under every iteration folder.
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=base, Delimiter="/")
            prefixes = [f"{p['Prefix']}{object_id}/" for p in listing.get("CommonPrefixes", [])]
        for prefix in prefixes:
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
            for obj in listing.get("Contents", []):
                if not obj["Key"].endswith(".json") or obj.get("Size", 0) > _MAX_RESPONSE_BYTES:
                    continue
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                res.reads += 1
                found.update(subs_in_response(json.loads(body)))
    except Exception as exc:  # noqa: BLE001 - identity is an improvement; without it the workerId is the key
        res.errors.append(f"{object_id}: {type(exc).__name__}: {str(exc)[:200]}")
    return found
