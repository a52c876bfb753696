"""Environment capture (runs in the helper): Python, OS, host and installed distributions."""

from __future__ import annotations

import platform
import socket
from collections.abc import Iterable, Mapping
from typing import Any


def installed_packages() -> dict[str, str]:
    """Every installed distribution and its exact version (what ``pip freeze`` lists)."""
    from importlib.metadata import distributions

    packages: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    return dict(sorted(packages.items(), key=lambda kv: kv[0].lower()))


def capture_environment(executable: str) -> dict[str, Any]:
    return {"python": platform.python_version(), "executable": executable, "os": platform.platform(),
            "host": socket.gethostname(), "packages": installed_packages()}


def imported_distributions(modules: Iterable[str], packages: Mapping[str, str]) -> list[str]:
    """``name==version`` of the installed distributions that provide the imported top-level modules."""
    from importlib.metadata import packages_distributions

    by_module = packages_distributions()
    lower = {name.lower(): (name, version) for name, version in packages.items()}
    found: set[str] = set()
    for module in modules:
        for dist in by_module.get(module, []):
            hit = lower.get(dist.lower())
            if hit:
                found.add(f"{hit[0]}=={hit[1]}")
    return sorted(found, key=str.lower)
