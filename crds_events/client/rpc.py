"""A small JSON-RPC 1.0 client for a CRDS server (ours or STScI's), on the standard library.

The CRDS protocol: POST a JSON body ``{"jsonrpc": "1.0", "method", "params", "id"}`` to
``<server>/json/<method>/<id>/`` (the suffix only makes server logs readable); the reply holds
``result``, ``error`` and ``id``. An error is ``{"message": ...}`` (HTML-escaped by some
servers). Large results may come as ``{"crds_encoded": "1.0", "crds_payload": base64(gzip(
json))}``, which `call` decodes transparently.
"""

from __future__ import annotations

import base64
import gzip
import html
import itertools
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from crds_events.errors import CrdsEventsError

__all__ = [
    "DEFAULT_TIMEOUT",
    "RpcClient",
    "RpcClientError",
    "RpcServiceError",
    "RpcTransportError",
    "call",
    "crds_decode",
    "normalise_server_url",
]

DEFAULT_TIMEOUT = 30.0
_USER_AGENT = "crds-events-client"


class RpcClientError(CrdsEventsError):
    """Anything that went wrong talking to a CRDS server."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url


class RpcServiceError(RpcClientError):
    """The server answered with a JSON-RPC error; `message` is the server's own text."""


class RpcTransportError(RpcClientError):
    """No usable answer: connection refused, timeout, HTTP error status, not JSON-RPC."""


def normalise_server_url(server_url: str) -> str:
    """``http://host:port[/prefix]`` without a trailing slash; a clear error if not a URL."""
    parsed = urllib.parse.urlsplit(server_url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RpcClientError(f"server URL {server_url!r}: expected http(s)://host[:port][/path]")
    if parsed.query or parsed.fragment:
        raise RpcClientError(f"server URL {server_url!r}: no query or fragment allowed")
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"),
                                    "", ""))


def crds_decode(value: Any) -> Any:
    """Undo the server's optional ``crds_encoded`` gzip+base64 wrapping; else unchanged."""
    if isinstance(value, dict) and "crds_encoded" in value:
        try:
            payload = gzip.decompress(base64.b64decode(value["crds_payload"].encode("ascii")))
            return json.loads(payload.decode("utf-8"))
        except (KeyError, AttributeError, ValueError, OSError) as exc:
            raise RpcTransportError(f"malformed crds_encoded payload: {exc}") from None
    return value


class RpcClient:
    """JSON-RPC calls and file downloads against one server. Thread-safe (each call opens
    its own connection), so a download pool can share one client."""

    def __init__(self, server_url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 token: str | None = None) -> None:
        self.server_url = normalise_server_url(server_url)
        self.json_url = self.server_url + "/json/"
        self.timeout = timeout
        self.token = token
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._prefix = f"{_USER_AGENT}-{os.getpid()}"

    def __repr__(self) -> str:
        return f"RpcClient({self.server_url!r})"

    def _next_id(self) -> str:
        with self._ids_lock:
            return f"{self._prefix}-{next(self._ids):08x}"

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        headers.update(extra or {})
        return headers

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method(*params)``; the decoded result, or `RpcServiceError` carrying the
        server's message, or `RpcTransportError` when no JSON-RPC answer came back."""
        request_id = self._next_id()
        body = json.dumps({"jsonrpc": "1.0", "method": method, "params": list(params),
                           "id": request_id}).encode("utf-8")
        url = f"{self.json_url}{urllib.parse.quote(method, safe='')}/{request_id}/"
        request = urllib.request.Request(
            url, data=body, method="POST",
            headers=self._headers({"Content-Type": "application/json"}))
        raw = self._read(request, method)
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            snippet = raw[:120].decode("utf-8", "replace").strip()
            raise RpcTransportError(f"{method}: the server's answer is not JSON: {snippet!r}",
                                    method=method, url=url) from None
        if not isinstance(reply, dict) or "result" not in reply:
            raise RpcTransportError(f"{method}: not a JSON-RPC answer: {str(reply)[:120]!r}",
                                    method=method, url=url)
        error = reply.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise RpcServiceError(html.unescape(str(message)), method=method, url=url)
        return crds_decode(reply["result"])

    def _read(self, request: urllib.request.Request, method: str) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            # Some servers answer errors with a non-200 status but a JSON-RPC body.
            body = exc.read()
            exc.close()
            if body.lstrip().startswith(b"{"):
                return body
            raise RpcTransportError(f"{method}: HTTP {exc.code} {exc.reason} from {request.full_url}",
                                    method=method, url=request.full_url) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcTransportError(f"{method}: cannot reach {self.server_url}: {reason}",
                                    method=method, url=request.full_url) from None

    def post(self, url: str, data: bytes | Iterable[bytes], *,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST ``data`` (bytes, or chunks with a Content-Length header) to ``url``; return
        (HTTP status, decoded JSON body) whatever the status, so an endpoint's JSON error
        message reaches the caller. `RpcTransportError` when the body is not JSON."""
        full = url if "://" in url else self.server_url + "/" + url.lstrip("/")
        request = urllib.request.Request(full, data=data, method="POST",
                                         headers=self._headers(headers))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcTransportError(f"{full}: cannot reach the server: {reason}",
                                    url=full) from None
        try:
            return status, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            snippet = raw[:120].decode("utf-8", "replace").strip()
            raise RpcTransportError(f"{full}: HTTP {status}, not JSON: {snippet!r}",
                                    url=full) from None

    @contextmanager
    def open_url(self, url: str, *, data: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 method: str | None = None) -> Iterator[BinaryIO]:
        """Open ``url`` (absolute, or relative to the server) for streaming reading.
        HTTP errors become `RpcTransportError` naming the URL and the status."""
        full = url if "://" in url else self.server_url + "/" + url.lstrip("/")
        request = urllib.request.Request(full, data=data, method=method,
                                         headers=self._headers(headers))
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise RpcTransportError(f"{full}: HTTP {exc.code} {exc.reason}", url=full) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcTransportError(f"{full}: cannot reach the server: {reason}",
                                    url=full) from None
        try:
            yield response
        finally:
            response.close()


def call(server_url: str, method: str, *params: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """One-shot `RpcClient(server_url).call(method, *params)`."""
    return RpcClient(server_url, timeout=timeout).call(method, *params)
