"""The experiment detail view: every tab against a real server, and bad data (long lines, markup,
escape codes, unicode, 10,000 metrics in one task)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, OptionList, Static

from fleetdeck.app.tui.screens.detail import DetailScreen
from fleetdeck.app.tui.widgets.console import ConsoleView
from fleetdeck.app.tui.widgets.series import SeriesPanel
from fleetdeck.client import Client
from tests.app.pilot import drive, make_app, until


async def open_detail(app: Any, pilot: Any, task_id: str, tab: str = "overview") -> DetailScreen:
    """Open the detail view of ``task_id`` on ``tab`` and wait until it has loaded the task."""
    app.open_task(task_id, tab)
    return await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.record is not None
                       and tab in app.screen.built and app.screen, message="the detail view")


def test_overview_parameters_code_and_environment(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    child = runs[1]

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await open_detail(app, pilot, child["id"])
        overview = _plain(screen.query_one("#overview-body", Static))
        assert "resnet-lr0.05" in overview and "completed" in overview
        await pilot.press("p")
        await until(pilot, lambda: "parameters" in screen.built)
        params = screen.query_one("#params-table", DataTable)
        rows = {str(params.get_row_at(i)[2]): params.get_row_at(i) for i in range(params.row_count)}
        assert str(rows["lr"][0]) == "●" and str(rows["lr"][3]) == "0.05"  # overridden vs its parent
        assert str(rows["epochs"][0]) == " "
        await pilot.press("g")
        await until(pilot, lambda: "code" in screen.built)
        code = _plain(screen.query_one("#code-body", Static))
        assert "uncommitted changes" in code and "+lr = 0.01" in code and "0" * 40 in code
        await pilot.press("v")
        await until(pilot, lambda: "environment" in screen.built)
        packages = screen.query_one("#packages-table", DataTable)
        assert {str(packages.get_row_at(i)[0]) for i in range(packages.row_count)} == {"numpy", "torch"}

    drive(make_app(tui_client), scenario)


def _plain(widget: Static) -> str:
    """The text a Static shows (its Rich renderable printed without colour)."""
    import io

    from rich.console import Console

    console = Console(width=160, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.file.getvalue()


def test_metric_curves_are_downsampled_by_the_server(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    big = tui_client.create_task(name="million", project="tui/big")
    n = 200_000
    tui_client.post_events(big["id"], {"scalars": [{"metric": "loss", "variant": "train",
                                                    "iterations": list(range(n)), "values": [float(i % 977) for i in range(n)]}]})

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await open_detail(app, pilot, big["id"], "metrics")
        panel = screen.query_one("#metric-panel", SeriesPanel)
        await until(pilot, lambda: panel.shown is not None, message="the curve")
        assert panel.shown["total"] == n and panel.shown["downsampled"]
        assert len(panel.shown["values"]) <= 2 * max(panel.size.width, 100)
        assert max(v for v in panel.shown["values"] if v is not None) == 976.0  # spikes survive

    drive(make_app(tui_client), scenario)


def test_resources_tab_shows_monitor_series_only(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = await open_detail(app, pilot, runs[0]["id"], "resources")
        panel = screen.query_one("#resource-panel", SeriesPanel)
        await until(pilot, lambda: panel.shown is not None)
        assert [s["variant"] for s in panel.series] == ["cpu_percent"]
        await pilot.press("m")
        await until(pilot, lambda: "metrics" in screen.built)
        metrics = screen.query_one("#metric-panel", SeriesPanel)
        await until(pilot, lambda: metrics.series)
        assert {s["metric"] for s in metrics.series} == {"loss", "accuracy"}

    drive(make_app(tui_client), scenario)


def test_console_is_literal_follows_and_searches(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = await open_detail(app, pilot, runs[0]["id"], "console")
        view = screen.query_one("#console-view", ConsoleView)
        await until(pilot, lambda: view.total == 305 and view.follow, message="console tail")
        await until(pilot, lambda: view.scroll_offset.y == view.max_scroll_y > 0, message="the view at the tail")
        lines = [view.render_line(y).text for y in range(view.size.height)]
        assert any("needle-in-the-log" in line for line in lines)
        view.scroll_home(animate=False, immediate=True)
        await until(pilot, lambda: not view.follow, message="scrolling up pauses follow")
        await until(pilot, lambda: view._line(0) is not None, message="the first block")
        head = [view.render_line(y).text for y in range(4)]
        assert head[0].startswith("[red]markup[/] stays literal")
        assert "\x1b" not in head[1] and "escape codes stay harmless" in head[1]
        assert head[2].startswith("unicode: 日本語 ✓ 🚀 ü")
        assert len(head[3].rstrip()) <= view.size.width
        tui_client.post_events(runs[0]["id"], {"console": [{"line": f"late {i}"} for i in range(3)]})
        await until(pilot, lambda: view.new_lines == 3, message="new lines counted while paused")
        await pilot.press("end")
        await until(pilot, lambda: view.follow and view.new_lines == 0)
        await pilot.press("home", "slash", *"step 250", "enter")
        await until(pilot, lambda: view.match_line == 254, message="search result")
        assert view.scroll_offset.y <= 254 < view.scroll_offset.y + view.size.height

    drive(make_app(tui_client), scenario)


def test_artifacts_tab_lists_registered_artifacts(tui_client: Client, runs: list[dict[str, Any]], tmp_path: Any) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 100)
    blob = tui_client.upload_blob(model)
    tui_client.add_artifact(runs[2]["id"], name="model.bin", kind="model", sha256=blob["sha256"])

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await open_detail(app, pilot, runs[2]["id"], "artifacts")
        table = screen.query_one("#artifacts-table", DataTable)
        await until(pilot, lambda: table.row_count == 1 and str(table.get_row_at(0)[0]) == "model.bin")
        assert str(table.get_row_at(0)[3]) == "700 B" and str(table.get_row_at(0)[4]) == blob["sha256"][:12]

    drive(make_app(tui_client), scenario)


def test_ten_thousand_metrics_in_one_task(tui_client: Client, runs: list[dict[str, Any]]) -> None:
    wide = tui_client.create_task(name="wide", project="tui/big")
    scalars = [{"metric": f"layer{i // 100}", "variant": f"grad{i % 100}", "iterations": [0, 1],
                "values": [1.0, float(i)]} for i in range(10_000)]
    tui_client.request("POST", f"/tasks/{wide['id']}/events", json={"scalars": scalars}, timeout=120)

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await open_detail(app, pilot, wide["id"], "metrics")
        panel = screen.query_one("#metric-panel", SeriesPanel)
        options = panel.query_one("#series-list", OptionList)
        await until(pilot, lambda: options.option_count == 10_000, timeout=20, message="10,000 series listed")
        await until(pilot, lambda: panel.shown is not None)
        await pilot.press("tab")
        panel.query_one("#series-filter").value = "layer99/grad99"
        await until(pilot, lambda: options.option_count == 1)

    drive(make_app(tui_client), scenario)
