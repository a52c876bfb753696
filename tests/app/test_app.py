"""App-wide behaviour: freshness and recovery, views by key and by ``:``, help, palette, key remaps."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.widgets import Static

from fleetdeck.app.tui.app import ExperimentCommands, binding_ids, parse_command
from fleetdeck.app.tui.screens.commandlog import CommandLogScreen
from fleetdeck.app.tui.screens.experiments import ExperimentsScreen
from fleetdeck.app.tui.screens.fleet import FleetScreen
from fleetdeck.app.tui.screens.modals import TextScreen
from fleetdeck.app.tui.settings import TuiSettings, load_settings
from fleetdeck.app.tui.widgets.header import StatusHeader
from fleetdeck.client import Client
from fleetdeck.config import ClientSettings
from fleetdeck.errors import ConfigError
from fleetdeck.server_lite.process import ServerProcess
from tests.app.pilot import drive, make_app, until


def header_text(app: Any) -> str:
    return app.screen.query_one(StatusHeader).render_status().plain


def test_stale_when_the_server_stops_and_recovers_by_itself(server: ServerProcess, client: Client) -> None:
    client.create_task(name="survivor", project="tui/stale")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        # The rows and the header's counts come from two independent polls: wait for both.
        await until(pilot, lambda: len(screen.rows) == 1 and "1 total" in header_text(app))
        assert "runs 0 running" in header_text(app) and "updated" in header_text(app)
        server.stop()
        await until(pilot, lambda: "stale" in header_text(app), timeout=20, message="stale header")
        assert "cannot reach fleetdeck server" in header_text(app)
        assert len(screen.rows) == 1  # the last data stays on screen
        await pilot.press("2", "1")  # the app keeps working while the server is away
        assert app.current_mode == "experiments"
        server.start()
        await until(pilot, lambda: "updated" in header_text(app) and "stale" not in header_text(app), timeout=20,
                    message="recovery")

    settings = ClientSettings(url=server.url, token=server.admin_token, timeout_s=1.0, retries=0)
    with Client(settings=settings) as impatient:
        drive(make_app(impatient, settings=TuiSettings(poll_s=0.3)), scenario)


def test_views_by_key_and_by_command_line(tui_client: Client) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await until(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
        await pilot.press("2")
        assert isinstance(app.screen, FleetScreen) and "▌" not in header_text(app)
        await pilot.press("L")
        assert isinstance(app.screen, CommandLogScreen)
        await pilot.press("colon", *"exp status:failed", "enter")
        screen = await until(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and app.screen)
        await until(pilot, lambda: screen.filter_text == "status:failed")
        assert screen.current_query().status == ("failed",)
        await pilot.press("colon", *"nonsense", "enter")
        await pilot.pause()
        assert any("unknown view 'nonsense'" in str(n.message) for n in app._notifications)
        await pilot.press("question_mark")
        help_screen = await until(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen)
        body = help_screen.query_one("#text-body", Static).content
        assert isinstance(body, Text) and "experiments.faults" in body.plain and ":fleet" in body.plain
        await pilot.press("escape", "colon", *"quit", "enter")
        await until(pilot, lambda: not app.is_running, message="quit")

    drive(make_app(tui_client), scenario)


def test_parse_command() -> None:
    assert parse_command(":fleet gpu-*") == ("fleet", "gpu-*")
    assert parse_command("q") == ("quit", "")
    assert parse_command("que") == ("queues", "")
    with pytest.raises(ValueError, match="unknown view"):
        parse_command("bogus")


def test_keys_are_remappable_from_the_config(tui_client: Client) -> None:
    settings = load_settings(binding_ids(), {"tui": {"keys": {"experiments.faults": "x", "app.fleet": "f2"}}})
    assert settings.keymap == {"experiments.faults": "x", "app.fleet": "f2"}

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and app.screen)
        await pilot.press("x")
        assert screen.faults_only
        await pilot.press("f")  # the old key no longer toggles
        assert screen.faults_only
        await pilot.press("f2")
        assert isinstance(app.screen, FleetScreen)

    drive(make_app(tui_client, settings=settings), scenario)


@pytest.mark.parametrize(("raw", "message"), [
    ({"tui": {"keys": {"experiments.nuke": "x"}}}, "unknown binding id 'experiments.nuke'"),
    ({"tui": {"keys": {"app.quit": 3}}}, "must be a key"),
    ({"tui": {"poll_s": 0}}, "poll_s must be a number"),
    ({"tui": {"key_metrics": ["loss"]}}, "METRIC/VARIANT"),
    ({"tui": []}, "[tui] must be a table"),
])
def test_bad_tui_config_is_one_clear_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(binding_ids(), raw)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_command_palette_finds_experiments_on_the_server(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await until(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
        provider = ExperimentCommands(app.screen)
        hits = [hit async for hit in provider.search("lr0.05")]
        assert [str(hit.match_display) for hit in hits] == ["Open resnet-lr0.05"]
        hits[0].command()
        await until(pilot, lambda: getattr(app.screen, "task_id", None) == runs[1]["id"])

    drive(make_app(tui_client), scenario)


def test_command_log_view_lists_actions_and_refusals(tui_client: Client) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await until(pilot, lambda: isinstance(app.screen, ExperimentsScreen))
        with pytest.raises(Exception, match="read-only"):
            app.source.abort({"id": "0" * 32, "name": "ghost"})
        await pilot.press("L")
        screen = await until(pilot, lambda: isinstance(app.screen, CommandLogScreen) and app.screen)
        table = screen.query_one("#log-table")
        await until(pilot, lambda: table.row_count == 1)
        row = [str(cell) for cell in table.get_row_at(0)]
        assert row[1:] == ["abort", "ghost (00000000)", "refused: read-only session"]

    drive(make_app(tui_client, readonly=True), scenario)


def test_header_fits_an_80_column_terminal_and_keeps_freshness_and_warnings(server: ServerProcess,
                                                                             client: Client) -> None:
    client.create_task(name="narrow", project="tui/narrow")

    async def scenario(app: Any, pilot: Any) -> None:
        header = app.screen.query_one(StatusHeader)
        await until(pilot, lambda: "1 total" in header_text(app) and app.worker_count is not None)
        await pilot.pause(1.1)  # the header re-renders once a second
        tabs, status = header.render_status(header.content_size.width).plain.split("\n")
        assert len(tabs) <= 78 and len(status) <= 78, (tabs, status)
        assert "L Log" in tabs and "1 Exp" in tabs  # every view key stays visible
        assert "updated" in status  # freshness never drops off
        app.paused = True
        tabs, status = header.render_status(header.content_size.width).plain.split("\n")
        assert status.rstrip().endswith("ago") and "paused" in status and len(status) <= 78

    drive(make_app(client, label=server.url + "/a/very/long/path/that/would/push/everything/else/off"), scenario,
          size=(80, 24))
