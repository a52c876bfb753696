"""The control centre: a Textual app with one mode per top-level view.

``MODES`` are the views (each keeps its own screen stack, so drilling into an experiment from the
fleet view and coming back lands on the fleet view); the header shows them with their keys. All
server I/O runs in thread workers (:mod:`fleetdeck.app.tui.polling`); a worker that fails with an
unexpected error becomes a visible notification, never a crash. Keys are bindings with ids that
the user can remap in ``[tui.keys]`` (:mod:`fleetdeck.app.tui.settings`).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from fleetdeck.app.tui.data import DataSource, TaskQuery, Unavailable
from fleetdeck.app.tui.fmt import clean
from fleetdeck.app.tui.messages import OpenTask
from fleetdeck.app.tui.polling import Poller
from fleetdeck.app.tui.settings import TuiSettings
from fleetdeck.app.tui.widgets.header import VIEWS
from fleetdeck.errors import FleetdeckError

FEATURE_SCREENS = {
    "costs": ("fleetdeck.app.tui.screens.costs", "CostsScreen", "Costs",
              "GPU cost and waste are not installed in this version yet (issue 8: `fleetdeck costs`)."),
    "datasets": ("fleetdeck.app.tui.screens.datasets", "DatasetsScreen", "Datasets",
                 "Versioned datasets are not installed in this version yet (issue 7: `fleetdeck data`)."),
}
"""Views built by other features: module, class (a Screen taking a Client), title, reason when absent."""

COMMAND_HELP = """\
:experiments [FILTER]   experiments, optionally filtered (status:failed project:NAME user:NAME tag:T words)
:fleet [NAME*]          hosts and agents          :queues       queues and waiting tasks
:triage                 supervisor findings       :costs  :datasets
:log                    actions run this session  :quit
"""


def parse_command(text: str) -> tuple[str, str]:
    """``:fleet gpu-*`` → ``("fleet", "gpu-*")``; a unique prefix of a view name is enough.

    Raises:
        ValueError: no view (or more than one) starts with the first word.
    """
    word, _, arg = text.strip().lstrip(":").strip().partition(" ")
    word = word.lower()
    if word in ("q", "quit", "exit"):
        return "quit", ""
    if word in ("help", "h", "?"):
        return "help", ""
    names = [mode for _, mode, _ in VIEWS]
    matches = [mode for mode in names if mode.startswith(word)] if word else []
    if len(matches) != 1:
        raise ValueError(f"unknown view {word!r}: use one of {', '.join(names)}" if not matches
                         else f"{word!r} is ambiguous: {', '.join(matches)}")
    return matches[0], arg.strip()


class ViewCommands(Provider):
    """Command palette: go to any view."""

    def _commands(self) -> Iterator[tuple[str, Callable[[], Any], str]]:
        app = self.app
        assert isinstance(app, FleetdeckApp)
        for key, mode, label in VIEWS:
            yield f"Go to {label}", partial(app.switch_view, mode), f"key {key} or :{mode}"
        yield "Refresh now", app.action_refresh, "ctrl+r"
        yield "Pause or resume live refresh", app.action_pause, "p"

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)


class ExperimentCommands(Provider):
    """Command palette: open an experiment by name (searched on the server)."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, FleetdeckApp)
        if len(query.strip()) < 2:
            return
        try:
            page = await asyncio.to_thread(app.source.tasks, TaskQuery(name=query.strip(), page_size=10))
        except FleetdeckError:
            return  # the header already shows the server as stale; the palette just has no hits
        for task in page.items:
            name = clean(task.get("name", ""), 80)
            yield Hit(0.5, Text(f"Open {name}"), partial(app.open_task, task["id"]),
                      help=f"{task.get('status', '')} · {clean(task.get('project_name', ''), 40)}")


class FleetdeckApp(App[None]):
    """The fleetdeck control centre.

    Args:
        source: the server connection (the app closes nothing; the caller owns the client).
        settings: poll interval, key metrics and the user's key map.
        clock: wall clock for ages and freshness (tests freeze it).
        view: the view to open first.
        view_filter: a filter for that view (as after ``/``).
        notice: a message to show once the app is up (e.g. where the embedded server keeps its data).
    """

    CSS_PATH = "fleetdeck.tcss"
    TITLE = "fleetdeck"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {ViewCommands, ExperimentCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "view('experiments')", "Experiments", id="app.experiments", show=False),
        Binding("2", "view('fleet')", "Fleet", id="app.fleet", show=False),
        Binding("3", "view('queues')", "Queues", id="app.queues", show=False),
        Binding("4", "view('triage')", "Triage", id="app.triage", show=False),
        Binding("5", "view('costs')", "Costs", id="app.costs", show=False),
        Binding("6", "view('datasets')", "Datasets", id="app.datasets", show=False),
        Binding("L", "view('log')", "Command log", id="app.log", show=False),
        Binding("colon", "command_line", ":view", id="app.command"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+r", "refresh", "Refresh", id="app.refresh", show=False),
        Binding("p", "pause", "Pause", id="app.pause", show=False),
        Binding("z", "zoom", "Zoom", id="app.zoom", show=False),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+q", "quit", "Quit", id="app.force-quit", show=False, priority=True),
    ]

    def __init__(self, source: DataSource, settings: TuiSettings | None = None,
                 clock: Callable[[], float] = time.time, view: str = "experiments", view_filter: str = "",
                 notice: str = "") -> None:
        super().__init__()
        self.source = source
        self.settings = settings or TuiSettings()
        self.clock = clock
        self.initial_view = view
        self.initial_filter = view_filter
        self.notice = notice
        self.summary: dict[str, Any] | None = None
        """Counts by status from ``GET /tasks-summary`` (None until the first poll)."""
        self.worker_count: int | None = None
        self.last_ok: float | None = None
        """When a poll last reached the server (``clock`` time)."""
        self.last_error: str | None = None
        """Why the last poll failed; None while the server answers."""
        self.paused = False
        self.host_health: dict[str, int] | None = None
        """Fleet hosts by health (ok, degraded, down, …); None when the server has no fleet API."""
        self.waste: dict[str, str] = {}
        """Reason per task id (and ``host:NAME``) flagged as wasting GPUs right now (``GET /costs/flags``)."""
        self._fleet_poller: Poller[tuple[dict[str, int] | None, dict[str, str]]] = Poller(
            self, self._fetch_fleet_health, self._apply_fleet_health, self.mark_stale, self.settings.poll_s * 5,
            "fleet-health")
        self._summary_poller: Poller[tuple[dict[str, Any], int]] = Poller(
            self, self._fetch_summary, self._apply_summary, self.mark_stale, self.settings.poll_s, "summary")
        from fleetdeck.app.tui.screens.commandlog import CommandLogScreen
        from fleetdeck.app.tui.screens.experiments import ExperimentsScreen
        from fleetdeck.app.tui.screens.fleet import FleetScreen
        from fleetdeck.app.tui.screens.queues import QueuesScreen
        from fleetdeck.app.tui.screens.triage import TriageScreen

        for mode, factory in (("experiments", ExperimentsScreen), ("fleet", FleetScreen), ("queues", QueuesScreen),
                              ("triage", TriageScreen), ("log", CommandLogScreen)):
            self.add_mode(mode, factory)
        for mode in FEATURE_SCREENS:
            self.add_mode(mode, partial(self._feature_screen, mode))

    # -- properties the views read ---------------------------------------------------------

    @property
    def readonly(self) -> bool:
        return self.source.readonly

    @property
    def poll_s(self) -> float:
        return self.settings.poll_s

    @property
    def key_metrics(self) -> list[str]:
        return self.settings.key_metrics

    # -- lifecycle -------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        self.switch_view(self.initial_view, self.initial_filter)
        self._summary_poller.poll_now()
        self._fleet_poller.poll_now()
        if self.notice:
            self.notify(self.notice, title="fleetdeck", timeout=15)

    def on_unmount(self) -> None:
        self._summary_poller.pause()
        self._fleet_poller.pause()

    def _feature_screen(self, mode: str) -> Screen[Any]:
        module_name, class_name, title, reason = FEATURE_SCREENS[mode]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            from fleetdeck.app.tui.screens.placeholder import PlaceholderScreen

            return PlaceholderScreen(title, reason)
        screen_class = getattr(module, class_name)
        return screen_class(self.source.client)  # type: ignore[no-any-return]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The worker-error policy: an unexpected failure is shown, and the app keeps running."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.name or 'background task'}: {type(error).__name__}: {error}",
                        title="internal error", severity="error", timeout=10)

    # -- freshness -------------------------------------------------------------------------

    def _fetch_summary(self) -> tuple[dict[str, Any], int]:
        return self.source.summary(), len(self.source.workers())

    def _fetch_fleet_health(self) -> tuple[dict[str, int] | None, dict[str, str]]:
        """Host health counts and waste flags; each is optional (absent on an older server)."""
        health: dict[str, int] | None
        try:
            health = {}
            for host in self.source.fleet_hosts():
                state = str(host.get("state") or "unknown")
                health[state] = health.get(state, 0) + 1
        except Unavailable:
            health = None
        waste: dict[str, str] = {}
        try:
            for flag in self.source.waste_flags():
                reason = str(flag.get("reason") or flag.get("kind") or "GPU waste")
                if flag.get("task_id"):
                    waste[str(flag["task_id"])] = reason
                elif flag.get("host"):
                    waste[f"host:{flag['host']}"] = reason
        except Unavailable:
            pass  # no cost feature on this server: nothing to mark
        return health, waste

    def _apply_fleet_health(self, data: tuple[dict[str, int] | None, dict[str, str]]) -> None:
        self.host_health, self.waste = data
        self._update_header()

    def _apply_summary(self, data: tuple[dict[str, Any], int]) -> None:
        self.summary, self.worker_count = data
        self.mark_fresh()

    def mark_fresh(self) -> None:
        recovered = self.last_error is not None
        self.last_ok = self.clock()
        self.last_error = None
        if recovered:
            self.notify("server answers again", title="reconnected")
        self._update_header()

    def mark_stale(self, error: FleetdeckError) -> None:
        self.last_error = str(error).splitlines()[0] if str(error) else type(error).__name__
        self._update_header()

    def _update_header(self) -> None:
        from fleetdeck.app.tui.widgets.header import StatusHeader

        for header in self.screen.query(StatusHeader):
            header.update_text()

    # -- navigation ------------------------------------------------------------------------

    def switch_view(self, mode: str, view_filter: str = "") -> None:
        """Show a top-level view, optionally filtered."""
        self.switch_mode(mode)
        if view_filter:
            self.call_after_refresh(self._apply_filter, mode, view_filter)
        self._update_header()

    def _apply_filter(self, mode: str, view_filter: str) -> None:
        screen = self._screen_stacks[mode][0] if self._screen_stacks.get(mode) else None
        setter = getattr(screen, "set_filter", None)
        if setter is not None:
            setter(view_filter)

    def open_task(self, task_id: str, tab: str = "overview") -> None:
        from fleetdeck.app.tui.screens.detail import DetailScreen

        self.push_screen(DetailScreen(task_id, tab))

    def on_open_task(self, message: OpenTask) -> None:
        self.open_task(message.task_id, message.tab)

    def action_view(self, mode: str) -> None:
        self.switch_view(mode)

    def action_command_line(self) -> None:
        from fleetdeck.app.tui.screens.modals import PromptScreen

        self.push_screen(PromptScreen(":", placeholder="experiments status:failed · fleet gpu-* · queues · "
                                                       "triage · log · quit"), self.run_command)

    def run_command(self, text: str | None) -> None:
        """Run a ``:`` command line (``experiments status:failed``, ``fleet gpu-*``, ``quit``)."""
        if not text:
            return
        try:
            mode, arg = parse_command(text)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        if mode == "quit":
            self.exit()
        elif mode == "help":
            self.action_help()
        else:
            self.switch_view(mode, arg)

    def action_help(self) -> None:
        from fleetdeck.app.tui.screens.modals import TextScreen

        text = Text("keys here\n", style="bold")
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.id or binding.id in seen:
                continue  # widgets' built-in keys (cursor movement) are left to the footer
            seen.add(binding.id)
            text.append(f"  {self.get_key_display(binding):<12}", style="bold cyan")
            text.append(f"{binding.description}")
            text.append(f"   {binding.id}\n", style="dim")
        text.append("\nviews\n", style="bold")
        for key, mode, label in VIEWS:
            text.append(f"  {key:<12}", style="bold cyan")
            text.append(f"{label}  (:{mode})\n")
        text.append("\ncommands\n", style="bold")
        text.append(COMMAND_HELP)
        text.append("\nRemap keys in the config file under [tui.keys]: \"BINDING ID\" = \"KEY\"", style="dim")
        self.push_screen(TextScreen("help", text))

    def action_refresh(self) -> None:
        self._summary_poller.poll_now()
        refresh = getattr(self.screen, "refresh_data", None)
        if refresh is not None:
            refresh()

    def action_pause(self) -> None:
        self.paused = not self.paused
        for stack in self._screen_stacks.values():
            for screen in stack:
                setter = getattr(screen, "set_paused", None)
                if setter is not None:
                    setter(self.paused)
        for poller in (self._summary_poller, self._fleet_poller):
            if self.paused:
                poller.pause()
            else:
                poller.resume()
        self.notify("live refresh paused (p resumes)" if self.paused else "live refresh resumed")
        self._update_header()

    def action_zoom(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None:
            screen.maximize(screen.focused)


def binding_ids() -> set[str]:
    """Every binding id the user may remap in ``[tui.keys]``."""
    from fleetdeck.app.tui.screens import commandlog, compare, detail, experiments, fleet, modals, queues, triage
    from fleetdeck.app.tui.widgets.console import ConsoleView

    classes: list[Any] = [FleetdeckApp, experiments.ExperimentsScreen, detail.DetailScreen, compare.CompareScreen,
                          fleet.FleetScreen, queues.QueuesScreen, triage.TriageScreen, commandlog.CommandLogScreen,
                          modals.ConfirmScreen, modals.PromptScreen, modals.TextScreen, ConsoleView]
    for module_name, class_name, _, _ in FEATURE_SCREENS.values():
        try:
            classes.append(getattr(importlib.import_module(module_name), class_name))
        except ModuleNotFoundError:
            continue  # the feature is not installed: it has no keys to remap
    ids = set()
    for cls in classes:
        for binding in cls.BINDINGS:
            if isinstance(binding, Binding) and binding.id:
                ids.add(binding.id)
    return ids
