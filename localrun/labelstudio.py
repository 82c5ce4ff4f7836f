"""A real Label Studio server on 127.0.0.1 for the tests and the demo (SQLite, its own data directory).

The server is the PyPI ``label-studio`` package installed in ``.venv-labelstudio`` by ``make setup``
(requirements-labelstudio.txt, the version the deployed image pins). It is started as a child process with an admin
account whose API token is the one the pipeline's Label Studio backend authenticates with, exactly as the deployed
container is bootstrapped (docs/label-studio.md): ``LABEL_STUDIO_USERNAME`` / ``LABEL_STUDIO_PASSWORD`` /
``LABEL_STUDIO_USER_TOKEN`` with ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` (Label Studio 1.23 disables the
token scheme unless the organisation enables it at creation).

    with LabelStudioServer(tmp_path / "ls") as ls:
        ls.url, ls.token      # http://127.0.0.1:<port>, the admin's API token
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXECUTABLE = ROOT / ".venv-labelstudio" / "bin" / "label-studio"
ADMIN_EMAIL = "fieldlabel-admin@example.org"
# First start runs Django's migrations on an empty SQLite file: ~35 s on an idle core, several times that when the
# machine is loaded. This is a hang guard, not a speed limit.
START_TIMEOUT_SECONDS = 600.0


class LabelStudioUnavailable(RuntimeError):
    """The local Label Studio server could not be started (not installed, or it exited)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabelStudioServer:
    """Starts ``label-studio start`` on a free port and stops it (and its children) on exit."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        executable: Path = DEFAULT_EXECUTABLE,
        token: str | None = None,
        password: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.executable = Path(executable)
        self.token = token or secrets.token_hex(20)
        self.password = password or secrets.token_urlsafe(16)
        self.email = ADMIN_EMAIL
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        """Base URL of the server (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The child's environment: our data directory, SQLite, the admin account, no telemetry or update checks."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DJANGO_", "LABEL_STUDIO_"))}
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "DJANGO_DB": "sqlite",
                "LABEL_STUDIO_USERNAME": self.email,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "COLLECT_ANALYTICS": "false",
                "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LATEST_VERSION_CHECK": "false",
                # Label Studio refuses webhooks to private addresses (SSRF protection); this loopback-only server's
                # webhooks go to listeners on 127.0.0.1 (the tests, the harness). The deployed server keeps it on:
                # its webhook target is the public Lambda Function URL.
                "SSRF_PROTECTION_ENABLED": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self) -> LabelStudioServer:
        """Start the server and wait until its API answers with the admin token."""
        if not self.executable.exists():
            raise LabelStudioUnavailable(
                f"{self.executable} is missing: run `make setup` (it installs requirements-labelstudio.txt)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self._log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(self.executable), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(self.port),
             # "--opt=value": a generated password may begin with "-", which argparse would take for an option.
             f"--username={self.email}", f"--password={self.password}", f"--user-token={self.token}"],
            cwd=self.data_dir, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LabelStudioUnavailable(
                    f"label-studio exited with {self._proc.returncode}; its log: {self._log_path}\n{self.log_tail()}"
                )
            if self._answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise LabelStudioUnavailable(
            f"label-studio did not answer within {START_TIMEOUT_SECONDS:.0f} s: {self._log_path}"
        )

    def _answers(self) -> bool:
        req = urllib.request.Request(f"{self.url}/api/projects?page_size=1",
                                     headers={"Authorization": f"Token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - a local http URL we built
                json.loads(resp.read())
                return bool(resp.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server's process group; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
