"""Import layering, checked on the source (AST), so a forbidden import fails even if never executed.

- the SDK (``fleetdeck``, folder ``sdk/``) is installed into training environments: it never
  imports ``fleetdeck.app``, ``fleetdeck.fleet`` or ``fleetdeck.server_lite``;
- the server never imports the TUI toolkit (``textual``) nor the app or fleet layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RULES = {
    "sdk": ("fleetdeck.app", "fleetdeck.fleet", "fleetdeck.server_lite"),
    "server_lite": ("textual", "fleetdeck.app", "fleetdeck.fleet"),
}
"""source folder -> module prefixes its code must never import."""


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _package_of(path: Path, folder: str) -> str:
    root_name = {"sdk": "fleetdeck", "server_lite": "fleetdeck.server_lite"}[folder]
    rel = path.parent.relative_to(ROOT / folder)
    return ".".join([root_name, *rel.parts])


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("folder", sorted(RULES))
def test_forbidden_imports(folder: str) -> None:
    violations = []
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no sources under {folder}/"
    for path in files:
        for line, module in imported_modules(path, _package_of(path, folder)):
            for banned in RULES[folder]:
                if _is_under(module, banned):
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert violations == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from ..app import cli\n    import textual.widgets\n")
    modules = [m for _, m in imported_modules(sample, "fleetdeck.server_lite")]
    assert "fleetdeck.app.cli" in modules and "textual.widgets" in modules
