"""A task's GPU-waste summary is stored when it finishes, so cost reports never wait for its samples."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from fleetdeck.server_lite.app import create_app
from fleetdeck.server_lite.costs import TASK_WASTE
from fleetdeck.server_lite.runner import open_state
from fleetdeck.server_lite.state import ServerState


def test_finishing_a_task_stores_its_held_idle_summary(tmp_path: Path) -> None:
    """The real app in-process over ASGI: a request returns after the route's background work ran."""
    state = open_state(tmp_path / "data")
    try:
        _doc, token = state.tokens.create("t", "admin")
        asyncio.run(_finish_an_idle_task(state, token))
    finally:
        state.events.close()
        state.store.close()


async def _finish_an_idle_task(state: ServerState, token: str) -> None:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleetdeck.test",
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        task = (await http.post("/tasks", json={"name": "idle", "project": "costs/finish",
                                         "environment": {"gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]},
                                         "runtime": {"gpus": [0], "host": "gpu-a"}})).json()
        assert (await http.post(f"/tasks/{task['id']}/status", json={"status": "in_progress"})).status_code == 200
        stamps = [time.time() - 3600 + 10 * i for i in range(360)]
        (await http.post(f"/tasks/{task['id']}/events", json={"scalars": [
            {"metric": ":monitor:", "variant": "gpu.0.util", "iterations": list(range(360)),
             "values": [2.0] * 360, "timestamps": stamps},
            {"metric": ":monitor:", "variant": "cpu.percent", "iterations": list(range(360)),
             "values": [100.0] * 360, "timestamps": stamps}]})).raise_for_status()
        assert state.store.get(TASK_WASTE, task["id"]) is None
        assert (await http.post(f"/tasks/{task['id']}/status", json={"status": "completed"})).status_code == 200
        summary = state.store.get(TASK_WASTE, task["id"])
        assert summary is not None and summary["spans"], "the finished task's idle hour is summarised"
        assert "input pipeline bound" in summary["spans"][0]["reason"]
