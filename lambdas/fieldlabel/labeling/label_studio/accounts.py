"""Label Studio accounts WITH a password, made through the server's own sign-up form (docs/label-studio.md,
"Taxonomists' accounts").

Label Studio's API (``POST /api/users``) makes an account without a password, and nothing in the community edition's
API sets one, so such an account can never sign in. The sign-up page can: ``/user/signup/?token=<invite token>``
(``users.views.user_signup``) creates the user with the password of its form (``users.forms.UserSignupForm``:
``email``, ``password``; Django's password validators, 8-128 characters) and adds them to the server's organisation.
With ``DISABLE_SIGNUP_WITHOUT_LINK`` (set by the deployment and the local server) the page only accepts the
organisation's invite token, which ``GET /api/invite`` gives the admin; a wrong token is refused (403).

The form is protected by Django's CSRF check, so a sign-up is two requests, as in a browser: ``GET`` the page (the
``csrftoken`` cookie and the form's ``csrfmiddlewaretoken``), then ``POST`` the form with both and a same-origin
``Referer`` (Django compares it with the host on HTTPS). A success answers 302; a refused form answers 200 with
the form and its errors again.

Only the admin's API token is needed (``GET /api/invite``, the user look-up and the name): the password is made here
(:func:`generate_password`, one-time, for the person to change under Account & Settings) and returned once; it is
stored nowhere. An existing account is reported as existing and never changed.
"""

from __future__ import annotations

import html
import http.cookies
import json
import re
import secrets
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from fieldlabel.labeling.label_studio.client import (
    RETRYABLE_STATUS,
    LabelStudioApiError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnavailableError,
)

SIGNUP_PATH = "/user/signup/"
LOGIN_PATH = "/user/login/"
LOGOUT_PATH = "/logout"
# Comfortably inside Label Studio's 8-128 characters; 20 characters of 70 symbols are ~122 bits.
PASSWORD_LENGTH = 20
# Letters, digits and a few symbols that survive copying from a terminal and pasting into a form (no quotes, no
# backslash, no characters a shell or a chat client would mangle).
_SYMBOLS = "-_.!@#%+="
_ALPHABET = string.ascii_letters + string.digits + _SYMBOLS
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ERROR_BODY_CHARS = 2000


class AccountError(LabelStudioError):
    """The server refused the sign-up (the message carries its reasons)."""


@dataclass(frozen=True)
class AccountResult:
    """What :func:`create_account` did. ``password`` is set only when the account was created now; ``warnings``
    name the finishing steps (name, sign-out) that failed after the account was made."""

    email: str
    created: bool
    user_id: int | None
    url: str
    password: str | None = None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "created": self.created, "user_id": self.user_id, "url": self.url,
                "password": self.password, "warnings": list(self.warnings)}


def generate_password(length: int = PASSWORD_LENGTH, *, choice: Callable[[str], str] = secrets.choice) -> str:
    """A random password of ``length`` characters with at least one lower-case letter, upper-case letter, digit
    and symbol (``secrets``, so it is fit for a credential)."""
    if length < 8:
        raise ValueError("a password needs at least 8 characters")
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, _SYMBOLS)
    while True:
        password = "".join(choice(_ALPHABET) for _ in range(length))
        if all(any(c in cls for c in password) for cls in classes):
            return password


def normalise_email(email: str) -> str:
    """``email`` trimmed and lower-cased (Label Studio stores it lower-cased).

    Raises:
        ValueError: not of the form name@domain.tld.
    """
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError(f"not an e-mail address: {email!r}")
    return value


def split_name(name: str | None) -> tuple[str, str]:
    """``"Maria da Costa"`` -> ``("Maria", "da Costa")``: Label Studio keeps a first and a last name."""
    first, _, last = (name or "").strip().partition(" ")
    return first, last.strip()


def invite_token(client: LabelStudioClient) -> str:
    """The organisation's invite token (``GET /api/invite``, admin only)."""
    body = client.request("GET", "/api/invite")
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise LabelStudioError(f"{client.base_url}/api/invite gave no invite token: {str(body)[:200]}")
    return token


# ---------------------------------------------------------------------------------------------------------- forms


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A form's 302 is its answer (success, or the load balancer's sign-in), not a page to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class _Response:
    status: int
    body: str
    location: str


# Elements without an end tag: they must not open an error block the parser then waits to close.
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


class _FormParser(HTMLParser):
    """The CSRF token of a Django form page and the error messages it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.csrf_token = ""
        self.errors: list[str] = []
        self._in_error = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrfmiddlewaretoken" and a.get("value"):
            self.csrf_token = str(a["value"])
        classes = str(a.get("class") or "").split()
        # Django's `{{ form.errors }}` is a <ul class="errorlist">; Label Studio's templates also use "error" blocks.
        if tag in _VOID_TAGS:
            return
        if self._in_error or "errorlist" in classes or "error" in classes or "field_errors" in classes:
            self._in_error += 1

    def handle_endtag(self, tag: str) -> None:
        if self._in_error and tag not in _VOID_TAGS:
            self._in_error -= 1

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if self._in_error and text and text not in self.errors:
            self.errors.append(text)


class SignupSession:
    """The browser part of an account's creation: one cookie jar, the CSRF dance, no redirects followed.

    Args:
        base_url: the server, as the API client has it (``https://labels.example.org`` inside the VPC).
        timeout: seconds per request.
        retries: further attempts of a page read on connection errors and 502/503/504 (never of the POST: a
            repeated sign-up whose first answer was lost would meet "already exists" and lose the password).
        sleep: how to wait between attempts (injected so tests do not wait).
    """

    def __init__(self, base_url: str, *, timeout: float = 30, retries: int = 4,
                 sleep: Callable[[float], None] = time.sleep, backoff_seconds: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self.backoff_seconds = backoff_seconds
        self.cookies: dict[str, str] = {}

    def _open(self, method: str, url: str, *, form: dict[str, str] | None = None, referer: str = "") -> _Response:
        headers = {"Accept": "text/html"}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if referer:
            headers["Referer"] = referer
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                status, raw, hdrs = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, raw, hdrs = exc.code, exc.read(), exc.headers
        for header in hdrs.get_all("Set-Cookie") or []:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value
        return _Response(status, raw[:200_000].decode("utf-8", "replace"), str(hdrs.get("Location") or ""))

    def get(self, path: str) -> _Response:
        """A page, retried like the API client retries (connection errors, 502/503/504)."""
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                resp = self._open("GET", url)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = str(getattr(exc, "reason", exc))
                continue
            if resp.status in RETRYABLE_STATUS:
                last = f"HTTP {resp.status}"
                continue
            return resp
        raise LabelStudioUnavailableError(
            f"Label Studio at {self.base_url} is unavailable: GET {path} failed {self.retries + 1} times "
            f"(last: {last})")

    def submit_form(self, path: str, fields: dict[str, str]) -> _Response:
        """Read the form page at ``path``, then post ``fields`` to it with the CSRF cookie, token and Referer.

        Raises:
            LabelStudioApiError: the page is not a form (e.g. a redirect to a sign-in page in front of it).
            LabelStudioUnavailableError: the page could not be read.
        """
        url = f"{self.base_url}{path}"
        page = self.get(path)
        if page.status != 200:
            where = f" (redirected to {page.location})" if page.location else ""
            raise LabelStudioApiError(page.status, f"{path} is not a form page{where}", method="GET", url=url)
        parser = _FormParser()
        parser.feed(page.body)
        # The form's token is the masked form of the cookie's secret; Django accepts either.
        token = parser.csrf_token or self.cookies.get("csrftoken", "")
        if not token or "csrftoken" not in self.cookies:
            raise LabelStudioApiError(page.status, f"{path} set no CSRF cookie/token", method="GET", url=url)
        try:
            return self._open("POST", url, form={"csrfmiddlewaretoken": token, **fields}, referer=url)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise LabelStudioUnavailableError(
                f"Label Studio at {self.base_url} did not answer POST {path}: {getattr(exc, 'reason', exc)} (if "
                "that was a sign-up that went through, running it again reports the account as existing and its "
                "password must be reset: docs/label-studio.md)") from None


def form_errors(body: str) -> list[str]:
    """The error messages of a form page that was answered with the form again."""
    parser = _FormParser()
    parser.feed(body)
    return [html.unescape(e) for e in parser.errors]


# -------------------------------------------------------------------------------------------------------- accounts


def create_account(
    client: LabelStudioClient,
    email: str,
    *,
    first_name: str = "",
    last_name: str = "",
    password_factory: Callable[[], str] = generate_password,
    token: str | None = None,
    session: SignupSession | None = None,
) -> AccountResult:
    """The Label Studio account of ``email`` with a new one-time password, or the existing account unchanged.

    Args:
        client: the API client with the admin's token (reads the invite token, finds the user, sets the name).
        email: the person's address (also their Label Studio login).
        first_name, last_name: shown in Label Studio (set on a new account only).
        password_factory: makes the one-time password (injected by tests that need to know it in advance).
        token: the organisation's invite token (default: ``GET /api/invite``).
        session: the sign-up session (default: a new one on ``client.base_url``).

    Raises:
        ValueError: ``email`` is not an e-mail address.
        AccountError: the sign-up form refused (its messages; e.g. the password validators).
        LabelStudioApiError: a refused invite token (403), or an API error.
        LabelStudioUnavailableError: the server did not answer.
    """
    email = normalise_email(email)
    existing = client.find_user(email)
    if existing is not None:
        return AccountResult(email=email, created=False, user_id=_int_or_none(existing.get("id")),
                             url=client.base_url)
    invite = token if token is not None else invite_token(client)
    form = session or SignupSession(client.base_url, timeout=client.timeout, retries=client.retries)
    password = password_factory()
    path = f"{SIGNUP_PATH}?{urllib.parse.urlencode({'token': invite})}"
    answer = form.submit_form(path, {"email": email, "password": password, "how_find_us": ""})
    if answer.status == 403:
        raise LabelStudioApiError(403, "the sign-up refused the organisation's invite token", method="POST",
                                  url=f"{form.base_url}{SIGNUP_PATH}")
    if answer.status != 302:
        errors = form_errors(answer.body) if answer.status == 200 else []
        # Someone made the account between the look-up and the sign-up: report it as existing, unchanged.
        raced = client.find_user(email)
        if raced is not None:
            return AccountResult(email=email, created=False, user_id=_int_or_none(raced.get("id")),
                                 url=client.base_url)
        reason = "; ".join(errors) or f"HTTP {answer.status}: {' '.join(answer.body[:300].split())}"
        raise AccountError(f"Label Studio refused the sign-up of {email}: {reason}")
    # The account exists now, and this answer is the only place its password is: from here on a failure is a
    # warning next to the password, never an exception that would lose it.
    return AccountResult(email=email, created=True, url=client.base_url, password=password,
                         **_finish(client, form, email, first_name, last_name))


def _finish(client: LabelStudioClient, form: SignupSession, email: str, first_name: str,
            last_name: str) -> dict[str, Any]:
    """Sign the new session out, look the member up and set the name; failures are collected as warnings."""
    warnings: list[str] = []
    user_id: int | None = None
    try:
        if "sessionid" in form.cookies:
            # The sign-up signs the new person in; end that session, which only this process holds.
            form.get(LOGOUT_PATH)
    except LabelStudioError as exc:
        warnings.append(f"the sign-up's session was not signed out: {exc}")
    try:
        user = client.find_user(email)
        user_id = _int_or_none(user.get("id")) if user else None
        if user_id is None:
            warnings.append(f"{email} is not listed among the organisation's members yet")
        elif first_name or last_name:
            client.request("PATCH", f"/api/users/{user_id}/",
                           body={"first_name": first_name, "last_name": last_name})
    except LabelStudioError as exc:
        warnings.append(f"the name was not set: {exc}")
    return {"user_id": user_id, "warnings": tuple(warnings)}


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


# ------------------------------------------------------------------------------------------------ the function


def token_from_secret_string(value: str) -> str:
    """The API token in a secret string: the plain string, or the ``token`` field of a JSON object (both shapes
    the deployment and the CLI accept)."""
    text = (value or "").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        token = doc.get("token")
        if not isinstance(token, str) or not token:
            raise ValueError("the token secret is a JSON object without a 'token' string")
        return token
    if not text:
        raise ValueError("the token secret is empty")
    return text


def account_request(event: dict[str, Any]) -> tuple[str, str, str]:
    """``(email, first_name, last_name)`` of an ``ls_accounts`` event ``{"email", "name"?}`` or ``{"email",
    "first_name"?, "last_name"?}``.

    Raises:
        ValueError: no valid ``email``, or a name that is not a string.
    """
    email = event.get("email")
    if not isinstance(email, str):
        raise ValueError("the event needs 'email' (a string)")
    for key in ("name", "first_name", "last_name"):
        if event.get(key) is not None and not isinstance(event[key], str):
            raise ValueError(f"'{key}' must be a string")
    if event.get("name"):
        first, last = split_name(event["name"])
    else:
        first, last = (event.get("first_name") or "").strip(), (event.get("last_name") or "").strip()
    return normalise_email(email), first, last
