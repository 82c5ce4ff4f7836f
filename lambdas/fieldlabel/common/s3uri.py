"""``s3://bucket/key`` URIs."""

from __future__ import annotations


def s3_uri(bucket: str, key: str) -> str:
    """Build ``s3://bucket/key``; the key is kept as is (not URL-encoded), as Ground Truth manifests expect."""
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``.

    Raises:
        ValueError: if ``uri`` is not an ``s3://`` URI with a bucket and a key.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key
