"""Which reference types a JWST dataset needs: CRDS's filtering of best references by
``EXP_TYPE`` and calibration software version.

``crds.core.heavy_client.hv_best_references`` (what ``crds bestrefs`` and local-mode
``getreferences`` compute) does not answer every type of a JWST instrument: it asks
``crds.jwst.pipeline.header_to_reftypes`` for the types the calibration pipelines of the
dataset's ``EXP_TYPE`` use, and keeps those of the instrument's types. `dataset_reftypes`
computes the same set, the same way:

1. the header's keys upper-cased and values conditioned (CRDS's ``condition_header``);
   the version is ``META.CALIBRATION_SOFTWARE_VERSION`` else ``CAL_VER``, the exposure type
   ``META.EXPOSURE.TYPE`` else ``EXP_TYPE`` (else ``UNDEFINED``);
2. a SYSTEM CRDSCFG table chosen by that version: the context's own ``system``/``crdscfg``
   reference when it has one (looked up for the version, read through ``load_reference``),
   else the tables built into crds 14.0.3 (``jwst_crdscfg.yaml`` beside this module: the
   same data reduced to what the lookup reads), the last one whose version is <= the
   dataset's;
3. the pipelines of the ``EXP_TYPE``, corrected by the table's ``pipeline_exceptions``
   (TSO, lamp and WFS visits), and the union of the types their steps use;
4. of those, the types the instrument's imap has.

Where crds gives up (no version - crds would ask the installed ``jwst`` package, which a
server does not run -, a version that does not parse, an ``EXP_TYPE`` or pipeline step the
table lacks) or the intersection is empty, CRDS answers every type: so does
`dataset_reftypes`, returning None. HST and other observatories are never filtered.

Regenerate the built-in tables from a crds installation with
``python -m crds_events.rules.jwst_reftypes <crds>/jwst > crds_events/rules/jwst_crdscfg.yaml``.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from crds_events.rules.conditioning import condition_value

__all__ = ["CrdscfgTable", "ReftypeFilter", "reduce_crdscfg", "builtin_table",
           "header_reftypes", "dataset_reftypes"]

_DATA = Path(__file__).with_name("jwst_crdscfg.yaml")
_CACHE_LIMIT = 256

# The crdscfg reference of a context is read with this; None when it cannot be read.
LoadReference = Callable[[str], "bytes | None"]


class CrdscfgTable:
    """One SYSTEM CRDSCFG reduced to what the type lookup reads."""

    def __init__(self, reduced: Mapping[str, Any]):
        self.exptypes_to_pipelines: dict[str, list[str]] = dict(
            reduced.get("exptypes_to_pipelines") or {})
        # cfg -> the types of all its steps; None for a cfg naming a step the table lacks
        self.cfg_reftypes: dict[str, list[str] | None] = dict(reduced.get("cfg_reftypes") or {})
        self.pipeline_exceptions: dict[str, dict] = dict(
            reduced.get("pipeline_exceptions") or {})

    def pipelines(self, exp_type: str, header: Mapping[str, str]) -> list[str]:
        """The pipeline .cfgs of ``exp_type`` corrected for the header (as crds does: each
        parameter's replacement applies to the cfg the previous one left; KeyError for an
        unknown ``exp_type``)."""
        pipelines = list(self.exptypes_to_pipelines[exp_type])
        if not self.pipeline_exceptions:
            return pipelines
        corrected = []
        for cfg in pipelines:
            for param, exceptions in self.pipeline_exceptions.items():
                exceptions = dict(exceptions)
                dont_replace = exceptions.pop("dont_replace", [])
                do_replace = exceptions.pop("do_replace", [])
                default_missing = exceptions.pop("default_missing", "UNDEFINED")
                value = header.get(str(param).upper(), default_missing)
                if dont_replace and not any(re.match("^" + dont + "$", value)
                                            for dont in dont_replace):
                    cfg = exceptions.get(cfg, cfg)
                for do in do_replace:
                    if re.match("^" + do + "$", value):
                        cfg = exceptions.get(cfg, cfg)
            corrected.append(cfg)
        return corrected

    def reftypes(self, exp_type: str, header: Mapping[str, str]) -> list[str]:
        """The types the pipelines of ``exp_type`` use (KeyError where crds fails)."""
        found: set[str] = set()
        for cfg in self.pipelines(exp_type, header):
            types = self.cfg_reftypes[cfg]
            if types is None:
                raise KeyError(cfg)
            found.update(types)
        return sorted(found)


def reduce_crdscfg(document: Mapping[str, Any]) -> dict[str, Any]:
    """A SYSTEM CRDSCFG document (crds's YAML) reduced to what the type lookup reads."""
    steps_to_reftypes = document.get("steps_to_reftypes") or {}
    cfg_reftypes: dict[str, list[str] | None] = {}
    for cfg, steps in (document.get("pipeline_cfgs_to_steps") or {}).items():
        types: set[str] | None = set()
        for step in steps or ():
            if step not in steps_to_reftypes:
                types = None
                break
            types.update(str(t) for t in steps_to_reftypes[step] or ())
        cfg_reftypes[str(cfg)] = sorted(types) if types is not None else None
    return {
        "exptypes_to_pipelines": {str(k): [str(c) for c in v or ()] for k, v in
                                  (document.get("exptypes_to_pipelines") or {}).items()},
        "cfg_reftypes": cfg_reftypes,
        "pipeline_exceptions": {str(k): dict(v) for k, v in
                                (document.get("pipeline_exceptions") or {}).items()},
    }


def _reduce_version(version: str) -> tuple[int, int, int]:
    """crds's ``_reduce_ver``: the release numbers, padded to three (ValueError if bad)."""
    try:
        base = Version(version).base_version
    except InvalidVersion as exc:
        raise ValueError(str(exc)) from None
    parts = base.split(".")
    while len(parts) < 3:
        parts.append("0")
    return tuple(map(int, parts))[:3]  # type: ignore[return-value]


@cache
def _builtin() -> tuple[list[tuple[str, str]], dict[str, CrdscfgTable]]:
    data = yaml.safe_load(_DATA.read_text(encoding="utf-8"))
    versions = [(str(v), str(name)) for v, name in data["versions"]]
    tables = {str(name): CrdscfgTable(table) for name, table in data["tables"].items()}
    return versions, tables


def builtin_table(cal_ver: str) -> CrdscfgTable:
    """The built-in table for ``cal_ver``: the last whose version is <= it (ValueError for
    a version that does not parse, as crds fails on it)."""
    versions, tables = _builtin()
    wanted = _reduce_version(cal_ver)
    i = 0
    while i < len(versions) - 1 and not wanted < _reduce_version(versions[i + 1][0]):
        i += 1
    return tables[versions[i][1]]


def header_reftypes(header: Mapping[str, str], table_for: Callable[[str], CrdscfgTable]
                    ) -> list[str] | None:
    """The types ``crds.jwst.pipeline.header_to_reftypes`` gives a *conditioned* header;
    None where it gives up (see the module docstring)."""
    cal_ver = header.get("META.CALIBRATION_SOFTWARE_VERSION", header.get("CAL_VER"))
    if cal_ver is None:
        return None
    exp_type = header.get("META.EXPOSURE.TYPE", header.get("EXP_TYPE", "UNDEFINED"))
    try:
        return table_for(cal_ver).reftypes(exp_type, header)
    except (KeyError, ValueError, TypeError, re.error):
        return None


class ReftypeFilter:
    """`dataset_reftypes` with the tables kept per (context, version), as crds caches its
    config managers; thread-safe. ``load_reference(name)`` reads a reference's bytes."""

    def __init__(self, load_reference: LoadReference | None = None):
        self._load = load_reference
        self._tables: dict[tuple[str, str], CrdscfgTable] = {}
        self._lock = threading.Lock()

    def table(self, context: Any, cal_ver: str) -> CrdscfgTable:
        key = (str(getattr(context, "name", "")), cal_ver)
        with self._lock:
            found = self._tables.get(key)
        if found is None:
            found = self._context_table(context, cal_ver) or builtin_table(cal_ver)
            with self._lock:
                if len(self._tables) >= _CACHE_LIMIT:
                    self._tables.clear()
                self._tables[key] = found
        return found

    def _context_table(self, context: Any, cal_ver: str) -> CrdscfgTable | None:
        """The context's own SYSTEM CRDSCFG for the version, or None (crds then falls back
        to its built-in tables too)."""
        if self._load is None or context is None:
            return None
        header = {"META.INSTRUMENT.NAME": "SYSTEM", "META.CALIBRATION_SOFTWARE_VERSION": cal_ver}
        try:
            found = context.best_references(header, ["crdscfg"]).get("crdscfg")
        except Exception:  # noqa: BLE001 - no SYSTEM instrument or crdscfg rmap: built-in
            return None
        if not isinstance(found, str) or found.startswith("NOT FOUND"):
            return None
        try:
            data = self._load(found)
            document = yaml.safe_load(data) if data is not None else None
        except (OSError, yaml.YAMLError):
            return None
        return CrdscfgTable(reduce_crdscfg(document)) if isinstance(document, dict) else None

    def reftypes(self, context: Any, header: Mapping[str, object]) -> list[str] | None:
        return dataset_reftypes(context, header, lambda v: self.table(context, v))


def dataset_reftypes(context: Any, header: Mapping[str, object],
                     table_for: Callable[[str], CrdscfgTable] | None = None
                     ) -> list[str] | None:
    """The types ``hv_best_references`` answers for ``header`` under ``context`` (a loaded
    `crds_events.rules.bestrefs.Context`), or None for every type of the instrument."""
    if getattr(context, "observatory", None) != "jwst":
        return None
    conditioned = {str(key).upper(): condition_value(value) for key, value in header.items()}
    wanted = header_reftypes(conditioned, table_for or builtin_table)
    if not wanted:
        return None
    try:
        instrument = context.instrument_of(header)
        kept = sorted(set(context.filekinds(instrument)) & {t.lower() for t in wanted})
    except Exception:  # noqa: BLE001 - the lookup itself reports the dataset's failure
        return None
    return kept or None


def _generate(crds_jwst_dir: str) -> str:
    """The built-in tables' YAML from crds's ``jwst_system_crdscfg_*.yaml`` files, in the
    order crds's ``crds.jwst.pipeline.REFPATHS`` lists them."""
    source = Path(crds_jwst_dir)
    pipeline = (source / "pipeline.py").read_text(encoding="utf-8")
    refpaths = re.findall(r"\('([\d.]+)',\s*\"(jwst_system_crdscfg_[\w.]+\.yaml)\"\)", pipeline)
    tables = {}
    for _version, name in refpaths:
        if name not in tables:
            tables[name] = reduce_crdscfg(
                yaml.safe_load((source / name).read_text(encoding="utf-8")))
    header = ("# Generated by `python -m crds_events.rules.jwst_reftypes <crds>/jwst` from the\n"
              "# SYSTEM CRDSCFG tables built into crds (crds/jwst/jwst_system_crdscfg_*.yaml,\n"
              "# BSD-3-Clause, Space Telescope Science Institute), reduced to what the\n"
              "# reference type lookup reads. Do not edit: regenerate.\n")
    body = {"versions": [[v, n] for v, n in refpaths], "tables": tables}
    # key order kept: crds applies the pipeline exceptions in their order in the file
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)


if __name__ == "__main__":
    sys.stdout.write(_generate(sys.argv[1]))
