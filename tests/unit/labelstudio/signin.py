"""Signing in to a Label Studio server as a browser does (the login form with Django's CSRF check)."""

from __future__ import annotations

from fieldlabel.labeling.label_studio.accounts import LOGIN_PATH, SignupSession


def signs_in(url: str, email: str, password: str) -> bool:
    """Sign in through ``/user/login/`` and open a page only a signed-in person gets (their account page)."""
    browser = SignupSession(url, retries=0)
    answer = browser.submit_form(LOGIN_PATH, {"email": email, "password": password})
    if answer.status != 302 or "sessionid" not in browser.cookies:
        return False
    account = browser.get("/user/account/")
    # Signed out, the account page redirects to the login page; signed in, it shows the person's address.
    return account.status == 200 and email in account.body
