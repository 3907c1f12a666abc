"""A realistic JWST-like context, its reference files and a dataset catalog, made up here.

    generate(GeneratorConfig(instruments=5, types=20, datasets=100_000), "var/generated")

writes, under the output directory:

* ``mappings/``: ``jwst_0001.pmap`` -> one imap per instrument -> one rmap per reference
  type, in CRDS's canonical format with correct sha1sums. The rmaps have the shapes real
  JWST rules have: ``Match`` on one to three instrument parameters (data model paths) over
  ``UseAfter`` on the observation date and time; ``A|B`` OR-alternatives; ``N/A`` columns
  (a parameter that does not matter for some modes); a ``substitutions`` header
  (``META.SUBARRAY.NAME: GENERIC -> N/A``) and ``rmap_relevance`` expressions on the
  exposure type; ``reference_to_dataset`` where the reference keyword differs.
* ``references/``: one small real file per rmap entry: FITS (astropy) with the arrays the
  type's certify constraints ask for, or ASDF (asdf) for the WCS-like types; each header
  carries the values of its rmap case, so certify (with the context) passes and best
  references select it. ``references="none"`` skips them (the context still loads; an
  import records them as named-but-absent).
* ``datasets.jsonl``: synthetic exposures, one ``{"id": "<product>:<exposure>", "header":
  {...}}`` per line, what `crds_events.reprocessing.datasets.import_datasets` reads. Their parameters
  are drawn from the same instrument vocabularies, with dates from mid-2022 to 2026, so
  nearly every (dataset, type) has a best reference; a few percent fall outside the rules
  (a ``NOT FOUND``), as in real catalogs.

The first five instruments are JWST's own (NIRCam, MIRI, NIRISS, NIRSpec, FGS) and the
first twenty types real JWST reference types; beyond those (for benchmarks that scale up)
the names are synthetic (``INSTR06``, ``type021``): the rules and best references work the
same, but our built-in certify specs only know JWST's instruments, so such references
fail the ``META.INSTRUMENT.NAME`` value check.

Everything is deterministic for a given `GeneratorConfig` (seeded ``random.Random``, fixed
dates, no timestamps in the files: astropy and asdf write the same bytes each time).

The vocabulary drawn from is `crds_events.demo.vocabulary`; the reference files are
written by `crds_events.demo.reference_files`.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from crds_events.demo.reference_files import write_reference
from crds_events.demo.vocabulary import (
    DATE_KEYS,
    EXP_TYPE,
    FIRST_USEAFTER,
    FITS_KEYWORDS,
    SUBARRAY,
    RmapCase,
    instruments_for,
    types_for,
)
from crds_events.rules.canonical import rewrite_text
from crds_events.rules.parse import parse_mapping

__all__ = ["GeneratorConfig", "GeneratedContext", "build_cases", "generate", "load_generated"]

CONFIG_NAME = "generator.json"  # the GeneratorConfig used, to rebuild the cases later


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    instruments: int = 5
    types: int = 20
    cases: int = 16  # at most this many Match rows per rmap (before OR-merging)
    useafters: int = 2  # at most this many dates per Match row
    datasets: int = 100_000
    seed: int = 1
    references: str = "all"  # all | none

    def __post_init__(self) -> None:
        for name in ("instruments", "types", "cases", "useafters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1 (got {getattr(self, name)})")
        if self.datasets < 0:
            raise ValueError(f"datasets: must not be negative (got {self.datasets})")
        if self.references not in ("all", "none"):
            raise ValueError(f"references: 'all' or 'none' (got {self.references!r})")



@dataclasses.dataclass
class GeneratedContext:
    out: Path
    pmap: str
    mappings: list[str]
    cases: list[RmapCase]
    datasets: int
    seconds: float

    @property
    def mappings_dir(self) -> Path:
        return self.out / "mappings"

    @property
    def references_dir(self) -> Path:
        return self.out / "references"

    @property
    def datasets_path(self) -> Path:
        return self.out / "datasets.jsonl"

    def summary(self) -> str:
        return (f"{self.pmap}: {len(self.mappings)} mappings, {len(self.cases)} references, "
                f"{self.datasets} datasets in {self.out} ({self.seconds:.1f} s)")



# -- rules ----------------------------------------------------------------------------------

def _dm_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tuple_text(items: Sequence[str]) -> str:
    inner = ", ".join(_dm_quote(item) for item in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _pick_parameters(rng: random.Random, vocabulary: dict[str, list[str]], filekind: str,
                     limit: int) -> tuple[str, ...]:
    """One to three match parameters whose value product stays within `limit` rows."""
    names = [name for name in vocabulary if name != EXP_TYPE]
    first = "META.INSTRUMENT.DETECTOR" if "META.INSTRUMENT.DETECTOR" in names else names[0]
    chosen = [first]
    others = [name for name in names if name != first]
    rng.shuffle(others)
    size = len(vocabulary[first])
    for name in others:
        if len(chosen) == 3 or rng.random() < 0.35:
            break
        if size * len(vocabulary[name]) > limit:
            continue
        chosen.append(name)
        size *= len(vocabulary[name])
    return tuple(chosen)


def _match_rows(rng: random.Random, vocabulary: dict[str, list[str]],
                parameters: tuple[str, ...], limit: int) -> list[tuple[str, ...]]:
    """Rows covering every combination, in CRDS shapes: OR-alternatives and N/A columns.

    Starting from the full product, the last column of some groups collapses to ``N/A``
    (the type does not depend on it in that mode) and pairs of neighbouring values merge
    into ``A|B``; beyond `limit` rows the rest of a group merges into one alternative."""
    if len(parameters) == 1:
        values = vocabulary[parameters[0]]
        return _merge_alternatives(rng, [(v,) for v in values], limit)
    rows: list[tuple[str, ...]] = []
    heads = list(itertools.product(*(vocabulary[p] for p in parameters[:-1])))
    last = vocabulary[parameters[-1]]
    for head in heads:
        if rng.random() < 0.25:
            rows.append((*head, "N/A"))
        else:
            rows.extend(_merge_alternatives(rng, [(*head, v) for v in last], len(last)))
    if len(rows) > limit:  # too many: merge the last column per head into fewer rows
        rows = []
        for head in heads:
            rows.append((*head, "N/A") if rng.random() < 0.5 else (*head, "|".join(last)))
    return rows


def _merge_alternatives(rng: random.Random, rows: list[tuple[str, ...]],
                        limit: int) -> list[tuple[str, ...]]:
    merged: list[tuple[str, ...]] = []
    index = 0
    while index < len(rows):
        row = rows[index]
        room = len(rows) - index > max(1, limit - len(merged))
        if index + 1 < len(rows) and (rng.random() < 0.2 or room):
            other = rows[index + 1]
            merged.append((*row[:-1], f"{row[-1]}|{other[-1]}"))
            index += 2
        else:
            merged.append(row)
            index += 1
    return merged


def _useafters(rng: random.Random, count: int) -> list[str]:
    dates = [FIRST_USEAFTER]
    for _ in range(rng.randint(1, count) - 1):
        day = datetime.date(2022, 6, 1) + datetime.timedelta(days=rng.randint(0, 3 * 365))
        dates.append(f"{day.isoformat()} 00:00:00")
    return sorted(set(dates))


def _pmap_text(instruments: Sequence[str]) -> str:
    entries = "\n".join(f"    '{name}' : 'jwst_{name.lower()}_0001.imap'," for name in instruments)
    return f"""header = {{
    'derived_from' : 'generated by crds-events generate',
    'mapping' : 'PIPELINE',
    'name' : 'jwst_0001.pmap',
    'observatory' : 'JWST',
    'parkey' : ('META.INSTRUMENT.NAME',),
    'sha1sum' : '',
}}

selector = {{
{entries}
}}
"""


def _imap_text(instrument: str, filekinds: Sequence[str]) -> str:
    low = instrument.lower()
    entries = "\n".join(f"    '{kind}' : 'jwst_{low}_{kind}_0001.rmap'," for kind in filekinds)
    return f"""header = {{
    'derived_from' : 'generated by crds-events generate',
    'instrument' : '{instrument}',
    'mapping' : 'INSTRUMENT',
    'name' : 'jwst_{low}_0001.imap',
    'observatory' : 'JWST',
    'parkey' : ('REFTYPE',),
    'sha1sum' : '',
}}

selector = {{
{entries}
}}
"""


def _rmap_text(instrument: str, filekind: str, parameters: tuple[str, ...],
               table: dict[tuple[str, ...], list[tuple[str, str]]], extra: dict[str, str]) -> str:
    low = instrument.lower()
    header_extra = "".join(f"    '{key}' : {value},\n" for key, value in sorted(extra.items()))
    body = []
    for values, dated in table.items():
        body.append(f"    {_tuple_text(values)} : UseAfter({{")
        body.extend(f"        '{date}' : '{name}'," for date, name in dated)
        body.append("    }),")
    lines = "\n".join(body)
    return f"""header = {{
    'classes' : ('Match', 'UseAfter'),
    'derived_from' : 'generated by crds-events generate',
    'filekind' : '{filekind.upper()}',
    'instrument' : '{instrument}',
    'mapping' : 'REFERENCE',
    'name' : 'jwst_{low}_{filekind}_0001.rmap',
    'observatory' : 'JWST',
    'parkey' : ({_tuple_text(parameters)}, {_tuple_text(DATE_KEYS)}),
{header_extra}    'sha1sum' : '',
}}

selector = Match({{
{lines}
}})
"""


def _rmap_extras(rng: random.Random, instrument: str, filekind: str,
                 parameters: tuple[str, ...], exp_types: list[str]) -> dict[str, str]:
    """Optional header fields, as real rmaps carry them."""
    extra: dict[str, str] = {}
    if SUBARRAY in parameters:
        extra["substitutions"] = "{'META.SUBARRAY.NAME' : {'GENERIC' : 'N/A'}}"
    if len(exp_types) > 2 and rng.random() < 0.3:
        # the last exposure type does not use this reference: best references say N/A
        extra["rmap_relevance"] = repr(f'({EXP_TYPE} != "{exp_types[-1]}")')
        extra["extra_keys"] = f"('{EXP_TYPE}',)"
    if any(p in FITS_KEYWORDS for p in parameters) and rng.random() < 0.3:
        pairs = ", ".join(f"'{FITS_KEYWORDS[p]}' : '{p}'" for p in parameters
                          if p in FITS_KEYWORDS)
        extra["reference_to_dataset"] = "{" + pairs + "}"
    extra["text_descr"] = repr(f"{instrument} {filekind} reference files")
    return extra


def _write_mapping(directory: Path, name: str, text: str) -> None:
    parsed = parse_mapping(text, name)
    (directory / name).write_text(rewrite_text(parsed), encoding="utf-8")


# -- datasets -------------------------------------------------------------------------------

def iter_dataset_lines(vocabulary: dict[str, dict[str, list[str]]], count: int,
                       seed: int) -> Iterator[str]:
    """`count` synthetic exposures (JSON lines) spread over the instruments, dated
    2022-07 .. 2026-06. Vectorised with numpy: 100,000 lines take well under a second."""
    rng = np.random.default_rng(seed * 7919 + 17)
    names = list(vocabulary)
    seconds = rng.integers(0, 4 * 365 * 86400, count)
    stamps = (np.datetime64("2022-07-01T00:00:00") + seconds.astype("timedelta64[s]")).astype(str)
    unknown = rng.random(count) < 0.02  # a value the rules do not know: a realistic NOT FOUND
    picks = {}
    for instrument, values in vocabulary.items():
        picks[instrument] = [(parameter, choices, rng.integers(0, len(choices), count))
                             for parameter, choices in values.items()]
    for number in range(count):
        instrument = names[number % len(names)]
        fields = [f'"META.INSTRUMENT.NAME":"{instrument}"', '"META.TELESCOPE":"JWST"']
        detector = instrument
        for parameter, choices, chosen in picks[instrument]:
            value = choices[chosen[number]]
            if parameter == "META.INSTRUMENT.DETECTOR":
                if unknown[number]:
                    value = "UNKNOWN"
                detector = value
            fields.append(f'"{parameter}":"{value}"')
        stamp = stamps[number]
        fields.append(f'"{DATE_KEYS[0]}":"{stamp[:10]}"')
        fields.append(f'"{DATE_KEYS[1]}":"{stamp[11:]}.000"')
        program = 1000 + number // 500
        visit = number % 500
        obs = visit // 50 + 1
        exposure = f"JW{program:05d}{obs:03d}001_02101_{visit % 50 + 1:05d}_{detector}"
        product = f"JW{program:05d}-O{obs:03d}_T001_{instrument}"
        yield f'{{"id":"{product}:{exposure.upper()}","header":{{{",".join(fields)}}}}}'


def write_datasets(path: Path, vocabulary: dict[str, dict[str, list[str]]], count: int,
                   seed: int) -> int:
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        batch: list[str] = []
        for line in iter_dataset_lines(vocabulary, count, seed):
            batch.append(line)
            written += 1
            if len(batch) >= 10_000:
                handle.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            handle.write("\n".join(batch) + "\n")
    return written


# -- the whole thing ------------------------------------------------------------------------

def build_cases(config: GeneratorConfig) -> tuple[dict[str, str], list[RmapCase]]:
    """Mapping texts (name -> text, sha1sum not yet set) and every reference case."""
    rng = random.Random(config.seed)
    vocabulary = instruments_for(config.instruments)
    kinds = types_for(config.types)
    texts = {"jwst_0001.pmap": _pmap_text(list(vocabulary))}
    cases: list[RmapCase] = []
    serial = itertools.count(1)
    for instrument, values in vocabulary.items():
        texts[f"jwst_{instrument.lower()}_0001.imap"] = _imap_text(instrument,
                                                                  [k for k, _, _ in kinds])
        for filekind, fmt, layout in kinds:
            parameters = _pick_parameters(rng, values, filekind, config.cases)
            rows = _match_rows(rng, values, parameters, config.cases)
            table: dict[tuple[str, ...], list[tuple[str, str]]] = {}
            ext = "asdf" if fmt == "asdf" else "fits"
            for row in rows:
                dated = []
                for date in _useafters(rng, config.useafters):
                    name = f"jwst_{instrument.lower()}_{filekind}_{next(serial):04d}.{ext}"
                    dated.append((date, name))
                    cases.append(RmapCase(instrument, filekind, parameters, row, date, name,
                                          fmt, layout))
                table[row] = dated
            extra = _rmap_extras(rng, instrument, filekind, parameters, values.get(EXP_TYPE, []))
            name = f"jwst_{instrument.lower()}_{filekind}_0001.rmap"
            texts[name] = _rmap_text(instrument, filekind, parameters, table, extra)
    return texts, cases


def load_generated(out: str | Path) -> GeneratedContext:
    """The `GeneratedContext` of an earlier `generate` into `out` (its cases rebuilt from
    the saved configuration: generation is deterministic)."""
    out = Path(out)
    try:
        config = GeneratorConfig(**json.loads((out / CONFIG_NAME).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{out / CONFIG_NAME}: not a generated context: {exc}") from None
    texts, cases = build_cases(config)
    datasets = config.datasets if (out / "datasets.jsonl").is_file() else 0
    return GeneratedContext(out, "jwst_0001.pmap", sorted(texts), cases, datasets, 0.0)


def generate(config: GeneratorConfig, out: str | Path,
             progress: Callable[[str], None] | None = None) -> GeneratedContext:
    """Write the context, its references and the dataset catalog under `out`."""
    started = time.perf_counter()
    out = Path(out)
    mappings_dir = out / "mappings"
    references_dir = out / "references"
    mappings_dir.mkdir(parents=True, exist_ok=True)
    references_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _message: None)
    texts, cases = build_cases(config)
    for name, text in texts.items():
        _write_mapping(mappings_dir, name, text)
    say(f"wrote {len(texts)} mappings")
    if config.references == "all":
        for number, case in enumerate(cases):
            write_reference(case, references_dir / case.reference, seed=config.seed * 100003 + number)
        say(f"wrote {len(cases)} references")
    (out / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    vocabulary = instruments_for(config.instruments)
    count = write_datasets(out / "datasets.jsonl", vocabulary, config.datasets, config.seed)
    say(f"wrote {count} datasets")
    return GeneratedContext(out, "jwst_0001.pmap", sorted(texts), cases, count,
                            time.perf_counter() - started)
