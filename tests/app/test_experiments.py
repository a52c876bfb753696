"""The experiments view against a real server: listing, filter and sort on the server, marks, actions."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from fleetdeck.app.tui.screens.compare import CompareScreen
from fleetdeck.app.tui.screens.detail import DetailScreen
from fleetdeck.app.tui.screens.experiments import ExperimentsScreen
from fleetdeck.app.tui.screens.modals import ConfirmScreen
from fleetdeck.client import Client
from tests.app.pilot import drive, make_app, until


def names_in(screen: ExperimentsScreen) -> list[str]:
    return [task["name"] for task in screen.rows.values()]


def test_lists_runs_with_key_metrics_and_sparklines(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        assert isinstance(screen, ExperimentsScreen)
        await until(pilot, lambda: len(screen.rows) >= 3 and screen.sparks, message="rows with sparklines")
        table = screen.query_one("#tasks", DataTable)
        assert [str(c.label) for c in table.columns.values()][:4] == [" ", "status", "project", "name ▼"[:0] + "name"]
        row = table.get_row(runs[0]["id"])
        assert str(row[3]) == "resnet-lr0.01"
        await until(pilot, lambda: "▁" in str(table.get_row(runs[0]["id"])[7])
                    or "█" in str(table.get_row(runs[0]["id"])[7]), message="a sparkline in the loss cell")
        assert screen.metric_keys == ["loss/train", "accuracy/val"] or set(screen.metric_keys) == {
            "loss/train", "accuracy/val"}

    drive(make_app(tui_client), scenario)


def test_filter_is_sent_to_the_server_and_esc_clears_it(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        await until(pilot, lambda: len(screen.rows) >= 3)
        await pilot.press("slash", *"lr0.05")
        await until(pilot, lambda: names_in(screen) == ["resnet-lr0.05"], message="the filtered page")
        assert screen.current_query().name == "lr0.05"
        await pilot.press("escape")  # leaves the box, clears the filter
        await until(pilot, lambda: len(screen.rows) >= 3, message="the unfiltered page")
        await pilot.press("slash", *"status:failed")
        await until(pilot, lambda: names_in(screen) == ["resnet-lr0.5"], message="status filter")

    drive(make_app(tui_client), scenario)


def test_faults_only_toggle_and_sort(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        await until(pilot, lambda: len(screen.rows) >= 3)
        await pilot.press("f")
        await until(pilot, lambda: names_in(screen) == ["resnet-lr0.5"], message="faults only")
        await pilot.press("f")
        await until(pilot, lambda: len(screen.rows) >= 3)
        await pilot.press("o", "o")  # created -> started -> name (ascending)
        await until(pilot, lambda: screen.current_query().order_by == "name" and
                    names_in(screen) == sorted(names_in(screen)) and len(screen.rows) >= 3, message="sorted by name")
        assert "name ▲" in [str(c.label) for c in screen.query_one("#tasks", DataTable).columns.values()]
        await pilot.press("O")
        await until(pilot, lambda: names_in(screen) == sorted(names_in(screen), reverse=True), message="reversed")

    drive(make_app(tui_client), scenario)


def test_markup_in_a_task_name_is_shown_literally(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    hostile = tui_client.create_task(name="[red]x[/] [link=http://e]y", project="tui/hostile")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        await until(pilot, lambda: hostile["id"] in screen.rows)
        cell = screen.query_one("#tasks", DataTable).get_row(hostile["id"])[3]
        assert cell.plain == "[red]x[/] [link=http://e]y" and not cell.spans

    drive(make_app(tui_client), scenario)


def test_enter_opens_detail_and_marks_compare(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        screen.set_filter("resnet-lr0.0")
        await until(pilot, lambda: sorted(names_in(screen)) == ["resnet-lr0.01", "resnet-lr0.05"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        assert not screen.check_action("compare", ())
        await pilot.press("home", "space", "space")
        assert screen.marked == {runs[0]["id"], runs[1]["id"]}
        await pilot.press("c")
        compare = await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen)
        await until(pilot, lambda: compare.differing and len(compare.shown_curves) == 2, message="compare loaded")
        assert compare.differing == ["Args/lr"]
        assert {c.label for c in compare.shown_curves} == {"resnet-lr0.01", "resnet-lr0.05"}

    drive(make_app(tui_client), scenario)


def test_abort_confirms_naming_the_target_and_is_logged(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    victim = tui_client.create_task(name="abort-me", project="tui/actions")
    tui_client.set_status(victim["id"], "in_progress")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        screen.set_filter("abort-me")
        await until(pilot, lambda: names_in(screen) == ["abort-me"])
        assert screen.check_action("abort", ()) and not screen.check_action("requeue", ())
        await pilot.press("a")
        confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert confirm.targets == [f"abort-me ({victim['id'][:8]})"]
        await pilot.press("y")
        await until(pilot, lambda: tui_client.get_task(victim["id"])["status"] == "aborted", message="aborted")
        await until(pilot, lambda: screen.rows.get(victim["id"], {}).get("status") == "aborted")
        entry = app.source.log.entries[-1]
        assert (entry.action, entry.ok) == ("abort", True) and "abort-me" in entry.target

    drive(make_app(tui_client), scenario)


def test_readonly_removes_every_action(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    victim = tui_client.create_task(name="readonly-target", project="tui/actions")
    tui_client.set_status(victim["id"], "in_progress")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        screen.set_filter("readonly-target")
        await until(pilot, lambda: names_in(screen) == ["readonly-target"])
        for action in ("abort", "requeue", "enqueue"):
            assert screen.check_action(action, ()) is False
        footer_keys = {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        assert "abort" not in footer_keys
        await pilot.press("a")
        assert not isinstance(app.screen, ConfirmScreen)
        assert tui_client.get_task(victim["id"])["status"] == "in_progress"

    drive(make_app(tui_client, readonly=True), scenario)


def test_requeue_and_enqueue_put_the_task_on_a_queue(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    task = tui_client.create_task(name="enqueue-me", project="tui/actions")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        screen.set_filter("enqueue-me")
        await until(pilot, lambda: names_in(screen) == ["enqueue-me"])
        await pilot.press("e")
        await until(pilot, lambda: app.screen is not screen)
        await pilot.press("ctrl+a", "ctrl+k", *"tui-q", "enter")
        await until(pilot, lambda: tui_client.get_task(task["id"])["status"] == "queued", message="queued")
        assert tui_client.get_task(task["id"])["queue"] == "tui-q"

    drive(make_app(tui_client), scenario)


def test_pages_follow_server_tokens(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    from dataclasses import replace

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        screen.query_state = replace(screen.query_state, page_size=2)
        screen.base_query = replace(screen.base_query, page_size=2)
        screen.refresh_data()
        await until(pilot, lambda: len(screen.rows) == 2 and screen.next_token)
        first = list(screen.rows)
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: len(screen.page_tokens) == 2 and list(screen.rows) != first)
        assert not set(first) & set(screen.rows)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: list(screen.rows) == first)

    drive(make_app(tui_client), scenario)


def test_y_shows_the_raw_record_literally(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    from textual.widgets import Static

    from fleetdeck.app.tui.screens.modals import TextScreen

    async def scenario(app: Any, pilot: Any) -> None:
        screen = app.screen
        screen.set_filter("resnet-lr0.5")
        await until(pilot, lambda: names_in(screen) == ["resnet-lr0.5"])
        await pilot.press("y")
        raw = await until(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen)
        body = raw.query_one("#text-body", Static).content
        assert f'"id": "{runs[2]["id"]}"' in body.plain and '"status_reason": "CUDA out of memory"' in body.plain
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)

    drive(make_app(tui_client), scenario)
