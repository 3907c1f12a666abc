"""JWST reference types by EXP_TYPE and calibration software version, as crds chooses them
(`crds_events.rules.jwst_reftypes`), and best references equal to the corpus oracle with
CRDS's exact NOT FOUND texts.

The comparison is with the installed crds 14.0.3 itself: its built-in SYSTEM CRDSCFG tables
(our copy must be their reduction) and ``crds.jwst.pipeline.header_to_reftypes`` over every
exposure type, several versions (old, current, unparsable) and the TSO / lamp / WFS
exceptions, run in a subprocess whose crds has no server (so it uses its built-in tables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

from crds_events.rules import jwst_reftypes
from crds_events.rules.bestrefs import DatasetError, load_context
from crds_events.rules.jwst_reftypes import (
    ReftypeFilter,
    builtin_table,
    dataset_reftypes,
    header_reftypes,
)

VERSIONS = ["0.7.7", "0.9.2", "0.13.7", "0.16.5", "1.1.0", "1.8.2", "1.16.1", "2.0",
            "1.0.0DEV", "X.Y"]
EXCEPTIONS = [("F", "OFF", "GENERIC"), ("T", "ON", "WFSC 12"), ("TRUE", "NONE", "X")]


def _crds_dir() -> Path:
    import crds.jwst

    return Path(crds.jwst.__file__).parent


def _headers() -> list[dict[str, str]]:
    tables = jwst_reftypes._builtin()[1].values()
    exp_types = sorted({e for t in tables for e in t.exptypes_to_pipelines} | {"UNDEFINED"})
    return [{"META.CALIBRATION_SOFTWARE_VERSION": version, "META.EXPOSURE.TYPE": exp_type,
             "META.VISIT.TSOVISIT": tso, "META.INSTRUMENT.LAMP_STATE": lamp,
             "META.VISIT.TITLE": title}
            for version in VERSIONS for exp_type in exp_types
            for tso, lamp, title in EXCEPTIONS]


def test_the_builtin_tables_are_crds_own():
    shipped = Path(jwst_reftypes.__file__).with_name("jwst_crdscfg.yaml").read_text()
    assert jwst_reftypes._generate(str(_crds_dir())) == shipped


@pytest.mark.slow
def test_reftypes_equal_crds_header_to_reftypes(tmp_path):
    headers = _headers()
    script = (
        "import json, sys\n"
        "from crds.jwst import pipeline\n"
        "out = [pipeline.header_to_reftypes(h, 'jwst_0001.pmap') for h in "
        "json.load(open(sys.argv[1]))]\n"
        "print('OUT=' + json.dumps(out))\n")
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    # a cache without the context and a server that does not answer: crds's built-in tables
    env.update(CRDS_PATH=str(tmp_path / "cache"), CRDS_OBSERVATORY="jwst",
               CRDS_SERVER_URL=f"http://127.0.0.1:{free_port()}", CRDS_MODE="local")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "headers.json")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = json.loads([x for x in result.stdout.splitlines() if x.startswith("OUT=")][-1][4:])
    got = [header_reftypes(h, builtin_table) or [] for h in headers]
    differ = [(h, e, g) for h, e, g in zip(headers, expected, got, strict=True) if e != g]
    assert not differ, differ[:3]
    assert sum(1 for e in expected if e) > len(headers) // 2  # most versions do filter


def test_no_version_no_filter_and_hst_never(corpus):
    jwst = load_context(corpus / "contexts/jwst/mappings/jwst_0001.pmap")
    header = {"INSTRUME": "MIRI", "EXP_TYPE": "MIR_IMAGE", "DETECTOR": "MIRIMAGE"}
    assert dataset_reftypes(jwst, header) is None  # crds would ask the jwst package
    assert dataset_reftypes(jwst, {**header, "CAL_VER": "1.16.1"}) == ["specwcs"]
    assert dataset_reftypes(jwst, {**header, "CAL_VER": "not a version"}) is None
    hst = load_context(corpus / "contexts/hst/mappings/hst_0001.pmap")
    assert dataset_reftypes(hst, {"INSTRUME": "ACS", "CAL_VER": "1.16.1"}) is None


def test_a_context_crdscfg_reference_wins_over_the_builtin_tables(corpus):
    jwst = load_context(corpus / "contexts/jwst/mappings/jwst_0001.pmap")
    header = {"INSTRUME": "MIRI", "EXP_TYPE": "MIR_IMAGE", "CAL_VER": "1.16.1"}

    class WithCrdscfg:  # the context's SYSTEM crdscfg rmap selects "own_crdscfg.yaml"
        name, observatory = "jwst_0001.pmap", "jwst"

        def best_references(self, header, types):
            return {"crdscfg": "own_crdscfg.yaml"}

        def __getattr__(self, attr):
            return getattr(jwst, attr)

    own = (b"exptypes_to_pipelines: {MIR_IMAGE: [one.cfg]}\n"
           b"pipeline_cfgs_to_steps: {one.cfg: [ipc_step]}\n"
           b"steps_to_reftypes: {ipc_step: [ipc]}\n")
    assert ReftypeFilter(lambda name: own if name == "own_crdscfg.yaml" else None
                         ).reftypes(WithCrdscfg(), header) == ["ipc"]
    # unreadable reference: crds falls back to its built-in tables, so do we
    assert ReftypeFilter(lambda name: None).reftypes(WithCrdscfg(), header) == ["specwcs"]
    assert ReftypeFilter(lambda name: b"{ not yaml").reftypes(WithCrdscfg(), header) == \
        ["specwcs"]


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("oracle_name,context_path", [
    ("bestrefs_hst_0001.jsonl", "hst/mappings/hst_0001.pmap"),
    ("bestrefs_hst_0002.jsonl", "hst/mappings/hst_0002.pmap"),
    ("bestrefs_jwst.jsonl", "jwst/mappings/jwst_0001.pmap"),
])
def test_answers_equal_the_oracle_exactly(corpus, oracle_name, context_path):
    """Every line: the same types and the same values, NOT FOUND texts included."""
    context = load_context(corpus / "contexts" / context_path)
    failures = []
    with open(corpus / "oracle" / oracle_name, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            try:
                got = context.best_references(record["header"],
                                              dataset_reftypes(context, record["header"]))
            except DatasetError as exc:
                got = {"error": exc.not_found}
            if got != record["expected"]:
                failures.append((record["id"], record["expected"], got))
    assert not failures, failures[:3]
