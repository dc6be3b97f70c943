#!/usr/bin/env python3
"""The service's requests: statistics and plots of the observations gathered so far.

The observations are the lines of ``$GOLEM_ROOT/out/observations`` (``GOLEM_ROOT`` defaults
to ``/golem``), appended by ``simulate_observations.py``.

usage: simple_service.py (--stats | --plot {dist,time} | --dump)

``--stats`` prints one line of JSON: ``count``, ``min``, ``max``, ``mean``, ``median`` and
``stdev`` (the sample standard deviation; ``null`` where undefined). ``--plot dist`` draws a
histogram, ``--plot time`` the observations over their index, as a PNG in
``$GOLEM_ROOT/out/<random>.png``, and prints its path as a JSON string. ``--dump`` prints the
observations as a JSON list. Standard library only: the PNG is encoded here (zlib, struct).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import statistics
import string
import struct
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

Color = tuple[int, int, int]

WIDTH, HEIGHT = 640, 480
#: The plot area's margins: left, top, right, bottom.
MARGINS = (78, 44, 24, 58)
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GRID: Color = (225, 225, 225)
BAR: Color = (70, 130, 180)
BAR_EDGE: Color = (30, 60, 100)
LINE: Color = (200, 60, 40)

# A 3x5 pixel font: digits, signs and the letters the plots' labels use.
FONT: dict[str, tuple[str, ...]] = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    "-": ("...", "...", "###", "...", "..."),
    "+": ("...", ".#.", "###", ".#.", "..."),
    ".": ("...", "...", "...", "...", ".#."),
    "=": ("...", "###", "...", "###", "..."),
    "a": ("...", ".##", "#.#", "#.#", ".##"),
    "b": ("#..", "##.", "#.#", "#.#", "##."),
    "c": ("...", ".##", "#..", "#..", ".##"),
    "d": ("..#", ".##", "#.#", "#.#", ".##"),
    "e": ("...", ".#.", "###", "#..", ".##"),
    "i": (".#.", "...", ".#.", ".#.", ".#."),
    "l": ("##.", ".#.", ".#.", ".#.", "###"),
    "m": ("...", "#.#", "###", "#.#", "#.#"),
    "n": ("...", "##.", "#.#", "#.#", "#.#"),
    "o": ("...", ".#.", "#.#", "#.#", ".#."),
    "r": ("...", "#.#", "##.", "#..", "#.."),
    "s": ("...", ".##", "#..", "..#", "##."),
    "t": (".#.", "###", ".#.", ".#.", "..#"),
    "u": ("...", "#.#", "#.#", "#.#", ".##"),
    "v": ("...", "#.#", "#.#", "#.#", ".#."),
    "x": ("...", "#.#", ".#.", "#.#", "#.#"),
}


def golem_root() -> Path:
    """The image's root: ``$GOLEM_ROOT``, by default ``/golem``."""
    return Path(os.environ.get("GOLEM_ROOT") or "/golem")


def read_observations() -> list[float]:
    """The observations so far: every whole line that is a finite number."""
    try:
        text = (golem_root() / "out" / "observations").read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the part after the last newline may be half-written
    values = []
    for line in lines:
        try:
            value = float(line)
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, min, max, mean, median and sample stdev of ``values`` (None where undefined)."""
    return {
        "count": len(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
        "median": statistics.median(values) if values else None,
        "stdev": statistics.stdev(values) if len(values) > 1 else None,
    }


# --- drawing -------------------------------------------------------------------------------------


class Canvas:
    """An RGB pixel buffer with the few drawing operations the plots need."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def point(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = (y * self.width + x) * 3
            self.pixels[at : at + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle with corners ``(x0, y0)`` and ``(x1, y1)``, both included."""
        x0, x1 = sorted((max(0, x0), min(self.width - 1, x1)))
        y0, y1 = sorted((max(0, y0), min(self.height - 1, y1)))
        row = bytes(color) * (x1 - x0 + 1)
        for y in range(y0, y1 + 1):
            at = (y * self.width + x0) * 3
            self.pixels[at : at + len(row)] = row

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """A one-pixel line (Bresenham's)."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        while True:
            self.point(x0, y0, color)
            if x0 == x1 and y0 == y1:
                return
            double = 2 * error
            if double >= dy:
                error += dy
                x0 += sx
            if double <= dx:
                error += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 2) -> None:
        """``text`` in the 3x5 font with its top left corner at ``(x, y)``."""
        for index, char in enumerate(text):
            glyph = FONT.get(char)
            left = x + index * 4 * scale
            for row, bits in enumerate(glyph or ()):
                for column, bit in enumerate(bits):
                    if bit == "#":
                        top = y + row * scale
                        self.rect(
                            left + column * scale,
                            top,
                            left + (column + 1) * scale - 1,
                            top + scale - 1,
                            color,
                        )

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return max(0, len(text) * 4 * scale - scale)

    def png(self) -> bytes:
        """The canvas as a PNG: 8-bit RGB, no interlace, filter 0 on every row."""
        stride = self.width * 3
        raw = b"".join(
            b"\0" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def nice_ticks(low: float, high: float, target: int = 6) -> tuple[list[float], int]:
    """Round tick values within ``[low, high]``, and the decimals their labels need."""
    raw = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    decimals = 0
    while decimals < 10 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    first = math.ceil(low / step - 1e-9)
    ticks = []
    index = first
    while index * step <= high + step * 1e-9:
        value = index * step
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        index += 1
    return ticks, decimals


class Axes:
    """A plot area on a canvas, mapping data coordinates to pixels, with ticks and labels."""

    def __init__(
        self,
        canvas: Canvas,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
    ) -> None:
        self.canvas = canvas
        left, top, right, bottom = MARGINS
        self.left, self.top = left, top
        self.right, self.bottom = canvas.width - right, canvas.height - bottom
        self.x_range = _widen(*x_range)
        self.y_range = _widen(*y_range)

    def px(self, x: float) -> int:
        low, high = self.x_range
        return round(self.left + (x - low) / (high - low) * (self.right - self.left))

    def py(self, y: float) -> int:
        low, high = self.y_range
        return round(self.bottom - (y - low) / (high - low) * (self.bottom - self.top))

    def draw_frame(self, title: str, x_label: str, y_label: str) -> None:
        """Grid, axes, ticks with their labels, the axis labels and the title."""
        canvas = self.canvas
        y_ticks, y_decimals = nice_ticks(*self.y_range)
        for value in y_ticks:
            y = self.py(value)
            canvas.rect(self.left + 1, y, self.right, y, GRID)
            canvas.rect(self.left - 6, y, self.left - 1, y, BLACK)
            label = f"{value:.{y_decimals}f}"
            canvas.text(self.left - 10 - canvas.text_width(label), y - 5, label)
        x_ticks, x_decimals = nice_ticks(*self.x_range)
        for value in x_ticks:
            x = self.px(value)
            canvas.rect(x, self.bottom + 1, x, self.bottom + 6, BLACK)
            label = f"{value:.{x_decimals}f}"
            canvas.text(x - canvas.text_width(label) // 2, self.bottom + 10, label)
        canvas.rect(self.left - 1, self.top, self.left, self.bottom + 1, BLACK)
        canvas.rect(self.left - 1, self.bottom, self.right, self.bottom + 1, BLACK)
        middle = (self.left + self.right) // 2
        canvas.text(middle - canvas.text_width(x_label) // 2, self.bottom + 32, x_label)
        canvas.text(8, self.top - 26, y_label)
        canvas.text(middle - canvas.text_width(title, 3) // 2, 8, title, scale=3)


def _widen(low: float, high: float) -> tuple[float, float]:
    """The range itself, or one unit around a single value."""
    if high - low <= abs(high) * 1e-12 or high <= low:
        return (low - 0.5, high + 0.5)
    return (low, high)


def histogram(values: Sequence[float]) -> Canvas:
    """A histogram of ``values`` (the square root of their count bins, at most 50)."""
    canvas = Canvas(WIDTH, HEIGHT)
    title = f"distribution n={len(values)}"
    if not values:
        Axes(canvas, (0.0, 1.0), (0.0, 1.0)).draw_frame(title, "value", "count")
        return canvas
    low, high = _widen(min(values), max(values))
    bins = max(1, min(50, math.ceil(math.sqrt(len(values)))))
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    axes = Axes(canvas, (low, high), (0.0, max(counts) * 1.1))
    axes.draw_frame(title, "value", "count")
    for index, count in enumerate(counts):
        if not count:
            continue
        x0, x1 = axes.px(low + index * width), axes.px(low + (index + 1) * width)
        y0, y1 = axes.py(count), axes.bottom - 1
        canvas.rect(x0, y0, x1, y1, BAR_EDGE)
        canvas.rect(x0 + 1, y0 + 1, x1 - 1, y1, BAR)
    return canvas


def time_series(values: Sequence[float]) -> Canvas:
    """``values`` over their index, as a line with a dot on each point (up to 200 points)."""
    canvas = Canvas(WIDTH, HEIGHT)
    title = f"time series n={len(values)}"
    if not values:
        Axes(canvas, (0.0, 1.0), (0.0, 1.0)).draw_frame(title, "index", "value")
        return canvas
    low, high = _widen(min(values), max(values))
    pad = (high - low) * 0.05
    axes = Axes(canvas, (0.0, max(1.0, len(values) - 1.0)), (low - pad, high + pad))
    axes.draw_frame(title, "index", "value")
    points = [(axes.px(index), axes.py(value)) for index, value in enumerate(values)]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        canvas.line(x0, y0, x1, y1, LINE)
    if len(points) <= 200:
        for x, y in points:
            canvas.rect(x - 1, y - 1, x + 1, y + 1, LINE)
    return canvas


def plot(kind: str, values: Sequence[float]) -> Path:
    """Draw the ``kind`` plot of ``values`` into ``$GOLEM_ROOT/out/<random>.png``; its path."""
    canvas = histogram(values) if kind == "dist" else time_series(values)
    out = golem_root() / "out"
    out.mkdir(parents=True, exist_ok=True)
    name = "".join(random.choices(string.ascii_letters, k=10))
    path = out / f"{name}.png"
    partial = out / f".{name}.png.partial"
    partial.write_bytes(canvas.png())
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Statistics and plots of the observations.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--stats", action="store_true", help="print statistics as JSON")
    action.add_argument(
        "--plot", choices=("dist", "time"), help="draw a PNG; print its path as JSON"
    )
    action.add_argument("--dump", action="store_true", help="print the observations as JSON")
    args = parser.parse_args(argv)
    values = read_observations()
    if args.stats:
        print(json.dumps(stats(values)))
    elif args.dump:
        print(json.dumps(values))
    else:
        print(json.dumps(str(plot(args.plot, values))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
