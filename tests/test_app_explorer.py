"""Mask Explorer page through Streamlit's AppTest (no browser)."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

TIMEOUT = 120
APP = Path(__file__).resolve().parent.parent / "app_pages" / "mask_explorer.py"


def open_app(**query):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def figure_z(at, index=0):
    import json

    spec = json.loads(at.get("plotly_chart")[index].proto.spec)
    z = spec["data"][0]["z"]
    if isinstance(z, dict):  # plotly's base64 typed-array encoding
        import base64

        arr = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        shape = z.get("shape")
        return arr.reshape([int(x) for x in str(shape).split(",")]) if shape else arr
    return np.array(z)


def test_default_view_runs():
    at = open_app()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    assert at.query_params["pattern"] == ["sliding_window"] or at.query_params["pattern"] == "sliding_window"


def test_sliding_window_counts_from_widgets():
    at = open_app()
    at.selectbox(key="pattern").set_value("sliding_window")
    at.number_input(key="window").set_value(4)
    at.number_input(key="n").set_value(16).run()
    assert not at.exception
    assert metric(at, "Allowed pairs") == "58"  # sum over q of min(q+1, 4)
    assert int(figure_z(at).sum()) == 58


@pytest.mark.parametrize("pattern", ["full", "causal", "sliding_window", "band", "dilated", "local_global", "bigbird",
                                     "strided", "chunked", "sinks", "prefix_lm", "document"])
def test_every_pattern_renders_small_and_large(pattern):
    at = open_app(pattern=pattern, n="64")
    assert not at.exception and not at.error, [e.value for e in at.error]
    if pattern == "document":
        at.text_input(key="lengths").set_value("65536, 65536")
    at.number_input(key="n").set_value(131072).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert figure_z(at).size == 512 * 512


def test_shared_link_reopens_same_view():
    at = open_app(n="300", pattern="bigbird", window="16", global_tokens="0,5", random_blocks="3", seed="4",
                  block="8", causal="0", compare="1", b_pattern="sliding_window", b_window="32")
    assert not at.exception and not at.warning
    assert at.number_input(key="n").value == 300
    assert at.selectbox(key="pattern").value == "bigbird"
    assert at.text_input(key="global_tokens").value == "0, 5"
    assert at.number_input(key="seed").value == 4
    assert at.selectbox(key="b_pattern").value == "sliding_window"
    assert len(at.get("plotly_chart")) == 3  # A, B and their difference
    table = at.table[0].value  # A vs B; B counted by hand here
    assert table.loc["allowed pairs", "B"] == f"{sum(min(q + 1, 32) for q in range(300)):,}"
    # 300 tokens = 3 × 3 blocks of 128; a 32-token causal window touches (0,0), (1,0), (1,1), (2,1), (2,2).
    assert table.loc["128×128 blocks run", "B"] == "5 of 9 (55.6%)"
    link = at.code[0].value
    assert "seed=4" in link and "b_window=32" in link and "n=300" in link


def test_compare_starts_both_squares_level_under_titles_of_different_lengths():
    import json

    # A's rule is one short line, B's three once wrapped: without alignment B's square starts lower.
    at = open_app(n="64", pattern="sliding_window", window="8", compare="1", b_pattern="local_global",
                  b_window="8", b_global_tokens="0", b_causal="0")
    assert not at.exception and not at.error
    a, b = (json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")[:2])
    assert a["title"]["text"].count("<br>") < b["title"]["text"].count("<br>")
    assert a["margin"]["t"] == b["margin"]["t"]
    assert a["height"] - a["margin"]["t"] == b["height"] - b["margin"]["t"] == 640 - 150  # the plot keeps its size


def test_bad_inputs_show_messages_not_tracebacks():
    at = open_app(n="zz", pattern="nope", window="-4")
    assert not at.exception
    assert len(at.warning) == 3 and all("Ignored URL parameter" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 1  # defaults still shown

    at = open_app(pattern="local_global", n="64", global_tokens="0, 64")
    assert not at.exception
    assert any("Global token 64 does not exist" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 0

    at = open_app(pattern="document", n="64", lengths="10, 20")
    assert any("add up to 30 tokens, but N is 64" in e.value for e in at.error)

    at = open_app(pattern="sliding_window", n="64", window="500")
    assert not at.error and any("Window 500 ≥ N = 64" in i.value for i in at.info)


def test_custom_rule_counts_and_refusals():
    # q >= k and (q - k) % 4 == 0: query q sees floor(q/4) + 1 keys; summed over q < 32: 4·(1+…+8) = 144.
    at = open_app(n="32", pattern="custom", rule="q >= k and (q - k) % 4 == 0", rule_params="")
    assert not at.exception and not at.error
    assert metric(at, "Allowed pairs") == "144"
    z = figure_z(at)
    assert all(bool(z[q, k]) == (k <= q and (q - k) % 4 == 0) for q in range(32) for k in range(32))
    at = open_app(n="32", pattern="custom", rule="abs(q - k) < W or k < S", rule_params="W=3, S=2")
    assert not at.exception and not at.error
    assert metric(at, "Allowed pairs") == str(sum(abs(q - k) < 3 or k < 2 for q in range(32) for k in range(32)))
    for bad, message in (("q.__class__", "Attribute access"), ("__import__('os')", "not allowed"),
                         ("q >= k and q - k < W", "W")):
        at = open_app(n="32", pattern="custom", rule=bad, rule_params="")
        assert not at.exception
        assert any(message in e.value for e in at.error), [e.value for e in at.error]
    at = open_app(n="9000", pattern="custom", rule="q >= k", rule_params="")
    assert not at.exception and any("8,192" in e.value for e in at.error)


def test_near_miss_keys_in_a_link_are_named_and_others_ignored():
    at = open_app(N="100", Window="4", utm_source="newsletter")
    assert not at.exception
    assert sorted(w.value for w in at.warning) == [
        "Unknown URL parameter 'N' was ignored; did you mean 'n'?",
        "Unknown URL parameter 'Window' was ignored; did you mean 'window'?",
    ]
    assert at.number_input(key="n").value == 64 and at.number_input(key="window").value == 8  # the defaults
    at.number_input(key="window").set_value(5).run()
    assert not at.warning  # the notices concern the link as opened


def test_a_bad_setting_is_named_in_the_main_area_too():
    # Presenter view folds the sidebar away, so the main area must say what is wrong, not only where.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(pattern="local_global", global_tokens="5,999", n="64")
    at.session_state["present"] = True
    at.run()
    assert not at.exception and not at.get("plotly_chart")
    main = [e.value for e in at.main.error]
    assert any("Pattern: Global token 999 does not exist in a sequence of 64 tokens" in m for m in main), main
    assert any("the arrow at the top left opens it" in m for m in main), main


def test_compare_puts_colour_bars_under_the_squares_and_a_single_view_beside():
    import json

    at = open_app(n="4096", pattern="sliding_window", window="256", compare="1", b_pattern="local_global")
    assert not at.exception
    bars = [json.loads(c.proto.spec)["data"][0]["colorbar"] for c in at.get("plotly_chart")]
    assert len(bars) == 3 and all(b["orientation"] == "h" and b["yanchor"] == "top" for b in bars), bars
    at = open_app(n="4096", pattern="sliding_window", window="256")
    (chart,) = at.get("plotly_chart")
    assert json.loads(chart.proto.spec)["data"][0]["colorbar"].get("orientation") in (None, "v")


def test_kernel_blocks_view_from_the_sidebar_and_a_link():
    # N = 1000, W = 200, blocks of 64: 16 × 16 blocks; (q, k) pairs counted by hand below.
    at = open_app(n="1000", window="200")
    at.radio(key="draw").set_value("blocks")
    at.selectbox(key="kernel_block").set_value(64).run()
    assert not at.exception and not at.error
    z = figure_z(at)
    assert z.shape == (16, 16) and z[1, 0] == 2 and z[1, 1] == 1 and z[0, 1] == 0
    assert metric(at, "64×64 blocks run") == f"{(z > 0).mean():.1%}"
    allowed = sum(min(q + 1, 200) for q in range(1000))
    sizes = np.diff(np.minimum(np.arange(17) * 64, 1000))
    computed = int((sizes[:, None] * (z > 0) * sizes[None, :]).sum())
    caption = " ".join(c.value for c in at.caption)
    assert f"computes **{computed:,}** pairs for the **{allowed:,}** allowed" in caption
    assert at.checkbox(key="labels").disabled  # token labels belong to the pair view
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the blocks, and the work by block size
    sweep = json.loads(charts[1].proto.spec)["data"]
    assert sweep[1]["x"] == [64] and abs(sweep[1]["y"][0] - computed / allowed) < 1e-12  # the size shown, marked
    link = at.code[0].value
    assert "draw=blocks" in link and "kernel_block=64" in link
    # The link reopens it; the defaults stay out of links.
    at = open_app(n="1000", window="200", draw="blocks", kernel_block="64")
    assert not at.exception and not at.warning and figure_z(at).shape == (16, 16)
    at.radio(key="draw").set_value("pairs")
    at.selectbox(key="kernel_block").set_value(128).run()
    assert "draw=" not in at.code[0].value and "kernel_block=" not in at.code[0].value
    assert metric(at, "128×128 blocks run")


def test_kernel_blocks_view_refuses_too_many_blocks_and_bad_links():
    at = open_app(n="131072", draw="blocks", kernel_block="64")
    assert not at.exception and not at.get("plotly_chart")
    assert any("2,048 × 2,048 blocks" in w.value and "blocks of 256 tokens or more" in w.value for w in at.warning)
    at.selectbox(key="kernel_block").set_value(256).run()
    assert not at.exception and not at.warning and figure_z(at).shape == (512, 512)
    at = open_app(n="300", draw="cubes", kernel_block="100", compare="1", b_pattern="bigbird", b_block="8")
    assert not at.exception
    warned = sorted(w.value for w in at.warning)
    assert len(warned) == 2 and "Draw the mask as must be one of pairs, blocks; got 'cubes'" in warned[0]
    assert "Block size must be one of 16, 32, 64, 128, 256, 512, 1024; got '100'" in warned[1]
    assert len(at.get("plotly_chart")) == 3 and at.number_input(key="b_block").value == 8  # BigBird's own block
    at.radio(key="draw").set_value("blocks").run()  # compare: both in blocks, and the blocks only one computes
    assert not at.exception and [figure_z(at, i).shape for i in range(3)] == [(3, 3), (3, 3), (3, 3)]
    a, b, diff = (figure_z(at, i) for i in range(3))
    assert np.array_equal(diff, (a > 0).astype(int) - (b > 0).astype(int))
    title = json.loads(at.get("plotly_chart")[2].proto.spec)["layout"]["title"]["text"].replace("<br>", " ")
    assert f"{(diff > 0).sum()} only for A, {(diff < 0).sum()} only for B" in title


@pytest.mark.parametrize("draw", ["pairs", "blocks"])
def test_a_custom_rule_too_fragmented_at_this_n_is_a_message(draw):
    # (q - k) % 3 == 0 gives each row ~q/3 separate keys: 11 million runs at N = 8,192, over the exact form's limit.
    at = open_app(n="8192", pattern="custom", rule="q >= k and (q - k) % 3 == 0", rule_params="", draw=draw)
    assert not at.exception and not at.get("plotly_chart")
    assert any("too fragmented" in e.value and "Try a smaller N" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key="n").set_value(1024).run()  # a smaller N draws (blocks: and the work by block size)
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == (2 if draw == "blocks" else 1)
