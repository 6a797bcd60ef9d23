"""Plotly figures of masks. No Streamlit here: pages, the CLI and notebooks share these.

Up to GRID_MAX_N tokens the mask is drawn cell by cell; beyond, as the exact tile
overview. Arrays go to the browser as float32/int8 (plotly encodes numpy arrays as
base64), so a 512 x 512 overview stays near 1.4 MB of JSON.
"""

from __future__ import annotations

import html
import re

import numpy as np
import plotly.graph_objects as go

from .limits import GRID_MAX_N  # noqa: F401  (re-exported)
from .masks import MaskRule, and_masks, not_mask
from .render import BLOCK_KIND_NAMES, BlockKinds, TileOverview, block_kinds, tile_overview

OVERVIEW_TILES = 512

ALLOWED = "#1f4e79"
MASKED = "#eef1f5"
# White only for exactly 0, then a clearly visible pale blue: one global token in a
# 256-wide tile (1/256 of its pairs) must not vanish.
FRACTION_SCALE = [[0.0, "#ffffff"], [1e-9, "#b3d4f0"], [0.25, "#5b9bd5"], [1.0, "#08306b"]]
# Difference: only A (orange), both/neither (light), only B (purple). Colour-blind safe pair.
# As with FRACTION_SCALE, any non-zero share jumps to a visible tint.
DIFF_SCALE = [
    [0.0, "#3f007d"],
    [0.5 - 1e-9, "#cbb8e0"],
    [0.5, "#ffffff"],
    [0.5 + 1e-9, "#fdc79b"],
    [1.0, "#b33c00"],
]


def three_bands(low: str, mid: str, high: str) -> list:
    """A colour scale of three flat bands: a pair-exact difference is only −1, 0 or +1, so its colour bar
    shows three swatches, not a gradient no cell has (drawn over [-1.5, 1.5]: each value mid-band)."""
    return [[0.0, low], [1 / 3, low], [1 / 3, mid], [2 / 3, mid], [2 / 3, high], [1.0, high]]


DIFF_EXACT = three_bands(DIFF_SCALE[0][1], DIFF_SCALE[2][1], DIFF_SCALE[-1][1])


# Token labels for small grids: 69 words, so that up to N = 64 no label comes round again.
SAMPLE_TEXT = (
    "Attention lets each word look back at the words before it. A mask decides which of those words it may use: "
    "a sliding window keeps only the nearest few, a global token sees the whole text, and a chunk stays inside its "
    "own block. Stacked layers pass on what they gathered, so even a short window reaches far back once enough "
    "layers are stacked on top of each other."
)


def token_labels(text: str, n: int) -> list[str]:
    """Label n positions with the words of a sample text (punctuation at their ends dropped),
    cycling when it is short."""
    words = [w.strip(".,:;!?") or w for w in text.split()] or ["tok"]
    return [words[i % len(words)] for i in range(n)]


def wrap_label(text: str, width: int = 56) -> str:
    """Break a long rule label at ', ' so figure titles fit half-width columns. Plotly reads titles
    as HTML, so a custom rule's < and > are written as entities (it shows them as typed)."""
    lines, line = [], ""
    for part in html.escape(text, quote=False).split(", "):
        candidate = f"{line}, {part}" if line else part
        if line and len(candidate) > width:
            lines.append(line + ",")
            line = part
        else:
            line = candidate
    return "<br>".join(lines + [line])


def _square_layout(fig: go.Figure, title: str, n: int, height: int = 640) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.0, xref="paper", y=1.0, yref="container", yanchor="top", pad=dict(t=14), font=dict(size=14)),
        height=height,
        margin=dict(l=10, r=10, t=150, b=10),
        plot_bgcolor="white",
        meta=dict(positions=n),  # how far the axes count, for square_overheads_px
    )
    fig.update_xaxes(title_text="key position k (attended to)", side="top", constrain="domain", showgrid=False)
    fig.update_yaxes(
        title_text="query position q (attending)",
        autorange="reversed",
        scaleanchor="x",
        constrain="domain",
        constraintoward="top",  # a square narrower than tall sits under its title, not mid-figure
        showgrid=False,
    )
    # The square hangs from the top of its area (constraintoward="top"): a colour bar hangs there too,
    # so that in a half-width column it stays beside the square instead of running on below it.
    fig.update_traces(colorbar=dict(y=1, yanchor="top", len=0.6), selector=dict(type="heatmap"))
    return fig


# Slide resolution of a figure's download: 1920 × 1080 pixels (a square matrix: 1080 tall, as wide as shown).
SLIDE_PX = (1920, 1080)


def word_ticks(labels: list[str], n: int, most: int = 32) -> tuple[list[int], list[str]]:
    """Tick positions and texts for token labels: at most `most` (every 2nd word from 33 tokens), since
    64 rotated words run into each other at half a laptop's width. Position and word: a word may come
    twice ("the"), a position never."""
    ticks = list(range(0, n, -(-n // most)))
    return ticks, [f"{i} {labels[i]}" for i in ticks]


# The narrowest a figure is drawn, in px: in a half-width column, a 1,024-pixel window with the sidebar
# open (260); across the page, a phone (330). Presenter view folds the sidebar away: 440 and 900 there.
NARROWEST_PX = {(False, False): 260, (False, True): 330, (True, False): 440, (True, True): 900}
# Plotly's toolbar, shown while the pointer is on a figure, across its top right: five 28-px buttons
# (camera, zoom, pan, reset, and Streamlit's full screen; ui.PLOT_CONFIG_BASE removes the rest).
MODEBAR_PX = 5 * 28 + 10
COLUMN_GAP_PX = 16  # between st.columns at their default gap ("small": 1rem)
CONTAINER_PAD_PX = 34  # a bordered container's or an expander's padding and border, both sides (Home's example)
COLUMNS_STACK_BELOW_PX = 640  # a window narrower than this stacks st.columns, each as wide as the page


def column_px(main_px: int | None, window_px: int | None, wide: bool, present: bool = False) -> int:
    """The width a figure is drawn at, at most, in px, given the page's main column (`main_px`) and the
    window as the browser measured them: the whole column when `wide` or when the window stacks columns,
    else half of it less the gap; less a container's padding in either case (a figure may sit in one:
    Home's example, an expander), so that a title wrapped to it fits. Unmeasured (None): the narrowest
    it could be drawn, NARROWEST_PX."""
    if not main_px:
        return NARROWEST_PX[present, wide]
    inner = int(main_px) - CONTAINER_PAD_PX
    if wide or (window_px is not None and window_px < COLUMNS_STACK_BELOW_PX):
        return max(inner, 1)
    return max((inner - COLUMN_GAP_PX) // 2, 1)


_TAG = re.compile(r"(<[^>]*>|&[#\w]+;)")
_CHAR_EM = 0.48  # an average character of Plotly's Open Sans is 0.43-0.45 em wide (measured in Chromium), plus slack
_LINE_SPACING = 1.3  # plotly.js's line height for multi-line text, in ems


def _wrap_line(line: str, chars: int, first_chars: int | None = None) -> list[str]:
    """Break one line of Plotly's pseudo-HTML at spaces into lines of at most `chars` visible
    characters (the first at most `first_chars`, when given). Tags count nothing and entities one; a
    tag open at a break (<sup>) is closed before the <br> and opened again after it, since Plotly does
    not carry styles across lines."""
    words, word, width = [], [], 0  # word: its pieces (text, tags, entities); width: its visible characters
    for piece in _TAG.split(line):
        if not piece:
            continue
        if piece.startswith("<"):
            word.append(piece)
            continue
        if piece.startswith("&"):
            word.append(piece)
            width += 1
            continue
        for i, part in enumerate(piece.split(" ")):
            if i:
                words.append(("".join(word), width))
                word, width = [], 0
            word.append(part)
            width += len(part)
    words.append(("".join(word), width))
    out, current, used = [], "", -1
    for text, width in words:
        if current and used + 1 + width > (chars if out or first_chars is None else first_chars):
            out.append(current)
            current, used = text, width
        else:
            current, used = (f"{current} {text}" if used >= 0 else text), used + 1 + width
    out.append(current)
    # Close and reopen the tags a break splits.
    fixed, carry = [], []
    for text in out:
        text = "".join(carry) + text
        stack = []  # (name, the opening tag as written) of the tags still open at the line's end
        for tag in re.finditer(r"<(/?)(\w+)[^>]*>", text):
            closing, name = tag.group(1), tag.group(2).lower()
            if closing and stack and stack[-1][0] == name:
                stack.pop()
            elif not closing:
                stack.append((name, tag.group(0)))
        carry = [opening for _, opening in stack]
        fixed.append(text + "".join(f"</{name}>" for name, _ in reversed(stack)))
    return fixed


def fit_title(fig: go.Figure, width_px: int = NARROWEST_PX[False, False], copy: bool = False) -> go.Figure:
    """Wrap a figure's title at spaces so that each line fits a figure `width_px` wide (Plotly clips
    a long title instead of wrapping it; ui.column_px says how wide the browser draws it). The
    margin above the plot and the figure's height grow by the lines added, so the plot keeps its size.
    Returns fig itself when its title fits; else fig changed in place, or with `copy` a changed copy
    (a cached figure stays as it was; through a dict, 7× faster than go.Figure(fig) for a 512² matrix)."""
    title = fig.layout.title
    if not title.text:
        return fig
    size = title.font.size or (fig.layout.font.size or 12) * 1.4  # plotly.js: a title is 1.4× the font
    margin = fig.layout.margin
    # A title placed on the plot area (xref="paper") starts after the left margin, which the y axis's
    # tick labels and title widen beyond what is set (automargin): at least 72 px at 12 px type.
    # A chart's ticks may be longer than a matrix's positions ("1.5M", "100%"): 72 px at least.
    left = max(_left_margin_px(fig), 6 * (fig.layout.font.size or 12)) if title.xref != "container" else 0
    room_px = max(width_px - left, 80)
    given = re.split(r"<br\s*/?>", title.text, flags=re.I)
    lines = []
    for i, line in enumerate(given):
        small = re.match(r"\s*<su[bp]>", line, flags=re.I) is not None  # sub/superscript: 70% type
        em_px = _CHAR_EM * size * (0.7 if small else 1.0)
        wrapped = _wrap_line(line, int(room_px / em_px))
        # The first line shares its row with the toolbar a pointer on the figure brings up (MODEBAR_PX):
        # it ends before it where that costs no extra line (the words only move down) and leaves it half
        # the room or more. Otherwise the toolbar may cover its end while the pointer is there.
        if i == 0 and len(wrapped) > 1 and room_px - MODEBAR_PX >= room_px / 2:
            clear = _wrap_line(line, int(room_px / em_px), int((room_px - MODEBAR_PX) / em_px))
            wrapped = clear if len(clear) == len(wrapped) else wrapped
        lines += wrapped
    added = len(lines) - len(given)
    if not added:
        return fig
    if copy:
        fig = go.Figure(fig.to_dict())
        title = fig.layout.title
    top_px = 100 if margin.t is None else margin.t
    title.text = "<br>".join(lines)
    grow = int(round(added * _LINE_SPACING * size))
    if not (title.yref == "container" and title.yanchor == "top"):
        # Plotly centres an unanchored title on the top margin, so added lines would run down
        # into the plot: hang it from the top instead, where its first line was, and let it grow down.
        title.update(y=1, yref="container", yanchor="top", pad=dict(t=int(_LINE_SPACING * size)))
    pad_px = title.pad.t or 0
    fig.update_layout(margin=dict(t=max(top_px + grow, int(pad_px + len(lines) * _LINE_SPACING * size))))
    if fig.layout.height:
        fig.update_layout(height=fig.layout.height + grow)
    return fig


def align_tops(figs: list[go.Figure]) -> list[go.Figure]:
    """Figures shown side by side with the same top margin (the largest), each taller by what it gains,
    so that plots under titles of different lengths start level. A figure it changes is a copy (it may
    be a cached one); the others come back as they are."""
    tops = [100 if f.layout.margin.t is None else f.layout.margin.t for f in figs]
    top = max(tops)
    out = []
    for fig, own in zip(figs, tops):
        if own < top:
            fig = go.Figure(fig.to_dict())
            fig.update_layout(margin=dict(t=top), height=fig.layout.height and fig.layout.height + top - own)
        out.append(fig)
    return out


def plot_aspect(fig: go.Figure) -> float | None:
    """The plot area's height over its width where Plotly holds it fixed: 1 for a square matrix (y axis
    anchored to x), a picture's own for an image (layout meta "aspect"); None for a chart that fills
    whatever box it is given, or a figure without a set height."""
    if not fig.layout.height:
        return None
    meta = fig.layout.meta or {}
    if "aspect" in meta:
        return float(meta["aspect"])
    return 1.0 if fig.layout.yaxis.scaleanchor == "x" else None


def _left_margin_px(fig: go.Figure) -> int:
    """The left margin as Plotly's automargin widens it to the y axis's title and tick labels: at 0.6 em
    a tick character (digits are 0.57 em) plus 58 px for the title and gaps at 12 px type (measured),
    half that without a title."""
    m, y = fig.layout.margin, fig.layout.yaxis
    tick_font = y.tickfont.size or fig.layout.font.size or 12
    if y.ticktext:
        tick_chars = max(len(str(t)) for t in y.ticktext)
    else:  # automatic ticks run to n - 1; d3 writes 10,000 and up with SI prefixes ("131k")
        tick_chars = min(len(str((fig.layout.meta or {}).get("positions", 100) - 1)), 4)
    gaps = 4.8 if y.title.text else 2.4  # the axis title's line and its gap: half of the 58 px
    return max(80 if m.l is None else m.l, round(gaps * tick_font + 0.6 * tick_font * tick_chars))


def square_overheads_px(fig: go.Figure) -> tuple[int, int]:
    """A square matrix's figure less its square, in px: (across, down). Across is the left margin, which
    Plotly's automargin widens to the y axis's title and tick labels, plus the right one with any colour
    bar; down is the top margin (title, x axis) plus the bottom one. So a figure `w` px wide needs
    `w - across + down` px of height, no more (`plot_aspect × (w - across) + down` for a picture that
    is not square): see box_fit. Estimated as Plotly lays out, at 0.6 em per tick character."""
    m, font = fig.layout.margin, fig.layout.font.size or 12
    left = _left_margin_px(fig)
    right = 80 if m.r is None else m.r
    x = fig.layout.xaxis
    if x.ticktext and x.tickangle:  # slanted words along the top: the last one runs past the right edge
        slant = abs(np.cos(np.radians(x.tickangle)))
        right = max(right, round(slant * 0.6 * (x.tickfont.size or font) * max(len(str(t)) for t in x.ticktext)))
    down = (100 if m.t is None else m.t) + (80 if m.b is None else m.b)
    for bar in (t.colorbar for t in fig.data if t.type == "heatmap" and t.showscale is not False):
        if bar.orientation == "h":  # under the square (colorbar_below): the bar, its ticks, its title
            down += round(bar.thickness + 2 * 1.3 * font + 24)
        else:  # beside it: a 30 px bar, its ticks and title (82-84 px at 12 px type)
            right += round(7 * font)
    return left + right, down


def box_fit(fig: go.Figure) -> tuple[float, int] | None:
    """(aspect, extra_px) such that a figure of fixed shape (plot_aspect) drawn `w` px wide needs
    `aspect × w + extra_px` px of height (at most its set height), or None for one that fills any box.
    The page sizes its box by this in CSS (ui.plot), since only the browser knows `w`, and the
    download is scaled by it (slide_image_options)."""
    aspect = plot_aspect(fig)
    if aspect is None:
        return None
    across, down = square_overheads_px(fig)
    return aspect, round(down - aspect * across)


def colorbar_below(fig: go.Figure, copy: bool = False) -> go.Figure:
    """A square matrix's colour bar moved from beside the square to under it, as a thin bar across: in
    a half-width column, a bar beside took a third of the width (a 4,096-token overview at 1,024 px was
    drawn 88 px wide). The title goes on one line above the bar. Returns fig itself when it has no
    bar beside a square; else fig changed, or with `copy` a changed copy."""
    bars = [i for i, t in enumerate(fig.data) if t.type == "heatmap" and t.showscale is not False
            and t.colorbar.orientation != "h"]
    if fig.layout.yaxis.scaleanchor != "x" or not bars:
        return fig
    if copy:
        fig = go.Figure(fig.to_dict())
    for i in bars:
        bar = fig.data[i].colorbar
        title = re.sub(r"<br\s*/?>", " ", bar.title.text or "")
        bar.update(orientation="h", x=0, xanchor="left", y=-0.03, yanchor="top", len=1, thickness=12,
                   title=dict(text=title, side="top"))
    return fig


def slide_image_options(fig: go.Figure, slide_px: tuple[int, int] = SLIDE_PX, narrowest_px: int | None = None) -> dict:
    """Size options of a figure's camera download (Plotly's toImageButtonOptions).

    A wide figure is laid out at half the slide and drawn at 2×: slide_px pixels whose text is twice
    the size it would have in a full-size layout, so it reads on a projected slide. A square matrix
    downloads as it is shown, scaled up: Plotly writes the square's on-screen domain into the layout
    and a download starts from it (plotly.js #1767), so at any other size the square only shrinks (to
    59% of its side, from the Mask Explorer in a 2,400-pixel-wide window). Its box is as tall as its
    column's width needs (ui.plot), down to what a figure `narrowest_px` wide needs: scaled so that
    even that one comes at the slide's height, any square downloads at least that tall."""
    width, height = slide_px
    fit = box_fit(fig)
    if fit is not None:
        aspect, extra_px = fit
        shortest = fig.layout.height if not narrowest_px else min(fig.layout.height, aspect * narrowest_px + extra_px)
        return {"scale": height / shortest}
    return {"width": width // 2, "height": height // 2, "scale": 2}


def grid_figure(rule: MaskRule, n: int, labels: list[str] | None = None, title: str | None = None) -> go.Figure:
    """Cell-by-cell mask for small n; hover says 'query i → key j: allowed / masked'."""
    if n > GRID_MAX_N:
        raise ValueError(f"The cell grid is for N <= {GRID_MAX_N}; use the tile overview for N = {n}.")
    allowed = rule.dense(n).numpy()
    names = [f"{i}" if labels is None else f"{i} '{labels[i]}'" for i in range(n)]
    hover = np.array(
        [[f"query {names[i]} → key {names[j]}: {'allowed' if allowed[i, j] else 'masked'}" for j in range(n)] for i in range(n)]
    )
    gap = 1 if n <= 64 else 0.5
    fig = go.Figure(
        go.Heatmap(
            z=allowed.astype(np.int8),
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=[[0, MASKED], [1, ALLOWED]],
            zmin=0,
            zmax=1,
            showscale=False,
            xgap=gap,
            ygap=gap,
        )
    )
    _square_layout(fig, title or f"{wrap_label(rule.label)}<br>N = {n} · cell = one (query, key) pair", n)
    if labels is not None:
        ticks, text = word_ticks(labels, n)
        for axis in (fig.layout.xaxis, fig.layout.yaxis):
            axis.update(tickmode="array", tickvals=ticks, ticktext=text, tickfont=dict(size=9))
        fig.update_xaxes(tickangle=-60)
    return fig


def overview_figure(ov: TileOverview, title: str | None = None) -> go.Figure:
    """Exact tile overview: each cell = fraction of allowed pairs in its tile."""
    size = ov.tile_size
    centres = (ov.edges[:-1] + ov.edges[1:] - 1) / 2
    if size == 1:
        hover = "query %{y:.0f} → key %{x:.0f}: %{z:.0%} allowed<extra></extra>"
    else:
        hover = (
            f"tile of {size}×{size} tokens around query %{{y:,.0f}}, key %{{x:,.0f}}<br>"
            "allowed: %{z:.4%} of its pairs<extra></extra>"
        )
    fig = go.Figure(
        go.Heatmap(
            x=centres.astype(np.float32),
            y=centres.astype(np.float32),
            z=ov.fractions.astype(np.float32),
            colorscale=FRACTION_SCALE,
            zmin=0,
            zmax=1,
            hovertemplate=hover,
            colorbar=dict(title=dict(text="allowed<br>share of<br>tile", side="top"), tickformat=".0%"),
        )
    )
    # Three short lines rather than two long ones: a half-width (compare) figure clips, it does not wrap.
    what = "cell = one (query, key) pair" if size == 1 else f"cell = {size}×{size} tokens<br>colour = exact share allowed"
    return _square_layout(fig, title or f"{wrap_label(ov.rule_label)}<br>N = {ov.n:,} · {what}", ov.n)


def mask_figure(rule: MaskRule, n: int, labels: list[str] | None = None, tiles: int = OVERVIEW_TILES) -> go.Figure:
    """The right view for the size: a cell grid up to GRID_MAX_N tokens, else the exact tile overview."""
    if n <= GRID_MAX_N:
        return grid_figure(rule, n, labels)
    return overview_figure(tile_overview(rule, n, tiles))


# Block sizes the block view offers: FlexAttention's default is 128 (the CPU kernel here uses 64).
BLOCK_SIZES = (16, 32, 64, 128, 256, 512, 1024)
# Skipped blocks white, partial ones a light blue, full ones the mask's own dark blue.
BLOCK_SCALE = three_bands("#ffffff", "#8fbce6", ALLOWED)


def block_view_problem(n: int, block: int, most: int = OVERVIEW_TILES) -> str | None:
    """Why the block view cannot draw N tokens in blocks of `block` (more than `most` blocks a side,
    as many cells as the tile overview), naming the smallest block size that can; None if it can."""
    t = -(-n // block)
    if t <= most:
        return None
    fits = next((b for b in BLOCK_SIZES if -(-n // b) <= most), None)
    return (f"N = {n:,} in blocks of {block} tokens is {t:,} × {t:,} blocks; the block view draws at most "
            f"{most} × {most}" + (f": choose blocks of {fits} tokens or more." if fits else "."))


def block_kinds_figure(rule: MaskRule, n: int, block: int, title: str | None = None) -> go.Figure:
    """The mask as a block-sparse kernel runs it (FlexAttention's BlockMask): each cell one block × block
    tile, full (computed without mask_mod), partial (computed and masked pair by pair) or skipped.
    Refused (ValueError) before anything is counted when N makes too many blocks."""
    problem = block_view_problem(n, block)
    if problem:
        raise ValueError(problem)
    return kinds_figure(block_kinds(rule, n, block), title)


def kinds_figure(bk: BlockKinds, title: str | None = None) -> go.Figure:
    """block_kinds_figure from blocks already sorted (render.block_kinds). Cells sit at their tokens'
    positions, so a last block cut short by N is drawn short."""
    problem = block_view_problem(bk.n, bk.block)
    if problem:
        raise ValueError(problem)
    block = bk.block
    edges = (bk.edges - 0.5).astype(np.float32)  # token q spans q - 0.5 .. q + 0.5, as in the pair grid
    gap = 1 if bk.kinds.shape[0] <= 64 else 0
    fig = go.Figure(
        go.Heatmap(
            x=edges,
            y=edges,
            z=bk.kinds,
            customdata=bk.counts.astype(np.int32),
            colorscale=BLOCK_SCALE,
            zmin=-0.5,
            zmax=2.5,
            xgap=gap,
            ygap=gap,
            meta="blocks",  # presenter_style gives these three kinds their own colours
            # x and y in a hover are the block's centre; a last block cut short by N is smaller than block².
            hovertemplate="block around query %{y:,.0f}, key %{x:,.0f}<br>%{customdata:,} pairs allowed in it<extra></extra>",
            colorbar=dict(title=dict(text="block", side="top"), tickvals=[0, 1, 2], ticktext=list(BLOCK_KIND_NAMES)),
        )
    )
    counts = ", ".join(f"{bk.total(k):,} {name}" for k, name in reversed(list(enumerate(BLOCK_KIND_NAMES))))
    return _square_layout(fig, title or f"{wrap_label(bk.rule_label)}<br>N = {bk.n:,} · {block}×{block} blocks: {counts}",
                          bk.n)


def block_size_figure(sweep: list[tuple[int, int, int]], chosen: int | None = None, title: str | None = None) -> go.Figure:
    """Pairs computed ÷ pairs allowed against the block size (render.block_size_sweep): 1 is no wasted work."""
    blocks = [b for b, _, _ in sweep]
    ratio = [c / max(a, 1) for _, c, a in sweep]
    hover = [f"blocks of {b}: {c:,} pairs computed for {a:,} allowed ({c / max(a, 1):.2f}×)" for b, c, a in sweep]
    fig = go.Figure(go.Scatter(x=blocks, y=ratio, mode="lines+markers", name="pairs computed ÷ allowed", text=hover,
                               hovertemplate="%{text}<extra></extra>", line=dict(color=ALLOWED, width=3)))
    if chosen in blocks:
        i = blocks.index(chosen)
        fig.add_scatter(x=[chosen], y=[ratio[i]], mode="markers", name=f"blocks of {chosen} (shown above)",
                        marker=dict(size=14, color="#e66101"), hovertemplate=hover[i] + "<extra></extra>")
    # In the legend, not as a note on the line: a window's curve runs just above 1, where a note would sit.
    fig.add_scatter(x=[blocks[0], blocks[-1]] if blocks else [], y=[1, 1], mode="lines", hoverinfo="skip",
                    name="1: only the allowed pairs", line=dict(color="#888", dash="dot", width=1.5))
    fig.update_layout(title=dict(text=title or "Work a block-sparse kernel does, by block size", x=0, xanchor="left"),
                      height=340, margin=dict(l=60, r=20, t=50, b=40), template="plotly_white",
                      legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    fig.update_xaxes(type="log", tickvals=blocks, ticktext=[str(b) for b in blocks], title="block size (tokens)")
    fig.update_yaxes(title="pairs computed ÷ allowed", rangemode="tozero")
    return fig


def block_difference_figure(a: MaskRule, b: MaskRule, n: int, block: int) -> go.Figure:
    """The blocks a block-sparse kernel computes for one rule and skips for the other: +1 only A, -1 only B,
    0 both or neither (full and partial both count as computed: each costs a whole block)."""
    problem = block_view_problem(n, block)
    if problem:
        raise ValueError(problem)
    return kinds_difference_figure(block_kinds(a, n, block), block_kinds(b, n, block))


def kinds_difference_figure(ka: BlockKinds, kb: BlockKinds) -> go.Figure:
    """block_difference_figure from both rules' blocks already sorted (same N and block size)."""
    if (ka.n, ka.block) != (kb.n, kb.block):
        raise ValueError(f"Both masks must be cut alike: N = {ka.n:,} in {ka.block}-token blocks vs "
                         f"N = {kb.n:,} in {kb.block}-token blocks.")
    z = (ka.kinds > 0).astype(np.int8) - (kb.kinds > 0).astype(np.int8)
    edges = (ka.edges - 0.5).astype(np.float32)
    gap = 1 if z.shape[0] <= 64 else 0
    fig = go.Figure(
        go.Heatmap(
            x=edges, y=edges, z=z, colorscale=DIFF_EXACT, zmin=-1.5, zmax=1.5, xgap=gap, ygap=gap,  # values mid-band
            hovertemplate="block around query %{y:,.0f}, key %{x:,.0f}<br>"
                          "%{z:+d}: 1 only A computes it, −1 only B, 0 both or neither<extra></extra>",
            colorbar=dict(title=dict(text="computed<br>for", side="top"), tickvals=[-1, 0, 1],
                          ticktext=["only B", "both / neither", "only A"]),
        )
    )
    only_a, only_b = int((z > 0).sum()), int((z < 0).sum())
    title = f"Blocks computed, A − B<br>{ka.block}×{ka.block} blocks: {only_a:,} only for A, {only_b:,} only for B"
    return _square_layout(fig, title, ka.n)


def difference_counts(a: MaskRule, b: MaskRule, n: int, tiles: int = OVERVIEW_TILES) -> tuple[TileOverview, TileOverview]:
    """Exact tile counts of the pairs only A allows and of those only B allows."""
    return tile_overview(and_masks(a, not_mask(b)), n, tiles), tile_overview(and_masks(b, not_mask(a)), n, tiles)


def difference_figure(a: MaskRule, b: MaskRule, n: int, tiles: int = OVERVIEW_TILES) -> go.Figure:
    """+1 where only A allows, -1 where only B allows (per tile: share of only-A minus share of only-B)."""
    only_a, only_b = difference_counts(a, b, n, tiles)
    z = (only_a.fractions - only_b.fractions).astype(np.float32)
    size = only_a.tile_size
    centres = (only_a.edges[:-1] + only_a.edges[1:] - 1) / 2
    where = "query %{y:.0f} → key %{x:.0f}" if size == 1 else f"tile of {size}×{size} around query %{{y:,.0f}}, key %{{x:,.0f}}"
    fig = go.Figure(
        go.Heatmap(
            x=centres.astype(np.float32),
            y=centres.astype(np.float32),
            z=z,
            colorscale=DIFF_EXACT if size == 1 else DIFF_SCALE,  # tiles hold shares: a gradient
            # Exact: −1, 0 and 1 sit mid-band, each label under its swatch (at the bar's ends, Plotly hid
            # the end labels of presenter view's larger type).
            zmin=-1.5 if size == 1 else -1,
            zmax=1.5 if size == 1 else 1,
            xgap=1 if n <= 64 else 0,
            ygap=1 if n <= 64 else 0,
            hovertemplate=where + "<br>only A minus only B: %{z:+.2%}<extra></extra>",
            colorbar=dict(
                title=dict(text="only A (+) /<br>only B (−)", side="top"),
                tickvals=[-1, 0, 1],
                ticktext=["only B", "same", "only A"],
            ),
        )
    )
    title = f"Difference A − B<br>{only_a.counts.sum():,} pairs only in A, {only_b.counts.sum():,} only in B"
    return _square_layout(fig, title, n)


def row_counts_figure(counts: np.ndarray, title: str = "Keys each query may attend to") -> go.Figure:
    """Keys per query along the sequence (max over buckets of at most 2048 queries, so no row is hidden)."""
    n = len(counts)
    bucket = -(-n // 2048)
    edges = np.arange(0, n, bucket)
    top = np.maximum.reduceat(counts, edges)
    low = np.minimum.reduceat(counts, edges)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=edges, y=top, mode="lines", name="max in bucket" if bucket > 1 else "keys", line=dict(color=ALLOWED)))
    if bucket > 1:
        fig.add_trace(go.Scatter(x=edges, y=low, mode="lines", name="min in bucket", line=dict(color="#e66101")))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="query position q", yaxis_title="keys")
    return fig


# ---------------------------------------------------------- receptive field ---
REACH = "#1b7837"


def reach_growth_figure(counts: list[int], token: int, analytic: list[int] | None = None, full_layer: int | None = None,
                        context: int | None = None):
    """Tokens reachable vs layer, with the whole context and the analytic line if any.
    context: positions the token could draw on at all (token + 1 under a causal mask, the default;
    all N under a bidirectional one)."""
    context = token + 1 if context is None else context
    layers = list(range(1, len(counts) + 1))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=layers, y=counts, mode="lines+markers", name="reach (computed)", line=dict(color=REACH, width=3))
    )
    if analytic is not None:
        fig.add_trace(
            go.Scatter(x=layers, y=analytic, mode="lines", name="min(q+1, l·(W−1)+1)", line=dict(color="#e66101", dash="dash"))
        )
    fig.add_hline(y=context, line=dict(color="#888", dash="dot"), annotation_text=f"whole context: {context:,} tokens")
    if full_layer is not None:
        # At the foot of its line: at the top it would sit on the whole-context label when both are at the right.
        fig.add_vline(x=full_layer, line=dict(color=REACH, dash="dot"), annotation_text=f"layer {full_layer}",
                      annotation_position="bottom right")
    fig.update_layout(
        title=f"Tokens that can influence token {token:,}, after each layer",
        xaxis_title="layers",
        yaxis_title="tokens reachable",
        height=380,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", y=-0.2),
        hovermode="x unified",
    )
    fig.update_xaxes(dtick=_layer_dtick(len(counts)))
    # From 0 to past the whole context: a flat line (reach full from layer 1) would otherwise get
    # Plotly's fractional ticks (255.5 tokens), and every reach reads against the whole.
    fig.update_yaxes(range=[0, context * 1.08], tickformat=",d")
    return fig


def _layer_dtick(layers: int) -> int | None:
    """Layers are whole numbers: a tick per layer for a short stack (Plotly's own ticks read 1, 1.2, 1.4 …)."""
    return 1 if layers <= 16 else None


def reach_map_figure(sets: np.ndarray, token: int, labels: list[str] | None = None, bins: int = 1024):
    """Layers (rows, 1 at the top) × input positions: which inputs are within reach.

    sets: bool (L, n). Above `bins` positions, each cell is the exact share of its bin in reach.
    """
    layers, n = sets.shape
    size = -(-n // min(n, bins))
    edges = np.arange(0, n, size)
    z = np.add.reduceat(sets.astype(np.float32), edges, axis=1) / np.diff(np.append(edges, n))
    x = (edges + np.minimum(edges + size, n) - 1) / 2
    where = "input %{x:.0f}" if size == 1 else f"inputs around %{{x:,.0f}} (bin of {size})"
    fig = go.Figure(
        go.Heatmap(
            x=x.astype(np.float32),
            y=np.arange(1, layers + 1),
            z=z,
            colorscale=[[0, "#ffffff"], [1e-9, "#c7e9c0"], [1, REACH]],
            zmin=0,
            zmax=1,
            showscale=size > 1,
            colorbar=dict(title=dict(text="share of<br>bin in<br>reach", side="top"), tickformat=".0%"),
            xgap=1 if n <= 64 else 0,
            ygap=1 if layers <= 32 else 0,
            hovertemplate=f"after layer %{{y}}: {where} " + ("%{z:.0%} in reach" if size > 1 else "%{z:.0f} (1 = in reach)")
            + "<extra></extra>",
        )
    )
    fig.add_vline(x=token, line=dict(color="#e66101", width=2))
    fig.update_layout(
        title=f"Receptive field of token {token:,}, layer by layer (the line marks the token)",
        height=min(700, 160 + 14 * layers),
        margin=dict(l=10, r=10, t=50, b=10),
        plot_bgcolor="white",
    )
    fig.update_yaxes(title_text="after layer", autorange="reversed", dtick=_layer_dtick(layers))
    fig.update_xaxes(title_text="input position")
    if labels is not None and n <= 64:
        ticks, text = word_ticks(labels, n)
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=text, tickangle=-60, tickfont=dict(size=9))
    return fig


def bool_matrix_figure(matrix: np.ndarray, title: str, yes: str, no: str, color: str = REACH):
    """A small boolean matrix, cell by cell, with words on hover (e.g. a reach matrix)."""
    n = matrix.shape[0]
    words = np.where(matrix, yes, no)
    hover = np.char.add(np.char.add(np.char.add("output ", np.arange(n).astype(str)[:, None]), " ← input "), np.arange(n).astype(str)[None, :])
    fig = go.Figure(
        go.Heatmap(
            z=matrix.astype(np.int8),
            customdata=np.char.add(np.char.add(hover, ": "), words),
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=[[0, MASKED], [1, color]],
            zmin=0,
            zmax=1,
            showscale=False,
            xgap=1 if n <= 64 else 0,
            ygap=1 if n <= 64 else 0,
        )
    )
    _square_layout(fig, title, n, height=520)
    fig.update_xaxes(title_text="input position (layer 0)")
    fig.update_yaxes(title_text="output position")
    return fig


# ---------------------------------------------------------------- presenter view

# Okabe–Ito: distinguishable under the common colour-vision deficiencies, strong on white.
PRESENTER_LINES = ("#0072B2", "#D55E00", "#000000", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_PRESENTER_KEEP = {"#999", "#aaaaaa", "#888", "#555555", "white", "#ffffff"}  # greys and white stay (any case)
PRESENTER_BINARY = [[0, "#ffffff"], [1, "#000000"]]
PRESENTER_FRACTION = [[0.0, "#ffffff"], [1e-9, "#E69F00"], [0.5, "#B35900"], [1.0, "#000000"]]
PRESENTER_DIFF = [[0.0, "#0072B2"], [0.5 - 1e-9, "#8CC4E6"], [0.5, "#ffffff"], [0.5 + 1e-9, "#F2B27F"],
                  [1.0, "#D55E00"]]
PRESENTER_DIFF_EXACT = three_bands("#0072B2", "#ffffff", "#D55E00")
PRESENTER_BLOCKS = three_bands("#ffffff", "#E69F00", "#000000")  # skipped, partial, full
# Attention weights (a trace marked meta="gradient"): most are small but none is zero, so the scale
# starts pale and darkens gradually; PRESENTER_FRACTION's jump to orange would paint them all alike.
PRESENTER_GRADIENT = [[0.0, "#ffffff"], [1e-6, "#fdebc8"], [0.15, "#f1b244"], [0.5, "#b35900"], [1.0, "#000000"]]


def presenter_style(fig: go.Figure) -> go.Figure:
    """A copy of fig readable from the back of a room: large type, thick lines, and a high-contrast,
    colour-blind-safe palette (binary masks black on white; shares orange→black; differences blue/vermillion)."""
    fig = go.Figure(fig)
    fig.update_layout(font=dict(size=20), title_font=dict(size=26), legend=dict(font=dict(size=18)),
                      hoverlabel=dict(font_size=18))
    fig.update_xaxes(title_font=dict(size=22), tickfont=dict(size=18))
    fig.update_yaxes(title_font=dict(size=22), tickfont=dict(size=18))
    if fig.layout.height:
        fig.update_layout(height=int(fig.layout.height * 1.25))
    # Larger type needs more room above the plot: titles of 1-3 lines and a top axis. Titles of
    # several lines (a rule's full text) get 22 px: at 26 they overflow a half-width column.
    fig.update_layout(margin=dict(t=int((fig.layout.margin.t or 80) * 1.5)))
    title = fig.layout.title
    if title.text and "<br>" in title.text:
        title.font.size = 22
    if title.yref == "container":  # anchored at the figure's top edge: keep the first line inside it
        title.pad.t = max(title.pad.t or 0, 28)
    for ann in fig.layout.annotations:
        ann.font.size = max(16, int((ann.font.size or 12) * 1.5))
    # A legend under the plot sits a share of the plot's height below it; the larger tick labels and
    # axis title take more than that share, so move it down with them (the legend widens the margin).
    legend = fig.layout.legend
    if legend.orientation == "h" and legend.y is not None and legend.y < 0:
        legend.y = legend.y * 1.6
    # One presenter colour per original colour, so a curve's dots keep matching its line.
    mapping: dict[str, str] = {}

    def recolor(c):
        if not isinstance(c, str) or c.lower() in _PRESENTER_KEEP:
            return c
        return mapping.setdefault(c, PRESENTER_LINES[len(mapping) % len(PRESENTER_LINES)])

    for trace in fig.data:
        if trace.type == "heatmap":
            scale = trace.colorscale or ()
            if trace.meta == "blocks":
                trace.colorscale = PRESENTER_BLOCKS
            elif trace.zmin is not None and trace.zmin < 0:
                banded = len(scale) == len(DIFF_EXACT)  # an exact difference keeps its three swatches
                trace.colorscale = PRESENTER_DIFF_EXACT if banded else PRESENTER_DIFF
            elif trace.meta == "gradient":
                trace.colorscale = PRESENTER_GRADIENT
            elif len(scale) == 2:
                trace.colorscale = PRESENTER_BINARY
            else:
                trace.colorscale = PRESENTER_FRACTION
        elif trace.type in ("scatter", "scattergl"):
            if trace.line is not None:
                trace.line.width = max(3, (trace.line.width or 2) * 1.6)
                trace.line.color = recolor(trace.line.color)
            if trace.marker is not None:
                c = trace.marker.color
                trace.marker.color = [recolor(x) for x in c] if isinstance(c, (list, tuple)) else recolor(c)
                if trace.marker.size is not None and not isinstance(trace.marker.size, (list, tuple)):
                    trace.marker.size = trace.marker.size * 1.5
    return fig
