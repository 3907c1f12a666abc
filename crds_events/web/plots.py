"""Server-side SVG plots (matplotlib's SVG backend; no pyplot, so no global state and safe
from request threads).

Each ``*_svg`` function takes plain data and returns the SVG text; `plot_data` gathers that
data from the event log (through any object with ``read_all``, e.g. the web's request log).
The web caches rendered SVGs per log head position (`crds_events.web.pages.plotpages`).
"""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from crds_events import events as ev

__all__ = ["context_changes_svg", "delivery_latency_svg", "submissions_per_week_svg",
           "affected_counts_svg", "plot_data", "PLOTS"]

_SERIAL = re.compile(r"_(\d+)\.pmap$")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def _svg(figure: Figure) -> str:
    FigureCanvasSVG(figure)
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight")
    text = out.getvalue()
    # drop the XML prolog and DOCTYPE so the SVG can be inlined in a page
    return text[text.index("<svg"):]


def _figure(title: str) -> tuple[Figure, object]:
    figure = Figure(figsize=(8, 3.2), dpi=96)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _empty(axes, message: str = "no data yet") -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes,
              color="#5d6873")
    axes.set_xticks([])
    axes.set_yticks([])


def context_changes_svg(changes: Sequence[tuple[str, str, str]]) -> str:
    """``changes``: (recorded_at, pointer kind, pmap) in log order -> a step plot of each
    pointer's context serial over time."""
    figure, axes = _figure("Context changes per pointer (pmap serial)")
    series: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for when, kind, pmap in changes:
        match = _SERIAL.search(pmap)
        if match:
            xs, ys = series[kind]
            xs.append(_parse_time(when))
            ys.append(int(match.group(1)))
    if not series:
        _empty(axes)
    for kind, (xs, ys) in sorted(series.items()):
        axes.step(xs, ys, where="post", marker="o", markersize=3, label=kind)
    if series:
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=8)
        figure.autofmt_xdate()
    return _svg(figure)


def _latency_unit(hours: Sequence[float]) -> tuple[str, float]:
    """The unit a person reads these latencies in (seconds, minutes or hours: never
    "0.0003 hours") and the factor from hours to it."""
    top = max(hours, default=0.0)
    if top < 2 / 60:
        return "seconds", 3600.0
    if top < 2:
        return "minutes", 60.0
    return "hours", 1.0


def delivery_latency_svg(latencies: Sequence[tuple[str, float]]) -> str:
    """``latencies``: (archived_at, hours from confirm to archived) -> scatter over time,
    in seconds, minutes or hours as their size calls for."""
    unit, factor = _latency_unit([h for _, h in latencies])
    figure, axes = _figure(f"Delivery latency: confirm → archived ({unit})")
    if not latencies:
        _empty(axes)
    else:
        axes.plot([_parse_time(t) for t, _ in latencies], [h * factor for _, h in latencies],
                  "o", markersize=3)
        axes.set_ylim(bottom=0)
        figure.autofmt_xdate()
    return _svg(figure)


def submissions_per_week_svg(started: Iterable[str]) -> str:
    """``started``: recorded_at of each submission -> bars per ISO week (Monday)."""
    figure, axes = _figure("Submissions per week")
    weeks = Counter()
    for when in started:
        day = _parse_time(when).date()
        weeks[day - timedelta(days=day.weekday())] += 1
    if not weeks:
        _empty(axes)
    else:
        days = sorted(weeks)
        axes.bar(days, [weeks[d] for d in days], width=5)
        figure.autofmt_xdate()
    return _svg(figure)


def affected_counts_svg(transitions: Sequence[tuple[str, str, int]]) -> str:
    """``transitions``: (old context, new context, affected datasets) -> bars."""
    figure, axes = _figure("Affected datasets per context transition")
    if not transitions:
        _empty(axes)
    else:
        shown = transitions[-40:]
        labels = [f"{old.split('.')[0]}→{new.split('.')[0]}" for old, new, _ in shown]
        axes.bar(range(len(shown)), [n for _, _, n in shown])
        axes.set_xticks(range(len(shown)), labels, rotation=60, ha="right", fontsize=7)
    return _svg(figure)


def plot_data(log, observatory: str | None = None) -> dict[str, list]:
    """The inputs of every plot, read from ``log`` by event type (indexed reads)."""
    changes = [(r.recorded_at, r.event.kind, r.event.context)
               for r in log.read_all(types=[ev.ContextSet.type])]
    confirmed: dict[str, str] = {}
    delivery_of: dict[str, str] = {}
    latencies = []
    started = []
    types = [ev.SubmissionStarted.type, ev.SubmissionConfirmed.type, ev.SubmissionForced.type,
             ev.DeliveryCreated.type, ev.DeliveryArchived.type]
    for record in log.read_all(types=types):
        data = record.data
        if record.type == ev.SubmissionStarted.type:
            started.append(record.recorded_at)
        elif record.type in (ev.SubmissionConfirmed.type, ev.SubmissionForced.type):
            confirmed[data["submission_id"]] = record.recorded_at
        elif record.type == ev.DeliveryCreated.type:
            delivery_of[data["delivery"]] = data["submission_id"]
        else:
            submission = delivery_of.get(data.get("delivery", ""))
            if submission in confirmed:
                hours = (_parse_time(record.recorded_at)
                         - _parse_time(confirmed[submission])).total_seconds() / 3600
                latencies.append((record.recorded_at, hours))
    transitions = [(r.data.get("old_context", ""), r.data.get("new_context", ""),
                    int(r.data.get("count", 0)))
                   for r in log.read_all(types=[ev.AffectedDatasetsComputed.type])]
    return {"context_changes": changes, "delivery_latency": latencies,
            "submissions_per_week": started, "affected_counts": transitions}


PLOTS: Mapping[str, tuple[str, object]] = {
    "context_changes": ("Context changes over time", context_changes_svg),
    "delivery_latency": ("Delivery latency", delivery_latency_svg),
    "submissions_per_week": ("Submissions per week", submissions_per_week_svg),
    "affected_counts": ("Affected datasets per transition", affected_counts_svg),
}
