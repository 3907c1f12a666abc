"""Remote submission: upload files to a crds-events server, follow the processing, decide.

The server side is ``crds_events/web/upload.py``. Every request carries the user's API
token (``Authorization: Token <token>``, from `crds-events user token`). The upload is one
multipart POST, streamed from the files (never read whole into memory); the server fills
the user's ingest directory and answers the submission id and the key of its progress
channel, which `submit_remote` then polls with the JSON-RPC ``jpoll_pull_messages``
method, as the crds client's submission monitor does.
"""

from __future__ import annotations

import json
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crds_events.client.rpc import RpcClient, RpcClientError, RpcServiceError
from crds_events.errors import CrdsEventsError

__all__ = [
    "RemoteDecision",
    "RemoteSubmission",
    "RemoteSubmitError",
    "UPLOAD_PATH",
    "cancel_remote",
    "confirm_remote",
    "follow_remote",
    "force_remote",
    "logout_remote",
    "submit_remote",
]

UPLOAD_PATH = "/upload/submit"
DECISION_PATH = "/upload/submissions/{submission_id}/{action}"
LOGOUT_PATH = "/upload/logout"
_CHUNK = 1 << 20
# jpoll `done` statuses, as the crds submission monitor reads them
_DONE_COMPLETED, _DONE_FAILED, _DONE_CANCELLED = 0, 1, 3


class RemoteSubmitError(CrdsEventsError):
    """The server refused the request (message: the server's reason) or was unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RemoteSubmission:
    submission_id: str
    jpoll_key: str
    files: list[str]
    state: str = "started"  # then ready | rejected | failed | cancelled | timeout
    new_context: str = ""
    reason: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.state == "ready"


@dataclass(frozen=True)
class RemoteDecision:
    submission_id: str
    state: str
    new_context: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


def _multipart(files: list[Path], fields: Mapping[str, Any],
               boundary: str) -> tuple[list[bytes | Path], int]:
    """The multipart body as parts (bytes, or a Path streamed later) and its length."""
    dash = f"--{boundary}\r\n".encode()
    parts: list[bytes | Path] = [
        dash, b'Content-Disposition: form-data; name="fields"\r\n',
        b"Content-Type: application/json\r\n\r\n",
        json.dumps(dict(fields)).encode("utf-8"), b"\r\n",
    ]
    for path in files:
        name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        parts += [dash,
                  f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                  .encode(),
                  f"Content-Type: {kind}\r\n\r\n".encode(), path, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in parts)
    return parts, length


def _stream(parts: list[bytes | Path]) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as handle:
                yield from iter(lambda h=handle: h.read(_CHUNK), b"")
        else:
            yield part


def _error_text(status: int, body: Any) -> str:
    if isinstance(body, dict) and body.get("error"):
        error = body["error"]
        return str(error.get("message", error) if isinstance(error, dict) else error)
    return f"HTTP {status}"


def submit_remote(server_url: str, token: str, files: Iterable[str | os.PathLike],
                  fields: Mapping[str, Any], wait: bool = False,
                  monitor: Callable[[str], None] | None = None, *, timeout: float = 600.0,
                  poll: float = 0.5, request_timeout: float = 120.0) -> RemoteSubmission:
    """Upload ``files`` with the manifest ``fields`` (deliverer, instrument, description,
    change_level, derive_from, kind, auto_rename, other_emails) as the token's user.

    Returns at once unless ``wait`` or ``monitor`` (called with each progress line) is
    given; then returns when the outcome is known (state ready, rejected or failed) or
    ``timeout`` seconds have passed (state "timeout"). `RemoteSubmitError` when refused.
    """
    if not token:
        raise RemoteSubmitError("--token: an API token is required (crds-events user token)")
    paths = [Path(f) for f in files]
    if not paths:
        raise RemoteSubmitError("no files to submit")
    for path in paths:
        if not path.is_file():
            raise RemoteSubmitError(f"{path}: no such file")
    client = RpcClient(server_url, timeout=request_timeout, token=token)
    boundary = f"crds-events-{uuid.uuid4().hex}"
    parts, length = _multipart(paths, fields, boundary)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(length)}
    try:
        status, body = client.post(UPLOAD_PATH, _stream(parts), headers=headers)
    except RpcClientError as exc:
        raise RemoteSubmitError(*_why_upload_broke(client, fields, exc)) from None
    if status != 200 or not isinstance(body, dict) or not body.get("submission_id"):
        raise RemoteSubmitError(f"{client.server_url}{UPLOAD_PATH}: refused: "
                                f"{_error_text(status, body)}", status)
    submission = RemoteSubmission(
        submission_id=str(body["submission_id"]),
        jpoll_key=str(body.get("jpoll_key") or body["submission_id"]),
        files=[str(n) for n in body.get("files", [p.name for p in paths])])
    if wait or monitor is not None:
        follow_remote(client, submission, monitor=monitor, timeout=timeout, poll=poll)
    return submission


def _why_upload_broke(client: RpcClient, fields: Mapping[str, Any],
                      exc: RpcClientError) -> tuple[str, int | None]:
    """A server refusing an upload (bad token, too large) may answer and close before the
    body is sent, so the client sees a broken connection instead of the answer. Ask again
    without the files to learn the reason; a refusal of the token explains it."""
    boundary = f"crds-events-{uuid.uuid4().hex}"
    parts, length = _multipart([], fields, boundary)
    try:
        status, body = client.post(UPLOAD_PATH, b"".join(_stream(parts)), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length)})
    except RpcClientError:
        return str(exc), None
    if status in (401, 403):
        return f"{client.server_url}{UPLOAD_PATH}: refused: {_error_text(status, body)}", status
    return (f"{exc} (the server closed the connection during the upload: are the files "
            "larger than its upload limit?)"), None


def follow_remote(server: str | RpcClient, submission: RemoteSubmission, *,
                  monitor: Callable[[str], None] | None = None, timeout: float = 600.0,
                  poll: float = 0.5) -> RemoteSubmission:
    """Poll ``jpoll_pull_messages`` until a done/fail/cancel message (or ``timeout``);
    fills ``submission``'s state, new_context, reason and messages."""
    client = server if isinstance(server, RpcClient) else RpcClient(server)
    deadline = time.monotonic() + timeout
    since: str | None = None
    while True:
        try:
            messages = client.call("jpoll_pull_messages", submission.jpoll_key, since)
        except RpcServiceError as exc:
            if "not found" not in exc.message.lower():  # a channel not yet open: wait
                raise RemoteSubmitError(f"jpoll {submission.jpoll_key}: {exc.message}") from None
            messages = []
        except RpcClientError as exc:
            raise RemoteSubmitError(f"jpoll {submission.jpoll_key}: {exc}") from None
        for message in messages if isinstance(messages, list) else []:
            if not isinstance(message, dict):
                continue
            if message.get("id") is not None:
                since = str(message["id"])
            if _handle(submission, message, monitor):
                return submission
        if time.monotonic() >= deadline:
            submission.state = "timeout"
            return submission
        time.sleep(poll)


def _handle(submission: RemoteSubmission, message: Mapping[str, Any],
            monitor: Callable[[str], None] | None) -> bool:
    """Record one jpoll message; True when it ends the submission's processing."""
    kind = str(message.get("type", ""))
    data = message.get("data")
    if kind in ("done", "fail", "cancel"):
        outcome = data if isinstance(data, dict) else {"result": data}
        result = outcome.get("result")
        if isinstance(result, dict):  # servers before CRDS's shape sent the outcome here
            pass
        elif any(k in outcome for k in ("state", "new_context", "reason")):
            # ours: CRDS's {"status", "result": ready URL or reason} plus the outcome
            result = outcome
        else:  # a CRDS server: the result is the ready URL (success) or the reason
            result = {} if outcome.get("status") == _DONE_COMPLETED else \
                {"reason": str(result or "")}
        status = outcome.get("status")
        default = {"done": "ready" if status in (None, _DONE_COMPLETED) else "failed",
                   "fail": "failed", "cancel": "cancelled"}[kind]
        if status == _DONE_CANCELLED:
            default = "cancelled"
        submission.state = str(result.get("state") or default).lower()
        submission.new_context = str(result.get("new_context") or "")
        submission.reason = str(result.get("reason") or result.get("error") or "")
        return True
    text = data if isinstance(data, str) else json.dumps(data)
    submission.messages.append(text)
    if monitor is not None:
        monitor(text if kind in ("log_message", "info", "") else f"{kind.upper()}: {text}")
    return False


def _decide(server_url: str, token: str, submission_id: str, action: str,
            body: Mapping[str, Any], timeout: float) -> RemoteDecision:
    if not token:
        raise RemoteSubmitError("--token: an API token is required (crds-events user token)")
    if not submission_id or "/" in submission_id or submission_id.startswith("."):
        raise RemoteSubmitError(f"submission id {submission_id!r}: not a submission id")
    client = RpcClient(server_url, timeout=timeout, token=token)
    path = DECISION_PATH.format(submission_id=submission_id, action=action)
    try:
        status, answer = client.post(path, json.dumps(dict(body)).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    except RpcClientError as exc:
        raise RemoteSubmitError(str(exc)) from None
    if status != 200 or not isinstance(answer, dict):
        raise RemoteSubmitError(f"submission {submission_id}: {action} refused: "
                                f"{_error_text(status, answer)}", status)
    return RemoteDecision(submission_id=str(answer.get("submission_id", submission_id)),
                          state=str(answer.get("state", action)),
                          new_context=str(answer.get("new_context") or ""), raw=answer)


def confirm_remote(server_url: str, token: str, submission_id: str, *,
                   timeout: float = 120.0) -> RemoteDecision:
    """Confirm your READY submission on the server (the new pmap becomes the edit context)."""
    return _decide(server_url, token, submission_id, "confirm", {}, timeout)


def force_remote(server_url: str, token: str, submission_id: str, *,
                 timeout: float = 120.0) -> RemoteDecision:
    """Confirm another team member's READY submission once their lock is gone."""
    return _decide(server_url, token, submission_id, "force", {}, timeout)


def logout_remote(server_url: str, token: str, *, timeout: float = 60.0) -> list[str]:
    """Release the instrument locks the token's user holds on the server (CRDS's
    ``crds submit --logout``); the instruments released."""
    if not token:
        raise RemoteSubmitError("--token: an API token is required (crds-events user token)")
    client = RpcClient(server_url, timeout=timeout, token=token)
    try:
        status, answer = client.post(LOGOUT_PATH, b"{}",
                                     headers={"Content-Type": "application/json"})
    except RpcClientError as exc:
        raise RemoteSubmitError(str(exc)) from None
    if status != 200 or not isinstance(answer, dict):
        raise RemoteSubmitError(f"logout refused: {_error_text(status, answer)}", status)
    return [str(name) for name in answer.get("released") or []]


def cancel_remote(server_url: str, token: str, submission_id: str, reason: str = "", *,
                  timeout: float = 120.0) -> RemoteDecision:
    """Cancel your READY submission on the server."""
    return _decide(server_url, token, submission_id, "cancel", {"reason": reason}, timeout)
