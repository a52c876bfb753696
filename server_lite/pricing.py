"""GPU pricing: what one GPU-hour (or one CPU-host hour) costs, and the waste-detection policy.

The shipped defaults live in ``configs/pricing.toml`` (installed next to this module as
``pricing_defaults.toml``); the user's file (``$FLEETDECK_PRICING``, else
``$XDG_CONFIG_HOME/fleetdeck/pricing.toml``) is merged over them key by key, so a user who prices
one on-prem host keeps every default GPU price. The merged book is re-read when the user's file
changes, so a price fix needs no server restart.

A task's price per GPU-hour is the first of: its host in ``[hosts]``, its queue in ``[queues]``,
the price the fleet inventory records for its host, its GPU model in ``[gpus]``, and
``[pricing].default_gpu_hour``. On-premises hosts are never free by accident: without an entry
they cost their GPU model's price.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetdeck.config import config_path
from fleetdeck.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULTS_PATH = Path(__file__).with_name("pricing_defaults.toml")
"""The shipped defaults: a link to ``configs/pricing.toml`` in a checkout, a copy in a wheel."""

_TOKEN = re.compile(r"[A-Za-z0-9]+")
_SIZE = re.compile(r"\d+GB")


def _tokens(text: str) -> list[str]:
    return [t.upper() for t in _TOKEN.findall(text)]


@dataclass(frozen=True)
class WastePolicy:
    """When a GPU counts as wasted."""

    util_threshold_percent: float = 50.0
    """A running task's GPU whose mean utilisation stays below this ..."""
    window_s: float = 600.0
    """... for at least this many seconds is held but idle."""
    orphan_min_mib: float = 1024.0
    """Memory held on a GPU no running task owns, above this, is orphaned (a CUDA context is ~600 MiB)."""


@dataclass(frozen=True)
class GpuModel:
    """One priced GPU model."""

    name: str
    match: tuple[tuple[str, ...], ...]
    """Token sequences of the NVML name that identify the model (``("A100",)``)."""
    memory_gib: float | None
    price_per_gpu_hour: float

    def matches(self, name_tokens: list[str]) -> bool:
        for pattern in self.match:
            n = len(pattern)
            if any(tuple(name_tokens[i:i + n]) == pattern for i in range(len(name_tokens) - n + 1)):
                return True
        return False


@dataclass(frozen=True)
class Price:
    """A resolved price and where it came from (shown to users, so a surprising cost is explainable)."""

    per_gpu_hour: float
    source: str
    """e.g. ``host lab-1``, ``queue spot``, ``gpu H100``, ``default``."""
    per_host_hour: float = 0.0
    """For CPU-only hosts: the price of one hour of a task on the host."""


@dataclass(frozen=True)
class PriceBook:
    """The merged pricing configuration."""

    currency: str = "USD"
    as_of: str = ""
    default_gpu_hour: float = 0.0
    cpu_host_hour: float = 0.0
    gpus: tuple[GpuModel, ...] = ()
    hosts: dict[str, dict[str, float]] = field(default_factory=dict)
    queues: dict[str, dict[str, float]] = field(default_factory=dict)
    waste: WastePolicy = field(default_factory=WastePolicy)
    sources: tuple[str, ...] = ()
    """The files merged into this book, in order."""

    def gpu_model(self, gpu_name: str, memory_total_mib: float | None = None) -> GpuModel | None:
        """The priced model an NVML GPU name belongs to; memory picks between same-name variants."""
        tokens = _tokens(gpu_name)
        candidates = [m for m in self.gpus if m.matches(tokens)]
        if not candidates:
            return None
        if not memory_total_mib:  # "A100-SXM4-40GB", an inventory's "H100-80GB": the size is in the name
            sizes = [int(t[:-2]) for t in tokens if _SIZE.fullmatch(t)]
            memory_total_mib = sizes[0] * 1024 if sizes else None
        if memory_total_mib and len(candidates) > 1:
            gib = memory_total_mib / 1024
            return min(candidates, key=lambda m: abs((m.memory_gib or gib) - gib))
        return candidates[0]

    def price(self, *, host: str | None = None, queue: str | None = None, gpu_name: str | None = None,
              memory_total_mib: float | None = None, inventory_price: float | None = None,
              inventory_host_hour: float | None = None) -> Price:
        """The price per GPU-hour of a task (see the module docstring for the order).

        ``per_host_hour`` (for CPU-only hosts) is the host's ``price_per_hour`` here, else the
        inventory's, else ``[pricing].cpu_host_hour``.
        """
        host_entry = self.hosts.get(host or "")
        if host_entry and "price_per_hour" in host_entry:
            host_hour = float(host_entry["price_per_hour"])
        elif inventory_host_hour is not None:
            host_hour = float(inventory_host_hour)
        else:
            host_hour = self.cpu_host_hour
        if host_entry and "price_per_gpu_hour" in host_entry:
            return Price(float(host_entry["price_per_gpu_hour"]), f"host {host}", host_hour)
        queue_entry = self.queues.get(queue or "")
        if queue_entry and "price_per_gpu_hour" in queue_entry:
            return Price(float(queue_entry["price_per_gpu_hour"]), f"queue {queue}", host_hour)
        if inventory_price is not None:
            return Price(float(inventory_price), f"fleet host {host}", host_hour)
        model = self.gpu_model(gpu_name, memory_total_mib) if gpu_name else None
        if model is not None:
            return Price(model.price_per_gpu_hour, f"gpu {model.name}", host_hour)
        return Price(self.default_gpu_hour, "default", host_hour)

    def as_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "as_of": self.as_of, "default_gpu_hour": self.default_gpu_hour,
                "cpu_host_hour": self.cpu_host_hour, "sources": list(self.sources),
                "gpus": [{"model": m.name, "memory_gib": m.memory_gib, "price_per_gpu_hour": m.price_per_gpu_hour}
                         for m in self.gpus],
                "hosts": self.hosts, "queues": self.queues,
                "waste": {"util_threshold_percent": self.waste.util_threshold_percent,
                          "window_minutes": self.waste.window_s / 60,
                          "orphan_min_mib": self.waste.orphan_min_mib}}


def user_pricing_path() -> Path:
    """The user's pricing file (it may not exist)."""
    explicit = os.environ.get("FLEETDECK_PRICING")
    return Path(explicit) if explicit else config_path().parent / "pricing.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read pricing file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"pricing file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _number(table: dict[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: {key} must be a number >= 0, got {value!r}")
    return float(value)


def _price_tables(raw: Any, where: str, keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    out: dict[str, dict[str, float]] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}.{name} must be a table")
        unknown = set(entry) - set(keys)
        if unknown:
            raise ConfigError(f"{where}.{name}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(keys)})")
        out[name] = {k: _number(entry, k, f"{where}.{name}", 0.0) for k in entry}
    return out


def parse(data: dict[str, Any], sources: tuple[str, ...] = ()) -> PriceBook:
    """Build a price book from merged TOML data.

    Raises:
        ConfigError: a value has the wrong type or sign; the message names the key.
    """
    where = " + ".join(sources) or "pricing"
    head = data.get("pricing", {})
    waste = data.get("waste", {})
    if not isinstance(head, dict) or not isinstance(waste, dict):
        raise ConfigError(f"{where}: [pricing] and [waste] must be tables")
    models = []
    gpus = data.get("gpus", {})
    if not isinstance(gpus, dict):
        raise ConfigError(f"{where}: [gpus] must be a table")
    for name, entry in gpus.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: gpus.{name} must be a table")
        match = entry.get("match", [name])
        if not isinstance(match, list) or not all(isinstance(m, str) and _tokens(m) for m in match):
            raise ConfigError(f"{where}: gpus.{name}.match must be a list of non-empty strings")
        memory = entry.get("memory_gib")
        models.append(GpuModel(
            name=name, match=tuple(tuple(_tokens(m)) for m in match),
            memory_gib=None if memory is None else _number(entry, "memory_gib", f"{where}: gpus.{name}", 0),
            price_per_gpu_hour=_number(entry, "price_per_gpu_hour", f"{where}: gpus.{name}", 0.0)))
    policy = WastePolicy(
        util_threshold_percent=_number(waste, "util_threshold_percent", f"{where}: waste", 50.0),
        window_s=60 * _number(waste, "window_minutes", f"{where}: waste", 10.0),
        orphan_min_mib=_number(waste, "orphan_min_mib", f"{where}: waste", 1024.0))
    if policy.util_threshold_percent > 100:
        raise ConfigError(f"{where}: waste.util_threshold_percent must be at most 100")
    return PriceBook(
        currency=str(head.get("currency", "USD")), as_of=str(head.get("as_of", "")),
        default_gpu_hour=_number(head, "default_gpu_hour", f"{where}: pricing", 0.0),
        cpu_host_hour=_number(head, "cpu_host_hour", f"{where}: pricing", 0.0),
        gpus=tuple(models),
        hosts=_price_tables(data.get("hosts", {}), f"{where}: hosts", ("price_per_gpu_hour", "price_per_hour")),
        queues=_price_tables(data.get("queues", {}), f"{where}: queues", ("price_per_gpu_hour",)),
        waste=policy, sources=sources)


class PricingLoader:
    """Loads the merged price book and reloads it when the user's file changes."""

    def __init__(self, defaults: Path = DEFAULTS_PATH, user: Path | None = None) -> None:
        self.defaults = defaults
        self.user = user
        self._key: tuple[Any, ...] | None = None
        self._book: PriceBook | None = None
        self._lock = threading.Lock()

    def load(self) -> PriceBook:
        """The current book.

        Raises:
            ConfigError: a pricing file cannot be read or holds a bad value.
        """
        user = self.user or user_pricing_path()
        try:
            stat = user.stat()
            key: tuple[Any, ...] = (str(user), stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = (str(user), None)
        with self._lock:
            if self._book is not None and key == self._key:
                return self._book
            data = _read(self.defaults)
            sources = [str(self.defaults)]
            if key[1] is not None:
                data = _merge(data, _read(user))
                sources.append(str(user))
            self._book = parse(data, tuple(sources))
            self._key = key
            return self._book


DEFAULT_LOADER = PricingLoader()
"""The server's loader (the user's file is looked up on each call, so tests may set the env)."""
