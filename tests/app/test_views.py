"""Fleet, queues, triage, placeholders and the command log against a real server."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static

from fleetdeck.app.tui.screens.fleet import FleetScreen, ssh_command, worker_gpus, worker_state
from fleetdeck.app.tui.screens.modals import ConfirmScreen
from fleetdeck.app.tui.screens.queues import QueuesScreen
from fleetdeck.app.tui.screens.triage import TriageScreen
from fleetdeck.client import Client
from tests.app.pilot import drive, make_app, until


def plain(widget: Static) -> str:
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)


def test_fleet_shows_agents_with_gpu_bars_and_memory_trend(tui_client: Client) -> None:
    task = tui_client.create_task(name="on-gpu", project="tui/fleet")
    tui_client.heartbeat("gpu-1-agent", queues=["default"], status="running", host="gpu-1", task_id=task["id"],
                         stats={"gpus": [{"util": 87, "mem_used": 60e9, "mem_total": 80e9}], "rss_bytes": 300e6})
    tui_client.heartbeat("gpu-2-agent", queues=["default"], status="stuck", host="gpu-2", stats={})

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen)
        table = screen.query_one("#fleet-table", DataTable)
        await until(pilot, lambda: table.row_count >= 2)
        row = table.get_row("agent:gpu-1-agent")
        assert str(row[2]) == "running" and str(row[3]) == task["id"][:8]
        assert str(row[4]).endswith("87%") and str(row[5]).endswith("75%") and str(row[6]) == "286.1 MiB"
        info = plain(screen.query_one("#fleet-info", Static))
        assert "1 faulty" in info
        assert "fleet hosts are not available on this server" in info or "/fleet/hosts" not in info
        await pilot.press("f")
        assert [key for key, _ in screen.visible_rows()] == ["agent:gpu-2-agent"]
        await pilot.press("f", "slash", *"gpu-1")
        assert [key for key, _ in screen.visible_rows()] == ["agent:gpu-1-agent"]
        await pilot.press("escape")
        assert len(screen.visible_rows()) >= 2
        table.move_cursor(row=table.get_row_index("agent:gpu-1-agent"))
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "task_id", None) == task["id"], message="drill into its task")

    drive(make_app(tui_client, view="fleet"), scenario)


def test_fleet_row_state_and_stats_helpers() -> None:
    assert worker_gpus({"stats": {"gpus": [{"util": 50}, {"util": 100, "mem_used": 1, "mem_total": 4}]}}) == (0.75, 0.25)
    assert worker_gpus({"stats": {}}) == (None, None)
    assert worker_state({"status": "idle", "last_seen": 0, "ttl_s": 10}, now=100) == "stale"
    assert worker_state({"status": "dead", "last_seen": 0, "ttl_s": 10}, now=100) == "dead"
    assert ssh_command({"name": "h", "address": "10.0.0.5; rm -rf /", "user": "ml", "port": 2222}) == [
        "ssh", "-o", "StrictHostKeyChecking=yes", "-p", "2222", "ml@10.0.0.5; rm -rf /"]  # one argv item, no shell


def test_queues_lists_entries_and_removes_and_moves(tui_client: Client) -> None:
    first = tui_client.create_task(name="waiting-1", project="tui/queues")
    second = tui_client.create_task(name="waiting-2", project="tui/queues")
    tui_client.enqueue(first["id"], "tui-a")
    tui_client.enqueue(second["id"], "tui-a", priority=5)
    tui_client.heartbeat("q-agent", queues=["tui-a"], status="idle")

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, QueuesScreen) and app.screen)
        queues = screen.query_one("#queues-table", DataTable)
        await until(pilot, lambda: queues.row_count >= 1 and "tui-a" in [str(k.value) for k in queues.rows])
        queues.move_cursor(row=queues.get_row_index("tui-a"))
        await until(pilot, lambda: screen.current == "tui-a" and len(screen.entries) == 2)
        assert str(queues.get_row("tui-a")[2]) == "q-agent"
        assert [e["task_name"] for e in screen.entries] == ["waiting-2", "waiting-1"]  # priority first
        await pilot.press("tab")
        await pilot.press("x")
        confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert confirm.targets == [f"waiting-2 ({second['id'][:8]})"]
        await pilot.press("y")
        await until(pilot, lambda: [e["task_name"] for e in screen.entries] == ["waiting-1"], message="removed")
        assert tui_client.get_task(second["id"])["status"] == "created"
        await pilot.press("m")
        await until(pilot, lambda: app.screen is not screen)
        await pilot.press(*"tui-b", "enter")
        await until(pilot, lambda: tui_client.get_task(first["id"]).get("queue") == "tui-b", message="moved")
        assert [e["id"] for e in tui_client.get("/queues/tui-b/entries")["items"]] == [first["id"]]
        assert [e.action for e in app.source.log.entries] == ["remove from tui-a", "move tui-a → tui-b"]

    drive(make_app(tui_client, view="queues"), scenario)


def test_triage_and_feature_views_degrade_clearly(tui_client: Client) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, TriageScreen) and app.screen)
        info = screen.query_one("#triage-info", Static)
        await until(pilot, lambda: plain(info), message="the triage status line")
        if screen.unavailable is not None:
            assert "not available on this server" in plain(info)
        else:  # the fleet manager's findings endpoint exists: the view lists what it returns
            assert "findings" in plain(info)
        for key in ("5", "6"):
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == {"5": "costs", "6": "datasets"}[key]

    drive(make_app(tui_client, view="triage"), scenario)


def test_fleet_hosts_and_triage_findings_with_a_one_key_action(tui_client: Client) -> None:
    task = tui_client.create_task(name="silent-run", project="tui/triage")
    tui_client.enqueue(task["id"], "tui-triage")
    taken = tui_client.dequeue(["tui-triage"], worker="w-silent")
    assert taken is not None and taken["id"] == task["id"]
    tui_client.request("PUT", "/fleet/hosts/gpu-9", json={"address": "127.0.0.1", "port": 2222, "user": "ml",
                                                          "gpus": {"count": 8, "model": "H100"}})
    finding_id = "f" * 32
    tui_client.post("/fleet/findings", {"id": finding_id, "host": "gpu-9", "cause": "silent", "task_id": task["id"],
                                        "summary": "no output and 0% CPU for 10 min",
                                        "evidence": {"log_tail": "[red]not markup[/]"},
                                        "suggested_action": "abort-requeue"})

    async def scenario(app: Any, pilot: Any) -> None:
        fleet = await until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen)
        await until(pilot, lambda: "host:gpu-9" in fleet.rows)
        assert str(fleet.query_one("#fleet-table", DataTable).get_row("host:gpu-9")[4]) == "8× H100"
        await pilot.press("4")
        triage = await until(pilot, lambda: isinstance(app.screen, TriageScreen) and app.screen)
        await until(pilot, lambda: any(f["id"] == finding_id for f in triage.findings))
        table = triage.query_one("#triage-table", DataTable)
        table.move_cursor(row=table.get_row_index(finding_id))
        await pilot.pause()
        evidence = plain(triage.query_one("#triage-evidence", Static))
        assert "silent: no output and 0% CPU for 10 min" in evidence and "[red]not markup[/]" in evidence
        await pilot.press("A")
        confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert confirm.targets == ["gpu-9"]
        await pilot.press("y")
        await until(pilot, lambda: tui_client.get_task(task["id"])["status"] == "queued", timeout=30,
                    message="the task aborted and requeued by `fleetdeck triage act`")
        entry = await until(pilot, lambda: app.source.log.entries and app.source.log.entries[-1])
        assert entry.action == "triage abort-requeue" and entry.ok

    drive(make_app(tui_client, view="fleet"), scenario)


def test_a_run_wasting_its_gpu_is_marked_in_experiments_and_header(tui_client: Client) -> None:
    """The cost feature's live flags (``GET /costs/flags``) from a run's own resource samples."""
    import time

    from fleetdeck.app.tui.screens.experiments import ExperimentsScreen

    task = tui_client.create_task(name="idle-gpu", project="tui/waste", runtime={"host": "gpu-w"},
                                  environment={"gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]})
    tui_client.set_status(task["id"], "in_progress")
    stamps = [time.time() - 3600 + 10 * i for i in range(360)]
    tui_client.post_events(task["id"], {"scalars": [
        {"metric": ":monitor:", "variant": "gpu.0.util", "iterations": list(range(360)), "values": [1.0] * 360,
         "timestamps": stamps},
        {"metric": ":monitor:", "variant": "cpu.percent", "iterations": list(range(360)), "values": [100.0] * 360,
         "timestamps": stamps}]})

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and app.screen)
        screen.set_filter("idle-gpu")
        await until(pilot, lambda: task["id"] in app.waste and task["id"] in screen.rows, message="the waste flag")
        assert "input pipeline bound" in app.waste[task["id"]]
        screen.refresh_data()
        table = screen.query_one("#tasks", DataTable)
        await until(pilot, lambda: str(table.get_row(task["id"])[1]) == "in progress ⚠", message="the marked row")
        assert "⚠ 1 wasting GPUs" in app.screen.query_one("StatusHeader").render_status().plain

    drive(make_app(tui_client), scenario)


def test_the_agent_running_a_wasteful_task_is_marked_in_the_fleet_view(tui_client: Client) -> None:
    """The fleet row of the agent whose task idles its GPU carries the cost feature's reason."""
    import time

    task = tui_client.create_task(name="idle-gpu-on-agent", project="tui/waste-fleet", runtime={"host": "gpu-w2"},
                                  environment={"gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]})
    tui_client.set_status(task["id"], "in_progress")
    stamps = [time.time() - 3600 + 10 * i for i in range(360)]
    tui_client.post_events(task["id"], {"scalars": [
        {"metric": ":monitor:", "variant": "gpu.0.util", "iterations": list(range(360)), "values": [2.0] * 360,
         "timestamps": stamps},
        {"metric": ":monitor:", "variant": "cpu.percent", "iterations": list(range(360)), "values": [100.0] * 360,
         "timestamps": stamps}]})
    tui_client.heartbeat("gpu-w2-agent", queues=["default"], status="running", host="gpu-w2", task_id=task["id"],
                         stats={"gpus": [{"util": 2, "mem_used": 20e9, "mem_total": 80e9}]})

    async def scenario(app: Any, pilot: Any) -> None:
        screen = await until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen)
        await until(pilot, lambda: task["id"] in app.waste, message="the waste flag")
        screen.refresh_data()
        table = screen.query_one("#fleet-table", DataTable)
        def marked() -> bool:
            return table.row_count > 0 and "agent:gpu-w2-agent" in table.rows and \
                "⚠" in str(table.get_row("agent:gpu-w2-agent")[2])

        await until(pilot, marked, message="the marked fleet row")
        assert "input pipeline bound" in str(table.get_row("agent:gpu-w2-agent")[2])

    drive(make_app(tui_client, view="fleet"), scenario)


def test_fleet_row_actions_confirm_the_host_and_run_the_fleet_command(tui_client: Client) -> None:
    """R, S, D and P on a host row confirm naming the host and run ``fleetdeck fleet VERB HOST``.

    No inventory exists in this test's home, so the real command fails with its one-line error: the
    test shows the wiring (target, command, command log), the SSH side is tested in tests/fleet.
    """
    tui_client.request("PUT", "/fleet/hosts/gpu-8", json={"address": "127.0.0.1", "port": 2222, "user": "ml",
                                                          "gpus": {"count": 4, "model": "L4"}})

    async def scenario(app: Any, pilot: Any) -> None:
        fleet = await until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen)
        await until(pilot, lambda: "host:gpu-8" in fleet.rows)
        table = fleet.query_one("#fleet-table", DataTable)
        for key, verb in (("R", "restart"), ("S", "stop"), ("D", "drain"), ("P", "provision")):
            table.move_cursor(row=table.get_row_index("host:gpu-8"))
            await pilot.pause()
            await pilot.press(key)
            confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
            assert confirm.targets == ["gpu-8"]
            logged = len(app.source.log.entries)
            await pilot.press("y")
            entry = await until(pilot, lambda: len(app.source.log.entries) > logged and app.source.log.entries[-1],
                                timeout=30, message=f"`fleetdeck fleet {verb} gpu-8` in the command log")
            assert entry.action == f"fleet {verb}" and entry.target == "gpu-8" and not entry.ok
            assert "gpu-8" in entry.outcome and "Traceback" not in entry.outcome

    drive(make_app(tui_client, view="fleet"), scenario)
