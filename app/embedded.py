"""Find the configured server, or start the embedded one in the background for a local user."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx

from fleetdeck.config import DEFAULT_SERVER_URL, ClientSettings, data_home

STARTED: list[str] = []
"""One line per embedded server this process started (where it listens, where its data lives)."""


def ensure_server(announce: bool = True, url: str | None = None, token: str | None = None) -> ClientSettings:
    """Settings for a server that answers: the configured one, or a freshly started embedded one.

    Only a loopback URL is ever started locally; a configured remote server that does not answer
    stays an error for the caller to report.

    Args:
        announce: print where the started server listens and keeps its data.
        url: server URL from the command line (else the environment, the config, the default).
        token: token from the command line (else the environment or the config).
    """
    from fleetdeck.errors import ServerUnreachable

    settings = ClientSettings.load(url=url, token=token)
    if _healthy(settings.url):
        return settings
    parsed = urlparse(settings.url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ServerUnreachable(f"cannot reach fleetdeck server at {settings.url}")
    from fleetdeck.server_lite.process import ServerProcess

    data_dir = data_home() / "server"
    port = parsed.port or urlparse(DEFAULT_SERVER_URL).port or 8008
    proc = ServerProcess(data_dir, port=port)
    proc.start()
    notice = f"started the embedded fleetdeck server on {proc.url} (data in {data_dir}, log {proc.log_path})"
    STARTED.append(notice)
    if announce:
        print(notice)
    # The server just started from our data dir: its admin token is the one that works (a token
    # left in the config may belong to an older data dir).
    return ClientSettings.load(url=proc.url, token=proc.admin_token)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False
