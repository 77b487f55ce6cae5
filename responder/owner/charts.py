"""Charts for the owner: the digest's 14-day PNG and the dashboard's inline SVGs.

Runs after ``responder.owner.metrics`` (which computes the numbers); only the digest
(``png_chart``) and the dashboard (``svg_chart``) import this module. The PNG is drawn with Pillow
alone, in its bundled font (``ImageFont.load_default(size=...)``, Pillow >= 10.1): mail clients
render neither SVG nor scripts, so the digest needs pixels. The SVGs are written as text in
``responder.owner.chart_svg`` (why no library: see there). Neither keeps any state between calls,
so the web server's worker threads can draw at the same time.

Small and readable on a phone: ~600x220 px, few colours, a legend above the plot; no data at all
gives the same frame with "no data yet" instead of an error.
"""
from __future__ import annotations

import io
import math

from responder.owner.chart_svg import AXIS, FAINT, GRID, INK, axis, draw_svg

COLORS = {"auto": "#2e7d32", "held": "#f9a825", "handoff": "#c62828", "other": "#cfd8dc"}
NAMES = {"auto": "automatic", "held": "held", "handoff": "handed off", "other": "no reply needed"}
PNG_SIZE = (600, 220)
PLOT_TOP, PLOT_BOTTOM, PLOT_RIGHT = 34, 190, 592  # the left edge depends on the widest y label


def day_labels(days) -> list[str]:
    """"Feb 24", "25", … "Mar 1", "2": the month is named on the first day and when it changes."""
    labels, month = [], None
    for d in days:
        labels.append(f"{d:%b} {d.day}" if d.month != month else str(d.day))
        month = d.month
    return labels


def png_chart(days) -> bytes:
    """Messages in per day (``metrics.DayMetrics``), each bar split: answered automatically, held
    for review, handed off, and the rest (robot mail, acknowledgements: no reply needed)."""
    # start-up: Pillow loads with the first digest, not at every daemon start
    from PIL import Image, ImageDraw, ImageFont

    parts = {"auto": [d.auto_replies for d in days], "held": [d.held for d in days],
             "handoff": [d.handoffs for d in days]}
    parts["other"] = [max(d.messages_in - d.auto_replies - d.held - d.handoffs, 0) for d in days]
    totals = [sum(values) for values in zip(*parts.values())]
    image = Image.new("RGB", PNG_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)
    has_data = any(totals)
    ticks, _, top = axis(0, max(totals), integer=True) if has_data else ([], 0, 1)
    labels = [f"{t:,.0f}" for t in ticks]
    left = 10 + max((math.ceil(font.getlength(text)) for text in labels), default=0) + 8
    slot = (PLOT_RIGHT - left) / max(len(days), 1)

    def y_at(value: float) -> int:
        return round(PLOT_BOTTOM - value / top * (PLOT_BOTTOM - PLOT_TOP))

    if has_data:
        for tick, text in zip(ticks, labels):
            draw.line([(left, y_at(tick)), (PLOT_RIGHT, y_at(tick))], fill=GRID)
            draw.text((left - 6, y_at(tick)), text, fill=INK, font=font, anchor="rm")
        for i in range(len(days)):
            x0, x1, base = round(left + (i + 0.15) * slot), round(left + (i + 0.85) * slot) - 1, 0
            for key, values in parts.items():
                # whole pixel rows: a segment ends one row above where the one below it starts (a
                # count too small for one row is not drawn: Pillow refuses an upside-down box)
                y0, y1 = y_at(base + values[i]), y_at(base) - 1
                if y0 <= y1:
                    draw.rectangle([x0, y0, max(x0, x1), y1], fill=COLORS[key])
                base += values[i]
        _png_legend(draw, font, left)
    else:
        draw.text(((left + PLOT_RIGHT) / 2, (PLOT_TOP + PLOT_BOTTOM) / 2), "no data yet", fill=FAINT,
                  font=ImageFont.load_default(size=16), anchor="mm")
    draw.line([(left, PLOT_TOP), (left, PLOT_BOTTOM), (PLOT_RIGHT, PLOT_BOTTOM)], fill=AXIS)
    for i, label in enumerate(day_labels([d.day for d in days])):
        x = round(left + (i + 0.5) * slot)
        draw.line([(x, PLOT_BOTTOM), (x, PLOT_BOTTOM + 3)], fill=AXIS)
        draw.text((x, PLOT_BOTTOM + 6), label, fill=INK, font=font, anchor="mt")
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _png_legend(draw, font, left: int) -> None:
    """One row above the plot: a swatch and a name per part of the bars, bottom part first."""
    x, y = left, PLOT_TOP - 17
    for key, name in NAMES.items():
        draw.rectangle([x, y - 5, x + 9, y + 4], fill=COLORS[key])
        draw.text((x + 14, y), name, fill=INK, font=font, anchor="lm")
        x += 14 + math.ceil(font.getlength(name)) + 18


def svg_chart(title: str, labels: list[str], series: dict[str, list[float | None]], *,
              kind: str = "line", unit: str = "") -> str:
    """An inline ``<svg>`` (no XML prolog) with a ``<title>`` and a ``<desc>``, for the dashboard.

    ``kind``: "line" (None values are gaps), "bar" (series side by side) or "stacked".
    Values are drawn as given; ``unit`` only labels the y axis: "$" is a prefix, "%" a suffix,
    anything else a suffix after a space (pass minutes with "min", shares as 0-100 with "%").
    """
    if kind not in ("line", "bar", "stacked"):
        raise ValueError(f"chart kind must be line, bar or stacked, not {kind!r}")
    clean = {name: [math.nan if v is None else float(v) for v in values[:len(labels)]]
             + [math.nan] * (len(labels) - len(values)) for name, values in series.items()}
    return draw_svg(title, labels, clean, kind, unit)
