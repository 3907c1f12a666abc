"""Issue 18 §9: forms re-display with the input kept and the error beside the field (best
references with a bad line, a bad date in the catalog and event filters); the "as of" box
(an event number or a date); as-of pages link to as-of pages.
"""

from __future__ import annotations

import re

import pytest


def test_a_bad_best_refs_line_keeps_the_input_with_the_error_beside_it(jwst):
    client, _ = jwst
    typed = "META.INSTRUMENT.NAME = NIRCAM\nthis line has no equals sign\nMETA.X = 1"
    response = client.get("/bestrefs", query_string={"context": "jwst_0002.pmap",
                                                     "header": typed})
    assert response.status_code == 400
    page = response.data.decode()
    assert "this line has no equals sign" in page.split("<textarea", 1)[1].split("</textarea>")[0]
    assert 'value="jwst_0002.pmap"' in page
    error = page.split('id="error-header">', 1)[1].split("</span>", 1)[0]
    assert "line 2" in error and "KEY = VALUE" in error
    assert "Traceback" not in page
    # a context that is not a pmap: the error is beside the context field
    other = client.get("/bestrefs", query_string={"context": "nope.rmap", "header": "A = 1"})
    assert other.status_code == 400 and 'id="error-context"' in other.data.decode()
    # the JSON twin still answers a plain 400 naming the parameter
    twin = client.get("/bestrefs.json", query_string={"header": "no equals"})
    assert twin.status_code == 400 and "parameter 'header' line 1" in twin.json["error"]


@pytest.mark.parametrize("path, field", [("/catalog", "since"), ("/events", "until")])
def test_a_bad_date_keeps_the_filters_with_the_error_beside_the_field(jwst, path, field):
    client, _ = jwst
    response = client.get(path, query_string={field: "last tuesday", "actor": "otto",
                                              "instrument": "nircam"})
    assert response.status_code == 400
    page = response.data.decode()
    assert 'value="last tuesday"' in page
    assert re.search(rf'id="error-{field}">[^<]*is not a date', page)
    assert 'value="otto"' in page or 'value="nircam"' in page  # the other filters kept
    assert client.get(f"{path}.json", query_string={field: "x"}).status_code == 400


def test_the_as_of_box_takes_an_event_number_or_a_date(jwst):
    client, _ = jwst
    head = client.get("/events.json").json["head"]
    assert 'id="asof-box"' in client.get("/events").data.decode()
    jump = client.get("/asof", query_string={"at": "3"})
    assert jump.status_code == 302 and jump.headers["Location"].endswith("/asof/3")
    today = client.get("/events.json").json["events"][0]["recorded_at"][:10]
    by_date = client.get("/asof", query_string={"at": today})
    assert by_date.status_code == 302 and by_date.headers["Location"].endswith(f"/asof/{head}")
    for bad, why in (("yesterday-ish", "neither an event number nor a date"),
                     (str(head + 10), f"the log has {head} events"),
                     ("1990-01-01", "no event was recorded by 1990-01-01"), ("", "type an")):
        response = client.get("/asof", query_string={"at": bad})
        assert response.status_code == 400, bad
        page = response.data.decode()
        assert why in page.split('id="asof-error">', 1)[1], bad
        assert f'value="{bad}"' in page


def test_as_of_pages_link_to_as_of_pages(jwst):
    client, _ = jwst
    page = client.get("/asof/30").data.decode()
    links = re.findall(r'href="(/(?:browse|streams|operate)[^"]*)"', page)
    assert links, "the as-of page names files and deliveries"
    for link in links:
        assert link.startswith("/streams/") and "before=31" in link, link
    stream = next(link for link in links if "file:" in link)
    shown = client.get(stream.replace("&amp;", "&"))
    assert shown.status_code == 200
