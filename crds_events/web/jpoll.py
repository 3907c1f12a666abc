"""jpoll channel keys: the unguessable names under which a submission's progress is read.

CRDS's monitor reads a submission's messages with the JSON-RPC ``jpoll_pull_messages(key)``
and nothing else: whoever holds the key reads the progress (which is personal data), so the
key must not be derivable from what others know, such as the submission id shown on pages.
A key is ``<submission id>.<mac>``, the mac an HMAC-SHA256 of the id under the root's web
secret (`crds_events.web.pages.auth.load_secret_key`), 128 bits in hex. Every server process
of the root computes the same keys with no table to share, and only the server can make one.
The characters fit CRDS's process-key pattern (``[a-zA-Z0-9:.-]{1,128}``).

``/jpoll/open_channel`` (`crds_events.web.crds_submit`) reserves a submission id before the
files are posted and answers its key, so the monitor can start before the submission does.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app

from crds_events.submissions.dropbox import is_drop_id, new_submission_id
from crds_events.web import get_state

__all__ = ["channel_key", "key_for", "submission_of", "new_channel"]

_MAC_HEX = 32  # 128 bits


def _secret() -> bytes:
    key = current_app.secret_key
    if not key:  # the pages (and so the sessions) are not registered: read the key file
        from crds_events.web.pages.auth import load_secret_key

        key = load_secret_key(get_state().settings.root)
    return key if isinstance(key, bytes) else str(key).encode()


def _mac(secret: bytes, submission_id: str) -> str:
    digest = hmac.new(secret, b"jpoll\0" + submission_id.encode(), hashlib.sha256)
    return digest.hexdigest()[:_MAC_HEX]


def key_for(secret: bytes, submission_id: str) -> str:
    """The jpoll key of ``submission_id`` under the root's web secret ``secret`` (for
    tools that hold the root, outside a request)."""
    return f"{submission_id}.{_mac(secret, submission_id)}"


def channel_key(submission_id: str) -> str:
    """The jpoll key of ``submission_id`` (give it only to whoever submitted it)."""
    return key_for(_secret(), submission_id)


def submission_of(key: str) -> str | None:
    """The submission id ``key`` was made for (None: not a key this server made)."""
    if not isinstance(key, str) or len(key) > 128:
        return None
    submission_id, dot, mac = key.rpartition(".")
    if not dot or not submission_id or len(mac) != _MAC_HEX:
        return None
    if not hmac.compare_digest(mac, _mac(_secret(), submission_id)):
        return None
    return submission_id


def new_channel() -> tuple[str, str]:
    """A fresh submission id reserved for a drop to come, and its jpoll key."""
    submission_id = new_submission_id()
    assert is_drop_id(submission_id)
    return submission_id, channel_key(submission_id)
