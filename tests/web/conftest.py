"""Fixtures shared by the web tests.

``chromium``: a headless chromium for the browser tests (`fixtures.browser`). ``jwst``: a
test client over the small generated JWST history (`fixtures.pages.jwst_app`) and its
settings. ``client``: a test client of the app over the module's own ``seeded`` root
(settings, store, work), which each JSON-RPC / download test module defines.
"""

from __future__ import annotations

import pytest
from fixtures.browser import launch_chromium
from fixtures.pages import jwst_app

from crds_events.web import create_app


@pytest.fixture
def chromium():
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def jwst(tmp_path):
    app, settings = jwst_app(tmp_path)
    return app.test_client(), settings


@pytest.fixture
def client(seeded):
    settings, store, _ = seeded
    return create_app(settings, store, {"TESTING": True}).test_client()
