"""Framework hooks, installed only when the script itself imports the framework.

An import hook (a ``sys.meta_path`` finder that only wraps the loader of a few module names)
patches, right after the module has loaded:

- ``matplotlib.pyplot.show`` and ``Figure.savefig``: the figure becomes a debug image;
- ``SummaryWriter.add_scalar``/``add_scalars`` of ``torch.utils.tensorboard`` and ``tensorboardX``:
  the values become scalars (tag ``a/b`` -> title ``a``, series ``b``);
- ``torch.save`` to a path: the file is registered as an output model.

A module imported before ``Task.init`` is patched at once. Hook failures never reach the script.
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

_TARGETS: dict[str, tuple[str, str]] = {
    "matplotlib.pyplot": ("matplotlib", "_patch_pyplot"),
    "matplotlib.figure": ("matplotlib", "_patch_figure"),
    "torch.utils.tensorboard.writer": ("tensorboard", "_patch_summary_writer"),
    "tensorboardX.writer": ("tensorboard", "_patch_summary_writer"),
    "torch": ("pytorch", "_patch_torch"),
}
_task: Any = None
_hooks: dict[str, Callable[[Any], None]] = {}
_patched: set[str] = set()
_figure_counts: dict[str, int] = {}


def install(task: Any, wanted: Mapping[str, bool]) -> None:
    """Patch the frameworks already imported and hook the import of the others."""
    global _task
    _task = task
    for name, (framework, patcher) in _TARGETS.items():
        if wanted.get(framework, True):
            when_imported(name, globals()[patcher])


def when_imported(name: str, patch: Callable[[Any], None]) -> None:
    """Call ``patch(module)`` once module ``name`` is loaded: now if it already is, else right after its import.

    This is how fleetdeck avoids importing anything the script does not use (argparse included).
    """
    _hooks[name] = patch
    if name in sys.modules:
        _patch(name, sys.modules[name])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _hooks or fullname in self._busy or fullname in _patched:
            return None
        self._busy.add(fullname)
        try:
            import importlib.util

            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            _patch(fullname, module)

        spec.loader = _LoaderProxy(loader, exec_module)
        return spec


class _LoaderProxy(importlib.abc.Loader):
    def __init__(self, loader: Any, exec_module: Callable[[Any], None]) -> None:
        self._loader = loader
        self._exec = exec_module

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._exec(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _patch(name: str, module: Any) -> None:
    if name in _patched:
        return
    _patched.add(name)
    try:
        _hooks[name](module)
    except Exception as exc:  # a framework we cannot hook still runs untouched
        print(f"fleetdeck: could not hook {name}: {exc}", file=sys.stderr)


def _logger() -> Any:
    return _task.get_logger() if _task is not None and _task._run is not None else None


def _safe(fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            print(f"fleetdeck: capture skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    return wrapper


# -- matplotlib ----------------------------------------------------------------------------------

@_safe
def _report_figure(figure: Any, saved_path: Any = None) -> None:
    logger = _logger()
    if logger is None:
        return
    title = "matplotlib"
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        title = suptitle.get_text()
    series = f"figure {getattr(figure, 'number', 0) or 0}"
    key = f"{title}/{series}"
    iteration = _figure_counts.get(key, 0)
    _figure_counts[key] = iteration + 1
    if isinstance(saved_path, (str, os.PathLike)) and str(saved_path).lower().endswith((".png", ".jpg", ".jpeg")):
        logger.report_media_file(title, series, saved_path, iteration)
    else:
        logger.report_matplotlib_figure(title, series, figure, iteration)


def _patch_figure(module: Any) -> None:
    figure_class = module.Figure
    original = figure_class.savefig

    @functools.wraps(original)
    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, fname, *args, **kwargs)
        if isinstance(fname, (str, os.PathLike)):
            _report_figure(self, fname)
        return result

    figure_class.savefig = savefig


def _patch_pyplot(module: Any) -> None:
    original = module.show

    @functools.wraps(original)
    def show(*args: Any, **kwargs: Any) -> Any:
        for number in module.get_fignums():
            _report_figure(module.figure(number))
        return original(*args, **kwargs)

    module.show = show


# -- TensorBoard ------------------------------------------------------------------------------------

def _split_tag(tag: str) -> tuple[str, str]:
    title, _, series = str(tag).rpartition("/")
    return (title, series) if title else (series, series)


def _patch_summary_writer(module: Any) -> None:
    writer = module.SummaryWriter
    original_scalar = writer.add_scalar
    original_scalars = writer.add_scalars

    @functools.wraps(original_scalar)
    def add_scalar(self: Any, tag: str, scalar_value: Any, global_step: Any = None, *args: Any, **kwargs: Any) -> Any:
        result = original_scalar(self, tag, scalar_value, global_step, *args, **kwargs)
        logger = _logger()
        if logger is not None:
            title, series = _split_tag(tag)
            logger.report_scalar(title, series, _number(scalar_value), global_step)
        return result

    @functools.wraps(original_scalars)
    def add_scalars(self: Any, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: Any = None,
                    *args: Any, **kwargs: Any) -> Any:
        result = original_scalars(self, main_tag, tag_scalar_dict, global_step, *args, **kwargs)
        logger = _logger()
        if logger is not None:
            for series, value in tag_scalar_dict.items():
                logger.report_scalar(str(main_tag), str(series), _number(value), global_step)
        return result

    writer.add_scalar = add_scalar
    writer.add_scalars = add_scalars


def _number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# -- PyTorch -------------------------------------------------------------------------------------------

def _patch_torch(module: Any) -> None:
    original = module.save

    @functools.wraps(original)
    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)) and _task is not None:
            _register_model(f)
        return result

    module.save = save


@_safe
def _register_model(path: Any) -> None:
    _task.update_output_model(os.fspath(path))

