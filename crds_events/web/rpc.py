"""JSON-RPC 1.0 at ``/json/``, the protocol the ``crds`` client speaks.

The client POSTs ``{"jsonrpc": "1.0", "method": M, "params": [...], "id": I}`` to
``<server>/json/<M>/<I>/`` (the path after ``/json/`` is decoration; any content type) and
reads ``result`` and ``error`` from the reply: *both* keys must be present, ``error`` is
None or ``{"message": text}``, and the HTTP status is 200 whatever happened, so the client
reports the message instead of an HTML error page. Errors here follow that rule for every
failure: malformed JSON, a missing or unknown method, wrong parameters, an oversized body,
a 404/405 below ``/json/``, and unexpected exceptions (logged with the traceback).

Large results are sent in the client's ``crds_encoded`` form (JSON, gzip, base64:
``{"crds_encoded": "1.0", "crds_payload": ...}``), which every ``crds`` client since 7.x
decodes transparently; ``get_server_info`` is never encoded as a whole because clients and
tools read its keys directly (its ``download_metadata`` field is encoded on its own).
"""

from __future__ import annotations

import base64
import gzip
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from crds_events.errors import CrdsEventsError
from crds_events.store.dialect import DatabaseUnavailable
from crds_events.web.internal_errors import UNAVAILABLE
from crds_events.web.jsoninput import JsonInputError, loads_bounded

__all__ = ["bp", "RpcError", "rpc_method", "METHODS", "crds_encode", "crds_decode",
           "register_error_handlers", "ENCODE_THRESHOLD", "warn"]

log = logging.getLogger(__name__)

bp = Blueprint("rpc", __name__, url_prefix="/json")

# Results whose JSON is larger than this are sent crds_encoded (gzip shrinks file lists and
# bestrefs maps ~10x; below this size the encoding costs more than it saves).
ENCODE_THRESHOLD = 64 * 1024
_NEVER_ENCODED = frozenset({"get_server_info"})
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class RpcError(CrdsEventsError):
    """A failure reported to the caller as ``{"message": str(exc)}``."""


METHODS: dict[str, Callable[..., Any]] = {}


def rpc_method(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expose ``func`` as the JSON-RPC method of the same name."""
    METHODS[func.__name__] = func
    return func


def warn(message: str) -> None:
    """Tell the caller something about its answer that is not an error (e.g. the context it
    got is not exactly the one asked for): logged here, and listed under ``warnings`` in the
    reply (beside ``result``, ``error`` and ``id``, which clients read; they ignore it)."""
    log.warning("JSON-RPC %s: %s", request.path, message)
    g.setdefault("rpc_warnings", []).append(message)


def crds_encode(obj: Any) -> dict[str, str]:
    """``obj`` as JSON, gzipped, base64: what ``crds.client.proxy.crds_decode`` reverses."""
    payload = base64.b64encode(gzip.compress(json.dumps(obj).encode("utf-8"), 6))
    return {"crds_encoded": "1.0", "crds_payload": payload.decode("ascii")}


def crds_decode(msg: Any) -> Any:
    """The inverse of `crds_encode`; anything not encoded is returned as it is."""
    if isinstance(msg, dict) and "crds_encoded" in msg:
        return json.loads(gzip.decompress(base64.b64decode(msg["crds_payload"])))
    return msg


def _reply(result: Any = None, error: str | None = None, ident: Any = None) -> Response:
    body = {"result": result, "error": None if error is None else {"message": error},
            "id": ident}
    return Response(_dumps(body), status=200, mimetype="application/json")


def _read_body() -> bytes:
    """The request body, refusing more than ``RPC_MAX_BODY`` bytes (read at most that + 1)."""
    limit = current_app.config["RPC_MAX_BODY"]
    length = request.content_length
    if length is not None and length > limit:
        raise RpcError(f"request body of {length} bytes exceeds the limit of {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise RpcError(f"request body exceeds the limit of {limit} bytes")
    return data


def _parse(data: bytes) -> tuple[str, list | dict, Any]:
    if not data.strip():
        raise RpcError("empty request: expected a JSON-RPC object with method, params, id")
    try:  # bounded: a deeply nested body is refused, not a RecursionError
        message = loads_bounded(data, "request", max_bytes=current_app.config["RPC_MAX_BODY"])
    except JsonInputError as exc:
        raise RpcError(f"malformed JSON-RPC request: {exc}") from None
    if not isinstance(message, dict):
        raise RpcError("malformed JSON-RPC request: expected a JSON object")
    ident = message.get("id")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise _WithId(ident, "malformed JSON-RPC request: 'method' must be a non-empty string")
    params = message.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list | dict):
        raise _WithId(ident, f"{method}: 'params' must be a list or an object, "
                             f"not {type(params).__name__}")
    return method, params, ident


class _WithId(RpcError):
    def __init__(self, ident: Any, message: str):
        super().__init__(message)
        self.ident = ident


def _call(method: str, params: list | dict) -> Any:
    func = METHODS.get(method)
    if func is None:
        raise RpcError(f"unknown method {method!r}")
    signature = inspect.signature(func)
    try:
        bound = (signature.bind(**params) if isinstance(params, dict)
                 else signature.bind(*params))
    except TypeError as exc:
        expected = ", ".join(signature.parameters)
        raise RpcError(f"{method}({expected}): wrong parameters: {exc}") from None
    return func(*bound.args, **bound.kwargs)


@bp.route("/", methods=["GET", "POST"], defaults={"decoration": ""}, strict_slashes=False)
@bp.route("/<path:decoration>", methods=["GET", "POST"])
def dispatch(decoration: str) -> Response:
    if request.method != "POST":
        return _reply(error="JSON-RPC calls are POSTed to /json/")
    ident = None
    try:
        method, params, ident = _parse(_read_body())
        result = _call(method, params)
    except _WithId as exc:
        return _reply(error=str(exc), ident=exc.ident)
    except RpcError as exc:
        return _reply(error=str(exc), ident=ident)
    except HTTPException as exc:
        return _reply(error=f"{exc.name}: {exc.description}", ident=ident)
    except DatabaseUnavailable as exc:  # PostgreSQL restarting or unreachable: not a bug
        log.warning("JSON-RPC %s: %s", request.path, exc)
        return _reply(error=UNAVAILABLE, ident=ident)
    except Exception as exc:  # noqa: BLE001 - the client must get an error object
        log.exception("JSON-RPC %s failed", request.path)
        # the type only: an exception's text can name server paths (the log has it all)
        return _reply(error=f"internal error ({type(exc).__name__}); the server log has the "
                            f"details", ident=ident)
    warnings = g.pop("rpc_warnings", None)
    if warnings:
        body = {"result": result, "error": None, "id": ident, "warnings": warnings}
        return Response(_dumps(body), status=200, mimetype="application/json")
    if method not in _NEVER_ENCODED:
        text = _dumps(result)
        if len(text) > ENCODE_THRESHOLD:
            result = crds_encode(result)
        else:
            body = '{"result":' + text + ',"error":null,"id":' + _dumps(ident) + "}"
            return Response(body, status=200, mimetype="application/json")
    return _reply(result=result, ident=ident)


def _json_error_for_rpc_paths(exc: HTTPException) -> Any:
    """Below /json/ every HTTP error is a JSON-RPC error with status 200; elsewhere the
    ordinary error page."""
    if request.path == "/json" or request.path.startswith("/json/"):
        return _reply(error=f"{exc.code} {exc.name}: {exc.description}")
    return exc


def register_error_handlers(app: Flask) -> None:
    """404/405/413 under /json/ answer JSON-RPC errors (the blueprint's handlers do not see
    routing errors, so these are registered on the app, scoped by path)."""
    for code in (400, 404, 405, 413):
        app.register_error_handler(code, _json_error_for_rpc_paths)


# The methods register themselves on import (`methods` imports the modules of the other
# concepts at its end).
from crds_events.web import methods as _methods  # noqa: E402,F401
