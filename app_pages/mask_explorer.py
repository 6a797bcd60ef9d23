"""Mask Explorer: pick a pattern, see its mask at any length, its numbers, and compare two."""

import io

import numpy as np
import pandas as pd
import streamlit as st

import ui
from attn import figures, limits, masks, render
from attn.presets import PATTERN_INFO, rule_notes
from attn.state import parse_choice

EXPORT_MAX_N = limits.EXPORT_MAX_N
VIEWS = {"pairs": "Pairs", "blocks": "Kernel blocks"}
# Keys of their own: "block" is BigBird's parameter, "view" the Model page's (session state is shared).
DEFAULTS = {"draw": "pairs", "kernel_block": 128}  # left out of the link when unchanged
URL_KEYS = {"draw": parse_choice(VIEWS, "Draw the mask as"), "kernel_block": parse_choice(figures.BLOCK_SIZES, "Block size")}


@ui.cached("Computing the mask…")
def mask_fig(pattern, n, params, labels, tiles):
    rule = masks.build(pattern, n, **dict(params))
    if n <= figures.GRID_MAX_N:
        return figures.grid_figure(rule, n, figures.token_labels(figures.SAMPLE_TEXT, n) if labels else None)
    return figures.overview_figure(render.tile_overview(rule, n, tiles))


@ui.cached("Sorting blocks…")
def kinds(pattern, n, params, block):
    """The mask's blocks, counted once for its figure, its caption and a comparison's difference."""
    return render.block_kinds(masks.build(pattern, n, **dict(params)), n, block)


@ui.cached("Drawing blocks…")
def blocks_fig(pattern, n, params, block):
    return figures.kinds_figure(kinds(pattern, n, params, block))


@ui.cached("Counting each block size…")
def sweep_fig(pattern, n, params, block):
    rule = masks.build(pattern, n, **dict(params))
    sweep = render.block_size_sweep(rule, n, figures.BLOCK_SIZES, known=kinds(pattern, n, params, block))
    return figures.block_size_figure(sweep, block, f"Kernel work by block size, N = {n:,}")


@ui.cached("Counting pairs…")
def stats(pattern, n, params, block):
    rule = masks.build(pattern, n, **dict(params))
    # Blocks the block view can draw are counted once (cached) for it and here; a finer grid (blocks of 16
    # at N = 131,072: 8,192², 512 MiB of counts) is counted in strips instead and never held.
    drawable = figures.block_view_problem(n, block) is None
    return render.mask_stats(rule, n, block_size=block, blocks=kinds(pattern, n, params, block) if drawable else None)


def shown_fig(pattern, n, params):
    """The figure of the view chosen in the sidebar: pairs (cells or tile overview) or kernel blocks."""
    if view == "blocks":
        return blocks_fig(pattern, n, params, block)
    return mask_fig(pattern, n, params, labels, tiles)


@ui.cached("Comparing…")
def diff_fig(a, b, n, tiles, block=None):
    """Pairs only A or only B allows; with `block` (the kernel-blocks view), blocks only one computes."""
    if block:
        return figures.kinds_difference_figure(kinds(a[0], n, a[1], block), kinds(b[0], n, b[1], block))
    return figures.difference_figure(masks.build(a[0], n, **dict(a[1])), masks.build(b[0], n, **dict(b[1])), n, tiles)


def dense_bytes(pattern, n, params, fmt):
    m = render.dense_numpy(masks.build(pattern, n, **dict(params)), n)
    if fmt == "csv":
        return render.mask_csv(m)
    buf = io.BytesIO()
    np.save(buf, m)
    return buf.getvalue()


def sidebar_rule(prefix, title, default, problems: list):
    """Pattern + parameter widgets; returns (pattern, params), or None with the error shown beside them
    and added to `problems` (the main area repeats it: presenter view folds the sidebar away)."""
    pattern = ui.pattern_select(prefix, title, default)
    raw = ui.param_widgets(prefix, pattern, n)
    try:
        params = ui.rule_params(pattern, raw)
        rule = masks.build(pattern, n, **params)
    except ValueError as e:
        ui.notice(e)
        problems.append(f"{title}: {e}")
        return None
    for note in rule_notes(rule, n):
        st.info(note, icon=":material/info:")
    return pattern, ui.hashable_params(params)


def show_stats(s: render.MaskStats):
    top, bottom = st.columns(3), st.columns(3)
    top[0].metric("Allowed pairs", f"{s.allowed_pairs:,}", help="(query, key) pairs the mask lets through")
    top[1].metric("Density vs full", ui.share(s.density_vs_full), help="allowed / N²")
    top[2].metric(
        "FLOPs vs causal",
        ui.share(s.density_vs_causal),
        help="allowed / (N(N+1)/2): the share of causal attention's work (4·d FLOPs per pair)",
    )
    bottom[0].metric("Keys per query: min", f"{s.min_keys:,}", help=f"mean {s.mean_keys:,.1f}")
    bottom[1].metric("Keys per query: max", f"{s.max_keys:,}", help="the most keys any single query may attend to")
    bottom[2].metric(
        f"{s.block_size}×{s.block_size} blocks run",
        ui.share(s.blocks_touched / s.blocks_total),
        help=f"{s.blocks_touched:,} of {s.blocks_total:,} blocks hold an allowed pair: what a block-sparse kernel "
        f"(FlexAttention) computes, {s.executed_flops_blocks(64) / max(s.useful_flops(64), 1):.2f}× the useful FLOPs",
    )


def compare_table(sa: render.MaskStats, sb: render.MaskStats) -> dict:
    rows = [
        ("allowed pairs", "{:,}", lambda s: s.allowed_pairs),
        ("share of causal FLOPs", "{}", lambda s: ui.share(s.density_vs_causal)),
        ("keys per query (min)", "{:,}", lambda s: s.min_keys),
        ("keys per query (mean)", "{:,.1f}", lambda s: s.mean_keys),
        ("keys per query (max)", "{:,}", lambda s: s.max_keys),
        (f"{sa.block_size}×{sa.block_size} blocks run", "{}", lambda s: f"{s.blocks_touched:,} of {s.blocks_total:,} "
                                                                      f"({ui.share(s.blocks_touched / s.blocks_total)})"),
    ]
    return {
        "measure": [r[0] for r in rows],
        "A": [fmt.format(get(sa)) for _, fmt, get in rows],
        "B": [fmt.format(get(sb)) for _, fmt, get in rows],
    }


def explain(pattern):
    info = PATTERN_INFO[pattern]
    st.markdown(f"**{info.title}.** {info.what}  \n**Used by:** {info.used_by}  \n**Cost:** {info.cost}")


def view_file() -> str:
    return f"blocks{block}" if view == "blocks" else "mask"


def blocks_caption(pattern, params):
    bk = kinds(pattern, n, params, block)
    computed, allowed = bk.computed_pairs, int(bk.counts.sum())
    st.caption(
        f"Each cell is one {block} × {block} block of (query, key) pairs, as FlexAttention's BlockMask holds it: "
        "**full** blocks are computed without calling the mask rule, **partial** ones are computed and then masked "
        "pair by pair, **skipped** ones cost nothing. A block cut short by N is never full. "
        f"The kernel computes **{computed:,}** pairs for the **{allowed:,}** allowed: "
        f"**{computed / max(allowed, 1):.2f}×** the useful work."
    )


st.title("Mask Explorer")
st.caption("Which keys may each query attend to? Every cell below is computed from the same rule the kernels run.")
for notice in ui.load_url_state("explorer", extra=URL_KEYS):
    ui.notice(notice, "warning", ":material/link:")

with st.sidebar:
    ui.set_default("n", 64)
    n = st.number_input("Sequence length N", min_value=8, max_value=masks.MAX_N, step=1, key="n", help="8 to 131072 tokens")
    problems = []
    a = sidebar_rule("", "Pattern", "sliding_window", problems)
    compare = st.checkbox("Compare with a second pattern", key="compare")
    b = sidebar_rule("b_", "Pattern B", "local_global", problems) if compare else None
    for key, value in DEFAULTS.items():
        ui.set_default(key, value)
    view = st.radio("Draw the mask as", list(VIEWS), key="draw", format_func=VIEWS.get, horizontal=True,
                    help="Pairs: every (query, key) pair the rule allows. Kernel blocks: the mask cut into "
                         "blocks as a block-sparse kernel (FlexAttention's BlockMask) runs it.")
    block = st.selectbox("Block size (tokens)", figures.BLOCK_SIZES, key="kernel_block",
                         help="FlexAttention's default block is 128 × 128 (the lab's CPU kernel uses 64). "
                              "Sets the block view and the 'blocks run' count.")
    labels = st.checkbox("Token labels from a sample sentence", key="labels",
                         disabled=n > figures.GRID_MAX_N or view == "blocks")

if a is None or (compare and b is None):
    for problem in problems:
        ui.notice(problem)
    st.error("Fix the setting marked in the sidebar to see the mask."
             + (" Presenter view folds the sidebar away: the arrow at the top left opens it." if ui.presenter() else ""))
    st.stop()

image_format = st.session_state.get("img_fmt", "png")
# Three figures side by side: halve the overview so the page stays light on the wire.
tiles = figures.OVERVIEW_TILES // (2 if compare else 1)
if view == "blocks" and (problem := figures.block_view_problem(n, block)):
    st.warning(problem, icon=":material/grid_view:")
    st.stop()
try:  # a custom rule too fragmented for its exact form at this N is refused here, with the reason
    for pattern, params in (a, b) if compare else (a,):
        stats(pattern, n, params, block)
except ValueError as e:
    ui.notice(e)
    st.stop()
if not compare:
    ui.plot(shown_fig(a[0], n, a[1]), key="fig_a", filename=f"{view_file()}_{a[0]}_{n}", wide=True)
    if view == "blocks":
        blocks_caption(*a)
        ui.plot(sweep_fig(a[0], n, a[1], block), key="fig_block_sizes", filename=f"block_sizes_{a[0]}_{n}", wide=True)
    show_stats(stats(a[0], n, a[1], block))
    explain(a[0])
else:
    named = (("A", a), ("B", b))
    # Headings in a row of their own, figures in the next: a heading that wraps to two lines then
    # lowers both figures, not one. Titles of different lengths are levelled by align_tops.
    for col, (name, (pattern, _)) in zip(st.columns(2), named):
        col.subheader(f"{name}: {PATTERN_INFO[pattern].title}")
    shown = figures.align_tops([ui.prepare(shown_fig(pattern, n, params)) for pattern, params in (a, b)])
    for col, fig, (name, (pattern, params)) in zip(st.columns(2), shown, named):
        with col:
            ui.plot(fig, key=f"fig_{name}", filename=f"{view_file()}_{pattern}_{n}", prepared=True)
            s = stats(pattern, n, params, block)
            st.markdown(
                f"**{s.allowed_pairs:,}** pairs · **{ui.share(s.density_vs_causal)}** of causal FLOPs · "
                f"keys per query **{s.min_keys:,}–{s.max_keys:,}**"
            )
            explain(pattern)
    left, right = st.columns(2)
    with left:
        try:
            ui.plot(diff_fig(a, b, n, tiles, block if view == "blocks" else None), key="fig_diff",
                    filename=f"{'block_' if view == 'blocks' else ''}difference_{a[0]}_{b[0]}_{n}")
        except ValueError as e:
            st.info(f"No difference view: {e}")
    with right:
        st.subheader("A vs B")
        # A static table: its cells are short sentences ("2,047 of 1,048,576 (0.195%)") a data grid would cut.
        st.table(pd.DataFrame(compare_table(stats(a[0], n, a[1], block), stats(b[0], n, b[1], block))).set_index("measure"))

state = {k: st.session_state[k] for k in st.session_state if not k.startswith("_")}
link = ui.write_url_state(state, extra_keys=[k for k, v in DEFAULTS.items() if state.get(k) != v])
with st.expander("Share and download", expanded=False):
    st.caption("This link reopens exactly this view (copy button on the right):")
    st.code(link, language=None)
    st.caption(f"Figure: the camera icon above the figure downloads it as {image_format.upper()}, "
               f"at least {figures.SLIDE_PX[1]} pixels tall and laid out as on screen (choose PNG or SVG in the sidebar).")
    if n <= EXPORT_MAX_N:
        d = st.columns(2)
        for col, fmt, mime in ((d[0], "csv", "text/csv"), (d[1], "npy", "application/octet-stream")):
            col.download_button(
                f"Mask as {fmt.upper()} ({n}×{n}, 1 = allowed)",
                data=lambda fmt=fmt: dense_bytes(a[0], n, a[1], fmt),
                file_name=f"mask_{a[0]}_{n}.{fmt}",
                mime=mime,
                on_click="ignore",
            )
    else:
        st.caption(f"CSV/NPY exports stop at N = {EXPORT_MAX_N}; use `python -m attn mask --tiles 512` for longer masks.")
