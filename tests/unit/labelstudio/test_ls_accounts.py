"""Label Studio accounts with a password, through the server's own sign-up form (accounts.py), against the REAL
local server (fixture ``label_studio``): the password signs in, an existing account is left alone, a wrong invite
token is refused. The pure parts (password, event, secret, form errors) at the end."""

from __future__ import annotations

import itertools
import string
from typing import Any

import pytest
from fieldlabel.labeling.label_studio.accounts import (
    AccountError,
    SignupSession,
    account_request,
    create_account,
    form_errors,
    generate_password,
    invite_token,
    token_from_secret_string,
)
from fieldlabel.labeling.label_studio.client import (
    LabelStudioApiError,
    LabelStudioClient,
    LabelStudioUnavailableError,
)

from localrun.labelstudio import LabelStudioServer
from tests.unit.labelstudio.signin import signs_in

_counter = itertools.count()


def _email(tag: str) -> str:
    # One server for the whole test process: each test gets addresses nobody else uses.
    return f"{tag}-{next(_counter)}@accounts.example.org"


@pytest.fixture
def client(label_studio: LabelStudioServer) -> LabelStudioClient:
    return LabelStudioClient(label_studio.url, label_studio.token, sleep=lambda _: None)


def test_the_new_account_signs_in_with_its_one_time_password(client: LabelStudioClient,
                                                            label_studio: LabelStudioServer) -> None:
    email = _email("Ana.Silva")
    result = create_account(client, email.upper(), first_name="Ana", last_name="da Silva")
    assert result.created is True and result.email == email.lower() and result.url == label_studio.url
    assert result.password is not None and len(result.password) == 20
    user = client.find_user(email)
    assert user is not None and user["id"] == result.user_id
    assert (user["first_name"], user["last_name"]) == ("Ana", "da Silva")
    assert signs_in(label_studio.url, email.lower(), result.password)
    assert not signs_in(label_studio.url, email.lower(), result.password + "x")


def test_the_admin_organisation_holds_the_new_member(client: LabelStudioClient) -> None:
    email = _email("member")
    result = create_account(client, email)
    members = client.request("GET", "/api/users/")
    assert result.user_id in [m["id"] for m in (members if isinstance(members, list) else members["results"])]


def test_an_existing_account_is_reported_and_never_changed(client: LabelStudioClient,
                                                          label_studio: LabelStudioServer) -> None:
    email = _email("existing")
    first = create_account(client, email, password_factory=lambda: "First-password-123")
    again = create_account(client, email, first_name="Other", last_name="Name",
                           password_factory=lambda: "Second-password-456")
    assert again.created is False and again.password is None and again.user_id == first.user_id
    assert signs_in(label_studio.url, email, "First-password-123")
    assert not signs_in(label_studio.url, email, "Second-password-456")
    user = client.find_user(email)
    assert user is not None and (user["first_name"], user["last_name"]) == ("", "")


def test_an_account_made_through_the_api_counts_as_existing(client: LabelStudioClient) -> None:
    email = _email("api")
    made = client.ensure_user(email)
    result = create_account(client, email)
    assert (result.created, result.password, result.user_id) == (False, None, made["id"])


def test_a_wrong_invite_token_is_refused(client: LabelStudioClient, label_studio: LabelStudioServer) -> None:
    email = _email("intruder")
    with pytest.raises(LabelStudioApiError) as info:
        create_account(client, email, token="not-the-organisation-token")
    assert info.value.status == 403
    assert client.find_user(email) is None
    # The real token is the organisation's, and it works.
    assert create_account(client, email, token=invite_token(client)).created is True


def test_the_form_refusal_is_reported_with_the_servers_reasons(client: LabelStudioClient) -> None:
    email = _email("short")
    with pytest.raises(AccountError, match="8.128 characters"):
        create_account(client, email, password_factory=lambda: "short")
    assert client.find_user(email) is None


def test_a_failure_after_the_sign_up_keeps_the_password(label_studio: LabelStudioServer) -> None:
    """Once the account exists, the answer is the only copy of its password: a later step's failure is a warning."""

    class NoPatch(LabelStudioClient):
        def request(self, method: str, path: str, **kwargs: Any) -> Any:
            if method == "PATCH":
                raise LabelStudioUnavailableError(f"Label Studio at {self.base_url} is unavailable: PATCH {path}")
            return super().request(method, path, **kwargs)

    email = _email("patchless")
    client = NoPatch(label_studio.url, label_studio.token, sleep=lambda _: None)
    result = create_account(client, email, first_name="Pat", last_name="Less")
    assert result.created is True and result.user_id is not None and result.password is not None
    assert len(result.warnings) == 1 and result.warnings[0].startswith("the name was not set")
    assert signs_in(label_studio.url, email, result.password)


def test_a_page_that_is_not_the_form_is_an_error_not_a_sign_up() -> None:
    import http.server
    import threading

    class SignIn(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(302)
            self.send_header("Location", "https://auth.example.org/oauth2/authorize")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SignIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        session = SignupSession(f"http://127.0.0.1:{server.server_address[1]}", retries=0)
        with pytest.raises(LabelStudioApiError, match="auth.example.org"):
            session.submit_form("/user/signup/?token=t", {"email": "a@b.org", "password": "x" * 20})
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------------ pure


def test_passwords_are_long_and_mixed() -> None:
    for _ in range(200):
        p = generate_password()
        assert len(p) == 20
        assert any(c in string.ascii_lowercase for c in p) and any(c in string.ascii_uppercase for c in p)
        assert any(c in string.digits for c in p) and any(not c.isalnum() for c in p)
        assert not set(p) & set("'\"\\ `$")
    assert len({generate_password() for _ in range(50)}) == 50
    with pytest.raises(ValueError):
        generate_password(7)


def test_a_draw_without_every_class_is_drawn_again() -> None:
    # The first 8 draws are all "a" (no upper case, digit or symbol); the next 8 mix them.
    draws = iter("aaaaaaaa" + "aB3-cD4_")
    assert generate_password(8, choice=lambda _alphabet: next(draws)) == "aB3-cD4_"


def test_account_requests() -> None:
    assert account_request({"email": " Ana@X.org ", "name": "Ana da Silva"}) == ("ana@x.org", "Ana", "da Silva")
    assert account_request({"email": "b@x.org", "first_name": "B", "last_name": "C"}) == ("b@x.org", "B", "C")
    assert account_request({"email": "c@x.org"}) == ("c@x.org", "", "")
    for bad in ({}, {"email": 3}, {"email": "no-at-sign"}, {"email": "a@x.org", "name": 5}):
        with pytest.raises(ValueError):
            account_request(bad)


def test_token_secret_shapes() -> None:
    assert token_from_secret_string("abc\n") == "abc"
    assert token_from_secret_string('{"token": "xyz"}') == "xyz"
    for bad in ("", '{"other": 1}', '{"token": ""}'):
        with pytest.raises(ValueError):
            token_from_secret_string(bad)


def test_form_errors_are_read_from_the_page() -> None:
    page = """<form><input type="hidden" name="csrfmiddlewaretoken" value="t">
      <ul class="field_errors"><li>User with this email already exists</li></ul>
      <input name="password"><ul class="field_errors"><li>Please enter a password 8&ndash;128 characters in
      length.</li></ul><p class="error">The email and password you entered don&#x27;t match.</p>
      <p>Not an error</p></form>"""
    assert form_errors(page) == ["User with this email already exists",
                                 "Please enter a password 8–128 characters in length.",
                                 "The email and password you entered don't match."]
