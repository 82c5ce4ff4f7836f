"""Field metadata from EXIF: capture time, GPS position in decimal degrees, camera make and model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PIL import Image

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE = 0x010F
_MODEL = 0x0110
_DATETIME = 0x0132
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text[:128] or None


def _dms_to_degrees(dms: Any, ref: Any) -> float:
    d, m, s = (float(x) for x in dms)
    value = d + m / 60 + s / 3600
    if _text(ref) in ("S", "W"):
        value = -value
    return round(value, 7)


def _capture_time(raw: str, offset: str | None) -> str:
    """EXIF ``YYYY:MM:DD HH:MM:SS`` (+ optional ``OffsetTimeOriginal``) as ISO-8601."""
    dt = datetime.strptime(raw.strip()[:19], "%Y:%m:%d %H:%M:%S")
    text = dt.isoformat()
    if offset and len(offset) == 6 and offset[0] in "+-":
        text += offset
    return text


def read_exif(image: Image.Image) -> tuple[dict[str, Any], list[str]]:
    """Extract ``captured_at``, ``latitude``, ``longitude``, ``camera_make``, ``camera_model`` when present.

    Returns:
        ``(fields, issues)``: fields found, and readable descriptions of EXIF values that could not be used.
        Problems never raise: EXIF is optional.
    """
    fields: dict[str, Any] = {}
    issues: list[str] = []
    try:
        exif = image.getexif()
    except Exception as exc:  # noqa: BLE001 - a corrupt EXIF block must not stop intake
        return fields, [f"unreadable EXIF ({type(exc).__name__})"]
    if not exif:
        return fields, issues
    for tag, name in ((_MAKE, "camera_make"), (_MODEL, "camera_model")):
        value = _text(exif.get(tag))
        if value:
            fields[name] = value
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001
        sub = {}
    raw_time = _text(sub.get(_DATETIME_ORIGINAL)) or _text(exif.get(_DATETIME))
    if raw_time:
        try:
            fields["captured_at"] = _capture_time(raw_time, _text(sub.get(_OFFSET_TIME_ORIGINAL)))
        except ValueError:
            issues.append(f"capture time {raw_time!r} is not YYYY:MM:DD HH:MM:SS")
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # noqa: BLE001
        gps = {}
    if gps.get(_GPS_LAT) is not None and gps.get(_GPS_LON) is not None:
        try:
            lat = _dms_to_degrees(gps[_GPS_LAT], gps.get(_GPS_LAT_REF))
            lon = _dms_to_degrees(gps[_GPS_LON], gps.get(_GPS_LON_REF))
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                fields["latitude"], fields["longitude"] = lat, lon
            else:
                issues.append(f"GPS position out of range ({lat}, {lon})")
        except (TypeError, ValueError, ZeroDivisionError):
            issues.append("GPS position is not degrees/minutes/seconds")
    return fields, issues
