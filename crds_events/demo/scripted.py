"""`crds-events demo`: the whole system doing its job on one machine, step by step.

1. **Set up** a root (``./var/demo``): configuration, users (``jane`` of the NIRCam team,
   ``olivia`` the CRDS operator, password ``demo``), a generated JWST-like context
   (`crds_events.demo.generate`) imported as archived history, and its dataset catalog.
2. **Serve**: `crds_events.server.core.build_server` (the server ``crds-events serve`` runs:
   handlers, e-mail, submissions, delivery, reprocessing, web, scheduler) and the archive
   poller simulator (``ops/archive_poller.py``) on the delivery directory.
3. **Drive one lifecycle through the real interfaces**, printing each step as the log
   records it: a drop-directory submission -> READY -> confirm -> the ``.cat`` manifest ->
   ``.cat_proc`` -> archived -> set ``latest`` -> affected datasets computed (held) ->
   the pipeline (registered by the operator, who issues its key: `pipeline add`, or
   `pipeline rotate` on a reused root) runs ``crds-events sync`` and pushes its context
   with that key -> the DPAS e-mail released and delivered (maildir, or SMTP if configured).
4. Print the URL and what to look at; serve until Ctrl-C (or stop, with
   ``exit_after_script``: exit status 0 only if every step succeeded).

Running it again reuses the root: a new submission makes the next context. ``fresh``
starts over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import json
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from crds_events import events as ev
from crds_events.config import Settings, load_settings
from crds_events.errors import CrdsEventsError
from crds_events.server.core import build_server
from crds_events.store.root import init_root

__all__ = ["DemoOptions", "run_demo", "DemoError"]

REPO = Path(__file__).resolve().parents[2]
POLLER_PATH = REPO / "ops" / "archive_poller.py"
SUBMITTER, OPERATOR, PASSWORD = "jane", "olivia", "demo-password"
STEP_TIMEOUT = 60.0
DEMO_CONFIG = """\
# crds-events demo root (written by `crds-events demo`; see ops/crds-events.toml for a
# production configuration with every setting explained).
observatory = "jwst"
watcher_mode = "native"
repro_pipeline = "pipeline"
lock_timeout = "4h"
repro_hold_timeout = "1h"

[smtp]
# No host: e-mails are written to the maildir below the root. Set CRDS_EVENTS_SMTP_HOST
# (and _PORT) to send them to a real SMTP server instead.
from = "crds-events-demo@localhost"

[recipients]
redcat = ["redcat@demo.invalid"]
dpas = ["dpas@demo.invalid"]
devs = ["crds-devs@demo.invalid"]
"""


class DemoError(CrdsEventsError, RuntimeError):
    """A demo step did not happen (the message says which and what was seen)."""


@dataclasses.dataclass
class DemoOptions:
    root: Path = Path("var/demo")
    host: str = "127.0.0.1"
    port: int = 8000  # 0: a free port
    script: bool = True
    fresh: bool = False
    exit_after_script: bool = False
    datasets: int = 100_000  # the generated catalog (first run of a root only), and:
    instruments: int = 5
    types: int = 20
    step_timeout: float = STEP_TIMEOUT


# --- setting up the root -------------------------------------------------------------------

def prepare_root(options: DemoOptions, say: Callable[[str], None]) -> Settings:
    """Create (or reuse) the demo root: config, users, imported context and datasets."""
    from crds_events.accounts import users
    from crds_events.contexts.importcache import import_cache
    from crds_events.contexts.pointers import get_context
    from crds_events.demo.generate import GeneratorConfig, generate, load_generated
    from crds_events.reprocessing.datasets import dataset_count, import_datasets
    from crds_events.store import open_store

    root = options.root.resolve()
    if options.fresh and root.exists():
        shutil.rmtree(root)
        say(f"removed {root} (--fresh)")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "crds-events.toml").exists():
        (root / "crds-events.toml").write_text(DEMO_CONFIG)
    settings = load_settings(root)
    init_root(settings)
    generated_dir = root / "generated"
    try:
        generated = load_generated(generated_dir)
    except ValueError:
        generated = generate(GeneratorConfig(instruments=options.instruments, types=options.types,
                                             datasets=options.datasets), generated_dir)
        say(f"generated a JWST-like context: {generated.summary()}")
    store = open_store(settings)
    try:
        for name, role, full in ((SUBMITTER, "submitter", "Jane Doe (NIRCam team)"),
                                 (OPERATOR, "operator", "Olivia Ops (CRDS operator)")):
            if users.get_user(store, name) is None:
                users.add_user(store, name, f"{name}@demo.invalid", role, PASSWORD,
                               full_name=full)
        if get_context(store, "latest") is None:
            started = time.perf_counter()
            result = import_cache(settings, store, generated.mappings_dir,
                                  generated.references_dir, generated.pmap,
                                  ("latest", "edit", "versions"), actor="demo")
            say(f"imported as archived history: {result.summary()} "
                f"({time.perf_counter() - started:.1f} s)")
        else:
            say(f"reusing {root}: latest context is {get_context(store, 'latest')}")
        if generated.datasets and dataset_count(store) == 0:
            say(f"importing {generated.datasets} datasets for reprocessing (first run only)...")
            started = time.perf_counter()
            result = import_datasets(settings, store, generated.datasets_path, actor="demo")
            say(f"imported the dataset catalog: {result.count} datasets {result.by_instrument} "
                f"({time.perf_counter() - started:.1f} s)")
    finally:
        store.close()
    return settings


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def load_archive_poller():
    """`ArchivePoller` from ops/archive_poller.py (a script, not part of the package)."""
    if not POLLER_PATH.is_file():
        raise DemoError(f"{POLLER_PATH}: the archive poller simulator is missing")
    spec = importlib.util.spec_from_file_location("crds_events_archive_poller", POLLER_PATH)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.ArchivePoller


# --- following the log -----------------------------------------------------------------------

class LogFollower:
    """Waits for events recorded after a starting position (polling the log)."""

    def __init__(self, store, after: int, timeout: float, stop: threading.Event):
        self.store = store
        self.after = after
        self.timeout = timeout
        self.stop = stop
        self.seen: list = []

    def _pull(self) -> None:
        last = self.seen[-1].position if self.seen else self.after
        self.seen.extend(self.store.read_all(last))

    def wait(self, what: str, predicate: Callable[[Any], bool]) -> Any:
        """The first recorded event (since the start) for which `predicate(record)` holds."""
        deadline = time.monotonic() + self.timeout
        checked = 0
        while True:
            self._pull()
            for record in self.seen[checked:]:
                if predicate(record):
                    return record
            checked = len(self.seen)
            if self.stop.is_set():
                raise DemoError(f"stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: not recorded within {self.timeout:.0f} s")
            self.stop.wait(0.1)

    def of_type(self, event_type: type, **fields) -> Callable[[Any], bool]:
        def predicate(record) -> bool:
            if record.type != event_type.type:
                return False
            return all(record.data.get(key) == value for key, value in fields.items())
        return predicate


# --- the scripted lifecycle ------------------------------------------------------------------

@dataclasses.dataclass
class Step:
    title: str
    ok: bool = False
    detail: str = ""
    seconds: float = 0.0


class Script:
    def __init__(self, server, settings: Settings, url: str, console: Console,
                 stop: threading.Event, timeout: float):
        self.server = server
        self.settings = settings
        self.url = url
        self.console = console
        self.stop = stop
        self.steps: list[Step] = []
        self.follow = LogFollower(server.store, server.store.head(), timeout, stop)
        self.started = time.monotonic()
        self.facts: dict[str, Any] = {}

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Step]:
        step = Step(title)
        self.steps.append(step)
        begun = time.monotonic()
        try:
            yield step
            step.ok = True
        finally:
            step.seconds = time.monotonic() - begun
            clock = f"[dim]{time.monotonic() - self.started:6.1f}s[/dim]"
            if step.ok:
                self.console.print(f"{clock} [green]✔[/green] [bold]{title}[/bold]"
                                   + (f": {step.detail}" if step.detail else ""))
            else:
                self.console.print(f"{clock} [red]✘ {title}[/red]")

    def note(self, text: str) -> None:
        self.console.print(f"         [dim]{text}[/dim]")

    def run(self) -> bool:
        try:
            self._lifecycle()
        except DemoError as exc:
            self.console.print(f"[red]demo step failed: {exc}[/red]")
            return False
        return all(step.ok for step in self.steps)

    def _new_reference(self, directory: Path) -> tuple[Path, str, str]:
        """A new NIRCam flat for an existing case of the generated rules, dated after the
        previous run's so each run makes a forward change that affects datasets."""
        from crds_events.demo.generate import load_generated
        from crds_events.demo.reference_files import write_reference

        generated = load_generated(self.settings.root / "generated")
        case = next(c for c in generated.cases
                    if c.instrument == "NIRCAM" and c.filekind == "flat")
        runs = len([r for r in self.server.store.read_all(0, types=[ev.SubmissionStarted.type])])
        date = datetime.date(2025, 1, 1) + datetime.timedelta(days=7 * runs)
        useafter = f"{date.isoformat()} 00:00:00"
        case = dataclasses.replace(case, useafter=useafter)
        path = directory / f"nircam_flat_demo_{runs + 1:03d}.fits"
        write_reference(case, path, seed=1000 + runs,
                        description=f"demo flat #{runs + 1} for {', '.join(case.values)}")
        return path, useafter, " ".join(case.values)

    def _lifecycle(self) -> None:
        from crds_events.client.sync import sync
        from crds_events.contexts.pipelines import PipelineError, add_pipeline, rotate_pipeline
        from crds_events.contexts.pointers import get_context, set_context
        from crds_events.delivery import publish as deliveries
        from crds_events.submissions import review
        from crds_events.submissions.dropbox import drop_submission

        store = self.server.store
        follow = self.follow
        old_latest = get_context(store, "latest")
        self.facts["old_latest"] = old_latest

        with (tempfile.TemporaryDirectory(prefix="crds-events-demo-") as scratch,
              self.step("drop-directory submission") as step):
                path, useafter, where = self._new_reference(Path(scratch))
                fields = {"deliverer": "Jane Doe", "instrument": "NIRCAM",
                          "description": f"Demo: a new NIRCam flat ({where}) from {useafter}",
                          "change_level": "MODERATE"}
                sid = drop_submission(self.settings, SUBMITTER, [path], fields)
                self.facts["submission"] = sid
                follow.wait("SubmissionStarted", follow.of_type(ev.SubmissionStarted,
                                                                 submission_id=sid))
                step.detail = (f"{path.name} dropped into ingest/{SUBMITTER}/ -> submission "
                               f"{sid} (STARTED e-mail to the submitter and ReDCaT)")
        with self.step("processing: certify, official names, refactor, new rules") as step:
            outcome = review.follow(store, sid, timeout=self.follow.timeout,
                                    on_progress=lambda message: self.note(message))
            if outcome is None:
                raise DemoError(f"submission {sid}: no outcome within {self.follow.timeout:.0f} s")
            if not isinstance(outcome, ev.SubmissionReady):
                raise DemoError(f"submission {sid} ended {type(outcome).__name__}: "
                                f"{getattr(outcome, 'reason', '') or outcome}")
            new_pmap = outcome.new_context
            self.facts["new_context"] = new_pmap
            step.detail = f"READY: {', '.join(outcome.files)}"
        with self.step("confirm (the submitter)") as step:
            review.confirm(self.settings, store, sid, SUBMITTER)
            step.detail = f"{new_pmap} is now the edit context"
        with self.step("delivery: .cat manifest written") as step:
            created = follow.wait("DeliveryCreated", lambda r: r.type == ev.DeliveryCreated.type
                                  and r.data.get("submission_id") == sid)
            name = created.data["delivery"]
            info = deliveries.delivery_states(store, [name]).get(name)
            step.detail = (f"{name}.cat in {self.settings.delivery} "
                           f"({len(info.files) if info else '?'} files linked)")
        with self.step("archive poller took it: .cat -> .cat_proc") as step:
            follow.wait("DeliveryArchiving", lambda r: r.type == ev.DeliveryArchiving.type
                        and r.stream == created.stream)
            step.detail = f"{name}.cat_proc (archiving)"
        with self.step("archived and released") as step:
            follow.wait("DeliveryArchived", lambda r: r.type == ev.DeliveryArchived.type
                        and r.stream == created.stream)
            follow.wait(f"FileReleased {new_pmap}", follow.of_type(ev.FileReleased,
                                                                   name=new_pmap))
            step.detail = f"{name} archived; its files are downloadable (/unchecked_get/)"
        with self.step("set latest (the operator)") as step:
            change = set_context(self.settings, store, "latest", new_pmap,
                                 f"demo: operational rules with the new NIRCam flat ({sid})",
                                 OPERATOR)
            step.detail = f"latest {change.previous} -> {change.context} ({change.direction})"
        with self.step("reprocessing: affected datasets computed, held for the pipeline") as step:
            computed = follow.wait("AffectedDatasetsComputed",
                                   follow.of_type(ev.AffectedDatasetsComputed,
                                                  new_context=new_pmap))
            follow.wait("ReprocessingHeld", follow.of_type(ev.ReprocessingHeld,
                                                           new_context=new_pmap))
            count = computed.data.get("count", 0)
            self.facts["affected"] = count
            step.detail = (f"{count} of {computed.data.get('candidates', '?')} datasets "
                           f"affected {computed.data.get('by_instrument', {})}; held until "
                           f"pipeline '{self.settings.release_pipeline}' runs {new_pmap}")
        with self.step("pipeline: crds-events sync, pushing its context") as step:
            pipeline = self.settings.release_pipeline
            # the operator issues the pipeline's key; a reused root registered it already,
            # and the key was shown only then, so it gets a new one
            try:
                issued = add_pipeline(store, pipeline, actor=OPERATOR)
            except PipelineError:
                issued = rotate_pipeline(store, pipeline, actor=OPERATOR)
            cache = self.settings.root / "pipeline-cache"
            result = sync(self.url, [new_pmap], cache, push_context_key=issued.key)
            synced = getattr(result, "downloaded", None)
            step.detail = (f"cache {cache} holds {new_pmap}"
                           + (f" ({len(synced)} files fetched)" if isinstance(synced, list | tuple)
                              else "") + f"; pushed as '{pipeline}' with its key")
        with self.step("DPAS e-mail released and delivered") as step:
            follow.wait("ReprocessingReleased", follow.of_type(ev.ReprocessingReleased,
                                                               new_context=new_pmap))
            queued = follow.wait("the DPAS e-mail", lambda r: r.type == ev.EmailQueued.type
                                 and r.data.get("about", "").startswith("reprocessing")
                                 and new_pmap in json.dumps(r.data))
            follow.wait("EmailSent", follow.of_type(ev.EmailSent,
                                                    email_id=queued.data["email_id"]))
            where = self._find_mail(queued.data["message_id"])
            self.facts["dpas_mail"] = where
            step.detail = (f"'{queued.data['subject']}' to {', '.join(queued.data['to'])}"
                           + (f" -> {where}" if where else " (sent by SMTP)"))

    def _find_mail(self, message_id: str) -> str:
        maildir = self.settings.maildir / "new"
        if self.settings.smtp_host or not maildir.is_dir():
            return ""
        needle = message_id.encode()
        for path in sorted(maildir.iterdir()):
            with contextlib.suppress(OSError):
                if needle in path.read_bytes():
                    return str(path)
        raise DemoError(f"e-mail {message_id} recorded as sent but not in {maildir}")


# --- the command -------------------------------------------------------------------------------

def _what_to_look_at(console: Console, url: str, facts: dict) -> None:
    old, new = facts.get("old_latest", ""), facts.get("new_context", "")
    sid = facts.get("submission", "")
    console.print()
    console.print(f"[bold]The web app: {url}/[/bold]  (log in as {OPERATOR} or {SUBMITTER}, "
                  f"password '{PASSWORD}')")
    pages = [("/", "home: the operational context and recent activity")]
    if sid:
        pages.append((f"/submissions/{sid}", "the submission: certify results, new rules, diffs"))
    if old and new:
        pages.append((f"/diff/{old}/{new}", "what the new context changed"))
    pages += [
        ("/history", "context history (latest, edit, versions) with the change just made"),
        ("/operate/deliveries", "deliveries to the archive and their states"),
        ("/operate/pipelines", "pipelines: commanded vs actual context"),
        ("/operate/reprocessing", "affected datasets (ids downloadable), held / released"),
        ("/operate/emails", "every e-mail sent (the DPAS one last)"),
        ("/events", "the raw event timeline ('state as of event N')"),
        ("/health", "health (JSON); /metrics for Prometheus"),
    ]
    for path, what in pages:
        console.print(f"  {url}{path:<44} {what}")


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; the process exit status (0: every step succeeded / served until Ctrl-C)."""
    console = console or Console(highlight=False)
    say = console.print
    console.rule("[bold]crds-events demo[/bold]")
    settings = prepare_root(options, say)
    port = options.port or _free_port(options.host)
    url = f"http://{options.host}:{port}"
    server = build_server(settings, host=options.host, port=port)
    ArchivePoller = load_archive_poller()
    poller = ArchivePoller(settings.delivery, interval=0.3, delay=1.0, error_rate=0.0, seed=1)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    status = 0
    try:
        try:
            server.start()
        except OSError as exc:
            raise DemoError(f"cannot start the server on {options.host}:{port}: {exc} "
                            "(another demo running? use --port 0 for any free port)") from None
        poller.start()
        names = ", ".join(server.component_names())
        say(f"serving {settings.observatory} from {settings.root} at {url} ({names}); "
            f"archive poller on {settings.delivery}")
        if options.script:
            console.rule("one lifecycle, through the real interfaces")
            script = Script(server, settings, url, console, stop, options.step_timeout)
            ok = script.run()
            status = 0 if ok else 1
            console.rule("[green]lifecycle complete[/green]" if ok else "[red]lifecycle failed[/red]")
            _what_to_look_at(console, url, script.facts)
        else:
            _what_to_look_at(console, url, {})
        if not options.exit_after_script:
            say(f"serving at {url} - Ctrl-C stops")
            while not stop.wait(0.5):
                pass
            status = 0
    finally:
        say("stopping...")
        try:
            poller.stop()
        finally:
            server.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        say("stopped cleanly.")
    return status
