"""Figures: right view per size, exact data, and small on the wire."""

import html
import re

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from attn import figures, masks as M
from attn.render import tile_overview


def z_of(fig):
    return np.asarray(fig.data[0].z)


def test_grid_has_one_cell_per_pair_and_hover_words():
    fig = figures.mask_figure(M.sliding_window(4), 16)
    z = z_of(fig)
    assert z.shape == (16, 16) and z.sum() == sum(min(q + 1, 4) for q in range(16))
    assert fig.data[0].customdata[5][2] == "query 5 → key 2: allowed"
    assert fig.data[0].customdata[5][1] == "query 5 → key 1: masked"
    assert fig.layout.yaxis.autorange == "reversed"  # query 0 at the top


def test_token_labels():
    labels = figures.token_labels("a b c", 5)
    assert labels == ["a", "b", "c", "a", "b"]
    assert figures.token_labels("Stop. Go, now: ?", 4) == ["Stop", "Go", "now", "?"]
    fig = figures.grid_figure(M.causal(), 5, labels)
    assert "'b'" in fig.data[0].customdata[1][1]
    # Ticks carry the position too, so a word that comes round again is still one row.
    assert list(fig.layout.yaxis.ticktext) == ["0 a", "1 b", "2 c", "3 a", "4 b"]
    # The pages' sample does not come round within the largest labelled grid (N = 64).
    assert len(figures.SAMPLE_TEXT.split()) >= 64


@pytest.mark.parametrize(
    "rule",
    [M.sliding_window(4096), M.local_global(256, [0]), M.bigbird(256, [0], 3, 0, 64, 131072), M.strided(362)],
    ids=lambda r: r.name,
)
def test_overview_at_131072_under_2mb(rule):
    fig = figures.mask_figure(rule, 131072)
    z = z_of(fig)
    assert z.shape == (512, 512)
    assert np.allclose(z, tile_overview(rule, 131072).fractions, atol=1e-7)
    assert len(pio.to_json(fig)) < 2_000_000


def test_difference_figure_counts():
    n = 64
    a, b = M.sliding_window(8), M.local_global(8, [0], causal=True)
    fig = figures.difference_figure(a, b, n)
    da, db = a.dense(n).numpy(), b.dense(n).numpy()
    z = z_of(fig)
    assert np.array_equal(z, (da & ~db).astype(np.float32) - (db & ~da).astype(np.float32))
    assert f"{(da & ~db).sum():,} pairs only in A" in fig.layout.title.text
    # Pair-exact cells are −1, 0 or +1: three flat swatches, each the colour its cells get.
    scale = [(float(at), c) for at, c in fig.data[0].colorscale]
    assert [c for at, c in scale] == [figures.DIFF_SCALE[0][1]] * 2 + ["#ffffff"] * 2 + [figures.DIFF_SCALE[-1][1]] * 2
    assert [at for at, c in scale] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    presented = figures.presenter_style(fig).data[0].colorscale
    assert [c for _, c in presented] == ["#0072B2"] * 2 + ["#ffffff"] * 2 + ["#D55E00"] * 2
    # Tiles of a long sequence hold shares between −1 and 1: there the scale stays a gradient.
    assert len(figures.difference_figure(a, b, 4096).data[0].colorscale) == len(figures.DIFF_SCALE)


def test_difference_of_progression_rule_large_n_is_refused():
    with pytest.raises(ValueError):
        figures.difference_figure(M.strided(64), M.causal(), 131072)


def test_titles_write_a_rules_angle_brackets_as_entities():
    # Plotly reads titles as HTML: in Chromium "q<b and b>k" shows as "qk" (a bold tag). Rule labels are
    # written with spaces ("q < b"), which Plotly happens to leave alone; entities do not depend on that.
    rule = M.custom("q<b and b>k or q == k", 16, b=3)
    title = figures.grid_figure(rule, 16).layout.title.text
    assert "q &lt; b and b &gt; k or q == k" in title and "<b" not in title.replace("<br>", "")


def test_layer_axes_tick_whole_layers():
    sets = np.zeros((2, 16), dtype=bool)
    assert figures.reach_growth_figure([4, 4], 15).layout.xaxis.dtick == 1
    assert figures.reach_map_figure(sets, 15).layout.yaxis.dtick == 1


@pytest.mark.parametrize("n", [16, 32, 33, 64])
def test_reach_map_labels_at_most_32_positions_each_with_its_own_word(n):
    words = figures.token_labels(figures.SAMPLE_TEXT, n)
    fig = figures.reach_map_figure(np.ones((3, n), bool), n - 1, words)
    ticks, text = list(fig.layout.xaxis.tickvals), list(fig.layout.xaxis.ticktext)
    assert len(ticks) <= 32 and ticks[0] == 0 and text == [f"{i} {words[i]}" for i in ticks]
    assert ticks == list(range(n)) if n <= 32 else ticks[1] == 2
    grid = figures.grid_figure(M.sliding_window(4), n, words)
    for axis in (grid.layout.xaxis, grid.layout.yaxis):
        assert list(axis.tickvals) == ticks and list(axis.ticktext) == text
    assert figures.reach_growth_figure(list(range(1, 43)), 200).layout.xaxis.dtick is None  # 42 layers: Plotly's own


def test_reach_axis_counts_whole_tokens_from_zero():
    # A reach that is full from layer 1 (a flat line at 256) must not get ticks at 255.5 tokens.
    y = figures.reach_growth_figure([256] * 8, 255).layout.yaxis
    assert y.tickformat == ",d" and y.range[0] == 0 and y.range[1] > 256


def test_presenter_style_keeps_dots_matching_their_lines():
    # Serving Cost marks each curve's value at the chosen context with a dot of the curve's colour.
    from attn import cost_figures, kv

    fig = cost_figures.kv_figure(kv.PRESETS["mistral-7b-v0.1"], kv.Design(), 32768, 1, "bf16",
                                 cost_figures.context_grid())
    styled = figures.presenter_style(fig)
    line_of = {t.name: t.line.color for t in styled.data if t.mode != "markers"}
    dots = next(t for t in styled.data if t.mode == "markers")
    assert list(dots.marker.color) == [line_of["full attention"], line_of["the model's own design"]]
    assert line_of["full attention"] != line_of["the model's own design"]
    assert styled.layout.margin.t > (fig.layout.margin.t or 0)
    assert all(a.font.size >= 16 for a in styled.layout.annotations)


@pytest.mark.parametrize("key,batch", [("mistral-7b-v0.1", 1), ("mistral-7b-v0.1", 4), ("llama-3.1-8b", 1)])
def test_gpu_labels_sit_where_no_curve_crosses_their_line(key, batch):
    # A GPU's label sits above its line at one end; a curve climbing through that line under the
    # label hides it (full attention crosses 80 GB near 1M tokens for Mistral at batch 1).
    from attn import cost_figures, kv

    model, contexts = kv.PRESETS[key], cost_figures.context_grid()
    fig = cost_figures.vram_figure(model, kv.Design(), 32768, batch, "bf16", "bf16", 1 << 30, contexts)
    full = kv.Design("full")

    def crosses(gib, lo, hi):  # does full attention's VRAM pass gib between contexts lo and hi?
        a = kv.vram_bytes(model, lo, batch, design=full, overhead_bytes=1 << 30) / 2**30
        b = kv.vram_bytes(model, hi, batch, design=full, overhead_bytes=1 << 30) / 2**30
        return a <= gib * 1.15 and b >= gib

    edge = int(contexts[-1] / 4)  # the right quarter (in log x, about a tenth) of the axis
    labels = {a.text: (a.x, 10 ** a.y) for a in fig.layout.annotations if "GB" in a.text}
    assert set(labels) == {"RTX 3060 12 GB", "RTX 4090 24 GB", "RTX 5090 32 GB", "H100 80 GB / A100 80 GB",
                           "H200 141 GB"}
    for text, (side, gib) in labels.items():
        if side == 1:
            assert not crosses(gib, edge, int(contexts[-1])), f"{text}: a curve runs through its label"
    if key == "mistral-7b-v0.1" and batch == 1:
        assert crosses(80, edge, int(contexts[-1])) and labels["H100 80 GB / A100 80 GB"][0] == 0


def test_label_sides_move_off_a_curve_but_not_onto_another_label():
    from attn.cost_figures import label_sides

    xs = np.geomspace(1e3, 1e6, 50)
    rising = np.geomspace(1, 101, 50)  # ends just above y = 100 at the right; far below it at the left
    flat = np.full(50, 1.0)
    # Alone, labels alternate: left, right, left.
    assert label_sides(xs, [flat], [(10, "a"), (100, "b"), (500, "c")]) == [0, 1, 0]
    # The curve runs through "b" at the right: it moves left, far from "a".
    assert label_sides(xs, [flat, rising], [(10, "a"), (100, "b")]) == [0, 0]
    # ... and "c", just above "b", then gives way to it: it goes right, where the curve has passed below.
    assert label_sides(xs, [flat, rising], [(10, "a"), (100, "b"), (115, "c")]) == [0, 0, 1]
    # "b" sits just above "a" (less than a text height): moving left would stack them, so it stays.
    assert label_sides(xs, [flat, np.full(50, 10.5)], [(10, "a"), (10.3, "b")]) == [0, 1]


def test_slide_download_sizes():
    # A chart: laid out at half of 1920 × 1080 and drawn at 2×.
    line = figures.reach_growth_figure(np.array([3, 5, 7]), 10, np.array([3, 5, 7]), None)
    assert figures.slide_image_options(line) == {"width": 960, "height": 540, "scale": 2}
    # A square matrix, also in presenter view (taller): no size of its own, scaled to 1080 pixels tall.
    for fig in (figures.mask_figure(M.sliding_window(4), 16), figures.mask_figure(M.causal(), 4096)):
        for shown in (fig, figures.presenter_style(fig)):
            options = figures.slide_image_options(shown)
            assert set(options) == {"scale"} and options["scale"] * shown.layout.height == pytest.approx(1080)
            # Its box may be as short as a 260-px column needs: scaled so that that one is 1080 tall.
            across, down = figures.square_overheads_px(shown)
            narrow = figures.slide_image_options(shown, narrowest_px=260)["scale"]
            assert narrow * (260 - across + down) == pytest.approx(1080) and narrow > options["scale"]


@pytest.mark.parametrize("key,same", [("mistral-7b-v0.1", False), ("llama-3.1-8b", True)])
def test_the_legend_says_when_the_design_is_full_attention(key, same):
    from attn import cost_figures, kv

    model, grid = kv.PRESETS[key], cost_figures.context_grid()
    for fig in (cost_figures.kv_figure(model, kv.Design(), 32768, 1, "bf16", grid),
                cost_figures.vram_figure(model, kv.Design(), 32768, 1, "bf16", "bf16", 0, grid),
                cost_figures.flops_figure(model, kv.Design(), 32768, grid)):
        full, own = fig.data[0], fig.data[1]
        assert (list(full.y) == list(own.y)) == same  # an independent look at the curves themselves
        assert full.name.startswith(("full attention", "attention, full"))
        assert own.name.startswith(("the model's own design", "attention, the model's own design"))
        assert ("under the next" in full.name and own.name.endswith("= full attention")) == same


# ---------------------------------------------------------------- titles wrapped to a column's width

def _visible(text: str) -> str:
    """A title as read: tags dropped, line breaks as spaces, entities as one character."""
    return html.unescape(re.sub(r"<(?!br)[^>]*>", "", text).replace("<br>", " "))


@pytest.mark.parametrize("width_px", [260, 330, 440, 900])
def test_fit_title_wraps_at_spaces_and_grows_the_top_margin_by_its_new_lines(width_px):
    title = ("Receptive field of token 255, layer by layer (the line marks the token)"
             "<br><sup>cpu (Intel(R) Xeon(R) Processor, 2 threads), float32, 2026-12-01</sup>")
    fig = go.Figure(layout=dict(title=dict(text=title, x=0), margin=dict(l=60, t=50), height=400))
    figures.fit_title(fig, width_px)
    lines = fig.layout.title.text.split("<br>")
    # Same words in the same order; only spaces became breaks.
    assert _visible(fig.layout.title.text) == _visible(title)
    # Each line fits: its characters × the em share × the size (sub/superscript at 70%), after the
    # 72 px the y axis takes at 12 px type (independent of the function's own arithmetic).
    room = width_px - 72
    for line in lines:
        small = line.startswith("<sup>")
        assert len(_visible(line)) * 0.48 * 12 * 1.4 * (0.7 if small else 1) <= room or " " not in _visible(line)
        if small:  # a superscript broken across lines stays one on each
            assert line.endswith("</sup>")
    added = len(lines) - 2
    assert (added > 0) == (width_px < 900)
    grow = round(added * 1.3 * 12 * 1.4)
    assert fig.layout.height == 400 + grow
    assert fig.layout.margin.t >= 50 + grow
    if added:  # hung from the top, so the new lines go down into the new margin, not into the plot
        assert (fig.layout.title.yref, fig.layout.title.yanchor) == ("container", "top")


def test_fit_title_leaves_a_title_that_fits_alone_and_is_idempotent():
    fig = go.Figure(layout=dict(title=dict(text="Kernel time vs N", x=0), margin=dict(t=40), height=430))
    before = fig.to_plotly_json()["layout"]
    figures.fit_title(fig, 260)
    assert fig.to_plotly_json()["layout"] == before
    long = go.Figure(layout=dict(title=dict(text="VRAM vs context (batch 1): weights + KV cache", x=0), margin=dict(t=40)))
    once = figures.fit_title(long, 260).to_plotly_json()["layout"]
    assert "<br>" in once["title"]["text"]
    assert figures.fit_title(long, 260).to_plotly_json()["layout"] == once


def test_fit_title_with_copy_leaves_the_given_figure_as_it_was():
    fits = go.Figure(layout=dict(title=dict(text="Kernel time vs N", x=0)))
    assert figures.fit_title(fits, 260, copy=True) is fits
    long = go.Figure(layout=dict(title=dict(text="VRAM vs context (batch 1): weights + KV cache", x=0), margin=dict(t=40)))
    wrapped = figures.fit_title(long, 260, copy=True)
    assert "<br>" in wrapped.layout.title.text and wrapped.layout.margin.t > 40
    assert long.layout.title.text == "VRAM vs context (batch 1): weights + KV cache" and long.layout.margin.t == 40


def test_fit_title_counts_an_entity_as_one_character():
    # A custom rule's "<" is written as an entity (&lt;): 14 characters shown, 29 typed. Counted as
    # typed it would break a title that fits; each break falls between words, never inside an entity.
    short = go.Figure(layout=dict(title=dict(text="q &lt; k &amp;&amp; k &gt; 0", x=0)))
    assert "<br>" not in figures.fit_title(short, 260).layout.title.text
    long = go.Figure(layout=dict(title=dict(text=" ".join(["q &lt; k &amp;&amp; k &gt; 0"] * 4), x=0)))
    lines = figures.fit_title(long, 260).layout.title.text.split("<br>")
    assert len(lines) > 1 and all(not line.startswith(("lt;", "amp;", "gt;")) for line in lines)


def test_align_tops_gives_the_largest_top_margin_and_keeps_each_plot_height():
    given = [go.Figure(layout=dict(margin=dict(t=t), height=600 + t)) for t in (150, 190, 170)]
    figs = figures.align_tops(given)
    assert [f.layout.margin.t for f in figs] == [190, 190, 190]
    assert [f.layout.margin.t for f in given] == [150, 190, 170]  # a cached figure stays as it was
    assert figs[1] is given[1]
    assert [f.layout.height - f.layout.margin.t for f in figs] == [600, 600, 600]


def test_colorbar_below_moves_an_overviews_bar_under_the_square_on_one_title_line():
    given = figures.overview_figure(tile_overview(M.sliding_window(256), 4096, 256))
    assert given.data[0].colorbar.orientation in (None, "v")
    moved = figures.colorbar_below(given, copy=True)
    bar = moved.data[0].colorbar
    assert (bar.orientation, bar.yanchor, bar.len, bar.title.side) == ("h", "top", 1, "top")
    assert bar.y < 0 and bar.title.text == "allowed share of tile"
    assert given.data[0].colorbar.orientation in (None, "v")  # a cached figure stays as it was
    # Moving the bar takes its width off the figure's sides and puts a band under the square instead.
    (across0, down0), (across1, down1) = figures.square_overheads_px(given), figures.square_overheads_px(moved)
    assert across1 < across0 and down1 > down0
    assert figures.colorbar_below(moved) is moved  # already under


def test_colorbar_below_leaves_a_grid_or_a_chart_alone():
    grid = figures.grid_figure(M.causal(), 16)  # no colour bar
    chart = go.Figure(go.Heatmap(z=[[0, 1], [1, 0]]))  # not a square matrix
    assert figures.colorbar_below(grid, copy=True) is grid and figures.colorbar_below(chart, copy=True) is chart


def test_square_overheads_grow_with_the_tick_labels_and_the_title():
    across16, down16 = figures.square_overheads_px(figures.grid_figure(M.causal(), 16))
    across_words, _ = figures.square_overheads_px(
        figures.grid_figure(M.causal(), 16, figures.token_labels(figures.SAMPLE_TEXT, 16)))
    long = figures.overview_figure(tile_overview(M.causal(), 131072, 256))
    across_long, _ = figures.square_overheads_px(long)
    assert across16 < across_words  # "3 mat" is wider than "15" and slants past the right edge
    assert across16 < across_long  # "120k" and a colour bar beside
    tall = figures.fit_title(figures.grid_figure(M.causal(), 16, title="a " * 200), 260, copy=True)
    assert figures.square_overheads_px(tall)[1] - down16 == tall.layout.margin.t - 150  # title lines


def test_box_fit_is_the_height_a_width_needs_for_a_square_and_none_for_a_chart():
    fig = figures.mask_figure(M.causal(), 4096)
    across, down = figures.square_overheads_px(fig)
    assert figures.box_fit(fig) == (1.0, down - across)  # a 300-px figure needs 300 - across + down
    assert figures.box_fit(figures.reach_growth_figure(np.array([3, 5]), 4, None, None)) is None


# ----------------------------------------------------------- kernel blocks ---
BLOCK_RULES = {
    "sliding_window_37": M.sliding_window(37),
    "sliding_window_200": M.sliding_window(200),
    "local_global": M.local_global(16, [0, 150]),
    "bigbird": M.bigbird(8, [0], 2, 3, 16, 300),
    "chunked_64": M.chunked(64),
    "dilated": M.dilated(32, 3),
    "full": M.full(),
    "document": M.document([100, 150, 50]),
}


@pytest.mark.parametrize("block", [16, 64, 128])
@pytest.mark.parametrize("n", [1, 17, 128, 300])
@pytest.mark.parametrize("name", sorted(BLOCK_RULES))
def test_block_view_is_flex_own_block_mask(name, n, block):
    # The reference: FlexAttention's create_block_mask, evaluating the rule pair by pair.
    import torch
    from torch.nn.attention.flex_attention import create_block_mask

    rule = BLOCK_RULES[name]
    if name in ("bigbird", "document"):
        n = 300  # these rules are built for their length
    ref = create_block_mask(rule.mask_mod, None, None, n, n, device="cpu", BLOCK_SIZE=block, _compile=False)
    computed = ref.to_dense()[0, 0].bool().numpy()
    t = computed.shape[0]
    full = np.zeros((t, t), bool)
    for row, count in enumerate(ref.full_kv_num_blocks[0, 0].tolist()):
        full[row, ref.full_kv_indices[0, 0, row, :count].numpy()] = True
    want = np.where(full, 2, np.where(computed, 1, 0))

    fig = figures.block_kinds_figure(rule, n, block)
    assert np.array_equal(z_of(fig), want)
    # Each cell spans its block's tokens: the last one is cut short by N.
    edges = np.minimum(np.arange(0, t + 1) * block, n) - 0.5
    assert np.array_equal(np.asarray(fig.data[0].x), edges) and np.array_equal(np.asarray(fig.data[0].y), edges)
    dense = torch.from_numpy(rule.dense(n).numpy().astype(np.int64))
    counts = torch.nn.functional.pad(dense, (0, t * block - n, 0, t * block - n)).reshape(t, block, t, block).sum((1, 3))
    assert np.array_equal(np.asarray(fig.data[0].customdata), counts.numpy())  # hover: allowed pairs per block
    title = fig.layout.title.text
    assert f"{(want == 2).sum():,} full, {(want == 1).sum():,} partial, {(want == 0).sum():,} skipped" in title


def test_block_view_by_hand_and_its_limits():
    from attn.render import block_kinds

    # W = 200, N = 1000, blocks of 64: queries 64..127 see keys 0..63 whole (q - k <= 127 < 200), so
    # block (1, 0) is full; a diagonal block is cut by causality, partial; 40 tokens in the last block.
    bk = block_kinds(M.sliding_window(200), 1000, 64)
    assert bk.kinds.shape == (16, 16) and bk.kinds[1, 0] == 2 and bk.kinds[1, 1] == 1 and bk.kinds[0, 1] == 0
    assert bk.kinds[15, 15] == 1 and bk.kinds[15, 14] == 1  # never full: cut short by N
    assert bk.computed_pairs == int(sum(np.diff(bk.edges)[i] * np.diff(bk.edges)[j]
                                        for i, j in zip(*np.nonzero(bk.kinds))))
    assert int(bk.counts.sum()) == sum(min(q + 1, 200) for q in range(1000))
    with pytest.raises(ValueError, match="positive whole number"):
        block_kinds(M.causal(), 64, 0)
    # At most 512 blocks a side, as many cells as the tile overview: the message names a block that fits.
    assert figures.block_view_problem(65536, 128) is None
    problem = figures.block_view_problem(131072, 128)
    assert "1,024 × 1,024 blocks" in problem and "blocks of 256 tokens or more" in problem
    with pytest.raises(ValueError, match="at most 512 × 512"):
        figures.block_kinds_figure(M.causal(), 131072, 64)
    # Presenter view: three kinds of its own (not the difference map's blue/vermillion).
    styled = figures.presenter_style(figures.block_kinds_figure(M.causal(), 256, 64))
    assert [c for _, c in styled.data[0].colorscale][::2] == ["#ffffff", "#E69F00", "#000000"]


@pytest.mark.parametrize("n, block", [(300, 64), (1000, 128), (17, 16)])
def test_block_difference_is_the_blocks_only_one_rule_computes(n, block):
    from torch.nn.attention.flex_attention import create_block_mask

    a, b = M.sliding_window(200), M.local_global(16, [0, n // 2])

    def computed(rule):  # the reference: flex's own BlockMask, from the rule evaluated pair by pair
        bm = create_block_mask(rule.mask_mod, None, None, n, n, device="cpu", BLOCK_SIZE=block, _compile=False)
        return bm.to_dense()[0, 0].numpy().astype(int)

    want = computed(a) - computed(b)
    fig = figures.block_difference_figure(a, b, n, block)
    assert np.array_equal(z_of(fig), want)
    assert f"{(want == 1).sum():,} only for A, {(want == -1).sum():,} only for B" in fig.layout.title.text
    with pytest.raises(ValueError, match="at most 512 × 512"):
        figures.block_difference_figure(a, b, 131072, 128)


def test_block_size_sweep_counts_what_flex_would_compute():
    from torch.nn.attention.flex_attention import create_block_mask

    from attn.kernels import block_mask_pairs
    from attn.render import block_size_sweep

    rule, n = M.strided(16), 300
    sweep = block_size_sweep(rule, n, (16, 32, 64, 128, 256, 512))
    allowed = int(rule.dense(n).sum())
    for block, computed, counted in sweep:  # the reference: flex's own BlockMask, clipped at N
        ref = create_block_mask(rule.mask_mod, None, None, n, n, device="cpu", BLOCK_SIZE=block, _compile=False)
        assert (computed, counted) == (block_mask_pairs(ref, n), allowed), block
    assert [b for b, _, _ in sweep] == [16, 32, 64, 128, 256, 512]
    assert sweep[-1][1] == n * n  # one 300 × 300 block: computed whole
    # Sizes that would cut N into more than 1,024 blocks a side are left out (at 128k: below 128).
    assert [b for b, _, _ in block_size_sweep(M.sliding_window(4096), 131072, figures.BLOCK_SIZES)] == [128, 256, 512, 1024]
    fig = figures.block_size_figure(sweep, chosen=64)
    assert list(fig.data[0].y) == [c / a for _, c, a in sweep]
    assert list(fig.data[1].x) == [64] and fig.data[1].y[0] == sweep[2][1] / sweep[2][2]  # the block size shown
    assert list(fig.data[2].y) == [1, 1]  # the no-waste line


def test_block_difference_refuses_masks_cut_differently():
    from attn.render import block_kinds

    with pytest.raises(ValueError, match="cut alike"):
        figures.kinds_difference_figure(block_kinds(M.causal(), 256, 64), block_kinds(M.causal(), 256, 128))


def test_column_px_from_the_measured_page():
    # (main column as the probe reports it, window, the widths Chromium drew half-column figures at):
    # Home's example (in a bordered container) and Serving Cost's charts (bare columns), as measured.
    # A 620-px window stacks the columns, so a "half" figure is as wide as the page there.
    drawn = [(940, 1400, [446, 462]), (560, 1020, [258, 274]), (620, 660, [290, 306]), (580, 620, [556, 588])]
    for main, window, widths in drawn:
        px = figures.column_px(main, window, wide=False)
        assert min(widths) - 12 <= px <= min(widths), (main, px, widths)  # never wider than drawn, nearly as wide
    assert figures.column_px(940, 1400, wide=True) == 940 - figures.CONTAINER_PAD_PX
    # Not measured yet (first run, AppTest): the narrowest the figure could be drawn.
    for present in (False, True):
        for wide in (False, True):
            assert figures.column_px(None, None, wide, present) == figures.NARROWEST_PX[present, wide]


def test_fit_title_keeps_the_first_line_clear_of_the_toolbar_where_it_costs_no_line():
    px_per_char = 0.48 * 12 * 1.4  # the 0.48-em estimate of a character of the 16.8-px title type

    def wrap(text, width_px):
        fig = go.Figure(layout=dict(title=dict(text=text, x=0), margin=dict(l=60, t=50), height=400))
        lines = figures.fit_title(fig, width_px).layout.title.text.split("<br>")
        assert " ".join(lines) == text
        return lines, width_px - 72  # the room after the y axis, at 12-px type

    # Two lines either way at 445 px (46 characters a line): the break moves left of the toolbar.
    lines, room = wrap("Tokens that can influence token 255, after each layer", 445)
    assert lines == ["Tokens that can influence", "token 255, after each layer"]
    assert len(lines[0]) * px_per_char <= room - figures.MODEBAR_PX
    # One line as it is (35 characters): not split for a toolbar that shows only under the pointer.
    assert wrap("KV cache vs context (batch 8, bf16)", 445)[0] == ["KV cache vs context (batch 8, bf16)"]
    # 260 px: too narrow to give up 150 px; the first line takes the whole room.
    lines, room = wrap("Tokens that can influence token 255, after each layer", 260)
    assert len(lines[0]) * px_per_char > room - figures.MODEBAR_PX and all(len(t) * px_per_char <= room for t in lines)
