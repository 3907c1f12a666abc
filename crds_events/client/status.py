"""What `crds-events list --server URL` shows: a server's status and its file lists."""

from __future__ import annotations

from typing import Any

from crds_events.client.rpc import RpcClient

__all__ = ["remote_list", "remote_status"]

_CONTEXT_KEYS = (("Latest Context", "latest_context"),
                 ("Operational Context", "operational_context"),
                 ("Edit Context", "edit_context"), ("Versions Context", "versions_context"),
                 ("Build Context", "build_context"))


def _version(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("str") or value.get("version") or value)
    return str(value)


def remote_status(server_url: str, *, timeout: float = 30.0) -> dict[str, object]:
    """Ordered ``{label: value}`` describing the server, from ``get_server_info``."""
    client = RpcClient(server_url, timeout=timeout)
    info = client.call("get_server_info")
    if not isinstance(info, dict):
        raise ValueError(f"{client.server_url}: get_server_info answered "
                         f"{type(info).__name__}, not a dict")
    status: dict[str, object] = {"CRDS Server": client.server_url,
                                 "Observatory": info.get("observatory", "unknown")}
    for label, key in _CONTEXT_KEYS:
        if info.get(key):
            status[label] = info[key]
    status["Last Synced"] = info.get("last_synced", "unknown")
    status["Server CRDS Version"] = _version(info.get("crds_version", "unknown"))
    status["Bad Files"] = len(info.get("bad_files_list") or [])
    status["Force Remote Mode"] = bool(info.get("force_remote_mode", False))
    return status


def remote_list(server_url: str, what: str, *, timeout: float = 30.0) -> list[str]:
    """Names the server lists: ``mappings``, ``references`` or ``contexts`` (.pmaps)."""
    client = RpcClient(server_url, timeout=timeout)
    info = client.call("get_server_info")
    observatory = info.get("observatory") if isinstance(info, dict) else None
    if what == "references":
        names = client.call("list_references", observatory, "*")
    elif what == "contexts":
        names = client.call("list_mappings", observatory, "*.pmap")
    elif what == "mappings":
        names = client.call("list_mappings", observatory, "*")
    else:
        raise ValueError(f"cannot list {what!r} from a server")
    if not isinstance(names, list):
        raise ValueError(f"{client.server_url}: the {what} list is {type(names).__name__}")
    return sorted(str(n) for n in names)
