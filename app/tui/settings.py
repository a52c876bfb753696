"""The TUI's settings from the user config file (``[tui]`` and ``[tui.keys]``).

Example::

    [tui]
    poll_s = 2.0                      # seconds between the end of one poll and the next
    key_metrics = ["loss/train"]      # metric columns in the experiments table (METRIC/VARIANT)

    [tui.keys]                        # binding id = key(s), comma-separated
    "experiments.abort" = "ctrl+k"
    "app.quit" = "ctrl+q,f10"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetdeck.config import config_path, load_file
from fleetdeck.errors import ConfigError


@dataclass(frozen=True)
class TuiSettings:
    poll_s: float = 2.0
    """Seconds between the end of one poll and the start of the next."""
    key_metrics: list[str] = field(default_factory=list)
    """``METRIC/VARIANT`` columns of the experiments table; empty picks the most common ones."""
    keymap: dict[str, str] = field(default_factory=dict)
    """Binding id → keys, applied with ``App.set_keymap``."""


def load_settings(known_ids: Iterable[str], raw: dict[str, Any] | None = None) -> TuiSettings:
    """Read and check ``[tui]`` from the config file (or ``raw``, the parsed file).

    Raises:
        ConfigError: a value has the wrong type or a key names an unknown binding id.
    """
    data = load_file() if raw is None else raw
    tui = data.get("tui", {})
    where = f"config file {config_path()}"
    if not isinstance(tui, dict):
        raise ConfigError(f"{where}: [tui] must be a table")
    poll_s = tui.get("poll_s", 2.0)
    if isinstance(poll_s, bool) or not isinstance(poll_s, (int, float)) or not 0.2 <= poll_s <= 3600:
        raise ConfigError(f"{where}: [tui] poll_s must be a number of seconds between 0.2 and 3600, got {poll_s!r}")
    metrics = tui.get("key_metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, str) and "/" in m for m in metrics):
        raise ConfigError(f"{where}: [tui] key_metrics must be a list of \"METRIC/VARIANT\" strings")
    keys = tui.get("keys", {})
    if not isinstance(keys, dict):
        raise ConfigError(f"{where}: [tui.keys] must be a table of binding id = \"key\"")
    known = set(known_ids)
    keymap: dict[str, str] = {}
    for binding_id, value in keys.items():
        if binding_id not in known:
            close = sorted(k for k in known if k.split(".")[0] == binding_id.split(".")[0])[:8]
            hint = f" (known in that view: {', '.join(close)})" if close else ""
            raise ConfigError(f"{where}: [tui.keys] has an unknown binding id {binding_id!r}{hint}")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: [tui.keys] {binding_id} must be a key such as \"ctrl+k\", got {value!r}")
        keymap[binding_id] = value.replace(" ", "")
    return TuiSettings(poll_s=float(poll_s), key_metrics=list(metrics), keymap=keymap)
