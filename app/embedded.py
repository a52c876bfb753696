"""Find the configured server, or start the embedded one in the background for a local user."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx

from fleetdeck.config import DEFAULT_SERVER_URL, ClientSettings, data_home


def ensure_server(announce: bool = True) -> ClientSettings:
    """Settings for a server that answers: the configured one, or a freshly started embedded one.

    Only a loopback URL is ever started locally; a configured remote server that does not answer
    stays an error for the caller to report.
    """
    from fleetdeck.errors import ServerUnreachable

    settings = ClientSettings.load()
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
    if announce:
        print(f"started the embedded fleetdeck server on {proc.url} (data in {data_dir}, log {proc.log_path})")
    return ClientSettings.load(url=proc.url, token=settings.token or proc.admin_token)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False
