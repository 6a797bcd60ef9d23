"""Figures for the Benchmark page, from attn.bench rows (plain dicts)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .axes import tidy_log_axes

BACKEND_COLORS = {"naive": "#D55E00", "sdpa_mask": "#E69F00", "sdpa_causal": "#000000", "flex": "#0072B2"}
BACKEND_DASH = {"naive": "dot", "sdpa_mask": "dash", "sdpa_causal": "dashdot", "flex": "solid"}


def ok_rows(rows, backend: str, field: str) -> list[dict]:
    return sorted((r for r in rows if r.get("backend") == backend and r.get("status") == "ok"
                   and r.get(field) is not None and r[field] > 0), key=lambda r: r["n"])


def loglog_slope(ns, ys) -> float | None:
    """Least-squares slope of log y against log N (2 = quadratic growth); None with < 2 points."""
    if len(ns) < 2:
        return None
    return float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(ys, float)), 1)[0])


def backends_of(rows) -> list[str]:
    seen = []
    for r in rows:
        if r.get("backend") not in seen:
            seen.append(r["backend"])
    return seen


def n_tick(n: int) -> str:
    """Sequence lengths as this field writes them: 512, 1k (= 1,024), 128k (= 131,072)."""
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def _n_axis(fig: go.Figure, rows) -> None:
    """A log N axis ticked at the measured sizes (Plotly's own log ticks read '2, 5, 1000, 2')."""
    ns = sorted({r["n"] for r in rows})
    fig.update_xaxes(type="log", title="sequence length N", tickvals=ns, ticktext=[n_tick(n) for n in ns])


def growth_figure(rows, field: str, title: str, y_title: str, scale: float = 1.0, label: str = "") -> go.Figure:
    """field vs N per backend on log-log axes, with each backend's fitted slope in the legend."""
    fig = go.Figure()
    for b in backends_of(rows):
        pts = ok_rows(rows, b, field)
        if not pts:
            continue
        ns = [r["n"] for r in pts]
        ys = [r[field] * scale for r in pts]
        slope = loglog_slope(ns, ys)
        name = f"{b}{label}" + (f" (slope {slope:.2f})" if slope is not None else "")
        fig.add_scatter(x=ns, y=ys, mode="lines+markers", name=name,
                        line=dict(color=BACKEND_COLORS.get(b), dash=BACKEND_DASH.get(b, "solid"), width=3),
                        marker=dict(size=8), hovertemplate="N = %{x:,}: %{y:.4g}<extra>" + b + "</extra>")
    _n_axis(fig, rows)
    fig.update_yaxes(type="log", title=y_title)
    fig.update_layout(title=dict(text=title, x=0), height=430, template="plotly_white",
                      legend=dict(orientation="h", y=-0.22), margin=dict(t=70, b=40))
    return tidy_log_axes(fig)


def throughput_figure(rows, title: str) -> go.Figure:
    """Useful (allowed pairs only) and executed TFLOP/s per backend vs N."""
    fig = go.Figure()
    for b in backends_of(rows):
        pts = ok_rows(rows, b, "useful_tflops_s")
        if not pts:
            continue
        ns = [r["n"] for r in pts]
        color = BACKEND_COLORS.get(b)
        # One legend entry per backend (clicking it hides both its lines): eight entries wrapped one per
        # line in a half-width column and ran over the axis title.
        fig.add_scatter(x=ns, y=[r["useful_tflops_s"] for r in pts], mode="lines+markers", name=b, legendgroup=b,
                        line=dict(color=color, width=3), hovertemplate="%{y:.3g} TFLOP/s<extra>" + b + " useful</extra>")
        fig.add_scatter(x=ns, y=[r["executed_tflops_s"] for r in pts], mode="lines+markers", name=f"{b} executed",
                        legendgroup=b, showlegend=False,
                        line=dict(color=color, width=1.5, dash="dot"), marker=dict(size=6, symbol="circle-open"),
                        hovertemplate="%{y:.3g} TFLOP/s<extra>" + b + " executed</extra>")
    _n_axis(fig, rows)
    fig.update_yaxes(type="log", title="TFLOP/s")
    fig.update_layout(title=dict(text=title, x=0), height=430, template="plotly_white",
                      legend=dict(orientation="h", y=-0.22, title_text="solid: useful, dotted: executed —"),
                      margin=dict(t=70, b=40))
    return tidy_log_axes(fig)


def largest_n(rows) -> list[dict]:
    """Per backend: the largest N that ran, and what stopped the next size (skip reason, OOM)."""
    out = []
    for b in backends_of(rows):
        mine = sorted((r for r in rows if r.get("backend") == b), key=lambda r: r["n"])
        ran = [r["n"] for r in mine if r.get("status") == "ok"]
        first_fail = next((r for r in mine if r.get("status") != "ok" and (not ran or r["n"] > max(ran))), None)
        out.append({
            "backend": b,
            "largest N that ran": max(ran) if ran else None,
            "stopped at": first_fail["n"] if first_fail else None,
            "why": (f"{first_fail['status']}: {first_fail.get('reason') or ''}".strip(": ") if first_fail else
                    "every size ran"),
        })
    return out


def device_label(rows) -> str:
    """'NVIDIA H100 80GB HBM3, bfloat16, 2026-11-23' — every recorded figure carries its origin."""
    if not rows:
        return ""
    r = rows[0]
    return f"{r.get('device_name', '?')}, {r.get('dtype', '?')}, {str(r.get('date', '?'))[:10]}"


def ratio(rows, a: str, b: str, n: int, field: str = "time_ms") -> float | None:
    """field(a) / field(b) at this N, or None when either did not run."""
    def get(backend):
        return next((r[field] for r in rows if r.get("backend") == backend and r.get("n") == n
                     and r.get("status") == "ok" and r.get(field)), None)

    x, y = get(a), get(b)
    return None if x is None or y is None or not y else x / y

