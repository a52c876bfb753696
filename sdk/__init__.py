"""fleetdeck: track experiments from a training script.

``from fleetdeck import Task`` is all a training script needs. This module stays cheap to import:
the public names are loaded on first use (PEP 562), so importing the SDK pulls in neither the HTTP
client nor any server, TUI or fleet dependency.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fleetdeck._version import __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from fleetdeck.client import Client
    from fleetdeck.dataset import Dataset
    from fleetdeck.errors import FleetdeckError
    from fleetdeck.logger import Logger
    from fleetdeck.task import Task

__all__ = sorted(["Client", "Dataset", "FleetdeckError", "Logger", "Task", "__version__"])

# public name -> module that defines it; extended as the SDK grows (Task, Logger, Dataset).
_LAZY: dict[str, str] = {
    "Client": "fleetdeck.client",
    "Dataset": "fleetdeck.dataset",
    "FleetdeckError": "fleetdeck.errors",
    "Logger": "fleetdeck.logger",
    "Task": "fleetdeck.task",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetdeck' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
