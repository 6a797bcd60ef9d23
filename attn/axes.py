"""Log-axis ticks shared by the figure modules. No Streamlit.

Plotly labels a log axis spanning a few decades at 1, 2, 5 of each decade; on a 400-pixel plot
that reads "2 5 10⁶ 2 5 10⁷ …", and over one or two decades it labels every digit as a bare
"2 … 9" (so "5" stands for 50). From two decades up we label each power of ten; from a third of a
decade up, 1, 2 and 5 of each decade written out in full.
"""

from __future__ import annotations

import math


def tick_text(value: float) -> str:
    """1, 20, 500, 2k, 50M, 0.05: a tick label in full, with k/M/G from a thousand up."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def decade_ticks(values) -> dict:
    """Plotly axis settings for a log axis over `values` (positive, finite ones count): one tick
    per decade when they span two decades or more; ticks at 1, 2, 5 × 10^k from a third of a
    decade; else {} (Plotly's own ticks suit a narrow range)."""
    pos = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if not pos:
        return {}
    lo, hi = min(pos), max(pos)
    decades = math.log10(hi / lo)
    if decades >= 2:
        return {"dtick": 1}
    if decades < 1 / 3:
        return {}
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo / 1.2 <= t <= hi * 1.2]  # Plotly pads the range a little
    return {"tickvals": ticks, "ticktext": [tick_text(t) for t in ticks]}


def tidy_log_axes(fig):
    """Apply decade_ticks to each log axis of a one-plot figure, from its traces' data (axes with
    their own tickvals are left alone). Returns the figure."""
    for axis, field in (("xaxis", "x"), ("yaxis", "y")):
        layout_axis = fig.layout[axis]
        if layout_axis.type != "log" or layout_axis.tickvals is not None:
            continue
        values = [v for trace in fig.data if getattr(trace, field, None) is not None for v in getattr(trace, field)]
        layout_axis.update(**decade_ticks(values))
    return fig
