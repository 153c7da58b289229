"""Bar chart of throughput ratios, as a PNG.

Uses matplotlib when it is importable; otherwise falls back to a small
self-contained rasteriser (a 5x7 bitmap font, rectangles, zlib + struct for the
PNG container), so the harness never needs an extra dependency.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

Color = tuple[int, int, int]

PALETTE: list[Color] = [
    (230, 126, 34),  # orange
    (52, 101, 164),  # blue
    (39, 174, 96),  # green
    (142, 68, 173),  # purple
    (192, 57, 43),  # red
]
BLACK: Color = (30, 30, 30)
GREY: Color = (150, 150, 150)
LIGHT: Color = (225, 225, 225)
WHITE: Color = (255, 255, 255)

# 5x7 glyphs, one string of seven 5-pixel rows per character ('#' = ink).
_GLYPH_ROWS: dict[str, str] = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "####. ....# ....# .###. ....# ....# ####.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    " ": "..... ..... ..... ..... ..... ..... .....",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
}
_GLYPHS: dict[str, list[str]] = {ch: rows.split() for ch, rows in _GLYPH_ROWS.items()}


class Canvas:
    """An RGB raster with just enough drawing primitives for a bar chart."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1 or y0 >= y1:
            return
        line = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(line)] = line

    def hline(self, x0: int, x1: int, y: int, color: Color, dash: int = 0) -> None:
        if dash <= 0:
            self.rect(x0, y, x1, y + 1, color)
            return
        for x in range(x0, x1, dash * 2):
            self.rect(x, y, min(x + dash, x1), y + 1, color)

    @staticmethod
    def text_width(text: str, scale: int = 1) -> int:
        return len(text) * 6 * scale - scale if text else 0

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> None:
        for i, ch in enumerate(text.upper()):
            glyph = _GLYPHS.get(ch, _GLYPHS["?"])
            gx = x + i * 6 * scale
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        px, py = gx + col * scale, y + row * scale
                        self.rect(px, py, px + scale, py + scale, color)

    def text_centered(self, cx: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> None:
        self.text(cx - self.text_width(text, scale) // 2, y, text, color, scale)

    def to_png(self) -> bytes:
        raw = bytearray()
        stride = self.width * 3
        for y in range(self.height):
            raw.append(0)  # filter type: none
            raw += self.pixels[y * stride : (y + 1) * stride]

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + chunk(b"IEND", b"")
        )


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0):
        if span / step <= 8:
            return step
    return 20.0


def _draw_builtin(
    path: str, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], title: str
) -> None:
    scale = 2
    n_series = max(1, len(series))
    bar_w = 26
    gap = 30
    group_w = n_series * bar_w + gap
    left, right, top, bottom = 70, 20, 70, 40
    plot_h = 300
    width = max(left + right + len(groups) * group_w, 40 + Canvas.text_width(title, scale), 480)
    height = top + plot_h + bottom
    values = [v for _, vals in series for v in vals if v is not None]
    vmax = max([1.0, *values]) * 1.15
    step = _nice_step(vmax)
    vmax = step * (int(vmax / step) + 1)

    c = Canvas(width, height)
    c.text(20, 12, title, BLACK, scale)

    def y_of(v: float) -> int:
        return top + plot_h - round(v / vmax * plot_h)

    tick = 0.0
    while tick <= vmax + 1e-9:
        y = y_of(tick)
        c.hline(left, width - right, y, LIGHT)
        label = f"{tick:.2f}".rstrip("0").rstrip(".") if tick else "0"
        c.text(left - 8 - c.text_width(label), y - 3, label, GREY)
        tick += step
    c.rect(left, top, left + 1, top + plot_h + 1, GREY)
    c.rect(left, top + plot_h, width - right, top + plot_h + 1, GREY)
    c.hline(left, width - right, y_of(1.0), BLACK, dash=4)

    for gi, group in enumerate(groups):
        gx = left + gap // 2 + gi * group_w
        for si, (_, vals) in enumerate(series):
            v = vals[gi] if gi < len(vals) else None
            x0 = gx + si * bar_w
            if v is None:
                c.text_centered(x0 + bar_w // 2, y_of(0) - 10, "N/A", GREY)
                continue
            color = PALETTE[si % len(PALETTE)]
            c.rect(x0 + 2, y_of(v), x0 + bar_w - 2, y_of(0), color)
            c.text_centered(x0 + bar_w // 2, y_of(v) - 10, f"{v:.2f}", BLACK)
        c.text_centered(gx + (n_series * bar_w) // 2, top + plot_h + 8, group, BLACK)

    lx = left
    for si, (name, _) in enumerate(series):
        color = PALETTE[si % len(PALETTE)]
        c.rect(lx, 44, lx + 12, 56, color)
        c.text(lx + 16, 47, name, BLACK)
        lx += 16 + c.text_width(name) + 24
    c.text(width - right - c.text_width("DASHED LINE = 1.0"), 47, "dashed line = 1.0", GREY)

    with open(path, "wb") as fh:
        fh.write(c.to_png())


def _draw_matplotlib(
    path: str, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], title: str
) -> None:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.5))
    for si, (name, vals) in enumerate(series):
        xs = [gi + (si - (n - 1) / 2) * width for gi in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in vals]
        bars = ax.bar(xs, heights, width * 0.9, label=name)
        ax.bar_label(bars, labels=[f"{v:.2f}" if v is not None else "" for v in vals], fontsize=7)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(groups)), list(groups), rotation=20)
    ax.set_ylabel("throughput ratio")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_ratio_chart(
    path: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    title: str,
    force_builtin: bool = False,
) -> str:
    """Write a grouped bar chart to ``path``; return the backend used."""
    if not force_builtin:
        try:
            _draw_matplotlib(path, groups, series, title)
            return "matplotlib"
        except ImportError:
            pass
    _draw_builtin(path, groups, series, title)
    return "builtin"
