"""Figures and coloured text for the Model Attention page (Plotly figures, HTML strings; no Streamlit)."""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go

from .axes import decade_ticks
from .pictures import colorscale_rgb, png_data_uri

# White for exactly zero attention; any non-zero weight is visibly tinted (a 1/512 share must show).
WEIGHT_SCALE = [[0.0, "#ffffff"], [1e-6, "#deebf7"], [0.15, "#6baed6"], [0.5, "#2171b5"], [1.0, "#08306b"]]
MASKED_COLOR = "#D55E00"


def _label(piece: str, i: int) -> str:
    shown = piece.replace("\n", "⏎").replace(" ", "·")
    return f"{i} {shown[:12]}"


def head_grid_figure(thumbs: np.ndarray, kv_groups, title: str) -> go.Figure:
    """All layers × heads as one mosaic: thumbs (L, H, s, s) pooled maps. Layers run across (L0 at the
    left) and heads down, ordered and boxed by KV group; every thumbnail is square, as its map is.

    Layers go across because there are more of them (30 against 9 in SmolLM2): that way square
    thumbnails fill a page's width, where heads across gave a narrow column (or, stretched to the
    width, 4:1 slivers in which a diagonal reads as a slope)."""
    layers, heads, s, _ = thumbs.shape
    gap = max(1, s // 8)
    order = [h for group in kv_groups for h in group]
    cell = s + gap
    mosaic = np.full((heads * cell - gap, layers * cell - gap), np.nan, dtype=np.float32)  # (rows: heads, cols: layers)
    for ri, h in enumerate(order):
        for li in range(layers):
            t = thumbs[li, h]
            peak = float(t.max()) or 1.0
            mosaic[ri * cell : ri * cell + s, li * cell : li * cell + s] = t / peak  # each thumbnail on its own scale
    # One PNG instead of an 807 × 240-cell heatmap: the same colours (no hover either way), but less for
    # the browser to draw on every new map (measured here: 0.95 s instead of 1.27 s of renderer CPU per
    # change of window, which counts when a class asks at once) and far fewer bytes to send.
    fig = go.Figure(go.Image(source=png_data_uri(colorscale_rgb(mosaic, WEIGHT_SCALE)), hoverinfo="skip"))
    per = heads // max(1, len(kv_groups))
    fig.update_xaxes(tickvals=[li * cell + s / 2 for li in range(layers)], ticktext=[f"L{li}" for li in range(layers)],
                     side="top", showgrid=False, zeroline=False, constrain="domain", tickfont=dict(size=10))
    # An Image keeps square pixels (y is anchored to x); the picture sits under the title.
    fig.update_yaxes(tickvals=[ri * cell + s / 2 for ri in range(heads)], ticktext=[f"q{h}" for h in order],
                     autorange="reversed", showgrid=False, zeroline=False, constrain="domain", constraintoward="top")
    right = layers * cell - gap / 2
    for j, group in enumerate(kv_groups):
        y0, y1 = j * per * cell - gap / 2, (j + 1) * per * cell - gap / 2
        fig.add_shape(type="rect", x0=-gap / 2, x1=right, y0=y0, y1=y1, line=dict(color="#444", width=1.5))
        # Placed from the plot's right edge ("x domain"): an annotation outside the x range is not drawn.
        fig.add_annotation(x=1, xref="x domain", xshift=4, y=(y0 + y1) / 2, text=f"KV head {j}",
                           showarrow=False, xanchor="left", align="left", font=dict(size=11))
    # Height for square thumbnails across the plot width of a page in Streamlit's centred layout
    # (about 800 px): the most it takes; on a narrower page the box shrinks to the picture (ui.plot).
    plot_px = 800 * (heads * cell) / (layers * cell)
    # Ranges fixed at the boxes' edges: autorange would stretch x to take in the "KV head" labels (by
    # 105 of 912 units at 1,024 px), and the picture's shape would then depend on the label's width.
    x0, x1, y0, y1 = -gap / 2 - 1, right + 1, -gap / 2 - 1, len(kv_groups) * per * cell - gap / 2 + 1
    fig.update_xaxes(range=[x0, x1])
    fig.update_yaxes(range=[y1, y0], autorange=False)  # reversed: heads run down
    fig.update_layout(title=dict(text=html.escape(title), x=0), height=int(max(260, plot_px + 110)),
                      margin=dict(l=40, r=80, t=90, b=10), plot_bgcolor="#ffffff",
                      meta=dict(aspect=(y1 - y0) / (x1 - x0)))  # the page fits its box to it (ui.plot)
    return fig


def attention_map_figure(weights: np.ndarray, pieces, title: str, lo: int = 0, hi: int | None = None,
                         allowed: np.ndarray | None = None, zmax: float | None = None) -> go.Figure:
    """One head's (N, N) attention weights for queries and keys lo..hi-1, token labels when few.
    A newline in the title starts a second line.
    allowed (N, N) bool: cells the mask forbids are outlined (masked weights are exactly 0).
    zmax: the top of the colour scale (maps drawn side by side share one); else this map's largest weight."""
    n = weights.shape[-1]
    hi = n if hi is None else hi
    w = weights[lo:hi, lo:hi]
    idx = np.arange(lo, hi)
    labels = [_label(pieces[i], i) for i in idx] if len(pieces) >= hi else [str(i) for i in idx]
    show_labels = hi - lo <= 48
    hover = [[f"query {labels[r]} → key {labels[c]}: %{{z:.4f}}" for c in range(hi - lo)] for r in range(hi - lo)] \
        if hi - lo <= 128 else None
    top = max(float(w.max()) if zmax is None else float(zmax), 1e-9)
    fig = go.Figure(go.Heatmap(z=w, x=idx, y=idx, colorscale=WEIGHT_SCALE, zmin=0, zmax=top, meta="gradient",
                               colorbar=dict(title="weight"),
                               hovertemplate="query %{y} → key %{x}: %{z:.4f}<extra></extra>" if hover is None else None,
                               text=hover, hoverinfo="text" if hover is not None else None))
    if allowed is not None:
        forbidden = ~allowed[lo:hi, lo:hi]
        # Shade forbidden cells lightly in the mask colour so "0 because masked" differs from "0 by choice".
        shade = np.where(forbidden, 1.0, np.nan)
        fig.add_trace(go.Heatmap(z=shade, x=idx, y=idx, colorscale=[[0, MASKED_COLOR], [1, MASKED_COLOR]], opacity=0.12,
                                 showscale=False, hoverinfo="skip"))
    axis = dict(tickvals=list(idx), ticktext=labels, tickfont=dict(size=9)) if show_labels else {}
    # Keys are labelled up to 24 tokens: more rotated labels overlap in a half-width map; the query axis
    # keeps its labels (read across a row: that token's key is the one on the diagonal).
    # Square cells with keys along the top, as in the mask figures: a query's row reads the same length
    # as a key's column, and the page sizes the figure to its column (ui.plot). Key labels stand upright.
    key_labels = hi - lo <= 24
    fig.update_xaxes(title="key (attended to)", side="top", constrain="domain",
                     **(axis | dict(tickangle=-90) if key_labels else {}))
    fig.update_yaxes(title="query", autorange="reversed", scaleanchor="x", constrain="domain", constraintoward="top", **axis)
    lines = title.split("\n")  # a long rule goes on a line of its own: half-width titles are clipped, not wrapped
    # Above the map: the title's lines (17 px type), then the key axis's title and its tick labels
    # (numbers: one line; words: upright, 9 px type at 0.6 em a character).
    ticks_px = round(0.6 * 9 * max(map(len, labels))) if key_labels else 16
    top = 14 + 22 * len(lines) + 12 + 22 + ticks_px
    # The title starts at the figure's edge, not the plot's: word labels widen the left margin to 100 px,
    # and a rule's text (one long word, "sliding_window(window=64)") must fit a half-width column.
    fig.update_layout(title=dict(text="<br>".join(map(html.escape, lines)), x=0, xref="container", xanchor="left",
                                 y=1, yref="container", yanchor="top", pad=dict(t=14, l=10)),
                      height=top + 560, margin=dict(l=60, r=10, t=top, b=10), plot_bgcolor="#ffffff",
                      meta=dict(positions=hi))
    return fig


def shared_zmax(lo: int, hi: int, *maps: np.ndarray) -> float:
    """One colour-scale top for maps drawn side by side: the largest weight any shows in lo..hi-1."""
    return max(float(m[lo:hi, lo:hi].max()) for m in maps)


def colored_tokens_html(pieces, values, vmax: float, signed: bool = False, first: int = 1) -> str:
    """Tokens as HTML spans tinted by value (loss, or loss change when signed: red = harder, blue = easier).
    values[i] belongs to token first + i; tokens before `first` are shown untinted. Text is escaped."""
    out = []
    vmax = max(float(vmax), 1e-9)
    for i, piece in enumerate(pieces):
        text = html.escape(piece).replace("\n", "<br>")
        j = i - first
        if j < 0 or j >= len(values):
            out.append(f'<span style="color:#777">{text}</span>')
            continue
        v = float(values[j])
        a = min(1.0, abs(v) / vmax)
        if signed:
            rgb = "214,39,40" if v > 0 else "31,119,180"
        else:
            rgb = "214,39,40"
        out.append(f'<span title="token {i}: {v:+.2f} nats" style="background: rgba({rgb},{a * 0.85:.3f}); '
                   f'border-radius: 2px">{text}</span>')
    return ('<div style="font-family: ui-monospace, monospace; font-size: 0.9rem; line-height: 1.7; '
            'white-space: pre-wrap; max-height: 420px; overflow-y: auto; border: 1px solid #ddd; padding: 8px">'
            + "".join(out) + "</div>")


def sweep_figure(series: dict, full_ppl: float | None, n_tokens: int) -> go.Figure:
    """Perplexity vs window: series maps a name to [(window, perplexity), …] (window None = full)."""
    colors = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
    fig = go.Figure()
    for (name, points), color in zip(series.items(), colors):
        pts = [(w, p) for w, p in points if w is not None]
        fig.add_scatter(x=[w for w, _ in pts], y=[p for _, p in pts], mode="lines+markers", name=name,
                        line=dict(color=color, width=3), marker=dict(size=9),
                        hovertemplate="window %{x}: perplexity %{y:.2f}<extra>" + name + "</extra>")
    if full_ppl is not None:
        fig.add_scatter(x=[min(w for s in series.values() for w, _ in s if w) or 1, n_tokens], y=[full_ppl, full_ppl],
                        mode="lines", name=f"full causal attention: {full_ppl:.2f}", line=dict(color="#000", dash="dash"))
    windows = sorted({w for points in series.values() for w, _ in points if w is not None})
    fig.update_xaxes(type="log", title="window W (tokens)", tickvals=windows, ticktext=[str(w) for w in windows])
    # Log perplexity is the mean loss: on a log axis a 16-token window's 480 does not flatten the
    # 31 / 22 / 11-point steps between the larger windows and full attention.
    ppl = [p for points in series.values() for _, p in points] + ([full_ppl] if full_ppl is not None else [])
    fig.update_yaxes(type="log", title="perplexity (log scale, lower is better)", **decade_ticks(ppl))
    fig.update_layout(title=dict(text=f"Perplexity vs window on the first {n_tokens:,} tokens", x=0), height=440,
                      template="plotly_white", legend=dict(orientation="h", y=-0.2))
    return fig


def retrieval_figure(results) -> go.Figure:
    """Accuracy for each (window, distance) of a retrieval grid (results: ProbeResult list)."""
    windows = sorted({r.window for r in results}, key=lambda w: math.inf if w is None else w)
    dists = sorted({r.distance_tokens for r in results})
    z = np.full((len(windows), len(dists)), np.nan)
    for r in results:
        z[windows.index(r.window), dists.index(r.distance_tokens)] = 100 * r.accuracy
    ylab = ["full" if w is None else f"W = {w}" for w in windows]
    # What a window must span is the gap from the code to the position that predicts the answer:
    # D filler tokens plus the rest of the fact and the question, so each column names that gap too.
    gaps = {d: sorted({t.gap_tokens for r in results if r.distance_tokens == d for t in r.trials}) for d in dists}
    xlab = [f"D = {d}<br>gap {g[0]}" + (f"–{g[-1]}" if g[-1] != g[0] else "") for d, g in gaps.items()]
    fig = go.Figure(go.Heatmap(z=z, x=xlab, y=ylab, zmin=0, zmax=100,
                               colorscale=[[0, "#fff5eb"], [1, "#08519c"]], colorbar=dict(title="% correct"),
                               text=[[f"{v:.0f}%" for v in row] for row in z], texttemplate="%{text}",
                               hovertemplate="%{y}, %{x}: %{z:.0f}% correct<extra></extra>"))
    fig.update_xaxes(title="filler tokens D between the fact and the question; gap = tokens from the code to the answer",
                     type="category")
    fig.update_yaxes(title="mask", type="category")
    fig.update_layout(title=dict(text="Retrieval: can the model copy a code stated before D tokens of filler?", x=0),
                      height=120 + 60 * len(windows), margin=dict(t=60))
    return fig


def influence_figure(influence: np.ndarray, reach: np.ndarray, token: int, label: str) -> go.Figure:
    """Gradient norm of one token's loss per input position, with the mask's receptive field shaded."""
    n = len(influence)
    x = np.arange(n)
    peak = float(influence.max()) or 1.0
    y = influence / peak
    fig = go.Figure()
    fig.add_bar(x=x, y=np.where(reach, 1.0, 0.0), name="allowed by the mask (reach through 30 layers)",
                marker=dict(color="#009E73", opacity=0.18, line=dict(width=0)), hoverinfo="skip")
    fig.add_scatter(x=x, y=np.maximum(y, 1e-12), mode="lines", name="influence (|∂ loss / ∂ embedding|, relative)",
                    line=dict(color="#0072B2", width=2), hovertemplate="position %{x}: %{y:.3g}<extra></extra>")
    fig.add_scatter(x=[token, token], y=[1e-6, 1], mode="lines", name=f"predicted token {token}",
                    line=dict(color=MASKED_COLOR, dash="dot"))
    fig.update_yaxes(type="log", range=[-6, 0.1], title="relative influence", exponentformat="power")  # not 0.001 beside 100µ
    fig.update_xaxes(title="input position", range=[-1, n])
    fig.update_layout(title=dict(text=html.escape(f"What the loss of token {token} depends on — {label}"), x=0), height=420,
                      template="plotly_white", bargap=0, legend=dict(orientation="h", y=-0.2))
    return fig
