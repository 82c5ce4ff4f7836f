"""Exporting a dataset version to the layouts training code expects.

Reads ``datasets/LATEST`` (or the named version) from the artifacts bucket, in the format the publish step writes
(``fieldlabel.labeling.publish``; docs/dataset-format.md), and writes to a local folder:

* ``dataset.manifest``: the augmented manifest, byte for byte;
* ``dataset.csv``: one row per photo (id, S3 URIs, label, confidence, human/machine, review, field metadata);
* ``species/<label>.txt``: the S3 URIs of each species' photos, one per line;
* ``statistics.json``, ``lineage.json``: as published;
* with ``--download``: ``images/<label>/<file>``, the photos themselves.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError
from fieldlabel.common.s3uri import parse_s3_uri
from fieldlabel.labeling.publish import DATASETS_PREFIX, LATEST_KEY, LINEAGE_NAME, MANIFEST_NAME, STATS_NAME

from fieldlabel_cli.errors import CliError, UsageError, error_code, translate_aws_error

VERSION_RE = re.compile(r"^v[0-9]{6}-b[0-9]{8}t[0-9]{6}z-[0-9a-f]{8}$")
DEFAULT_LABEL_ATTRIBUTE = "species"
# Field metadata columns first in this order (EXIF and sidecar, docs/contracts.md), then any others sorted.
KNOWN_FIELD_COLUMNS = ("site_id", "captured_at", "latitude", "longitude", "collector", "habitat", "specimen_part",
                       "suspected_species", "notes", "camera_make", "camera_model")
BASE_COLUMNS = ("photo_id", "source_ref", "original_ref", "label", "label_index", "confidence", "label_source",
                "human_annotated", "reviewed", "review_decision", "reviewed_label", "review_confidence", "job_name",
                "labeled_at")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe name for a label or photo id (``sha256:ab`` -> ``sha256-ab``)."""
    name = _SAFE.sub("-", text).strip("-.")
    return name or "unnamed"


@dataclass
class DatasetVersion:
    """Where a version lives."""

    bucket: str
    version: str
    prefix: str  # key prefix, ending in /

    def key(self, name: str) -> str:
        return self.prefix + name


def validate_version(text: str) -> str:
    """``LATEST`` or a version name ``v000001-b20261126t063000z-1a2b3c4d``.

    Raises:
        UsageError: anything else.
    """
    if text.upper() == "LATEST":
        return "LATEST"
    value = text.strip().rstrip("/")
    if not VERSION_RE.match(value):
        raise UsageError(f"not a dataset version: {text!r} (expected LATEST or like "
                         "v000001-b20261126t063000z-1a2b3c4d)")
    return value


def _get(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        if error_code(exc) == "NoSuchBucket":
            raise CliError(f"artifacts bucket {bucket!r} does not exist (check --artifacts-bucket, --outputs or "
                           "--stack-prefix)") from exc
        raise translate_aws_error(exc, what=f"s3://{bucket}/{key}") from exc


def recent_versions(s3: Any, bucket: str, limit: int = 5) -> list[str]:
    """The newest version names under ``datasets/`` (for an error message)."""
    try:
        resp = s3.list_objects_v2(Bucket=bucket, Prefix=DATASETS_PREFIX, Delimiter="/")
    except ClientError:
        return []
    names = [p["Prefix"][len(DATASETS_PREFIX):].rstrip("/") for p in resp.get("CommonPrefixes", [])]
    return sorted(names)[-limit:]


def resolve_version(s3: Any, bucket: str, version: str) -> DatasetVersion:
    """Find the version (``LATEST`` follows the pointer) and check that its manifest exists.

    Raises:
        CliError: nothing published yet, or no such version (the message lists the newest ones).
    """
    if version == "LATEST":
        raw = _get(s3, bucket, LATEST_KEY)
        if raw is None:
            raise CliError(f"no dataset has been published yet: s3://{bucket}/{LATEST_KEY} does not exist")
        try:
            pointer = json.loads(raw)
            version = str(pointer["version"])
        except (ValueError, KeyError, TypeError):
            raise CliError(f"s3://{bucket}/{LATEST_KEY} is not a dataset pointer") from None
    dv = DatasetVersion(bucket, version, f"{DATASETS_PREFIX}{version}/")
    try:
        s3.head_object(Bucket=bucket, Key=dv.key(MANIFEST_NAME))
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            if error_code(exc) == "NoSuchBucket":
                raise CliError(f"artifacts bucket {bucket!r} does not exist") from exc
            raise translate_aws_error(exc, what=f"s3://{bucket}/{dv.key(MANIFEST_NAME)}") from exc
        known = recent_versions(s3, bucket)
        raise CliError(f"dataset version {version!r} not found in s3://{bucket}/{DATASETS_PREFIX}"
                       + (f" (newest: {', '.join(known)})" if known else " (no version published)")) from exc
    return dv


def iter_manifest_lines(lines: Iterable[bytes]) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """Each non-empty line of a manifest, raw and parsed (None when not a JSON object)."""
    for raw in lines:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield raw, None
            continue
        yield raw, obj if isinstance(obj, dict) else None


def csv_row(line: dict[str, Any], *, attribute: str, labels: list[str]) -> dict[str, Any]:
    """One CSV row of a manifest line (base columns plus ``field`` metadata)."""
    meta = line.get(f"{attribute}-metadata") or {}
    index = line.get(attribute)
    label = meta.get("class-name")
    if label is None and isinstance(index, int) and 0 <= index < len(labels):
        label = labels[index]
    review = meta.get("review") if isinstance(meta.get("review"), dict) else None
    row = {
        "photo_id": line.get("photo-id"),
        "source_ref": line.get("source-ref"),
        "original_ref": line.get("original-ref"),
        "label": label,
        "label_index": index,
        "confidence": meta.get("confidence"),
        "label_source": meta.get("label-source") or ("human" if meta.get("human-annotated") == "yes" else "machine"),
        "human_annotated": meta.get("human-annotated"),
        "reviewed": "yes" if review else "no",
        "review_decision": (review or {}).get("decision"),
        "reviewed_label": (review or {}).get("reviewed_label"),
        "review_confidence": (review or {}).get("confidence"),
        "job_name": meta.get("job-name"),
        "labeled_at": meta.get("labeled-at"),
    }
    for k, v in (line.get("field") or {}).items():
        row[f"field.{k}"] = json.dumps(v) if isinstance(v, dict | list) else v
    return row


def field_columns(seen: set[str]) -> list[str]:
    """Field metadata columns: the known ones in a fixed order, then the rest sorted."""
    known = [f"field.{k}" for k in KNOWN_FIELD_COLUMNS if f"field.{k}" in seen]
    return known + sorted(seen - set(known))


def _atomic_write(path: Path, write: Callable[[IO[Any]], object], *, binary: bool = False) -> None:
    """Write through ``<name>.part`` and rename, so an interrupted export never leaves a half file."""
    tmp = path.with_name(path.name + ".part")
    if binary:
        with open(tmp, "wb") as fb:
            write(fb)
    else:
        with open(tmp, "w", encoding="utf-8", newline="") as ft:
            write(ft)
    os.replace(tmp, path)


def _write_bytes(data: bytes) -> Callable[[IO[Any]], object]:
    return lambda fh: fh.write(data)


def _write_lines(lines: list[str]) -> Callable[[IO[Any]], object]:
    return lambda fh: fh.write("\n".join(lines) + "\n")


@dataclass
class ExportResult:
    """What :func:`export_version` wrote."""

    version: str
    folder: str
    photos: int = 0
    bad_lines: int = 0
    species: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    downloaded: int = 0
    skipped_existing: int = 0
    download_failed: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_version(s3: Any, dv: DatasetVersion, out: Path, *, download: bool = False, originals: bool = False,
                   workers: int = 8, image_s3: Any = None,
                   progress: Callable[[int], None] | None = None) -> ExportResult:
    """Write the version's layouts under ``out/<version>/`` (see the module docstring).

    Args:
        s3: S3 client for the artifacts bucket.
        dv: the version.
        out: the destination folder (created).
        download: also fetch every photo into ``images/<label>/``.
        originals: download the original upload instead of the labeling copy the manifest's ``source-ref`` names.
        workers: parallel downloads.
        image_s3: S3 client for the photos (default ``s3``).
        progress: called with the number of photos downloaded so far.
    """
    folder = out / dv.version
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "species").mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror or exc}") from None
    result = ExportResult(dv.version, str(folder))
    lineage_raw = _get(s3, dv.bucket, dv.key(LINEAGE_NAME))
    lineage = json.loads(lineage_raw) if lineage_raw else {}
    attribute = str(lineage.get("label_attribute") or DEFAULT_LABEL_ATTRIBUTE)
    labels = [str(x) for x in lineage.get("labels") or []]
    for name, raw in ((LINEAGE_NAME, lineage_raw), (STATS_NAME, _get(s3, dv.bucket, dv.key(STATS_NAME)))):
        if raw is not None:
            _atomic_write(folder / name, _write_bytes(raw), binary=True)
            result.files.append(name)

    # The manifest is copied byte for byte, then read back once for the CSV rows and the per-species listings.
    rows: list[dict[str, Any]] = []
    seen_fields: set[str] = set()
    by_species: dict[str, list[str]] = {}
    to_download: list[tuple[str, str, str]] = []  # (uri, label, photo id)
    body = s3.get_object(Bucket=dv.bucket, Key=dv.key(MANIFEST_NAME))["Body"]

    def copy_manifest(fh: IO[Any]) -> None:
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            fh.write(chunk)

    _atomic_write(folder / MANIFEST_NAME, copy_manifest, binary=True)
    result.files.append(MANIFEST_NAME)
    with open(folder / MANIFEST_NAME, "rb") as fh:
        for _raw, line in iter_manifest_lines(fh):
            if line is None or not line.get("source-ref"):
                result.bad_lines += 1
                continue
            row = csv_row(line, attribute=attribute, labels=labels)
            rows.append(row)
            seen_fields.update(k for k in row if k.startswith("field."))
            label = str(row["label"] or "unlabeled")
            by_species.setdefault(label, []).append(str(row["source_ref"]))
            uri = str(line.get("original-ref") or row["source_ref"]) if originals else str(row["source_ref"])
            to_download.append((uri, label, str(row["photo_id"] or uri)))
    result.photos = len(rows)

    columns = list(BASE_COLUMNS) + field_columns(seen_fields)

    def write_csv(fh: IO[str]) -> None:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    _atomic_write(folder / "dataset.csv", write_csv)
    result.files.append("dataset.csv")
    for label, uris in sorted(by_species.items()):
        name = f"species/{safe_name(label)}.txt"
        _atomic_write(folder / name, _write_lines(uris))
        result.files.append(name)
        result.species[label] = len(uris)

    if download:
        _download(image_s3 or s3, to_download, folder / "images", result, workers=workers, progress=progress)
    return result


def _download(s3: Any, items: list[tuple[str, str, str]], root: Path, result: ExportResult, *, workers: int,
              progress: Callable[[int], None] | None) -> None:
    def one(item: tuple[str, str, str]) -> tuple[str, str | None]:
        uri, label, photo_id = item
        try:
            bucket, key = parse_s3_uri(uri)
        except ValueError:
            return "failed", f"{uri}: not an s3:// URI"
        ext = os.path.splitext(key)[1].lower() or ".jpg"
        target = root / safe_name(label) / (safe_name(photo_id) + ext)
        if target.exists() and target.stat().st_size > 0:
            return "skipped", None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        try:
            s3.download_file(bucket, key, str(tmp))
        except ClientError as exc:
            tmp.unlink(missing_ok=True)
            return "failed", f"{uri}: {error_code(exc) or exc}"
        os.replace(tmp, target)
        return "downloaded", None

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for (uri, _, _), (outcome, error) in zip(items, pool.map(one, items), strict=True):
            if outcome == "downloaded":
                result.downloaded += 1
            elif outcome == "skipped":
                result.skipped_existing += 1
            else:
                result.download_failed.append({"uri": uri, "error": str(error)})
            done += 1
            if progress is not None:
                progress(done)
