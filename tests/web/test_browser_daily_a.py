"""The daily web UX in a real browser (part A): Playwright drives Debian's chromium against
the app served by waitress on 127.0.0.1 over a real root (`fixtures.websites.WebSite`).

As a submitter: the lock a READY submission took is shown on the submit form and on "My
locks" and released there. As an admin: a file is marked bad through the form; the home
page then shows the bad banner on the edit context. A FITS diff through the compare form
(a half-filled form keeps its input). As an operator: the e-mail list and a message's body
as the SMTP server (aiosmtpd) received it; an anonymous visitor is sent to the login page.
Every step is screenshotted to test-artifacts/browser-daily-a/.
"""

from __future__ import annotations

import pytest
from fixtures.browser import log_in, new_page, screenshot
from fixtures.submissions import make_flat
from fixtures.websites import WebSite

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.contexts import pointers as contexts
from crds_events.mail.transports import SMTPTransport
from crds_events.server.wsgi import WebServer
from crds_events.web import create_app

BAD = "jwst_nircam_flat_0001.fits"

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path):
    site = WebSite(tmp_path)
    # the web app opens its own store (one per thread that writes): as a server runs it
    web = WebServer(create_app(site.settings), "127.0.0.1", 0)
    web.start()
    site.url = web.url
    try:
        yield site
    finally:
        web.stop()
        site.close()


def _shot(page, name: str) -> None:
    screenshot(page, "browser-daily-a", name)


def _page(browser, url: str, user: str | None = None):
    page = new_page(browser, {"width": 1280, "height": 900})
    if user is not None:
        log_in(page, url, user)
    return page


def _fits_in_viewport(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], (page.url, width)


def test_lock_banner_diff_and_email_pages_in_chromium(chromium, live, tmp_path, smtp):
    url = live.url
    # --- a READY submission holds jane's NIRCAM lock ---------------------------------------
    client = live.client("jane")
    flat = make_flat(tmp_path / "flat.fits", "nircam", "F200W", seed=51)
    sid = live.submit(client, [flat]).headers["Location"].split("/")[2]
    assert isinstance(live.process(sid), ev.SubmissionReady)
    held = locks.current_lock(live.store, "nircam")
    assert held is not None and held.owner == "jane"

    jane = _page(chromium, url, "jane")
    jane.goto(f"{url}/submit")
    line = jane.inner_text("#my-lock")
    assert "You hold the lock on NIRCAM until" in line
    assert held.expires_at.strftime("%Y-%m-%d %H:%M UTC") in line
    _shot(jane, "01-submit-form-shows-the-lock")
    jane.click("nav.main >> text=My locks")
    jane.wait_for_selector("#my-locks")
    assert "NIRCAM" in jane.inner_text("#my-locks")
    _fits_in_viewport(jane)
    _shot(jane, "02-my-locks")
    jane.click("#release-nircam")
    jane.wait_for_selector("#no-lock")
    assert "Released your lock on NIRCAM" in jane.inner_text("main")
    _shot(jane, "03-lock-released")
    assert locks.current_lock(live.store, "nircam") is None

    # --- mark bad (admin) -> the home page warns about the edit context --------------------
    contexts.set_context(live.settings, live.store, "latest", "jwst_0002.pmap",
                         "generation 2 is operational", "olga")
    live.catch_up()
    jane.goto(f"{url}/")
    assert jane.locator(".bad-banner").count() == 0
    ada = _page(chromium, url, "ada")
    ada.goto(f"{url}/operate/bad-files")
    ada.fill("[name=files]", BAD)
    ada.fill("[name=reason]", "wrong normalisation")
    ada.select_option("#bad-files-form [name=action]", "bad")
    _shot(ada, "04-mark-bad-form")
    ada.click("#mark-files")
    ada.wait_for_selector(".flash")
    assert "Marked BAD" in ada.inner_text("main")
    live.catch_up()  # the server's runner keeps the projections; here, the test does
    jane.goto(f"{url}/")
    banner = jane.locator(".bad-banner", has_text="jwst_0001.pmap")
    banner.wait_for()
    assert "is blacklisted" in banner.inner_text() and BAD in banner.inner_text()
    _shot(jane, "05-home-bad-banner")
    jane.goto(f"{url}/browse/{BAD}")
    assert "is marked bad: wrong normalisation" in jane.inner_text(".bad-banner")
    _shot(jane, "06-file-page-bad-banner")

    # --- a FITS diff through the compare form ----------------------------------------------
    jane.goto(f"{url}/diff")
    jane.fill("#diff-form [name=old]", BAD)
    jane.click("#diff-form button[type=submit]")
    jane.wait_for_selector(".field-error")
    assert jane.input_value("#diff-form [name=old]") == BAD  # the input is kept
    _shot(jane, "07-diff-form-error-keeps-input")
    jane.fill("#diff-form [name=new]", "jwst_nircam_flat_0002.fits")
    jane.click("#diff-form button[type=submit]")
    jane.wait_for_selector("#reference-diff")
    table = jane.inner_text("#reference-diff")
    assert "keyword DESCRIP" in table and "data differ" in table
    _fits_in_viewport(jane)
    _shot(jane, "08-fits-diff")

    # --- e-mails: the operator reads a body; the public is sent to log in -----------------
    live.mail(SMTPTransport("127.0.0.1", smtp.port, timeout=5))
    _, message = smtp.find(sid, "READY")
    olga = _page(chromium, url, "olga")
    olga.goto(f"{url}/emails/")
    olga.click(f"#mails >> text={message['Subject']}")
    olga.wait_for_selector("#mail-body")
    body = message.get_content().replace("\r\n", "\n").strip()
    shown = olga.inner_text("#mail-body").strip()
    assert body.splitlines()[0] in shown and body.splitlines()[-1] in shown
    assert "Sent" in olga.inner_text("#mail-state")
    assert message["Message-ID"] in olga.inner_text("#mail-headers")
    _fits_in_viewport(olga)
    _shot(olga, "09-email-body")

    anonymous = _page(chromium, url)
    anonymous.goto(olga.url)
    assert "/login" in anonymous.url and body.splitlines()[0] not in anonymous.content()
    _shot(anonymous, "10-email-anonymous-goes-to-login")
