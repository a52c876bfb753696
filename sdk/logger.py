"""``Logger``: explicit reporting of scalars, text, single values, tables, images and plots.

Every call appends to in-memory buffers and returns; nothing here waits for disk or network.
Method names and arguments follow ClearML's ``Logger`` so a ClearML script only changes its import.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fleetdeck._buffer import EventBuffer

_now = time.time


class Logger:
    """Reports a task's metrics and media. Get it with ``task.get_logger()``."""

    def __init__(self, buffer: EventBuffer | None) -> None:
        self._buffer = buffer
        self._series = buffer.series if buffer is not None else {}
        self._image_counter = 0

    def report_scalar(self, title: str, series: str, value: float, iteration: int | None = None) -> None:
        """Add one point to the series ``title/series`` (about 0.3 µs, never blocks).

        Args:
            title: the metric (plot) name, e.g. ``"loss"``.
            series: the variant (line) in that plot, e.g. ``"train"``.
            value: a number (int, float, numpy or torch scalar).
            iteration: the step; when None, the series counts its own points.
        """
        try:
            cols = self._series[title][series]
        except KeyError:
            if self._buffer is None:
                return
            cols = self._buffer.columns(str(title), str(series))
        try:
            cols.values.append(value)
        except TypeError:
            self._report_scalar_slow(cols, value, iteration)
            return
        try:
            cols.iterations.append(iteration)  # type: ignore[arg-type]
        except TypeError:
            cols.values.pop()
            self._report_scalar_slow(cols, value, iteration)
            return
        cols.times.append(_now())

    def _report_scalar_slow(self, cols: Any, value: Any, iteration: Any) -> None:
        """Values and steps of other types: convert them, or drop the point with a warning."""
        try:
            number = float(value)
            if iteration is None:
                try:
                    step = max(cols.auto, cols.iterations[-1] + 1)
                except IndexError:  # nothing unsent (the flusher may empty the columns at any time)
                    step = cols.auto
            else:
                step = int(iteration)
        except (TypeError, ValueError):
            _warn_once(f"fleetdeck: report_scalar({cols.metric!r}, {cols.variant!r}) got a value it cannot "
                       f"store ({type(value).__name__} / iteration {type(iteration).__name__}); point dropped")
            return
        cols.auto = step + 1
        cols.values.append(number)
        cols.iterations.append(step)
        cols.times.append(_now())

    def report_text(self, msg: str, level: int = 20, print_console: bool = False) -> None:
        """Report a text message (kept as a ``text`` event; printed too when ``print_console``)."""
        if print_console:
            print(msg)
        self._event("text", "", "", None, {"text": str(msg), "level": level})

    def report_single_value(self, name: str, value: float) -> None:
        """Report one summary number (final accuracy, parameter count)."""
        self._event("single_value", name, name, None, _json_safe(value))

    def report_table(self, title: str, series: str, iteration: int | None = None, table_plot: Any = None,
                     csv: str | None = None, url: str | None = None, extra_layout: Any = None) -> None:
        """Report a table: a pandas DataFrame, a list of rows (first row = header) or a CSV file path."""
        if csv is not None or url is not None:
            import csv as csv_module

            with open(csv or url or "", newline="", encoding="utf-8") as fh:  # type: ignore[arg-type]
                rows = list(csv_module.reader(fh))
            columns, body = (rows[0], rows[1:]) if rows else ([], [])
        elif hasattr(table_plot, "to_dict") and hasattr(table_plot, "columns"):
            columns = [str(c) for c in table_plot.columns]
            body = table_plot.astype(object).values.tolist()
        elif isinstance(table_plot, (list, tuple)) and table_plot:
            columns, body = [str(c) for c in table_plot[0]], [list(r) for r in table_plot[1:]]
        else:
            raise ValueError("report_table needs table_plot (DataFrame or list of rows) or csv=PATH")
        self._event("table", title, series, iteration, {"columns": columns, "rows": _json_safe(body)})

    def report_plotly(self, title: str, series: str, figure: Any, iteration: int | None = None) -> None:
        """Report a plot as a Plotly figure dict (``{"data": [...], "layout": {...}}``)."""
        if hasattr(figure, "to_plotly_json"):
            figure = figure.to_plotly_json()
        self._event("plot", title, series, iteration, _json_safe(figure))

    report_plot = report_plotly

    def report_image(self, title: str, series: str, iteration: int | None = None, local_path: str | None = None,
                     image: Any = None, matrix: Any = None, max_image_history: int | None = None,
                     delete_after_upload: bool = False) -> None:
        """Report a debug image from a file, or from an array (H×W grey or H×W×3/4 uint8, or PIL image)."""
        if self._buffer is None:
            return
        target = self._media_path(Path(local_path).suffix if local_path else ".png")
        if local_path is not None:
            import shutil

            shutil.copyfile(local_path, target)
            if delete_after_upload:
                os.unlink(local_path)
        else:
            picture = image if image is not None else matrix
            if picture is None:
                raise ValueError("report_image needs local_path, image or matrix")
            if hasattr(picture, "save") and not hasattr(picture, "shape"):
                picture.save(target, format="PNG")
            else:
                target.write_bytes(encode_png(picture))
        self._event("image", title, series, iteration, {"file": target.name})

    def report_matplotlib_figure(self, title: str, series: str, figure: Any, iteration: int | None = None,
                                 report_image: bool = True) -> None:
        """Report a matplotlib figure as a debug image (rendered to PNG)."""
        if self._buffer is None:
            return
        import io

        buf = io.BytesIO()
        figure.savefig(buf, format="png")
        target = self._media_path(".png")
        target.write_bytes(buf.getvalue())
        self._event("image", title, series, iteration, {"file": target.name})

    def report_media_file(self, title: str, series: str, path: str | os.PathLike[str],
                          iteration: int | None = None) -> None:
        """Report an image file already on disk (copied into the spool at once)."""
        if self._buffer is None:
            return
        import shutil

        target = self._media_path(Path(path).suffix or ".png")
        shutil.copyfile(path, target)
        self._event("image", title, series, iteration, {"file": target.name})

    def flush(self) -> None:
        """Move buffered events into the spool now (the helper uploads them)."""
        if self._buffer is not None:
            self._buffer.flush()

    def _media_path(self, suffix: str) -> Path:
        assert self._buffer is not None
        self._image_counter += 1
        safe_suffix = suffix if suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp") else ".png"
        return self._buffer.folder / "files" / f"media-{os.getpid()}-{self._image_counter}{safe_suffix}"

    def _event(self, kind: str, metric: str, variant: str, iteration: int | None, data: Any) -> None:
        if self._buffer is None:
            return
        self._buffer.events.append({"kind": kind, "metric": str(metric)[:200], "variant": str(variant)[:200],
                                    "iteration": None if iteration is None else int(iteration),
                                    "ts": _now(), "data": data})


def _json_safe(value: Any) -> Any:
    """Make numbers from numpy/torch, NaN and other objects storable as JSON."""
    if isinstance(value, float):
        return value if value - value == 0 else None  # NaN and ±inf are not JSON
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    try:
        return _json_safe(float(value))
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def encode_png(pixels: Any) -> bytes:
    """Encode an H×W (grey) or H×W×3/4 array of uint8 as PNG, without PIL."""
    import struct
    import zlib

    rows = pixels.tolist() if hasattr(pixels, "tolist") else pixels
    height, width = len(rows), len(rows[0]) if rows else 0
    first = rows[0][0] if height and width else 0
    channels = len(first) if isinstance(first, (list, tuple)) else 1
    color_type = {1: 0, 3: 2, 4: 6}.get(channels)
    if color_type is None:
        raise ValueError(f"an image needs 1, 3 or 4 channels, got {channels}")
    raw = bytearray()
    for row in rows:
        raw.append(0)
        for px in row:
            raw.extend(px if channels > 1 else (px,))
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    import sys

    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)
