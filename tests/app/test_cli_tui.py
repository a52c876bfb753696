"""``fleetdeck tui`` / ``serve`` / no arguments: user mistakes are one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleetdeck.server_lite.process import ServerProcess


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetdeck.app", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_serve_refuses_a_non_loopback_address() -> None:
    done = run_cli("serve", "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "is not a loopback address" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_key_remap_is_one_line_naming_the_binding(isolated_home: Path, server: ServerProcess) -> None:
    config = isolated_home / "config" / "fleetdeck" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[tui.keys]\n"experiments.explode" = "x"\n')
    done = run_cli("--server", server.url, "--token", server.admin_token, "tui")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: config file {config}: [tui.keys] has an unknown binding id 'experiments.explode' "
        "(known in that view: experiments.abort, experiments.clear, experiments.compare, experiments.enqueue, "
        "experiments.faults, experiments.filter, experiments.logs, experiments.mark)"]


def test_no_arguments_without_a_terminal_prints_help() -> None:
    done = run_cli()
    assert done.returncode == 0 and "Open the control centre" in done.stdout


def test_serve_answers_a_browser_on_loopback(server: ServerProcess) -> None:
    import httpx

    from fleetdeck.server_lite.process import free_port
    from tests.support import wait_for

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fleetdeck.app", "--server", server.url, "--token",
                             server.admin_token, "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def page() -> str | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            except httpx.TransportError:
                return None
            return response.text if response.status_code == 200 else None

        body = wait_for(page, timeout=30, message="the textual-serve page")
        assert "fleetdeck" in body and server.admin_token not in body
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
