"""A small Label Studio API client over urllib (the Lambda layer has no HTTP library and no label-studio-sdk).

Only the calls the pipeline makes, against Label Studio 1.23's REST API (``/api/projects``, ``/api/projects/<id>/
import``, ``/api/tasks``, ``/api/webhooks``, ``/api/users``), authenticated with the admin's legacy API token
(``Authorization: Token <token>``; docs/label-studio.md). Connection errors and 502/503/504 are retried with
exponential backoff, because the server is a single Fargate task that restarts and deploys in place; other HTTP
errors are the caller's (a 4xx does not get better by asking again).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

RETRYABLE_STATUS = (502, 503, 504)
# Label Studio's task list caps nothing by default; 100 per page keeps each response small whatever the batch size.
PAGE_SIZE = 100
# Deleting by id list goes through the data manager's action endpoint; chunks keep each request modest.
DELETE_CHUNK = 500
_ERROR_BODY_CHARS = 2000


class LabelStudioError(RuntimeError):
    """Base class of the client's errors."""


class LabelStudioUnavailableError(LabelStudioError):
    """The server did not answer (or answered 502/503/504) after every retry."""


class LabelStudioApiError(LabelStudioError):
    """The server answered with an HTTP error that retrying does not cure (4xx, 500)."""

    def __init__(self, status: int, body: str, *, method: str = "", url: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(f"Label Studio answered {status} to {method} {url}: {body[:500]}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """An API call answered with a redirect is an error, not a page to follow.

    In front of the deployed server, a call from outside the VPC meets the load balancer's Cognito sign-in, a 302 to
    the hosted login page; following it would hand an HTML page to the JSON decoder.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class LabelStudioClient:
    """JSON over HTTP(S) to one Label Studio server, with the admin token.

    Args:
        base_url: e.g. ``https://labels.example.org`` or ``http://127.0.0.1:8080`` (no trailing slash needed).
        token: the API token (legacy token scheme).
        timeout: seconds per request.
        retries: further attempts after the first on connection errors and 502/503/504.
        sleep: how to wait between attempts (injected so tests do not wait).
        backoff_seconds: the first wait; it doubles per attempt.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30,
        retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        backoff_seconds: float = 0.5,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Label Studio URL must start with http:// or https://, got {base_url!r}")
        if not token:
            raise ValueError("Label Studio API token is empty")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self.backoff_seconds = backoff_seconds

    # ------------------------------------------------------------------------------------------------------ HTTP

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        """One API call; returns the decoded JSON (None for an empty body).

        Raises:
            LabelStudioUnavailableError: connection errors or 502/503/504 on every attempt.
            LabelStudioApiError: any other HTTP error status.
        """
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Token {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with _OPENER.open(req, timeout=self.timeout) as resp:
                    status, raw = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")[:_ERROR_BODY_CHARS]
                if exc.code in RETRYABLE_STATUS:
                    last = f"HTTP {exc.code}"
                    continue
                if 300 <= exc.code < 400:
                    text = (f"redirected to {exc.headers.get('Location', '?')}: the API is not reachable at this URL "
                            "with a token (outside the VPC the load balancer asks for the Cognito sign-in)")
                raise LabelStudioApiError(exc.code, text, method=method, url=url) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = str(getattr(exc, "reason", exc))
            else:
                if not raw.strip():
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    raise LabelStudioApiError(status, "not JSON: " + raw[:200].decode("utf-8", "replace"),
                                              method=method, url=url) from None
        raise LabelStudioUnavailableError(
            f"Label Studio at {self.base_url} is unavailable: {method} {path} failed {self.retries + 1} times "
            f"(last: {last})"
        )

    def _pages(self, path: str, params: Mapping[str, Any], key: str) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, whichever of Label Studio's two pagination shapes it uses.

        REST-framework lists (projects) answer ``{"count", "next", "results"}``; the data manager's task list answers
        ``{"total", "tasks"}`` without ``next``, so the total decides there. A page past the end (404) also ends it.
        """
        page = 1
        seen = 0
        while True:
            try:
                body = self.request("GET", path, params={**params, "page": page, "page_size": PAGE_SIZE})
            except LabelStudioApiError as exc:
                # Django REST framework answers a page past the end with 404 "Invalid page".
                if exc.status == 404 and page > 1:
                    return
                raise
            if not isinstance(body, dict):
                yield from body or []
                return
            items = body.get(key) or []
            yield from items
            seen += len(items)
            if not items:
                return
            if "next" in body:
                if not body["next"]:
                    return
            elif isinstance(body.get("total"), int):
                if seen >= body["total"]:
                    return
            elif len(items) < PAGE_SIZE:
                return
            page += 1

    # -------------------------------------------------------------------------------------------------- projects

    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project titled exactly ``title`` (the API filters by substring), or None."""
        for project in self._pages("/api/projects/", {"title": title}, "results"):
            if project.get("title") == title:
                return dict(project)
        return None

    def ensure_project(
        self, title: str, label_config: str, *, maximum_annotations: int, description: str = ""
    ) -> dict[str, Any]:
        """The project titled ``title``, created when missing; a changed labeling config or overlap is updated.

        Idempotent by title, so a retried submission (or two batches starting at once) ends in one project.
        """
        existing = self.find_project(title)
        wanted = {"label_config": label_config, "maximum_annotations": maximum_annotations,
                  "description": description}
        if existing is None:
            try:
                return dict(self.request("POST", "/api/projects/", body={
                    "title": title, **wanted,
                    # Each photo goes to `maximum_annotations` different people; show the model's suggestion.
                    "show_collab_predictions": True, "show_skip_button": False,
                    "sampling": "Uniform sampling", "is_published": True,
                }))
            except LabelStudioApiError as exc:
                # A concurrent creator won the race (the title is unique per creator): adopt its project.
                found = self.find_project(title) if exc.status == 400 else None
                if found is None:
                    raise
                existing = found
        # Label Studio stores the config without surrounding whitespace; compare it so, or every call would PATCH.
        changed = {k: v for k, v in wanted.items()
                   if (str(existing.get(k) or "").strip() != v.strip() if isinstance(v, str) else existing.get(k) != v)}
        if changed:
            existing = dict(self.request("PATCH", f"/api/projects/{existing['id']}/", body=changed))
        return existing

    # ----------------------------------------------------------------------------------------------------- tasks

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create ``tasks`` (``{"data": ..., "predictions": [...]}``) in one request; returns their ids in order."""
        if not tasks:
            return []
        body = self.request("POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                            body=list(tasks))
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or len(ids) != len(tasks):
            raise LabelStudioError(f"import into project {project_id} returned {body!r}, not {len(tasks)} task ids")
        return [int(i) for i in ids]

    @staticmethod
    def _batch_query(batch_id: str, *, unfinished: bool = False) -> str:
        items: list[dict[str, Any]] = [
            {"filter": "filter:tasks:data.batch_id", "operator": "equal", "type": "String", "value": batch_id}]
        if unfinished:
            # `completed_at` is empty exactly while the task lacks its `maximum_annotations` answers (is_labeled).
            items.append({"filter": "filter:tasks:completed_at", "operator": "empty", "type": "Datetime",
                          "value": True})
        return json.dumps({"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]})

    def count_batch_tasks(self, project_id: int, batch_id: str, *, unfinished: bool = False) -> int:
        """How many tasks the batch has (``unfinished``: that still lack answers), counted by the server.

        Two of these are the completion check: one small request each, whatever the batch size.
        """
        body = self.request("GET", "/api/tasks/", params={
            "project": project_id, "resolve_uri": "false", "page": 1, "page_size": 1,
            "query": self._batch_query(batch_id, unfinished=unfinished)})
        total = body.get("total") if isinstance(body, dict) else None
        if not isinstance(total, int):
            raise LabelStudioError(f"task list of project {project_id} has no total: {str(body)[:200]}")
        return total

    def tasks_of_batch(self, project_id: int, batch_id: str, *, annotations: bool = True) -> list[dict[str, Any]]:
        """Every task of the batch (``data.batch_id``), oldest first, with its annotations and predictions unless
        ``annotations`` is False (the submission's idempotency check needs only the photo ids, and is faster so)."""
        params: dict[str, Any] = {"project": project_id, "resolve_uri": "false",
                                  "query": self._batch_query(batch_id)}
        if annotations:
            params["fields"] = "all"
        tasks = [dict(t) for t in self._pages("/api/tasks/", params, "tasks")]
        # The filter runs in the server; checking again here keeps a silently ignored filter from mixing batches.
        return [t for t in tasks if (t.get("data") or {}).get("batch_id") == batch_id]

    def delete_tasks(self, project_id: int, task_ids: Sequence[int]) -> int:
        """Delete tasks by id (with their annotations); returns how many the server deleted."""
        deleted = 0
        ids = [int(i) for i in task_ids]
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk = ids[start : start + DELETE_CHUNK]
            body = self.request("POST", "/api/dm/actions/", params={"id": "delete_tasks", "project": project_id},
                                body={"selectedItems": {"all": False, "included": chunk}})
            deleted += int(body.get("processed_items", len(chunk))) if isinstance(body, dict) else len(chunk)
        return deleted

    def create_annotation(
        self, task_id: int, result: list[dict[str, Any]], *, completed_by: int | None = None, lead_time: float = 1.0
    ) -> dict[str, Any]:
        """Submit an annotation, as the token's user or (admin only) on behalf of ``completed_by``.

        Used by the tests and the local demo's simulated taxonomists; people answer in the browser.
        """
        body: dict[str, Any] = {"result": result, "lead_time": lead_time}
        if completed_by is not None:
            body["completed_by"] = completed_by
        return dict(self.request("POST", f"/api/tasks/{task_id}/annotations/", body=body))

    # -------------------------------------------------------------------------------------------------- storage

    def ensure_s3_storage(
        self,
        project_id: int,
        *,
        bucket: str,
        prefix: str,
        region: str,
        presign_ttl_minutes: int,
        endpoint_url: str | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The project's S3 source storage on ``bucket``/``prefix``, created when missing, kept up to date.

        Tasks carry ``s3://`` URIs of the labeling copies; with this storage Label Studio answers the browser with a
        presigned URL valid ``presign_ttl_minutes`` (never the object itself, never a long-lived link). No
        credentials means the server's own (the ECS task role, which may read only the labeling copies); it is
        never synced (tasks come from the pipeline's import, not from listing the bucket).

        Raises:
            LabelStudioApiError: the server could not reach the bucket with its credentials (400).
        """
        wanted: dict[str, Any] = {
            "bucket": bucket, "prefix": prefix, "region_name": region, "presign": True,
            "presign_ttl": presign_ttl_minutes, "use_blob_urls": False, "recursive_scan": True,
            "title": f"labeling copies s3://{bucket}/{prefix}",
        }
        if endpoint_url:
            wanted["s3_endpoint"] = endpoint_url
        for storage in self.request("GET", "/api/storages/s3/", params={"project": project_id}) or []:
            if storage.get("bucket") == bucket and (storage.get("prefix") or "") == prefix:
                if any(storage.get(k) != v for k, v in wanted.items()):
                    return dict(self.request("PATCH", f"/api/storages/s3/{storage['id']}",
                                             body={**wanted, **dict(credentials or {})}))
                return dict(storage)
        return dict(self.request("POST", "/api/storages/s3/",
                                 body={"project": project_id, **wanted, **dict(credentials or {})}))

    # -------------------------------------------------------------------------------------------------- webhooks

    def ensure_webhook(
        self, project_id: int, url: str, headers: Mapping[str, str], *,
        actions: Sequence[str] = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"),
    ) -> dict[str, Any]:
        """The project's webhook to ``url``, created when missing; headers and actions are kept up to date.

        ``send_payload`` is off: the receiver re-reads the batch through the API, so the payload (annotation,
        task and project, possibly large) would only be traffic, and the webhook cannot leak photo data.
        """
        wanted = {"url": url, "headers": dict(headers), "actions": list(actions), "send_payload": False,
                  "send_for_all_actions": False, "is_active": True}
        hooks = self.request("GET", "/api/webhooks/", params={"project": project_id}) or []
        for hook in hooks:
            if hook.get("url") == url and hook.get("project") == project_id:
                if any(hook.get(k) != v for k, v in wanted.items() if k != "actions") or \
                        sorted(hook.get("actions") or []) != sorted(actions):
                    return dict(self.request("PATCH", f"/api/webhooks/{hook['id']}/", body=wanted))
                return dict(hook)
        return dict(self.request("POST", "/api/webhooks/", body={"project": project_id, **wanted}))

    # ----------------------------------------------------------------------------------------------------- users

    def find_user(self, email: str) -> dict[str, Any] | None:
        """The organisation member with ``email`` (case-insensitive), or None."""
        wanted = email.strip().lower()
        users = self.request("GET", "/api/users/") or []
        for user in users if isinstance(users, list) else users.get("results", []):
            if str(user.get("email", "")).lower() == wanted:
                return dict(user)
        return None

    def ensure_user(self, email: str, first_name: str = "", last_name: str = "") -> dict[str, Any]:
        """The account of ``email`` in the admin's organisation, created when missing (idempotent)."""
        email = email.strip()
        if "@" not in email:
            raise ValueError(f"not an e-mail address: {email!r}")
        found = self.find_user(email)
        if found is not None:
            return found
        return dict(self.request("POST", "/api/users/", body={
            "email": email, "username": email, "first_name": first_name, "last_name": last_name,
        }))
