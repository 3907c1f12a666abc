"""The human-facing web pages: one blueprint per area, sharing ``templates/base.html``.

`register_pages(app)` registers every page blueprint that exists: the public ones of this
package (home, contexts, browse, catalog, activity, best references, the event timeline,
plots) and the authenticated ones other modules provide (``auth``, ``submit``,
``operate``, ``deliveries``, ``health``) when they are present. Each module exposes ``bp`` (a Blueprint);
a module may instead expose ``register(app)`` when it needs more than a blueprint.

Navigation entries name the endpoint they link to; an entry whose endpoint is not (yet)
registered is shown greyed out instead of breaking every page with a BuildError.
"""

from __future__ import annotations

import importlib
import importlib.util

from flask import Flask, g, render_template, request
from werkzeug.exceptions import HTTPException

from crds_events.web import get_state

__all__ = ["register_pages", "NAV", "PUBLIC_MODULES", "OPTIONAL_MODULES"]

# (label, candidate endpoints: the first registered one is linked)
NAV: list[tuple[str, tuple[str, ...]]] = [
    ("Home", ("home.index",)),
    ("Contexts", ("contexts.all_contexts",)),
    ("History", ("contexts.history",)),
    ("Catalog", ("catalog.search",)),
    ("Activity", ("activity.recent",)),
    ("Submissions", ("operate.submissions", "submit.history", "activity.submissions")),
    ("Deliveries", ("operate.deliveries", "activity.deliveries")),
    ("Pipelines", ("operate.pipelines", "activity.pipelines")),
    ("Reprocessing", ("operate.reprocessing", "activity.reprocessing")),
    ("E-mails", ("mails.index", "operate.emails", "activity.emails")),
    ("Events", ("timeline.events",)),
    ("Best refs", ("bestrefs.dataset",)),
    ("Diff", ("contexts.diff_form",)),
    ("My locks", ("locks.page",)),
    ("Plots", ("plots.index",)),
]

PUBLIC_MODULES = ("home", "contexts", "browse", "catalog", "activity", "bestrefs",
                  "timeline", "plotpages", "badness", "refdiff")
OPTIONAL_MODULES = ("auth", "submit", "operate", "deliveries", "health", "locks", "mails")


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


def _error_page(exc: HTTPException):
    """400/404 of a page: an HTML page (or JSON for a ``.json`` twin) with the message."""
    code = exc.code or 500
    message = exc.description or exc.name
    if request.path.endswith(".json"):
        return {"error": message, "status": code}, code
    return render_template("error.html", code=code, name=exc.name, message=message), code


def _may_open(view, user) -> bool:
    """May ``user`` (None: anonymous) open ``view``? Views guarded by `auth.login_required`
    / `auth.role_required` say so in attributes; a link they would bounce is not shown."""
    if not getattr(view, "login_needed", False):
        return True
    if user is None:
        return False
    action = getattr(view, "required_action", "")
    if not action:
        return True
    from crds_events.accounts import users

    return users.can(user, action)


def register_pages(app: Flask) -> None:
    """Register the page blueprints, the navigation and the page error handlers on ``app``."""
    from crds_events.web.pages.words import register_filters

    register_filters(app)
    for name in PUBLIC_MODULES + OPTIONAL_MODULES:
        if not _module_exists(name):
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        if hasattr(module, "register"):
            module.register(app)
        else:
            bp = module.bp
            if not bp._got_registered_once:  # blueprints are module globals: set up once
                for code in (400, 404):
                    bp.register_error_handler(code, _error_page)
            app.register_blueprint(bp)

    @app.context_processor
    def _page_context() -> dict:
        views = app.view_functions
        items = []
        user = g.get("user")
        for label, candidates in NAV:
            endpoint = next((e for e in candidates if e in views), None)
            if endpoint is not None and not _may_open(views[endpoint], user):
                continue  # anonymous users see only the links they can open
            items.append((endpoint, label))
        return {
            "nav_items": items,
            "observatory": get_state().settings.observatory,
            "user": g.get("user"),
            # the login/logout box of the authenticated pages, once they are registered
            "userbox_partial": "forms/_userbox.html" if "auth.login" in views else None,
        }
