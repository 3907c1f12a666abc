"""Dataset catalog import: streamed JSON lines into the ``datasets`` table, all or nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.reprocessing.datasets import DatasetImportError, dataset_count, import_datasets


def _record(i: int, instrument: str = "ACS", detector: str = "WFC", date: str = "2010-01-01",
            time: str = "12:00:00") -> dict:
    return {"id": f"JX{i:05d}:JX{i:05d}",
            "header": {"instrume": instrument, "Detector": detector, "CCDGAIN": 2.0,
                       "DATE-OBS": date, "TIME-OBS": time}}


def _write(path: Path, lines: list[object]) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line if isinstance(line, str) else json.dumps(line))
            out.write("\n")
    return path


def _rows(store) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in store.db.conn.execute(
        "SELECT id, instrument, header, param_key, exposure_date FROM datasets")}


def _imports(store, settings) -> list[ev.DatasetsImported]:
    return [r.event for r in store.read_stream(ev.datasets_stream(settings.observatory))]


def test_import_streams_rows_and_records_the_fact(settings, store, tmp_path):
    records = [_record(i, instrument="ACS" if i % 3 else "WFC3", date=f"20{10 + i % 5}-03-0{1 + i % 7}")
               for i in range(300)]
    path = _write(tmp_path / "cat.jsonl", [*records[:150], "", *records[150:]])  # a blank line
    seen = []
    result = import_datasets(settings, store, path, progress=lambda *a: seen.append(a))

    assert (result.count, result.already) == (300, False)
    expected_counts = {"ACS": sum(1 for i in range(300) if i % 3), "WFC3": 100}
    assert result.by_instrument == expected_counts
    assert result.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()
    assert seen and seen[-1][1] == seen[-1][2] == path.stat().st_size

    rows = _rows(store)
    assert len(rows) == 300 == dataset_count(store)
    assert dataset_count(store, "wfc3") == 100
    instrument, header, key, date = rows["JX00007:JX00007"]
    assert instrument == "ACS"
    assert json.loads(header) == {"INSTRUME": "ACS", "DETECTOR": "WFC", "CCDGAIN": 2.0,
                                  "DATE-OBS": "2012-03-01", "TIME-OBS": "12:00:00"}
    assert date == "2012-03-01 12:00:00"
    # Same parameters at another date share the key; other parameters do not.
    assert rows["JX00001:JX00001"][2] == rows["JX00002:JX00002"][2] != rows["JX00003:JX00003"][2]

    (event,) = _imports(store, settings)
    assert (event.count, event.digest, event.source) == (300, result.sha1, str(path.resolve()))
    assert event.by_instrument == expected_counts


def test_unparseable_or_missing_dates_are_kept_with_no_exposure_date(settings, store, tmp_path):
    bad_date = _record(1, date="not a date")
    no_time = _record(2)
    del no_time["header"]["TIME-OBS"]
    import_datasets(settings, store, _write(tmp_path / "c.jsonl", [bad_date, no_time]))
    assert {i: row[3] for i, row in _rows(store).items()} == {
        "JX00001:JX00001": "", "JX00002:JX00002": ""}


@pytest.mark.parametrize("line, reason", [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"header": {"INSTRUME": "ACS"}}', "'id' must be"),
    ('{"id": "A B", "header": {"INSTRUME": "ACS"}}', "white space"),
    ('{"id": "A:A", "header": "ACS"}', "'header' must be a JSON object"),
    ('{"id": "A:A", "header": {"INSTRUME": "ACS", "X": [1]}}', "header['X'] must be"),
    ('{"id": "A:A", "header": {"DETECTOR": "WFC"}}', "names no instrument"),
])
def test_a_broken_line_imports_nothing_and_names_the_line(settings, store, tmp_path, line, reason):
    before = import_datasets(settings, store, _write(tmp_path / "first.jsonl", [_record(0)]))
    head = store.head()
    lines = [_record(i) for i in range(1, 41)]
    lines.insert(25, line)  # line 26 of the file
    with pytest.raises(DatasetImportError) as caught:
        import_datasets(settings, store, _write(tmp_path / "broken.jsonl", lines))
    assert "line 26" in str(caught.value) and reason in str(caught.value)
    assert "nothing imported" in str(caught.value)
    assert caught.value.errors[0][0] == 26 and caught.value.total == 1
    assert list(_rows(store)) == ["JX00000:JX00000"]  # only the earlier import
    assert store.head() == head and len(_imports(store, settings)) == 1
    assert before.count == 1


def test_many_broken_lines_report_the_first_few_and_the_total(settings, store, tmp_path):
    lines = ["garbage"] * 30 + [_record(1)]
    with pytest.raises(DatasetImportError) as caught:
        import_datasets(settings, store, _write(tmp_path / "bad.jsonl", lines))
    assert caught.value.total == 30 and len(caught.value.errors) == 20
    assert "and 10 more broken lines" in str(caught.value)
    assert dataset_count(store) == 0


def test_missing_or_empty_file(settings, store, tmp_path):
    with pytest.raises(DatasetImportError, match="no such file"):
        import_datasets(settings, store, tmp_path / "absent.jsonl")
    with pytest.raises(DatasetImportError, match="no dataset lines"):
        import_datasets(settings, store, _write(tmp_path / "empty.jsonl", ["", "  "]))
    assert _imports(store, settings) == []


def test_reimport_of_the_same_file_is_idempotent(settings, store, tmp_path):
    path = _write(tmp_path / "cat.jsonl", [_record(i) for i in range(50)])
    first = import_datasets(settings, store, path)
    head = store.head()
    again = import_datasets(settings, store, path)
    assert again.already and again.count == 50 and again.sha1 == first.sha1
    assert store.head() == head and len(_imports(store, settings)) == 1

    # A changed file is a new import; ids present before get the new parameters.
    changed = _write(tmp_path / "cat2.jsonl",
                     [_record(i, detector="HRC") for i in range(40, 60)])
    second = import_datasets(settings, store, changed)
    assert not second.already and second.count == 20
    rows = _rows(store)
    assert len(rows) == 60
    assert json.loads(rows["JX00045:JX00045"][1])["DETECTOR"] == "HRC"
    assert json.loads(rows["JX00010:JX00010"][1])["DETECTOR"] == "WFC"
    assert [e.digest for e in _imports(store, settings)] == [first.sha1, second.sha1]


def test_cli_datasets_import(settings, tmp_path):
    runner = CliRunner()
    root = ["--root", str(settings.root)]
    path = _write(tmp_path / "cat.jsonl", [_record(i) for i in range(10)])
    done = runner.invoke(cli, ["datasets", "import", *root, str(path)])
    assert done.exit_code == 0, done.output
    assert "imported 10 datasets" in done.output and "ACS 10" in done.output
    again = runner.invoke(cli, ["datasets", "import", *root, str(path)])
    assert again.exit_code == 0 and "already imported" in again.output
    broken = _write(tmp_path / "broken.jsonl", [_record(1), "{oops"])
    failed = runner.invoke(cli, ["datasets", "import", *root, str(broken)])
    assert failed.exit_code == 1
    assert "line 2" in failed.output and "nothing imported" in failed.output
