"""``/locks``: "My locks" - the instrument locks in force, and Release.

A submission takes its submitter's lock on the instrument (CRDS's rule: one user per
instrument, one instrument per user); confirm, cancel, a BAD FILES or FAIL outcome and
logout give it back, and it expires ``lock_timeout`` after the last activity. This page
shows the signed-in user the lock they hold (instrument, since when, until when, the
submission that took it) with a Release button, and every other lock in force with its
holder - so a submitter refused with "already holds the lock" can see why and free it.

Release is a POST carrying the site's CSRF token (`crds_events.web.pages.auth`). The rules
are the domain's (`crds_events.accounts.locks.release_lock`, `users.can`): a user releases
their own lock; another user's lock only with the ``release_lock`` right over others
(admins); anyone else gets 403 naming the holder, and nothing is recorded.

`my_lock` is also a template global: the submit form says which instrument the user holds
and until when (``forms/_my_lock.html``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, abort, flash, g, jsonify, redirect, request, url_for

from crds_events.accounts import locks, users
from crds_events.web import get_state
from crds_events.web.pages.auth import login_required, register_error_pages
from crds_events.web.pages.common import log, respond

__all__ = ["bp", "register", "my_lock", "lock_rows", "when"]

bp = Blueprint("locks", __name__)


def when(moment: datetime) -> str:
    """A lock time as people read it: ``2025-01-31 14:05 UTC``."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _row(lock: locks.Lock, user: users.User | None) -> dict[str, Any]:
    mine = user is not None and lock.owner == user.name
    return {
        "instrument": lock.instrument, "owner": lock.owner, "mine": mine,
        "expires_at": locks.format_time(lock.expires_at), "until": when(lock.expires_at),
        "acquired_at": lock.acquired_at,
        "since": when(locks.parse_time(lock.acquired_at)) if lock.acquired_at else "",
        "submission_id": lock.submission_id,
        "can_release": user is not None and users.can(user, "release_lock", owner=lock.owner),
    }


def lock_rows(user: users.User | None) -> list[dict[str, Any]]:
    """The locks in force now (expired ones are free already), the user's first."""
    rows = [_row(lock, user) for lock in locks.list_locks(log())]
    return sorted(rows, key=lambda r: (not r["mine"], r["instrument"]))


def my_lock() -> dict[str, Any] | None:
    """The signed-in user's lock in force (None: none, or anonymous)."""
    user = g.get("user")
    if user is None:
        return None
    return next((r for r in lock_rows(user) if r["mine"]), None)


@bp.route("/locks")
@bp.route("/locks.json", endpoint="page_json")
@login_required
def page() -> Any:
    rows = lock_rows(g.user)
    if request.path.endswith(".json"):
        return jsonify(locks=rows)
    mine = [r for r in rows if r["mine"]]
    others = [r for r in rows if not r["mine"]]
    return respond("forms/locks.html", {"locks": rows}, mine=mine, others=others,
                   timeout_hours=f"{get_state().settings.lock_timeout / 3600:.3g}")


@bp.route("/locks/<instrument>/release", methods=["POST"])
@login_required
def release(instrument: str) -> Any:
    user = g.user
    name = instrument.strip().lower()
    try:
        holder = locks.current_lock(log(), name)
    except locks.LockError as exc:  # not an instrument name
        abort(404, str(exc))
    if holder is None:
        flash(f"{name.upper()} is not locked: nothing to release.", "info")
        return redirect(url_for("locks.page"))
    others = holder.owner != user.name
    if others and not users.can(user, "release_lock", owner=holder.owner):
        abort(403, f"the lock on {name.upper()} is held by {holder.owner}; only they or "
                   f"an admin may release it")
    try:
        released = locks.release_lock(get_state().store, name, user.name, force=others)
    except locks.LockNotHeldError as exc:  # changed hands since we looked
        abort(409, str(exc))
    except locks.LockError as exc:
        abort(409, str(exc))
    if released is None:
        flash(f"{name.upper()} was released meanwhile: nothing to do.", "info")
    elif released.owner == user.name:
        flash(f"Released your lock on {name.upper()}.", "info")
    else:
        flash(f"Released {released.owner}'s lock on {name.upper()}.", "info")
    return redirect(url_for("locks.page"))


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(my_lock, "my_lock")


# Once per blueprint (at import): a blueprint may be registered on several apps.
register_error_pages(bp)
