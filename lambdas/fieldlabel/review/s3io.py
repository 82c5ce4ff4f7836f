"""Small S3 helpers shared by the review functions (URI parsing, streamed JSON Lines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key).

    Raises:
        ValueError: if ``uri`` is not an s3:// URI with a bucket and a key.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def open_object(s3: Any, uri: str) -> Any:
    """Return the streaming body of an S3 object (read it incrementally; it is never loaded as a whole here)."""
    bucket, key = split_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"]


def iter_jsonl(s3: Any, uri: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Yield (line number, parsed object or None when the line is not a JSON object) for a JSON Lines object."""
    body = open_object(s3, uri)
    for n, raw in enumerate(body.iter_lines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield n, None
            continue
        yield n, obj if isinstance(obj, dict) else None
