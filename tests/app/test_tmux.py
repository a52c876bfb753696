"""Smoke test in a real terminal: the real ``fleetdeck`` command under tmux (private socket).

Opens an experiment, its console, the fleet view, and quits, reading the screen with
``capture-pane`` and waiting for text with a deadline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetdeck.client import Client
from fleetdeck.server_lite.process import ServerProcess
from tests.support import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/system-deps.sh)")


class Terminal:
    """One tmux server on a private socket, running one command in a 120x35 pane."""

    def __init__(self, name: str) -> None:
        self.socket = name

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "35",
                        *env_args, *argv], check=True, timeout=10)
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_text(self, text: str, timeout: float = 30.0) -> str:
        return wait_for(lambda: text in (screen := self.screen()) and screen, timeout=timeout,
                        message=f"{text!r} on screen")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def dead(self) -> bool:
        return self.tmux("display-message", "-p", "#{pane_dead}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(f"fleetdeck-test-{os.getpid()}")
    try:
        yield term
    finally:
        term.kill()


def test_fleetdeck_in_a_real_terminal(server: ServerProcess, client: Client, terminal: Terminal,
                                      isolated_home: Path) -> None:
    task = client.create_task(name="tmux-run", project="tui/tmux")
    client.set_status(task["id"], "in_progress")
    client.post_events(task["id"], {"console": [{"line": f"tmux console line {i}"} for i in range(50)]})
    client.heartbeat("tmux-agent", status="idle", host="tmux-host", queues=["default"])
    fleetdeck = str(Path(sys.executable).parent / "fleetdeck")
    env = {"FLEETDECK_SERVER_URL": server.url, "FLEETDECK_API_TOKEN": server.admin_token, "TERM": "xterm-256color",
           "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"], "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"]}
    terminal.start([fleetdeck], env)
    terminal.wait_text("tmux-run")
    terminal.keys("Enter")
    terminal.wait_text("Overview")
    terminal.keys("l")
    terminal.wait_text("tmux console line 49")
    assert "50 lines · following" in terminal.screen()
    terminal.keys("Escape")
    terminal.wait_text("Describe")
    terminal.keys("2")
    terminal.wait_text("tmux-agent")
    terminal.keys("q")
    wait_for(terminal.dead, timeout=20, message="fleetdeck to exit")
