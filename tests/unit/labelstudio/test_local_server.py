"""The local Label Studio server that the backend's tests and the demo run against (localrun/labelstudio.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from localrun.labelstudio import LabelStudioServer, LabelStudioUnavailable


def _get(url: str, token: str) -> tuple[int, object]:
    req = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def test_the_admin_token_is_accepted_and_a_wrong_one_refused(label_studio: LabelStudioServer) -> None:
    status, body = _get(f"{label_studio.url}/api/projects", label_studio.token)
    assert status == 200 and isinstance(body, dict) and "results" in body
    assert _get(f"{label_studio.url}/api/projects", "0" * 40)[0] == 401


def test_a_missing_installation_names_the_command_that_installs_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = LabelStudioServer(tmp_path, executable=tmp_path / "absent" / "label-studio")
    with pytest.raises(LabelStudioUnavailable, match="make setup"):
        server.start()
