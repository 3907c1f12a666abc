"""A file marked bad is announced wherever a context or a file is shown: home pointers, the
rules display, a file's page, best references, the submit form's derive-from, and the result
of a submission derived from a blacklisted context (CRDS submits anyway, and warns).

The root (`fixtures.websites.WebSite`): jwst_0001.pmap (latest + edit) and generation 2
archived. latest moves to jwst_0002.pmap (CRDS refuses to mark a file of the operational
context bad); then the admin marks jwst_nircam_flat_0001.fits bad through the web form,
which blacklists jwst_nircam_flat_0001.rmap, jwst_nircam_0001.imap and jwst_0001.pmap -
still the edit context.
"""

from __future__ import annotations

import html
import re

import pytest
from fixtures.submissions import make_flat
from fixtures.websites import WebSite, post, text_of

from crds_events import events as ev
from crds_events.contexts import pointers as contexts
from crds_events.submissions import review

BAD = "jwst_nircam_flat_0001.fits"
REASON = "wrong flat field normalisation"
DATASET = ("META.INSTRUMENT.NAME = NIRCAM\nMETA.INSTRUMENT.DETECTOR = NRCA1\n"
           "META.INSTRUMENT.FILTER = F070W\nMETA.OBSERVATION.DATE = 2023-01-01\n"
           "META.OBSERVATION.TIME = 00:00:00\n")


@pytest.fixture
def site(tmp_path):
    site = WebSite(tmp_path)
    contexts.set_context(site.settings, site.store, "latest", "jwst_0002.pmap",
                         "generation 2 is operational", "olga")
    site.catch_up()
    yield site
    site.close()


def _mark_bad(site) -> None:
    ada = site.client("ada")
    done = post(ada, "/operate/bad-files", {"files": BAD, "action": "bad", "reason": REASON})
    assert done.status_code == 302, text_of(done)
    site.catch_up()


def _banners(response) -> str:
    """The text of the page's banners and inline marks only."""
    found = re.findall(r'<(?:div|span|p) class="bad-(?:banner|mark)"[^>]*>(.*?)</(?:div|span|p)>',
                       response.text, re.S)
    return " ".join(html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", f)))
                    for f in found)


def test_no_banner_while_nothing_is_bad(site):
    client = site.client("jane")
    for url in ("/", "/contexts/jwst_0001.pmap", f"/browse/{BAD}", "/submit"):
        page = client.get(url)
        assert page.status_code == 200 and "bad-banner" not in page.text, url
    answer = client.post("/bestrefs", data={"context": "jwst_0001.pmap", "header": DATASET},
                         headers={"X-CSRF-Token": _token(client)})
    assert answer.status_code == 200 and BAD in answer.text and "bad-mark" not in answer.text


def _token(client) -> str:
    from fixtures.websites import token_of

    return token_of(client, "/submit")


def test_banners_after_mark_bad_on_every_page_that_shows_it(site):
    _mark_bad(site)
    anonymous = site.client()  # public pages warn the public too
    home = anonymous.get("/")
    assert "jwst_0001.pmap is blacklisted" in _banners(home)
    assert BAD in _banners(home) and REASON in _banners(home)
    assert "jwst_0002.pmap" not in _banners(home)  # latest is fine
    bad = anonymous.get("/index.json").json["bad"]
    assert bad["jwst_0001.pmap"]["state"] == "blacklisted"
    assert bad["jwst_0001.pmap"]["because"] == [BAD]

    file_page = anonymous.get(f"/browse/{BAD}")
    assert f"{BAD} is marked bad: {REASON}" in _banners(file_page)

    jane = site.client("jane")
    answer = jane.post("/bestrefs", data={"context": "jwst_0001.pmap", "header": DATASET},
                       headers={"X-CSRF-Token": _token(jane)})
    assert answer.status_code == 200
    assert "bad" in _banners(answer) and f"({BAD})" in text_of(answer)
    assert "do not calibrate with it" in text_of(answer)
    twin = jane.post("/bestrefs.json", data={"context": "jwst_0001.pmap", "header": DATASET},
                     headers={"X-CSRF-Token": _token(jane)}).json
    assert twin["bestrefs"]["flat"] == BAD and twin["bad"][BAD]["reason"] == REASON
    fine = jane.post("/bestrefs", data={"context": "jwst_0002.pmap", "header": DATASET},
                     headers={"X-CSRF-Token": _token(jane)})
    assert "bad-mark" not in fine.text and "jwst_nircam_flat_0002.fits" in fine.text

    form = jane.get("/submit")
    assert "The edit context jwst_0001.pmap is blacklisted" in _banners(form)


def test_rules_display_warns_about_the_context_and_its_blacklisted_mappings(site):
    _mark_bad(site)
    anonymous = site.client()
    rules = anonymous.get("/contexts/jwst_0001.pmap")
    assert rules.status_code == 200
    assert "jwst_0001.pmap is blacklisted" in _banners(rules)
    # the NIRCAM imap beside its name (the rmap too, once shown)
    assert "blacklisted" in _banners(rules).replace("jwst_0001.pmap is blacklisted", "")
    assert "bad-banner" not in anonymous.get("/contexts/jwst_0002.pmap").text
    rmap = anonymous.get("/contexts/jwst_nircam_flat_0001.rmap")
    assert "jwst_nircam_flat_0001.rmap is blacklisted" in _banners(rmap)


def test_deriving_from_a_blacklisted_edit_context_warns_in_the_result(site, tmp_path):
    _mark_bad(site)
    jane = site.client("jane")
    flat = make_flat(tmp_path / "flat.fits", "nircam", "F200W", seed=11)
    sid = site.submit(jane, [flat]).headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionReady)  # CRDS warns, not refuses
    shown = review.show(site.settings, site.store, sid)
    (warning, *_) = shown["result"]["warnings"]
    assert "derived from jwst_0001.pmap, which is blacklisted" in warning
    page = jane.get(f"/submissions/{sid}").text  # names in it may be links: drop the tags
    assert "derived from jwst_0001.pmap, which is blacklisted" in html.unescape(
        re.sub(r"<[^>]+>", "", page))


def test_mark_ok_takes_the_banners_away(site):
    _mark_bad(site)
    ada = site.client("ada")
    assert post(ada, "/operate/bad-files", {"files": BAD, "action": "ok",
                                            "reason": "renormalised"}).status_code == 302
    site.catch_up()
    client = site.client()
    for url in ("/", "/contexts/jwst_0001.pmap", f"/browse/{BAD}"):
        assert "bad-banner" not in client.get(url).text, url
    assert client.get("/index.json").json["bad"] == {}
