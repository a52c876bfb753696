"""Client configuration: where the server is and which token to use.

Resolution order, first wins: explicit arguments, ``FLEETDECK_*`` environment variables, the user
config file (``$FLEETDECK_CONFIG`` or ``$XDG_CONFIG_HOME/fleetdeck/config.toml``), defaults.
The file is TOML::

    [server]
    url = "http://127.0.0.1:8008"
    token = "fd_..."
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetdeck.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_SERVER_URL = "http://127.0.0.1:8008"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def config_path() -> Path:
    """Path of the user config file (it may not exist)."""
    explicit = os.environ.get("FLEETDECK_CONFIG")
    if explicit:
        return Path(explicit)
    return _xdg("XDG_CONFIG_HOME", ".config") / "fleetdeck" / "config.toml"


def data_home() -> Path:
    """Default parent folder for fleetdeck's local data (embedded server, spool, caches)."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "fleetdeck"


def load_file(path: Path | None = None) -> dict[str, Any]:
    """Read the user config file; a missing file is an empty config.

    Raises:
        ConfigError: the file exists but is not valid TOML.
    """
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


@dataclass(frozen=True)
class ClientSettings:
    """Where the client connects and how patient it is."""

    url: str = DEFAULT_SERVER_URL
    """Base URL of the tracking server."""
    token: str | None = None
    """Bearer token; None means unauthenticated (only ``/health`` answers)."""
    timeout_s: float = 10.0
    """Timeout of one HTTP request."""
    retries: int = 3
    """How often an idempotent request is retried on a connection error or a 502/503/504."""

    @classmethod
    def load(cls, url: str | None = None, token: str | None = None) -> ClientSettings:
        """Resolve settings from arguments, environment and the config file."""
        server = load_file().get("server", {})
        if not isinstance(server, dict):
            raise ConfigError(f"config file {config_path()}: [server] must be a table")
        resolved_url = url or os.environ.get("FLEETDECK_SERVER_URL") or server.get("url") or DEFAULT_SERVER_URL
        resolved_token = token or os.environ.get("FLEETDECK_API_TOKEN") or server.get("token")
        timeout = _float_setting("FLEETDECK_TIMEOUT_S", server.get("timeout_s"), cls.timeout_s)
        if not isinstance(resolved_url, str) or not resolved_url.startswith(("http://", "https://")):
            raise ConfigError(f"server url {resolved_url!r} must start with http:// or https://")
        return cls(url=resolved_url.rstrip("/"), token=resolved_token, timeout_s=timeout)


def _float_setting(env: str, file_value: Any, default: float) -> float:
    raw = os.environ.get(env, file_value)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{env} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{env} must be positive, got {value}")
    return value


def save_server(url: str, token: str, path: Path | None = None) -> Path:
    """Write the [server] table of the user config, readable by the owner only (mode 600).

    Other tables already in the file are kept.
    """
    path = path or config_path()
    current = load_file(path)
    current["server"] = {**current.get("server", {}), "url": url, "token": token}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(dumps_toml(current))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialise a two-level dict of scalars (tables of keys) as TOML.

    JSON string escapes are valid TOML basic-string escapes, so ``json.dumps`` quotes safely.
    """
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for table, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{table}]")
            for key, value in values.items():
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
