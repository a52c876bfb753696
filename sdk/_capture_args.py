"""Hyperparameters: argparse results and connected dicts/objects as typed, sectioned parameters.

Parameters are stored as ``{section: {name: {"value": v, "type": t}}}`` (``Args/lr``). When an
agent runs a task, the task's stored values win over the script's (that is how a user edits a
clone's parameters and re-runs it); :func:`cast_like` turns a stored value back into the type the
script uses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import argparse

Params = dict[str, dict[str, dict[str, Any]]]

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", "", "none"}


def param(value: Any) -> dict[str, Any]:
    """One stored parameter: a JSON value and the name of its Python type."""
    return {"value": json_value(value), "type": type(value).__name__}


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def cast_like(remote: Any, local: Any, converter: Callable[[str], Any] | None = None) -> Any:
    """Convert a stored value to the type the script's own value has.

    Raises:
        ValueError: the stored value cannot be read as that type.
    """
    if converter is not None and isinstance(remote, str) and not isinstance(local, str):
        return converter(remote)
    if isinstance(local, bool):
        if isinstance(remote, str):
            text = remote.strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError(f"{remote!r} is not a boolean")
        return bool(remote)
    if isinstance(local, int):
        return int(remote) if not isinstance(remote, float) or remote.is_integer() else remote
    if isinstance(local, float):
        return float(remote)
    if isinstance(local, str):
        return remote if isinstance(remote, str) else json.dumps(remote)
    if isinstance(local, (list, tuple)) and isinstance(remote, str):
        loaded = json.loads(remote)
        return type(local)(loaded) if isinstance(loaded, list) else loaded
    if isinstance(local, tuple) and isinstance(remote, list):
        return tuple(remote)
    return remote


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}`` (nested dicts become dotted names)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a value in a nested dict by the dotted name :func:`flatten` gave it."""
    if dotted in target:
        target[dotted] = value
        return
    head, _, rest = dotted.partition(".")
    if rest and isinstance(target.get(head), dict):
        set_dotted(target[head], rest, value)
    else:
        target[dotted] = value


def object_fields(obj: Any) -> dict[str, Any]:
    """The public, non-callable attributes of an object (a config class or instance)."""
    source = vars(obj) if hasattr(obj, "__dict__") else {}
    if isinstance(obj, type):
        source = {k: v for k, v in source.items() if not k.startswith("__")}
    return {k: v for k, v in source.items()
            if not k.startswith("_") and not callable(v) and not isinstance(v, (staticmethod, classmethod, property))}


# -- argparse ------------------------------------------------------------------------------------

ArgsCallback = Callable[[Any, Any], None]
"""Called with (parser, namespace) after a top-level parse."""
_callback: ArgsCallback | None = None
_original_parse_known_args: Any = None
_depth = threading.local()


def hook_argparse(callback: ArgsCallback) -> None:
    """Call ``callback(parser, namespace)`` after each top-level ``parse_known_args``/``parse_args``.

    argparse is patched when the script imports it (or at once if it already has), so a script
    without argparse does not pay for importing it.
    """
    global _callback
    _callback = callback
    from fleetdeck._capture_frameworks import when_imported

    when_imported("argparse", _patch_argparse)


def _patch_argparse(argparse_module: Any) -> None:
    global _original_parse_known_args
    if _original_parse_known_args is not None:
        return
    _original_parse_known_args = argparse_module.ArgumentParser.parse_known_args

    def parse_known_args(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        level = getattr(_depth, "n", 0)
        _depth.n = level + 1
        try:
            namespace, extras = _original_parse_known_args(self, args, namespace)
        finally:
            _depth.n = level
        if level == 0 and _callback is not None:
            _callback(self, namespace)
        return namespace, extras

    argparse_module.ArgumentParser.parse_known_args = parse_known_args


def unhook_argparse() -> None:
    global _callback
    _callback = None


def converters(parser: argparse.ArgumentParser) -> dict[str, Callable[[str], Any] | None]:
    """dest -> the ``type=`` converter of each argument."""
    return {a.dest: a.type if callable(a.type) else None for a in parser._actions}  # noqa: SLF001
