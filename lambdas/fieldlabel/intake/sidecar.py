"""Sidecar metadata (docs/contracts.md "Sidecar metadata"): schema and a small validator that keeps what is valid.

:data:`SIDECAR_SCHEMA` is the JSON Schema published as docs/sidecar.schema.json (a test keeps the two identical).
Validation never fails a photo: invalid fields are dropped and described, unknown fields are described and dropped.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

MAX_SIDECAR_BYTES = 64 * 1024

SIDECAR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://fieldlabel.example/sidecar.schema.json",
    "title": "Field photo sidecar metadata",
    "description": (
        "Optional metadata next to a photo (<stem>.json) or for a whole folder (_folder.json). All fields are "
        "optional; unknown fields are reported, not fatal. Per-photo values win over folder values, "
        "which win over EXIF."
    ),
    "type": "object",
    "properties": {
        "site_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "collector": {"type": "string", "minLength": 1, "maxLength": 128},
        "notes": {"type": "string", "maxLength": 2000},
        "suspected_species": {"type": "string", "minLength": 1, "maxLength": 128},
        "captured_at": {"type": "string", "format": "date-time"},
        "latitude": {"type": "number", "minimum": -90, "maximum": 90},
        "longitude": {"type": "number", "minimum": -180, "maximum": 180},
        "habitat": {"type": "string", "maxLength": 256},
        "specimen_part": {"type": "string", "enum": ["leaf", "bark", "fruit", "flower", "habit", "other"]},
    },
    "additionalProperties": False,
}


def _check(name: str, rule: dict[str, Any], value: Any) -> str | None:
    """The problem with one value, or None when it satisfies its rule."""
    kind = rule["type"]
    if kind == "string":
        if not isinstance(value, str):
            return f"{name}: expected a string, got {type(value).__name__}"
        if len(value) < rule.get("minLength", 0):
            return f"{name}: empty"
        if "maxLength" in rule and len(value) > rule["maxLength"]:
            return f"{name}: longer than {rule['maxLength']} characters"
        if "enum" in rule and value not in rule["enum"]:
            return f"{name}: {value!r} is not one of {', '.join(rule['enum'])}"
        if rule.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return f"{name}: {value!r} is not an ISO-8601 date-time"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{name}: expected a number, got {type(value).__name__}"
        if value < rule["minimum"] or value > rule["maximum"]:
            return f"{name}: {value} is outside {rule['minimum']}..{rule['maximum']}"
    return None


def validate_sidecar(payload: Any) -> tuple[dict[str, Any], list[str]]:
    """Keep the valid fields of a decoded sidecar and describe every problem.

    Returns:
        ``(fields, issues)``; numbers come back as floats.
    """
    if not isinstance(payload, dict):
        return {}, [f"sidecar must be a JSON object, got {type(payload).__name__}"]
    fields: dict[str, Any] = {}
    issues: list[str] = []
    props = SIDECAR_SCHEMA["properties"]
    for name in sorted(payload):
        value = payload[name]
        rule = props.get(name)
        if rule is None:
            issues.append(f"{name}: unknown field (ignored)")
            continue
        problem = _check(name, rule, value)
        if problem:
            issues.append(problem)
        else:
            fields[name] = float(value) if rule["type"] == "number" else value
    return fields, issues


def parse_sidecar(data: bytes) -> tuple[dict[str, Any], list[str]]:
    """Decode and validate sidecar bytes; a broken file gives no fields and one issue, never an exception."""
    if len(data) > MAX_SIDECAR_BYTES:
        return {}, [f"sidecar larger than {MAX_SIDECAR_BYTES} bytes (ignored)"]
    try:
        payload = json.loads(data.decode("utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        return {}, [f"sidecar is not valid JSON ({exc.__class__.__name__}: {str(exc)[:120]})"]
    return validate_sidecar(payload)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
