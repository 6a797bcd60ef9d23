"""The head grid drawn as one PNG: its pixels checked against the thumbnails, the colour scale and the
layout (heads grouped by KV head, each thumbnail on its own scale, white gaps)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from attn.model_figures import WEIGHT_SCALE, head_grid_figure
from attn.pictures import colorscale_rgb


def decode(fig) -> np.ndarray:
    source = fig.data[0].source
    assert source.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB"))


def test_colorscale_matches_the_scale_at_its_stops_and_between():
    scale = [[0.0, "#ffffff"], [0.5, "#000000"], [1.0, "#ff0000"]]
    rgb = colorscale_rgb(np.array([0.0, 0.25, 0.5, 0.75, 1.0, np.nan, 2.0]), scale)
    assert rgb.tolist() == [[255, 255, 255], [128, 128, 128], [0, 0, 0], [128, 0, 0], [255, 0, 0],
                            [255, 255, 255], [255, 0, 0]]  # NaN is white; above 1 is clipped


def test_the_smallest_weight_is_tinted_and_zero_is_white():
    rgb = colorscale_rgb(np.array([0.0, 1 / 512]), WEIGHT_SCALE)
    assert rgb[0].tolist() == [255, 255, 255]
    assert rgb[1].tolist() != [255, 255, 255]


def test_head_grid_pixels_follow_the_thumbnails():
    layers, heads, s = 3, 4, 8
    kv_groups = [[0, 2], [1, 3]]  # rows in the picture: q0, q2, q1, q3; layers across
    rng = np.random.default_rng(0)
    thumbs = rng.random((layers, heads, s, s))
    thumbs[1, 3] = 0.0  # an all-zero head stays white (scaled by 1, not by its zero maximum)
    img = decode(head_grid_figure(thumbs, kv_groups, "t"))
    gap = max(1, s // 8)
    cell = s + gap
    assert img.shape == (heads * cell - gap, layers * cell - gap, 3)
    order = [0, 2, 1, 3]
    for li in range(layers):
        for ri, h in enumerate(order):
            tile = img[ri * cell: ri * cell + s, li * cell: li * cell + s]
            peak = thumbs[li, h].max() or 1.0
            # Not transposed: a thumbnail's rows are its queries, as in the big map.
            assert np.array_equal(tile, colorscale_rgb(thumbs[li, h] / peak, WEIGHT_SCALE)), (li, h)
    assert (img[s: s + gap, :] == 255).all() and (img[:, s: s + gap] == 255).all()  # the gaps are white
    dark = colorscale_rgb(np.array([1.0]), WEIGHT_SCALE)[0]
    li, h = 2, 1
    y, x = np.unravel_index(thumbs[li, h].argmax(), (s, s))
    assert (img[order.index(h) * cell + y, li * cell + x] == dark).all()  # each head's maximum is the darkest


def test_head_grid_labels_groups_and_square_cells():
    thumbs = np.ones((30, 9, 24, 24)) / 24
    fig = head_grid_figure(thumbs, [[0, 1, 2], [3, 4, 5], [6, 7, 8]], "All 30 layers × 9 heads: causal")
    assert list(fig.layout.xaxis.ticktext) == [f"L{i}" for i in range(30)]
    assert list(fig.layout.yaxis.ticktext) == [f"q{h}" for h in range(9)]
    assert [a.text for a in fig.layout.annotations] == [f"KV head {j}" for j in range(3)]
    # Square pixels: an Image anchors y to x unless told not to, and nothing here tells it.
    assert fig.layout.yaxis.scaleanchor is None
    # The page sizes the figure to its picture: 9 rows of 27-px cells by 30 columns, less the last gaps.
    from attn.figures import plot_aspect

    # The ranges stop 1 unit outside the boxes (so the labels beside do not widen them).
    assert plot_aspect(fig) == pytest.approx((9 * 27 + 2) / (30 * 27 + 2))
    assert list(fig.layout.xaxis.range) == [-2.5, 30 * 27 - 1.5 + 1] and list(fig.layout.yaxis.range) == [242.5, -2.5]
    # The KV-group boxes are horizontal bands of 3 heads each.
    # 3 heads × 27-px cells (24 + a 3-px gap), each box half a gap outside its thumbnails.
    assert [(b.y0, b.y1) for b in fig.layout.shapes] == [(-1.5, 79.5), (79.5, 160.5), (160.5, 241.5)]
    assert len(fig.to_json()) < 300_000  # one PNG, not 190,000 numbers


def test_sweep_axis_is_ticked_at_the_windows():
    from attn.model_figures import sweep_figure

    fig = sweep_figure({"sliding window": [(16, 300.0), (64, 50.0), (None, 14.0)], "sinks": [(16, 50.0)]}, 14.0, 512)
    assert list(fig.layout.xaxis.tickvals) == [16, 64] and list(fig.layout.xaxis.ticktext) == ["16", "64"]
    # Perplexity on a log axis (its log is the mean loss), ticked at 1, 2, 5 × 10^k across 14..300.
    assert fig.layout.yaxis.type == "log" and list(fig.layout.yaxis.tickvals) == [20, 50, 100, 200]


def test_attention_map_labels_keys_only_when_they_fit():
    from attn.model_figures import attention_map_figure

    w = np.tril(np.ones((40, 40))) / np.arange(1, 41)[:, None]
    pieces = [f"tok{i}" for i in range(40)]
    wide = attention_map_figure(w, pieces, "t", 0, 40)
    assert len(wide.layout.yaxis.ticktext) == 40 and wide.layout.xaxis.ticktext is None
    narrow = attention_map_figure(w, pieces, "t", 0, 20)
    assert list(narrow.layout.xaxis.ticktext) == list(narrow.layout.yaxis.ticktext) == [f"{i} tok{i}" for i in range(20)]


def test_attention_map_title_lines_are_escaped_one_by_one():
    from attn.model_figures import attention_map_figure

    fig = attention_map_figure(np.eye(4), list("abcd"), "Layer 0 under\ncustom(rule=q < b and b > k)", 0, 4)
    assert fig.layout.title.text == "Layer 0 under<br>custom(rule=q &lt; b and b &gt; k)"
    # Room above the square for two title lines, the key axis's title and its four upright labels
    # ("3 d": 3 characters at 9 px): the square itself keeps 560 px.
    assert fig.layout.margin.t == 14 + 2 * 22 + 12 + 22 + round(0.6 * 9 * 3)
    assert fig.layout.height - fig.layout.margin.t == 560 and fig.layout.xaxis.side == "top"


def test_retrieval_columns_name_the_gap_a_window_must_span():
    from attn.model import ProbeResult, ProbeTrial
    from attn.model_figures import retrieval_figure

    def result(window, d, gaps, right):
        return ProbeResult("w", window, d, tuple(ProbeTrial("k", "4817", "4817" if ok else "0", ok, g)
                                                 for g, ok in zip(gaps, right)))

    fig = retrieval_figure([result(32, 16, (33, 34), (False, False)), result(None, 16, (33, 34), (True, True)),
                            result(32, 128, (145, 145), (False, False)), result(None, 128, (145, 145), (True, False))])
    assert list(fig.data[0].x) == ["D = 16<br>gap 33–34", "D = 128<br>gap 145"]
    assert list(fig.data[0].y) == ["W = 32", "full"]
    assert fig.data[0].z.tolist() == [[0, 0], [100, 50]]


def test_recorded_pace_reads_the_full_causal_forwards(tmp_path):
    from attn import bench_model

    rows = [{"what": "load (cache)", "seconds": 0.7, "device": "cpu", "threads": 2, "date": "2026-11-23"},
            {"what": "forward N=512, full causal", "seconds": 1.604, "device": "cpu", "threads": 2, "date": "2026-11-23"},
            {"what": "forward N=512, sliding_window(64) additive mask", "seconds": 1.759},
            {"what": "forward N=1024, full causal", "seconds": 4.89, "device": "cpu", "threads": 2, "date": "2026-11-23"}]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(rows))
    assert bench_model.recorded_pace(path) == \
        "Recorded on cpu (2 threads, 2026-11-23): one forward took 1.6 s at 512 tokens, 4.9 s at 1,024 tokens."
    assert bench_model.recorded_pace(tmp_path / "missing.json") == ""
    (tmp_path / "bad.json").write_text("{")
    assert bench_model.recorded_pace(tmp_path / "bad.json") == ""
    assert bench_model.recorded_pace().startswith("Recorded on cpu")  # the committed file


def test_presenter_view_keeps_small_attention_weights_apart_from_large_ones():
    # Softmax weights over 64 causal keys: most are small, none is zero. In presenter view a weight of
    # 2% of the top must still look pale (nearer white than the middle of the scale), as on screen.
    from plotly.colors import hex_to_rgb, sample_colorscale, unlabel_rgb
    from attn.figures import presenter_style
    from attn.model_figures import attention_map_figure

    logits = np.random.default_rng(0).normal(size=(64, 64))
    w = np.exp(np.where(np.tril(np.ones((64, 64), bool)), logits, -np.inf))
    w /= w.sum(axis=1, keepdims=True)
    fig = attention_map_figure(w, [str(i) for i in range(64)], "t")
    for shown in (fig, presenter_style(fig)):
        scale = [[at, colour] for at, colour in shown.data[0].colorscale]

        def lum(at):
            c = sample_colorscale(scale, [at])[0]
            r, g, b = unlabel_rgb(c) if c.startswith("rgb") else hex_to_rgb(c)
            return 0.2126 * r + 0.7152 * g + 0.0722 * b

        assert lum(0.02) > (lum(0.0) + lum(0.5)) / 2, (scale, lum(0.02), lum(0.5))
        assert lum(0.0) > lum(0.02) > lum(0.5) > lum(1.0)
