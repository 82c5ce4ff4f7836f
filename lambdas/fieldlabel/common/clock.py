"""UTC clock helpers. Domain code takes ``now`` as a parameter; handlers call :func:`utc_now` once per event.

:func:`utc_now` is the one place the wall clock is read, and it reads it through a replaceable source, so a test
(or the offline demo) can pin time with :func:`frozen` instead of depending on the date it happens to run on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


def _system_now() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _system_now


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (from the injected source, the system clock by default)."""
    return _source()


@contextmanager
def frozen(at: datetime | Callable[[], datetime]) -> Iterator[None]:
    """Within the block :func:`utc_now` returns ``at`` (or calls it, when it is a callable), then the clock before."""
    global _source
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("frozen() needs a timezone-aware datetime")
        fixed = at
        new: Callable[[], datetime] = lambda: fixed  # noqa: E731
    else:
        new = at
    previous, _source = _source, new
    try:
        yield
    finally:
        _source = previous


def iso(dt: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix and microseconds, so strings sort in time order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 string (``Z`` or offset); a naive value is taken as UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
