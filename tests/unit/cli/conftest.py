"""Fixtures for the CLI tests: photo corpora generated on the fly and a runner that captures the streams."""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from fieldlabel_cli.context import AppContext
from fieldlabel_cli.main import run
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small, valid, unique JPEG (random pixels so two seeds never collide)."""
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", (32, 32), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write(path: Path, data: bytes | str | dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


class _Stream(io.StringIO):
    def __init__(self, tty: bool = False, text: str = "") -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def run_cli(*argv: str, stderr_tty: bool = False, stdin_text: str = "", stdin_tty: bool = False) -> Result:
    """Run ``fieldlabel argv`` in-process; argparse's SystemExit becomes the exit code."""
    ctx = AppContext(stdout=_Stream(), stderr=_Stream(tty=stderr_tty), stdin=_Stream(tty=stdin_tty, text=stdin_text))
    try:
        code = run(list(argv), ctx=ctx)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    return Result(code, ctx.stdout.getvalue(), ctx.stderr.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def fast_retries(monkeypatch):
    """One attempt per request, so tests of network failures do not sit through backoff."""
    monkeypatch.setattr("fieldlabel_cli.context.RETRY_MAX_ATTEMPTS", 1)


@pytest.fixture
def files():
    """Helpers to build corpora: ``files.jpeg(seed)``, ``files.png(seed)``, ``files.write(path, data)``."""
    from types import SimpleNamespace

    return SimpleNamespace(jpeg=jpeg_bytes, png=png_bytes, write=write)


class CallRecorder:
    """Records every AWS operation the CLI's clients make; can raise on the n-th call of one operation."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.params: list[tuple[str, dict]] = []
        self.fail_on: tuple[str, int, BaseException] | None = None

    def count(self, operation: str) -> int:
        return self.calls.count(operation)

    def _hook(self, model, params=None, **_kwargs) -> None:
        self.calls.append(model.name)
        self.params.append((model.name, dict(params or {})))
        if self.fail_on and model.name == self.fail_on[0] and self.count(model.name) == self.fail_on[1]:
            raise self.fail_on[2]


@pytest.fixture
def aws_calls(monkeypatch):
    """Wrap AppContext.client so every client built by the CLI reports its calls to a CallRecorder."""
    recorder = CallRecorder()
    original = AppContext.client

    def client(self, service, **kwargs):
        c = original(self, service, **kwargs)
        c.meta.events.register("provide-client-params", recorder._hook)
        return c

    monkeypatch.setattr(AppContext, "client", client)
    return recorder


_SHARED_LOADER = None


@pytest.fixture(autouse=True)
def _shared_botocore_loader(monkeypatch):
    """Speed only: every CLI run in a test builds a new boto3 Session, which re-reads the service models (~0.13 s).
    Sharing botocore's data loader keeps that cache; credentials, profiles and regions are still resolved afresh."""
    global _SHARED_LOADER
    import boto3.session
    import botocore.loaders
    import botocore.session

    if _SHARED_LOADER is None:
        _SHARED_LOADER = botocore.loaders.create_loader()
    real_session = boto3.session.Session

    def session(*args, **kwargs):
        if "botocore_session" not in kwargs:
            core = botocore.session.get_session()
            core.register_component("data_loader", _SHARED_LOADER)
            kwargs["botocore_session"] = core
        s = real_session(*args, **kwargs)
        paths = _SHARED_LOADER.search_paths
        paths[:] = list(dict.fromkeys(paths))  # boto3 appends its data path on every Session
        return s

    monkeypatch.setattr("fieldlabel_cli.context.boto3.session.Session", session)
