"""Plotly figures for the Serving Cost page: memory and compute vs context, from attn.kv."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import kv
from .axes import tidy_log_axes

GIB = 2**30
DESIGN_COLOR = "#0072B2"  # Okabe–Ito blue / vermillion: readable for colour-blind viewers
FULL_COLOR = "#D55E00"
REF_COLOR = "#555555"
STATE_COLORS = ("#009E73", "#CC79A7")


def context_grid(lo: int = 1024, hi: int = 1 << 20, points: int = 121, extra=()) -> np.ndarray:
    """Integer contexts spaced evenly on a log axis, plus the window edges where curves bend."""
    grid = np.unique(np.round(np.geomspace(lo, hi, points)).astype(np.int64))
    extra = [int(x) for x in extra if lo <= int(x) <= hi]
    return np.unique(np.concatenate([grid, np.asarray(extra, dtype=np.int64)]))


def bend_points(model: kv.ModelSpec, design: kv.Design) -> list[int]:
    """Contexts where a capped layer stops growing; included in grids so the kinks are drawn exactly."""
    return sorted({c for c in kv.layer_caps(model, design) if c is not None})


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, log_y: bool = True, height: int = 460) -> go.Figure:
    # Legends go under the plot: above it they collide with the title once there are 3+ entries.
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left"), height=height, margin=dict(l=60, r=20, t=40, b=40),
        hovermode="x unified", template="plotly_white",
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0, font=dict(size=11)),
    )
    fig.update_xaxes(type="log", title=x_title)
    fig.update_yaxes(type="log" if log_y else "linear", title=y_title)
    return tidy_log_axes(fig)


# Reference lines are drawn as traces, not layout shapes: on log axes plotly reads shape
# coordinates as log10 values, so a shape at y=141 (GiB) would land at 10^141.
def _hline(fig: go.Figure, xs, y: float, name: str, color: str, dash: str = "solid", width: float = 1.5,
           legend: bool = True) -> None:
    fig.add_scatter(x=[xs[0], xs[-1]], y=[y, y], mode="lines", name=name, showlegend=legend,
                    line=dict(color=color, width=width, dash=dash), hovertemplate=f"{name}: %{{y:.3g}}<extra></extra>")


def _mark_context(fig: go.Figure, context: int, curves: list) -> None:
    """Dots where each curve crosses the chosen context (a vertical shape would misplace on log axes)."""
    ys = [y for _, y in curves]
    fig.add_scatter(x=[context] * len(ys), y=ys, mode="markers", name=f"at {context:,} tokens",
                    marker=dict(size=11, color=[c for c, _ in curves], line=dict(color="white", width=1.5)),
                    hovertemplate="%{y:.3g}<extra>at " + f"{context:,}" + " tokens</extra>")


def _full_and_design(contexts: np.ndarray, yf: list[float], ys: list[float], design: kv.Design,
                     full_name: str = "full attention", design_name: str | None = None, unit: str = "GiB") -> go.Figure:
    """A figure with the full-attention curve (dashed) and the design's curve. Where they are the same
    (a model with full attention in every layer) the legend says so: one line hides the other."""
    same = np.allclose(yf, ys, rtol=1e-12, atol=0)
    fig = go.Figure()
    fig.add_scatter(x=contexts, y=yf, name=full_name + (" (same curve, under the next)" if same else ""),
                    line=dict(color=FULL_COLOR, width=3, dash="dash"), hovertemplate="%{y:.3g} " + unit)
    fig.add_scatter(x=contexts, y=ys, name=(design_name or design.label) + (" = full attention" if same else ""),
                    line=dict(color=DESIGN_COLOR, width=3), hovertemplate="%{y:.3g} " + unit)
    return fig


def kv_figure(model: kv.ModelSpec, design: kv.Design, context: int, batch: int, kv_dtype: str,
              contexts: np.ndarray) -> go.Figure:
    """KV cache (GiB) vs context: the design, full attention, and two fixed-size-state references."""
    ys = [kv.kv_bytes(model, int(t), batch, kv_dtype, design) / GIB for t in contexts]
    yf = [kv.kv_bytes(model, int(t), batch, kv_dtype, kv.Design("full")) / GIB for t in contexts]
    lin = kv.linear_attention_state_bytes(model, batch, kv_dtype) / GIB
    mamba = kv.mamba_state_bytes(model, batch, kv_dtype) / GIB
    fig = _full_and_design(contexts, yf, ys, design)
    _hline(fig, contexts, lin, f"linear attention state, fixed: {value_text(lin)}", STATE_COLORS[0], "dot", 2)
    _hline(fig, contexts, mamba, f"Mamba state, fixed: {value_text(mamba)}", STATE_COLORS[1], "dot", 2)
    at = kv.kv_bytes(model, context, batch, kv_dtype, design) / GIB
    at_full = kv.kv_bytes(model, context, batch, kv_dtype, kv.Design("full")) / GIB
    _mark_context(fig, context, [(FULL_COLOR, at_full), (DESIGN_COLOR, at)])
    return _layout(fig, f"KV cache vs context (batch {batch}, {kv_dtype})", "context (tokens)", "GiB")


def value_text(gib: float) -> str:
    return f"{gib * 1024:.3g} MiB" if gib < 1 else f"{gib:.3g} GiB"


def label_sides(xs, curves, labels, plot_px=(420, 360), char_px=6.0, text_px=14.0) -> list[int]:
    """Side (0 left, 1 right) for each line label [(y, text)] on log-log axes, so no curve runs through it.

    A label sits just above its line at one end of the plot. Neighbouring capacities (24 and 32 GB)
    sit close on a log axis, so labels alternate sides by default; a label moves to the other side
    when a curve crosses its box there (full attention climbs through the 80 GB line at the right).
    Sizes are estimates in pixels of a half-width chart; the box test is in fractions of the axes.
    """
    lx = np.log10(np.asarray(xs, dtype=float))
    fx = (lx - lx[0]) / max(lx[-1] - lx[0], 1e-12)  # paper fraction of each x
    ly = [np.log10(np.asarray(c, dtype=float)) for c in curves]
    lo = min(min(c.min() for c in ly), min(np.log10(y) for y, _ in labels))
    hi = max(max(c.max() for c in ly), max(np.log10(y) for y, _ in labels))
    span = max(hi - lo, 1e-12)
    text_span = text_px / plot_px[1] * span  # a label's height, in log10 units of the y axis
    sides: list[int] = []

    def blocked(i: int, side: int) -> bool:
        """A curve crosses label i's box on that side, or a label already placed there is too close."""
        y, text = labels[i]
        width = min(1.0, char_px * len(text) / plot_px[0])
        near = fx <= width if side == 0 else fx >= 1 - width
        bottom, top = np.log10(y) - 0.01 * span, np.log10(y) + text_span
        crossed = any(bool(np.any((c[near] >= bottom) & (c[near] <= top))) for c in ly)
        return crossed or any(s == side and abs(np.log10(y) - np.log10(labels[j][0])) < text_span
                              for j, s in enumerate(sides))

    for i in range(len(labels)):
        preferred, other = i % 2, 1 - i % 2
        sides.append(other if blocked(i, preferred) and not blocked(i, other) else preferred)
    return sides


def vram_figure(model: kv.ModelSpec, design: kv.Design, context: int, batch: int, weight_dtype: str,
                kv_dtype: str, overhead_bytes: int, contexts: np.ndarray, gpus=kv.GPUS) -> go.Figure:
    """Total VRAM (weights + KV + allowance) vs context, with real GPUs as horizontal lines."""
    base = (kv.weights_bytes(model, weight_dtype) + overhead_bytes) / GIB
    ys = [base + kv.kv_bytes(model, int(t), batch, kv_dtype, design) / GIB for t in contexts]
    yf = [base + kv.kv_bytes(model, int(t), batch, kv_dtype, kv.Design("full")) / GIB for t in contexts]
    fig = _full_and_design(contexts, yf, ys, design)
    # Weights: a thick dash-dot line, unlike the thin solid grey lines of GPU capacities.
    _hline(fig, contexts, base, f"weights ({weight_dtype})" + (" + allowance" if overhead_bytes else ""), REF_COLOR,
           dash="dashdot", width=2.5)
    for gpu in gpus:
        _hline(fig, contexts, gpu.memory_bytes / GIB, gpu.name, "#AAAAAA", width=1, legend=False)
    # One label for capacities within 1% (A100 80 GiB and H100 79.65 GiB): their lines would overprint it.
    groups: list[list[kv.GPU]] = []
    for gpu in sorted(gpus, key=lambda g: g.memory_bytes):
        if groups and gpu.memory_bytes <= groups[-1][0].memory_bytes * 1.01:
            groups[-1].append(gpu)
        else:
            groups.append([gpu])
    labels = [(max(g.memory_bytes for g in group) / GIB, " / ".join(g.name for g in group)) for group in groups]
    for (gib, text), side in zip(labels, label_sides(contexts, [ys, yf, [base] * len(contexts)], labels)):
        fig.add_annotation(x=side, xref="paper", y=float(np.log10(gib)), yref="y", text=text,
                           showarrow=False, xanchor="right" if side else "left", yanchor="bottom",
                           font=dict(size=10, color="#444"))
    at = base + kv.kv_bytes(model, context, batch, kv_dtype, design) / GIB
    at_full = base + kv.kv_bytes(model, context, batch, kv_dtype, kv.Design("full")) / GIB
    _mark_context(fig, context, [(FULL_COLOR, at_full), (DESIGN_COLOR, at)])
    return _layout(fig, f"VRAM vs context (batch {batch}): weights + KV cache", "context (tokens)", "GiB", height=520)


def saving_figure(model: kv.ModelSpec, design: kv.Design, context: int, batch: int, weight_dtype: str,
                  kv_dtype: str, overhead_bytes: int, contexts: np.ndarray) -> go.Figure:
    """Share of KV memory (and attention FLOPs) saved vs full attention, and of total VRAM."""
    kv_save = [100 * kv.kv_saving(model, int(t), design) for t in contexts]
    vram_save = []
    for t in contexts:
        r = kv.report(model, int(t), batch, weight_dtype, kv_dtype, design, overhead_bytes)
        vram_save.append(100 * r["vram_saving"])
    fig = go.Figure()
    fig.add_hrect(y0=60, y1=80, fillcolor="#F0E442", opacity=0.25, line_width=0,
                  annotation_text="claimed 60–80%", annotation_position="top left",
                  # an opaque box: the dashed 2,048 line runs behind the label, not through it
                  annotation=dict(bgcolor="#FCF8D5"))
    fig.add_scatter(x=[2048, 2048], y=[0, 100], mode="lines", name="2,048 tokens", showlegend=False,
                    line=dict(color="#999", dash="dash", width=1), hoverinfo="skip")
    fig.add_annotation(x=float(np.log10(2048)), y=100, text="2,048", showarrow=False, xanchor="left", yanchor="top")
    fig.add_scatter(x=contexts, y=kv_save, name="KV cache and attention FLOPs saved",
                    line=dict(color=DESIGN_COLOR, width=3), hovertemplate="%{y:.1f}%")
    fig.add_scatter(x=contexts, y=vram_save, name=f"total VRAM saved (weights included, batch {batch})",
                    line=dict(color="#56B4E9", width=2, dash="dashdot"), hovertemplate="%{y:.1f}%")
    r = kv.report(model, context, batch, weight_dtype, kv_dtype, design, overhead_bytes)
    _mark_context(fig, context, [(DESIGN_COLOR, 100 * r["kv_saving"]), ("#56B4E9", 100 * r["vram_saving"])])
    # The design's label can be long: on its own line (a half-width title is clipped, not wrapped).
    _layout(fig, f"Saving vs full attention<br><sup>{design.label}</sup>", "context (tokens)", "% saved", log_y=False)
    fig.update_layout(margin=dict(t=60))
    fig.update_yaxes(range=[-2, 102])
    return fig


def flops_figure(model: kv.ModelSpec, design: kv.Design, context: int, contexts: np.ndarray) -> go.Figure:
    """Attention FLOPs per generated token vs context, against the weights' 2·P FLOPs."""
    ys = [kv.attention_flops_per_token(model, int(t), design) / 1e9 for t in contexts]
    yf = [kv.attention_flops_per_token(model, int(t), kv.Design("full")) / 1e9 for t in contexts]
    w = kv.weight_flops_per_token(model) / 1e9
    fig = _full_and_design(contexts, yf, ys, design, "attention, full", f"attention, {design.label}", "GFLOP")
    _hline(fig, contexts, w, "weights (2 × parameters)", REF_COLOR)
    at = kv.attention_flops_per_token(model, context, design) / 1e9
    at_full = kv.attention_flops_per_token(model, context, kv.Design("full")) / 1e9
    _mark_context(fig, context, [(FULL_COLOR, at_full), (DESIGN_COLOR, at)])
    return _layout(fig, "FLOPs per generated token", "context (tokens)", "GFLOP per token")
