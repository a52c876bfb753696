"""Formatting helpers: server text is shown literally and cannot restyle the screen."""

from __future__ import annotations

from fleetdeck.app.tui.fmt import MAX_CELL, age, bar, clean, duration, literal, number, size, sparkline


def test_literal_keeps_markup_as_text_and_strips_escape_sequences() -> None:
    text = literal("[bold red]boom[/] \x1b[2J\x1b]0;title\x07done\x00\ttab")
    assert text.plain == "[bold red]boom[/] done\N{REPLACEMENT CHARACTER}    tab"
    assert not text.spans


def test_very_long_values_are_cut() -> None:
    assert len(clean("x" * 1_000_000)) == MAX_CELL and clean("x" * 1_000_000).endswith("…")


def test_numbers_ages_and_durations() -> None:
    assert (age(5), age(125), age(7300), age(200000), age(None)) == ("5 s", "2 min", "2 h", "2 d", "-")
    assert (duration(59), duration(3723), duration(None)) == ("0:59", "1:02:03", "-")
    assert (number(0.000123456789), number(None), number(float("nan"))) == ("0.000123457", "-", "nan")
    assert (size(512), size(3 * 1024 ** 2)) == ("512 B", "3.0 MiB")


def test_sparkline_and_bar() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([None, float("nan")]) == ""
    assert len(sparkline(list(range(1000)), width=12)) == 12
    assert bar(0.95).plain.endswith(" 95%") and bar(None).plain == "-"
