"""Figures the lessons need beyond attn.figures and attn.cost_figures. No Streamlit.

Each one is computed from the library (mask rules, recorded benchmark rows, model results),
never drawn from constants, and states what it was computed from in its title or axes.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from . import masks, render
from .axes import tidy_log_axes

# Okabe–Ito colours (colour-blind safe), as in attn.cost_figures.
COLORS = ("#D55E00", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#000000")


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 440) -> go.Figure:
    # Legends under the plot: above it they collide with a two-line title.
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left"), height=height, template="plotly_white",
        margin=dict(l=60, r=20, t=60, b=40), hovermode="x unified",
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
    )
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return fig


def length_grid(lo: int = 1024, hi: int = masks.MAX_N) -> list[int]:
    """Powers of two from lo to hi: the lengths the cost curves are counted at."""
    return [1 << p for p in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]


def pairs_growth_figure(window: int, ns=None) -> go.Figure:
    """Allowed (query, key) pairs vs N for full, causal and a sliding window W, counted exactly
    from the rules (render.row_counts), on log-log axes where N² has twice the slope of N·W."""
    ns = list(ns or length_grid())
    rules = [
        ("full (bidirectional)", masks.full(), "dash"),
        ("causal", masks.causal(), "dot"),
        (f"sliding window W = {window:,}", masks.sliding_window(window), "solid"),
    ]
    fig = go.Figure()
    for i, (name, rule, dash) in enumerate(rules):
        ys = [int(render.row_counts(rule, n).sum()) for n in ns]
        fig.add_scatter(x=ns, y=ys, name=name, mode="lines+markers", line=dict(color=COLORS[i], width=3, dash=dash),
                        hovertemplate="%{y:,.0f} pairs")
    _layout(fig, "Pairs each head scores in one layer, by sequence length<br><sup>counted from the masks</sup>",
            "sequence length N (tokens)", "allowed (query, key) pairs")
    fig.update_xaxes(type="log", tickvals=ns, ticktext=[f"{n // 1024}k" for n in ns])
    fig.update_yaxes(type="log", exponentformat="power")
    return tidy_log_axes(fig)


def blocks_figure(rule: masks.MaskRule, n: int, name: str, block: int = 128) -> go.Figure:
    """The mask cut into the kernel's block x block tiles: a coloured cell is a block a block-sparse
    kernel (FlexAttention) computes in full, a white one a block it skips; colour = share of useful pairs."""
    from .figures import overview_figure

    title = f"{name}, N = {n:,}<br>each cell = one {block}×{block} block · white = skipped · colour = share used"
    return overview_figure(render.tile_overview(rule, n, tile_size=block), title=title)


def blocks_note(rule: masks.MaskRule, n: int, block: int = 128, head_dim: int = 64) -> str:
    """Useful vs executed work of a block-sparse kernel on this mask, per head (Markdown)."""
    stats = render.mask_stats(rule, n, block_size=block)
    useful, executed = stats.useful_flops(head_dim), stats.executed_flops_blocks(head_dim)
    return (f"**{stats.blocks_touched:,}** of {stats.blocks_total:,} blocks computed. Per head (d = {head_dim}): "
            f"useful {useful / 1e9:.3g} GFLOP, executed **{executed / 1e9:.3g} GFLOP** — "
            f"{executed / max(useful, 1):.1f}× the useful work.")


def grid_title(rule: masks.MaskRule, n: int, what: str) -> str:
    """A mask figure's title with its exact pair count."""
    pairs = int(render.row_counts(rule, n).sum())
    return f"{what}<br>N = {n} · {pairs:,} of {n * n:,} pairs allowed ({pairs / (n * n):.0%})"

