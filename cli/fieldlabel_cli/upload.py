"""Uploading a folder of field photos (and their sidecars) to the intake bucket, resumably.

The work splits in two so that ``--dry-run`` can stop half-way without touching AWS:

* :func:`plan_upload` (local only): walk the folder, hash and validate every file, pair sidecars with photos,
  recognise duplicates (same SHA-256 as another photo in the folder) and files the state file says are already up.
* :func:`execute_upload`: HeadObject each remaining file (size + ``x-amz-meta-sha256`` identical means it is already
  there), then upload in parallel. Sidecars go first so intake finds a photo's metadata when the photo's event
  arrives (intake copes with either order; this way the photo's first registration is complete). Each success is
  recorded in the folder's state file, so an interrupted run resumes where it stopped.

S3 layout (docs/contracts.md): ``uploads/<prefix>/<relative path>``, sidecars next to their photo.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from fieldlabel.common.clock import utc_now

from fieldlabel_cli.errors import UsageError, error_code, translate_aws_error
from fieldlabel_cli.progress import Progress
from fieldlabel_cli.validate import (
    DEFAULT_LIMITS,
    FOLDER_SIDECAR,
    PHOTO_EXTENSIONS,
    SIDECAR_ORPHAN,
    UNREADABLE,
    UNSUPPORTED_TYPE,
    Limits,
    PhotoVerdict,
    classify_photo_bytes,
    validate_sidecar_bytes,
)

STATE_FILE = ".fieldlabel-upload.json"
UPLOADS_ROOT = "uploads"
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256: multipart ChecksumSHA256 is composite, not the file's hash
MULTIPART_THRESHOLD = 8 * 1024 * 1024

# Errors that say every further request will fail the same way: stop instead of failing each file.
_FATAL_CODES = {
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled", "AccountProblem",
}

PhotoClassifier = Callable[[bytes], PhotoVerdict]


@dataclass
class FileEntry:
    """One file of the folder, with what the plan learnt about it."""

    rel: str  # POSIX relative path inside the folder
    path: Path
    size: int
    mtime_ns: int
    kind: str  # "photo", "sidecar", "folder-sidecar", "other"
    key: str = ""
    sha256: str | None = None


@dataclass
class Rejection:
    """A file that will not be uploaded, and why (``reason`` is a stable code)."""

    rel: str
    reason: str
    detail: str = ""


@dataclass
class UploadPlan:
    """What :func:`execute_upload` has to do, plus everything already decided locally."""

    folder: Path
    prefix: str
    to_upload: list[FileEntry] = field(default_factory=list)
    skipped: list[FileEntry] = field(default_factory=list)
    duplicates: list[tuple[FileEntry, str]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class UploadSummary:
    """Counts and details printed at the end (and emitted as JSON with ``--json``)."""

    bucket: str | None
    prefix: str
    dry_run: bool
    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    would_upload: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with counts first."""
        data = asdict(self)
        data["counts"] = {
            "uploaded": len(self.uploaded),
            "would_upload": len(self.would_upload),
            "skipped": len(self.skipped),
            "duplicates": len(self.duplicates),
            "rejected": len(self.rejected),
            "failed": len(self.failed),
        }
        return data

    def render(self) -> str:
        """Human summary."""
        lines: list[str] = []
        where = f"s3://{self.bucket}/{key_prefix(self.prefix)}" if self.bucket else key_prefix(self.prefix)
        if self.dry_run:
            lines.append(f"Dry run: nothing was sent. {len(self.would_upload)} file(s) would be uploaded to {where}")
        else:
            lines.append(f"Uploaded {len(self.uploaded)} file(s) ({self.uploaded_bytes} bytes) to {where}")
        lines.append(f"  skipped (already there): {len(self.skipped)}")
        lines.append(f"  duplicates (same SHA-256 as another file here): {len(self.duplicates)}")
        for d in self.duplicates:
            lines.append(f"    {d['path']}  = {d['duplicate_of']}")
        lines.append(f"  rejected: {len(self.rejected)}")
        for r in self.rejected:
            lines.append(f"    {r['path']}: {r['reason']}" + (f" ({r['detail']})" if r.get("detail") else ""))
        if self.warnings:
            lines.append(f"  warnings: {len(self.warnings)}")
            for w in self.warnings:
                lines.append(f"    {w['path']}: {w['message']}")
        if self.failed:
            lines.append(f"  FAILED: {len(self.failed)} (rerun the same command to retry them)")
            for f in self.failed:
                lines.append(f"    {f['path']}: {f['error']}")
        return "\n".join(lines)


def normalise_prefix(prefix: str | None) -> str:
    """Check and tidy the ``--prefix`` option: slash-separated segments, no ``..``, no leading/trailing slash.

    Raises:
        UsageError: the prefix is not a safe relative key prefix.
    """
    if not prefix:
        return ""
    parts = [p for p in prefix.replace("\\", "/").strip("/").split("/")]
    if any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"--prefix {prefix!r}: use plain folder names separated by '/', without '..' or '//'")
    return "/".join(parts)


def key_prefix(prefix: str) -> str:
    """``uploads/`` or ``uploads/<prefix>/``."""
    return f"{UPLOADS_ROOT}/{prefix}/" if prefix else f"{UPLOADS_ROOT}/"


def _now() -> str:
    return utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")


class UploadState:
    """The folder's resume file: what was uploaded where, keyed by relative path.

    An entry counts only while the file is unchanged (same size and mtime) and the target (bucket, key) is the same;
    it also caches the file's SHA-256 so a rerun need not re-read unchanged files. Writes are atomic (temp + rename)
    and thread-safe.
    """

    VERSION = 1

    def __init__(self, path: Path, *, flush_every: int = 20, flush_seconds: float = 2.0) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._dirty = 0
        self._last_flush = time.monotonic()
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self.load_warning: str | None = None
        self.save_error: str | None = None
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == self.VERSION and isinstance(data.get("files"), dict):
                    self._entries = data["files"]
            except (OSError, ValueError, AttributeError):
                self.load_warning = f"ignoring unreadable state file {path.name}; every file will be checked again"

    def lookup(self, entry: FileEntry, bucket: str | None) -> dict[str, Any] | None:
        """The recorded entry for ``entry`` if the file is unchanged (and, with a bucket, uploaded to it)."""
        with self._lock:
            rec = self._entries.get(entry.rel)
        if not rec or rec.get("size") != entry.size or rec.get("mtime_ns") != entry.mtime_ns:
            return None
        if bucket is not None and (rec.get("bucket") != bucket or rec.get("key") != entry.key):
            return None
        return rec

    def record(self, entry: FileEntry, bucket: str) -> None:
        """Remember that ``entry`` is in ``bucket``; flushes every few records or seconds."""
        with self._lock:
            self._entries[entry.rel] = {
                "bucket": bucket, "key": entry.key, "size": entry.size, "mtime_ns": entry.mtime_ns,
                "sha256": entry.sha256, "uploaded_at": _now(),
            }
            self._dirty += 1
            due = self._dirty >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_seconds
        if due:
            self.save()

    def save(self) -> None:
        """Write the file atomically (no-op when nothing changed)."""
        with self._lock:
            if not self._dirty:
                return
            payload = json.dumps({"version": self.VERSION, "files": self._entries}, indent=1, sort_keys=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                tmp.write_text(payload, encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError as exc:
                # A read-only card or folder must not stop the upload: resuming then relies on HeadObject.
                self.save_error = f"cannot write {self.path.name} ({exc.strerror or exc}); a rerun will ask S3 instead"
                self._dirty = 0
                return
            self._dirty = 0
            self._last_flush = time.monotonic()


def scan_folder(folder: Path) -> list[FileEntry]:
    """Every regular, non-hidden file under ``folder`` (sorted, so duplicates resolve the same way every run)."""
    entries: list[FileEntry] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue  # the state file, .DS_Store, editor droppings
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                continue
            if not path.is_file():
                continue
            rel = path.relative_to(folder).as_posix()
            suffix = path.suffix.lower()
            if name == FOLDER_SIDECAR:
                kind = "folder-sidecar"
            elif suffix == ".json":
                kind = "sidecar"
            elif suffix in PHOTO_EXTENSIONS:
                kind = "photo"
            else:
                kind = "other"
            entries.append(FileEntry(rel=rel, path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, kind=kind))
    return sorted(entries, key=lambda e: e.rel)


def _sha256_and_bytes(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data


def plan_upload(
    folder: Path,
    *,
    prefix: str = "",
    limits: Limits = DEFAULT_LIMITS,
    state: UploadState | None = None,
    bucket: str | None = None,
    workers: int = 4,
    classify: PhotoClassifier | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> UploadPlan:
    """Decide, locally, what to upload, skip or reject. Sends nothing.

    Args:
        folder: the folder of photos.
        prefix: normalised key prefix below ``uploads/``.
        limits: photo size limits.
        state: the folder's resume state (files it lists as uploaded and unchanged are skipped without reading).
        bucket: target bucket, when known, so state entries for another bucket are not trusted.
        workers: threads for hashing/decoding (Pillow releases the GIL while decoding).
        classify: photo classifier; defaults to :func:`classify_photo_bytes` with ``limits``.
        progress: called with the number of files to check; the Progress it returns counts them (checking a
            card of camera photos takes minutes: one full decode each).

    Raises:
        UsageError: ``folder`` is not a directory.
    """
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    classify = classify or (lambda data: classify_photo_bytes(data, limits=limits))
    plan = UploadPlan(folder=folder, prefix=prefix)
    if state is not None and state.load_warning:
        plan.warnings.append((STATE_FILE, state.load_warning))
    entries = scan_folder(folder)
    base = key_prefix(prefix)
    for e in entries:
        e.key = base + e.rel

    verdicts: dict[str, Any] = {}
    pending: list[FileEntry] = []
    for e in entries:
        if e.kind == "other":
            plan.rejected.append(Rejection(e.rel, UNSUPPORTED_TYPE, "not a photo or a .json sidecar"))
            continue
        rec = state.lookup(e, bucket) if state is not None else None
        if rec and rec.get("sha256"):
            e.sha256 = rec["sha256"]
            verdicts[e.rel] = "state"
            continue
        pending.append(e)

    def check(e: FileEntry) -> tuple[FileEntry, Any]:
        try:
            digest, data = _sha256_and_bytes(e.path)
        except OSError as exc:
            return e, exc
        e.sha256 = digest
        return e, (classify(data) if e.kind == "photo" else validate_sidecar_bytes(data))

    bar = progress(len(pending)) if progress is not None else None
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for e, verdict in pool.map(check, pending):
            verdicts[e.rel] = verdict
            if bar is not None:
                bar.advance(e.size)
    finally:
        # On Ctrl-C (wherever it lands, even while the checks are still being queued) the queued checks are
        # cancelled rather than run, so the exit is quick; on success nothing is left to cancel.
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()

    photo_stems: set[tuple[str, str]] = set()
    rejected_stems: set[tuple[str, str]] = set()
    duplicate_stems: dict[tuple[str, str], str] = {}
    seen_hashes: dict[str, str] = {}
    for e in entries:
        if e.kind != "photo":
            continue
        stem = (str(PurePosixPath(e.rel).parent), PurePosixPath(e.rel).stem)
        verdict = verdicts[e.rel]
        if isinstance(verdict, OSError):
            plan.rejected.append(Rejection(e.rel, UNREADABLE, str(verdict)))
            rejected_stems.add(stem)
            continue
        if verdict != "state" and not verdict.ok:
            plan.rejected.append(Rejection(e.rel, verdict.reason, verdict.detail))
            rejected_stems.add(stem)
            continue
        digest = e.sha256 or ""
        if digest in seen_hashes:
            plan.duplicates.append((e, seen_hashes[digest]))
            duplicate_stems[stem] = seen_hashes[digest]
            continue
        photo_stems.add(stem)
        seen_hashes[digest] = e.rel
        (plan.skipped if verdict == "state" else plan.to_upload).append(e)

    sidecars: list[FileEntry] = []
    for e in entries:
        if e.kind not in ("sidecar", "folder-sidecar"):
            continue
        verdict = verdicts[e.rel]
        if e.kind == "sidecar":
            stem = (str(PurePosixPath(e.rel).parent), PurePosixPath(e.rel).stem)
            if stem not in photo_stems:
                if stem in duplicate_stems:
                    why = f"its photo is a duplicate of {duplicate_stems[stem]} and is not uploaded"
                elif stem in rejected_stems:
                    why = "its photo was rejected"
                else:
                    why = "no photo with the same name next to it"
                plan.rejected.append(Rejection(e.rel, SIDECAR_ORPHAN, why))
                continue
        if isinstance(verdict, OSError):
            plan.rejected.append(Rejection(e.rel, UNREADABLE, str(verdict)))
            continue
        if verdict == "state":
            plan.skipped.append(e)
            continue
        for w in verdict.warnings:
            plan.warnings.append((e.rel, w))
        if not verdict.ok:
            plan.rejected.append(Rejection(e.rel, verdict.reason, "; ".join(verdict.errors)))
            continue
        sidecars.append(e)
    # Sidecars first, so a photo is registered with its metadata at once (intake also applies late sidecars).
    plan.to_upload = sidecars + plan.to_upload
    plan.rejected.sort(key=lambda r: r.rel)
    return plan


def _summary_from_plan(plan: UploadPlan, bucket: str | None, dry_run: bool) -> UploadSummary:
    return UploadSummary(
        bucket=bucket,
        prefix=plan.prefix,
        dry_run=dry_run,
        skipped=[e.rel for e in plan.skipped],
        duplicates=[{"path": e.rel, "duplicate_of": orig} for e, orig in plan.duplicates],
        rejected=[{"path": r.rel, "reason": r.reason, "detail": r.detail} for r in plan.rejected],
        warnings=[{"path": p, "message": m} for p, m in plan.warnings],
    )


def dry_run_summary(plan: UploadPlan, bucket: str | None = None) -> UploadSummary:
    """The summary of a plan that is not executed."""
    summary = _summary_from_plan(plan, bucket, dry_run=True)
    summary.would_upload = [e.rel for e in plan.to_upload]
    return summary


def check_bucket(s3: Any, bucket: str) -> None:
    """Fail early, with one clear line, when the bucket does not exist or the credentials are unusable.

    A 403 on HeadBucket is tolerated: an uploader role may be allowed PutObject without ListBucket, and PutObject
    will say soon enough whether it is allowed.
    """
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("403", "AccessDenied", "Forbidden"):
            return
        raise translate_aws_error(exc, what=f"bucket {bucket!r}") from exc
    except BotoCoreError as exc:
        raise translate_aws_error(exc, what=f"bucket {bucket!r}") from exc


def _already_there(s3: Any, bucket: str, e: FileEntry) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=e.key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied"):
            return False  # absent, or we may not read it back: upload and let PutObject decide
        raise
    return head.get("ContentLength") == e.size and head.get("Metadata", {}).get(SHA256_METADATA) == e.sha256


def _content_type(e: FileEntry) -> str:
    if e.kind != "photo":
        return "application/json"
    guessed, _ = mimetypes.guess_type(e.path.name)
    fallback = {".heic": "image/heic", ".heif": "image/heif"}.get(e.path.suffix.lower(), "application/octet-stream")
    return guessed or fallback


def _unwrap(exc: BaseException) -> BaseException:
    """The ClientError behind boto3's S3UploadFailedError (which keeps only its text), so its code can be read."""
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError | BotoCoreError):
        return exc.__context__
    return exc


def _is_fatal(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return error_code(exc) in _FATAL_CODES
    return isinstance(exc, BotoCoreError)  # no credentials, no network, no region: the same for every file


def execute_upload(
    plan: UploadPlan,
    *,
    s3: Any,
    bucket: str,
    state: UploadState,
    workers: int = 8,
    progress: Progress | None = None,
    transfer_config: TransferConfig | None = None,
) -> UploadSummary:
    """Upload what the plan says, sidecars first, in parallel; record each success in ``state``.

    Raises:
        CliError: a failure that would hit every file (missing bucket, no credentials, no network). The state file
            is saved first, so a rerun resumes.
        KeyboardInterrupt: re-raised after saving the state file.
    """
    # Parallelism is across files (our pool); each file's transfer runs in its worker thread. With s3transfer's own
    # threads, an exception that is not an Exception (KeyboardInterrupt) raised in them is lost and the upload
    # reported as done; in the caller's thread it propagates, so an interrupted file is never recorded.
    config = transfer_config or TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD, use_threads=False
    )
    summary = _summary_from_plan(plan, bucket, dry_run=False)
    lock = threading.Lock()
    stop = threading.Event()

    def upload_one(e: FileEntry) -> tuple[str, FileEntry]:
        if stop.is_set():
            return "cancelled", e
        try:
            return _upload_one(e)
        except BaseException as exc:
            # Stop the other workers from starting new files: after Ctrl-C or a bucket-wide error, every further
            # request is wasted (and uploads that are never recorded would be sent again on resume anyway).
            if not isinstance(exc, Exception) or _is_fatal(_unwrap(exc)):
                stop.set()
            raise

    def _upload_one(e: FileEntry) -> tuple[str, FileEntry]:
        if _already_there(s3, bucket, e):
            state.record(e, bucket)
            return "skipped", e
        extra = {
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {SHA256_METADATA: e.sha256 or ""},
            "ContentType": _content_type(e),
        }
        s3.upload_file(str(e.path), bucket, e.key, ExtraArgs=extra, Config=config)
        state.record(e, bucket)
        return "uploaded", e

    def run_phase(entries: Iterable[FileEntry]) -> None:
        pool = cf.ThreadPoolExecutor(max_workers=max(1, workers))
        futures = {pool.submit(upload_one, e): e for e in entries}
        try:
            for fut in cf.as_completed(futures):
                e = futures[fut]
                try:
                    outcome, _ = fut.result()
                except (ClientError, BotoCoreError, S3UploadFailedError) as raw:
                    exc = _unwrap(raw)
                    if _is_fatal(exc):
                        raise translate_aws_error(exc, what=f"bucket {bucket!r}") from exc
                    with lock:
                        summary.failed.append({"path": e.rel, "error": translate_aws_error(exc).message})
                    if progress is not None:
                        progress.advance(0)
                    continue
                except OSError as exc:  # the file vanished or became unreadable mid-run
                    with lock:
                        summary.failed.append({"path": e.rel, "error": str(exc)})
                    if progress is not None:
                        progress.advance(0)
                    continue
                if outcome == "cancelled":
                    continue
                with lock:
                    if outcome == "uploaded":
                        summary.uploaded.append(e.rel)
                        summary.uploaded_bytes += e.size
                    else:
                        summary.skipped.append(e.rel)
                if progress is not None:
                    progress.advance(e.size)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    sidecars = [e for e in plan.to_upload if e.kind != "photo"]
    photos = [e for e in plan.to_upload if e.kind == "photo"]
    try:
        run_phase(sidecars)
        run_phase(photos)
    finally:
        state.save()
        if progress is not None:
            progress.close()
    if state.save_error:
        summary.warnings.append({"path": STATE_FILE, "message": state.save_error})
    summary.uploaded.sort()
    summary.skipped.sort()
    summary.failed.sort(key=lambda f: f["path"])
    return summary



__all__ = [
    "STATE_FILE",
    "FileEntry",
    "UploadPlan",
    "UploadState",
    "UploadSummary",
    "check_bucket",
    "dry_run_summary",
    "execute_upload",
    "normalise_prefix",
    "plan_upload",
]
