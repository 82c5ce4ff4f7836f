"""A tiny progress reporter that never breaks non-interactive output.

On a terminal it redraws one line with a carriage return. Anywhere else (a pipe, a CI log, a file) it never writes a
carriage return: it prints a plain line every ``every`` items, and the caller prints the summary at the end.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """Counts finished items and bytes; thread-safe, so upload workers can call :meth:`advance`."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO,
        label: str = "files",
        every: int = 100,
        width: int = 30,
        min_interval: float = 0.1,
        enabled: bool = True,
    ) -> None:
        self.total = total
        self.done = 0
        self.bytes = 0
        self._stream = stream
        self._label = label
        self._every = max(1, every)
        self._width = width
        self._min_interval = min_interval
        self._enabled = enabled and total > 0
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._drawn = False

    @property
    def interactive(self) -> bool:
        """True when drawing a live bar (stream is a terminal)."""
        return self._tty

    def advance(self, nbytes: int = 0) -> None:
        """Record one finished item of ``nbytes`` bytes."""
        with self._lock:
            self.done += 1
            self.bytes += nbytes
            if not self._enabled:
                return
            if self._tty:
                now = time.monotonic()
                if now - self._last_draw >= self._min_interval or self.done == self.total:
                    self._draw()
                    self._last_draw = now
            elif self.done % self._every == 0 and self.done < self.total:
                self._stream.write(f"{self.done}/{self.total} {self._label} ({_human_bytes(self.bytes)})\n")
                self._stream.flush()

    def _draw(self) -> None:
        filled = int(self._width * self.done / self.total) if self.total else self._width
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r[{bar}] {self.done}/{self.total} {self._label} {_human_bytes(self.bytes)}")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the live line so that whatever is printed next starts on a fresh line."""
        with self._lock:
            if self._tty and self._drawn:
                self._stream.write("\n")
                self._stream.flush()
                self._drawn = False
