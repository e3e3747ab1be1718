"""A dependency-free line plot written as a PNG (zlib + struct), for the loss curve of a training run.

    >>> write_line_plot("loss_curve.png", {"train": [(1, 9.0), (2, 7.5)], "eval": [(2, 7.9)]})

The plot is a small RGB raster: white background, a light grid with 5 labelled horizontal lines, the
x-range under the axis, one coloured polyline per series (markers for short series) and a legend, drawn
with a built-in 3x5 pixel font. The axis ranges are also recorded in the PNG's `tEXt` chunks.
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
LEFT, BOTTOM = 44, 20  # room for the y labels and the x range
TEXT = (60, 60, 60)

# 3x5 pixel glyphs, row by row ("1" = ink); unknown characters print as blanks.
GLYPHS = dict(zip(
    "0123456789.-+:_ abcdefghijklmnopqrstuvwxyz",
    "111101101101111 010110010010111 111001111100111 111001111001111 101101111001001 111100111001111 "
    "111100111101111 111001001001001 111101111101111 111101111001111 000000000000010 000000111000000 "
    "000010111010000 000010000010000 000000000000111 000000000000000 000011101101011 100110101101110 "
    "000011100100011 001011101101011 000010111100011 011100110100100 011101011001110 100110101101101 "
    "010000010010010 001000001101010 100101110101101 110010010010111 000111111101101 000110101101101 "
    "000010101101010 000110101110100 000011101011001 000011100100100 000011110011110 010111010010011 "
    "000101101101011 000101101101010 000101101111111 000101010010101 000101011001110 000111010100111".split(),
))


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


def _text(pixels, x: int, y: int, text: str, colour=TEXT, scale: int = 2) -> None:
    """Draw `text` with its top-left corner at (x, y), in the 3x5 font scaled by `scale`."""
    for index, char in enumerate(text.lower()):
        glyph = GLYPHS.get(char, GLYPHS[" "])
        for bit, ink in enumerate(glyph):
            if ink == "1":
                gx, gy = x + index * 4 * scale + (bit % 3) * scale, y + (bit // 3) * scale
                for dx in range(scale):
                    for dy in range(scale):
                        _set(pixels, gx + dx, gy + dy, colour)


def _text_width(text: str, scale: int = 2) -> int:
    return len(text) * 4 * scale - scale


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
    left, bottom = (LEFT, BOTTOM) if width >= 160 and height >= 96 else (MARGIN, MARGIN)  # tiny: no text
    inner_w, inner_h = width - left - MARGIN - 1, height - MARGIN - bottom - 1
    labelled = left == LEFT
    for i in range(5):
        y = MARGIN + round(inner_h * i / 4)
        _line(pixels, left, y, width - MARGIN, y, GRID)
        if labelled:
            label = f"{y_hi - (y_hi - y_lo) * i / 4:.3g}"
            _text(pixels, left - 4 - _text_width(label), y - 4, label)
    _line(pixels, left, MARGIN, left, height - bottom, AXIS)
    _line(pixels, left, height - bottom, width - MARGIN, height - bottom, AXIS)
    if labelled:
        _text(pixels, left, height - bottom + 6, f"{x_lo:g}")
        _text(pixels, width - MARGIN - _text_width(f"{x_hi:g}"), height - bottom + 6, f"{x_hi:g}")

    def to_pixel(x, y):
        return left + (x - x_lo) / (x_hi - x_lo) * inner_w, MARGIN + (y_hi - y) / (y_hi - y_lo) * inner_h

    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        points = [to_pixel(x, y) for x, y in values if math.isfinite(y)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            _line(pixels, x0, y0, x1, y1, colour)
        for x, y in points if len(points) < 30 else []:
            for dx in (-1, 0, 1):
                _line(pixels, x + dx, y - 1, x + dx, y + 1, colour)
        if labelled:  # legend, top right
            y = MARGIN + 4 + 14 * index
            x = width - MARGIN - 6 - _text_width(name) - 14
            for dy in range(8):
                _line(pixels, x, y + dy, x + 8, y + dy, colour)
            _text(pixels, x + 14, y, name, colour)
    text = {"x-range": f"{x_lo:g}..{x_hi:g}", "y-range": f"{y_lo:g}..{y_hi:g}", "series": ", ".join(series)}
    with open(path, "wb") as handle:
        handle.write(encode_png(pixels, width, text))
