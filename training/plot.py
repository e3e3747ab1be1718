"""A dependency-free line plot written as a PNG (zlib + struct), for the loss curve of a training run.

    >>> write_line_plot("loss_curve.png", {"train": [(1, 9.0), (2, 7.5)], "eval": [(2, 7.9)]})

The plot is a small RGB raster: white background, a light grid with 5 horizontal lines, one coloured
polyline per series (markers for series of a single point). No text is drawn; the axis range is recorded
in the PNG's `tEXt` chunks (`x-range`, `y-range`, `series`) so the numbers stay inspectable.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence

COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))
GRID = (225, 225, 225)
AXIS = (90, 90, 90)
MARGIN = 8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: Sequence[bytearray], width: int, text: Mapping[str, str] | None = None) -> bytes:
    """PNG bytes of an 8-bit RGB image given as rows of `3 * width` bytes."""
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, len(pixels), 8, 2, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    chunks += [_chunk(b"tEXt", f"{key}\x00{value}".encode("latin-1")) for key, value in (text or {}).items()]
    chunks += [_chunk(b"IDAT", zlib.compress(raw, 9)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _set(pixels, x: int, y: int, colour) -> None:
    if 0 <= y < len(pixels) and 0 <= x < len(pixels[0]) // 3:
        pixels[y][3 * x : 3 * x + 3] = bytes(colour)


def _line(pixels, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    """Rasterise a segment by sampling it densely (2 px wide)."""
    steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) * 2))
    for i in range(steps + 1):
        x, y = x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps
        _set(pixels, round(x), round(y), colour)
        _set(pixels, round(x), round(y) + 1, colour)


def _bounds(series: Mapping[str, Sequence[tuple[float, float]]]) -> tuple[float, float, float, float]:
    points = [(x, y) for values in series.values() for x, y in values if math.isfinite(y)]
    if not points:
        raise ValueError(f"Nothing to plot: every series is empty or non-finite ({list(series)}).")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    return x_lo, x_hi, y_lo, y_hi


def write_line_plot(path, series: Mapping[str, Sequence[tuple[float, float]]], width: int = 480,
                    height: int = 320) -> None:
    """Write `series` (name -> [(x, y), ...]) as a line plot PNG at `path`.

    Raises:
        ValueError: if the image is smaller than 32x32 or there is no finite point to plot.
    """
    if width < 32 or height < 32:
        raise ValueError(f"The plot needs at least 32x32 pixels, got width={width}, height={height}.")
    x_lo, x_hi, y_lo, y_hi = _bounds(series)
    pixels = [bytearray(b"\xff" * (3 * width)) for _ in range(height)]
    inner_w, inner_h = width - 2 * MARGIN - 1, height - 2 * MARGIN - 1
    for i in range(5):
        y = MARGIN + round(inner_h * i / 4)
        _line(pixels, MARGIN, y, width - MARGIN, y, GRID)
    _line(pixels, MARGIN, MARGIN, MARGIN, height - MARGIN, AXIS)
    _line(pixels, MARGIN, height - MARGIN, width - MARGIN, height - MARGIN, AXIS)

    def to_pixel(x, y):
        return MARGIN + (x - x_lo) / (x_hi - x_lo) * inner_w, MARGIN + (y_hi - y) / (y_hi - y_lo) * inner_h

    for index, values in enumerate(series.values()):
        colour = COLOURS[index % len(COLOURS)]
        points = [to_pixel(x, y) for x, y in values if math.isfinite(y)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            _line(pixels, x0, y0, x1, y1, colour)
        for x, y in points if len(points) < 30 else []:
            for dx in (-1, 0, 1):
                _line(pixels, x + dx, y - 1, x + dx, y + 1, colour)
    text = {"x-range": f"{x_lo:g}..{x_hi:g}", "y-range": f"{y_lo:g}..{y_hi:g}", "series": ", ".join(series)}
    with open(path, "wb") as handle:
        handle.write(encode_png(pixels, width, text))
