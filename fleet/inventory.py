"""The fleet inventory: which SSH hosts exist, how to reach them, what they cost, how agents run.

The inventory is one TOML file (``$FLEETDECK_FLEET_CONFIG`` or ``$XDG_CONFIG_HOME/fleetdeck/
fleet.toml``), documented by ``configs/fleet.example.toml``. ``fleetdeck fleet add`` edits it.
Host fields are data, never code: every remote command quotes them, and the host name is checked
like any other fleetdeck name before it becomes a worker name or a file name.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fleetdeck.config import config_path
from fleetdeck.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_FORBIDDEN_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/~+-]+")
"""install_dir and python end up in venv script shebangs, which pip writes for /bin/sh when they
need quoting; only plain path characters keep them from ever being read by a shell."""


def inventory_path() -> Path:
    """Where the inventory lives (it may not exist yet)."""
    explicit = os.environ.get("FLEETDECK_FLEET_CONFIG")
    return Path(explicit) if explicit else config_path().parent / "fleet.toml"


@dataclass(frozen=True)
class AgentLimits:
    """How the supervisor on a host treats its agent. Memory in MiB, times in seconds."""

    memory_limit_mb: float = 4096
    """Restart the agent at the next safe point (between tasks) once its process tree passes this."""
    hard_limit_mb: float = 8192
    """Restart at once, even mid-task, past this."""
    leak_slope_mb_per_min: float = 64
    """Restart at the next safe point when RSS grows faster than this over ``leak_window_s``."""
    leak_window_s: float = 600
    """Window over which the growth slope is measured (the window must be full before it counts)."""
    backoff_initial_s: float = 1
    """First wait after a crash; doubles per consecutive crash."""
    backoff_max_s: float = 300
    """Cap of the crash backoff."""
    backoff_reset_s: float = 600
    """An agent that ran this long without crashing starts again at ``backoff_initial_s``."""
    crash_loop_after: int = 5
    """Consecutive crashes after which the host is reported as crash-looping (restarts go on)."""
    silent_window_s: float = 600
    """A running task with no output and near-zero CPU and GPU for this long is flagged silent."""
    gpu_idle_window_s: float = 600
    """A task holding GPU memory at near-zero utilisation for this long is flagged."""
    phase_timeouts: dict[str, float] = field(default_factory=lambda: {
        "cloning": 600.0, "installing": 1800.0, "pulling": 1800.0, "starting": 300.0})
    """Seconds a task may stay in each of the agent's setup phases before it is flagged (the
    agent's own phase timeouts abort the task; these flag it for a person, with evidence)."""
    sample_interval_s: float = 2.0
    """How often the supervisor samples memory and checks for stuck tasks."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: AgentLimits | None = None, where: str = "limits") -> AgentLimits:
        base = base or cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "phase_timeouts":
                if not isinstance(value, dict) or not all(_positive(v) for v in value.values()):
                    raise ConfigError(f"{where}.phase_timeouts must map phase names to positive seconds")
                values[key] = {**base.phase_timeouts, **{str(k): float(v) for k, v in value.items()}}
            elif key == "crash_loop_after":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"{where}.crash_loop_after must be a positive integer, got {value!r}")
                values[key] = value
            else:
                if not _positive(value):
                    raise ConfigError(f"{where}.{key} must be a positive number, got {value!r}")
                values[key] = float(value)
        limits = replace(base, **values)
        if limits.hard_limit_mb < limits.memory_limit_mb:
            raise ConfigError(f"{where}: hard_limit_mb ({limits.hard_limit_mb:g}) is below memory_limit_mb "
                              f"({limits.memory_limit_mb:g})")
        return limits


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class Host:
    """One SSH-reachable machine of the fleet."""

    name: str
    """Unique name; also the agent's worker name."""
    address: str
    """IP address or DNS name."""
    user: str
    """Login user."""
    port: int = 22
    identity_file: str | None = None
    """Private key file; None uses the SSH agent and ``~/.ssh`` keys."""
    jump: str | None = None
    """Name of another inventory host to tunnel through (like ``ssh -J``)."""
    labels: tuple[str, ...] = ()
    queues: tuple[str, ...] = ("default",)
    """Queues the host's agent serves."""
    gpus: int = 0
    gpu_model: str | None = None
    price_per_hour: float | None = None
    """What the whole host costs per hour; None prices its GPUs from ``configs/pricing.toml``."""
    install_dir: str = ".fleetdeck"
    """Where fleetdeck lives on the host; relative paths are under the user's home."""
    python: str = "python3"
    """The host's Python (>= 3.10 with venv) used to create the agent's venv."""
    images: tuple[str, ...] = ()
    """Docker images to keep ready on this host (added to the inventory-wide list)."""
    agent_command: tuple[str, ...] = ()
    """The agent's argv; empty runs ``fleetdeck agent`` with the host's queues. ``{venv}`` is the
    installed venv's path."""
    limits: AgentLimits = field(default_factory=AgentLimits)

    def to_record(self, price_per_gpu_hour: float | None) -> dict[str, Any]:
        """The host as the server stores it (``PUT /fleet/hosts/{name}``); no secrets, no key paths."""
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "labels": list(self.labels), "queues": list(self.queues),
                "gpus": {"count": self.gpus, "model": self.gpu_model},
                "price_per_hour": self.price_per_hour, "price_per_gpu_hour": price_per_gpu_hour}


@dataclass(frozen=True)
class Inventory:
    """Every host plus the settings they share."""

    hosts: tuple[Host, ...] = ()
    server_url: str | None = None
    """URL the agents use to reach the server; None uses the workstation's configured URL."""
    images: tuple[str, ...] = ()
    """Docker images every host keeps ready."""
    max_image_gb: float = 10.0
    """Images larger than this are refused by ``fleetdeck fleet images sync``."""
    path: Path | None = None

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise ConfigError(f"no host {name!r} in the inventory {self.path or inventory_path()} (known: {known})")

    def select(self, names: list[str] | tuple[str, ...], all_hosts: bool = False) -> list[Host]:
        """Hosts by name, or every host with ``all_hosts``; asking for none is an error."""
        if all_hosts:
            if not self.hosts:
                raise ConfigError(f"the inventory {self.path or inventory_path()} has no hosts; "
                                  "add one with `fleetdeck fleet add`")
            return list(self.hosts)
        if not names:
            raise ConfigError("name at least one host, or pass --all")
        return [self.host(n) for n in names]

    def jump_host(self, host: Host) -> Host:
        if not host.jump:
            raise ConfigError(f"host {host.name} has no jump host")
        if host.jump == host.name:
            raise ConfigError(f"host {host.name} cannot jump through itself")
        return self.host(host.jump)

    def images_for(self, host: Host) -> list[str]:
        return list(dict.fromkeys([*self.images, *host.images]))

    def with_host(self, host: Host, replace_existing: bool = False) -> Inventory:
        if any(h.name == host.name for h in self.hosts) and not replace_existing:
            raise ConfigError(f"host {host.name!r} is already in the inventory; pass --replace to change it")
        others = tuple(h for h in self.hosts if h.name != host.name)
        return replace(self, hosts=(*others, host))


def check_host_name(name: str) -> str:
    """Host names become worker names and file names: printable, no slashes, not '.'/'..'."""
    if not name or not name.strip() or len(name) > 200:
        raise ConfigError("host name must be 1 to 200 printable characters")
    if _FORBIDDEN_NAME.search(name) or name.strip() in (".", ".."):
        raise ConfigError(f"host name {name!r} must not contain '/', '\\' or control characters")
    return name


def parse_target(target: str) -> tuple[str, str, int]:
    """``user@address[:port]`` -> (user, address, port); IPv6 as ``user@[::1]:22``."""
    match = re.fullmatch(r"([^@\s]+)@(\[[^\]]+\]|[^:\s]+)(?::(\d+))?", target)
    if not match:
        raise ConfigError(f"--host {target!r} must look like user@address[:port]")
    user, address, port = match.group(1), match.group(2).strip("[]"), int(match.group(3) or 22)
    if not 0 < port < 65536:
        raise ConfigError(f"--host {target!r}: port must be 1-65535")
    return user, address, port


def load(path: Path | None = None) -> Inventory:
    """Read and validate the inventory; a missing file is an empty inventory.

    Raises:
        ConfigError: invalid TOML or an invalid value, named with its host and key.
    """
    path = path or inventory_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Inventory(path=path)
    except OSError as exc:
        raise ConfigError(f"cannot read inventory {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"inventory {path} is not valid TOML: {exc}") from None
    return from_dict(data, path)


def from_dict(data: dict[str, Any], path: Path | None = None) -> Inventory:
    where = str(path or "inventory")
    defaults = _table(data, "defaults", where)
    base_limits = AgentLimits.from_dict(_table(data, "limits", where), where=f"{where} [limits]")
    images_table = _table(data, "images", where)
    hosts_raw = data.get("hosts", [])
    if not isinstance(hosts_raw, list):
        raise ConfigError(f"{where}: hosts must be an array of tables ([[hosts]])")
    hosts: list[Host] = []
    seen: set[str] = set()
    for index, raw in enumerate(hosts_raw):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: hosts[{index}] must be a table")
        host = _host(raw, defaults, base_limits, f"{where} hosts[{index}]")
        if host.name in seen:
            raise ConfigError(f"{where}: host name {host.name!r} appears twice")
        seen.add(host.name)
        hosts.append(host)
    inv = Inventory(hosts=tuple(hosts), server_url=_opt_str(data.get("server_url"), f"{where} server_url"),
                    images=_str_tuple(images_table.get("keep", []), f"{where} [images] keep"),
                    max_image_gb=float(images_table.get("max_size_gb", 10.0)), path=path)
    for host in inv.hosts:
        if host.jump:
            inv.jump_host(host)
    return inv


_HOST_KEYS = {"name", "address", "port", "user", "identity_file", "jump", "labels", "queues", "gpus", "gpu_model",
              "price_per_hour", "install_dir", "python", "images", "agent_command", "limits"}


def _host(raw: dict[str, Any], defaults: dict[str, Any], base_limits: AgentLimits, where: str) -> Host:
    unknown = sorted(set(raw) - _HOST_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    merged = {**{k: v for k, v in defaults.items() if k in _HOST_KEYS - {"name", "address", "limits"}}, **raw}
    name = merged.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: name is required")
    where = f"{where} ({name})"
    check_host_name(name)
    address, user = merged.get("address"), merged.get("user")
    if not isinstance(address, str) or not address:
        raise ConfigError(f"{where}: address is required")
    if not isinstance(user, str) or not user:
        raise ConfigError(f"{where}: user is required")
    port = merged.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"{where}: port must be 1-65535, got {port!r}")
    gpus = merged.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise ConfigError(f"{where}: gpus must be a count >= 0, got {gpus!r}")
    price = merged.get("price_per_hour")
    if price is not None and (not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0):
        raise ConfigError(f"{where}: price_per_hour must be a number >= 0, got {price!r}")
    limits = raw.get("limits", {})
    if not isinstance(limits, dict):
        raise ConfigError(f"{where}: limits must be a table")
    queues = _str_tuple(merged.get("queues", ["default"]), f"{where} queues")
    if not queues:
        raise ConfigError(f"{where}: queues must name at least one queue")
    for key in ("install_dir", "python"):
        value = merged.get(key)
        if value is not None and (not isinstance(value, str) or not _SAFE_PATH.fullmatch(value)):
            raise ConfigError(f"{where}: {key} {value!r} may only contain letters, digits and . _ / ~ + -")
    return Host(name=name, address=address, user=user, port=port,
                identity_file=_opt_str(merged.get("identity_file"), f"{where} identity_file"),
                jump=_opt_str(merged.get("jump"), f"{where} jump"),
                labels=_str_tuple(merged.get("labels", []), f"{where} labels"),
                queues=queues, gpus=gpus,
                gpu_model=_opt_str(merged.get("gpu_model"), f"{where} gpu_model"),
                price_per_hour=None if price is None else float(price),
                install_dir=_opt_str(merged.get("install_dir"), f"{where} install_dir") or ".fleetdeck",
                python=_opt_str(merged.get("python"), f"{where} python") or "python3",
                images=_str_tuple(merged.get("images", []), f"{where} images"),
                agent_command=_str_tuple(merged.get("agent_command", []), f"{where} agent_command"),
                limits=AgentLimits.from_dict(limits, base_limits, where=f"{where} limits"))


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


# -- writing ---------------------------------------------------------------------------------------


def save(inv: Inventory, path: Path | None = None) -> Path:
    """Write the inventory atomically. Settings shared through [defaults] are written per host."""
    path = path or inv.path or inventory_path()
    lines = ["# fleetdeck fleet inventory; see configs/fleet.example.toml for every key"]
    if inv.server_url:
        lines.append(f"server_url = {_toml(inv.server_url)}")
    lines += ["", "[images]", f"keep = {_toml(list(inv.images))}", f"max_size_gb = {_toml(inv.max_image_gb)}"]
    default_limits = asdict(AgentLimits())
    for host in inv.hosts:
        lines += ["", "[[hosts]]"]
        record = asdict(host)
        limits = record.pop("limits")
        for key, value in record.items():
            if value is None or (key in ("labels", "images", "agent_command") and not value):
                continue
            lines.append(f"{key} = {_toml(value)}")
        changed = {k: v for k, v in limits.items() if v != default_limits[k]}
        if changed:
            lines.append(f"limits = {_toml(changed)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _toml(value: Any) -> str:
    """A TOML value; JSON string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


# -- prices ----------------------------------------------------------------------------------------


def pricing_path() -> Path | None:
    """``$FLEETDECK_PRICING`` or the repository's ``configs/pricing.toml`` when it exists."""
    explicit = os.environ.get("FLEETDECK_PRICING")
    if explicit:
        return Path(explicit)
    for candidate in (config_path().parent / "pricing.toml",
                      Path(__file__).resolve().parent.parent / "configs" / "pricing.toml"):
        if candidate.is_file():
            return candidate
    return None


def gpu_prices(path: Path | None = None) -> dict[str, float]:
    """GPU model -> price per GPU-hour from a pricing file (``[gpus]`` table: ``"A100-80GB" = 1.9``
    or ``[gpus."A100-80GB"] price_per_hour = 1.9``); model names compare case-insensitively."""
    path = path or pricing_path()
    if path is None or not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"pricing file {path} is unreadable: {exc}") from None
    table = data.get("gpus", {})
    prices: dict[str, float] = {}
    if isinstance(table, dict):
        for model, value in table.items():
            if isinstance(value, dict):
                value = value.get("price_per_hour", value.get("price_per_gpu_hour"))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                prices[model.lower()] = float(value)
    return prices


def price_per_gpu_hour(host: Host, prices: dict[str, float] | None = None) -> float | None:
    """The host's price per GPU-hour: its own ``price_per_hour`` split over its GPUs, else its
    GPU model's price; None when neither is known (or the host has no GPU and no price)."""
    if host.price_per_hour is not None:
        return host.price_per_hour / host.gpus if host.gpus else None
    if host.gpu_model:
        return (prices if prices is not None else gpu_prices()).get(host.gpu_model.lower())
    return None
