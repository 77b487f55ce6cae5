"""The dashboard's charts as inline SVG, written as text; and the axis scale both chart formats share.

Called through ``responder.owner.charts.svg_chart`` by the dashboard (``responder.web.dashboard``),
with the numbers ``responder.owner.metrics`` computed. The page's Content-Security-Policy allows no
scripts (``responder.web.security``), so the SVG is plain shapes and text: no library. matplotlib
weighed 105 MB installed and 0.8 s for its first figure; pygal writes an inline ``<script>`` even
with ``js=[]``, which that policy blocks. Every piece of text from outside (title, labels, series
names) is XML-escaped here: the template inserts this markup as it is.

Drawn in a 600-wide viewBox that the page scales to its width (~600x240, taller when the legend
needs more rows); a chart with nothing to draw keeps its frame and says "no data yet".
"""
from __future__ import annotations

import math
from html import escape

PALETTE = ["#1565c0", "#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#00838f"]
WIDTH, EDGE, LEFT, RIGHT = 600, 6, 60, 588  # the plot spans LEFT (or more: long y labels)..RIGHT
PLOT_HEIGHT, BOTTOM_MARGIN = 148, 34
AXIS, GRID, INK, TITLE_INK, FAINT = "#90a4ae", "#eceff1", "#455a64", "#263238", "#90a4ae"
FONT = 'font-family="system-ui,sans-serif"'


def nice_ticks(low: float, high: float, *, count: int = 4, integer: bool = False) -> list[float]:
    """About ``count`` round values covering low..high (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(s * power for s in steps if s * power >= raw * (1 - 1e-9))
    if integer:
        step = max(1, round(step))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def axis(low: float, high: float, *, integer: bool = False) -> tuple[list[float], float, float]:
    """(ticks, bottom, top) of a y axis: the data plus 5% headroom (below too when it goes under
    zero), with the round ticks that fall inside; the tallest bar uses the height, as in matplotlib."""
    span = (high - low) or 1
    bottom, top = (low - 0.05 * span if low < 0 else low), high + 0.05 * span
    ticks = [t for t in nice_ticks(low, high, integer=integer) if bottom - 1e-9 <= t <= top + 1e-9]
    return ticks, bottom, top


def format_value(value: float, unit: str) -> str:
    """A tick or a value as the owner reads it: "$" is a prefix, "%" a suffix, any other unit a
    suffix after a space ("12 min")."""
    text = f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2g}"
    if unit == "$":
        return f"${value:,.2f}" if 0 < abs(value) < 10 else f"${text}"
    return f"{text}{unit}" if unit in ("%", "") else f"{text} {unit}"


def _text(x: float, y: float, text: str, *, size: int = 11, fill: str = INK, anchor: str = "start",
          bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"{weight}>'
            f"{escape(text)}</text>")


def _legend(names: list[str], top: float) -> tuple[list[str], float]:
    """Swatches and names in rows under the title, wrapped to the width; returns the shapes and
    the y below them. Text width is estimated (~6.3 px a character at 11 px): no font metrics here."""
    shapes, x, y = [], float(EDGE), top
    for name, color in zip(names, PALETTE * 3):
        width = 14 + 6.3 * len(name) + 16
        if x > EDGE and x + width > RIGHT:
            x, y = float(EDGE), y + 16
        shapes.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>')
        shapes.append(_text(x + 14, y, name))
        x += width
    return shapes, y + 12


def _describe(kind: str, labels: list[str], series: dict[str, list[float]], unit: str) -> str:
    """One sentence per series for screen readers: what the picture shows."""
    parts = []
    for name, values in series.items():
        known = [(label, v) for label, v in zip(labels, values) if not math.isnan(v)]
        if known:
            peak = max(known, key=lambda item: item[1])
            parts.append(f"{name}: latest {format_value(known[-1][1], unit)} ({known[-1][0]}), "
                         f"highest {format_value(peak[1], unit)} ({peak[0]}).")
    kind_text = {"line": "Line chart", "bar": "Bar chart", "stacked": "Stacked bar chart"}[kind]
    return " ".join([f"{kind_text}, {labels[0]} to {labels[-1]}."] + parts)


def draw_svg(title: str, labels: list[str], series: dict[str, list[float]], kind: str, unit: str) -> str:
    """The chart for ``charts.svg_chart``; ``series`` values are floats, NaN for a gap."""
    has_data = bool(labels) and any(not math.isnan(v) and v != 0 for vs in series.values() for v in vs)
    ticks, low, high = [], 0.0, 1.0
    if has_data:
        values = [v for vs in series.values() for v in vs if not math.isnan(v)]
        if kind == "stacked":
            values = [sum(max(vs[i], 0) for vs in series.values() if not math.isnan(vs[i]))
                      for i in range(len(labels))]
        ticks, low, high = axis(min(0.0, *values), max(0.0, *values))
    tick_labels = [format_value(tick, unit) for tick in ticks]
    # room for the widest y label ("1,500 min"), at ~7 px a character of 12 px
    left = max(LEFT, 12 + 7 * max(map(len, tick_labels), default=0))
    body = [_text(EDGE, 18, title, size=14, fill=TITLE_INK, bold=True)]
    top = 34.0
    if has_data and len(series) > 1:
        shapes, top = _legend(list(series), 42)
        body += shapes
    top += 14
    bottom, height = top + PLOT_HEIGHT, top + PLOT_HEIGHT + BOTTOM_MARGIN
    slot = (RIGHT - left) / max(len(labels), 1)

    def x_at(i: float) -> float:
        return left + (i + 0.5) * slot

    def y_at(v: float) -> float:
        return bottom - (v - low) / (high - low) * PLOT_HEIGHT

    for tick, text in zip(ticks, tick_labels):
        body.append(f'<line x1="{left}" y1="{y_at(tick):.1f}" x2="{RIGHT}" y2="{y_at(tick):.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y_at(tick) + 4, text, size=12, anchor="end"))
    if has_data:
        body += _marks(series, labels, kind, unit, x_at, y_at, slot)
    else:
        body.append(_text((left + RIGHT) / 2, top + PLOT_HEIGHT / 2 + 5, "no data yet", size=16, fill=FAINT,
                          anchor="middle"))
    body.append(f'<path d="M{left} {top:.1f}V{bottom:.1f}H{RIGHT}" fill="none" stroke="{AXIS}"/>')
    step = max(1, math.ceil(len(labels) / 10))  # at most ~10 labels fit a phone's width
    for i in range(0, len(labels), step):
        body.append(f'<line x1="{x_at(i):.1f}" y1="{bottom:.1f}" x2="{x_at(i):.1f}" y2="{bottom + 4:.1f}" '
                    f'stroke="{AXIS}"/>')
        body.append(_text(x_at(i), bottom + 17, labels[i], anchor="middle"))
    name = escape(title)
    desc = _describe(kind, labels, series, unit) if has_data else "No data yet."
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
            f'aria-label="{name}" {FONT}>\n<title>{name}</title>\n<desc>{escape(desc)}</desc>\n'
            + "\n".join(body) + "\n</svg>")


def _marks(series, labels, kind, unit, x_at, y_at, slot) -> list[str]:
    """Lines with a dot per value, bars side by side, or stacked bars; each value has a tooltip."""
    shapes = []
    colors = dict(zip(series, PALETTE * 3))

    def tip(i: int, name: str, v: float) -> str:
        return f"<title>{escape(f'{labels[i]}, {name}: {format_value(v, unit)}')}</title>"

    def bar(x: float, width: float, v0: float, v1: float, color: str, title: str) -> str:
        y, y_end = sorted((y_at(v0), y_at(v1)))
        return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{y_end - y:.1f}" fill="{color}">'
                f"{title}</rect>")

    if kind == "line":
        for name, values in series.items():
            path, pen_down = [], False
            for i, v in enumerate(values):
                if math.isnan(v):
                    pen_down = False  # a gap: the line stops and starts again at the next value
                    continue
                path.append(f"{'L' if pen_down else 'M'}{x_at(i):.1f} {y_at(v):.1f}")
                pen_down = True
            shapes.append(f'<path d="{"".join(path)}" fill="none" stroke="{colors[name]}" stroke-width="2" '
                          'stroke-linejoin="round"/>')
            shapes += [f'<circle cx="{x_at(i):.1f}" cy="{y_at(v):.1f}" r="3" fill="{colors[name]}">'
                       f"{tip(i, name, v)}</circle>" for i, v in enumerate(values) if not math.isnan(v)]
    elif kind == "bar":
        width = 0.8 * slot / len(series)
        for n, (name, values) in enumerate(series.items()):
            shapes += [bar(x_at(i) - 0.4 * slot + n * width, width, 0, v, colors[name], tip(i, name, v))
                       for i, v in enumerate(values) if not math.isnan(v) and v]
    else:
        base = [0.0] * len(labels)
        for name, values in series.items():
            for i, v in enumerate(values):
                if not math.isnan(v) and v > 0:
                    shapes.append(bar(x_at(i) - 0.35 * slot, 0.7 * slot, base[i], base[i] + v, colors[name],
                                      tip(i, name, v)))
                    base[i] += v
    return shapes
