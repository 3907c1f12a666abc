"""certify: checks for reference files and rules files, one FileResult per file.

``certify_files(paths)`` is the entry point for the CLI, the submission pipeline and the web
page: mappings (.pmap/.imap/.rmap) go to ``mappings.check_mapping``, everything else to
``references.check_reference``. With a `context`, a reference is also checked against the
rmap that governs its type: the rmap's parameters become required where a constraint
names them (as CRDS does), and their values must be valid for the rmap's parameters (the
site's ``_ld.tpn`` values, when a `tpn_dir` is given).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from crds_events.certify.mappings import check_mapping, valid_match_values
from crds_events.certify.match_values import ValueChecker
from crds_events.certify.references import check_reference
from crds_events.certify.result import FileResult, Message, exit_code
from crds_events.certify.specs import constraints_for
from crds_events.certify.tpn import TpnError, tpn_constraints
from crds_events.files.dataset_keys import reference_to_dataset
from crds_events.files.errors import ReferenceFileError
from crds_events.files.headers import read_header
from crds_events.files.reftypes import reference_type
from crds_events.rules.context import ContextLoadError, MappingStore, PipelineContext
from crds_events.rules.index import ReferenceIndex
from crds_events.rules.parse import MappingError
from crds_events.rules.selectors import RulesError
from crds_events.rules.substitutions import find_substitutions, load_substitutions

__all__ = ["FileResult", "Message", "certify_files", "check_mapping", "check_reference",
           "exit_code", "is_mapping"]

MAPPING_EXTENSIONS = (".pmap", ".imap", ".rmap")


def is_mapping(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(MAPPING_EXTENSIONS)


def certify_files(
    paths: Iterable[str | os.PathLike],
    *,
    context: str | os.PathLike | None = None,
    comparison_context: str | os.PathLike | None = None,
    run_fitsverify: bool = False,
    verbose: bool = False,
    tpn_dir: str | os.PathLike | None = None,
    mappings_dir: str | os.PathLike | None = None,
    substitutions: str | os.PathLike | None = None,
) -> list[FileResult]:
    """Certify each of `paths`; one FileResult per path, in order (never raises for a bad
    file; a context that cannot be loaded is reported on each reference it was needed for).

    `tpn_dir`: a site's .tpn directory (default: our built-in specs); `substitutions`: the
    site's ``substitutions.dat`` (default: config/env, as refactor finds it), which expands
    wildcard values of references before they are checked against the rmap's parameters."""
    pipeline = None
    comparison_cache: dict = {}
    results: list[FileResult] = []
    for path in paths:
        path = os.fspath(path)
        if is_mapping(path):
            results.append(check_mapping(path, context=context,
                                         comparison_context=comparison_context,
                                         mappings_dir=mappings_dir, tpn_dir=tpn_dir,
                                         verbose=verbose, comparison_cache=comparison_cache))
            continue
        options: dict[str, Any] = {}
        notes: list[tuple[str, str]] = []
        if context is not None:
            if pipeline is None:
                pipeline = _load_pipeline(context)
            if isinstance(pipeline, str):
                notes.append(("error", pipeline))
            else:
                options, notes = _rmap_options(path, pipeline, tpn_dir, substitutions)
        if tpn_dir is not None and "constraints" not in options:
            options["tpn_dir"] = tpn_dir
        result = check_reference(path, run_fitsverify_program=run_fitsverify, **options)
        for level, reason in notes:
            result.add(level, "context", reason)  # type: ignore[arg-type]
        results.append(result)
    return results


def _load_pipeline(context: str | os.PathLike):
    """The pipeline context at `context`, or a message saying why it cannot be loaded."""
    path = os.fspath(context)
    try:
        store = MappingStore(os.path.dirname(os.path.abspath(path)))
        return PipelineContext(store.document(os.path.basename(path)), store)
    except (ContextLoadError, MappingError, OSError) as exc:
        return f"cannot load context {os.path.basename(path)}: {exc}"


def _rmap_options(path: str, pipeline, tpn_dir, substitutions) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """check_reference options from the rmap governing the reference at `path`."""
    try:
        kind = reference_type(path, read_header(path))
    except ReferenceFileError:
        return {}, []  # check_reference reports why the file cannot be read
    try:
        rmap = pipeline.imap(kind.instrument).rmap(kind.filekind)
    except KeyError:
        return {}, [("warning", f"{pipeline.name} has no rules for {kind.instrument.upper()} "
                                f"{kind.filekind.upper()}; rmap checks skipped")]
    except (ContextLoadError, MappingError, RulesError) as exc:
        return {}, [("error", f"cannot load the rmap for {kind.filekind}: {exc}")]
    if not isinstance(rmap, ReferenceIndex):
        return {}, [("warning", f"{kind.filekind} is {rmap} in {pipeline.name}; rmap checks skipped")]
    parkeys = list(dict.fromkeys(str(name).upper() for name in rmap.required_parkeys))
    try:
        constraints = (tpn_constraints(tpn_dir, kind.observatory, kind.instrument, kind.filekind,
                                       kind.suffix) if tpn_dir is not None
                       else constraints_for(kind.observatory, kind.instrument, kind.filekind))
    except TpnError as exc:
        return {}, [("error", str(exc))]
    # CRDS: an optional keyword that the rmap matches on is required.
    constraints = [dataclasses.replace(c, presence="required")
                   if c.presence == "optional" and c.keytype == "header"
                   and c.name.upper() in parkeys else c for c in constraints]
    options: dict[str, Any] = {"constraints": constraints}
    notes = [("info", f"governing rmap {rmap.name}: parameters {', '.join(parkeys)}")]
    if tpn_dir is not None:
        try:
            valid, _source = valid_match_values(kind.observatory, kind.instrument, kind.filekind,
                                                parkeys, tpn_dir)
            expanded = _expanded_dataset(path, kind, parkeys, substitutions)
        except (TpnError, ValueError) as exc:
            return options, notes + [("error", str(exc))]
        checker = ValueChecker(valid)

        def parkey_reason(keyword: str, value: str) -> str | None:
            # A site wildcard (CCDAMP='ANY') is checked as the rules will hold it.
            value = str(expanded.get(keyword.upper(), value))
            for item in value.split("|"):
                reason = checker.reason(keyword, item.strip())
                if reason:
                    return f"not valid for {rmap.name}: {reason}"
            return None

        options["parkey_values"] = parkey_reason
    return options, notes


def _expanded_dataset(path: str, kind, parkeys: list[str], substitutions) -> dict[str, object]:
    """The reference's dataset values with the site's wildcard expansions applied
    (``substitutions.dat``: the given path, else config/env as refactor finds it)."""
    table = (load_substitutions(substitutions) if substitutions is not None
             else find_substitutions(kind.observatory))
    if table is None:
        return {}
    try:
        dataset = reference_to_dataset(read_header(path), kind.observatory,
                                       filename=os.path.basename(path))
    except ReferenceFileError:
        return {}
    return {str(k).upper(): v for k, v in table.expand(kind.instrument, dataset, parkeys).items()}
