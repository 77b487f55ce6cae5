"""Charts for the owner: the digest's 14-day PNG and the dashboard's inline SVGs.

Runs after ``responder.owner.metrics`` (which computes the numbers); only the digest and the dashboard
import this module. Drawn with matplotlib's object API on the Agg backend (no pyplot, so no
global figure registry to leak and nothing that needs a display); matplotlib itself is imported
on first use, keeping its ~0.5 s and tens of MB off the daemon's start. Rendering holds a lock
because matplotlib's rc settings are process-wide and the web server draws from worker threads.

Small and readable on a phone: ~600x220 px, few colours, a legend above the plot; no data at all
gives the same frame with "no data yet" instead of an error.
"""
from __future__ import annotations

import io
import math
import re
import threading
from html import escape

COLORS = {"auto": "#2e7d32", "held": "#f9a825", "handoff": "#c62828", "other": "#cfd8dc"}
PALETTE = ["#1565c0", "#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#00838f"]
RC = {"svg.fonttype": "none",          # text stays text in the SVG (selectable, small, scalable)
      "font.size": 9, "font.family": "sans-serif", "axes.edgecolor": "#90a4ae",
      "axes.spines.top": False, "axes.spines.right": False, "xtick.color": "#455a64",
      "ytick.color": "#455a64", "legend.frameon": False}
_lock = threading.Lock()


def _figure(width_in: float, height_in: float):
    # start-up: matplotlib (~40 MB) loads on the first chart, not at every daemon start
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax) -> None:
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", va="center",
            color="#90a4ae", fontsize=12)


def _day_labels(days) -> list[str]:
    labels, month = [], None
    for d in days:
        labels.append(f"{d:%b} {d.day}" if d.month != month else str(d.day))
        month = d.month
    return labels


def png_chart(days) -> bytes:
    """Messages in per day (``metrics.DayMetrics``), each bar split: answered automatically, held
    for review, handed off, and the rest (robot mail, acknowledgements: no reply needed)."""
    # start-up: matplotlib (~40 MB) loads on the first chart, not at every daemon start
    import matplotlib

    parts = {"auto": [d.auto_replies for d in days], "held": [d.held for d in days],
             "handoff": [d.handoffs for d in days]}
    parts["other"] = [max(d.messages_in - d.auto_replies - d.held - d.handoffs, 0) for d in days]
    names = {"auto": "automatic", "held": "held", "handoff": "handed off", "other": "no reply needed"}
    with _lock, matplotlib.rc_context(RC):
        fig = _figure(6.0, 2.2)
        ax = fig.add_axes((0.06, 0.14, 0.92, 0.68))
        xs = list(range(len(days)))
        if not any(d.messages_in or d.auto_replies or d.held or d.handoffs for d in days):
            _no_data(ax)
        else:
            bottom = [0] * len(days)
            for key, values in parts.items():
                ax.bar(xs, values, bottom=bottom, color=COLORS[key], width=0.7, label=names[key])
                bottom = [b + v for b, v in zip(bottom, values)]
            ax.yaxis.get_major_locator().set_params(integer=True, nbins=4)
            ax.grid(axis="y", color="#eceff1", linewidth=0.8)
            ax.set_axisbelow(True)
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, fontsize=8, handlelength=1)
        ax.set_xticks(xs, _day_labels([d.day for d in days]), fontsize=8)
        ax.set_xlim(-0.6, max(len(days), 1) - 0.4)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None},
                    pil_kwargs={"optimize": True})
    return buf.getvalue()


def _tick_formatter(unit: str):
    # start-up: matplotlib (~40 MB) loads on the first chart, not at every daemon start
    from matplotlib.ticker import FuncFormatter

    def label(value, _pos):
        text = f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2g}"
        if unit == "$":
            return f"${value:,.2f}" if 0 < abs(value) < 10 else f"${text}"
        return f"{text}{unit}" if unit in ("%", "") else f"{text} {unit}"
    return FuncFormatter(label)


def svg_chart(title: str, labels: list[str], series: dict[str, list[float | None]], *,
              kind: str = "line", unit: str = "") -> str:
    """An inline ``<svg>`` (no XML prolog) with a ``<title>``, for the dashboard.

    ``kind``: "line" (None values are gaps), "bar" (series side by side) or "stacked".
    Values are drawn as given; ``unit`` only labels the y axis: "$" is a prefix, "%" a suffix,
    anything else a suffix after a space (pass minutes with "min", shares as 0-100 with "%").
    """
    if kind not in ("line", "bar", "stacked"):
        raise ValueError(f"chart kind must be line, bar or stacked, not {kind!r}")
    # start-up: matplotlib (~40 MB) loads on the first chart, not at every daemon start
    import matplotlib

    clean = {name: [math.nan if v is None else float(v) for v in values[:len(labels)]]
             for name, values in series.items()}
    has_data = bool(labels) and any(not math.isnan(v) and v != 0 for vs in clean.values() for v in vs)
    with _lock, matplotlib.rc_context(RC):
        fig = _figure(6.0, 2.4)
        ax = fig.add_axes((0.1, 0.14, 0.88, 0.62))
        fig.text(0.01, 0.96, title, ha="left", va="top", fontsize=10, fontweight="bold", color="#263238")
        xs = list(range(len(labels)))
        if not has_data:
            _no_data(ax)
        else:
            _draw(ax, xs, clean, kind)
            ax.yaxis.set_major_formatter(_tick_formatter(unit))
            ax.yaxis.get_major_locator().set_params(nbins=4)
            ax.grid(axis="y", color="#eceff1", linewidth=0.8)
            ax.set_axisbelow(True)
            if len(clean) > 1:
                ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(clean), fontsize=8,
                          handlelength=1)
        step = max(1, math.ceil(len(labels) / 10))  # at most ~10 labels fit a phone's width
        ax.set_xticks(xs[::step], labels[::step], fontsize=8)
        ax.set_xlim(-0.6, max(len(labels), 1) - 0.4)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(buf.getvalue(), title)


def _draw(ax, xs: list[int], series: dict[str, list[float]], kind: str) -> None:
    colors = dict(zip(series, PALETTE * 3))
    if kind == "line":
        for name, values in series.items():
            ax.plot(xs, values, color=colors[name], linewidth=1.8, marker="o", markersize=3, label=name)
        ax.set_ylim(bottom=min(0, *(v for vs in series.values() for v in vs if not math.isnan(v))))
    elif kind == "bar":
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            offset = (i - (len(series) - 1) / 2) * width
            ax.bar([x + offset for x in xs], [0 if math.isnan(v) else v for v in values], width=width,
                   color=colors[name], label=name)
    else:
        bottom = [0.0] * len(xs)
        for name, values in series.items():
            values = [0 if math.isnan(v) else v for v in values]
            ax.bar(xs, values, bottom=bottom, width=0.7, color=colors[name], label=name)
            bottom = [b + v for b, v in zip(bottom, values)]


def _inline(svg: str, title: str) -> str:
    """Drop the XML prolog and doctype, scale to the page's width, name the image for screen readers."""
    svg = svg[svg.index("<svg"):]
    head_end = svg.index(">") + 1
    head = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end])
    head = head[:-1] + f' role="img" aria-label="{escape(title)}" style="width:100%;height:auto">'
    return f"{head}\n<title>{escape(title)}</title>{svg[head_end:]}"
